"""The pixel grid a dNBR is computed on, and reading any band onto it window by window.

Pre and post scenes may come from different products on slightly different grids (Landsat
scenes of one path/row differ in extent; a reprocessed S2 tile may shift). Bands whose grid
differs from the target are wrapped in a ``WarpedVRT`` so only the window being processed is
resampled, never the whole band.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import ExitStack

import numpy as np
import rasterio
import rasterio.warp
import rasterio.windows
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as shapely_transform

from firedpy_nrt.errors import DataError, first_line
from firedpy_nrt.raster_grid import RasterGrid

#: GDAL settings for every read of the stage. One decoding thread: GDAL's JPEG 2000 driver,
#: decoding the tiles of a request in threads (its default), hands back zeros for a corrupt tile
#: instead of failing, and zeros are nodata here: a broken product would pass as a cloudy one.
READ_OPTIONS = {"GDAL_NUM_THREADS": "1"}


def to_grid_crs(geometry: BaseGeometry, crs: CRS, buffer_m: float) -> BaseGeometry:
    """An EPSG:4326 geometry in ``crs``, buffered by ``buffer_m`` metres."""
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    geom = shapely_transform(tr.transform, geometry)
    if buffer_m > 0:
        # A geographic target CRS has degrees: about 111 km per degree is close enough for a buffer.
        geom = geom.buffer(buffer_m if crs.is_projected else buffer_m / 111_320.0)
    return geom


def footprint(grid: RasterGrid, crs: CRS) -> tuple[float, float, float, float]:
    """``grid``'s bounds in ``crs`` (densified edges)."""
    if grid.crs == crs:
        return grid.bounds
    return rasterio.warp.transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)


def overlaps(a: RasterGrid, b: RasterGrid) -> bool:
    """Whether two grids share any area (``b`` taken into ``a``'s CRS)."""
    al, ab, ar, at = a.bounds
    bl, bb, br, bt = footprint(b, a.crs)
    return bl < ar and br > al and bb < at and bt > ab


