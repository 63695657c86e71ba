"""The chip index over each match row's grid, and the chip cache that epochs read instead of GeoTIFFs.

Chips are windows of ``chip_size`` pixels at the luminance-change raster's native resolution,
every ``stride`` pixels, plus one flush with the far edge so the whole grid is covered; a raster
smaller than a chip gives one chip padded with nodata (NaN in the image, ignore in the label), so
no data is lost and nothing is resized. A chip is kept when the luminance change has data in it
and at least ``min_valid_fraction`` of its pixels carry a label (not ignore).

The cache is built once per CSV and chip settings: its key hashes the CSV's bytes, each raster's
resolved path, size and modification time, and the chip settings, so editing any of them builds a
new cache, and an unchanged one is read without opening a GeoTIFF. It is a folder of ``.npy``
arrays (``images`` float32 ``[N, C, H, W]`` raw with NaN = nodata, ``labels`` uint8 ``[N, H, W]``,
``fire_ids``, ``windows`` = CSV row index, row offset, column offset) and ``meta.json``, written
into a temporary folder and renamed into place, read back as memory maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from firedpy_nrt.atomic import staging_dir
from firedpy_nrt.data.match_csv import fire_sort_key, read_match_csv
from firedpy_nrt.data.raster import (
    CHANNELS,
    DEFAULT_LABEL_THRESHOLD,
    IGNORE,
    LABEL,
    AlignedRow,
    row_context,
)
from firedpy_nrt.errors import DataError

log = logging.getLogger(__name__)

#: Bumped when the cache layout or the chip rules change, so old caches are not reused.
CACHE_VERSION = 1
_PATH_COLUMNS = (*CHANNELS, LABEL)
_COPY_CHIPS = 256  # chips per block when assembling the final arrays


@dataclass(frozen=True)
class ChipSettings:
    """What decides which chips exist (part of the cache key)."""

    chip_size: int
    stride: int
    min_valid_fraction: float
    on_bad_row: str = "error"
    label_threshold: float = DEFAULT_LABEL_THRESHOLD


@dataclass
class SkippedRow:
    """A CSV row left out of the cache, and why."""

    index: int
    fire_id: str
    reason: str


@dataclass
class BuildReport:
    """What a cache holds and what was left out (stored in ``meta.json``)."""

    rows: int = 0
    rows_used: int = 0
    chips: int = 0
    chips_considered: int = 0
    no_label: list[SkippedRow] = field(default_factory=list)
    bad: list[SkippedRow] = field(default_factory=list)


def chip_offsets(size: int, chip: int, stride: int) -> list[int]:
    """Offsets of the chips along one axis: every ``stride``, plus one flush with the end."""
    if size <= chip:
        return [0]
    offsets = list(range(0, size - chip + 1, stride))
    if offsets[-1] + chip < size:
        offsets.append(size - chip)
    return offsets


def _stat_token(path: str | None) -> list[Any]:
    if path is None:
        return [None]
    try:
        st = os.stat(path)
    except OSError:
        return [path, "missing"]
    return [path, st.st_size, st.st_mtime_ns]


def cache_key(csv_path: Path, rows: pd.DataFrame, settings: ChipSettings) -> str:
    """Hash of the CSV's bytes, each raster's path/size/mtime, and the chip settings."""
    h = hashlib.sha256()
    h.update(f"firedpy-nrt chip cache v{CACHE_VERSION}\n".encode())
    h.update(json.dumps(asdict(settings), sort_keys=True).encode())
    h.update(Path(csv_path).read_bytes())
    for rec in rows.loc[:, list(_PATH_COLUMNS)].itertuples(index=False):
        h.update(json.dumps([_stat_token(p) for p in rec]).encode())
    return h.hexdigest()


class ChipCache:
    """A built cache folder: chip arrays as memory maps, opened lazily (safe to pickle)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text())
            self.fire_ids: np.ndarray = np.load(self.path / "fire_ids.npy")
            self.windows: np.ndarray = np.load(self.path / "windows.npy")
        except (OSError, ValueError) as exc:
            raise DataError(f"chip cache {self.path} is unreadable ({exc}); delete it") from None
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.fire_ids.shape[0])

    @property
    def images(self) -> np.ndarray:
        """float32 ``[N, C, H, W]`` memory map, NaN where a layer is nodata."""
        if self._images is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        return self._images

    @property
    def labels(self) -> np.ndarray:
        """uint8 ``[N, H, W]`` memory map: 0 unburned, 1 burned, 255 ignore."""
        if self._labels is None:
            self._labels = np.load(self.path / "labels.npy", mmap_mode="r")
        return self._labels

    @property
    def fires(self) -> list[str]:
        """The fire ids that have chips, in numeric order."""
        return sorted({str(f) for f in self.fire_ids}, key=fire_sort_key)

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps would be pickled as full arrays; loader workers reopen them instead.
        state = dict(self.__dict__)
        state["_images"] = state["_labels"] = None
        return state


