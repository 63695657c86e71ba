"""The pixel grid a dNBR is computed on, and reading any band onto it window by window.

Pre and post scenes may come from different products on slightly different grids (Landsat
scenes of one path/row differ in extent; a reprocessed S2 tile may shift). Bands whose grid
differs from the target are wrapped in a ``WarpedVRT`` so only the window being processed is
resampled, never the whole band.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as shapely_transform

from firedpy_nrt.errors import DataError


@dataclass(frozen=True)
class Grid:
    """CRS, affine transform and shape of a north-up raster grid."""

    crs: CRS
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
    def of(cls, ds: rasterio.io.DatasetReaderBase) -> Grid:
        return cls(ds.crs, ds.transform, ds.width, ds.height)

    def same_as(self, other: Grid) -> bool:
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

    def coarsened(self, res: float) -> Grid:
        """The grid covering the same area with pixels of ``res`` (>= the current) metres."""
        left, bottom, right, top = self.bounds
        width = max(1, math.ceil((right - left) / res - 1e-9))
        height = max(1, math.ceil((top - bottom) / res - 1e-9))
        return Grid(self.crs, Affine(res, 0.0, left, 0.0, -res, top), width, height)

    def windows(self, block: int) -> Iterator[Window]:
        """Row-major windows of at most ``block`` x ``block`` pixels covering the grid."""
        for row in range(0, self.height, block):
            for col in range(0, self.width, block):
                yield Window(col, row, min(block, self.width - col), min(block, self.height - row))

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)


def to_grid_crs(geometry: BaseGeometry, crs: CRS, buffer_m: float) -> BaseGeometry:
    """An EPSG:4326 geometry in ``crs``, buffered by ``buffer_m`` metres."""
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    geom = shapely_transform(tr.transform, geometry)
    if buffer_m > 0:
        # A geographic target CRS has degrees: about 111 km per degree is close enough for a buffer.
        geom = geom.buffer(buffer_m if crs.is_projected else buffer_m / 111_320.0)
    return geom


def footprint(grid: Grid, crs: CRS) -> tuple[float, float, float, float]:
    """``grid``'s bounds in ``crs`` (densified edges)."""
    if grid.crs == crs:
        return grid.bounds
    return rasterio.warp.transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)


def overlaps(a: Grid, b: Grid) -> bool:
    """Whether two grids share any area (``b`` taken into ``a``'s CRS)."""
    al, ab, ar, at = a.bounds
    bl, bb, br, bt = footprint(b, a.crs)
    return bl < ar and br > al and bb < at and bt > ab


class GridReader:
    """Opens GDAL paths onto one target grid; use as a context manager, then ``read(path, window)``.

    Every dataset is opened once and closed on exit. A band whose grid equals the target is read
    directly; otherwise a WarpedVRT resamples it (``resampling`` per path) with its nodata value
    kept out of the kernel and filled outside its extent.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._stack = ExitStack()
        self._open: dict[str, rasterio.io.DatasetReaderBase] = {}
        self._names: dict[str, str] = {}

    def __enter__(self) -> GridReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def add(
        self,
        key: str,
        path: str,
        product: str,
        resampling: Resampling = Resampling.bilinear,
        nodata: float | None = 0,
    ) -> Grid:
        """Register ``path`` under ``key``; DataError naming ``product`` if GDAL cannot open it."""
        try:
            src = self._stack.enter_context(rasterio.open(path))
            src_grid = Grid.of(src)
            if src.crs is None:
                raise DataError(f"{product}: {path.rsplit('/', 1)[-1]} has no CRS")
            if not src_grid.same_as(self.grid):
                aligned = (
                    src_grid.crs == self.grid.crs
                    and math.isclose(src_grid.res, self.grid.res, rel_tol=1e-9)
                    and _on_lattice(src_grid.transform, self.grid.transform)
                )
                src = self._stack.enter_context(
                    WarpedVRT(
                        src,
                        crs=self.grid.crs,
                        transform=self.grid.transform,
                        width=self.grid.width,
                        height=self.grid.height,
                        # Same pixel lattice: nearest is an exact copy (no kernel smoothing).
                        resampling=Resampling.nearest if aligned else resampling,
                        src_nodata=nodata,
                        nodata=nodata,
                    )
                )
        except RasterioError as exc:
            raise DataError(
                f"{product}: cannot open {path.rsplit('/', 1)[-1]} ({_first(exc)})"
            ) from None
        self._open[key] = src
        self._names[key] = f"{product}: cannot read {path.rsplit('/', 1)[-1]}"
        return src_grid

    def read(self, key: str, window: Window) -> np.ndarray:
        try:
            return self._open[key].read(1, window=window)
        except RasterioError as exc:
            raise DataError(f"{self._names[key]} ({_first(exc)})") from None


def _on_lattice(a: Affine, b: Affine) -> bool:
    dx = (a.c - b.c) / b.a
    dy = (a.f - b.f) / b.e
    return abs(dx - round(dx)) < 1e-6 and abs(dy - round(dy)) < 1e-6


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
