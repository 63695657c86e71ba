"""Sliding-window tiles over a whole raster, blending windows, and band-wise weighted stitching.

Tiles of one raster lie on a Cartesian grid of row and column offsets: a step of
``tile_size - overlap``, the last tile of each axis shifted inward so that it ends on the raster's
edge (every pixel covered, no tile reads outside). An axis shorter than one tile gets one tile of
the axis' length; the model input is padded to ``tile_size`` as nodata and the padding is cut off.

Blending multiplies each tile's probabilities by a separable window ``w_row[i] * w_col[j]`` and
divides the sum by the sum of the windows. Because the grid is a Cartesian product, that sum is
itself separable, ``W_row[y] * W_col[x]``, so no weight raster is ever stored, and a constant model
gives back exactly its constant (the sum is formed in float64 and rounded once to float32).

:class:`BandAccumulator` keeps only the rows that the current row of tiles covers: once the tiles
of the next row arrive, the rows above it are final and are handed to a sink, so memory is
``tile_size x width`` whatever the raster's height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

BLEND_WINDOWS = ("linear", "gaussian")


def axis_offsets(size: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Start offsets of tiles along one axis of ``size`` pixels; the last ends on the edge."""
    if size <= 0:
        raise ValueError(f"axis size must be positive, got {size}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile_size), got {overlap} for {tile}")
    if size <= tile:
        return (0,)
    stride = tile - overlap
    offsets = list(range(0, size - tile + 1, stride))
    if offsets[-1] + tile < size:
        offsets.append(size - tile)
    return tuple(offsets)


def blend_window(length: int, kind: str, overlap: int) -> np.ndarray:
    """1-D blending weights (float64, all > 0) for a tile of ``length`` pixels.

    ``linear`` ramps up over the overlap and is flat in the middle, so each pixel is a convex mix of
    at most the tiles that overlap there; ``gaussian`` (sigma = length / 8, as in nnU-Net) trusts
    tile centres more everywhere. Both stay strictly positive so pixels on the raster's edge,
    covered only by a tile's edge, still get a value.
    """
    i = np.arange(length, dtype=np.float64)
    if kind == "linear":
        dist = np.minimum(i, length - 1 - i) + 1.0
        return np.minimum(1.0, dist / (overlap + 1.0))
    if kind == "gaussian":
        sigma = max(length / 8.0, 1e-6)
        centre = (length - 1) / 2.0
        w = np.exp(-((i - centre) ** 2) / (2.0 * sigma**2))
        return np.maximum(w / w.max(), 1e-3)
    raise ValueError(f"unknown blending window {kind!r} (choose from {', '.join(BLEND_WINDOWS)})")


