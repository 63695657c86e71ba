"""The LightningModule ``trainer.predict`` runs: the trained model's burned probability per tile.

It wraps the module rebuilt from the checkpoint and calls its ``forward`` on raw tiles (NaN =
nodata; the model applies its own saved normalization), so the training module's batch hooks
(augmentation) never touch prediction.

Test-time augmentation (``tta``) averages the probabilities of the tile seen through several
symmetries of the square, each mapped back before averaging: ``flip`` the four of the
horizontal and vertical mirrors (identity, either mirror, both = a half turn), ``d4`` all eight
(those and the quarter turns with their mirrors). The layers are per-pixel changes with no
preferred direction, so a burn seen mirrored or turned is still a burn; averaging the views
cancels part of the network's orientation-dependent errors at 4x or 8x the compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from firedpy_nrt.errors import DataError, first_line

#: test-time augmentations (the names predict.py's ``tta`` accepts, config.predict.TTAS): the
#: symmetries of the square whose views are averaged, each as (quarter turns, mirror the
#: columns), applied as rot90 after the mirror
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flip": ((0, False), (0, True), (2, True), (2, False)),  # identity, h, v, h+v (= half turn)
    "d4": tuple((k, m) for k in range(4) for m in (False, True)),
}


class TilePredictor(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, tta: str = "none") -> None:
        super().__init__()
        if tta not in TTA_VIEWS:
            raise ValueError(f"unknown tta {tta!r} (choose from {', '.join(TTA_VIEWS)})")
        self.model = model
        self.views = TTA_VIEWS[tta]

    def _probability(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model(image)
        if isinstance(logits, dict):  # torchvision segmentation models return {"out": ...}
            logits = logits["out"]
        return torch.sigmoid(logits.float())[:, 0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Burned probability ``[B, H, W]`` (float32) of raw tiles ``[B, C, H, W]``, averaged over
        the test-time views (each turned back to the tile's orientation)."""
        if len(self.views) == 1:
            return self._probability(image)
        total = None
        for turns, mirror in self.views:
            view = image.flip(-1) if mirror else image
            prob = self._probability(torch.rot90(view, turns, dims=(-2, -1)))
            prob = torch.rot90(prob, -turns, dims=(-2, -1))
            prob = prob.flip(-1) if mirror else prob
            total = prob if total is None else total + prob
        return total / len(self.views)

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
