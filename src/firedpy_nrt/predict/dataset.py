"""The prediction dataset: every tile of every scene, in scene then row-major tile order.

Each item is ``{"image": float32 [C, tile, tile] raw values (NaN = nodata), "scene": int,
"tile": int}``. A tile of a raster smaller than ``tile_size`` is padded to ``tile_size`` by
mirroring the raster at its edges (U-Net's overlap-tile strategy), and the padding is cut off
again when stitching. Not with NaN: the networks pool over the whole tile (ASPP's image pooling,
MobileNetV3's squeeze-and-excitation), so a 256 px scene in a 512 px tile of nodata would be
seen as three quarters empty, which no training chip ever was; one demo model mapped 0.73 burned
IoU of a population's scenes unpadded and 0.08 padded with NaN. One scene's rasters stay open per
worker process while its tiles are read (sequential order makes that one open scene at a time).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from firedpy_nrt.data.raster import AlignedRow
from firedpy_nrt.predict.assembly import RowReader, ScenePlan

Opener = Callable[[dict[str, Any], str], RowReader]


def image_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its label: tiles need only the inputs, so the label is never opened."""
    return {**row, "binary_product": None}


def mirror_pad(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` ``[C, h, w]`` (h, w <= size) extended to ``[C, size, size]`` at the bottom and
    right by mirroring (repeatedly, for a raster much smaller than the tile); NaN stays NaN."""
    h, w = image.shape[1:]
    if (h, w) == (size, size):
        return image
    return np.pad(image, ((0, 0), (0, size - h), (0, size - w)), mode="symmetric")


class TileDataset(Dataset):
    def __init__(self, scenes: Sequence[ScenePlan], opener: Opener = AlignedRow) -> None:
        self.scenes = list(scenes)
        self.opener = opener
        self._starts: list[int] = []
        total = 0
        for scene in self.scenes:
            self._starts.append(total)
            total += len(scene.tiles)
        self._len = total
        self._open: tuple[int, RowReader] | None = None

    def __len__(self) -> int:
        return self._len

    def locate(self, index: int) -> tuple[int, int]:
        """(scene position, tile index in that scene) of dataset item ``index``."""
        if not 0 <= index < self._len:
            raise IndexError(index)
        s = bisect.bisect_right(self._starts, index) - 1
        return s, index - self._starts[s]

    def _reader(self, s: int) -> RowReader:
        if self._open is not None and self._open[0] == s:
            return self._open[1]
        self.close()
        scene = self.scenes[s]
        reader = self.opener(image_row(scene.row), scene.context)
        self._open = (s, reader)
        return reader

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, t = self.locate(index)
        scene = self.scenes[s]
        window = scene.tiles.window(t)
        image, _ = self._reader(s).read(window, skip_empty=True)
        valid = bool(np.isfinite(image[0]).any())  # any pixel of the map itself
        image = mirror_pad(image, scene.tiles.tile_size)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "scene": s,
            "tile": t,
            "valid": valid,
        }

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def __getstate__(self) -> dict[str, Any]:
        # open rasterio handles do not cross into worker processes; each worker opens its own
        state = dict(self.__dict__)
        state["_open"] = None
        return state
