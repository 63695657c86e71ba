"""The one place that writes raster outputs: GeoTIFFs and Cloud-Optimized GeoTIFFs.

:class:`GeoTiffWriter` takes windows in any order and never exposes a half-written file. With
``cog=True`` the windows go to a tiled work GTiff (ZSTD level 1: a temporary, so the fastest
codec), which GDAL's COG driver copies block by block (overviews, DEFLATE with the predictor)
to a temporary name; with ``cog=False`` they go straight into a tiled, DEFLATE-compressed GTiff
under a temporary name. ``finish()`` completes the file under that name, ``publish()`` renames it
onto the final one (several outputs can finish first and publish together), ``commit()`` does both.
Temporary names come from :mod:`firedpy_nrt.atomic`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from firedpy_nrt.atomic import publish, remove, temporary
from firedpy_nrt.raster_grid import RasterGrid


def block_size(grid: RasterGrid, largest: int = 256) -> int:
    """Tile edge for ``grid``: ``largest``, or smaller so a small raster still has 2 x 2 tiles
    (a multiple of 16, as GDAL wants)."""
    return min(largest, max(16, 16 * math.ceil(max(grid.width, grid.height) / 32)))


class GeoTiffWriter:
    """Context manager: ``write(array, window)`` any number of times, then ``commit()``.

    ``array`` is 2-D for one band or ``[count, h, w]``. On leaving the block without a commit
    (an error), every temporary file is removed and nothing appears under ``path``.
    """

    def __init__(
        self,
        path: str | Path,
        grid: RasterGrid,
        dtype: str,
        *,
        count: int = 1,
        nodata: float | None = None,
        cog: bool = True,
        block: int = 256,
        level: int | None = None,
        overview_resampling: str = "AVERAGE",
        descriptions: tuple[str, ...] | None = None,
        tags: dict[str, str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.grid = grid
        self.cog = cog
        self.block = block
        self.level = level
        self.overview_resampling = overview_resampling
        self.threads = "ALL_CPUS" if threads is None else str(threads)
        self.tmp = temporary(self.path)
        self.work = temporary(self.path, ".work") if cog else self.tmp
        floating = np.issubdtype(np.dtype(dtype), np.floating)
        compression: dict[str, Any] = (
            {"compress": "zstd", "zstd_level": 1}
            if cog
            else {"compress": "deflate", "predictor": 3 if floating else 2}
        )
        if not cog and level is not None:
            compression["zlevel"] = level
        self.profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": grid.width,
            "height": grid.height,
            "count": count,
            "dtype": dtype,
            "crs": grid.crs,
            "transform": grid.transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "BIGTIFF": "IF_SAFER",
            "NUM_THREADS": self.threads,
            **compression,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ds = rasterio.open(self.work, "w", **self.profile)
        self._finished = False
        self._published = False
        try:
            for i, text in enumerate(descriptions or (), start=1):
                self._ds.set_band_description(i, text)
            if tags:
                self._ds.update_tags(**tags)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> GeoTiffWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._published:
            self.abort()

    def write(self, array: np.ndarray, window: Window | None = None) -> None:
        """Write ``array`` at ``window`` (the whole raster when None)."""
        if array.ndim == 2:
            self._ds.write(array, 1, window=window)
        else:
            self._ds.write(array, window=window)

    def finish(self) -> Path:
        """Complete the file under its temporary name (the COG copy, when ``cog``)."""
        if self._finished:
            return self.tmp
        self._ds.close()
        if self.cog:
            options: dict[str, Any] = {
                "COMPRESS": "DEFLATE",
                "PREDICTOR": "YES",
                "BLOCKSIZE": str(self.block),
                "OVERVIEW_RESAMPLING": self.overview_resampling,
                "BIGTIFF": "IF_SAFER",
                "NUM_THREADS": self.threads,
            }
            if self.level is not None:
                options["LEVEL"] = self.level
            try:
                rasterio.shutil.copy(self.work, self.tmp, driver="COG", **options)
            except BaseException:
                remove(self.tmp)
                raise
            finally:
                remove(self.work)
        self._finished = True
        return self.tmp

    def publish(self, replace: bool = True) -> Path:
        """Give the finished file its final name (``replace=False``: FileExistsError if taken)."""
        publish(self.tmp, self.path, replace)
        self._published = True
        return self.path

    def commit(self) -> Path:
        """``finish()`` then ``publish()``; returns the final path."""
        self.finish()
        return self.publish()

    def abort(self) -> None:
        """Remove every temporary file; nothing appears under the final name."""
        if not self._ds.closed:
            self._ds.close()
        remove(self.work)
        remove(self.tmp)


def write_geotiff(
    path: str | Path, array: np.ndarray, grid: RasterGrid, nodata: float | None, **options: Any
) -> Path:
    """Write a whole ``array`` (2-D, or ``[count, h, w]``) as a tiled, compressed GeoTIFF
    (``cog=True`` for a COG); atomically, as :class:`GeoTiffWriter`."""
    options.setdefault("cog", False)
    options.setdefault("block", block_size(grid))
    count = 1 if array.ndim == 2 else array.shape[0]
    with GeoTiffWriter(
        path, grid, array.dtype.name, count=count, nodata=nodata, **options
    ) as writer:
        writer.write(array)
        return writer.commit()
