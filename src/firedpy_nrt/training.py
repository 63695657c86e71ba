"""``train(cfg)``: build datamodule, module, callbacks, loggers and trainer from config; fit; test.

The config is the one ``train.py`` composes (``conf/train.yaml``), already validated against
:class:`firedpy_nrt.config.train.TrainConfig`. ``train`` returns the metric named by
``optimized_metric`` (the best validation burned IoU by default) so Hydra sweepers can use it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from firedpy_nrt.errors import ConfigError
from firedpy_nrt.models.segmentation import SegmentationModule
from firedpy_nrt.reporting import RunReport
from firedpy_nrt.run_dir import CHECKPOINT_DIR, LAST, LAST_NAME

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|credential)", re.IGNORECASE)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def redact(node: Any) -> Any:
    """A copy of a plain config with values under secret-looking keys replaced by ``***``."""
    if isinstance(node, dict):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v is not None else redact(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [redact(v) for v in node]
    return node


@rank_zero_only
def save_resolved_config(cfg: DictConfig, run_dir: Path) -> None:
    """``config.yaml`` in the run directory: every interpolation resolved, secrets redacted."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = redact(OmegaConf.to_container(cfg, resolve=True))
    tmp = run_dir / "config.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(plain)))
    os.replace(tmp, run_dir / "config.yaml")


def resume_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint file to resume from (``last`` = this run dir's ``last.ckpt``), or None."""
    if not ckpt_path:
        return None
    if ckpt_path == LAST:
        path = run_dir / CHECKPOINT_DIR / LAST_NAME
        if not path.is_file():
            raise ConfigError(
                f"config key 'ckpt_path': 'last' but no run under {run_dir.parent} has "
                f"{CHECKPOINT_DIR}/{LAST_NAME}"
            )
        return str(path)
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config key 'ckpt_path': no such checkpoint: {path}")
    return str(path)


def build_module(cfg: DictConfig, augmentation: Any = None) -> SegmentationModule:
    """The LightningModule from ``cfg.model`` with the ``loss``/``optimizer``/``scheduler`` groups."""
    model_cfg = _plain(cfg.model)
    target = model_cfg.pop("_target_", None)
    if target not in (None, f"{SegmentationModule.__module__}.{SegmentationModule.__name__}"):
        raise ConfigError(f"config key 'model._target_': unsupported module {target!r}")
    return SegmentationModule(
        **model_cfg,
        loss=_plain(cfg.loss),
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.get("scheduler")),
        augmentation=augmentation,
    )


def build_callbacks(cfg: DictConfig, run_dir: Path, has_logger: bool = True) -> list[Callback]:
    """Callbacks from ``cfg.callbacks`` (a mapping name -> ``_target_`` node) plus the run report."""
    callbacks: list[Callback] = []
    for name, node in (cfg.get("callbacks") or {}).items():
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


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers: list[Logger] = []
    for name, node in (cfg.get("logger") or {}).items():
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


def train(cfg: DictConfig) -> float | None:
    """Fit and test as configured; return ``cfg.optimized_metric`` (None when not logged)."""
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), run_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    log.info("run directory: %s", run_dir)
    datamodule: LightningDataModule = instantiate(cfg.data)
    augmentation = getattr(datamodule, "augmentation", None)
    module = build_module(cfg, augmentation)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, run_dir, has_logger=bool(loggers))
    trainer: Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        save_resolved_config(cfg, run_dir)

    if cfg.get("train", True):
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best = _checkpoint_callback(trainer, cfg.get("optimized_metric"))
    best_path = best.best_model_path if best is not None else ""
    best_score = best.best_model_score if best is not None else None

    test_metrics: dict[str, float] = {}
    if cfg.get("test", True):
        if cfg.get("train", True):
            test_ckpt = best_path or None
            if not test_ckpt:
                log.warning("no best checkpoint: testing the weights at the end of training")
        else:
            test_ckpt = ckpt_path
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=False)
        test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    metric_name = cfg.get("optimized_metric")
    if not metric_name:
        return None
    if best is not None and best.monitor == metric_name and best_score is not None:
        return float(best_score)
    value = {**fit_metrics, **test_metrics}.get(metric_name)
    if value is None:
        log.warning("optimized_metric %s was not logged", metric_name)
    return value
