"""Reading bands onto a target grid: the lattice fast path against GDAL's warper, block seams."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr.grid import (
    READ_OPTIONS,
    BlockReader,
    GridReader,
    LatticeUpsampler,
)
from firedpy_nrt.raster_grid import RasterGrid

from .conftest import S2_CRS, S2_DIR, S2_N20, S2_X0, S2_Y0, _read_crop


@pytest.fixture
def b12(tmp_path):
    """Real B12 at 20 m with a nodata hole, and a 10 m target grid offset by 3 target pixels."""
    a = _read_crop(S2_DIR / "s2_B12.jp2", S2_X0, S2_Y0, 20, S2_N20).astype(np.uint16)
    a[20:26, 30:35] = 0
    path = tmp_path / "b12.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=S2_N20, height=S2_N20, count=1, dtype="uint16",
        crs=S2_CRS, transform=Affine(20, 0, S2_X0, 0, -20, S2_Y0), nodata=0,
    ) as dst:  # fmt: skip
        dst.write(a, 1)
    grid = RasterGrid(rasterio.crs.CRS.from_user_input(S2_CRS),
                Affine(10, 0, S2_X0 + 30, 0, -10, S2_Y0 - 50), 2 * S2_N20, 2 * S2_N20)  # fmt: skip
    return path, grid


@pytest.mark.parametrize("resampling", [Resampling.nearest, Resampling.bilinear])
def test_lattice_upsampling_matches_gdal_warper(b12, resampling):
    path, grid = b12
    full = Window(0, 0, grid.width, grid.height)
    with GridReader(grid) as reader:
        reader.add("b", str(path), "P", resampling, 0)
        assert isinstance(reader._open["b"], LatticeUpsampler)
        ours = reader.read("b", full)
        # Block by block gives the same pixels: no seams at window edges.
        tiles = np.zeros_like(ours)
        for w in grid.windows(48):
            r, c = int(w.row_off), int(w.col_off)
            tiles[r : r + int(w.height), c : c + int(w.width)] = reader.read("b", w)
    np.testing.assert_array_equal(tiles, ours)
    with rasterio.open(path) as src, WarpedVRT(
        src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
        resampling=resampling, src_nodata=0, nodata=0,
    ) as vrt:  # fmt: skip
        gdal = vrt.read(1)
    np.testing.assert_array_equal(ours == 0, gdal == 0)
    if resampling == Resampling.nearest:
        np.testing.assert_array_equal(ours, gdal)
    else:
        diff = np.abs(ours.astype(int) - gdal.astype(int))
        assert diff.max() <= 1  # rounding only
    assert (ours[:, -3:] == 0).all() and (ours[:100, -4] != 0).all()  # east of the band: nodata


def test_other_grids_go_through_the_warper(b12):
    path, grid = b12
    odd = RasterGrid(grid.crs, Affine(15, 0, S2_X0, 0, -15, S2_Y0), 40, 40)
    with GridReader(odd) as reader:
        reader.add("b", str(path), "P")
        assert isinstance(reader._open["b"], WarpedVRT)
        assert reader.read("b", Window(0, 0, 40, 40)).shape == (40, 40)


@pytest.mark.parametrize("driver", ["GTiff", "JP2OpenJPEG"])
def test_block_reader_assembles_tiles_like_a_window_read(tmp_path, driver):
    """Unaligned windows over a tiled band (real B12, 128 px tiles) equal GDAL's window read."""
    a = _read_crop(S2_DIR / "s2_B12.jp2", S2_X0, S2_Y0, 20, 300).astype(np.uint16)
    path = tmp_path / ("b.tif" if driver == "GTiff" else "b.jp2")
    opts = (
        {"tiled": True, "blockxsize": 128, "blockysize": 128}
        if driver == "GTiff"
        else {"QUALITY": 100, "REVERSIBLE": "YES", "BLOCKXSIZE": 128, "BLOCKYSIZE": 128}
    )
    with rasterio.open(
        path, "w", driver=driver, width=300, height=300, count=1, dtype="uint16", crs=S2_CRS,
        transform=Affine(20, 0, S2_X0, 0, -20, S2_Y0), **opts,
    ) as dst:  # fmt: skip
        dst.write(a, 1)
    with rasterio.open(path) as src:
        assert src.block_shapes[0][0] == 128  # JPEG 2000 may report a full-width tile
        reader = BlockReader(src)
        assert reader.tiled
        for win in (Window(0, 0, 300, 300), Window(100, 37, 150, 200), Window(127, 129, 2, 171),
                    Window(256, 256, 44, 44), Window(0, 128, 128, 128)):  # fmt: skip
            np.testing.assert_array_equal(reader.read(win), src.read(1, window=win))
        assert len(reader._tiles) <= reader.capacity


def test_corrupt_jpeg2000_tile_raises_under_the_stage_read_options(tmp_path):
    """A cut-off JPEG 2000 read across several tiles is an error naming the product under the
    stage's READ_OPTIONS (GDAL's threaded decoder, its default, returned zeros for such a file
    in some runs here: single-threaded decoding is what makes the failure reliable)."""
    with rasterio.open(S2_DIR / "s2_B12.jp2") as src:
        a = src.read(1, window=Window(0, 0, 512, 512))
    path = tmp_path / "cut.jp2"
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=512, height=512, count=1, dtype="uint16",
        crs=S2_CRS, transform=Affine(20, 0, S2_X0, 0, -20, S2_Y0), QUALITY=100,
        REVERSIBLE="YES", BLOCKXSIZE=128, BLOCKYSIZE=128,
    ) as dst:  # fmt: skip
        dst.write(a, 1)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with rasterio.open(path) as src:
        grid = RasterGrid.of(src)
    with rasterio.Env(**READ_OPTIONS), GridReader(grid) as reader:
        reader.add("b", str(path), "PRODUCT")
        with pytest.raises(DataError, match="^PRODUCT: cannot read cut.jp2"):
            reader.read("b", Window(0, 0, 512, 512))