@dataclass(frozen=True)
class TileLayout:
    """The tiles covering a ``height x width`` raster, in row-major order."""

    height: int
    width: int
    tile_size: int
    overlap: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @classmethod
    def build(cls, height: int, width: int, tile_size: int, overlap: int) -> TileLayout:
        return cls(
            height=height,
            width=width,
            tile_size=tile_size,
            overlap=overlap,
            row_offsets=axis_offsets(height, tile_size, overlap),
            col_offsets=axis_offsets(width, tile_size, overlap),
        )

    @property
    def tile_height(self) -> int:
        """Rows a tile reads (less than ``tile_size`` only for rasters shorter than one tile)."""
        return min(self.tile_size, self.height)

    @property
    def tile_width(self) -> int:
        return min(self.tile_size, self.width)

    def __len__(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def position(self, index: int) -> tuple[int, int]:
        """(tile row, tile column) of the tile at ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile {index} out of range for {len(self)} tiles")
        return divmod(index, len(self.col_offsets))

    def window(self, index: int) -> Window:
        """The raster window tile ``index`` reads; always inside the raster."""
        r, c = self.position(index)
        return Window(self.col_offsets[c], self.row_offsets[r], self.tile_width, self.tile_height)

    def windows(self) -> Iterator[Window]:
        for i in range(len(self)):
            yield self.window(i)


def weight_sums(grid: TileLayout, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row and per-column sums of the blending windows: the weight at (y, x) is their product."""
    wr = blend_window(grid.tile_height, kind, grid.overlap)
    wc = blend_window(grid.tile_width, kind, grid.overlap)
    rows = np.zeros(grid.height, dtype=np.float64)
    cols = np.zeros(grid.width, dtype=np.float64)
    for o in grid.row_offsets:
        rows[o : o + grid.tile_height] += wr
    for o in grid.col_offsets:
        cols[o : o + grid.tile_width] += wc
    return rows, cols


#: ``sink(y0, rows)``: rows ``y0 .. y0 + len(rows)`` of the weighted sum, float64 ``[h, width]``;
#: ``rows`` is a view of the band, valid only during the call.
RowSink = Callable[[int, np.ndarray], None]


class BandAccumulator:
    """Weighted sum of tile probabilities over the current band of rows; finished rows go to a sink.

    Tiles must arrive in non-decreasing tile-row order (a sequential sampler gives that, and so does
    Lightning's unrepeated distributed sampler on each rank); a rank may skip tiles, whose share of
    the sum is then simply absent from its rows. Memory: one ``tile_height x width`` float64 band.
    """

    def __init__(self, grid: TileLayout, kind: str, sink: RowSink) -> None:
        self.grid = grid
        self.sink = sink
        self._wr = blend_window(grid.tile_height, kind, grid.overlap)
        self._wc = blend_window(grid.tile_width, kind, grid.overlap)
        self._band = np.zeros((grid.tile_height, grid.width), dtype=np.float64)
        self._row = 0  # index of the tile row the band starts at
        self._top = 0  # raster row of band[0]
        self._emitted = 0  # raster rows already handed to the sink
        self._closed = False

    @property
    def band_shape(self) -> tuple[int, int]:
        return self._band.shape

    def add(self, index: int, probs: np.ndarray) -> None:
        """Add tile ``index``'s probabilities (``[>=tile_height, >=tile_width]``; padding is cut)."""
        if self._closed:
            raise RuntimeError("accumulator already finished")
        r, c = self.grid.position(index)
        if r < self._row:
            raise RuntimeError(
                f"tile {index} (row {r}) arrived after its rows were written; tiles must come in "
                "row order"
            )
        while self._row < r:
            self._advance()
        h, w = self.grid.tile_height, self.grid.tile_width
        x0 = self.grid.col_offsets[c]
        y0 = self.grid.row_offsets[r] - self._top
        tile = np.asarray(probs, dtype=np.float64)[:h, :w]
        self._band[y0 : y0 + h, x0 : x0 + w] += tile * self._wr[:, None] * self._wc[None, :]

    def _advance(self) -> None:
        """Hand over the rows above the next tile row and shift the band up to it."""
        nxt = self.grid.row_offsets[self._row + 1]
        done = nxt - self._top
        self.sink(self._top, self._band[:done])  # a view: the sink must not keep it
        self._emitted = nxt
        self._band[:-done] = self._band[done:]
        self._band[-done:] = 0.0
        self._top = nxt
        self._row += 1

    def finish(self) -> None:
        """Hand over every row not yet written (skipped tile rows included, as zeros)."""
        if self._closed:
            return
        while self._row < len(self.grid.row_offsets) - 1:
            self._advance()
        rest = self.grid.height - self._top
        self.sink(self._top, self._band[:rest])
        self._emitted = self.grid.height
        self._closed = True


def normalize_rows(
    y0: int, weighted: np.ndarray, row_weights: np.ndarray, col_weights: np.ndarray
) -> np.ndarray:
    """Blended probabilities (float32) of rows starting at ``y0`` from their weighted sum."""
    h = weighted.shape[0]
    out = np.divide(weighted, row_weights[y0 : y0 + h, None])
    out /= col_weights[None, :]
    return out.astype(np.float32)
