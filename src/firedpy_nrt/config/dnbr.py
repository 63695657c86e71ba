"""Schema of the ``dnbr`` preparation stage: dNBR, burn masks and RGB from S2 L2A / Landsat C2 L2."""

from __future__ import annotations

from dataclasses import dataclass, field

from firedpy_nrt.config import require

#: Sentinel-2 L2A scene classes masked by default: no data, saturated/defective, cloud shadow,
#: medium and high cloud probability, thin cirrus, snow/ice.
DEFAULT_SCL_MASK = [0, 1, 3, 8, 9, 10, 11]
#: Landsat C2 QA_PIXEL bits masked by default: fill, dilated cloud, cirrus, cloud, cloud shadow, snow.
DEFAULT_QA_BITS = [0, 1, 2, 3, 4, 5]
#: USGS dNBR severity class lower bounds (Key & Benson): enhanced regrowth high/low, unburned,
#: low, moderate-low, moderate-high, high severity.
DEFAULT_SEVERITY_BREAKS = [-0.25, -0.1, 0.1, 0.27, 0.44, 0.66]


@dataclass
class Sentinel2Config:
    nir_band: str = "B8A"  # B8A: NBR at 20 m; B08: at 10 m with B12 resampled bilinearly
    scl_mask: list[int] = field(default_factory=lambda: list(DEFAULT_SCL_MASK))

    def check(self) -> None:
        require(self.nir_band in ("B8A", "B08"), "nir_band", "must be B8A (20 m) or B08 (10 m)")
        for c in self.scl_mask:
            require(0 <= c <= 11, "scl_mask", f"scene classes are 0..11 (got {c})")


@dataclass
class LandsatConfig:
    scale: float = 0.0000275  # used when the MTL does not give REFLECTANCE_MULT_BAND_n
    offset: float = -0.2  # used when the MTL does not give REFLECTANCE_ADD_BAND_n
    qa_mask_bits: list[int] = field(default_factory=lambda: list(DEFAULT_QA_BITS))

    def check(self) -> None:
        require(self.scale > 0, "scale", "must be > 0")
        for b in self.qa_mask_bits:
            require(0 <= b <= 15, "qa_mask_bits", f"QA_PIXEL bits are 0..15 (got {b})")


@dataclass
class PairingConfig:
    pre_days: int | None = 90  # pre-fire scenes at most this many days before ig_date (null: any)
    post_days: int | None = 90  # post-fire scenes at most this many days after last_date
    mode: str = "best"  # best: the pair with most valid pixels over the polygon; all: every pair
    buffer_m: float = 1000.0  # buffer around the event polygon, metres

    def check(self) -> None:
        require(self.pre_days is None or self.pre_days > 0, "pre_days", "must be > 0 or null")
        require(self.post_days is None or self.post_days > 0, "post_days", "must be > 0 or null")
        require(self.mode in ("best", "all"), "mode", f"must be best or all (got {self.mode!r})")
        require(self.buffer_m >= 0, "buffer_m", "must be >= 0")


@dataclass
class RgbConfig:
    enabled: bool = False
    scenes: list[str] = field(default_factory=lambda: ["post"])  # pre and/or post
    mode: str = "quicklook"  # quicklook: 8-bit stretched; reflectance: float32 reflectance
    stretch: list[float] = field(default_factory=lambda: [0.0, 0.3])  # reflectance -> 0..255

    def check(self) -> None:
        require(
            self.mode in ("quicklook", "reflectance"), "mode", "must be quicklook or reflectance"
        )
        require(len(self.scenes) > 0, "scenes", "needs pre and/or post")
        for s in self.scenes:
            require(s in ("pre", "post"), "scenes", f"must be pre or post (got {s!r})")
        require(
            len(self.stretch) == 2 and self.stretch[0] < self.stretch[1],
            "stretch",
            "must be [low, high] reflectance with low < high",
        )


@dataclass
class DnbrConfig:
    scenes_dir: str = "${paths.data_dir}/scenes"
    output_dir: str = "${paths.data_dir}/dnbr"
    resolution: float | None = None  # metres; null: native (20 m S2 B8A, 10 m S2 B08, 30 m Landsat)
    threshold: float = 0.1  # burn mask: 1 where dNBR >= threshold
    severity: bool = False  # also write USGS severity classes (..._DNBR_SEVERITY.TIF)
    severity_breaks: list[float] = field(default_factory=lambda: list(DEFAULT_SEVERITY_BREAKS))
    clip: bool = False  # set pixels outside the buffered event polygon to nodata
    block_size: int = 1024  # processing window, pixels
    gdal_cache_mb: int = 256  # GDAL block cache; bounds memory together with block_size
    threads: int | None = None  # threads compressing the COGs (null: all cores)
    sentinel2: Sentinel2Config = field(default_factory=Sentinel2Config)
    landsat: LandsatConfig = field(default_factory=LandsatConfig)
    pairing: PairingConfig = field(default_factory=PairingConfig)
    rgb: RgbConfig = field(default_factory=RgbConfig)

    def check(self) -> None:
        require(self.resolution is None or self.resolution > 0, "resolution", "must be > 0 or null")
        require(-2.0 <= self.threshold <= 2.0, "threshold", "dNBR lies in [-2, 2]")
        require(
            len(self.severity_breaks) == 6
            and all(
                a < b
                for a, b in zip(self.severity_breaks[:-1], self.severity_breaks[1:], strict=True)
            ),
            "severity_breaks",
            "needs 6 increasing dNBR bounds",
        )
        require(
            self.block_size >= 64 and self.block_size % 16 == 0,
            "block_size",
            "must be >= 64 and a multiple of 16",
        )
        require(self.gdal_cache_mb >= 16, "gdal_cache_mb", "must be >= 16")
        require(self.threads is None or self.threads >= 1, "threads", "must be >= 1 or null")
