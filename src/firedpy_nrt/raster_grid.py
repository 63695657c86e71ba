"""``RasterGrid``: the CRS, affine transform and size of a north-up raster grid.

One class for every grid the project handles: a dNBR's output grid, a prediction scene's
reference grid (the luminance-change raster's), the synthetic generator's grids.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass(frozen=True)
class RasterGrid:
    """CRS, affine transform and shape of a north-up raster grid."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        left, top = t.c, t.f
        return left, top + t.e * self.height, left + t.a * self.width, top

    @classmethod
    def of(cls, ds: rasterio.io.DatasetReaderBase) -> RasterGrid:
        return cls(ds.crs, ds.transform, ds.width, ds.height)

    def same_as(self, other: RasterGrid) -> bool:
        tol = 1e-6 * self.res
        return (
            self.crs == other.crs
            and self.width == other.width
            and self.height == other.height
            and all(
                abs(a - b) <= tol
                for a, b in zip(self.transform[:6], other.transform[:6], strict=True)
            )
        )

    def coarsened(self, res: float) -> RasterGrid:
        """The grid covering the same area with pixels of ``res`` (>= the current) metres."""
        left, bottom, right, top = self.bounds
        width = max(1, math.ceil((right - left) / res - 1e-9))
        height = max(1, math.ceil((top - bottom) / res - 1e-9))
        return RasterGrid(self.crs, Affine(res, 0.0, left, 0.0, -res, top), width, height)

    def windows(self, block: int) -> Iterator[Window]:
        """Row-major windows of at most ``block`` x ``block`` pixels covering the grid."""
        for row in range(0, self.height, block):
            for col in range(0, self.width, block):
                yield Window(col, row, min(block, self.width - col), min(block, self.height - row))

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)

    @property
    def crs_wkt(self) -> str:
        return self.crs.to_wkt() if self.crs is not None else ""
