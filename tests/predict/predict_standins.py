"""Stand-in LightningModules that follow interface 7 (checkpoint -> ``forward(raw) -> logits``).

Their outputs are known maps, so tests can compute the expected probabilities and scores by hand.
Each keeps Normalize-style ``mean``/``std`` buffers of ``num_layers`` entries, like the real
``SegmentationModule``, so an input with another number of layers fails as it would there.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch


class _Base(pl.LightningModule):
    def __init__(self, num_layers: int = 3, threshold: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.register_buffer("mean", torch.zeros(num_layers))
        self.register_buffer("std", torch.ones(num_layers))

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        valid = torch.isfinite(x).to(x.dtype)
        return torch.cat([torch.nan_to_num(x, nan=0.0), valid], dim=1)


class ConstantModule(_Base):
    """Probability ``value`` everywhere, whatever the input."""

    def __init__(self, num_layers: int = 3, threshold: float = 0.5, value: float = 0.3) -> None:
        super().__init__(num_layers, threshold)
        self.save_hyperparameters()
        self.logit = math.log(value / (1 - value)) if 0 < value < 1 else (50.0 if value else -50.0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.normalize(image)
        return torch.full_like(x[:, :1], self.logit)


class LumModule(_Base):
    """Logit = the raw luminance change (channel 0; nodata counts as 0)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.normalize(image)[:, :1]  # mean 0, std 1: the raw value


class ConvModule(_Base):
    """A 1x1 convolution over the normalised layers and validity channels (real weights)."""

    def __init__(self, num_layers: int = 3, threshold: float = 0.5) -> None:
        super().__init__(num_layers, threshold)
        self.conv = torch.nn.Conv2d(2 * num_layers, 1, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(self.normalize(image))


class ContextModule(_Base):
    """Logit = the luminance change minus its mean magnitude over the whole input tile (nodata as
    0), as a network with global pooling sees it: its map depends on what the tile holds around
    the scene."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        lum = self.normalize(image)[:, :1]
        return lum - lum.abs().mean(dim=(-2, -1), keepdim=True)
