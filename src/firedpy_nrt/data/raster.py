"""Aligned windowed reads of one match-CSV row on the luminance-change grid.

The luminance-change raster is the reference grid (its CRS, transform and size); coherence
change, dNBR and the binary product are brought onto it with rasterio ``WarpedVRT`` (bilinear for
the continuous layers, nearest for the label), so no layer is ever materialised or resized.
Nodata stays nodata: each source's nodata value (or NaN for float rasters without one) is passed
as ``src_nodata`` and the warped value is NaN there, so bilinear resampling never blends a
nodata value into a real one.

``read(window)`` returns ``image`` float32 ``[C, h, w]`` in :data:`CHANNELS` order with NaN where
a layer is nodata, and ``label`` uint8 ``[h, w]``: 1 burned (binary product >= the label
threshold, :data:`DEFAULT_LABEL_THRESHOLD` unless given), 0 unburned,
:data:`IGNORE` where the binary product is nodata/NaN or the luminance change is nodata (outside
the map); ``label`` is None when the row has no binary product. Windows that reach past the grid
are padded with NaN / :data:`IGNORE`, so a raster smaller than a chip loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from firedpy_nrt.errors import DataError, first_line

log = logging.getLogger(__name__)

#: Input channels, in model order. The first one is the reference grid.
CHANNELS: tuple[str, ...] = ("lum_change", "coh_change", "dnbr")
#: The label column of the match CSV.
LABEL = "binary_product"
#: Label value ignored by the loss and the metrics.
IGNORE = 255
#: A binary product's pixel is burned where its value is at least this (``data.label_threshold``):
#: the original SAR pipeline fills a whole raster with 0.01 when fewer than 30 pixels burned, so
#: ``> 0`` would read such a product as all burned.
DEFAULT_LABEL_THRESHOLD = 0.5

WindowLike = Window | tuple[int, int, int, int]


def row_context(csv_path: str | os.PathLike[str] | None, index: int, fire_id: Any) -> str:
    """How errors name a CSV row: ``match.csv line 3 (fire 2282)`` (line counts the header)."""
    where = f"{csv_path} line {index + 2}" if csv_path is not None else f"row {index + 1}"
    return f"{where} (fire {fire_id})"


@dataclass(frozen=True)
class _Layer:
    name: str
    path: Path
    dataset: Any  # rasterio DatasetReader
    reader: Any  # the dataset itself (reference) or a WarpedVRT onto the reference grid
    nodata: float | None


def _as_window(window: WindowLike | None, height: int, width: int) -> Window:
    if window is None:
        return Window(0, 0, width, height)
    if isinstance(window, Window):
        return window
    row_off, col_off, h, w = window
    return Window(col_off, row_off, w, h)


class AlignedRow:
    """One match-CSV row's layers on the luminance-change grid; a context manager.

    ``row`` is a mapping with the match CSV's path columns (``lum_change``, ``coh_change``,
    ``dnbr``, ``binary_product`` which may be None) and optionally ``fire_id``; ``context`` names
    the row in errors (see :func:`row_context`). Every missing, corrupt, CRS-less or
    non-overlapping raster raises :class:`DataError` naming the file and the row.
    """

    def __init__(
        self,
        row: Mapping[str, Any],
        context: str | None = None,
        label_threshold: float = DEFAULT_LABEL_THRESHOLD,
    ) -> None:
        self.label_threshold = float(label_threshold)
        self.fire_id = str(row.get("fire_id", "")) if row.get("fire_id") is not None else ""
        self.context = context or (f"fire {self.fire_id}" if self.fire_id else "match row")
        self.paths: dict[str, Path | None] = {}
        for name in (*CHANNELS, LABEL):
            value = row.get(name)
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            if name != LABEL and (missing or str(value).strip() == ""):
                raise DataError(f"{self.context}: {name} is empty")
            self.paths[name] = None if missing or str(value).strip() == "" else Path(str(value))
        self._datasets: list[Any] = []
        self._layers: dict[str, _Layer] = {}
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------
    def _fail(self, name: str, path: Path, problem: str) -> DataError:
        return DataError(f"{self.context}: {name} raster {path}: {problem}")

    def _open_dataset(self, name: str, path: Path) -> Any:
        if not path.is_file():
            raise self._fail(name, path, "not found")
        try:
            ds = rasterio.open(path)
        except (RasterioError, OSError) as exc:
            raise self._fail(name, path, f"cannot be read ({first_line(exc)})") from None
        self._datasets.append(ds)
        if ds.crs is None or not ds.crs:
            raise self._fail(name, path, "has no CRS (georeference it, e.g. gdal_edit.py -a_srs)")
        if ds.transform.is_identity:
            raise self._fail(name, path, "has no geotransform")
        return ds

    def _open(self) -> None:
        ref_path = self.paths[CHANNELS[0]]
        assert ref_path is not None
        ref = self._open_dataset(CHANNELS[0], ref_path)
        self.crs: CRS = ref.crs
        self.transform = ref.transform
        self.height: int = ref.height
        self.width: int = ref.width
        self.bounds = ref.bounds
        self.res: tuple[float, float] = ref.res
        profile = dict(ref.profile)
        profile.update(count=len(CHANNELS), dtype="float32", nodata=float("nan"))
        self.profile: dict[str, Any] = profile
        self._layers[CHANNELS[0]] = _Layer(CHANNELS[0], ref_path, ref, ref, _nodata_of(ref))

        for name in (*CHANNELS[1:], LABEL):
            path = self.paths[name]
            if path is None:
                continue
            ds = self._open_dataset(name, path)
            scale = self._check_overlap(name, path, ds)
            src_nodata = _nodata_of(ds)
            if name == LABEL and src_nodata == 0:
                log.warning(
                    "%s: %s declares nodata=0, the unburned value: unburned pixels are ignored",
                    self.context,
                    path,
                )
            resampling = Resampling.nearest if name == LABEL else Resampling.bilinear
            # GDAL widens the bilinear kernel when downsampling by a ratio it estimates per
            # chunk, so a window read would differ from a full read; fix the ratio (destination
            # pixels per source pixel) from the source's footprint on the reference grid.
            extras = {}
            if scale is not None:
                extras = {"XSCALE": f"{scale[0]:.12g}", "YSCALE": f"{scale[1]:.12g}"}
            try:
                vrt = WarpedVRT(
                    ds,
                    crs=self.crs,
                    transform=self.transform,
                    width=self.width,
                    height=self.height,
                    resampling=resampling,
                    src_nodata=src_nodata,
                    nodata=float("nan"),
                    dtype="float32",
                    # (Nearly) exact coordinates for every pixel: GDAL's default approximates
                    # the reprojection linearly over each requested chunk (error up to 0.125
                    # px), so the same pixel came out differently through different windows.
                    # rasterio refuses 0; this threshold makes the approximation subdivide down
                    # to exact transforms.
                    tolerance=1e-9,
                    **extras,
                )
            except (RasterioError, OSError) as exc:
                raise self._fail(name, path, f"cannot be warped ({first_line(exc)})") from None
            self._datasets.append(vrt)
            self._layers[name] = _Layer(name, path, ds, vrt, src_nodata)

    def _check_overlap(self, name: str, path: Path, ds: Any) -> tuple[float, float] | None:
        """DataError unless ``ds`` overlaps the reference; its pixel size in reference pixels.

        The footprint is compared in the reference CRS, or in the source's when the source does
        not project into the reference CRS (a global raster in degrees, say); the scale is then
        unknown (None).
        """
        ref = self.bounds
        try:
            left, bottom, right, top = transform_bounds(
                ds.crs, self.crs, *ds.bounds, densify_pts=21
            )
        except (RasterioError, ValueError):
            left = bottom = right = top = math.nan
        scale: tuple[float, float] | None = None
        if all(math.isfinite(v) for v in (left, bottom, right, top)):
            overlap = not (
                left >= ref.right or right <= ref.left or bottom >= ref.top or top <= ref.bottom
            )
            scale = (
                (right - left) / ds.width / abs(self.res[0]),
                (top - bottom) / ds.height / abs(self.res[1]),
            )
        else:
            try:
                rl, rb, rr, rt = transform_bounds(self.crs, ds.crs, *ref, densify_pts=21)
            except (RasterioError, ValueError) as exc:
                raise self._fail(name, path, f"cannot be projected ({first_line(exc)})") from None
            sb = ds.bounds
            overlap = all(math.isfinite(v) for v in (rl, rb, rr, rt)) and not (
                rl >= sb.right or rr <= sb.left or rb >= sb.top or rt <= sb.bottom
            )
        if not overlap:
            raise self._fail(
                name,
                path,
                f"does not overlap the luminance-change raster {self.paths[CHANNELS[0]]}",
            )
        return scale

    # -- reading -------------------------------------------------------------------------
    @property
    def has_label(self) -> bool:
        """Whether the row has a binary product (needed for training, not for prediction)."""
        return LABEL in self._layers

    def _read_layer(self, name: str, window: Window) -> np.ndarray:
        """Layer ``name`` over ``window`` as float32 with NaN for nodata, padded past the grid."""
        layer = self._layers[name]
        h, w = int(window.height), int(window.width)
        out = np.full((h, w), np.nan, dtype=np.float32)
        r0, c0 = int(window.row_off), int(window.col_off)
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + h, self.height), min(c0 + w, self.width)
        if rr1 <= rr0 or cc1 <= cc0:
            return out
        inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
        try:
            data = layer.reader.read(1, window=inner, out_dtype="float32")
        except (RasterioError, OSError) as exc:
            raise self._fail(name, layer.path, f"cannot be read ({first_line(exc)})") from None
        if (
            layer.reader is layer.dataset
            and layer.nodata is not None
            and not math.isnan(layer.nodata)
        ):
            # The reference is read directly, not warped: map its nodata value to NaN here.
            data[data == np.float32(layer.nodata)] = np.nan
        out[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = data
        return out

    def read_layer(self, name: str, window: WindowLike | None = None) -> np.ndarray:
        """One layer (a :data:`CHANNELS` name) over ``window``, float32 with NaN for nodata."""
        return self._read_layer(name, _as_window(window, self.height, self.width))

    def read_label(self, window: WindowLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The luminance change ``[h, w]`` and the label ``[h, w]`` (None without a binary product)."""
        win = _as_window(window, self.height, self.width)
        lum = self._read_layer(CHANNELS[0], win)
        if not self.has_label:
            return lum, None
        raw = self._read_layer(LABEL, win)
        label = np.where(raw >= self.label_threshold, 1, 0).astype(np.uint8)
        label[np.isnan(raw) | np.isnan(lum)] = IGNORE
        return lum, label

    def read(
        self, window: WindowLike | None = None, skip_empty: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image [C, h, w] float32 with NaN = nodata, label [h, w] uint8 or None)`` of ``window``.

        ``window`` is a rasterio ``Window`` or ``(row_off, col_off, height, width)`` on the
        reference grid; None reads the whole grid. With ``skip_empty``, a window where the
        luminance change is all nodata (nothing to map there) does not read the other layers.
        """
        win = _as_window(window, self.height, self.width)
        lum, label = self.read_label(win)
        image = np.full((len(CHANNELS), int(win.height), int(win.width)), np.nan, np.float32)
        image[0] = lum
        if skip_empty and not np.isfinite(lum).any():
            return image, label
        for i, name in enumerate(CHANNELS[1:], start=1):
            image[i] = self._read_layer(name, win)
        return image, label

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        # Closing a half-opened dataset must not mask the error that stopped the opening.
        for ds in reversed(self._datasets):
            with contextlib.suppress(RasterioError, OSError):
                ds.close()
        self._datasets.clear()

    def __enter__(self) -> AlignedRow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nodata_of(ds: Any) -> float | None:
    """The value to treat as nodata: the declared one, else NaN for float rasters, else none."""
    if ds.nodata is not None:
        return float(ds.nodata)
    if np.issubdtype(np.dtype(ds.dtypes[0]), np.floating):
        return float("nan")
    return None
