"""Which checkpoint ``ckpt=best|last|PATH`` and ``run_dir=PATH`` mean, and what it holds.

Training runs live in ``<log_dir>/train/runs/<timestamp>/`` and sweeps in
``<log_dir>/train/multiruns/<timestamp>/<job>/``, each with ``checkpoints/best.ckpt`` and
``checkpoints/last.ckpt``. ``best``/``last`` pick that file in ``run_dir`` when given, else in the
newest run (by its timestamp folder, then job number) that has it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from firedpy_nrt.errors import ConfigError, DataError

NAMED = ("best", "last")


def _run_key(ckpt: Path) -> tuple[str, int, str, float]:
    """Sort key of the run holding ``ckpt`` (``.../<run>/checkpoints/x.ckpt``): newest last."""
    run = ckpt.parent.parent
    job = run.name
    if run.parent.parent.name == "multiruns":  # multiruns/<timestamp>/<job>
        stamp = run.parent.name
        num = int(job) if job.isdigit() else -1
    else:  # runs/<timestamp>
        stamp, num, job = run.name, -1, ""
    return (stamp, num, job, ckpt.stat().st_mtime)


def find_runs(log_dir: Path, name: str) -> list[Path]:
    """Every ``<name>.ckpt`` of a training run or sweep job under ``log_dir``, oldest first."""
    root = Path(log_dir) / "train"
    found = [
        *root.glob(f"runs/*/checkpoints/{name}.ckpt"),
        *root.glob(f"multiruns/*/*/checkpoints/{name}.ckpt"),
    ]
    return sorted(found, key=_run_key)


def resolve_checkpoint(ckpt: str, run_dir: str | None, log_dir: str | Path) -> Path:
    """The checkpoint file that ``ckpt`` and ``run_dir`` name; DataError naming what is missing."""
    if ckpt in NAMED:
        if run_dir:
            path = Path(run_dir) / "checkpoints" / f"{ckpt}.ckpt"
            if not path.is_file():
                raise DataError(f"checkpoint {path} not found (run_dir={run_dir}, ckpt={ckpt})")
            return path
        runs = find_runs(Path(log_dir), ckpt)
        if not runs:
            raise DataError(
                f"checkpoint {ckpt}: no training run under {Path(log_dir) / 'train'} has "
                f"checkpoints/{ckpt}.ckpt (train first, or pass run_dir=PATH or ckpt=PATH)"
            )
        return runs[-1]
    path = Path(ckpt)
    if not path.is_absolute() and run_dir and (Path(run_dir) / path).is_file():
        path = Path(run_dir) / path
    if not path.is_file():
        raise DataError(f"checkpoint {ckpt} not found (ckpt is best, last or a .ckpt file)")
    return path


@dataclass
class CheckpointInfo:
    """What prediction needs from a checkpoint besides the weights."""

    path: Path
    hparams: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)

    @property
    def threshold(self) -> float | None:
        value = self.hparams.get("threshold")
        return float(value) if isinstance(value, (int, float)) else None


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """Hyperparameters and the ``firedpy_splits`` of a checkpoint (memory-mapped, weights unread)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"checkpoint {path} cannot be read ({first})") from None
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise DataError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict)")
    hparams = raw.get("hyper_parameters") or {}
    splits = raw.get("firedpy_splits") or {}
    return CheckpointInfo(
        path=Path(path),
        hparams=dict(hparams),
        splits={k: [str(i) for i in v] for k, v in dict(splits).items() if v is not None},
    )


def training_match_csv(ckpt: Path) -> Path | None:
    """The match CSV the checkpoint's training run read (``data.match_csv`` in the run's saved
    ``.hydra/config.yaml``), or None when the checkpoint is not in a run folder that says."""
    saved = Path(ckpt).resolve().parent.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None
    try:
        value = OmegaConf.select(OmegaConf.load(saved), "data.match_csv", default=None)
    except Exception:  # an unreadable or unresolvable saved config just gives no default
        return None
    return Path(str(value)) if value else None


def import_module_class(dotted: str) -> type:
    """The LightningModule class named ``package.module.Class`` (config key ``module_class``)."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"config key 'module_class': cannot import {dotted!r}") from exc


def load_module(path: Path, module_class: str) -> torch.nn.Module:
    """Rebuild the trained LightningModule from its checkpoint alone, on the CPU, in eval mode."""
    cls = import_module_class(module_class)
    try:
        module = cls.load_from_checkpoint(path, map_location="cpu")
    except Exception as exc:  # a checkpoint of another model raises KeyError/TypeError/RuntimeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"checkpoint {path} does not load into {module_class} ({first})") from None
    module.eval()
    return module
