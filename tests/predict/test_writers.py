"""HDF5, COG and PNG writers: structure, georeference, agreement, atomic names, overwrite."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS

from firedpy_nrt.errors import DataError
from firedpy_nrt.predict.writers import (
    HDF5Writer,
    OutputPaths,
    Thumbnail,
    check_free,
    probability_cog,
    write_quicklook,
)
from firedpy_nrt.raster_grid import RasterGrid

GRID = RasterGrid(
    CRS.from_epsg(32612), Affine(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0), 170, 300
)


def _blocks(height: int, step: int):
    for y0 in range(0, height, step):
        yield y0, min(step, height - y0)


def _data(grid: RasterGrid) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    prob = rng.random((grid.height, grid.width)).astype(np.float32)
    prob[:5] = np.nan
    mask = (prob > 0.5).astype(np.uint8)
    mask[np.isnan(prob)] = 255
    return prob, mask


def test_hdf5_layout_and_georeference(tmp_path: Path) -> None:
    prob, mask = _data(GRID)
    path = tmp_path / "x_pred.h5"
    w = HDF5Writer(
        path, GRID, {"checkpoint": "/a/b.ckpt", "threshold": 0.4, "sources": ["a", None]}
    )
    assert not path.exists() and len(list(tmp_path.glob(".x_pred.h5.*.tmp"))) == 1
    for y0, h in _blocks(GRID.height, 37):
        w.write_rows(y0, prob[y0 : y0 + h], mask[y0 : y0 + h])
    w.finish()
    w.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_pred.h5"]
    with h5py.File(path, "r") as f:
        assert f["prediction"].dtype == np.float32 and f["prediction"].shape == (300, 170)
        assert f["mask"].dtype == np.uint8 and f["mask"].shape == (300, 170)
        assert f["prediction"].chunks is not None and f["mask"].chunks is not None
        np.testing.assert_array_equal(f["prediction"][:], prob)
        np.testing.assert_array_equal(f["mask"][:], mask)
        geo = f["georeference"].attrs
        assert CRS.from_wkt(geo["crs"]) == GRID.crs
        assert tuple(geo["transform"]) == GRID.transform.to_gdal()
        assert Affine.from_gdal(*geo["transform"]) == GRID.transform
        assert (geo["width"], geo["height"]) == (170, 300)
        meta = f["metadata"].attrs
        assert meta["checkpoint"] == "/a/b.ckpt" and meta["threshold"] == pytest.approx(0.4)
        assert [s.decode() if isinstance(s, bytes) else s for s in meta["sources"]] == ["a", ""]


def test_cog_matches_hdf5_and_grid(tmp_path: Path) -> None:
    prob, _ = _data(GRID)
    path = tmp_path / "x_pred.tif"
    w = probability_cog(path, GRID)
    for y0, h in _blocks(GRID.height, 64):
        w.write(prob[y0 : y0 + h], rasterio.windows.Window(0, y0, GRID.width, h))
    w.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_pred.tif"]
    with rasterio.open(path) as ds:
        assert ds.crs == GRID.crs and ds.transform == GRID.transform
        assert (ds.height, ds.width) == (300, 170)
        assert np.isnan(ds.nodata)
        assert ds.profile["tiled"]
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(ds.read(1), prob)


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    h5 = HDF5Writer(tmp_path / "a_pred.h5", GRID, {})
    tif = probability_cog(tmp_path / "a_pred.tif", GRID)
    h5.abort()
    tif.abort()
    assert list(tmp_path.iterdir()) == []


def test_check_free_refuses_existing(tmp_path: Path) -> None:
    paths = OutputPaths.for_raster(tmp_path, "/x/2282_20200508_20200520_DeltaLumin_30m.tif")
    assert paths.h5.name == "2282_20200508_20200520_DeltaLumin_30m_pred.h5"
    assert paths.tif.name.endswith("_pred.tif") and paths.png.name.endswith("_pred.png")
    check_free(paths, overwrite=False)
    paths.tif.write_text("finished")
    with pytest.raises(DataError, match=r"_pred\.tif exists; set overwrite=true"):
        check_free(paths, overwrite=False)
    check_free(paths, overwrite=True)


@pytest.mark.parametrize(
    ("height", "width", "max_side"), [(300, 170, 64), (7, 5, 800), (1000, 3, 100)]
)
def test_thumbnail_from_bands_equals_strided_copy(height: int, width: int, max_side: int) -> None:
    full = np.arange(height * width, dtype=np.float32).reshape(height, width)
    thumb = Thumbnail(height, width, max_side=max_side)
    for y0, h in _blocks(height, 23):
        thumb.add_rows(y0, full[y0 : y0 + h])
    np.testing.assert_array_equal(thumb.data, full[:: thumb.step, :: thumb.step])
    assert max(thumb.data.shape) <= max_side


@pytest.mark.parametrize("with_label", [True, False])
def test_quicklook_png(tmp_path: Path, with_label: bool) -> None:
    prob, mask = _data(GRID)
    label = mask if with_label else None
    out = tmp_path / "q_pred.png"
    write_quicklook(out, prob - 0.5, prob, label, title="fire 1", threshold=0.5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q_pred.png"]
    from matplotlib.image import imread

    img = imread(out)
    assert img.shape[1] > img.shape[0]  # panels side by side
