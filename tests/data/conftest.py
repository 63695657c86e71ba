"""Small real UTM GeoTIFFs for the data tests, and match CSVs that list them.

Each fire has four single-band layers like real ones: luminance change on a 100 m grid in UTM
zone 12 (the reference), coherence change at 50 m over a larger extent, dNBR at 30 m in UTM zone 13
(another CRS) with a cloud gap of NaN, and a uint8 binary product with nodata 255 and a no-data
stripe. The burned area is a disk whose centre is known in map coordinates.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points
from rasterio.warp import transform_bounds

from firedpy_nrt.data.layers import binary_product_name, coh_change_name, lum_change_name
from firedpy_nrt.data.match_csv import COLUMNS

REF_CRS = "EPSG:32612"
OTHER_CRS = "EPSG:32613"


def write_tif(path: Path, array: np.ndarray, crs: str | None, transform, nodata=None) -> Path:
    """One-band GeoTIFF (``crs=None`` writes one without a CRS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype.name,
        transform=transform,
        nodata=nodata,
    )
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


@dataclass
class Fire:
    fire_id: str
    row: dict = field(default_factory=dict)
    centre: tuple[float, float] = (0.0, 0.0)  # burned disk centre, reference CRS metres
    radius: float = 0.0
    size: int = 0


def grid_xy(transform, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs = transform.c + cols * transform.a
    ys = transform.f + rows * transform.e
    return xs, ys


def make_fire(
    folder: Path,
    fire_id: str,
    *,
    size: int = 40,
    offset: float = 0.0,
    x0: float = 400_000.0,
    y0: float = 4_000_000.0,
    label: bool = True,
    d1: date = date(2020, 5, 8),
    d2: date = date(2020, 5, 20),
) -> Fire:
    """Write one fire's four layers under ``folder``; ``offset`` shifts every input value."""
    folder.mkdir(parents=True, exist_ok=True)
    res = 100.0
    ref_t = from_origin(x0, y0, res, res)
    cx, cy = x0 + size * res * 0.45, y0 - size * res * 0.55
    radius = size * res * 0.25

    def burned(xs, ys):
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2

    xs, ys = grid_xy(ref_t, size, size)
    b = burned(xs, ys)
    rng = np.random.default_rng(int(fire_id))
    lum = (np.where(b, -3.0, 0.0) + rng.normal(0, 0.1, (size, size)) + offset).astype(np.float32)
    lum[:, -3:] = -9999.0  # SAR border: outside the map
    paths = {}
    paths["lum_change"] = write_tif(
        folder / lum_change_name(fire_id, d1, d2, "100m"), lum, REF_CRS, ref_t, nodata=-9999.0
    )

    # coherence change: 50 m, extent 500 m larger on each side, float without nodata (NaN)
    ct = from_origin(x0 - 500, y0 + 500, 50.0, 50.0)
    cn = size * 2 + 20
    xs, ys = grid_xy(ct, cn, cn)
    coh = (np.where(burned(xs, ys), -0.3, 0.1) + offset).astype(np.float32)
    coh[:4, :] = np.nan
    paths["coh_change"] = write_tif(
        folder / coh_change_name(fire_id, date(2020, 4, 26), d1, d2), coh, REF_CRS, ct
    )

    # dNBR: UTM zone 13 at 30 m over the reference extent, NaN cloud in the lower-left
    left, bottom, right, top = transform_bounds(
        REF_CRS, OTHER_CRS, x0, y0 - size * res, x0 + size * res, y0
    )
    dt = from_origin(left - 300, top + 300, 30.0, 30.0)
    dw, dh = int((right - left + 600) / 30), int((top - bottom + 600) / 30)
    xs, ys = grid_xy(dt, dh, dw)
    rx, ry = warp_points(OTHER_CRS, REF_CRS, xs.ravel(), ys.ravel())
    rx, ry = np.asarray(rx).reshape(xs.shape), np.asarray(ry).reshape(ys.shape)
    dnbr = (np.where(burned(rx, ry), 0.5, 0.0) + offset).astype(np.float32)
    cloud = (rx < x0 + size * res * 0.25) & (ry < y0 - size * res * 0.75)
    dnbr[cloud] = np.nan
    paths["dnbr"] = write_tif(
        folder / f"S2B_L2A_T12SVC_{fire_id}_20200507T180909_20200526T175921_30m_DNBR.TIF",
        dnbr,
        OTHER_CRS,
        dt,
    )

    if label:
        lab = b.astype(np.uint8)
        lab[: size // 8, :] = 255  # no-data stripe in the label
        paths["binary_product"] = write_tif(
            folder / binary_product_name(fire_id, d1, d2), lab, REF_CRS, ref_t, nodata=255
        )
    row = {
        "fire_id": fire_id,
        **{k: str(v) for k, v in paths.items()},
        "binary_product": str(paths["binary_product"]) if label else None,
        "lum_date_pre": d1.isoformat(),
        "lum_date_post": d2.isoformat(),
        "dnbr_sensor": "S2B",
        "dnbr_date_pre": "2020-05-07",
        "dnbr_date_post": "2020-05-26",
        "dnbr_gap_days": "6",
    }
    return Fire(fire_id, row, (cx, cy), radius, size)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A match CSV in the contract's columns (absolute paths; readers accept both)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in COLUMNS])
    return path


@pytest.fixture
def fire(tmp_path: Path) -> Fire:
    return make_fire(tmp_path / "layers", "2282")


@pytest.fixture
def fires_csv(tmp_path: Path) -> tuple[Path, list[Fire]]:
    """Six fires, 48x48 px each, in one match CSV."""
    fires = [
        make_fire(tmp_path / "layers", str(100 + i), size=48, x0=400_000.0 + 20_000 * i)
        for i in range(6)
    ]
    return write_csv(tmp_path / "match.csv", [f.row for f in fires]), fires


class GeoHelpers:
    """The generators above, handed to tests as the ``geo`` fixture (importlib mode has no
    importable conftest)."""

    REF_CRS = REF_CRS
    OTHER_CRS = OTHER_CRS
    write_tif = staticmethod(write_tif)
    make_fire = staticmethod(make_fire)
    write_csv = staticmethod(write_csv)
    grid_xy = staticmethod(grid_xy)


@pytest.fixture
def geo() -> type[GeoHelpers]:
    return GeoHelpers
