"""``prepare.py stages=[dnbr,match]``: the dNBR this stage writes is what matching picks up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine

from firedpy_nrt.data.match_csv import read_match_csv

from .conftest import FIRE_ID, IG, LAST, S2_CRS, S2_N20, S2_X0, S2_Y0

ROOT = Path(__file__).resolve().parents[3]


def write_events(path: Path, event) -> Path:
    frame = gpd.GeoDataFrame(
        {"id": [int(event.id)], "ig_date": [IG.isoformat()], "last_date": [LAST.isoformat()]},
        geometry=[event.geometry],
        crs="EPSG:4326",
    )
    frame.to_file(path, driver="GeoJSON")
    return path


def write_sar_layers(data: Path) -> dict[str, Path]:
    """SAR luminance change, coherence change and binary product of fire 2282 on the S2 grid."""
    profile = dict(driver="GTiff", width=S2_N20, height=S2_N20, count=1, crs=S2_CRS,
                   transform=Affine(20, 0, S2_X0, 0, -20, S2_Y0))  # fmt: skip
    rng = np.random.default_rng(0)
    names = {
        "lum_change": f"{FIRE_ID}_20200508_20200712_DeltaLumin_20m.tif",
        "coh_change": f"{FIRE_ID}_20200426_20200508_20200712_cohChange.tif",
        "binary_product": f"{FIRE_ID}_FIREDpy_sar_combined_20200508_20200712.tif",
    }
    out = {}
    for kind, name in names.items():
        folder = data / "sar" / kind
        folder.mkdir(parents=True, exist_ok=True)
        dtype = "uint8" if kind == "binary_product" else "float32"
        with rasterio.open(folder / name, "w", dtype=dtype, **profile) as dst:
            dst.write(rng.random((S2_N20, S2_N20)).astype(dtype), 1)
        out[kind] = folder / name
    return out


def prepare(*args: str) -> subprocess.CompletedProcess:
    # Run from the repository root: cli.check_overrides looks for conf/ in the working directory.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(ROOT / "prepare.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_dnbr_then_match(s2_fire, tmp_path):
    data = s2_fire.data_dir
    sar = write_sar_layers(data)
    events = write_events(tmp_path / "events.geojson", s2_fire.event)
    common = [f"events={events}", f"event_ids=[{FIRE_ID}]", f"paths.data_dir={data}",
              f"paths.log_dir={tmp_path / 'logs'}"]  # fmt: skip
    proc = prepare("stages=[dnbr,match]", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dnbr = data / "dnbr" / "S2B_L2A_T18SUJ_2282_20200507T180909_20200708T175921_20m_DNBR.TIF"
    assert dnbr.exists()
    frame = read_match_csv(data / "match.csv")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["fire_id"] == FIRE_ID
    assert Path(row["dnbr"]) == dnbr
    assert Path(row["lum_change"]) == sar["lum_change"]
    assert row["dnbr_sensor"] == "S2B"
    assert str(row["dnbr_date_pre"]) == "2020-05-07" and str(row["dnbr_date_post"]) == "2020-07-08"
    assert row["dnbr_gap_days"] == 4

    # A product without metadata: one line naming it, the run says so with its exit code.
    (data / "scenes" / FIRE_ID / "sentinel" / s2_fire.post_name / "MTD_MSIL2A.xml").unlink()
    proc = prepare("stages=[dnbr]", "overwrite=true", *common)
    assert proc.returncode == 1
    assert f"{s2_fire.post_name}: no MTD_MSIL2A.xml" in proc.stdout + proc.stderr
