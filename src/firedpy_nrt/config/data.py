"""Schema of the ``data`` group: the match CSV, chips, cache, splits, loaders, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firedpy_nrt.config import require
from firedpy_nrt.data.layers import normalise_fire_id
from firedpy_nrt.data.raster import DEFAULT_LABEL_THRESHOLD

BAD_ROW_POLICIES = ("error", "skip")


@dataclass
class FractionsConfig:
    """Share of fires per split when no fixed lists are given."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def check(self) -> None:
        for key in ("train", "val", "test"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, key, f"must be in [0, 1] (got {value})")
        require(self.train > 0.0, "train", "must be > 0")
        total = self.train + self.val + self.test
        require(abs(total - 1.0) < 1e-6, "train", f"train + val + test must be 1 (got {total:g})")


@dataclass
class SplitConfig:
    """Train/val/test by fire, never by chip: fixed fire-id lists, or fractions with a seed.

    With any list filled, the lists decide; an empty ``train`` list then means every fire not in
    ``val`` or ``test``. With all lists empty, fires are shuffled with ``seed`` and cut by
    ``fractions``.
    """

    train: list[Any] = field(default_factory=list)
    val: list[Any] = field(default_factory=list)
    test: list[Any] = field(default_factory=list)
    fractions: FractionsConfig = field(default_factory=FractionsConfig)
    seed: int = 42

    @property
    def fixed(self) -> bool:
        return bool(self.train or self.val or self.test)

    def check(self) -> None:
        seen: dict[str, str] = {}
        for key in ("train", "val", "test"):
            for value in getattr(self, key):
                fid = normalise_fire_id(value)
                require(fid != "", key, "holds an empty fire id")
                require(
                    fid not in seen or seen[fid] == key,
                    key,
                    f"fire {fid} is also in data.split.{seen.get(fid)}; a fire belongs to one split",
                )
                seen[fid] = key


@dataclass
class AugmentConfig:
    """Augmentation drawn per sample on the device (training only): flips and 90-degree
    rotations; and photometric changes (README: training), off by default."""

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    p: float = 0.5
    dnbr_drop_p: float = 0.0  # the whole dNBR hidden (NaN), as under full cloud
    dnbr_blank_p: float = 0.0  # a random rectangle of the dNBR hidden
    #: SAR changes times (1 + g) ** U(-1, 1) per sample: log-uniform in [1 / (1 + g), 1 + g]
    #: (1.0: from half to twice the response; weaker and stronger burns alike)
    sar_gain: float = 0.0
    sar_offset: float = 0.0  # plus U(-o, o) of the sample's std
    lum_sign_p: float = 0.0  # luminance change negated (brightening burns)
    #: a smooth random field of U(0, m) dB added to the luminance change (soil moisture, rain)
    moisture_db: float = 0.0
    noise_std: float = 0.0  # Gaussian noise, in units of each sample's channel std
    #: zoom a sample by (1 + z) ** U(-1, 1) with probability scale_p: burns and fields of other
    #: sizes than the training scenes' (> 1: a crop enlarged; < 1: the chip shrunk, nodata around)
    scale: float = 0.0
    scale_p: float = 0.5

    def check(self) -> None:
        require(0.0 <= self.p <= 1.0, "p", f"must be in [0, 1] (got {self.p})")
        require(0.0 <= self.scale <= 3.0, "scale", f"must be in [0, 3] (got {self.scale})")
        for key in ("dnbr_drop_p", "dnbr_blank_p", "lum_sign_p", "scale_p"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, key, f"must be in [0, 1] (got {value})")
        for key in ("sar_gain", "sar_offset", "moisture_db", "noise_std"):
            value = getattr(self, key)
            require(value >= 0.0, key, f"must be >= 0 (got {value})")


@dataclass
class DataConfig:
    """The ``data`` group (``conf/data/*.yaml``): ``FireDataModule(DataConfig)``."""

    match_csv: str = "${paths.data_dir}/match.csv"  # written by prepare.py; any contract CSV
    chip_size: int = 256  # chip side in pixels of the luminance-change grid (native resolution)
    stride: int = 256  # step between chips; < chip_size overlaps them
    min_valid_fraction: float = 0.1  # keep a chip when at least this share carries a label
    cache_dir: str = "${paths.data_dir}/cache"  # one folder per CSV content + chip settings
    on_bad_row: str = "error"  # error: stop at a missing/corrupt raster; skip: warn, count, go on
    #: burned where the binary product is at least this; nodata and NaN stay ignored (not labels)
    label_threshold: float = DEFAULT_LABEL_THRESHOLD
    batch_size: int = 8
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self) -> None:
        require(self.match_csv.strip() != "", "match_csv", "is required (data.match_csv=PATH)")
        require(self.chip_size >= 16, "chip_size", f"must be >= 16 pixels (got {self.chip_size})")
        require(
            self.label_threshold > 0,
            "label_threshold",
            f"must be > 0: a product's 0 is unburned (got {self.label_threshold})",
        )
        require(self.stride >= 1, "stride", f"must be >= 1 pixel (got {self.stride})")
        require(
            0.0 <= self.min_valid_fraction <= 1.0,
            "min_valid_fraction",
            f"must be in [0, 1] (got {self.min_valid_fraction})",
        )
        require(
            self.on_bad_row in BAD_ROW_POLICIES,
            "on_bad_row",
            f"must be error or skip (got {self.on_bad_row!r})",
        )
        require(
            self.batch_size >= 2,
            "batch_size",
            f"must be >= 2: DeepLabV3's batch norm fails on one sample (got {self.batch_size})",
        )
        require(self.num_workers >= 0, "num_workers", f"must be >= 0 (got {self.num_workers})")
        require(
            not self.persistent_workers or self.num_workers > 0,
            "persistent_workers",
            "needs num_workers > 0",
        )
