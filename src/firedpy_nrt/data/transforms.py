"""Batch transforms run on the device after transfer: normalization and augmentation.

:class:`Normalize` turns a raw image ``[B, C, H, W]`` (NaN = nodata) into ``[B, 2C, H, W]``: C
normalised value channels with nodata filled by 0 (the mean) and C validity channels (1 where the
layer has data), so the model sees where dNBR is cloudy and can still map burned area from SAR
there. Its ``mean``/``std`` are buffers, saved in checkpoints and reused by prediction.

:class:`BatchAugment` draws a zoom, flips and 90-degree rotations per sample and applies the same
one to image and label, and photometric changes that teach the model to map without the optical layer
and across SAR responses: dNBR blanked in a random rectangle or entirely (NaN, so its validity
channel says so), per-sample SAR gain, offset and sign, a smooth moisture field on the luminance
change, and noise. Photometric changes touch finite values only (nodata stays nodata) and never
the label. It is a no-op in eval mode, so calling it in ``on_after_batch_transfer`` augments
training batches only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from firedpy_nrt.data.raster import IGNORE

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
    shape). With probability ``scale_p`` a sample is zoomed by ``(1 + scale) ** U(-1, 1)``
    (log-uniform) before the photometric changes, so noise and moisture stay at the native pixel
    scale: a zoom in enlarges a random crop to the chip (image bilinear, label nearest); a zoom
    out shrinks the chip (area average) into a random place of a nodata chip (NaN, label 255).
    Nodata is resampled as a weight, so it never bleeds into values: a pixel is valid where most
    of what it was resampled from was. Active in training mode only (``module.train()``); eval
    mode returns its inputs.
    """

    def __init__(
        self,
        hflip: bool = True,
        vflip: bool = True,
        rot90: bool = True,
        p: float = 0.5,
        *,
        channels: Sequence[str] = (),
        dnbr_drop_p: float = 0.0,
        dnbr_blank_p: float = 0.0,
        sar_gain: float = 0.0,
        sar_offset: float = 0.0,
        lum_sign_p: float = 0.0,
        moisture_db: float = 0.0,
        noise_std: float = 0.0,
        scale: float = 0.0,
        scale_p: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (
            ("p", p),
            ("dnbr_drop_p", dnbr_drop_p),
            ("dnbr_blank_p", dnbr_blank_p),
            ("lum_sign_p", lum_sign_p),
            ("scale_p", scale_p),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name, value in (
            ("sar_gain", sar_gain),
            ("sar_offset", sar_offset),
            ("moisture_db", moisture_db),
            ("noise_std", noise_std),
            ("scale", scale),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.hflip, self.vflip, self.rot90, self.p = bool(hflip), bool(vflip), bool(rot90), float(p)
        names = list(channels)
        self.dnbr = names.index("dnbr") if "dnbr" in names else None
        self.lum = names.index("lum_change") if "lum_change" in names else None
        self.sar = [names.index(c) for c in ("lum_change", "coh_change") if c in names]
        self.dnbr_drop_p, self.dnbr_blank_p = float(dnbr_drop_p), float(dnbr_blank_p)
        self.sar_gain, self.sar_offset = float(sar_gain), float(sar_offset)
        self.lum_sign_p, self.noise_std = float(lum_sign_p), float(noise_std)
        self.moisture_db = float(moisture_db)
        self.scale, self.scale_p = float(scale), float(scale_p)

    @classmethod
    def from_config(cls, cfg: Any, channels: Sequence[str] = ()) -> BatchAugment:
        """Build from ``data.augment`` (a dataclass, DictConfig or dict with the same keys) for
        images whose channels are the layers named in ``channels``."""
        get = cfg.get if isinstance(cfg, Mapping) else lambda k, d=None: getattr(cfg, k, d)
        return cls(
            hflip=get("hflip", True),
            vflip=get("vflip", True),
            rot90=get("rot90", True),
            p=get("p", 0.5),
            channels=channels,
            dnbr_drop_p=get("dnbr_drop_p", 0.0),
            dnbr_blank_p=get("dnbr_blank_p", 0.0),
            sar_gain=get("sar_gain", 0.0),
            sar_offset=get("sar_offset", 0.0),
            lum_sign_p=get("lum_sign_p", 0.0),
            moisture_db=get("moisture_db", 0.0),
            noise_std=get("noise_std", 0.0),
            scale=get("scale", 0.0),
            scale_p=get("scale_p", 0.5),
        )

    @property
    def geometric(self) -> bool:
        return self.p > 0 and (self.hflip or self.vflip or self.rot90)

    @property
    def zoom(self) -> bool:
        return self.scale > 0 and self.scale_p > 0

    @property
    def photometric(self) -> bool:
        dnbr = self.dnbr is not None and (self.dnbr_drop_p > 0 or self.dnbr_blank_p > 0)
        sar = bool(self.sar) and (self.sar_gain > 0 or self.sar_offset > 0)
        lum = self.lum is not None and (self.lum_sign_p > 0 or self.moisture_db > 0)
        return dnbr or sar or lum or self.noise_std > 0

    @property
    def enabled(self) -> bool:
        return self.geometric or self.photometric or self.zoom

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
        if self.zoom:
            image, label = self._zoom(image, label)
        if self.photometric:
            image = self._photometric(image)
        if not self.geometric:
            return image, label
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

    def _zoom(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = image.shape
        factors = (1.0 + self.scale) ** (torch.rand(b) * 2 - 1)
        picked = (torch.rand(b) < self.scale_p).tolist()
        where = torch.rand(b, 2).tolist()  # the crop's or the shrunk chip's place
        for i in range(b):
            f = float(factors[i])
            if not picked[i]:
                continue
            if f >= 1.0:  # enlarge a crop of h / f x w / f to the chip
                ch, cw = max(1, round(h / f)), max(1, round(w / f))
                r0, c0 = round(where[i][0] * (h - ch)), round(where[i][1] * (w - cw))
                image[i] = _resample(image[i, :, r0 : r0 + ch, c0 : c0 + cw], (h, w), "bilinear")
                label[i] = _nearest(label[i, r0 : r0 + ch, c0 : c0 + cw], (h, w))
            else:  # shrink the chip to h * f x w * f, nodata around it
                sh, sw = max(1, round(h * f)), max(1, round(w * f))
                r0, c0 = round(where[i][0] * (h - sh)), round(where[i][1] * (w - sw))
                small, small_label = (
                    _resample(image[i], (sh, sw), "area"),
                    _nearest(label[i], (sh, sw)),
                )
                image[i] = float("nan")
                label[i] = IGNORE
                image[i, :, r0 : r0 + sh, c0 : c0 + sw] = small
                label[i, r0 : r0 + sh, c0 : c0 + sw] = small_label
        return image, label

    def _photometric(self, image: Tensor) -> Tensor:
        b, _, h, w = image.shape
        dev, dt = image.device, image.dtype

        def per_sample(values: Tensor) -> Tensor:
            return values.to(device=dev, dtype=dt).view(b, 1, 1)

        nan = torch.tensor(float("nan"), device=dev, dtype=dt)
        # Scale of each channel in each sample (its finite pixels), so offsets and noise are
        # relative: the layers come in different units.
        finite = torch.isfinite(image)
        count = finite.sum(dim=(-2, -1)).clamp(min=1)
        values = torch.where(finite, image, torch.zeros((), device=dev, dtype=dt))
        mean = values.sum(dim=(-2, -1)) / count
        var = (torch.where(finite, image - mean[..., None, None], 0.0) ** 2).sum(dim=(-2, -1))
        std = (var / count).sqrt().clamp(min=1e-6)
        for c in self.sar:
            channel = image[:, c]
            if self.sar_gain > 0:
                # log-uniform: halving and doubling the response are equally likely
                gain = (1.0 + self.sar_gain) ** (torch.rand(b) * 2 - 1)
                channel = channel * per_sample(gain)
            if self.sar_offset > 0:
                shift = (torch.rand(b) * 2 - 1) * self.sar_offset
                channel = channel + per_sample(shift) * std[:, c].view(b, 1, 1)
            image[:, c] = channel
        if self.lum is not None and self.lum_sign_p > 0:
            flip = torch.rand(b) < self.lum_sign_p
            sign = torch.where(flip, -1.0, 1.0)
            image[:, self.lum] = image[:, self.lum] * per_sample(sign)
        if self.lum is not None and self.moisture_db > 0:
            image[:, self.lum] = image[:, self.lum] + self._moisture(b, h, w).to(dev, dt)
        if self.noise_std > 0:
            noise = torch.randn(image.shape, device=dev, dtype=dt)
            image = image + noise * self.noise_std * std[..., None, None]
        if self.dnbr is not None and (self.dnbr_drop_p > 0 or self.dnbr_blank_p > 0):
            drop = torch.rand(b) < self.dnbr_drop_p
            blank = (torch.rand(b) < self.dnbr_blank_p) & ~drop
            rows = torch.arange(h).view(1, h, 1)
            cols = torch.arange(w).view(1, 1, w)
            bh = (torch.rand(b) * 0.5 + 0.25) * h  # a rectangle of 25-75 % of each side
            bw = (torch.rand(b) * 0.5 + 0.25) * w
            r0 = torch.rand(b) * (h - bh)
            c0 = torch.rand(b) * (w - bw)
            inside = (
                (rows >= r0.view(b, 1, 1))
                & (rows < (r0 + bh).view(b, 1, 1))
                & (cols >= c0.view(b, 1, 1))
                & (cols < (c0 + bw).view(b, 1, 1))
            )
            hide = (blank.view(b, 1, 1) & inside) | drop.view(b, 1, 1)
            image[:, self.dnbr] = torch.where(hide.to(dev), nan, image[:, self.dnbr])
        return image

    def _moisture(self, b: int, h: int, w: int) -> Tensor:
        """A smooth random field per sample, in dB: soil moisture or rain changing between the
        two dates shifts the backscatter of whole slopes and valleys, burned or not, over
        distances larger than a chip. Bicubic through 1x1 (an offset), 2x2 (a tilt) or 3x3
        (one rise or dip) Gaussian control points, scaled by U(0, moisture_db)."""
        cells = int(torch.randint(1, 4, (1,)))
        grid = torch.randn(b, 1, cells, cells)
        field = nn.functional.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)
        return field[:, 0] * (torch.rand(b) * self.moisture_db).view(b, 1, 1)


def _resample(image: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``[C, h, w]`` (NaN = nodata) resampled to ``[C, *size]``: values and validity resampled
    alike, values divided by validity, nodata where less than half the weight was valid."""
    valid = torch.isfinite(image)
    filled = torch.where(valid, image, torch.zeros((), dtype=image.dtype, device=image.device))
    kw = {"align_corners": False} if mode == "bilinear" else {}
    both = torch.cat([filled, valid.to(image.dtype)])[None]
    out = nn.functional.interpolate(both, size=size, mode=mode, **kw)[0]
    values, weight = out[: image.shape[0]], out[image.shape[0] :]
    nan = torch.tensor(float("nan"), dtype=image.dtype, device=image.device)
    return torch.where(weight > 0.5, values / weight.clamp(min=1e-6), nan)


def _nearest(label: Tensor, size: tuple[int, int]) -> Tensor:
    """``[h, w]`` labels resampled to ``size`` by the nearest pixel (values kept exactly)."""
    out = nn.functional.interpolate(label[None, None].float(), size=size, mode="nearest-exact")
    return out[0, 0].to(label.dtype)


def _apply(image: Tensor, label: Tensor, pick: Tensor, op: Any) -> tuple[Tensor, Tensor]:
    idx = pick.nonzero().flatten()
    if idx.numel() == 0:
        return image, label
    idx = idx.to(image.device)
    image[idx] = op(image[idx])
    label[idx] = op(label[idx])
    return image, label
