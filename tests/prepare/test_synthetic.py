"""The synthetic stage: `prepare.py source=synthetic` end to end, realism checks, reruns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from omegaconf import OmegaConf
from rasterio.vrt import WarpedVRT

from firedpy_nrt.data.layers import SENSORS, parse_layer
from firedpy_nrt.data.match_csv import read_match_csv
from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.prepare.synthetic import LABEL_NODATA
from firedpy_nrt.prepare.synthetic import run_stage as run_validated

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "synthetic.size=96",
    "synthetic.n_fires=4",
    "synthetic.pairs_per_fire=2",
    "synthetic.dnbr_per_fire=2",
    "synthetic.other_crs_fraction=0.5",
    "synthetic.haze_fraction=0.0",  # the realism checks below are of unhazed dNBR
    "synthetic.brightening_fraction=0.0",
    "synthetic.size_jitter=0.0",
    "synthetic.fire_variation=0.0",  # ... and of the population's mean response
]
KIND_OF = {
    "lum_change": "lum_change",
    "coh_change": "coh_change",
    "binary_product": "binary_product",
    "dnbr": "dnbr",
}


def run_stage(cfg):
    """What prepare.py does with a composed config: validate it once, then run the stage."""
    from firedpy_nrt.config import validate
    from firedpy_nrt.config.prepare import PrepareConfig

    return run_validated(validate(cfg, PrepareConfig))


def prepare(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "prepare.py"), *args, f"paths.log_dir={tmp_path / 'logs'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("syn")
    proc = prepare(tmp, "source=synthetic", f"paths.data_dir={tmp / 'data'}", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "data" / "synthetic"


def test_structure_names_and_match(dataset: Path) -> None:
    for sub in KIND_OF:
        files = sorted((dataset / sub).iterdir())
        assert files, sub
        for f in files:
            assert parse_layer(f, KIND_OF[sub]) is not None, f.name
    assert len(list((dataset / "lum_change").iterdir())) == 4 * 2
    df = read_match_csv(dataset / "match.csv")
    assert len(df) == 4 * 2  # every SAR pair matched
    assert df["binary_product"].notna().all()
    assert set(df["dnbr_sensor"]) <= set(SENSORS)
    sensors = {parse_layer(f, "dnbr").sensor for f in (dataset / "dnbr").iterdir()}
    assert sensors == set(SENSORS)  # 8 products cycle through all five sensors
    assert (dataset / "match.unmatched.csv").read_text().count("\n") == 1  # header only
    assert (dataset / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rasters_are_realistic(dataset: Path) -> None:
    df = read_match_csv(dataset / "match.csv")
    other_crs = 0
    sar_nodata_seen = False
    fractions: dict[str, float] = {}
    for row in df.to_dict("records"):
        with rasterio.open(row["lum_change"]) as lum:
            assert lum.crs.is_projected and lum.crs.to_epsg() // 100 in (326, 327)  # UTM
            assert lum.profile["tiled"] and lum.compression.name.lower() == "deflate"
            assert np.isnan(lum.nodata)
            a = lum.read(1)
            sar_res = lum.res
            sar_nodata_seen |= bool(np.isnan(a).any())
            finite = a[np.isfinite(a)]
            assert 2.0 < finite.std() < 8.0  # speckle in dB, not a clean mask
        with rasterio.open(row["binary_product"]) as b:
            assert b.dtypes[0] == "uint8" and b.nodata == LABEL_NODATA
            lab = b.read(1)
            assert set(np.unique(lab)) <= {0, 1, LABEL_NODATA}
            assert b.crs == lum.crs and b.transform == lum.transform
            assert ((lab == LABEL_NODATA) == np.isnan(a)).all()
            valid = lab != LABEL_NODATA
            fractions[row["fire_id"]] = max(
                fractions.get(row["fire_id"], 0.0), float((lab == 1).sum() / valid.sum())
            )
        with rasterio.open(row["coh_change"]) as c:
            coh = c.read(1)
            burned, unburned = coh[lab == 1], coh[lab == 0]
            assert np.nanmean(burned) > np.nanmean(unburned) + 0.1  # coherence rises over burns
            assert np.nanpercentile(unburned, 99) > np.nanmean(burned)  # ...and elsewhere too
        with rasterio.open(row["dnbr"]) as d:
            assert d.res != sar_res  # another resolution
            assert d.crs.to_epsg() // 100 in (326, 327)
            other_crs += d.crs != lum.crs
            dn = d.read(1)
            assert np.isnan(dn).mean() > 0.0  # cloud gaps
            with WarpedVRT(
                d, crs=lum.crs, transform=lum.transform, width=lum.width, height=lum.height
            ) as v:
                on_sar = v.read(1)
            burned_dnbr = on_sar[(lab == 1) & np.isfinite(on_sar)]
            unburned_dnbr = on_sar[(lab == 0) & np.isfinite(on_sar)]
            assert 0.15 < np.median(burned_dnbr) < 0.8
            assert abs(np.median(unburned_dnbr)) < 0.05
    assert other_crs > 0  # some fires' dNBR lie in another UTM zone
    assert sar_nodata_seen  # swath edges
    assert all(0.05 <= f <= 0.6 for f in fractions.values()), fractions


def test_events_file(dataset: Path) -> None:
    import geopandas as gpd

    events = gpd.read_file(dataset / "events.gpkg")
    assert {"id", "ig_date", "last_date", "geometry"} <= set(events.columns)
    assert events.crs.to_epsg() == 4326
    assert set(events.geom_type) <= {"Polygon", "MultiPolygon"}
    assert (events["last_date"] >= events["ig_date"]).all()
    df = read_match_csv(dataset / "match.csv")
    assert sorted(str(i) for i in events["id"]) == sorted(set(df["fire_id"]))
    # each SAR pair's post date is after ignition, its pre date before
    ig = {str(r.id): r.ig_date for r in events.itertuples()}
    for row in df.to_dict("records"):
        assert (
            row["lum_date_pre"].isoformat() < ig[row["fire_id"]] < row["lum_date_post"].isoformat()
        )


def test_events_read_by_the_events_reader(dataset: Path) -> None:
    from firedpy_nrt.prepare.events import read_events

    df = read_match_csv(dataset / "match.csv")
    for name in ("events.gpkg", "events.csv"):
        events = read_events(dataset / name)
        assert sorted(e.id for e in events) == sorted(set(df["fire_id"]))
        for e in events:
            assert e.ig_date <= e.last_date
            minx, miny, maxx, maxy = e.geometry.bounds
            assert -125 < minx < maxx < -100 and 30 < miny < maxy < 50  # lon/lat, western US


def _population(tmp_path: Path, name: str, **settings) -> list[dict]:
    small = [
        "synthetic.size=96",
        "synthetic.n_fires=4",
        "synthetic.pairs_per_fire=1",
        "synthetic.dnbr_per_fire=1",
        "synthetic.seed=5",
    ]
    extra = [f"synthetic.{k}={v}" for k, v in settings.items()]
    data = tmp_path / name
    proc = prepare(tmp_path, "source=synthetic", f"paths.data_dir={data}", *small, *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return read_match_csv(data / "synthetic" / "match.csv").to_dict("records")


def _burned_means(row: dict) -> tuple[float, float, float, float]:
    """(luminance change over burned, over unburned, dNBR over burned, dNBR NaN share)."""
    with rasterio.open(row["lum_change"]) as lum, rasterio.open(row["binary_product"]) as b:
        a, lab = lum.read(1), b.read(1)
        with (
            rasterio.open(row["dnbr"]) as d,
            WarpedVRT(
                d, crs=lum.crs, transform=lum.transform, width=lum.width, height=lum.height
            ) as v,
        ):
            dn = v.read(1)
    burned = lab == 1
    return (
        float(np.nanmean(a[burned])),
        float(np.nanmean(a[lab == 0])),
        float(np.nanmedian(dn[burned & np.isfinite(dn)])),
        float(np.isnan(dn).mean()),
    )


def test_population_settings_brightening_haze_and_sizes(tmp_path: Path) -> None:
    off = {"brightening_fraction": 0.0, "haze_fraction": 0.0, "size_jitter": 0.0}
    plain = _population(tmp_path, "plain", **off)
    hazy = _population(tmp_path, "hazy", **{**off, "haze_fraction": 0.5})
    wide = _population(tmp_path, "wide", **{**off, "brightening_fraction": 0.5, "size_jitter": 0.5})
    # darkening everywhere without brightening; some fires brighten with it
    assert all(m[0] < m[1] for m in map(_burned_means, plain))
    assert any(m[0] > m[1] for m in map(_burned_means, wide))
    # unmasked haze damps the burned dNBR of the same fires without hiding it (NaN: cloud only)
    for a, b in zip(map(_burned_means, plain), map(_burned_means, hazy), strict=True):
        assert b[2] <= a[2] + 0.01 and b[3] == pytest.approx(a[3], abs=1e-9)
    assert np.mean([m[2] for m in map(_burned_means, hazy)]) < np.mean(
        [m[2] for m in map(_burned_means, plain)]
    )
    sizes = set()
    for row in wide:
        with rasterio.open(row["lum_change"]) as lum:
            sizes.add(lum.width)
    assert len(sizes) > 1 and all(s % 16 == 0 for s in sizes)
    with rasterio.open(plain[0]["lum_change"]) as lum:
        assert lum.width == 96


def test_fire_variation_scales_each_fires_physics_and_nothing_else(tmp_path: Path) -> None:
    """``fire_variation``: the same fires (shapes, dates, labels, clouds), each with its own
    burn response and noise, so the burned-minus-unburned luminance contrast of one population
    is a different multiple of the other's from fire to fire."""
    off = {"brightening_fraction": 0.0, "haze_fraction": 0.0, "size_jitter": 0.0}
    same = _population(tmp_path, "same", **off, fire_variation=0.0)
    varied = _population(tmp_path, "varied", **off, fire_variation=0.8)
    ratios, noise = [], []
    for a, b in zip(same, varied, strict=True):
        with rasterio.open(a["binary_product"]) as x, rasterio.open(b["binary_product"]) as y:
            assert np.array_equal(x.read(), y.read())
        with rasterio.open(a["dnbr"]) as x, rasterio.open(b["dnbr"]) as y:
            assert np.array_equal(np.isnan(x.read()), np.isnan(y.read()))  # the same clouds
            noise.append(float(np.nanstd(y.read() - x.read())))
        ma, mb = _burned_means(a), _burned_means(b)
        ratios.append((mb[0] - mb[1]) / (ma[0] - ma[1]))
    # each fire its own factor from U(0.2, 1.8): without variation every ratio would be 1
    assert max(ratios) - min(ratios) > 0.2 and max(abs(r - 1.0) for r in ratios) > 0.2, ratios
    assert min(noise) > 0  # the same noise drawn at another level


