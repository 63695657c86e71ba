"""Streaming per-channel statistics: exact against numpy, stable with large values, NaN-aware."""

from __future__ import annotations

import numpy as np
import pytest

from firedpy_nrt.data.stats import RunningStats, channel_stats
from firedpy_nrt.errors import DataError


def test_blocks_match_numpy_over_valid_pixels():
    rng = np.random.default_rng(0)
    x = rng.normal([[[[5.0]], [[-2.0]], [[0.1]]]], [[[[3.0]], [[0.5]], [[0.01]]]], (37, 3, 8, 8))
    x = x.astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[3, 2] = np.inf
    idx = rng.choice(37, 20, replace=False)
    got = channel_stats(x, idx, block=3)
    sel = x[np.sort(idx)].astype(np.float64)
    sel[~np.isfinite(sel)] = np.nan
    np.testing.assert_allclose(got["mean"], np.nanmean(sel, axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(got["std"], np.nanstd(sel, axis=(0, 2, 3)), rtol=1e-10)
    assert got["count"] == [int(np.isfinite(sel[:, c]).sum()) for c in range(3)]


def test_large_offset_keeps_precision():
    # float32 sums of squares would lose the 0.001 spread around 1e4 entirely
    x = (1e4 + np.random.default_rng(1).normal(0, 1e-3, (500, 1, 4, 4))).astype(np.float64)
    acc = RunningStats(1)
    for b in range(0, 500, 7):
        acc.update(x[b : b + 7])
    assert acc.std[0] == pytest.approx(np.std(x), rel=1e-6)


def test_channel_without_valid_pixels_is_an_error():
    x = np.zeros((2, 3, 4, 4), np.float32)
    x[:, 1] = np.nan
    with pytest.raises(DataError, match="coh_change"):
        channel_stats(x, channel_names=["lum_change", "coh_change", "dnbr"])
    with pytest.raises(DataError):
        channel_stats(x, [])
