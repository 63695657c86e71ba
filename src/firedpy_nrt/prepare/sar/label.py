"""An optional SAR binary product (the training label) on the luminance-change grid.

- ``perimeter``: 1 inside the event's outline, 0 outside, 255 (nodata) where the luminance
  change is nodata (outside the SAR swath).
- ``threshold``: the original combined rule. Burned where *both* layers are beyond the scene's
  mean by ``sar.label_k`` standard deviations in the burn direction: the luminance change below
  ``mean - k * sigma`` (burns darken C-band backscatter) and the coherence change above
  ``mean + k * sigma`` with ``coh_formula=pre_minus_co`` (below ``mean - k * sigma`` with
  ``co_minus_pre``). 255 where either layer is nodata. Never a 0.01 fill: a scene with few
  burned pixels is 0/1 like any other.
"""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from firedpy_nrt.prepare.sar.lattice import warp_onto
from firedpy_nrt.raster_grid import RasterGrid

NODATA = 255


def perimeter_label(lum: np.ndarray, grid: RasterGrid, outline: BaseGeometry) -> np.ndarray:
    shape = transform_geom("EPSG:4326", grid.crs, mapping(outline))
    inside = rasterize(
        [(shape, 1)],
        out_shape=(grid.height, grid.width),
        transform=grid.transform,
        fill=0,
        dtype="uint8",
    )
    return np.where(np.isfinite(lum), inside, NODATA).astype(np.uint8)


def threshold_label(
    lum: np.ndarray,
    lum_grid: RasterGrid,
    coh: np.ndarray,
    coh_grid: RasterGrid,
    k: float,
    coh_formula: str,
) -> np.ndarray:
    coh_on_lum = warp_onto(coh, coh_grid, lum_grid)
    valid = np.isfinite(lum) & np.isfinite(coh_on_lum)
    label = np.full(lum.shape, NODATA, dtype=np.uint8)
    if valid.sum() < 2:
        return label
    lum_v, coh_v = lum[valid], coh_on_lum[valid]
    dark = lum < lum_v.mean() - k * lum_v.std()
    if coh_formula == "pre_minus_co":
        decorrelated = coh_on_lum > coh_v.mean() + k * coh_v.std()
    else:
        decorrelated = coh_on_lum < coh_v.mean() - k * coh_v.std()
    label[valid] = (dark & decorrelated)[valid].astype(np.uint8)
    return label
