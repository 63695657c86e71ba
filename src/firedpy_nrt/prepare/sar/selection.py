"""Which OPERA RTC-S1 bursts make an event's SAR layers: one track, three dates.

- Reprocessed granules exist beside older ones: per burst and acquisition the newest
  production (then the highest version) is kept.
- The track (relative orbit and direction) is the one whose burst footprints cover most of the
  event (ties: more acquisitions, then the lower orbit number).
- A date counts when its bursts cover the event as fully as the track does (to 1 %).
- ``d1`` is the last such date before ``ig_date``, ``d0`` the one before it, ``d2`` the first
  after ``last_date``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass

from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.sar.cmr import RtcGranule


@dataclass(frozen=True)
class SarPlan:
    """The chosen track, its three dates and the bursts (newest productions) of each date."""

    event_id: str
    track: tuple[int, str]
    d0: dt.date
    d1: dt.date
    d2: dt.date
    bursts: dict[dt.date, list[RtcGranule]]

    def slc(self, day: dt.date) -> str:
        """The SLC scene most of the date's bursts came from (what HyP3 processes)."""
        names = Counter(g.slc for g in self.bursts[day] if g.slc)
        if not names:
            raise DataError(
                f"event {self.event_id}: no burst of {day} names its SLC scene (InputGranules)"
            )
        return sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]

    @property
    def track_name(self) -> str:
        return f"relative orbit {self.track[0]} {self.track[1].lower()}"


def _production(granule: RtcGranule) -> tuple[dt.datetime, tuple[int, ...]]:
    return granule.produced, tuple(int(p) for p in granule.version.split(".") if p)


def newest_productions(granules: list[RtcGranule]) -> list[RtcGranule]:
    """One granule per (burst, acquisition): the newest production, then the highest version."""
    best: dict[tuple[str, dt.datetime], RtcGranule] = {}
    for granule in granules:
        key = (granule.burst_id, granule.acquired)
        held = best.get(key)
        if held is None or _production(granule) > _production(held):
            best[key] = granule
    return sorted(best.values(), key=lambda g: (g.acquired, g.burst_id))


def _coverage(footprints: list[BaseGeometry], area: BaseGeometry) -> float:
    if not footprints:
        return 0.0
    union = unary_union(footprints)
    if area.area > 0:
        return float(union.intersection(area).area / area.area)
    return 1.0 if union.intersects(area) else 0.0


def plan(
    event_id: str,
    ig_date: dt.date,
    last_date: dt.date,
    area: BaseGeometry,
    granules: list[RtcGranule],
    polarization: str,
) -> SarPlan:
    """Choose the track and dates for one event (``area`` in lon/lat); DataError if none fit."""
    usable = [
        g
        for g in newest_productions(granules)
        if polarization in g.urls and g.footprint.intersects(area)
    ]
    if not usable:
        raise DataError(
            f"event {event_id}: the search found no OPERA RTC-S1 burst with a "
            f"{polarization} image over the event (sar.polarization, sar.days_before/after)"
        )
    by_track: dict[tuple[int, str], list[RtcGranule]] = defaultdict(list)
    for granule in usable:
        by_track[granule.track].append(granule)

    def rank(track: tuple[int, str]) -> tuple[float, int, tuple[int, str]]:
        items = by_track[track]
        cover = _coverage([g.footprint for g in items], area)
        days = len({g.day for g in items})
        return (-round(cover, 6), -days, track)

    track = min(by_track, key=rank)
    items = by_track[track]
    full = _coverage([g.footprint for g in items], area)
    by_day: dict[dt.date, list[RtcGranule]] = defaultdict(list)
    for granule in items:
        by_day[granule.day].append(granule)
    days = sorted(
        d for d, gs in by_day.items() if _coverage([g.footprint for g in gs], area) >= 0.99 * full
    )
    before = [d for d in days if d < ig_date]
    after = [d for d in days if d > last_date]
    name = f"relative orbit {track[0]} {track[1].lower()}"
    if len(before) < 2:
        raise DataError(
            f"event {event_id}: {name} has {len(before)} full acquisition(s) before "
            f"{ig_date}, 2 are needed (raise sar.days_before)"
        )
    if not after:
        raise DataError(
            f"event {event_id}: {name} has no full acquisition after {last_date} yet "
            "(raise sar.days_after, or wait for the next pass)"
        )
    d0, d1, d2 = before[-2], before[-1], after[0]
    return SarPlan(
        event_id=event_id,
        track=track,
        d0=d0,
        d1=d1,
        d2=d2,
        bursts={d: sorted(by_day[d], key=lambda g: g.burst_id) for d in (d0, d1, d2)},
    )
