"""Where data, runs and outputs live (shared by every entry point)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PathsConfig:
    data_dir: str = "data"
    log_dir: str = "logs"
    output_dir: str = "outputs"
