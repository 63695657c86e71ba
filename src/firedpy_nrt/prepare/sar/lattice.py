"""Grids on a raster's own lattice, and reading a raster onto such a grid.

The SAR layers keep their source's pixels: a grid is the source's lattice (its pixel size
and origin) over an event's outline plus a buffer, snapped outward to whole pixels. A raster
on that lattice is read exactly (a window); one on another lattice (another UTM zone, another
pixel size) is brought over bilinearly.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.warp import Resampling, reproject, transform_geom
from rasterio.windows import Window
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from firedpy_nrt.raster_grid import RasterGrid


def _on_lattice(transform: Affine, origin: Affine) -> bool:
    res = origin.a
    if abs(transform.a - origin.a) > 1e-9 * res or abs(transform.e - origin.e) > 1e-9 * res:
        return False
    if transform.b or transform.d:
        return False
    dx = (transform.c - origin.c) / res
    dy = (transform.f - origin.f) / res
    return abs(dx - round(dx)) < 1e-6 and abs(dy - round(dy)) < 1e-6


def output_grid(sources: list[DatasetReader], area: BaseGeometry, buffer_m: float) -> RasterGrid:
    """The lattice of the CRS most ``sources`` use (the first such source's pixels), over
    ``area`` (lon/lat) plus ``buffer_m`` metres."""
    crs_count = Counter(src.crs.to_wkt() for src in sources)
    wkt = sorted(crs_count.items(), key=lambda kv: -kv[1])[0][0]
    crs = CRS.from_wkt(wkt)
    lattice = next(src.transform for src in sources if src.crs.to_wkt() == wkt)
    res = abs(lattice.a)
    buffer = buffer_m if crs.is_projected else buffer_m / 111_320.0
    outline = shape(transform_geom("EPSG:4326", crs, mapping(area))).buffer(buffer)
    left, bottom, right, top = outline.bounds
    c0 = math.floor((left - lattice.c) / res + 1e-9)
    c1 = math.ceil((right - lattice.c) / res - 1e-9)
    r0 = math.floor((lattice.f - top) / res + 1e-9)
    r1 = math.ceil((lattice.f - bottom) / res - 1e-9)
    transform = Affine(res, 0.0, lattice.c + c0 * res, 0.0, -res, lattice.f - r0 * res)
    return RasterGrid(crs, transform, max(1, c1 - c0), max(1, r1 - r0))


def valid(values: np.ndarray, nodata: float | None) -> np.ndarray:
    ok = np.isfinite(values) & (values > 0)
    if nodata is not None and np.isfinite(nodata):
        ok &= values != nodata
    return ok


def read_onto(src: DatasetReader, grid: RasterGrid) -> np.ndarray:
    """Band 1 of ``src`` on ``grid`` as float32; NaN where it has no valid value (nodata, NaN,
    or <= 0: neither a power nor a coherence is valid at or below 0)."""
    out = np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    if src.crs == grid.crs and _on_lattice(src.transform, grid.transform):
        res = grid.res
        col = round((grid.transform.c - src.transform.c) / res)
        row = round((src.transform.f - grid.transform.f) / res)
        window = Window(col, row, grid.width, grid.height)
        try:
            inside = window.intersection(Window(0, 0, src.width, src.height))
        except rasterio.errors.WindowError:
            return out
        values = src.read(1, window=inside).astype(np.float32)
        values[~valid(values, src.nodata)] = np.nan
        r, c = int(inside.row_off - row), int(inside.col_off - col)
        out[r : r + values.shape[0], c : c + values.shape[1]] = values
        return out
    # Another lattice: read the part of the source under the grid and warp it over.
    with contextlib.suppress(rasterio.errors.WindowError):
        left, bottom, right, top = rasterio.warp.transform_bounds(
            grid.crs, src.crs, *grid.bounds, densify_pts=21
        )
        exact = rasterio.windows.from_bounds(left, bottom, right, top, src.transform)
        window = exact.round_offsets("floor").round_lengths("ceil")
        window = Window(window.col_off - 1, window.row_off - 1, window.width + 2, window.height + 2)
        window = window.intersection(Window(0, 0, src.width, src.height))
        values = src.read(1, window=window).astype(np.float32)
        values[~valid(values, src.nodata)] = np.nan
        source = RasterGrid(src.crs, src.window_transform(window), values.shape[1], values.shape[0])
        out = warp_onto(values, source, grid)
    return out


def warp_onto(values: np.ndarray, source: RasterGrid, grid: RasterGrid) -> np.ndarray:
    """``values`` (NaN = nodata) on ``source`` brought bilinearly onto ``grid`` (NaN outside)."""
    out = np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    reproject(
        values.astype(np.float32),
        out,
        src_transform=source.transform,
        src_crs=source.crs,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out
