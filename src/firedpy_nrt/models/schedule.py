"""A learning-rate schedule that spans the training budget, whatever ends it first.

``trainer.max_time`` stops a run after a wall time, ``max_epochs``/``max_steps`` after a count.
An epoch-based cosine (``scheduler=cosine``) only anneals when the epochs it was told about fit
the time; on a slower or busier machine the run is cut while the rate is still high, and the
weights it keeps are those of a half-finished schedule. :class:`WarmupCosine` follows the
*progress* of the run instead: the larger of the optimizer steps done over the steps planned
(``trainer.estimated_stepping_batches``) and the training time spent over ``max_time`` (the
clock of Lightning's ``Timer``, the one that stops the run, validation included, restored on
resume). It is stepped after every optimizer step, so the rate reaches its floor when the budget
ends on any machine, at any speed.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Timer
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from firedpy_nrt.config import require


def fit_progress(trainer: Any) -> float:
    """Fraction of the training budget spent, in [0, 1]: steps or time, whichever is further.

    0 when the run has neither a finite step count nor a time limit (nothing to span)."""
    fractions = []
    planned = trainer.estimated_stepping_batches
    if math.isfinite(planned) and planned > 0:
        fractions.append(trainer.global_step / planned)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None:
        remaining = timer.time_remaining()
        if remaining is not None:
            elapsed = timer.time_elapsed()
            budget = elapsed + remaining
            if budget > 0:
                fractions.append(elapsed / budget)
    return min(1.0, max(fractions, default=0.0))


class WarmupCosine(LRScheduler):
    """Linear warm-up then cosine decay over the run's progress (:func:`fit_progress`).

    Each group's rate is ``base * f``, with ``f`` rising linearly from ``final_ratio`` to 1 over
    the first ``warmup`` of the budget, then falling along a half cosine to ``final_ratio`` at
    its end. Lightning steps it per optimizer step (``interval``); :meth:`follow` gives it the
    trainer whose progress it reads (until then the progress is 0)."""

    #: how Lightning steps it
    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        warmup: float = 0.05,
        final_ratio: float = 0.01,
        last_epoch: int = -1,
    ) -> None:
        require(0 <= warmup < 1, "warmup", f"must be in [0, 1) (got {warmup!r})")
        require(0 <= final_ratio <= 1, "final_ratio", f"must be in [0, 1] (got {final_ratio!r})")
        self.warmup = float(warmup)
        self.final_ratio = float(final_ratio)
        self._trainer: Any = None
        super().__init__(optimizer, last_epoch)

    def follow(self, trainer: Any) -> None:
        self._trainer = trainer

    def progress(self) -> float:
        return fit_progress(self._trainer) if self._trainer is not None else 0.0

    def factor(self, progress: float) -> float:
        lo = self.final_ratio
        if progress < self.warmup:
            return lo + (1 - lo) * progress / self.warmup
        span = (progress - self.warmup) / (1 - self.warmup)
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, span)))

    def get_lr(self) -> list[float]:
        f = self.factor(self.progress())
        return [base * f for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # The trainer is not state: a checkpoint holds plain values only.
        return {k: v for k, v in super().state_dict().items() if k != "_trainer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        trainer = self._trainer
        super().load_state_dict(state_dict)
        self._trainer = trainer
