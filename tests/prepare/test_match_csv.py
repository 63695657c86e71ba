"""The match CSV reader and writer (interface 1): contract columns, old CSVs, bad input."""

from __future__ import annotations

import math
import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from firedpy_nrt.data.match_csv import COLUMNS, read_match_csv, write_match_csv
from firedpy_nrt.errors import DataError

LUM = "2282_20200508_20200520_DeltaLumin_100m.tif"
COH = "2282_20200426_20200508_20200520_cohChange.tif"
BIN = "2282_FIREDpy_sar_combined_20200508_20200520.tif"
DNBR = "S2B_L2A_T12SVC_2282_20200507T180909_20200708T175921_100m_DNBR.TIF"


def _row(root: Path, fire: str = "2282", binary: bool = True, **kw) -> dict:
    row = {
        "fire_id": fire,
        "lum_change": root / "lum" / LUM.replace("2282", fire),
        "coh_change": root / "coh" / COH.replace("2282", fire),
        "dnbr": root / "dnbr" / DNBR.replace("2282", fire),
        "binary_product": (root / "bin" / BIN.replace("2282", fire)) if binary else None,
        "lum_date_pre": date(2020, 5, 8),
        "lum_date_post": date(2020, 5, 20),
        "dnbr_sensor": "S2B",
        "dnbr_date_pre": date(2020, 5, 7),
        "dnbr_date_post": date(2020, 7, 8),
        "dnbr_gap_days": 49.0,
    }
    row.update(kw)
    return row


def test_round_trip_relative_paths_iso_dates_and_sorting(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "match.csv"
    rows = [
        _row(tmp_path, "10"),
        _row(tmp_path, "9", binary=False, dnbr_gap_days=math.nan, dnbr_date_post=None),
        _row(tmp_path, "9", lum_date_post=date(2020, 5, 1)),
    ]
    write_match_csv(rows, out)
    text = out.read_text().splitlines()
    assert text[0] == ",".join(COLUMNS)
    # numeric fire order (9 before 10), then lum_date_post
    assert [line.split(",")[0] for line in text[1:]] == ["9", "9", "10"]
    assert text[1].split(",")[6] == "2020-05-01"
    # relative to the CSV's folder, no "None", empty cell for none
    assert f"../lum/{LUM.replace('2282', '9')}" in text[1]
    assert "None" not in out.read_text()
    second = text[2].split(",")
    assert second[4] == "" and second[9] == "" and second[10] == ""
    assert not (out.parent / "match.csv.tmp").exists()

    df = read_match_csv(out)
    assert list(df.columns) == list(COLUMNS)
    assert df["fire_id"].tolist() == ["9", "9", "10"]
    assert df.loc[1, "binary_product"] is None
    # dNBR date taken from the name when the cell is empty; the gap is then computed from it
    assert df.loc[1, "dnbr_date_post"] == date(2020, 7, 8)
    assert df.loc[1, "dnbr_gap_days"] == 49.0
    assert df.loc[0, "dnbr_gap_days"] == 49.0
    assert df.loc[2, "lum_change"] == str(tmp_path / "lum" / LUM.replace("2282", "10"))
    assert df.loc[0, "lum_date_pre"] == date(2020, 5, 8)
    assert isinstance(df.loc[0, "dnbr_date_post"], date)


def test_write_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    out = tmp_path / "match.csv"
    write_match_csv([_row(tmp_path)], out)
    before = out.read_text()
    with pytest.raises(DataError, match="overwrite=true"):
        write_match_csv([_row(tmp_path, "5")], out)
    assert out.read_text() == before
    write_match_csv([_row(tmp_path, "5")], out, overwrite=True)
    assert read_match_csv(out)["fire_id"].tolist() == ["5"]


def test_old_four_column_csv_takes_ids_and_dates_from_names(tmp_path: Path) -> None:
    csv = tmp_path / "old.csv"
    pd.DataFrame(
        {
            "lum_change": [f"/data/lum/{LUM}"],
            "coh_change": [f"coh/{COH}"],
            "dnbr": [f"/data/dnbr/{DNBR}"],
            "binary_product": [f"/data/bin/{BIN}"],
        }
    ).to_csv(csv)  # with pandas' index column, as the old script wrote it
    df = read_match_csv(csv)
    assert list(df.columns) == list(COLUMNS)
    r = df.iloc[0]
    assert r["fire_id"] == "2282"
    assert r["lum_change"] == os.path.normpath(f"/data/lum/{LUM}")
    assert r["coh_change"] == str(tmp_path / "coh" / COH)
    assert (r["lum_date_pre"], r["lum_date_post"]) == (date(2020, 5, 8), date(2020, 5, 20))
    assert r["dnbr_sensor"] == "S2B"
    assert (r["dnbr_date_pre"], r["dnbr_date_post"]) == (date(2020, 5, 7), date(2020, 7, 8))
    assert r["dnbr_gap_days"] == 49.0


def test_gap_is_nan_when_dnbr_name_is_foreign(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(f"lum_change,coh_change,dnbr\n{LUM},{COH},my_own_dnbr.tif\n")
    df = read_match_csv(csv)
    assert df.loc[0, "dnbr_sensor"] is None and df.loc[0, "dnbr_date_post"] is None
    assert math.isnan(df.loc[0, "dnbr_gap_days"])


def test_old_csv_without_binary_column(tmp_path: Path) -> None:
    csv = tmp_path / "old.csv"
    csv.write_text(f"lum_change,coh_change,dnbr\n{LUM},{COH},{DNBR}\n")
    df = read_match_csv(csv)
    assert df.loc[0, "binary_product"] is None
    assert df.loc[0, "lum_change"] == str(tmp_path / LUM)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ("lum_change,coh_change,dnbr,binary_product\n", "no rows"),
        ("fire_id,lum_change,dnbr\n1,a.tif,b.tif\n", "lacks column.*coh_change"),
        (f"lum_change,coh_change,dnbr\n{LUM},,{DNBR}\n", "line 2: coh_change is empty"),
        (
            f"fire_id,lum_change,coh_change,dnbr,lum_date_post\n1,{LUM},{COH},{DNBR},20-05-2020\n",
            "line 2: lum_date_post",
        ),
        (
            f"lum_change,coh_change,dnbr\n{LUM},{COH},{DNBR}\nfoo.tif,{COH},{DNBR}\n",
            "line 3: no fire_id",
        ),
        (
            f"fire_id,lum_change,coh_change,dnbr,dnbr_gap_days\n1,{LUM},{COH},{DNBR},soon\n",
            "line 2: dnbr_gap_days",
        ),
    ],
)
def test_bad_csv_is_a_data_error_naming_file_and_line(
    tmp_path: Path, content: str, match: str
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        read_match_csv(csv)
    assert str(csv) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_match_csv(tmp_path / "nope.csv")
