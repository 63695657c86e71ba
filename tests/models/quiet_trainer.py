"""A CPU Lightning Trainer that writes nothing but what a test asks for: no logger, checkpoints,
progress bar or model summary."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


def quiet_trainer(tmp_path: Any, **kw: Any) -> pl.Trainer:
    args: dict[str, Any] = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    args.update(kw)
    return pl.Trainer(**args)