def cache_path(
    csv_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str], settings: ChipSettings
) -> tuple[Path, pd.DataFrame]:
    """Where the cache for this CSV and settings lives, and the CSV's rows (reads no raster)."""
    csv_path = Path(csv_path)
    rows = read_match_csv(csv_path)
    key = cache_key(csv_path, rows, settings)
    return Path(cache_dir) / f"chips-{key[:20]}", rows


def ensure_chip_cache(
    csv_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    settings: ChipSettings,
    progress: bool = True,
) -> ChipCache:
    """The chip cache for this CSV and settings: read it when it exists, else build it first."""
    path, rows = cache_path(csv_path, cache_dir, settings)
    if (path / "meta.json").is_file():
        log.info("chip cache: reusing %s (%s)", path, _summary(ChipCache(path).meta))
        return ChipCache(path)
    build_chip_cache(Path(csv_path), rows, path, settings, progress=progress)
    return ChipCache(path)


def _summary(meta: dict[str, Any]) -> str:
    return (
        f"{meta['chips']} chips from {meta['rows_used']} of {meta['rows']} rows; "
        f"{len(meta['no_label'])} rows without binary product, {len(meta['bad'])} bad rows skipped"
    )


def _row_chips(
    row: AlignedRow, settings: ChipSettings, report: BuildReport
) -> Iterator[tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]]:
    """Kept chips of one row, a strip at a time: (images [n, C, s, s], labels [n, s, s], offsets)."""
    s = settings.chip_size
    cols = chip_offsets(row.width, s, settings.stride)
    strip_w = max(row.width, s)
    need = settings.min_valid_fraction * s * s
    for r0 in chip_offsets(row.height, s, settings.stride):
        window = (r0, 0, s, strip_w)
        lum, label = row.read_label(window)
        assert label is not None
        keep = []
        for c0 in cols:
            report.chips_considered += 1
            lab = label[:, c0 : c0 + s]
            if not np.isfinite(lum[:, c0 : c0 + s]).any():
                continue  # outside the map
            if np.count_nonzero(lab != IGNORE) < max(need, 1e-9):
                continue
            keep.append(c0)
        if not keep:
            continue
        image, label = row.read(window)
        assert label is not None
        images = np.stack([image[:, :, c0 : c0 + s] for c0 in keep])
        labels = np.stack([label[:, c0 : c0 + s] for c0 in keep])
        yield images, labels, [(r0, c0) for c0 in keep]


