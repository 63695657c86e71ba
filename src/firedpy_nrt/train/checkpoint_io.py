"""Checkpoints written beside their final name and renamed only when complete.

Lightning's ``TorchCheckpointIO`` opens the final ``best.ckpt`` / ``last.ckpt`` and writes into
it, so a full disk leaves a truncated file under the name every later step (resume, prediction)
trusts. Here the checkpoint goes to a temporary name in the same folder (:mod:`firedpy_nrt.atomic`)
and is renamed over the old one only once it is whole; a failed save (an ``OSError``, or the
``RuntimeError`` torch's writer raises on a full disk) is one line naming the file, and the
previous checkpoint is still there.
"""

from __future__ import annotations

import shutil
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
        except (OSError, RuntimeError) as exc:
            remove(tmp)
            kept = "the previous one is kept" if path.exists() else "nothing was written"
            raise DataError(
                f"cannot save checkpoint {path}: {_reason(exc, path)}; {kept}"
            ) from None
        finally:
            remove(tmp)


def _reason(exc: OSError | RuntimeError, path: Path) -> str:
    """Why a save failed, in words. torch's zip writer reports a full disk as a RuntimeError
    ("[enforce fail at inline_container.cc:...] . unexpected pos 51500736 vs 51500628", or
    "file write failed"), so that one says how much room the disk has left."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    torch_says = " ".join(str(exc).split()) or type(exc).__name__
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on its disk"
    except OSError:
        free = "free space unknown"
    return f"the write failed, is the disk full? ({free}; torch: {torch_says})"
