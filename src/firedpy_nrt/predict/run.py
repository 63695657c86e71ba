"""``predict.py``: map whole luminance-change rasters with a trained checkpoint.

Order of work, so that a bad input fails before anything is written: resolve and read the
checkpoint, select the CSV rows, open every row's layers (a missing or corrupt layer is a one-line
error naming it), refuse existing outputs unless ``overwrite=true``, check the model against the
inputs on one blank tile, then stream tiles through ``trainer.predict`` into the outputs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import rasterio
from rasterio.errors import RasterioError
from torch.utils.data import DataLoader

import firedpy_nrt
from firedpy_nrt.atomic import writable_dir
from firedpy_nrt.config import Invalid
from firedpy_nrt.config.predict import PredictConfig
from firedpy_nrt.data.match_csv import read_match_csv
from firedpy_nrt.data.raster import CHANNELS, DEFAULT_LABEL_THRESHOLD, AlignedRow
from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.predict.assembly import RowReader, ScenePlan
from firedpy_nrt.predict.checkpoints import CheckpointInfo, load_module, read_checkpoint_info
from firedpy_nrt.predict.dataset import TileDataset
from firedpy_nrt.predict.predictor import TilePredictor, check_channels
from firedpy_nrt.predict.tiling import TileLayout
from firedpy_nrt.predict.writer_callback import PredictionStreamWriter
from firedpy_nrt.predict.writers import OutputPaths, check_free
from firedpy_nrt.raster_grid import RasterGrid
from firedpy_nrt.train.runs import find_checkpoint, run_dir_of_checkpoint, saved_config_value
from firedpy_nrt.trainer import build_trainer

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
PATH_COLUMNS = ("lum_change", "coh_change", "dnbr", "binary_product")


@dataclass
class PredictResult:
    """What a prediction run wrote."""

    output_dir: Path
    checkpoint: Path
    scenes: list[ScenePlan]
    evaluation: Path | None
    scores: list[Any]


def select_rows(table: pd.DataFrame, split: str, info: CheckpointInfo, csv: Path) -> pd.DataFrame:
    """Rows of ``split``: ``all``, or the fires the checkpoint's training held out as ``test``."""
    if split == "all":
        rows = table
    else:
        if split not in info.splits:
            raise ConfigError(
                f"config key 'split': checkpoint {info.path} has no {split!r} split "
                f"(it has: {', '.join(sorted(info.splits)) or 'none'}); use split=all"
            )
        wanted = set(info.splits[split])
        rows = table[table["fire_id"].astype(str).isin(wanted)]
    if rows.empty:
        raise DataError(f"{csv}: no row for split={split} (fires {_fires(info, split)})")
    return rows.reset_index(drop=True)


def _fires(info: CheckpointInfo, split: str) -> str:
    ids = info.splits.get(split, [])
    return ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "") if ids else "none"


