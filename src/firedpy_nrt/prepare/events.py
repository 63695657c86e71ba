"""FIREDpy fire events: read an event table in any vector format, one record per event, EPSG:4326.

Accepted files: ``.gpkg``, ``.shp``, ``.geojson``/``.json`` (read with geopandas through pyogrio),
and ``.csv`` with either a WKT ``geometry`` column or FIREDpy's point table with ``x``/``y``
columns (MODIS sinusoidal metres unless told otherwise). Several rows with one id (FIREDpy's
daily polygons, or one point per burned pixel) become one event: their geometries are merged and
the dates span the earliest ignition to the latest last date.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from firedpy_nrt.data.layers import normalise_fire_id
from firedpy_nrt.errors import ConfigError, DataError

if TYPE_CHECKING:
    from firedpy_nrt.config.prepare import PrepareConfig

log = logging.getLogger(__name__)

#: The CRS FIREDpy writes its tables in (MODIS sinusoidal on a sphere).
MODIS_SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
#: Half a MODIS 500 m pixel (463.3 m): a point of the point table stands for the pixel around it.
HALF_MODIS_PIXEL_M = 231.7
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json")
REQUIRED_COLUMNS = ("id", "ig_date", "last_date")


@dataclass(frozen=True)
class FireEvent:
    """One fire: its FIREDpy id (digits), first and last burn dates, and outline in EPSG:4326."""

    id: str
    ig_date: dt.date
    last_date: dt.date
    geometry: BaseGeometry


def _parse_crs(crs: Any, source: str) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise DataError(f"{source}: cannot understand CRS {crs!r}") from exc


def _looks_geographic(geoms: Iterable[BaseGeometry]) -> bool:
    minx, miny, maxx, maxy = shapely.total_bounds(list(geoms))
    return -180.0 <= minx <= maxx <= 180.0 and -90.0 <= miny <= maxy <= 90.0


def _read_csv(path: Path, crs: Any) -> tuple[pd.DataFrame, list[BaseGeometry], CRS, bool]:
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read events CSV ({exc})".splitlines()[0]) from exc
    if frame.empty:  # a header alone: nothing to read geometries from
        raise DataError(f"{path}: the events table is empty (a header and no row)")
    columns = {c.lower(): c for c in frame.columns}
    if "geometry" in columns:
        geoms: list[BaseGeometry] = []
        for i, text in enumerate(frame[columns["geometry"]]):
            try:
                geoms.append(shapely.from_wkt(str(text)))
            except shapely.errors.GEOSException as exc:
                raise DataError(f"{path}: row {i + 2}: column 'geometry' is not WKT") from exc
        if crs is not None:
            src = _parse_crs(crs, str(path))
        elif _looks_geographic(geoms):
            src = CRS.from_epsg(4326)
        else:
            log.info(
                "%s: projected coordinates without a crs hint; assuming MODIS sinusoidal", path
            )
            src = CRS.from_proj4(MODIS_SINUSOIDAL)
    elif "x" in columns and "y" in columns:
        try:
            xs = pd.to_numeric(frame[columns["x"]])
            ys = pd.to_numeric(frame[columns["y"]])
        except ValueError as exc:
            raise DataError(f"{path}: columns 'x'/'y' must be numbers") from exc
        src = _parse_crs(crs, str(path)) if crs is not None else CRS.from_proj4(MODIS_SINUSOIDAL)
        geoms = list(shapely.points(xs.to_numpy(), ys.to_numpy()))
        return frame.rename(columns={v: k for k, v in columns.items()}), geoms, src, True
    else:
        raise DataError(f"{path}: missing column 'geometry' (WKT) or columns 'x' and 'y'")
    return frame.rename(columns={v: k for k, v in columns.items()}), geoms, src, False


def _read_vector(path: Path, crs: Any) -> tuple[pd.DataFrame, list[BaseGeometry], CRS]:
    import geopandas as gpd  # heavy import, only when a vector file is read

    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio raises several unrelated types for unreadable files
        raise DataError(f"{path}: cannot read events file ({exc})".splitlines()[0]) from exc
    geoms = list(gdf.geometry.values)
    if crs is not None:
        src = _parse_crs(crs, str(path))
    else:
        present = [g for g in geoms if g is not None and not g.is_empty]
        src = CRS.from_user_input(gdf.crs) if gdf.crs is not None else None
        # GeoJSON has no CRS member (RFC 7946), so GDAL reads any GeoJSON as lon/lat; FIREDpy's
        # sinusoidal metres are far outside that range, which tells them apart.
        if (src is None or src.is_geographic) and present and not _looks_geographic(present):
            log.warning(
                "%s: coordinates are not lon/lat; assuming MODIS sinusoidal (set a crs to override)",
                path,
            )
            src = CRS.from_proj4(MODIS_SINUSOIDAL)
        elif src is None:
            src = CRS.from_epsg(4326)
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame, geoms, src


def _to_date(value: Any, path: Path, column: str, row: int) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: row {row}: column '{column}' is not a date: {value!r}") from exc
    if pd.isna(stamp):
        raise DataError(f"{path}: row {row}: column '{column}' is empty")
    return stamp.date()


def _buffer_points(parts: list[BaseGeometry], metres: float, src: CRS) -> list[BaseGeometry]:
    # a projected CRS has metres; in degrees about 111 km per degree is close enough for a buffer
    radius = metres if src.is_projected else metres / 111_320.0
    return [p.buffer(radius, quad_segs=4) for p in parts]


def read_events(
    path: str | Path,
    ids: Iterable[Any] | None = None,
    crs: Any = None,
    point_buffer_m: float | None = None,
) -> list[FireEvent]:
    """Read a FIREDpy event table; keep ``ids`` (None or empty: all) in the order asked.

    ``crs`` overrides the file's CRS (needed for a CSV whose coordinates are neither lon/lat nor
    MODIS sinusoidal). Raises DataError naming the file and column, or the id that is missing.

    A CSV of ``x, y`` points is read as FIREDpy's daily tables are: one point per burned MODIS
    pixel, each buffered by half a pixel. FIREDpy's event CSV has one row per event whose point
    is a single pixel of the fire, too small to search with: an event made of one point is refused
    unless ``point_buffer_m`` (config key ``events_point_buffer_m``) says how far around the
    point to search; the event polygons of FIREDpy's ``.gpkg`` / ``.shp`` outputs are better.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: events file not found")
    suffix = path.suffix.lower()
    from_points = False
    if suffix == ".csv":
        frame, geoms, src, from_points = _read_csv(path, crs)
    elif suffix in VECTOR_SUFFIXES:
        frame, geoms, src = _read_vector(path, crs)
    else:
        raise DataError(
            f"{path}: unknown events format {suffix!r} (use .gpkg, .shp, .geojson or .csv)"
        )
    if frame.empty:
        raise DataError(f"{path}: the events table is empty")
    if "id" not in frame.columns:
        raise DataError(f"{path}: missing column 'id'")
    # FIREDpy's daily tables carry one ``date`` per row instead of the event's two dates.
    has_dates = "ig_date" in frame.columns and "last_date" in frame.columns
    if not has_dates and "date" not in frame.columns:
        missing = "ig_date" if "ig_date" not in frame.columns else "last_date"
        raise DataError(f"{path}: missing column '{missing}'")

    wanted: list[str] | None = None
    if ids:
        try:
            wanted = list(dict.fromkeys(normalise_fire_id(i, strict=True) for i in ids))
        except ValueError as exc:
            raise DataError(f"event_ids: {exc}") from None

    to_wgs84 = None
    if not src.equals(CRS.from_epsg(4326)):
        from pyproj import Transformer

        to_wgs84 = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)

    grouped: dict[str, tuple[dt.date, dt.date, list[BaseGeometry]]] = {}
    for i, record in enumerate(frame.to_dict("records")):
        row = i + 2 if suffix == ".csv" else i + 1
        try:
            event_id = normalise_fire_id(record["id"], strict=True)
        except ValueError:
            raise DataError(f"{path}: row {row}: column 'id' is not an event id") from None
        if wanted is not None and event_id not in wanted:
            continue
        if has_dates:
            first = _to_date(record["ig_date"], path, "ig_date", row)
            last = _to_date(record["last_date"], path, "last_date", row)
        else:
            first = last = _to_date(record["date"], path, "date", row)
        geom = geoms[i]
        if geom is None or geom.is_empty:
            raise DataError(f"{path}: row {row}: event {event_id} has no geometry")
        if event_id in grouped:
            g_first, g_last, parts = grouped[event_id]
            parts.append(geom)
            grouped[event_id] = (min(g_first, first), max(g_last, last), parts)
        else:
            grouped[event_id] = (first, last, [geom])

    if wanted is not None:
        missing_ids = [i for i in wanted if i not in grouped]
        if missing_ids:
            raise DataError(f"{path}: no event with id {', '.join(missing_ids)}")
        order = wanted
    else:
        order = sorted(grouped, key=int)

    events = []
    for event_id in order:
        first, last, parts = grouped[event_id]
        if last < first:
            raise DataError(f"{path}: event {event_id}: last_date {last} is before ig_date {first}")
        if from_points:
            # an event table (ig_date/last_date per row) gives one point per event; a daily table
            # one point per burned pixel, so one point there is a genuinely one-pixel fire
            if point_buffer_m is None and has_dates and len(parts) == 1:
                raise DataError(
                    f"{path}: event {event_id} is a single point (FIREDpy's event CSV gives one "
                    "pixel per event, too small to search with); use FIREDpy's .gpkg or .shp "
                    "event polygons, or set events_point_buffer_m=<metres> to search around it"
                )
            if point_buffer_m is not None:
                parts = _buffer_points(parts, point_buffer_m, src)
            elif src.is_projected:
                parts = _buffer_points(parts, HALF_MODIS_PIXEL_M, src)
        geom = parts[0] if len(parts) == 1 else shapely.union_all(parts)
        if to_wgs84 is not None:
            geom = shapely.transform(geom, lambda xy: _apply(to_wgs84, xy))
        geom = shapely.make_valid(geom)
        events.append(FireEvent(id=event_id, ig_date=first, last_date=last, geometry=geom))
    return events


def _apply(transformer: Any, xy: Any) -> Any:
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def events_of(cfg: PrepareConfig, stage: str, why: str = "") -> list[FireEvent]:
    """The events a prepare stage works on: ``cfg.events`` read with ``event_ids``,
    ``events_crs`` and ``events_point_buffer_m``; without a file, one line naming ``stage``."""
    if not cfg.events:
        raise ConfigError(
            f"config key 'events': the {stage} stage needs a FIREDpy events file (events=PATH)"
            + (f" {why}" if why else "")
        )
    return read_events(
        cfg.events,
        ids=list(cfg.event_ids),
        crs=cfg.events_crs,
        point_buffer_m=cfg.events_point_buffer_m,
    )
