"""``train(cfg)``: build datamodule, module, callbacks, loggers and trainer from config; fit; test.

``train`` takes the config ``train.py`` composes (``conf/train.yaml``), validated once into
:class:`firedpy_nrt.config.train.TrainConfig` at the entry point, and returns the metric named by
``optimized_metric`` (the best validation burned IoU by default) so Hydra sweepers can use it.
Where the run writes is :mod:`firedpy_nrt.train.runs`'s business.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from firedpy_nrt.atomic import write_text
from firedpy_nrt.config.train import TrainConfig
from firedpy_nrt.data.datamodule import FireDataModule
from firedpy_nrt.errors import ConfigError
from firedpy_nrt.models.segmentation import SegmentationModule
from firedpy_nrt.redaction import redact
from firedpy_nrt.train.checkpoint_io import AtomicCheckpointIO
from firedpy_nrt.train.report import RunReport
from firedpy_nrt.train.runs import resume_checkpoint, saved_config_name
from firedpy_nrt.trainer import build_trainer

log = logging.getLogger(__name__)


@rank_zero_only
def save_resolved_config(conf: TrainConfig, run_dir: Path) -> Path:
    """The validated config, secrets redacted, in the run folder: ``config.yaml``, or for a
    resumed run beside the first one (:func:`firedpy_nrt.train.runs.saved_config_name`)."""
    plain = redact(OmegaConf.to_container(OmegaConf.structured(conf), resolve=True))
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = run_dir / saved_config_name(run_dir, stamp)
    return write_text(path, OmegaConf.to_yaml(OmegaConf.create(plain)))


def build_module(
    conf: TrainConfig, channels: tuple[str, ...], augmentation: Any = None
) -> SegmentationModule:
    """The LightningModule from ``conf.model`` for the datamodule's ``channels``, with the
    ``loss``/``optimizer``/``scheduler`` groups."""
    return SegmentationModule(
        channels=channels,
        **asdict(conf.model),
        loss=conf.loss,
        optimizer=conf.optimizer,
        scheduler=conf.scheduler,
        augmentation=augmentation,
    )


def build_callbacks(conf: TrainConfig, run_dir: Path, has_logger: bool = True) -> list[Callback]:
    """Callbacks from ``conf.callbacks`` (a mapping name -> ``_target_`` node) plus the run report."""
    callbacks: list[Callback] = []
    for name, node in (conf.callbacks or {}).items():
        if node is None:  # a group entry switched off, e.g. callbacks.early_stopping=null
            continue
        if "_target_" not in node:
            raise ConfigError(f"config key 'callbacks.{name}': needs a _target_")
        callback = instantiate(node)
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            log.info("callbacks.%s: no logger to write learning rates to, left out", name)
            continue
        callbacks.append(callback)
    callbacks.append(RunReport(run_dir))
    return callbacks


def build_loggers(conf: TrainConfig) -> list[Logger]:
    loggers: list[Logger] = []
    for name, node in (conf.logger or {}).items():
        if node is None:
            continue
        if "_target_" not in node:
            raise ConfigError(f"config key 'logger.{name}': needs a _target_")
        if "MLFlowLogger" in str(node["_target_"]):
            uri = str(node.get("tracking_uri") or "")
            if uri.startswith("file:") or "://" not in uri:
                # MLflow 3 refuses its file store unless told; a local store is what we want here
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        loggers.append(instantiate(node))
    return loggers


def _checkpoint_callback(trainer: Trainer, monitor: str | None) -> ModelCheckpoint | None:
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.monitor == monitor:
            return cb
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor:
            return cb
    return None


def _keeps_final_weights(trainer: Trainer) -> bool:
    """A ModelCheckpoint without ``monitor`` that keeps one file (``best.ckpt`` with
    ``callbacks.model_checkpoint.monitor=null``): the final weights, chosen on purpose."""
    return any(
        isinstance(cb, ModelCheckpoint) and not cb.monitor and cb.save_top_k == 1
        for cb in trainer.checkpoint_callbacks
    )


def _end_cpu_process_group() -> None:
    """Destroy a gloo (CPU DDP) process group once the run is done. Lightning destroys NCCL
    groups at exit but not gloo ones, and a gloo group left to the interpreter's shutdown can
    abort the process ("terminate called without an active exception") after a good run."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo":
        dist.destroy_process_group()


def train(conf: TrainConfig) -> float | None:
    """Fit and test as configured; return ``conf.optimized_metric`` (None when not logged)."""
    run_dir = Path(conf.paths.output_dir)
    ckpt_path = resume_checkpoint(conf.ckpt_path, conf.paths.log_dir, conf.task_name)
    ckpt = str(ckpt_path) if ckpt_path is not None else None
    if conf.seed is not None:
        pl.seed_everything(conf.seed, workers=True, verbose=False)

    log.info("run directory: %s", run_dir)
    datamodule = FireDataModule(conf.data)
    module = build_module(conf, datamodule.channels, datamodule.augmentation)
    loggers = build_loggers(conf)
    callbacks = build_callbacks(conf, run_dir, has_logger=bool(loggers))
    trainer: Trainer = build_trainer(
        lambda: instantiate(
            conf.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
        )
    )
    if trainer.is_global_zero:
        save_resolved_config(conf, run_dir)

    if conf.train:
        if ckpt:
            log.info("resuming from %s", ckpt)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best = _checkpoint_callback(trainer, conf.optimized_metric)
    best_path = best.best_model_path if best is not None else ""
    best_score = best.best_model_score if best is not None else None

    test_metrics: dict[str, float] = {}
    if conf.test:
        if conf.train:
            test_ckpt = best_path or None
            if not test_ckpt and _keeps_final_weights(trainer):
                log.info(
                    "the checkpoint callback monitors nothing: its checkpoint holds the final "
                    "weights, which are tested"
                )
            elif not test_ckpt:
                log.warning("no best checkpoint: testing the weights at the end of training")
        else:
            test_ckpt = ckpt
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=False)
        test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    _end_cpu_process_group()
    metric_name = conf.optimized_metric
    if best is not None and best.monitor == metric_name and best_score is not None:
        return float(best_score)
    value = {**fit_metrics, **test_metrics}.get(metric_name)
    if value is None:
        log.warning("optimized_metric %s was not logged", metric_name)
    return value
