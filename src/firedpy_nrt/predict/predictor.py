"""The LightningModule ``trainer.predict`` runs: the trained model's burned probability per tile.

It wraps the module rebuilt from the checkpoint and calls its ``forward`` on raw tiles (NaN =
nodata; the model applies its own saved normalization), so the training module's batch hooks
(augmentation) never touch prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from firedpy_nrt.errors import DataError, first_line


class TilePredictor(pl.LightningModule):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Burned probability ``[B, H, W]`` (float32) of raw tiles ``[B, C, H, W]``."""
        logits = self.model(image)
        if isinstance(logits, dict):  # torchvision segmentation models return {"out": ...}
            logits = logits["out"]
        return torch.sigmoid(logits.float())[:, 0]

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Probabilities of the batch's tiles; a tile whose luminance change is all nodata (no
        map there: its pixels end as nodata whatever the model says) skips the model."""
        image, valid = batch["image"], batch.get("valid")
        if valid is None or bool(valid.all()):
            return self(image)
        out = torch.zeros(
            image.shape[0], *image.shape[2:], dtype=torch.float32, device=image.device
        )
        if bool(valid.any()):
            out[valid] = self(image[valid])
        return out


def check_channels(
    predictor: TilePredictor, channels: Sequence[str], tile: int, ckpt: Path
) -> None:
    """Run one blank tile of ``channels`` through the model: a checkpoint for other inputs fails
    here, in one line."""
    image = torch.full((1, len(channels), tile, tile), float("nan"))
    try:
        with torch.no_grad():
            out = predictor(image)
    except (RuntimeError, ValueError, IndexError) as exc:
        first = first_line(exc)
        raise DataError(
            f"checkpoint {ckpt} does not fit the inputs: they have {len(channels)} layers "
            f"({', '.join(channels)}; {first})"
        ) from None
    if tuple(out.shape) != (1, tile, tile):
        raise DataError(
            f"checkpoint {ckpt} gives output of shape {tuple(out.shape)} for a {tile}x{tile} "
            f"tile of {len(channels)} layers (expected one map of the tile's size)"
        )
