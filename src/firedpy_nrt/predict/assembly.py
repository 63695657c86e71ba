"""One scene's finished rows become its outputs: probability, mask, quicklook and scores.

:class:`SceneAssembler` is the sink of a :class:`~firedpy_nrt.predict.tiling.BandAccumulator`:
for each block of finished rows it divides the weighted sum by the blending weights, reads the
same rows of the aligned luminance change (for the nodata mask) and label (for the scores), and streams the result into the HDF5 and GeoTIFF writers. It holds one
block of rows at a time plus small decimated copies for the PNG (whose dNBR panel is one
decimated warped read of the dNBR onto the same grid).
"""

from __future__ import annotations

import errno
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from firedpy_nrt.atomic import publish, remove, temporary
from firedpy_nrt.errors import DataError
from firedpy_nrt.predict.evaluation import Confusion, SceneScore, condition_scores
from firedpy_nrt.predict.tiling import TileLayout, normalize_rows, weight_sums
from firedpy_nrt.predict.writers import (
    MASK_NODATA,
    HDF5Writer,
    OutputPaths,
    Thumbnail,
    probability_cog,
    write_quicklook,
)
from firedpy_nrt.raster_grid import RasterGrid

log = logging.getLogger(__name__)


class RowReader(Protocol):
    """What :mod:`firedpy_nrt.data.raster` gives: aligned windowed reads on the reference grid."""

    def read(
        self, window: Window, skip_empty: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]: ...

    def read_label(self, window: Window) -> tuple[np.ndarray, np.ndarray | None]: ...

    def read_layer(self, name: str, window: Window) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ScenePlan:
    """One luminance-change raster to map: its match row, grid, tiles and output files."""

    index: int
    fire_id: str
    row: dict[str, Any]
    context: str
    geo: RasterGrid
    tiles: TileLayout
    outputs: OutputPaths
    has_label: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(str(self.row["lum_change"])).stem


def finish_rows(
    weighted_prob: np.ndarray, lum: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(prediction float32 with NaN where ``lum`` is NaN, mask uint8 1/0/255) of a block of rows."""
    prob = weighted_prob
    nodata = np.isnan(lum)
    prob[nodata] = np.nan
    mask = (prob > threshold).astype(np.uint8)
    mask[nodata] = MASK_NODATA
    return prob, mask


def read_thumbnail(path: str | None, geo: RasterGrid, step: int) -> np.ndarray | None:
    """A layer on the reference grid averaged over ``step x step`` cells, NaN where nodata.

    One decimated warped read for the quicklook, instead of reading the layer at full resolution.
    """
    if not path:
        return None
    height, width = math.ceil(geo.height / step), math.ceil(geo.width / step)
    transform = geo.transform * Affine.scale(geo.width / width * 1.0, geo.height / height * 1.0)
    try:
        with rasterio.open(path) as src:
            nodata = src.nodata
            if nodata is None and np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
                nodata = float("nan")
            with WarpedVRT(
                src,
                crs=geo.crs or src.crs,
                transform=transform,
                width=width,
                height=height,
                resampling=Resampling.average,
                src_nodata=nodata,
                nodata=float("nan"),
                dtype="float32",
            ) as vrt:
                return vrt.read(1)
    except (RasterioError, OSError) as exc:  # the PNG goes without its dNBR panel, not the run
        log.warning("quicklook: dNBR %s not drawn (%s)", path, exc)
        return None


class SceneAssembler:
    """Turns finished weighted-sum rows of one scene into its output files."""

    def __init__(
        self,
        scene: ScenePlan,
        reader: RowReader,
        blend: str,
        threshold: float,
        overwrite: bool = False,
        dnbr_threshold: float = 0.1,
    ) -> None:
        self.scene = scene
        self.overwrite = overwrite
        self.dnbr_threshold = dnbr_threshold
        self.reader = reader
        self.threshold = threshold
        self._rw, self._cw = weight_sums(scene.tiles, blend)
        geo = scene.geo
        self._h5 = HDF5Writer(scene.outputs.h5, geo, scene.metadata)
        try:
            self._tif = probability_cog(scene.outputs.tif, geo)
        except BaseException:
            self._h5.abort()
            raise
        self._prob = Thumbnail(geo.height, geo.width)
        self._label = Thumbnail(geo.height, geo.width, dtype=np.uint8) if scene.has_label else None
        self.confusion = Confusion() if scene.has_label else None
        self.conditions: dict[str, Confusion] = {}
        self.rows_written = 0

    def __call__(self, y0: int, weighted: np.ndarray) -> None:
        h, w = weighted.shape
        prob = normalize_rows(y0, weighted, self._rw, self._cw)
        # only the luminance change (nodata) and the label: the dNBR panel is read decimated
        lum, label = self.reader.read_label(Window(0, y0, w, h))
        prob, mask = finish_rows(prob, lum, self.threshold)
        self._h5.write_rows(y0, prob, mask)
        self._tif.write(prob, Window(0, y0, w, h))
        self._prob.add_rows(y0, prob)
        if label is not None and self.confusion is not None and self._label is not None:
            self.confusion.update(mask, label)
            dnbr = self.reader.read_layer("dnbr", Window(0, y0, w, h))
            for key, c in condition_scores(mask, label, dnbr, self.dnbr_threshold).items():
                self.conditions[key] = self.conditions.get(key, Confusion()) + c
            self._label.add_rows(y0, label)
        self.rows_written += h

    def commit(self) -> SceneScore | None:
        """Finish the three files under temporary names, then rename them together (a failure
        leaves none of them); the scene's score if it has a label."""
        if self.rows_written != self.scene.geo.height:
            raise RuntimeError(
                f"{self.scene.name}: {self.rows_written} of {self.scene.geo.height} rows written"
            )
        png = self.scene.outputs.png
        png_tmp = temporary(png)
        try:
            self._h5.finish()
            self._tif.finish()
            write_quicklook(
                png_tmp,
                read_thumbnail(self.scene.row.get("dnbr"), self.scene.geo, self._prob.step),
                self._prob.data,
                self._label.data if self._label is not None else None,
                title=f"fire {self.scene.fire_id}: {self.scene.name} (threshold {self.threshold:g})",
                threshold=self.threshold,
            )
            outputs = self.scene.outputs
            taken = [p for p in outputs if p.exists()] if not self.overwrite else []
            if taken:
                raise FileExistsError(errno.EEXIST, "exists", str(taken[0]))
            self._h5.publish(self.overwrite)
            self._tif.publish(self.overwrite)
            publish(png_tmp, png, self.overwrite)
        except FileExistsError as exc:
            remove(png_tmp)
            self.abort()
            raise DataError(
                f"output {exc.filename} was written by another run meanwhile; it is kept "
                "(overwrite=true replaces it)"
            ) from None
        except BaseException:
            remove(png_tmp)
            self.abort()
            raise
        self.reader.close()
        if self.confusion is None:
            return None
        return SceneScore(self.scene.name, self.scene.fire_id, self.confusion, self.conditions)

    def abort(self) -> None:
        self._h5.abort()
        self._tif.abort()
        self.reader.close()
