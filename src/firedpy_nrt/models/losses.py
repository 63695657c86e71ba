"""Segmentation losses on logits that ignore label 255 (nodata is not a label).

Every loss takes raw logits ``[B, 1, H, W]`` (or ``[B, H, W]``) and a uint8/long target
``[B, H, W]`` with 0 unburned, 1 burned and ``ignore_index`` for pixels that count nowhere:
they get exactly zero gradient. Logits go through log-sigmoid forms, never a clamp, so the
losses stay finite for any logit (the scripts we replace clamped logits into (0, 1)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from firedpy_nrt.config import require

IGNORE_INDEX = 255


def _flatten(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, float target in {0, 1} and float validity mask, all ``[B, H, W]``."""
    if logits.ndim == target.ndim + 1:
        logits = logits.squeeze(1)
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}")
    valid = target != ignore_index
    y = torch.where(valid, target, torch.zeros_like(target)).to(logits.dtype)
    return logits, y, valid.to(logits.dtype)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # clamp(min=1): an all-ignored batch gives 0 (with a graph, zero gradients), not NaN
    return (values * valid).sum() / valid.sum().clamp(min=1.0)


class BCELoss(nn.Module):
    """Binary cross-entropy on logits; ``pos_weight`` > 1 weighs burned pixels up."""

    def __init__(self, pos_weight: float | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        require(pos_weight is None or pos_weight > 0, "pos_weight", "must be > 0 or null")
        self.pos_weight = pos_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y, valid = _flatten(logits, target, self.ignore_index)
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, dtype=x.dtype, device=x.device)
        loss = F.binary_cross_entropy_with_logits(
            x.float(), y.float(), pos_weight=pos_weight, reduction="none"
        )
        return _masked_mean(loss, valid.float())


class DiceLoss(nn.Module):
    """Soft Dice loss of the burned class over the whole batch (``1 - Dice``)."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        require(smooth >= 0, "smooth", "must be >= 0")
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y, valid = _flatten(logits, target, self.ignore_index)
        p = torch.sigmoid(x.float()) * valid.float()
        y = y.float()
        inter = (p * y).sum()
        denom = p.sum() + y.sum()
        return 1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth).clamp(min=1e-7)


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) averaged over valid pixels."""

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        require(alpha is None or 0 <= alpha <= 1, "alpha", "must be in [0, 1] or null")
        require(gamma >= 0, "gamma", "must be >= 0")
        self.alpha = alpha
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y, valid = _flatten(logits, target, self.ignore_index)
        x, y = x.float(), y.float()
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p = torch.sigmoid(x)
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * y + (1 - self.alpha) * (1 - y))
        return _masked_mean(loss, valid.float())


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * Dice``: pixel-wise and region overlap together."""

    def __init__(
        self,
        pos_weight: float | None = None,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        require(bce_weight >= 0, "bce_weight", "must be >= 0")
        require(dice_weight >= 0, "dice_weight", "must be >= 0")
        require(
            bce_weight + dice_weight > 0, "dice_weight", "bce_weight and dice_weight are both 0"
        )
        self.bce = BCELoss(pos_weight=pos_weight, ignore_index=ignore_index)
        self.dice = DiceLoss(smooth=smooth, ignore_index=ignore_index)
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, target) + self.dice_weight * self.dice(
            logits, target
        )
