"""Lightning prediction writer: tile probabilities stream into per-scene outputs as batches finish.

Nothing is collected by ``trainer.predict`` (``return_predictions=False``): each batch's tiles go
into the scene's :class:`~firedpy_nrt.predict.tiling.BandAccumulator`, whose finished rows go to
the scene's :class:`~firedpy_nrt.predict.assembly.SceneAssembler` (one process), or, with several
devices, to a per-rank file of weighted sums that rank 0 adds up band by band at the end (each
rank sees its share of the tiles in increasing order under Lightning's unrepeated distributed
sampler, so every rank can stream too).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from firedpy_nrt.atomic import temporary
from firedpy_nrt.errors import DataError
from firedpy_nrt.predict.assembly import RowReader, SceneAssembler, ScenePlan
from firedpy_nrt.predict.evaluation import SceneScore, write_evaluation
from firedpy_nrt.predict.tiling import BandAccumulator

log = logging.getLogger(__name__)


class _PartialSums:
    """One rank's weighted sums of one scene, as a chunked float64 HDF5 dataset."""

    def __init__(self, path: Path, height: int, width: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(path, "w")
        chunks = (min(256, height), min(256, width))
        self._ds = self._file.create_dataset(
            "sum", shape=(height, width), dtype="float64", fillvalue=0.0, chunks=chunks
        )

    def __call__(self, y0: int, rows: np.ndarray) -> None:
        self._ds[y0 : y0 + rows.shape[0], :] = rows

    def close(self) -> None:
        self._file.close()


class PredictionStreamWriter(BasePredictionWriter):
    """Writes every scene's outputs while ``trainer.predict`` runs; ``scores`` holds the labelled ones."""

    def __init__(
        self,
        scenes: Sequence[ScenePlan],
        output_dir: Path,
        blend: str,
        threshold: float,
        opener: Callable[[dict[str, Any], str], RowReader],
        overwrite: bool = False,
        dnbr_threshold: float = 0.1,
    ) -> None:
        super().__init__(write_interval="batch")
        self.overwrite = overwrite
        self.dnbr_threshold = dnbr_threshold
        # one folder per run for the ranks' partial sums (pickled to spawned ranks as it is)
        self._partial_root = temporary(Path(output_dir) / "partial")
        self.scenes = list(scenes)
        self.output_dir = Path(output_dir)
        self.blend = blend
        self.threshold = threshold
        self.opener = opener
        self.scores: list[SceneScore] = []
        self.evaluation: Path | None = None
        self._current: tuple[int, BandAccumulator, Any] | None = None
        self._world = 1
        self._rank = 0

    # -- where rows go ---------------------------------------------------------------------
    @property
    def _partial_dir(self) -> Path:
        return self._partial_root

    def _partial_path(self, s: int, rank: int) -> Path:
        return self._partial_dir / f"{self.scenes[s].name}.rank{rank}.h5"

    def _assembler(self, s: int) -> SceneAssembler:
        scene = self.scenes[s]
        reader = self.opener(scene.row, scene.context)
        try:
            return SceneAssembler(
                scene, reader, self.blend, self.threshold, self.overwrite, self.dnbr_threshold
            )
        except BaseException:
            reader.close()
            raise

    def _start(self, s: int) -> None:
        scene = self.scenes[s]
        if self._world == 1:
            sink: Any = self._assembler(s)
            log.info("predicting %s (%d x %d)", scene.name, scene.geo.height, scene.geo.width)
        else:
            sink = _PartialSums(
                self._partial_path(s, self._rank), scene.geo.height, scene.geo.width
            )
        self._current = (s, BandAccumulator(scene.tiles, self.blend, sink), sink)

    def _finish_current(self) -> None:
        if self._current is None:
            return
        s, acc, sink = self._current
        acc.finish()
        self._current = None
        if isinstance(sink, SceneAssembler):
            self._record(sink.commit())
        else:
            sink.close()

    def _record(self, score: SceneScore | None) -> None:
        if score is not None:
            self.scores.append(score)

    # -- Lightning hooks -------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._world = trainer.world_size
        self._rank = trainer.global_rank
        self.scores = []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        probs = prediction.detach().float().cpu().numpy()
        scenes = batch["scene"].tolist()
        tiles = batch["tile"].tolist()
        for prob, s, t in zip(probs, scenes, tiles, strict=True):
            if self._current is None or self._current[0] != s:
                if self._current is not None and s < self._current[0]:
                    raise RuntimeError(
                        "tiles must arrive in scene order (use a sequential sampler)"
                    )
                self._finish_current()
                self._start(s)
            assert self._current is not None
            self._current[1].add(t, prob)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish_current()
        if self._world > 1:
            trainer.strategy.barrier("firedpy_predict_partials")
            if trainer.is_global_zero:
                self._merge_partials()
            trainer.strategy.barrier("firedpy_predict_merged")
        if trainer.is_global_zero and self.scores:
            self.evaluation = self.output_dir / "evaluation.csv"
            try:
                overall = write_evaluation(self.evaluation, self.scores, self.overwrite)
            except FileExistsError:
                raise DataError(
                    f"output {self.evaluation} was written by another run meanwhile; it is kept "
                    "(overwrite=true replaces it)"
                ) from None
            m = overall.confusion.metrics()
            cond = {
                k: overall.conditions[k].metrics()["burned_iou"]
                for k in ("clear", "cloud", "dnbr")
                if k in overall.conditions
            }
            log.info(
                "evaluation over %d labelled scene(s): burned IoU %.4f (where dNBR is valid "
                "%.4f, under cloud %.4f; dNBR >= threshold %.4f), mean IoU %.4f, F1 %.4f, "
                "accuracy %.4f -> %s",
                len(self.scores),
                m["burned_iou"],
                cond.get("clear", float("nan")),
                cond.get("cloud", float("nan")),
                cond.get("dnbr", float("nan")),
                m["mean_iou"],
                m["f1"],
                m["accuracy"],
                self.evaluation,
            )

    def _merge_partials(self) -> None:
        """Rank 0: add up every rank's weighted sums band by band and write the outputs."""
        for s, scene in enumerate(self.scenes):
            parts = [p for r in range(self._world) if (p := self._partial_path(s, r)).exists()]
            files = [h5py.File(p, "r") for p in parts]
            try:
                assembler = self._assembler(s)
                try:
                    step = scene.tiles.tile_size
                    for y0 in range(0, scene.geo.height, step):
                        y1 = min(y0 + step, scene.geo.height)
                        total = np.zeros((y1 - y0, scene.geo.width), dtype=np.float64)
                        for f in files:
                            total += f["sum"][y0:y1, :]
                        assembler(y0, total)
                    self._record(assembler.commit())
                except BaseException:
                    assembler.abort()
                    raise
            finally:
                for f in files:
                    f.close()
        shutil.rmtree(self._partial_dir, ignore_errors=True)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._current is not None:
            sink = self._current[2]
            with contextlib.suppress(Exception):
                if isinstance(sink, SceneAssembler):
                    sink.abort()
                else:
                    sink.close()
            self._current = None
        shutil.rmtree(self._partial_dir, ignore_errors=True)
