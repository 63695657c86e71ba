"""An exponential moving average of the weights, validated, checkpointed and tested.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` keeps the average beside the
weights being trained, swaps it in for validation (so ``best.ckpt`` is chosen on the average) and
saves it as the checkpoint's ``state_dict``, with the weights being trained under
``current_model_state`` so that a resumed run carries on from them.

One thing it gets wrong for a train-then-test run: when ``trainer.test(ckpt_path=best)`` reloads
the checkpoint after ``fit``, the callback still holds its average model and restores
``current_model_state`` over ``state_dict``, so the test would score the raw weights of that epoch
while validation chose, and ``predict.py`` maps with, the average. :class:`WeightEMA` restores its
state only when fitting; every other stage uses the checkpoint's ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class WeightEMA(EMAWeightAveraging):
    """``EMAWeightAveraging`` whose average is what test and predict use (module docstring).

    ``decay`` is the weight of the old average at each update: 0.99 forgets with a half-life of
    about 69 updates. ``update_starting_at_step`` starts the average from the weights of that
    step instead of the random initialisation. ``use_buffers`` averages the batch-norm statistics
    too (Lightning's default); ``device`` keeps the average elsewhere (``"cpu"`` to spare GPU
    memory)."""

    def __init__(
        self,
        decay: float = 0.99,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
        device: str | None = None,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1) (got {decay})")
        if update_every_n_steps < 1:
            raise ValueError(f"update_every_n_steps must be >= 1 (got {update_every_n_steps})")
        if update_starting_at_step is not None and update_starting_at_step < 0:
            raise ValueError(
                f"update_starting_at_step must be >= 0 (got {update_starting_at_step})"
            )
        super().__init__(
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
            use_buffers=use_buffers,
            device=device,
        )
        self.decay = decay

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
