"""The one raster-output module and the atomic helper: COG and GeoTIFF written window by window
or whole, with nodata, compression, tags and overviews; nothing appears before it is complete."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from firedpy_nrt.atomic import output_file, remove_abandoned, staging_dir, temporary
from firedpy_nrt.geotiff import GeoTiffWriter, write_geotiff
from firedpy_nrt.raster_grid import RasterGrid

GRID = RasterGrid(CRS.from_epsg(32633), Affine(20.0, 0, 400_000.0, 0, -20.0, 5_000_000.0), 700, 530)


def _windows(grid: RasterGrid, block: int):
    return list(grid.windows(block))


@pytest.mark.parametrize("cog", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_windows_in_any_order_make_the_raster(tmp_path: Path, cog: bool, dtype: str) -> None:
    rng = np.random.default_rng(0)
    data = (rng.random((GRID.height, GRID.width)) * 200).astype(dtype)
    nodata = float("nan") if dtype == "float32" else 255
    if dtype == "float32":
        data[:7] = np.nan
    path = tmp_path / "out.tif"
    windows = _windows(GRID, 128)[::-1]  # not row-major
    with GeoTiffWriter(path, GRID, dtype, nodata=nodata, cog=cog, tags={"fire_id": "9"},
                       descriptions=("x",), overview_resampling="NEAREST") as w:  # fmt: skip
        for win in windows:
            r, c = int(win.row_off), int(win.col_off)
            w.write(data[r : r + int(win.height), c : c + int(win.width)], win)
        assert not path.exists()  # nothing under the final name before the commit
        assert w.commit() == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    with rasterio.open(path) as ds:
        assert ds.crs == GRID.crs and ds.transform == GRID.transform
        assert (ds.width, ds.height, ds.dtypes[0]) == (GRID.width, GRID.height, dtype)
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.tags()["fire_id"] == "9" and ds.descriptions == ("x",)
        assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
        if dtype == "float32":
            assert np.isnan(ds.nodata)
        else:
            assert ds.nodata == 255
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        assert (layout == "COG") == cog
        if cog:
            assert ds.overviews(1)  # 700 x 530 with 256-pixel blocks has an overview level


def test_whole_array_multiband(tmp_path: Path) -> None:
    data = np.arange(3 * 40 * 30, dtype=np.uint8).reshape(3, 40, 30)
    grid = RasterGrid(GRID.crs, GRID.transform, 30, 40)
    path = write_geotiff(tmp_path / "rgb.tif", data, grid, nodata=0)
    with rasterio.open(path) as ds:
        assert ds.count == 3 and ds.block_shapes[0][0] % 16 == 0
        np.testing.assert_array_equal(ds.read(), data)


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    path.write_bytes(b"finished earlier")
    with pytest.raises(RuntimeError), GeoTiffWriter(path, GRID, "float32", nodata=np.nan) as w:
        w.write(np.zeros((10, 10), np.float32), Window(0, 0, 10, 10))
        raise RuntimeError("disk gone")
    assert path.read_bytes() == b"finished earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_temporary_names_are_unique_hidden_and_never_match_outputs(tmp_path: Path) -> None:
    a, b = temporary(tmp_path / "x.tif"), temporary(tmp_path / "x.tif")
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(".x.tif.") and a.name.endswith(".tmp")
    assert str(os.getpid()) in a.name


def test_output_file_publishes_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.csv"
    with output_file(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    with pytest.raises(ValueError), output_file(target) as tmp:
        tmp.write_text("half")
        raise ValueError
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.csv"]


def test_staging_dirs_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / "cache"
    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
    )
    mine = staging_dir(target)
    stale = Path(str(mine).replace(f"-{os.getpid()}-", f"-{dead}-"))
    stale.mkdir()
    other_host = tmp_path / ".cache.elsewhere-1-abcd.tmp"
    other_host.mkdir()
    remove_abandoned(target)
    assert mine.is_dir() and not stale.exists() and other_host.is_dir()
