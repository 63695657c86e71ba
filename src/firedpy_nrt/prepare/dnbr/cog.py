"""Writing a Cloud-Optimized GeoTIFF window by window without ever exposing a half-written file.

GDAL's COG driver only copies a finished dataset, so windows go to a tiled work GTiff first
(``<name>.work.tmp``); ``commit()`` copies it with the COG driver (overviews, DEFLATE) to
``<name>.tmp`` and renames that onto the final name. Anything that fails before leaves no file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from firedpy_nrt.prepare.dnbr.grid import Grid

WORK_BLOCK = 512


class CogWriter:
    """Context manager: ``write(array, window)`` any number of times, then ``commit()``."""

    def __init__(
        self,
        path: Path,
        grid: Grid,
        dtype: str,
        count: int = 1,
        nodata: float | None = None,
        overview_resampling: str = "AVERAGE",
        descriptions: tuple[str, ...] | None = None,
        tags: dict[str, str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.work = path.with_name(path.name + ".work.tmp")
        self.tmp = path.with_name(path.name + ".tmp")
        self.grid = grid
        self.profile = {
            "driver": "GTiff",
            "width": grid.width,
            "height": grid.height,
            "count": count,
            "dtype": dtype,
            "crs": grid.crs,
            "transform": grid.transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": WORK_BLOCK,
            "blockysize": WORK_BLOCK,
            "BIGTIFF": "IF_SAFER",
        }
        self.overview_resampling = overview_resampling
        self.descriptions = descriptions
        self.tags = tags or {}
        self.threads = "ALL_CPUS" if threads is None else str(threads)
        self._ds: rasterio.io.DatasetWriter | None = None
        self._done = False

    def __enter__(self) -> CogWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ds = rasterio.open(self.work, "w", **self.profile)
        if self.descriptions:
            for i, d in enumerate(self.descriptions, start=1):
                self._ds.set_band_description(i, d)
        if self.tags:
            self._ds.update_tags(**self.tags)
        return self

    def write(self, array: np.ndarray, window: Window) -> None:
        assert self._ds is not None
        if array.ndim == 2:
            self._ds.write(array, 1, window=window)
        else:
            self._ds.write(array, window=window)

    def commit(self) -> Path:
        """Turn the work file into the final COG (atomic rename); returns the final path."""
        assert self._ds is not None
        self._ds.close()
        rasterio.shutil.copy(
            self.work,
            self.tmp,
            driver="COG",
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            BLOCKSIZE=str(WORK_BLOCK),
            OVERVIEW_RESAMPLING=self.overview_resampling,
            BIGTIFF="IF_SAFER",
            NUM_THREADS=self.threads,  # DEFLATE compression in parallel
        )
        os.replace(self.tmp, self.path)
        self._done = True
        self._cleanup()
        return self.path

    def _cleanup(self) -> None:
        if self._ds is not None and not self._ds.closed:
            self._ds.close()
        for p in (self.work, self.tmp):
            p.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self._cleanup()
