"""Schema of ``predict.py``: which checkpoint, which rows, tiling, outputs and the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firedpy_nrt.config import require, require_plain_name
from firedpy_nrt.config.paths import PathsConfig
from firedpy_nrt.config.train import PRECISIONS

SPLITS = ("test", "all")
BLENDS = ("linear", "gaussian")
#: test-time augmentation: the views each tile is averaged over are
#: firedpy_nrt.predict.predictor.TTA_VIEWS (kept there, with the model code: this module stays
#: light, so every entry point's config loads without torch)
TTAS = ("none", "flip", "d4")


@dataclass
class PredictDataConfig:
    match_csv: str | None = None
    num_workers: int = 0
    #: burned where the binary product is at least this (evaluation); null: the checkpoint's
    label_threshold: float | None = None

    def check(self) -> None:
        require(
            self.match_csv is None or self.match_csv.lower().endswith(".csv"),
            "match_csv",
            "must be a .csv file or null (the training run's CSV)",
        )
        require(self.num_workers >= 0, "num_workers", "must be >= 0")
        require(
            self.label_threshold is None or self.label_threshold > 0,
            "label_threshold",
            "must be > 0 or null (the checkpoint's)",
        )


@dataclass
class PredictTrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    precision: Any = "32-true"
    strategy: str = "auto"

    def check(self) -> None:
        d = self.devices
        ok = (
            (isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1))
            or d == "auto"
            or (isinstance(d, str) and d.lstrip("-").isdigit())
            or (isinstance(d, list) and all(isinstance(i, int) for i in d) and len(d) > 0)
        )
        require(ok, "devices", f"must be a positive int, -1, 'auto' or a list of ids (got {d!r})")
        require(
            self.precision in PRECISIONS,
            "precision",
            f"unknown precision {self.precision!r} (e.g. 32-true, 16-mixed, bf16-mixed)",
        )
        require(
            self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
            "accelerator",
            f"unknown accelerator {self.accelerator!r} (auto, cpu, gpu, cuda, mps, tpu)",
        )


#: tile edge for a checkpoint that does not record its training chip size
FALLBACK_TILE_SIZE = 512


@dataclass
class PredictConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    task_name: str = "predict"  # this run's folder: <paths.log_dir>/<task_name>/runs/<time>
    ckpt: str = "best"  # best | last (the newest of train_task's runs) | a .ckpt path
    run_dir: str | None = None  # a training run folder to take best/last from instead
    train_task: str = "train"  # task_name of the training runs that ckpt=best|last searches
    module_class: str = "firedpy_nrt.models.segmentation.SegmentationModule"
    data: PredictDataConfig = field(default_factory=PredictDataConfig)
    split: str = "test"  # test: the checkpoint's held-out test fires; all: every CSV row
    output_dir: str = "${paths.output_dir}/predictions"
    #: model input edge (pixels, native resolution); null: the checkpoint's training chip size
    #: (the extent the network learned from: its global pooling makes its output depend on it),
    #: or FALLBACK_TILE_SIZE for a checkpoint that does not record one
    tile_size: int | None = None
    overlap: int | None = None  # pixels shared by neighbouring tiles; null: half the tile
    blend: str = "gaussian"  # gaussian | linear weights where tiles overlap
    #: test-time augmentation: none | flip (4 mirrored views averaged, 4x the compute) | d4 (8)
    tta: str = "none"
    threshold: float | None = None  # burned where probability > this; null: the checkpoint's
    batch_size: int = 4
    overwrite: bool = False  # never replace existing outputs unless true
    gdal_cache_mb: int = 256  # GDAL block cache (GDAL's default is 5% of RAM)
    trainer: PredictTrainerConfig = field(default_factory=PredictTrainerConfig)

    def check(self) -> None:
        require_plain_name(self.task_name, "task_name")
        require_plain_name(self.train_task, "train_task")
        require(self.ckpt.strip() != "", "ckpt", "must be best, last or a checkpoint path")
        require(
            self.split in SPLITS,
            "split",
            f"must be one of {', '.join(SPLITS)} (got {self.split!r})",
        )
        require(
            self.blend in BLENDS,
            "blend",
            f"must be one of {', '.join(BLENDS)} (got {self.blend!r})",
        )
        require(
            self.tta in TTAS,
            "tta",
            f"must be one of {', '.join(TTAS)} (got {self.tta!r})",
        )
        require(
            self.tile_size is None or self.tile_size >= 16,
            "tile_size",
            f"must be >= 16 or null (got {self.tile_size})",
        )
        require(
            self.overlap is None or self.overlap >= 0,
            "overlap",
            f"must be >= 0 or null (got {self.overlap})",
        )
        if self.tile_size is not None and self.overlap is not None:
            require(
                self.overlap < self.tile_size,
                "overlap",
                f"must be in [0, tile_size={self.tile_size}) (got {self.overlap})",
            )
        require(
            self.gdal_cache_mb >= 16, "gdal_cache_mb", f"must be >= 16 (got {self.gdal_cache_mb})"
        )
        require(self.batch_size >= 1, "batch_size", f"must be >= 1 (got {self.batch_size})")
        require(
            self.threshold is None or 0.0 <= self.threshold <= 1.0,
            "threshold",
            f"must be in [0, 1] or null for the checkpoint's (got {self.threshold})",
        )

    def tiling(self, chip_size: int | None) -> tuple[int, int]:
        """(tile_size, overlap) for a checkpoint trained on ``chip_size`` chips (None: unknown):
        the keys where set, else the chip size (or FALLBACK_TILE_SIZE) and half of it."""
        tile = self.tile_size or max(16, chip_size or FALLBACK_TILE_SIZE)
        overlap = self.overlap if self.overlap is not None else tile // 2
        require(
            overlap < tile,
            "overlap",
            f"must be less than the tile size, {tile} (the checkpoint's chips; got {overlap})",
        )
        return tile, overlap
