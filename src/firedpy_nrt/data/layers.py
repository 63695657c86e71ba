"""The layer file-name contract: patterns, parsing and building names.

Users already hold thousands of rasters named by the SAR and optical tools; these patterns read
them as they are. Each pattern is a regular expression with named groups; config can replace it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

_TIF = r"\.(?i:tif)"
_DATE = r"\d{8}"
_STAMP = r"\d{8}T\d{6}"

#: Sensors of the dNBR layer: Sentinel-2 A/B/C and Landsat 8/9.
SENSORS = ("S2A", "S2B", "S2C", "LC08", "LC09")

DEFAULT_PATTERNS: dict[str, str] = {
    "lum_change": rf"^(?P<fire>\d+)_(?P<d1>{_DATE})_(?P<d2>{_DATE})_DeltaLumin_(?P<res>[^_]+){_TIF}$",
    "coh_change": rf"^(?P<fire>\d+)_(?P<d0>{_DATE})_(?P<d1>{_DATE})_(?P<d2>{_DATE})_cohChange{_TIF}$",
    "binary_product": rf"^(?P<fire>\d+)_FIREDpy_sar_combined_(?P<d1>{_DATE})_(?P<d2>{_DATE}){_TIF}$",
    "dnbr": (
        r"^(?P<sensor>S2[ABC]|LC0[89])_(?P<level>[A-Za-z0-9]+)_(?P<tile>[A-Za-z0-9]+)_"
        rf"(?P<fire>\d+)_(?P<t1>{_STAMP})_(?P<t2>{_STAMP})_(?P<res>[^_]+)_DNBR{_TIF}$"
    ),
}


#: Files that sit beside the layers by design and are not layers themselves: the dNBR stage's
#: other products (``_DNBR_MASK``, ``_DNBR_SEVERITY``, ...), RGB quick-looks, and GDAL's side-car
#: files. Matching skips them quietly.
COMPANION_PATTERNS: tuple[str, ...] = (
    rf"_DNBR_[A-Z]+{_TIF}$",
    rf"_RGB{_TIF}$",
    r"\.(?i:aux\.xml|ovr|msk|tfw)$",
)
_COMPANIONS = re.compile("|".join(f"(?:{p})" for p in COMPANION_PATTERNS))

#: Named groups each layer's pattern must have (a replacement pattern in config too).
REQUIRED_GROUPS: dict[str, tuple[str, ...]] = {
    "lum_change": ("fire", "d1", "d2"),
    "coh_change": ("fire", "d0", "d1", "d2"),
    "binary_product": ("fire", "d1", "d2"),
    "dnbr": ("fire", "t1", "t2"),
}


_FLOAT_ID = re.compile(r"^\d+\.0*$")


def normalise_fire_id(value: Any, strict: bool = False) -> str:
    """A fire id as digits without leading zeros (``9844``, ``"09844"``, ``9844.0``, ``" 9844 "``
    -> ``"9844"``), the one spelling used in names, CSVs, splits and event tables.

    Other text is returned stripped, or with ``strict`` (event tables) is a ValueError.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "" if isinstance(value, bool) else str(value).strip()
    if text.isdigit():
        return str(int(text))
    if _FLOAT_ID.match(text):
        return str(int(float(text)))
    if strict or isinstance(value, bool):
        raise ValueError(f"not an event id: {value!r}")
    return text


def is_companion(name: str) -> bool:
    """True for a known non-layer file (dNBR mask, RGB, GDAL side-car) that matching skips."""
    return _COMPANIONS.search(name) is not None


def parse_date(text: str) -> date:
    """The date of ``YYYYMMDD``, ``YYYYMMDDTHHMMSS`` or ``YYYY-MM-DD``; ValueError when it is none.

    Only the day counts (the first eight digits), so a user pattern may capture any of these forms.
    """
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < 8:
        raise ValueError(f"not a date: {text!r}")
    return datetime.strptime(digits[:8], "%Y%m%d").date()


