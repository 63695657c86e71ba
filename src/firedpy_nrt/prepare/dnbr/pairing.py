"""Pre/post scene pairs per fire event, and which pair to use.

Pre-fire scenes are acquired before the ignition date, post-fire scenes after the last burn
date, each within its configured window, and a pair shares its tile (Sentinel-2 MGRS tile or
Landsat path/row). A pair's score is the number of pixels valid in both scenes (quality layer
and band nodata) inside the buffered event polygon, counted on the quality band's lattice: the
clearest view of the fire wins, not merely the closest dates. Scores compare as areas, so with
``satellite=both`` a Landsat pair (30 m) and a Sentinel-2 pair (20 m) compete fairly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from shapely.geometry.base import BaseGeometry

from firedpy_nrt.config.dnbr import PairingConfig
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr.grid import GridReader, to_grid_crs
from firedpy_nrt.prepare.dnbr.scene import OpticalScene
from firedpy_nrt.raster_grid import RasterGrid

#: Largest scoring grid; bigger polygons are scored on a coarser lattice (memory stays bounded).
MAX_SCORE_PIXELS = 4_000_000


class Event(Protocol):
    """What pairing needs of a fire event (``firedpy_nrt.prepare.events.FireEvent``)."""

    id: str
    ig_date: date
    last_date: date
    geometry: BaseGeometry


@dataclass(frozen=True)
class Pair:
    pre: OpticalScene
    post: OpticalScene
    valid_pixels: int  # valid in both scenes inside the buffered polygon (scoring lattice)
    valid_area_m2: float = 0.0  # the same as area, comparable across sensors and tiles


def candidates(
    event: Event, scenes: Iterable[OpticalScene], cfg: PairingConfig
) -> list[tuple[OpticalScene, OpticalScene]]:
    """Every (pre, post) pair of one tile within the date windows, closest dates first."""
    pre, post = [], []
    for s in scenes:
        day = s.acquired.date()
        if day < event.ig_date and (
            cfg.pre_days is None or day >= event.ig_date - timedelta(days=cfg.pre_days)
        ):
            pre.append(s)
        elif day > event.last_date and (
            cfg.post_days is None or day <= event.last_date + timedelta(days=cfg.post_days)
        ):
            post.append(s)
    pairs = [(a, b) for a in pre for b in post if a.family == b.family and a.tile == b.tile]
    pairs.sort(
        key=lambda p: (
            (p[1].acquired.date() - event.last_date).days,
            (event.ig_date - p[0].acquired.date()).days,
            p[0].product,
            p[1].product,
        )
    )
    return pairs


def _scoring_grid(
    scene: OpticalScene, polygon_4326: BaseGeometry, buffer_m: float
) -> tuple[RasterGrid, np.ndarray]:
    """A grid on ``scene``'s quality lattice around the buffered polygon, and the inside mask."""
    try:
        with rasterio.open(scene.quality.path) as q:
            if q.crs is None:
                raise DataError(f"{scene.product}: {q.name.rsplit('/', 1)[-1]} has no CRS")
            base = RasterGrid.of(q)
    except rasterio.errors.RasterioError as exc:
        raise DataError(
            f"{scene.product}: cannot open its quality band ({exc})".splitlines()[0]
        ) from None
    poly = to_grid_crs(polygon_4326, base.crs, buffer_m)
    left, bottom, right, top = poly.bounds
    res = base.res
    t = base.transform
    col0 = math.floor((left - t.c) / res)
    col1 = math.ceil((right - t.c) / res)
    row0 = math.floor((t.f - top) / res)
    row1 = math.ceil((t.f - bottom) / res)
    width, height = max(1, col1 - col0), max(1, row1 - row0)
    factor = max(1, math.ceil(math.sqrt(width * height / MAX_SCORE_PIXELS)))
    step = res * factor
    grid = RasterGrid(
        base.crs,
        Affine(step, 0.0, t.c + col0 * res, 0.0, -step, t.f - row0 * res),
        max(1, math.ceil(width / factor)),
        max(1, math.ceil(height / factor)),
    )
    inside = geometry_mask([poly], (grid.height, grid.width), grid.transform, invert=True)
    return grid, inside


def valid_pixels(scene: OpticalScene, grid: RasterGrid) -> np.ndarray:
    """Boolean validity of ``scene`` on ``grid``: quality layer not masked and SWIR not nodata.

    SWIR, not NIR: B12 shares the SCL's 20 m lattice even when NBR uses B08 at 10 m, so scoring
    never decodes a 10 m band.
    """
    window = rasterio.windows.Window(0, 0, grid.width, grid.height)
    with GridReader(grid) as reader:
        reader.add("q", scene.quality.path, scene.product, Resampling.nearest, nodata=None)
        swir = scene.band("swir")
        reader.add("swir", swir.path, scene.product, Resampling.nearest, nodata=swir.nodata)
        q = reader.read("q", window)
        dn = reader.read("swir", window)
    return ~scene.quality.invalid(q) & (dn != swir.nodata)


def score_pairs(
    event: Event, pairs: list[tuple[OpticalScene, OpticalScene]], buffer_m: float
) -> tuple[list[Pair], list[str]]:
    """Score each pair; a scene that cannot be read fails its pairs (messages returned)."""
    scored: list[Pair] = []
    failures: list[str] = []
    grids: dict[tuple[str, str], tuple[RasterGrid, np.ndarray]] = {}
    validity: dict[OpticalScene, np.ndarray] = {}
    bad: set[OpticalScene] = set()
    for pre, post in pairs:
        key = (pre.family, pre.tile)
        if key not in grids:
            # The tile's scoring grid comes from the first pre scene whose quality band opens.
            try:
                grids[key] = _scoring_grid(pre, event.geometry, buffer_m)
            except DataError as exc:
                if pre not in bad:
                    bad.add(pre)
                    failures.append(str(exc))
                continue
        grid, inside = grids[key]
        for s in (pre, post):
            if s not in validity and s not in bad:
                try:
                    validity[s] = valid_pixels(s, grid)
                except DataError as exc:
                    bad.add(s)
                    failures.append(str(exc))
        if pre in bad or post in bad:
            continue
        count = int(np.count_nonzero(validity[pre] & validity[post] & inside))
        scored.append(Pair(pre, post, count, count * grid.res**2))
    return scored, failures


def choose(
    event: Event, scenes: list[OpticalScene], cfg: PairingConfig
) -> tuple[list[Pair], list[str]]:
    """The pair(s) to compute for ``event`` and a message for each pair or scene skipped."""
    pairs = candidates(event, scenes, cfg)
    if not pairs:
        return [], [
            f"fire {event.id}: no pre-fire (before {event.ig_date}) and post-fire "
            f"(after {event.last_date}) scenes of one tile among {len(scenes)} scene(s)"
        ]
    scored, failures = score_pairs(event, pairs, cfg.buffer_m)
    usable = [p for p in scored if p.valid_pixels > 0]
    for p in scored:
        if p.valid_pixels == 0 and cfg.mode == "all":
            failures.append(
                f"fire {event.id}: {p.pre.product} and {p.post.product} share no valid pixel "
                "over the event polygon"
            )
    if cfg.mode == "best":
        if not usable:
            if scored:
                first = scored[0]
                failures.append(
                    f"fire {event.id}: no pre/post pair shares a valid pixel over the event "
                    f"polygon ({len(scored)} pair(s) tried, closest in time: "
                    f"{first.pre.product} and {first.post.product})"
                )
            return [], failures
        # candidates() sorted by date closeness; max() keeps the first of equal scores.
        return [max(usable, key=lambda p: p.valid_area_m2)], failures
    return usable, failures