def build_chip_cache(
    csv_path: Path,
    rows: pd.DataFrame,
    path: Path,
    settings: ChipSettings,
    progress: bool = True,
) -> BuildReport:
    """Cut every usable row of ``rows`` into chips and write the cache folder ``path``.

    Rows without a binary product are skipped (counted). A row whose rasters are missing,
    corrupt or do not overlap raises :class:`DataError` naming the file and the CSV row, or with
    ``on_bad_row='skip'`` is skipped with a warning. No chip at all is a DataError.
    """
    tmp = staging_dir(path)
    report = BuildReport(rows=len(rows))
    s, c = settings.chip_size, len(CHANNELS)
    parts: list[tuple[Path, Path, int]] = []
    fire_ids: list[str] = []
    windows: list[tuple[int, int, int]] = []
    try:
        bar = tqdm(
            total=len(rows), desc=f"chip cache {csv_path.name}", unit="row", disable=not progress
        )
        with bar:
            for index, rec in enumerate(rows.to_dict("records")):
                bar.update(1)
                fire = str(rec["fire_id"])
                context = row_context(csv_path, index, fire)
                if rec.get(LABEL) is None:
                    report.no_label.append(SkippedRow(index, fire, "no binary product"))
                    continue
                img_part, lab_part = tmp / f"row{index}.images", tmp / f"row{index}.labels"
                count, row_windows = 0, []
                try:
                    with (
                        AlignedRow(
                            rec, context=context, label_threshold=settings.label_threshold
                        ) as row,
                        open(img_part, "wb") as fi,
                        open(lab_part, "wb") as fl,
                    ):
                        for images, labels, offsets in _row_chips(row, settings, report):
                            fi.write(np.ascontiguousarray(images, dtype=np.float32).tobytes())
                            fl.write(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
                            count += len(offsets)
                            row_windows += [(index, r0, c0) for r0, c0 in offsets]
                except DataError as exc:
                    img_part.unlink(missing_ok=True)
                    lab_part.unlink(missing_ok=True)
                    if settings.on_bad_row != "skip":
                        raise
                    log.warning("skipping %s", exc)
                    report.bad.append(SkippedRow(index, fire, str(exc)))
                    continue
                report.rows_used += 1
                parts.append((img_part, lab_part, count))
                fire_ids += [fire] * count
                windows += row_windows
                bar.set_postfix(chips=len(fire_ids))

        n = len(fire_ids)
        report.chips = n
        if report.no_label:
            log.info(
                "%d of %d rows have no binary product and are not used for training",
                len(report.no_label),
                len(rows),
            )
        if report.bad:
            log.warning(
                "skipped %d bad rows of %s (data.on_bad_row=skip)", len(report.bad), csv_path
            )
        if n == 0:
            raise DataError(
                f"{csv_path}: no training chips: {report.rows_used} usable rows of {len(rows)}, "
                f"{len(report.no_label)} without binary product, {len(report.bad)} bad; "
                f"lower data.min_valid_fraction={settings.min_valid_fraction} or check the labels"
            )
        images = open_memmap(tmp / "images.npy", mode="w+", dtype=np.float32, shape=(n, c, s, s))
        labels = open_memmap(tmp / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, s, s))
        at = 0
        for img_part, lab_part, count in parts:
            if count:
                src_i = np.memmap(img_part, dtype=np.float32, mode="r", shape=(count, c, s, s))
                src_l = np.memmap(lab_part, dtype=np.uint8, mode="r", shape=(count, s, s))
                for b in range(0, count, _COPY_CHIPS):
                    e = min(b + _COPY_CHIPS, count)
                    images[at + b : at + e] = src_i[b:e]
                    labels[at + b : at + e] = src_l[b:e]
                del src_i, src_l
            at += count
            img_part.unlink()
            lab_part.unlink()
        images.flush()
        labels.flush()
        del images, labels
        np.save(tmp / "fire_ids.npy", np.asarray(fire_ids, dtype=np.str_))
        np.save(tmp / "windows.npy", np.asarray(windows, dtype=np.int64).reshape(n, 3))
        meta = {
            "version": CACHE_VERSION,
            "csv": str(csv_path),
            "settings": asdict(settings),
            "channels": list(CHANNELS),
            "csv_fires": sorted({str(f) for f in rows["fire_id"]}, key=fire_sort_key),
            **{k: v for k, v in asdict(report).items()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, path)
        except OSError:
            if not (path / "meta.json").is_file():
                raise
            # Another process (a second node, a parallel run) finished the same cache first.
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("chip cache: built %s (%s)", path, _summary(meta))
        return report
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