@dataclass(frozen=True)
class LayerName:
    """What a layer's file name says: fire id, dates and, for dNBR, sensor, level, tile, resolution."""

    kind: str
    path: Path
    fire: str
    dates: tuple[date, ...]
    sensor: str | None = None
    level: str | None = None
    tile: str | None = None
    res: str | None = None


def compile_patterns(patterns: dict[str, str] | None = None) -> dict[str, re.Pattern[str]]:
    """Compile the contract's patterns, with any given ones replacing the defaults.

    ValueError names the layer when a pattern does not compile or lacks a required named group.
    """
    merged = dict(DEFAULT_PATTERNS)
    if patterns:
        unknown = set(patterns) - set(DEFAULT_PATTERNS)
        if unknown:
            raise ValueError(f"unknown layer(s) {', '.join(sorted(unknown))}")
        merged.update({k: v for k, v in patterns.items() if v})
    compiled = {}
    for kind, p in merged.items():
        try:
            compiled[kind] = re.compile(p)
        except re.error as exc:
            raise ValueError(f"{kind}: not a regular expression ({exc})") from None
        missing = [g for g in REQUIRED_GROUPS[kind] if g not in compiled[kind].groupindex]
        if missing:
            raise ValueError(
                f"{kind}: the pattern lacks named group(s) {', '.join(missing)} "
                f"(write them as (?P<name>...))"
            )
    return compiled


_DATE_GROUPS = {
    "lum_change": ("d1", "d2"),
    "coh_change": ("d0", "d1", "d2"),
    "binary_product": ("d1", "d2"),
    "dnbr": ("t1", "t2"),
}


def parse_layer(
    path: str | Path, kind: str, patterns: dict[str, re.Pattern[str]] | None = None
) -> LayerName | None:
    """Parse ``path``'s name as a layer of ``kind``; None when it fits no pattern or no real date."""
    path = Path(path)
    pats = patterns or _COMPILED
    m = pats[kind].match(path.name)
    if m is None:
        return None
    groups = m.groupdict()
    try:
        dates = tuple(parse_date(groups[g]) for g in _DATE_GROUPS[kind])
    except (KeyError, ValueError):
        return None
    return LayerName(
        kind=kind,
        path=path,
        fire=normalise_fire_id(groups["fire"]),
        dates=dates,
        sensor=groups.get("sensor"),
        level=groups.get("level"),
        tile=groups.get("tile"),
        res=groups.get("res"),
    )


def dnbr_name(
    sensor: str,
    level: str,
    tile: str,
    fire: str | int,
    t1: datetime,
    t2: datetime,
    res: str,
    suffix: str = "DNBR",
) -> str:
    """The contract's dNBR (``suffix='DNBR'``) or burn-mask (``'DNBR_MASK'``) file name."""
    return (
        f"{sensor}_{level}_{tile}_{fire}_{t1:%Y%m%dT%H%M%S}_{t2:%Y%m%dT%H%M%S}_{res}_{suffix}.TIF"
    )


def rgb_name(sensor: str, level: str, tile: str, fire: str | int, t: datetime, res: str) -> str:
    """The contract's RGB file name for one scene."""
    return f"{sensor}_{level}_{tile}_{fire}_{t:%Y%m%dT%H%M%S}_{res}_RGB.TIF"


def lum_change_name(fire: str | int, d1: date, d2: date, res: str) -> str:
    return f"{fire}_{d1:%Y%m%d}_{d2:%Y%m%d}_DeltaLumin_{res}.tif"


def coh_change_name(fire: str | int, d0: date, d1: date, d2: date) -> str:
    return f"{fire}_{d0:%Y%m%d}_{d1:%Y%m%d}_{d2:%Y%m%d}_cohChange.tif"


def binary_product_name(fire: str | int, d1: date, d2: date) -> str:
    return f"{fire}_FIREDpy_sar_combined_{d1:%Y%m%d}_{d2:%Y%m%d}.tif"


def resolution_label(metres: float) -> str:
    """An honest resolution label for a pixel size in metres, e.g. 20.0 -> ``20m``."""
    return f"{round(metres):d}m"


_COMPILED = compile_patterns()