def test_same_seed_same_data_and_rerun_rules(tmp_path: Path) -> None:
    def cfg(seed: int, data: Path, overwrite: bool = False):
        return OmegaConf.create(
            {
                "paths": {"data_dir": str(data)},
                "overwrite": overwrite,
                "synthetic": {
                    "size": 48,
                    "n_fires": 2,
                    "pairs_per_fire": 1,
                    "dnbr_per_fire": 1,
                    "seed": seed,
                },
            }
        )

    a, b = tmp_path / "a", tmp_path / "b"
    assert run_stage(cfg(1, a)).written == 2 * 4
    run_stage(cfg(1, b))
    names = sorted(p.relative_to(a / "synthetic") for p in (a / "synthetic").rglob("*.tif"))
    names += sorted(p.relative_to(a / "synthetic") for p in (a / "synthetic").rglob("*.TIF"))
    assert names
    for rel in names:
        with rasterio.open(a / "synthetic" / rel) as x, rasterio.open(b / "synthetic" / rel) as y:
            assert np.array_equal(x.read(), y.read(), equal_nan=True)
            assert x.transform == y.transform and x.crs == y.crs
    # same settings again: kept; other settings: refused unless overwrite
    lum = next((a / "synthetic" / "lum_change").iterdir())
    stamp = lum.stat().st_mtime_ns
    assert run_stage(cfg(1, a)).skipped == 1
    assert lum.stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="overwrite=true"):
        run_stage(cfg(2, a))
    assert lum.stat().st_mtime_ns == stamp
    assert run_stage(cfg(2, a, overwrite=True)).written == 8
    manifest = json.loads((a / "synthetic" / "synthetic.json").read_text())
    assert manifest["settings"]["seed"] == 2
    assert not list(a.glob(".synthetic.*"))


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    bad = OmegaConf.create(
        {"paths": {"data_dir": str(tmp_path)}, "synthetic": {"burn_fraction": [0.5, 0.1]}}
    )
    with pytest.raises(ConfigError, match=r"^config key 'synthetic.burn_fraction'"):
        run_stage(bad)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("synthetic.size=8", "synthetic.size"),
        ("synthetic.fire_variation=1.5", "synthetic.fire_variation"),
        # a new key (with +) reaches our schema; without +, Hydra itself refuses it first
        ("+synthetic.cloud_fractio=0.1", "synthetic.cloud_fractio"),
    ],
)
def test_cli_config_errors_one_line(tmp_path: Path, override: str, key: str) -> None:
    proc = prepare(tmp_path, "source=synthetic", f"paths.data_dir={tmp_path / 'data'}", override)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not (tmp_path / "data").exists()
