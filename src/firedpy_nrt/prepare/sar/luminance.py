"""Luminance (backscatter) change from OPERA RTC-S1 bursts: ``10 * log10(post / pre)``.

The output lattice is the RTC's own (30 m, the UTM zone most bursts use): the event's outline,
buffered by ``sar.buffer_m``, snapped outward to whole pixels. Bursts of one date are
mosaicked on it; where bursts overlap, the mean of their valid values is taken. A burst on
another lattice (another UTM zone) is brought onto it bilinearly. Nodata (NaN, the file's
nodata, or a power <= 0) in either date is NaN in the output. No filter is applied.
"""

from __future__ import annotations

import numpy as np
from rasterio.io import DatasetReader

from firedpy_nrt.prepare.sar.lattice import read_onto
from firedpy_nrt.raster_grid import RasterGrid


def mosaic(sources: list[DatasetReader], grid: RasterGrid) -> np.ndarray:
    """The mean of the bursts' valid power on ``grid``; NaN where no burst has data."""
    total = np.zeros((grid.height, grid.width), dtype=np.float64)
    count = np.zeros((grid.height, grid.width), dtype=np.int32)
    for src in sources:
        values = read_onto(src, grid)
        ok = np.isfinite(values)
        total[ok] += values[ok]
        count[ok] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return result.astype(np.float32)


def log_ratio(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """``10 * log10(post / pre)`` in dB; NaN where either is missing or not positive."""
    ok = np.isfinite(pre) & np.isfinite(post) & (pre > 0) & (post > 0)
    out = np.full(pre.shape, np.nan, dtype=np.float32)
    out[ok] = (10.0 * np.log10(post[ok].astype(np.float64) / pre[ok])).astype(np.float32)
    return out
