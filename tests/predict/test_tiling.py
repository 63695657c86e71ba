"""Tile grids cover every pixel without reading outside; blending has no seams."""

from __future__ import annotations

import numpy as np
import pytest

from firedpy_nrt.predict.tiling import (
    BandAccumulator,
    TileLayout,
    axis_offsets,
    blend_window,
    normalize_rows,
    weight_sums,
)

SIZES = [(1, 1), (7, 300), (63, 64), (64, 64), (65, 129), (200, 77), (257, 190)]


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize("overlap", [0, 16, 63])
def test_tiles_cover_every_pixel_and_stay_inside(height: int, width: int, overlap: int) -> None:
    grid = TileLayout.build(height, width, tile_size=64, overlap=overlap)
    cover = np.zeros((height, width), dtype=int)
    for win in grid.windows():
        assert win.row_off >= 0 and win.col_off >= 0
        assert win.row_off + win.height <= height and win.col_off + win.width <= width
        assert win.height == min(64, height) and win.width == min(64, width)
        cover[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width] += 1
    assert cover.min() >= 1
    # consecutive tiles overlap by at least the asked overlap (where there is room for it)
    for offsets, size in ((grid.row_offsets, height), (grid.col_offsets, width)):
        steps = np.diff(offsets)
        assert (steps <= 64 - overlap).all() and (steps > 0).all()
        assert offsets[-1] + min(64, size) == size


def test_axis_offsets_examples() -> None:
    assert axis_offsets(100, 64, 0) == (0, 36)
    assert axis_offsets(128, 64, 0) == (0, 64)
    assert axis_offsets(130, 64, 16) == (0, 48, 66)
    assert axis_offsets(10, 64, 16) == (0,)
    with pytest.raises(ValueError):
        axis_offsets(100, 64, 64)


@pytest.mark.parametrize("kind", ["linear", "gaussian"])
def test_blend_window_positive_and_symmetric(kind: str) -> None:
    w = blend_window(64, kind, 16)
    assert (w > 0).all() and w.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(w, w[::-1])
    if kind == "linear":
        assert (w[16:48] == 1.0).all()


def _stitch(grid: TileLayout, kind: str, tile_fn) -> np.ndarray:
    out = np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    rw, cw = weight_sums(grid, kind)
    calls = []

    def sink(y0: int, rows: np.ndarray) -> None:
        calls.append((y0, rows.shape))
        out[y0 : y0 + rows.shape[0]] = normalize_rows(y0, rows, rw, cw)

    acc = BandAccumulator(grid, kind, sink)
    for i, win in enumerate(grid.windows()):
        tile = np.full((grid.tile_size, grid.tile_size), -7.0, dtype=np.float32)  # padding junk
        tile[: win.height, : win.width] = tile_fn(win)
        acc.add(i, tile)
    acc.finish()
    # rows arrive once each, in order, and never more than one band at a time
    assert sum(s[0] for _, s in calls) == grid.height
    assert [y for y, _ in calls] == sorted(y for y, _ in calls)
    assert all(s[0] <= grid.tile_height for _, s in calls)
    return out


@pytest.mark.parametrize("kind", ["linear", "gaussian"])
@pytest.mark.parametrize(("height", "width"), [(200, 77), (65, 129), (30, 20)])
@pytest.mark.parametrize("value", [0.3, 0.123456789, 1.0, 0.0])
def test_constant_model_gives_exactly_constant_map(kind, height, width, value) -> None:
    grid = TileLayout.build(height, width, tile_size=64, overlap=24)
    out = _stitch(grid, kind, lambda win: value)
    assert (out == np.float32(value)).all()


@pytest.mark.parametrize("kind", ["linear", "gaussian"])
def test_position_dependent_map_is_reproduced(kind: str) -> None:
    """A model whose output is a function of the pixel's place is stitched back unchanged."""
    height, width = 150, 101
    truth = np.random.default_rng(0).random((height, width)).astype(np.float32)
    grid = TileLayout.build(height, width, tile_size=48, overlap=12)

    def tile_fn(win):
        return truth[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width]

    out = _stitch(grid, kind, tile_fn)
    np.testing.assert_allclose(out, truth, rtol=0, atol=1e-6)


def test_band_memory_does_not_grow_with_height() -> None:
    shapes = []
    for height in (100, 10_000):
        grid = TileLayout.build(height, 50, tile_size=32, overlap=8)
        shapes.append(BandAccumulator(grid, "linear", lambda y, r: None).band_shape)
    assert shapes[0] == shapes[1] == (32, 50)


def test_out_of_order_tiles_are_refused() -> None:
    grid = TileLayout.build(100, 40, tile_size=32, overlap=0)
    acc = BandAccumulator(grid, "linear", lambda y, r: None)
    acc.add(len(grid.col_offsets) * 2, np.zeros((32, 32)))
    with pytest.raises(RuntimeError, match="row order"):
        acc.add(0, np.zeros((32, 32)))
