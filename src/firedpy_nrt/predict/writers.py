"""Prediction output files: HDF5, Cloud-Optimized GeoTIFF and PNG quicklook, written atomically.

Rows arrive band by band (see :mod:`firedpy_nrt.predict.tiling`) and go straight to chunked HDF5
datasets and a tiled GeoTIFF (:class:`firedpy_nrt.geotiff.GeoTiffWriter`), so no writer holds a
whole scene. Every file is written under a temporary name from :mod:`firedpy_nrt.atomic` and
renamed when complete; a failed run leaves finished outputs untouched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from firedpy_nrt.atomic import publish, remove, temporary
from firedpy_nrt.errors import DataError
from firedpy_nrt.geotiff import GeoTiffWriter
from firedpy_nrt.raster_grid import RasterGrid

#: Value of ``mask`` where the luminance-change raster is nodata.
MASK_NODATA = 255
#: Edge of HDF5 chunks and GeoTIFF blocks (pixels).
CHUNK = 256


@dataclass(frozen=True)
class OutputPaths:
    """The three files of one luminance-change raster, named after its stem."""

    h5: Path
    tif: Path
    png: Path

    @classmethod
    def for_raster(cls, output_dir: Path, lum_change: str | Path) -> OutputPaths:
        stem = Path(lum_change).stem
        base = Path(output_dir)
        return cls(base / f"{stem}_pred.h5", base / f"{stem}_pred.tif", base / f"{stem}_pred.png")

    def __iter__(self):
        return iter((self.h5, self.tif, self.png))


def check_free(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse to start when a finished output exists and ``overwrite`` is false."""
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            raise DataError(f"output {path} exists; set overwrite=true to replace it")


def _chunks(grid: RasterGrid) -> tuple[int, int]:
    return (min(CHUNK, grid.height), min(CHUNK, grid.width))


class HDF5Writer:
    """``prediction`` (float32, NaN = nodata) and ``mask`` (uint8, 255 = nodata), chunked.

    Groups: ``georeference`` (attrs ``crs`` WKT, ``transform`` = the six GDAL coefficients,
    ``width``, ``height``) and ``metadata`` (attrs from ``metadata``; lists become string arrays).
    """

    def __init__(self, path: Path, grid: RasterGrid, metadata: dict[str, Any]) -> None:
        self.path = Path(path)
        self.grid = grid
        self._tmp = temporary(self.path)
        self._tmp.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "w")
        shape = (grid.height, grid.width)
        opts = {"chunks": _chunks(grid), "compression": "gzip", "compression_opts": 1}
        self.prediction = self._file.create_dataset(
            "prediction", shape=shape, dtype="float32", fillvalue=np.nan, shuffle=True, **opts
        )
        self.prediction.attrs["description"] = "burned probability; NaN where nodata"
        self.mask = self._file.create_dataset(
            "mask", shape=shape, dtype="uint8", fillvalue=MASK_NODATA, **opts
        )
        self.mask.attrs["description"] = "1 burned, 0 unburned, 255 nodata"
        self.mask.attrs["nodata"] = MASK_NODATA
        geo = self._file.create_group("georeference")
        geo.attrs["crs"] = grid.crs_wkt
        geo.attrs["transform"] = np.asarray(grid.transform.to_gdal(), dtype=np.float64)
        geo.attrs["width"] = grid.width
        geo.attrs["height"] = grid.height
        meta = self._file.create_group("metadata")
        for key, value in metadata.items():
            meta.attrs[key] = _attr(value)

    def write_rows(self, y0: int, prediction: np.ndarray, mask: np.ndarray) -> None:
        y1 = y0 + prediction.shape[0]
        self.prediction[y0:y1, :] = prediction
        self.mask[y0:y1, :] = mask

    def finish(self) -> None:
        """Close the complete file, still under its temporary name."""
        if self._file.id.valid:
            self._file.close()

    def publish(self, replace: bool = True) -> None:
        """Give the finished file its name (``replace=False``: FileExistsError if taken)."""
        publish(self._tmp, self.path, replace)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        remove(self._tmp)


def _attr(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return np.asarray(["" if v is None else str(v) for v in value], dtype=h5py.string_dtype())
    return value


class Thumbnail:
    """A decimated copy of a raster collected row band by row band (every ``step``-th pixel)."""

    def __init__(self, height: int, width: int, max_side: int = 800, dtype: Any = np.float32):
        self.step = max(1, math.ceil(max(height, width) / max_side))
        fill = np.nan if np.issubdtype(np.dtype(dtype), np.floating) else 0
        self.data = np.full(
            (math.ceil(height / self.step), math.ceil(width / self.step)), fill, dtype=dtype
        )

    def add_rows(self, y0: int, rows: np.ndarray) -> None:
        first = (-y0) % self.step  # first row in this block whose raster row is a multiple of step
        picked = rows[first :: self.step, :: self.step]
        start = (y0 + first) // self.step
        self.data[start : start + picked.shape[0]] = picked


def write_quicklook(
    path: Path,
    dnbr: np.ndarray | None,
    prediction: np.ndarray,
    label: np.ndarray | None,
    title: str,
    threshold: float,
) -> None:
    """PNG of dNBR, burned probability (with its ``threshold`` contour) and, if given, the label,
    written to ``path`` as it is (the caller gives a temporary name and publishes it)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    panels: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    if dnbr is not None:
        finite = dnbr[np.isfinite(dnbr)]
        lo, hi = np.percentile(finite, [2, 98]) if finite.size else (-0.5, 0.5)
        lim = float(max(abs(lo), abs(hi), 1e-6))
        panels.append(("dNBR", dnbr, {"cmap": "RdYlGn_r", "vmin": -lim, "vmax": lim}))
    panels.append(("burned probability", prediction, {"cmap": "magma", "vmin": 0.0, "vmax": 1.0}))
    if label is not None:
        shown = np.ma.masked_equal(label, MASK_NODATA)
        cmap = ListedColormap(["#2b7a3d", "#d7301f"])
        panels.append(("label (SAR binary product)", shown, {"cmap": cmap, "vmin": 0, "vmax": 1}))

    # each panel fits a 5-inch box whatever the scene's shape, so the canvas stays small
    aspect = prediction.shape[0] / max(prediction.shape[1], 1)
    h, w = (5.0, max(5.0 / aspect, 1.2)) if aspect >= 1 else (max(5.0 * aspect, 1.2), 5.0)
    fig = Figure(figsize=(len(panels) * (w + 1.2), h + 0.8), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, data, kw) in zip(axes, panels, strict=True):
        im = ax.imshow(data, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if name == "burned probability" and np.isfinite(data).any() and min(data.shape) > 1:
            with contextlib.suppress(ValueError):
                ax.contour(
                    np.nan_to_num(data, nan=0.0), levels=[threshold], colors="cyan", linewidths=0.6
                )
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        if name.startswith("label"):
            bar.set_ticks([0.25, 0.75], labels=["unburned", "burned"])
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, format="png", bbox_inches="tight")


def probability_cog(path: Path, grid: RasterGrid) -> GeoTiffWriter:
    """The writer of a scene's probability COG (float32, NaN = nodata)."""
    # DEFLATE level 1 with the float predictor is as small as the default level 6 on probability
    # maps (+1.5%) and a third faster
    return GeoTiffWriter(path, grid, "float32", nodata=float("nan"), block=CHUNK, level=1)
