"""The ``dnbr`` preparation stage: dNBR, burn masks and RGB from Sentinel-2 L2A and Landsat C2 L2.

For each fire event it reads the scenes the download stage left under
``dnbr.scenes_dir/<fire id>/<sentinel|landsat>/``, picks pre/post pairs (``pairing``), and writes
Cloud-Optimized GeoTIFFs named per the layer contract to ``dnbr.output_dir`` (``compute``).
A bad product or pair is one message in the stage result; the other pairs go on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import rasterio
from tqdm import tqdm

from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr import landsat, sentinel2, stac_item
from firedpy_nrt.prepare.dnbr.compute import process_pair
from firedpy_nrt.prepare.dnbr.grid import READ_OPTIONS
from firedpy_nrt.prepare.dnbr.pairing import Event, choose
from firedpy_nrt.prepare.dnbr.scene import OpticalScene
from firedpy_nrt.prepare.pipeline import StageResult

log = logging.getLogger(__name__)

#: ``satellite`` config value -> the scene folders it reads.
FOLDERS = {"sentinel": ("sentinel",), "landsat": ("landsat",), "both": ("sentinel", "landsat")}


def _is_product(path: Path, folder: str) -> bool:
    name = path.name.lower()
    if name.startswith(".") or name.endswith((".tmp", ".part", ".partial")):
        return False
    if stac_item.is_item_folder(path):
        return True
    if folder == "sentinel":
        return (path.is_dir() and name.endswith(".safe")) or (
            path.is_file() and name.endswith(".zip")
        )
    if path.is_dir():
        return True
    return name.endswith((".tar", ".tar.gz", ".tgz"))


def _product_key(name: str) -> str:
    """``X.SAFE``, ``X.zip``, ``X.SAFE.zip``, ``X.tar`` -> ``X``."""
    for suffix in (".zip", ".tar.gz", ".tgz", ".tar", ".SAFE", ".safe"):
        name = name.removesuffix(suffix)
    return name


def find_scenes(
    fire_dir: Path, satellite: str, cfg: DnbrConfig
) -> tuple[list[OpticalScene], list[str]]:
    """Every readable product under ``fire_dir``'s sensor folders, and a message per unusable one."""
    scenes: list[OpticalScene] = []
    failures: list[str] = []
    for folder in FOLDERS[satellite]:
        root = fire_dir / folder
        if not root.is_dir():
            continue
        seen: set[str] = set()
        # Folders first: with download.keep_archives the archive sits beside its extracted folder.
        for path in sorted(root.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
            if not _is_product(path, folder):
                continue
            key = _product_key(path.name)
            if key in seen:
                log.debug("%s: already read from its folder", path)
                continue
            seen.add(key)
            try:
                if stac_item.is_item_folder(path):
                    scenes.append(stac_item.read_item(path, cfg))
                elif folder == "sentinel":
                    scenes.append(sentinel2.read_product(path, cfg.sentinel2))
                else:
                    scenes.append(landsat.read_product(path, cfg.landsat))
            except DataError as exc:
                failures.append(str(exc))
    return scenes, failures


def process_events(
    events: Iterable[Event], cfg: DnbrConfig, satellite: str = "sentinel", overwrite: bool = False
) -> StageResult:
    """Compute every event's dNBR products; each failure is one line in the result."""
    result = StageResult("dnbr")
    scenes_dir, out_dir = Path(cfg.scenes_dir), Path(cfg.output_dir)
    events = list(events)
    out_dir.mkdir(parents=True, exist_ok=True)  # the match stage lists it even when empty
    with rasterio.Env(GDAL_CACHEMAX=cfg.gdal_cache_mb, **READ_OPTIONS):
        for event in tqdm(events, desc="dnbr", unit="fire", disable=len(events) < 2):
            fire_dir = scenes_dir / str(event.id)
            scenes, failures = find_scenes(fire_dir, satellite, cfg)
            result.failed += failures
            if not scenes:
                if not failures:
                    result.failed.append(f"fire {event.id}: no {satellite} scenes under {fire_dir}")
                continue
            pairs, failures = choose(event, scenes, cfg.pairing)
            result.failed += failures
            for pair in pairs:
                try:
                    outcome = process_pair(pair, event, cfg, out_dir, overwrite)
                except DataError as exc:
                    result.failed.append(f"fire {event.id}: {exc}")
                    continue
                result.written += len(outcome.written)
                result.skipped += len(outcome.skipped)
                for path in outcome.written:
                    log.info("wrote %s", path)
    return result


def run_stage(cfg: PrepareConfig) -> StageResult:
    """Stage entry for ``prepare.py stages=[dnbr]``: events from ``events``/``event_ids``."""
    from firedpy_nrt.prepare.events import events_of

    events = events_of(cfg, "dnbr", "(its ignition and last dates and polygons pair the scenes)")
    return process_events(events, cfg.dnbr, cfg.satellite, cfg.overwrite)