class BlockReader:
    """Window reads of one band that decode each of its internal tiles once.

    GDAL's JPEG 2000 driver decodes every tile a request touches, and a window that straddles
    tiles (the 20 m source of a 10 m window plus its interpolation margin) costs ten times a
    tile-aligned read. Tiles are kept in a small LRU of about two tile rows, which row-major
    windows need; aligned windows and untiled files (strips) are read directly.
    """

    MIN_TILE = 128

    def __init__(self, src: rasterio.io.DatasetReaderBase) -> None:
        self.src = src
        self.bh, self.bw = src.block_shapes[0]
        self.tiled = self.bh >= self.MIN_TILE and self.bw >= self.MIN_TILE
        self.capacity = 2 * math.ceil(src.width / self.bw) + 2
        self._tiles: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _tile(self, tr: int, tc: int) -> np.ndarray:
        key = (tr, tc)
        tile = self._tiles.get(key)
        if tile is None:
            r, c = tr * self.bh, tc * self.bw
            win = Window(c, r, min(self.bw, self.src.width - c), min(self.bh, self.src.height - r))
            tile = self.src.read(1, window=win)
            self._tiles[key] = tile
            if len(self._tiles) > self.capacity:
                self._tiles.popitem(last=False)
        else:
            self._tiles.move_to_end(key)
        return tile

    def read(self, window: Window) -> np.ndarray:
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        aligned = (
            r0 % self.bh == 0
            and c0 % self.bw == 0
            and (r1 % self.bh == 0 or r1 == self.src.height)
            and (c1 % self.bw == 0 or c1 == self.src.width)
        )
        if not self.tiled or aligned:
            return self.src.read(1, window=window)
        out = np.empty((r1 - r0, c1 - c0), dtype=self.src.dtypes[0])
        for tr in range(r0 // self.bh, (r1 - 1) // self.bh + 1):
            for tc in range(c0 // self.bw, (c1 - 1) // self.bw + 1):
                tile = self._tile(tr, tc)
                tr0, tc0 = tr * self.bh, tc * self.bw
                a0, a1 = max(r0, tr0), min(r1, tr0 + tile.shape[0])
                b0, b1 = max(c0, tc0), min(c1, tc0 + tile.shape[1])
                out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = tile[
                    a0 - tr0 : a1 - tr0, b0 - tc0 : b1 - tc0
                ]
        return out


class LatticeUpsampler:
    """Reads a band onto a target grid whose pixels split the band's pixels k x k (k integer).

    The Sentinel-2 case (B12 and SCL at 20 m onto B08 at 10 m, one origin) and Landsat scenes of
    one path/row (same 30 m lattice, other extent). GDAL's warper does this several times slower
    than the window read plus NumPy here. ``nearest`` copies each source pixel k x k times;
    ``bilinear`` interpolates between the four source pixel centres around each target centre,
    leaving nodata source pixels out of the weights, and is nodata where the source pixel under
    the target centre is (both as GDAL's warper does); outside the band is nodata.
    """

    def __init__(
        self,
        src: rasterio.io.DatasetReaderBase,
        grid: RasterGrid,
        k: int,
        bilinear: bool,
        nodata: float | None,
    ) -> None:
        self.src = src
        self.blocks = BlockReader(src)
        self.k = k
        self.bilinear = bilinear
        self.nodata = nodata
        # Target pixel index r sits at source pixel coordinate (r + off) / k.
        self.off_col = round((grid.transform.c - src.transform.c) / grid.res)
        self.off_row = round((src.transform.f - grid.transform.f) / grid.res)

    def _source(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Source rows r0..r1-1, cols c0..c1-1 (may lie outside) and their validity."""
        h, w = self.src.height, self.src.width
        fill = 0 if self.nodata is None else self.nodata
        out = np.full((r1 - r0, c1 - c0), fill, dtype=self.src.dtypes[0])
        rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        valid = np.zeros(out.shape, bool)
        if rr0 < rr1 and cc0 < cc1:
            block = self.blocks.read(Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
            out[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = block
            valid[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = (
                True if self.nodata is None else block != self.nodata
            )
        return out, valid

    def read(self, window: Window) -> np.ndarray:
        rows = np.arange(int(window.row_off), int(window.row_off + window.height)) + self.off_row
        cols = np.arange(int(window.col_off), int(window.col_off + window.width)) + self.off_col
        k = self.k
        # Index of the source pixel under each target centre.
        nr, nc = (rows * 2 + 1) // (2 * k), (cols * 2 + 1) // (2 * k)
        if not self.bilinear:
            a, valid = self._source(nr[0], nr[-1] + 1, nc[0], nc[-1] + 1)
            nr, nc = nr - nr[0], nc - nc[0]
            out = a.take(nr, axis=0).take(nc, axis=1)
            if self.nodata is None and not valid.all():  # outside the band: 0, as a WarpedVRT
                out[~valid.take(nr, axis=0).take(nc, axis=1)] = 0
            return out
        ur, uc = (rows + 0.5) / k - 0.5, (cols + 0.5) / k - 0.5
        r0, c0 = np.floor(ur).astype(int), np.floor(uc).astype(int)
        wr, wc = (ur - r0).astype(np.float32)[:, None], (uc - c0).astype(np.float32)[None, :]
        a, valid = self._source(r0[0], r0[-1] + 2, c0[0], c0[-1] + 2)
        ir, ic = r0 - r0[0], c0 - c0[0]
        nr, nc = nr - r0[0], nc - c0[0]

        def interp(x: np.ndarray) -> np.ndarray:
            x = x.take(ir, axis=0) * (1 - wr) + x.take(ir + 1, axis=0) * wr
            return x.take(ic, axis=1) * (1 - wc) + x.take(ic + 1, axis=1) * wc

        if valid.all():  # the usual block: a plain convex combination
            value = interp(a.astype(np.float32))
            ok = None
        else:
            # Like GDAL's warper: nodata where the source pixel under the target centre is nodata
            # (or outside the band); elsewhere the kernel renormalises over its valid pixels.
            v = valid.astype(np.float32)
            num, den = interp(a.astype(np.float32) * v), interp(v)
            ok = (den > 1e-6) & valid.take(nr, axis=0).take(nc, axis=1)
            value = np.zeros(num.shape, np.float32)
            np.divide(num, den, out=value, where=ok)
        if np.issubdtype(a.dtype, np.integer):
            np.rint(value, out=value)
        out = value.astype(a.dtype)
        if self.nodata is not None:
            # A valid result must not read as nodata after rounding (DN 1 next to DN 0 fill).
            clash = out == self.nodata
            if ok is not None:
                clash &= ok
                out[~ok] = self.nodata
            out[clash] = np.asarray(self.nodata + 1, dtype=a.dtype)
        return out


def _integer_upsampling(src_grid: RasterGrid, grid: RasterGrid) -> int | None:
    """k when ``grid``'s pixels split ``src_grid``'s k x k on one lattice, else None."""
    if src_grid.crs != grid.crs or src_grid.transform.b or src_grid.transform.d:
        return None
    if src_grid.transform.e != -src_grid.transform.a:
        return None
    k = src_grid.res / grid.res
    if abs(k - round(k)) > 1e-9 or round(k) < 1:
        return None
    return round(k) if _on_lattice(grid.transform, src_grid.transform, grid.res) else None


class GridReader:
    """Opens GDAL paths onto one target grid; use as a context manager, then ``read(key, window)``.

    Every dataset is opened once and closed on exit. A band whose grid equals the target is read
    directly; one on the same lattice (or a k-times coarser one) through ``LatticeUpsampler``;
    anything else through a WarpedVRT (``resampling`` per band) with its nodata value kept out of
    the kernel and filled outside its extent.
    """

    def __init__(self, grid: RasterGrid) -> None:
        self.grid = grid
        self._stack = ExitStack()
        self._open: dict[str, object] = {}
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
    ) -> RasterGrid:
        """Register ``path`` under ``key``; DataError naming ``product`` if GDAL cannot open it."""
        name = path.rsplit("/", 1)[-1]
        try:
            src = self._stack.enter_context(rasterio.open(path))
            if src.crs is None:
                raise DataError(f"{product}: {name} has no CRS")
            src_grid = RasterGrid.of(src)
            reader: object = src
            k = None if src_grid.same_as(self.grid) else _integer_upsampling(src_grid, self.grid)
            if src_grid.same_as(self.grid):
                reader = BlockReader(src)
            elif k is not None and resampling in (Resampling.nearest, Resampling.bilinear):
                reader = LatticeUpsampler(
                    src, self.grid, k, k > 1 and resampling == Resampling.bilinear, nodata
                )
            else:
                reader = self._stack.enter_context(
                    WarpedVRT(
                        src,
                        crs=self.grid.crs,
                        transform=self.grid.transform,
                        width=self.grid.width,
                        height=self.grid.height,
                        resampling=resampling,
                        src_nodata=nodata,
                        nodata=nodata,
                    )
                )
        except RasterioError as exc:
            raise DataError(f"{product}: cannot open {name} ({first_line(exc)})") from None
        self._open[key] = reader
        self._names[key] = f"{product}: cannot read {name}"
        return src_grid

    def read(self, key: str, window: Window) -> np.ndarray:
        reader = self._open[key]
        try:
            if isinstance(reader, (LatticeUpsampler, BlockReader)):
                return reader.read(window)
            return reader.read(1, window=window)
        except RasterioError as exc:
            raise DataError(f"{self._names[key]} ({first_line(exc)})") from None


def _on_lattice(a: Affine, b: Affine, step: float) -> bool:
    """Whether the origins of ``a`` and ``b`` differ by whole multiples of ``step``."""
    dx = (a.c - b.c) / step
    dy = (a.f - b.f) / step
    return abs(dx - round(dx)) < 1e-6 and abs(dy - round(dy)) < 1e-6
