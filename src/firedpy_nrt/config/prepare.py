"""Schema of ``prepare.py``: the stages and each stage's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firedpy_nrt.config import require
from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.config.paths import PathsConfig
from firedpy_nrt.data.layers import DEFAULT_PATTERNS

STAGE_NAMES = ("synthetic", "download", "dnbr", "match")


@dataclass
class PatternsConfig:
    """Regular expressions of the layer file names (see the README's data contract)."""

    lum_change: str = DEFAULT_PATTERNS["lum_change"]
    coh_change: str = DEFAULT_PATTERNS["coh_change"]
    binary_product: str = DEFAULT_PATTERNS["binary_product"]
    dnbr: str = DEFAULT_PATTERNS["dnbr"]


@dataclass
class MatchConfig:
    lum_dir: str = "${paths.data_dir}/sar/lum_change"
    coh_dir: str = "${paths.data_dir}/sar/coh_change"
    binary_dir: str = "${paths.data_dir}/sar/binary_product"
    dnbr_dir: str = "${paths.data_dir}/dnbr"
    output_csv: str = "${paths.data_dir}/match.csv"
    max_days: int | None = None
    validate: bool = False
    recursive: bool = False
    patterns: PatternsConfig = field(default_factory=PatternsConfig)

    def check(self) -> None:
        require(self.max_days is None or self.max_days >= 0, "max_days", "must be >= 0 or null")
        require(self.output_csv.lower().endswith(".csv"), "output_csv", "must end in .csv")


@dataclass
class PrepareConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    stages: list[str] = field(default_factory=lambda: ["download", "dnbr", "match"])
    events: str | None = None
    event_ids: list[Any] = field(default_factory=list)
    satellite: str = "sentinel"
    overwrite: bool = False
    match: MatchConfig = field(default_factory=MatchConfig)
    synthetic: Any = field(default_factory=dict)
    download: Any = field(default_factory=dict)
    dnbr: DnbrConfig = field(default_factory=DnbrConfig)

    def check(self) -> None:
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
