"""Schema of ``prepare.py``: the stages and each stage's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from firedpy_nrt.config import Invalid, require, require_plain_name
from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.config.download import DownloadConfig
from firedpy_nrt.config.paths import PathsConfig
from firedpy_nrt.config.sar import SarConfig
from firedpy_nrt.data.layers import DEFAULT_PATTERNS, compile_patterns

STAGE_NAMES = ("synthetic", "download", "dnbr", "sar", "match")


@dataclass
class PatternsConfig:
    """Regular expressions of the layer file names (see the README's data contract)."""

    lum_change: str = DEFAULT_PATTERNS["lum_change"]
    coh_change: str = DEFAULT_PATTERNS["coh_change"]
    binary_product: str = DEFAULT_PATTERNS["binary_product"]
    dnbr: str = DEFAULT_PATTERNS["dnbr"]

    def check(self) -> None:
        for kind in DEFAULT_PATTERNS:
            try:
                compile_patterns({kind: getattr(self, kind)})
            except ValueError as exc:
                raise Invalid(kind, str(exc).partition(": ")[2]) from None


@dataclass
class MatchConfig:
    lum_dir: str = "${paths.data_dir}/sar/lum_change"
    coh_dir: str = "${paths.data_dir}/sar/coh_change"
    binary_dir: str = "${paths.data_dir}/sar/binary_product"
    dnbr_dir: str = "${dnbr.output_dir}"  # where the dnbr stage writes
    output_csv: str = "${paths.data_dir}/match.csv"
    max_days: int | None = None  # drop dNBR whose post date is further than this from SAR's
    validate: bool = False  # also open each raster's header and report unreadable ones
    recursive: bool = False  # look in sub-folders too
    patterns: PatternsConfig = field(default_factory=PatternsConfig)

    def check(self) -> None:
        require(self.max_days is None or self.max_days >= 0, "max_days", "must be >= 0 or null")
        require(self.output_csv.lower().endswith(".csv"), "output_csv", "must end in .csv")


@dataclass
class SyntheticConfig:
    """The synthetic dataset (README: preparing data); every number here is a config key."""

    seed: int = 0
    n_fires: int = 24  # 16 train, 4 validation and 4 test fires with the default split
    pairs_per_fire: int = 3  # SAR date pairs (luminance change, coherence change, binary product)
    dnbr_per_fire: int = 3  # dNBR products per fire, sensors cycling S2A S2B S2C LC08 LC09
    size: int = 320  # SAR scene width and height in pixels (the population's mean) ...
    size_jitter: float = 0.2  # ... each fire's scene is size * U(1 - j, 1 + j)
    sar_pixel_m: float = 25.0
    s2_pixel_m: float = 20.0  # Sentinel-2 dNBR pixel size
    landsat_pixel_m: float = 30.0  # Landsat dNBR pixel size
    burn_fraction: list[float] = field(default_factory=lambda: [0.05, 0.6])
    looks: float = 4.0  # equivalent number of looks of the gamma speckle
    lum_burn_db: float = -3.0  # mean luminance change over a moderately burned pixel
    #: Fires whose backscatter brightens where it burns (wet soil, debris) instead of darkening.
    brightening_fraction: float = 0.15
    moisture_db: float = 1.0  # soil-moisture and rain change between the dates (dB, smooth)
    coh_burn_rise: float = 0.3  # mean coherence change over a burned pixel
    coh_noise: float = 0.12
    dnbr_noise: float = 0.05
    cloud_fraction: float = 0.25  # mean fraction of a dNBR scene under cloud (NaN): U(0, 2x)
    #: Mean fraction under thin haze the cloud mask misses: dNBR damped and noisier, not NaN.
    haze_fraction: float = 0.1
    disturbance_fraction: float = 0.05  # harvested fields: coherence and dNBR rise, not burned
    #: Each fire scales lum_burn_db, coh_burn_rise, moisture_db, coh_noise and dnbr_noise by its
    #: own U(1 - v, 1 + v): one population of strong and faint burns, wet and dry dates.
    fire_variation: float = 0.0
    other_crs_fraction: float = 0.3  # fires whose dNBR lies in the neighbouring UTM zone
    nodata_edge: float = 0.15  # largest fraction of a SAR scene beyond the swath edge
    start_date: str = "2021-06-01"  # fires ignite within 90 days after it

    def check(self) -> None:
        require(self.n_fires >= 1, "n_fires", "must be >= 1")
        require(self.pairs_per_fire >= 1, "pairs_per_fire", "must be >= 1")
        require(self.dnbr_per_fire >= 1, "dnbr_per_fire", "must be >= 1")
        require(32 <= self.size <= 8192, "size", "must be between 32 and 8192 pixels")
        for key in ("sar_pixel_m", "s2_pixel_m", "landsat_pixel_m"):
            require(getattr(self, key) > 0, key, "must be > 0")
        require(
            len(self.burn_fraction) == 2
            and 0.0 < self.burn_fraction[0] <= self.burn_fraction[1] <= 0.9,
            "burn_fraction",
            "must be [min, max] with 0 < min <= max <= 0.9",
        )
        require(self.looks >= 1.0, "looks", "must be >= 1")
        require(0.0 <= self.size_jitter <= 0.5, "size_jitter", "must be between 0 and 0.5")
        require(self.moisture_db >= 0, "moisture_db", "must be >= 0")
        require(0.0 <= self.fire_variation <= 0.9, "fire_variation", "must be between 0 and 0.9")
        for key in ("brightening_fraction", "haze_fraction"):
            require(0.0 <= getattr(self, key) <= 0.5, key, "must be between 0 and 0.5")
        for key in ("coh_noise", "dnbr_noise"):
            require(getattr(self, key) >= 0, key, "must be >= 0")
        for key in ("cloud_fraction", "disturbance_fraction", "other_crs_fraction"):
            require(0.0 <= getattr(self, key) <= 0.8, key, "must be between 0 and 0.8")
        require(0.0 <= self.nodata_edge <= 0.5, "nodata_edge", "must be between 0 and 0.5")
        try:
            date.fromisoformat(self.start_date)
        except ValueError:
            raise Invalid("start_date", f"not a YYYY-MM-DD date: {self.start_date!r}") from None


@dataclass
class PrepareConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    task_name: str = "prepare"  # this run's log folder: <paths.log_dir>/<task_name>/runs/<time>
    stages: list[str] = field(default_factory=lambda: ["download", "dnbr", "match"])
    events: str | None = None  # FIREDpy event table (.gpkg, .shp, .geojson, .csv)
    events_crs: str | None = None  # CRS of an events file that declares none
    #: Metres searched around each point of an x/y events CSV; needed for FIREDpy's event CSV,
    #: whose single point per event is one pixel of the fire (the .gpkg/.shp polygons are better).
    events_point_buffer_m: float | None = None
    event_ids: list[Any] = field(default_factory=list)  # [] means every event in the table
    satellite: str = "sentinel"  # sentinel, landsat or both
    overwrite: bool = False  # never replace finished outputs unless true
    match: MatchConfig = field(default_factory=MatchConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    dnbr: DnbrConfig = field(default_factory=DnbrConfig)
    sar: SarConfig = field(default_factory=SarConfig)

    def check(self) -> None:
        require_plain_name(self.task_name, "task_name")
        require(
            self.events_point_buffer_m is None or self.events_point_buffer_m > 0,
            "events_point_buffer_m",
            "must be > 0 metres or null",
        )
        require(len(self.stages) > 0, "stages", "needs at least one stage")
        for stage in self.stages:
            require(
                stage in STAGE_NAMES,
                "stages",
                f"unknown stage {stage!r} (choose from {', '.join(STAGE_NAMES)})",
            )
        require(
            self.satellite in ("sentinel", "landsat", "both"),
            "satellite",
            f"must be sentinel, landsat or both (got {self.satellite!r})",
        )
