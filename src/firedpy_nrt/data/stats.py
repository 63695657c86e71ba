"""Per-channel mean and standard deviation over the valid pixels of a set of chips.

Streams the chips in blocks (a memory-mapped cache never has to fit in memory) and merges each
block's count, mean and sum of squared deviations in float64 (Chan et al.'s parallel update), so
large values such as luminance change in dB do not lose precision the way a float32 sum of
squares would. NaN (nodata) and infinite values are left out per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from firedpy_nrt.errors import DataError


class RunningStats:
    """Streaming per-channel count, mean and M2 (sum of squared deviations) in float64."""

    def __init__(self, channels: int) -> None:
        self.count = np.zeros(channels, dtype=np.float64)
        self.mean = np.zeros(channels, dtype=np.float64)
        self.m2 = np.zeros(channels, dtype=np.float64)

    def update(self, block: np.ndarray) -> None:
        """Add a block ``[N, C, H, W]`` (or ``[C, H, W]``); non-finite values are skipped."""
        x = np.asarray(block, dtype=np.float64)
        if x.ndim == 3:
            x = x[None]
        x = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
        valid = np.isfinite(x)
        n_b = valid.sum(axis=1).astype(np.float64)
        safe = np.where(valid, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.where(n_b > 0, safe.sum(axis=1) / n_b, 0.0)
        dev = np.where(valid, x - mean_b[:, None], 0.0)
        m2_b = (dev * dev).sum(axis=1)
        n = self.count + n_b
        delta = mean_b - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n > 0, n_b / n, 0.0)
        self.mean = self.mean + delta * frac
        self.m2 = self.m2 + m2_b + delta * delta * self.count * frac
        self.count = n

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel (0 where a channel has < 2 values)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 1, np.sqrt(self.m2 / np.maximum(self.count, 1)), 0.0)


def channel_stats(
    images: np.ndarray,
    indices: Sequence[int] | np.ndarray | None = None,
    block: int = 64,
    channel_names: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """``{"mean": [...], "std": [...], "count": [...]}`` per channel over ``images[indices]``.

    ``images`` is ``[N, C, H, W]`` (a memory map is read ``block`` chips at a time). A channel
    with no valid pixel at all is a :class:`DataError`: normalising it would be meaningless.
    """
    idx = np.arange(images.shape[0]) if indices is None else np.sort(np.asarray(indices))
    if idx.size == 0:
        raise DataError("no chips to compute normalization statistics from")
    acc = RunningStats(images.shape[1])
    for b in range(0, idx.size, block):
        acc.update(images[idx[b : b + block]])
    empty = [i for i in range(images.shape[1]) if acc.count[i] == 0]
    if empty:
        names = [channel_names[i] if channel_names else str(i) for i in empty]
        raise DataError(
            f"channel(s) {', '.join(names)} have no valid pixel in the training chips; "
            "check those rasters' nodata"
        )
    return {
        "mean": [float(v) for v in acc.mean],
        "std": [float(v) for v in acc.std],
        "count": [int(v) for v in acc.count],
    }
