"""Run the entry points as users do: ``python train.py ...`` in a subprocess with our src/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[2]

#: overrides that make every test run tiny, on CPU, without a progress bar (plus the data dir)
FAST = [
    "data=synthetic",
    "data.chip_size=32",
    "data.stride=32",
    "data.batch_size=2",
    "data.min_valid_fraction=0.3",
    "model=deeplabv3_mobilenet",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
]


def run_script(
    script: str, args: Sequence[str], cwd: Path, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` (an entry point at the repository root) with our src/ first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_train(args: Sequence[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in a subprocess."""
    return run_script("train.py", args, cwd, timeout)


class CrashAt(Callback):
    """Raises at a given global step: a run killed in mid-epoch (tests only)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


class RecordTestWeights(Callback):
    """Saves the weights the test step starts with to ``path`` (tests only)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_test_start(self, trainer, pl_module) -> None:
        import torch

        torch.save({k: v.detach().clone() for k, v in pl_module.state_dict().items()}, self.path)
