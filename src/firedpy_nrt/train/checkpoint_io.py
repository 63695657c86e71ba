"""Checkpoints written beside their final name and renamed only when complete.

Lightning's ``TorchCheckpointIO`` opens the final ``best.ckpt`` / ``last.ckpt`` and writes into
it, so a full disk leaves a truncated file under the name every later step (resume, prediction)
trusts. Here the checkpoint goes to a temporary name in the same folder (:mod:`firedpy_nrt.atomic`)
and is renamed over the old one only once it is whole; a failed save is one line naming the file,
and the previous checkpoint is still there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from firedpy_nrt.atomic import publish, remove, temporary
from firedpy_nrt.errors import DataError


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic (see the module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary(path)
        try:
            torch.save(checkpoint, tmp)
            publish(tmp, path)
        except OSError as exc:
            remove(tmp)
            kept = "the previous one is kept" if path.exists() else "nothing was written"
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise DataError(f"cannot save checkpoint {path}: {reason}; {kept}") from None
        finally:
            remove(tmp)