def _clean(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def build_scenes(
    rows: pd.DataFrame,
    cfg: PredictConfig,
    output_dir: Path,
    checkpoint: Path,
    threshold: float,
    csv: Path,
    opener: Callable[[dict[str, Any], str], RowReader],
) -> list[ScenePlan]:
    """Open every row once (so a missing layer fails now) and describe its grid, tiles, outputs."""
    scenes: list[ScenePlan] = []
    seen: dict[str, str] = {}
    for i, rec in enumerate(rows.to_dict("records")):
        row = {k: _clean(v) for k, v in rec.items()}
        fire = str(row.get("fire_id", ""))
        context = f"{csv} (fire {fire}, {Path(str(row['lum_change'])).name})"
        reader = opener(row, context)
        try:
            geo = RasterGrid(reader.crs, reader.transform, reader.width, reader.height)  # type: ignore[attr-defined]
            has_label = bool(getattr(reader, "has_label", row.get("binary_product") is not None))
        finally:
            reader.close()
        outputs = OutputPaths.for_raster(output_dir, str(row["lum_change"]))
        if outputs.h5.name in seen:
            raise DataError(
                f"{csv}: {row['lum_change']} and {seen[outputs.h5.name]} would both write "
                f"{outputs.h5.name}; give the luminance-change rasters distinct names"
            )
        seen[outputs.h5.name] = str(row["lum_change"])
        metadata = {
            "checkpoint": str(checkpoint.resolve()),
            "fire_id": fire,
            **{f"source_{k}": str(row[k]) if row.get(k) else "" for k in PATH_COLUMNS},
            "match_csv": str(csv),
            "threshold": float(threshold),
            "tile_size": cfg.tile_size,
            "overlap": cfg.overlap,
            "blend": cfg.blend,
            "tta": cfg.tta,
            "firedpy_nrt_version": firedpy_nrt.__version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        scenes.append(
            ScenePlan(
                index=i,
                fire_id=fire,
                row=row,
                context=context,
                geo=geo,
                tiles=TileLayout.build(geo.height, geo.width, cfg.tile_size, cfg.overlap),
                outputs=outputs,
                has_label=has_label,
                metadata=metadata,
            )
        )
    return scenes


def predict(
    conf: PredictConfig, opener: Callable[[dict[str, Any], str], RowReader] | None = None
) -> PredictResult:
    """Run prediction as ``conf`` (the validated ``conf/predict.yaml``) says; return what it wrote."""
    # GDAL's block cache defaults to 5% of RAM and fills as a scene is read and written: bound it
    with rasterio.Env(GDAL_CACHEMAX=conf.gdal_cache_mb * 1024 * 1024):
        return _predict(conf, opener)


def _predict(
    conf: PredictConfig, opener: Callable[[dict[str, Any], str], RowReader] | None
) -> PredictResult:
    ckpt_path = find_checkpoint(conf.ckpt, conf.run_dir, conf.paths.log_dir, conf.train_task)
    info = read_checkpoint_info(ckpt_path)
    if opener is None:
        # labels are read as training read them: the checkpoint's threshold unless overridden
        label_threshold = next(
            t
            for t in (conf.data.label_threshold, info.label_threshold, DEFAULT_LABEL_THRESHOLD)
            if t is not None
        )
        opener = functools.partial(AlignedRow, label_threshold=label_threshold)
    threshold = conf.threshold if conf.threshold is not None else info.threshold
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    try:
        tile_size, overlap = conf.tiling(info.chip_size)
    except Invalid as exc:
        raise exc.as_config_error() from None
    conf = replace(conf, tile_size=tile_size, overlap=overlap)
    log.info(
        "checkpoint %s (threshold %g; tiles of %d px overlapping by %d%s%s)",
        ckpt_path,
        threshold,
        tile_size,
        overlap,
        ", its training chips'" if info.chip_size == tile_size else "",
        "" if conf.tta == "none" else f"; test-time views: {conf.tta}",
    )

    csv = _match_csv(conf, ckpt_path)
    rows = select_rows(read_match_csv(csv), conf.split, info, csv)
    output_dir = Path(conf.output_dir)
    scenes = build_scenes(rows, conf, output_dir, ckpt_path, threshold, csv, opener)
    labelled = any(s.has_label for s in scenes)
    check_free(
        [p for s in scenes for p in s.outputs]
        + ([output_dir / "evaluation.csv"] if labelled else []),
        conf.overwrite,
    )

    _check_channel_names(info)
    predictor = TilePredictor(load_module(ckpt_path, conf.module_class), conf.tta)
    check_channels(predictor, CHANNELS, min(conf.tile_size, 64), ckpt_path)

    writable_dir(output_dir, "output_dir")  # the last check: nothing is created before it
    dataset = TileDataset(scenes, opener)
    loader = DataLoader(
        dataset,
        batch_size=conf.batch_size,
        shuffle=False,
        num_workers=conf.data.num_workers,
        persistent_workers=False,
    )
    dnbr_threshold = info.hparams.get("dnbr_threshold")
    writer = PredictionStreamWriter(
        scenes,
        output_dir,
        conf.blend,
        threshold,
        opener,
        overwrite=conf.overwrite,
        dnbr_threshold=float(dnbr_threshold) if dnbr_threshold is not None else 0.1,
    )
    trainer = build_trainer(
        lambda: pl.Trainer(
            accelerator=conf.trainer.accelerator,
            devices=conf.trainer.devices,
            precision=conf.trainer.precision,
            strategy=conf.trainer.strategy,
            callbacks=[writer],
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=True,
            default_root_dir=str(output_dir),
        )
    )
    _report_sizes(scenes, conf.tile_size, output_dir)
    try:
        trainer.predict(predictor, dataloaders=loader, return_predictions=False)
    except (OSError, RasterioError) as exc:  # a full disk, a folder that went away
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:200]
        raise DataError(
            f"cannot write the outputs in {output_dir}: {reason}; nothing finished was replaced"
        ) from None
    finally:
        dataset.close()
    # with ddp_spawn the writer ran in worker processes: the evaluation is found by its name
    evaluation = output_dir / "evaluation.csv" if labelled else None
    if trainer.is_global_zero:
        print(
            f"predictions for {len(scenes)} scene(s) written to {output_dir.resolve()}", flush=True
        )
        if evaluation is not None:
            print(f"evaluation: {evaluation.resolve()}", flush=True)
    return PredictResult(output_dir, ckpt_path, scenes, evaluation, writer.scores)


def _match_csv(conf: PredictConfig, ckpt: Path) -> Path:
    """``data.match_csv``, or by default the CSV the checkpoint was trained from (whose test fires
    ``split=test`` names; from the run's resolved ``config.yaml``), else
    ``<paths.data_dir>/match.csv``."""
    if conf.data.match_csv:
        return Path(conf.data.match_csv)
    value = saved_config_value(run_dir_of_checkpoint(ckpt.resolve()), "data.match_csv")
    trained = Path(str(value)) if value else None
    if trained is not None:
        log.info("match CSV of the training run: %s", trained)
        return trained
    return Path(conf.paths.data_dir) / "match.csv"


def _report_sizes(scenes: list[ScenePlan], tile_size: int, output_dir: Path) -> None:
    """What is about to be mapped, before the work starts: a huge scene shows here first."""
    for scene in scenes:
        log.info(
            "scene %s: %d x %d px (%.1f MP), %d tile(s)",
            scene.name,
            scene.geo.height,
            scene.geo.width,
            scene.geo.height * scene.geo.width / 1e6,
            len(scene.tiles),
        )
    pixels = sum(s.geo.height * s.geo.width for s in scenes)
    tiles = sum(len(s.tiles) for s in scenes)
    log.info(
        "%d scene(s), %.1f MP, %d tile(s) of %d px (tiles without luminance change skip the "
        "model) -> %s",
        len(scenes),
        pixels / 1e6,
        tiles,
        tile_size,
        output_dir,
    )


def _check_channel_names(info: CheckpointInfo) -> None:
    """A checkpoint that records its input layers must have been trained on the ones read here."""
    if info.channels is not None and info.channels != list(CHANNELS):
        raise DataError(
            f"checkpoint {info.path} was trained on the layers {', '.join(info.channels)}; "
            f"prediction reads {', '.join(CHANNELS)}"
        )
