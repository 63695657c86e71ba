"""Coherence change from two HyP3 InSAR products: (d0, d1) before the fire, (d1, d2) across it.

Each product zip holds one ``*_corr.tif`` (coherence 0..1, 0 = nodata), read in place
(``/vsizip/``: nothing is extracted). The output keeps the (d1, d2) product's lattice over the
event's outline plus ``sar.buffer_m``; the (d0, d1) coherence is brought onto it (exactly when
both share a lattice, bilinearly otherwise).

``sar.coh_formula``: ``pre_minus_co`` (default) is coh(d0, d1) - coh(d1, d2), which rises over
burns (the fire decorrelates the pair that spans it), as in ``source=synthetic`` and the data
the original model was trained on; ``co_minus_pre`` is its negative.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from shapely.geometry.base import BaseGeometry

from firedpy_nrt.errors import DataError, first_line
from firedpy_nrt.prepare.sar.lattice import output_grid, read_onto
from firedpy_nrt.raster_grid import RasterGrid

CORR_SUFFIX = "_corr.tif"


def corr_path(archive: Path) -> str:
    """The GDAL path of the product's coherence raster inside ``archive``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [
                info.filename
                for info in zf.infolist()
                if info.filename.endswith(CORR_SUFFIX) and not info.is_dir()
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: not a readable zip ({first_line(exc)})") from None
    safe = [
        m for m in members if not m.startswith("/") and ".." not in m.split("/") and "\\" not in m
    ]
    if len(safe) != 1:
        raise DataError(f"{archive}: expected one *{CORR_SUFFIX} in the product, found {len(safe)}")
    return f"/vsizip/{archive}/{safe[0]}"


def coherence_change(
    pre_archive: Path,
    co_archive: Path,
    area: BaseGeometry,
    buffer_m: float,
    formula: str,
) -> tuple[np.ndarray, RasterGrid]:
    """The coherence change and its grid (NaN where either coherence is nodata)."""
    try:
        with (
            rasterio.open(corr_path(co_archive)) as co_src,
            rasterio.open(corr_path(pre_archive)) as pre_src,
        ):
            for src, archive in ((co_src, co_archive), (pre_src, pre_archive)):
                if src.crs is None or src.count != 1:
                    raise DataError(f"{archive}: the coherence raster has no CRS or not 1 band")
            grid = output_grid([co_src], area, buffer_m)
            co = read_onto(co_src, grid)
            pre = read_onto(pre_src, grid)
    except RasterioError as exc:
        raise DataError(f"cannot read a HyP3 coherence raster ({first_line(exc)})") from None
    co = np.where(co > 1.0, np.nan, co)
    pre = np.where(pre > 1.0, np.nan, pre)
    change = pre - co if formula == "pre_minus_co" else co - pre
    return change.astype(np.float32), grid
