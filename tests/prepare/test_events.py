"""FIREDpy event tables in every accepted format, reprojected to EPSG:4326."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon

from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.events import MODIS_SINUSOIDAL, FireEvent, read_events

# A fire near Flagstaff, Arizona: lon/lat corners, and the same square in MODIS sinusoidal.
LONLAT = Polygon([(-111.70, 35.20), (-111.60, 35.20), (-111.60, 35.28), (-111.70, 35.28)])
TO_SINU = Transformer.from_crs("EPSG:4326", MODIS_SINUSOIDAL, always_xy=True)
SINU = shapely.transform(LONLAT, lambda xy: np.column_stack(TO_SINU.transform(xy[:, 0], xy[:, 1])))
OTHER = Polygon([(10.0, 45.0), (10.1, 45.0), (10.1, 45.1), (10.0, 45.1)])


def _frame(geoms, crs):
    return gpd.GeoDataFrame(
        {
            "id": [9844, 2282],
            "ig_date": ["2020-05-07", "2021-07-01"],
            "last_date": ["2020-05-20", "2021-07-03"],
        },
        geometry=geoms,
        crs=crs,
    )


def _check(events: list[FireEvent]) -> None:
    assert [e.id for e in events] == ["2282", "9844"]
    fire = events[1]
    assert fire.ig_date == dt.date(2020, 5, 7) and fire.last_date == dt.date(2020, 5, 20)
    assert fire.geometry.equals_exact(LONLAT, tolerance=1e-6) or (
        fire.geometry.symmetric_difference(LONLAT).area < 1e-9
    )


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_vector_formats_are_reprojected_from_modis_sinusoidal(tmp_path, suffix):
    path = tmp_path / f"events{suffix}"
    other_sinu = shapely.transform(
        OTHER, lambda xy: np.column_stack(TO_SINU.transform(xy[:, 0], xy[:, 1]))
    )
    _frame([SINU, other_sinu], MODIS_SINUSOIDAL).to_file(path)
    events = read_events(path)
    _check(events)
    assert events[0].geometry.symmetric_difference(OTHER).area < 1e-9


def test_geojson_in_lonlat_and_date_objects(tmp_path):
    path = tmp_path / "events.gpkg"
    frame = _frame([LONLAT, OTHER], "EPSG:4326")
    frame["ig_date"] = pd.to_datetime(frame["ig_date"]).dt.date
    frame["last_date"] = pd.to_datetime(frame["last_date"])
    frame.to_file(path)
    _check(read_events(path))


def test_csv_with_wkt_geometry_and_string_ids(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "id": ["9844", "2282"],
            "ig_date": ["2020-05-07", "2021-07-01"],
            "last_date": ["2020-05-20", "2021-07-03"],
            "geometry": [LONLAT.wkt, OTHER.wkt],
        }
    ).to_csv(path, index=False)
    _check(read_events(path))


def test_csv_wkt_in_sinusoidal_and_crs_hint(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "id": [9844],
            "ig_date": ["2020-05-07"],
            "last_date": ["2020-05-20"],
            "geometry": [SINU.wkt],
        }
    ).to_csv(path, index=False)
    (fire,) = read_events(path)
    assert fire.geometry.symmetric_difference(LONLAT).area < 1e-9
    # The same file read with an explicit (matching) hint gives the same outline.
    (hinted,) = read_events(path, crs=MODIS_SINUSOIDAL)
    assert hinted.geometry.symmetric_difference(LONLAT).area < 1e-9


def test_firedpy_point_table_in_sinusoidal(tmp_path):
    lons, lats = [-111.65, -111.64, -111.63, 10.05], [35.22, 35.23, 35.24, 45.05]
    xs, ys = TO_SINU.transform(lons, lats)
    path = tmp_path / "fired_daily.csv"
    pd.DataFrame(
        {
            "id": [9844, 9844, 9844, 77],
            "date": ["2020-05-09", "2020-05-07", "2020-05-20", "2019-01-01"],
            "x": xs,
            "y": ys,
        }
    ).to_csv(path, index=False)
    (fire,) = read_events(path, ids=["9844"])
    assert (fire.ig_date, fire.last_date) == (dt.date(2020, 5, 7), dt.date(2020, 5, 20))
    minx, miny, maxx, maxy = fire.geometry.bounds
    # The three pixels (buffered by half a MODIS pixel, ~0.003 deg) lie inside the outline.
    assert minx < -111.65 < -111.63 < maxx and miny < 35.22 < 35.24 < maxy
    assert maxx - minx < 0.03 and maxy - miny < 0.03


def test_ids_pick_events_in_order_and_accept_ints(tmp_path):
    path = tmp_path / "events.gpkg"
    _frame([LONLAT, OTHER], "EPSG:4326").to_file(path)
    events = read_events(path, ids=[9844, "2282", 9844.0])
    assert [e.id for e in events] == ["9844", "2282"]
    assert len(read_events(path, ids=[])) == 2


def test_missing_id_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "events.gpkg"
    _frame([LONLAT, OTHER], "EPSG:4326").to_file(path)
    with pytest.raises(DataError, match=r"no event with id 12345$") as info:
        read_events(path, ids=[9844, 12345])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("drop", ["id", "last_date"])
def test_missing_column_names_file_and_column(tmp_path, drop):
    path = tmp_path / "events.csv"
    frame = pd.DataFrame(
        {
            "id": [1],
            "ig_date": ["2020-01-01"],
            "last_date": ["2020-01-02"],
            "geometry": [LONLAT.wkt],
        }
    )
    frame.drop(columns=[drop]).to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"events\.csv: missing column '{drop}'"):
        read_events(path)


def test_csv_without_geometry_names_the_columns(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame({"id": [1], "ig_date": ["2020-01-01"], "last_date": ["2020-01-02"]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match=r"events\.csv: missing column 'geometry'"):
        read_events(path)


def test_missing_file_and_bad_date(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_events(tmp_path / "nope.gpkg")
    path = tmp_path / "events.csv"
    pd.DataFrame(
        {"id": [1], "ig_date": ["soon"], "last_date": ["2020-01-02"], "geometry": [LONLAT.wkt]}
    ).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 2: column 'ig_date' is not a date"):
        read_events(path)


@pytest.mark.parametrize(
    "header", ["id,ig_date,last_date,geometry\n", "id,ig_date,last_date,x,y\n"]
)
def test_an_events_csv_with_only_a_header_is_one_line(tmp_path, header):
    path = tmp_path / "events.csv"
    path.write_text(header)
    with pytest.raises(DataError, match=r"events.csv: the events table is empty") as exc:
        read_events(path)
    assert "\n" not in str(exc.value)


def test_firedpys_event_csv_of_one_point_per_event_is_refused_or_buffered(tmp_path):
    """FIREDpy's event CSV: one row per event whose x, y is a single pixel of the fire."""
    xs, ys = TO_SINU.transform([-111.64], [35.23])
    path = tmp_path / "fired_events.csv"
    pd.DataFrame(
        {"id": [9844], "ig_date": ["2020-05-07"], "last_date": ["2020-05-20"], "x": xs, "y": ys}
    ).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"event 9844 is a single point .*events_point_buffer_m"):
        read_events(path)
    (fire,) = read_events(path, point_buffer_m=5000.0)
    minx, miny, maxx, maxy = fire.geometry.bounds
    assert minx < -111.64 < maxx and miny < 35.23 < maxy
    assert 0.09 < maxx - minx < 0.2  # 10 km across in sinusoidal metres, sheared at 35 N
