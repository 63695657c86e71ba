"""Interim stand-ins for ``firedpy_nrt.data.transforms`` (owner: data) until it lands on main.

Same contract as interface 6 of the brief: ``Normalize`` (mean/std buffers, NaN -> 0 after
normalising, plus one validity channel per layer) and a joint flip/rot90 batch augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, num_layers: int = 3) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.register_buffer("mean", torch.zeros(num_layers))
        self.register_buffer("std", torch.ones(num_layers))

    @property
    def out_channels(self) -> int:
        return 2 * self.num_layers

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp(min=1e-6))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        valid = torch.isfinite(image)
        x = (image - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        x = torch.where(valid, x, torch.zeros_like(x))
        return torch.cat([x, valid.to(x.dtype)], dim=1)


class BatchAugmentation(nn.Module):
    def __init__(self, hflip: bool = True, vflip: bool = True, rot90: bool = True) -> None:
        super().__init__()
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90

    def forward(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hflip and torch.rand(()) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        if self.vflip and torch.rand(()) < 0.5:
            image, label = image.flip(-2), label.flip(-2)
        if self.rot90:
            k = int(torch.randint(0, 4, ()))
            image, label = torch.rot90(image, k, (-2, -1)), torch.rot90(label, k, (-2, -1))
        return image, label
