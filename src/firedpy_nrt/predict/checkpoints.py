"""What a training checkpoint holds for prediction: hyperparameters, input channels, fire split,
and the module rebuilt from it. Which checkpoint ``ckpt=best|last|PATH`` means is
:func:`firedpy_nrt.train.runs.find_checkpoint`'s business.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from firedpy_nrt.errors import ConfigError, DataError, first_line


@dataclass
class CheckpointInfo:
    """What prediction needs from a checkpoint besides the weights."""

    path: Path
    hparams: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    label_threshold: float | None = None  # the training data's (datamodule state)
    chip_size: int | None = None  # the training chips' edge in pixels (datamodule state)

    @property
    def channels(self) -> list[str] | None:
        """The input layers the model was trained on, by name (None when not recorded)."""
        value = self.hparams.get("channels")
        return [str(c) for c in value] if isinstance(value, (list, tuple)) else None

    @property
    def threshold(self) -> float | None:
        value = self.hparams.get("threshold")
        return float(value) if isinstance(value, (int, float)) else None


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """Hyperparameters and the datamodule's fire split of a checkpoint (memory-mapped, weights
    unread). Lightning stores the datamodule's ``state_dict`` under its class name."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        first = first_line(exc)
        raise DataError(f"checkpoint {path} cannot be read ({first})") from None
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise DataError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict)")
    hparams = raw.get("hyper_parameters") or {}
    states = [v for v in raw.values() if isinstance(v, dict) and isinstance(v.get("splits"), dict)]
    splits = states[0]["splits"] if states else {}
    label_threshold = states[0].get("label_threshold") if states else None
    chip_size = states[0].get("chip_size") if states else None
    return CheckpointInfo(
        path=Path(path),
        hparams=dict(hparams),
        splits={k: [str(i) for i in v] for k, v in dict(splits).items() if v is not None},
        label_threshold=float(label_threshold) if label_threshold is not None else None,
        chip_size=int(chip_size) if isinstance(chip_size, int) and chip_size > 0 else None,
    )


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
        first = first_line(exc)
        raise DataError(f"checkpoint {path} does not load into {module_class} ({first})") from None
    module.eval()
    return module
