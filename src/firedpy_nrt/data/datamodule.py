"""``FireDataModule``: chips of the match CSV's fires, split by fire, served from the chip cache.

``prepare_data`` (rank zero only) builds the chip cache and the training split's normalization
statistics; ``setup`` (every rank) reads them. Batches are dicts ``{"image": float32 [B, C, H, W]
raw with NaN = nodata, "label": uint8 [B, H, W] (0, 1, 255 ignore), "fire_id": list[str]}``;
normalization and augmentation run on the device in the LightningModule
(:mod:`firedpy_nrt.data.transforms`). Loaders use plain ``shuffle`` so Lightning's distributed
sampler applies under DDP.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from firedpy_nrt.atomic import write_text
from firedpy_nrt.config.data import (
    DataConfig,
    FractionsConfig,
    SplitConfig,
    normalise_fire_id,
)
from firedpy_nrt.data.chips import (
    ChipCache,
    ChipSettings,
    cache_path,
    ensure_chip_cache,
    fire_sort_key,
)
from firedpy_nrt.data.raster import CHANNELS
from firedpy_nrt.data.stats import channel_stats
from firedpy_nrt.data.transforms import BatchAugment
from firedpy_nrt.errors import ConfigError, DataError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class ChipDataset(Dataset):
    """Chips ``indices`` of a :class:`ChipCache` as ``{"image", "label", "fire_id"}`` samples."""

    def __init__(self, cache: ChipCache, indices: Sequence[int] | np.ndarray) -> None:
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.indices[i])
        return {
            "image": torch.from_numpy(np.array(self.cache.images[j], dtype=np.float32)),
            "label": torch.from_numpy(np.array(self.cache.labels[j], dtype=np.uint8)),
            "fire_id": str(self.cache.fire_ids[j]),
        }


def split_fires(fires: Sequence[str], split: SplitConfig) -> dict[str, list[str]]:
    """Assign each fire to one split: the fixed lists, or shuffled fractions with ``split.seed``.

    ``fires`` are the fires that have chips. A listed fire with no chips is warned about; an
    empty ``train`` list next to filled ``val``/``test`` lists means every other fire.
    """
    fires = sorted({normalise_fire_id(f) for f in fires}, key=fire_sort_key)
    if split.fixed:
        lists = {k: [normalise_fire_id(f) for f in getattr(split, k)] for k in SPLITS}
        listed = set(lists["val"]) | set(lists["test"]) | set(lists["train"])
        if not lists["train"]:
            lists["train"] = [f for f in fires if f not in listed]
        known = set(fires)
        out: dict[str, list[str]] = {}
        for k in SPLITS:
            absent = [f for f in lists[k] if f not in known]
            if absent:
                rank_zero_warn(
                    f"data.split.{k}: fire(s) {', '.join(absent)} have no chips "
                    "(not in the CSV, no binary product, skipped, or no valid chip)"
                )
            out[k] = sorted({f for f in lists[k] if f in known}, key=fire_sort_key)
        unused = [f for f in fires if f not in listed and f not in out["train"]]
        if unused:
            rank_zero_info(f"{len(unused)} fire(s) in no split list are not used: {unused}")
        return out

    fr: FractionsConfig = split.fractions
    n = len(fires)
    counts = {k: int(round(getattr(fr, k) * n)) for k in ("val", "test")}
    for k in ("val", "test"):
        # A requested split gets at least one fire while training keeps one.
        if getattr(fr, k) > 0 and counts[k] == 0 and n - sum(counts.values()) > 1:
            counts[k] = 1
    n_train = n - counts["val"] - counts["test"]
    wanted = [k for k in ("val", "test") if getattr(fr, k) > 0]
    if n_train < 1 or any(counts[k] == 0 for k in wanted):
        need = 1 + len(wanted)
        raise DataError(
            f"{n} fire(s) with chips cannot fill the splits data.split.fractions asks for "
            f"(train, {', '.join(wanted)}: at least {need} fires, a fire belongs to one split); "
            "add fires, list them in data.split.train/val/test, or set "
            "data.split.fractions.test=0 (with test=false) or fractions.val=0"
        )
    order = list(np.random.default_rng(split.seed).permutation(n))
    shuffled = [fires[i] for i in order]
    parts = {
        "val": shuffled[: counts["val"]],
        "test": shuffled[counts["val"] : counts["val"] + counts["test"]],
        "train": shuffled[counts["val"] + counts["test"] :],
    }
    return {k: sorted(parts[k], key=fire_sort_key) for k in SPLITS}


class FireDataModule(LightningDataModule):
    """Chips of the match CSV's fires, split by fire (see the module docstring and README)."""

    def __init__(self, config: DataConfig, progress: bool = True) -> None:
        """``config`` is the validated ``data`` group (:func:`firedpy_nrt.config.validate`)."""
        super().__init__()
        self.cfg = config
        self.progress = progress
        self.settings = ChipSettings(
            chip_size=config.chip_size,
            stride=config.stride,
            min_valid_fraction=config.min_valid_fraction,
            on_bad_row=config.on_bad_row,
            label_threshold=config.label_threshold,
        )
        #: The input layers, in the order of the image channels: the model is built for these
        #: and prediction checks a checkpoint against them by name.
        self.channels: tuple[str, ...] = CHANNELS
        self.augmentation = BatchAugment.from_config(config.augment, channels=self.channels)
        self.cache: ChipCache | None = None
        self.splits: dict[str, list[str]] = {}
        self.stats: dict[str, list[float]] | None = None
        self.datasets: dict[str, ChipDataset] = {}
        self._restored_splits: dict[str, list[str]] | None = None

    # -- cache, split and stats --------------------------------------------------------
    def _split_of(self, cache: ChipCache) -> dict[str, list[str]]:
        if self.cfg.split.fixed:
            csv_fires = {str(f) for f in cache.meta.get("csv_fires", [])}
            for k in SPLITS:
                for f in getattr(self.cfg.split, k):
                    fid = normalise_fire_id(f)
                    if csv_fires and fid not in csv_fires:
                        raise ConfigError(
                            f"config key 'data.split.{k}': fire {fid} is not in {self.cfg.match_csv}"
                        )
        return split_fires(cache.fires, self.cfg.split)

    def _indices(self, cache: ChipCache, fires: Sequence[str]) -> np.ndarray:
        return np.flatnonzero(np.isin(cache.fire_ids, np.asarray(list(fires), dtype=np.str_)))

    def _stats_file(self, cache: ChipCache, train: Sequence[str]) -> Path:
        digest = hashlib.sha256(json.dumps(sorted(train)).encode()).hexdigest()[:16]
        return cache.path / f"stats-{digest}.json"

    def _stats(self, cache: ChipCache, train: Sequence[str]) -> dict[str, list[float]]:
        path = self._stats_file(cache, train)
        if path.is_file():
            return json.loads(path.read_text())
        stats = channel_stats(cache.images, self._indices(cache, train), channel_names=CHANNELS)
        stats["fires"] = list(train)  # type: ignore[assignment]
        write_text(path, json.dumps(stats, indent=1))
        return stats

    def _cache(self) -> ChipCache:
        cache = ensure_chip_cache(
            self.cfg.match_csv, self.cfg.cache_dir, self.settings, progress=self.progress
        )
        meta = cache.meta
        if meta["bad"]:
            rank_zero_warn(
                f"{len(meta['bad'])} bad row(s) of {self.cfg.match_csv} skipped "
                f"(data.on_bad_row=skip), first: {meta['bad'][0]['reason']}"
            )
        if meta["no_label"]:
            rank_zero_info(
                f"{len(meta['no_label'])} row(s) of {self.cfg.match_csv} have no binary product: "
                "not used for training"
            )
        return cache

    def prepare_data(self) -> None:
        """Rank zero: build the chip cache and the training split's statistics once."""
        cache = self._cache()
        splits = self._split_of(cache)
        if splits["train"]:
            self._stats(cache, splits["train"])

    def setup(self, stage: str | None = None) -> None:
        """Every rank: open the cache (built by ``prepare_data``), split by fire, load stats."""
        if self.cache is None:
            path, _ = cache_path(self.cfg.match_csv, self.cfg.cache_dir, self.settings)
            self.cache = ChipCache(path) if (path / "meta.json").is_file() else self._cache()
            self.splits = self._split_of(self.cache)
            rank_zero_info(
                "split by fire: "
                + ", ".join(
                    f"{k} {len(v)} fires / {len(self._indices(self.cache, v))} chips"
                    for k, v in self.splits.items()
                )
            )
            for k in SPLITS:
                self.datasets[k] = ChipDataset(
                    self.cache, self._indices(self.cache, self.splits[k])
                )
            self._compare_restored()
        self._require_split(stage)
        if stage in (None, "fit", "validate") or self.stats is None:
            if not self.splits["train"]:
                if stage in (None, "fit"):
                    raise DataError(f"no training fires with chips in {self.cfg.match_csv}")
            else:
                self.stats = self._stats(self.cache, self.splits["train"])
        if stage in (None, "fit") and len(self.datasets["train"]) < self.cfg.batch_size:
            raise DataError(
                f"the training split has {len(self.datasets['train'])} chips, fewer than "
                f"data.batch_size={self.cfg.batch_size} (the last incomplete batch is dropped)"
            )

    def _require_split(self, stage: str | None) -> None:
        """The splits a stage reads must hold fires: checked before training starts, not after
        an epoch when checkpoints look for a validation score that never came."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "fit", ()
        )
        fixed = self.cfg.split.fixed
        for split in needed:
            if split == "val" and not fixed and self.cfg.split.fractions.val == 0:
                continue  # no validation was asked for
            if not self.splits[split]:
                how = (
                    f"list fires in data.split.{split}"
                    if fixed
                    else f"add fires or raise data.split.fractions.{split}"
                )
                raise DataError(
                    f"the {split} split of {self.cfg.match_csv} has no fire with chips "
                    f"({', '.join(f'{k}: {len(v)}' for k, v in self.splits.items())}); {how}"
                    + ("; or test=false" if split == "test" else "")
                )

    # -- loaders -----------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> DataLoader:
        if not self.datasets:
            raise DataError("FireDataModule: call setup() before asking for a loader")
        return DataLoader(
            self.datasets[split],
            batch_size=self.cfg.batch_size,
            shuffle=train,
            drop_last=train,  # DeepLabV3's batch norm fails on a last batch of one
            num_workers=self.cfg.num_workers,
            pin_memory=self.cfg.pin_memory,
            persistent_workers=self.cfg.persistent_workers and self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # -- checkpoint --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints (the one copy of the split; the normalisation statistics are the
        model's own buffers): the fire split and the cache used."""
        return {
            "splits": self.splits,
            "cache": str(self.cache.path) if self.cache is not None else None,
            # prediction reads labels with the threshold training used
            "label_threshold": self.cfg.label_threshold,
            # and cuts tiles of the extent the network saw (its global pooling depends on it)
            "chip_size": self.cfg.chip_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_splits = state_dict.get("splits")
        self._compare_restored()

    def _compare_restored(self) -> None:
        if self._restored_splits and self.splits and self._restored_splits != self.splits:
            rank_zero_warn(
                "the fire split differs from the checkpoint's (the CSV or data.split changed): "
                f"checkpoint {self._restored_splits}, now {self.splits}"
            )
