"""Batch transforms run on the device after transfer: normalization and augmentation.

:class:`Normalize` turns a raw image ``[B, C, H, W]`` (NaN = nodata) into ``[B, 2C, H, W]``: C
normalised value channels with nodata filled by 0 (the mean) and C validity channels (1 where the
layer has data), so the model sees where dNBR is cloudy and can still map burned area from SAR
there. Its ``mean``/``std`` are buffers, saved in checkpoints and reused by prediction.

:class:`BatchAugment` draws flips and 90-degree rotations per sample and applies the same one to
image and label; it is a no-op in eval mode, so calling it in ``on_after_batch_transfer`` augments
training batches only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: A std below this is treated as 1 (a constant channel), so normalising never divides by ~0.
MIN_STD = 1e-6


class Normalize(nn.Module):
    """Raw ``[B, C, H, W]`` with NaN -> normalised values (NaN -> 0) + C validity channels."""

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        num_layers: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.num_layers = int(num_layers)
        self.register_buffer("mean", torch.zeros(self.num_layers, dtype=torch.float32))
        self.register_buffer("std", torch.ones(self.num_layers, dtype=torch.float32))
        if mean is not None or std is not None:
            self.set_stats(
                mean if mean is not None else [0.0] * self.num_layers,
                std if std is not None else [1.0] * self.num_layers,
            )

    @property
    def out_channels(self) -> int:
        """Channels the model receives: values and validity, ``2 * num_layers``."""
        return 2 * self.num_layers

    def set_stats(
        self, mean: Sequence[float] | Mapping[str, Any], std: Sequence[float] | None = None
    ) -> None:
        """Fill the buffers from ``(mean, std)`` or from a ``{"mean": [...], "std": [...]}`` dict."""
        if isinstance(mean, Mapping):
            mean, std = mean["mean"], mean["std"]
        if std is None:
            raise ValueError("set_stats needs std")
        m = torch.as_tensor(list(mean), dtype=torch.float32)
        s = torch.as_tensor(list(std), dtype=torch.float32)
        if m.shape != (self.num_layers,) or s.shape != (self.num_layers,):
            raise ValueError(
                f"stats need {self.num_layers} values each, got mean {tuple(m.shape)} "
                f"and std {tuple(s.shape)}"
            )
        if not (torch.isfinite(m).all() and torch.isfinite(s).all()):
            raise ValueError(f"stats must be finite, got mean {m.tolist()} std {s.tolist()}")
        s = torch.where(s.abs() < MIN_STD, torch.ones_like(s), s.abs())
        self.mean.copy_(m.to(self.mean.device))
        self.std.copy_(s.to(self.std.device))

    def forward(self, image: Tensor) -> Tensor:
        if image.ndim != 4 or image.shape[1] != self.num_layers:
            raise ValueError(
                f"Normalize expects [B, {self.num_layers}, H, W], got {tuple(image.shape)}"
            )
        valid = torch.isfinite(image)
        mean = self.mean.to(image.dtype).view(1, -1, 1, 1)
        std = self.std.to(image.dtype).view(1, -1, 1, 1)
        values = torch.where(
            valid, (image - mean) / std, torch.zeros((), dtype=image.dtype, device=image.device)
        )
        return torch.cat([values, valid.to(values.dtype)], dim=1)


class BatchAugment(nn.Module):
    """Random per-sample flips and 90-degree rotations, applied jointly to image and label.

    ``hflip``/``vflip`` flip a sample with probability ``p``; ``rot90`` rotates it by k * 90
    degrees with k uniform in 0..3 (only 0 or 180 degrees for non-square chips, which keeps the
    shape). Active in training mode only (``module.train()``); eval mode returns its inputs.
    """

    def __init__(
        self, hflip: bool = True, vflip: bool = True, rot90: bool = True, p: float = 0.5
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.hflip, self.vflip, self.rot90, self.p = bool(hflip), bool(vflip), bool(rot90), float(p)

    @classmethod
    def from_config(cls, cfg: Any) -> BatchAugment:
        """Build from ``data.augment`` (a dataclass, DictConfig or dict with the same keys)."""
        get = cfg.get if isinstance(cfg, Mapping) else lambda k, d=None: getattr(cfg, k, d)
        return cls(
            hflip=get("hflip", True),
            vflip=get("vflip", True),
            rot90=get("rot90", True),
            p=get("p", 0.5),
        )

    @property
    def enabled(self) -> bool:
        return self.p > 0 and (self.hflip or self.vflip or self.rot90)

    def forward(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training or not self.enabled:
            return image, label
        if (
            image.ndim != 4
            or label.ndim != 3
            or image.shape[0] != label.shape[0]
            or (image.shape[-2:] != label.shape[-2:])
        ):
            raise ValueError(
                f"BatchAugment expects image [B, C, H, W] and label [B, H, W], got "
                f"{tuple(image.shape)} and {tuple(label.shape)}"
            )
        b, square = image.shape[0], image.shape[-1] == image.shape[-2]
        # Draw on the CPU (the global generator seeded by Lightning) and index on the device.
        image, label = image.clone(), label.clone()
        if self.hflip:
            pick = torch.rand(b) < self.p
            image, label = _apply(image, label, pick, lambda t: t.flip(-1))
        if self.vflip:
            pick = torch.rand(b) < self.p
            image, label = _apply(image, label, pick, lambda t: t.flip(-2))
        if self.rot90:
            if square:
                k = torch.randint(0, 4, (b,))
                k[torch.rand(b) >= self.p] = 0
            else:
                k = torch.where(torch.rand(b) < self.p, 2, 0)
            for turns in (1, 2, 3):
                image, label = _apply(
                    image, label, k == turns, lambda t, n=turns: torch.rot90(t, n, dims=(-2, -1))
                )
        return image, label


def _apply(image: Tensor, label: Tensor, pick: Tensor, op: Any) -> tuple[Tensor, Tensor]:
    idx = pick.nonzero().flatten()
    if idx.numel() == 0:
        return image, label
    idx = idx.to(image.device)
    image[idx] = op(image[idx])
    label[idx] = op(label[idx])
    return image, label
