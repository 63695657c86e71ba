"""The match stage and the matching rules of the data contract, on generated layer folders."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from firedpy_nrt.data.layers import SENSORS
from firedpy_nrt.data.match_csv import read_match_csv
from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.prepare.match import match_names
from firedpy_nrt.prepare.match import run_stage as run_validated

REPO = Path(__file__).resolve().parents[2]


def run_stage(cfg):
    """What prepare.py does with a composed config: validate it once, then run the stage."""
    from firedpy_nrt.config import validate
    from firedpy_nrt.config.prepare import PrepareConfig

    return run_validated(validate(cfg, PrepareConfig))


def lum(fire: int, d1: str, d2: str, res: str = "100m") -> str:
    return f"{fire}_{d1}_{d2}_DeltaLumin_{res}.tif"


def coh(fire: int, d0: str, d1: str, d2: str) -> str:
    return f"{fire}_{d0}_{d1}_{d2}_cohChange.tif"


def binary(fire: int, d1: str, d2: str) -> str:
    return f"{fire}_FIREDpy_sar_combined_{d1}_{d2}.tif"


def dnbr(fire: int, t1: str, t2: str, sensor: str = "S2B", tile: str = "T12SVC") -> str:
    level = "L2A" if sensor.startswith("S2") else "L2SP"
    res = "20m" if sensor.startswith("S2") else "30m"
    return f"{sensor}_{level}_{tile}_{fire}_{t1}T180909_{t2}T175921_{res}_DNBR.TIF"


def only(rows, **where):
    out = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(out) == 1, out
    return out[0]


def names_of(df, column: str) -> list:
    return [Path(p).name if p else None for p in df[column]]


def test_exact_binary_and_coherence_with_both_dates(layer_dirs, match_cfg) -> None:
    root = layer_dirs(
        lum_change=[lum(7, "20200508", "20200520")],
        coh_change=[
            coh(7, "20200502", "20200514", "20200520"),  # last date exact, but lacks d1
            coh(7, "20200508", "20200520", "20200601"),  # holds both dates: wins
        ],
        binary_product=[
            binary(7, "20200508", "20200521"),  # a day off: not a match
            binary(7, "20200508", "20200520"),
        ],
        dnbr=[dnbr(7, "20200507", "20200522")],
    )
    res = run_stage(match_cfg(root))
    assert res.written == 1 and not res.failed
    df = read_match_csv(root / "out" / "match.csv")
    r = df.iloc[0]
    assert Path(r["coh_change"]).name == coh(7, "20200508", "20200520", "20200601")
    assert Path(r["binary_product"]).name == binary(7, "20200508", "20200520")
    assert (r["lum_date_pre"], r["lum_date_post"]) == (date(2020, 5, 8), date(2020, 5, 20))
    assert (r["dnbr_date_pre"], r["dnbr_date_post"]) == (date(2020, 5, 7), date(2020, 5, 22))
    assert r["dnbr_sensor"] == "S2B" and r["dnbr_gap_days"] == 2.0
    # paths relative to the CSV's folder
    assert "../lum/" in (root / "out" / "match.csv").read_text()


def test_coherence_closest_last_date_then_middle_date() -> None:
    L = [lum(1, "20200508", "20200520")]
    D = [dnbr(1, "20200501", "20200520")]
    res = match_names(
        L,
        [
            coh(1, "20200420", "20200502", "20200514"),  # last 6 days off
            coh(1, "20200415", "20200505", "20200526"),  # last 6 days off, middle 3 days off: wins
            coh(1, "20200301", "20200401", "20200701"),  # last 42 days off
        ],
        [],
        D,
    )
    assert names_of(res.matched, "coh_change") == [coh(1, "20200415", "20200505", "20200526")]
    # no coherence file holds both dates and the closest last date wins over a closer middle date
    res = match_names(
        L,
        [coh(1, "20200420", "20200508", "20200517"), coh(1, "20200401", "20200413", "20200519")],
        [],
        D,
    )
    assert names_of(res.matched, "coh_change") == [coh(1, "20200401", "20200413", "20200519")]


def test_dnbr_closest_post_date_then_pre_date_then_name() -> None:
    L = [lum(3, "20200508", "20200520")]
    C = [coh(3, "20200426", "20200508", "20200520")]
    cands = [
        dnbr(3, "20200420", "20200517", "S2A"),  # post 3 days before, pre 18 days off
        dnbr(3, "20200505", "20200523", "S2B"),  # post 3 days after, pre 3 days off: wins
        dnbr(3, "20200508", "20200610", "LC09"),  # pre exact, post 21 days off
    ]
    res = match_names(L, C, [], cands)
    assert names_of(res.matched, "dnbr") == [cands[1]]
    assert res.matched.iloc[0]["dnbr_gap_days"] == 3.0
    # identical dates from two sensors: the file name decides (LC08... < S2C...)
    tie = [dnbr(3, "20200505", "20200523", "S2C"), dnbr(3, "20200505", "20200523", "LC08")]
    res = match_names(L, C, [], tie)
    assert names_of(res.matched, "dnbr") == [tie[1]]
    assert res.matched.iloc[0]["dnbr_sensor"] == "LC08"


def test_max_days_drops_distant_dnbr_with_reason(layer_dirs, match_cfg) -> None:
    root = layer_dirs(
        lum_change=[lum(5, "20200508", "20200520"), lum(5, "20200601", "20200613")],
        coh_change=[coh(5, "20200426", "20200508", "20200520")],
        dnbr=[dnbr(5, "20200501", "20200630")],  # 41 and 17 days from the post dates
    )
    res = run_stage(match_cfg(root, max_days=30))
    assert res.written == 1
    out = root / "out"
    df = read_match_csv(out / "match.csv")
    assert df["lum_date_post"].tolist() == [date(2020, 6, 13)]
    unmatched = (out / "match.unmatched.csv").read_text().splitlines()
    assert unmatched[0].split(",")[-1] == "reason"
    assert len(unmatched) == 2
    assert "max_days=30" in unmatched[1] and "41 days" in unmatched[1]
    # the limit is inclusive
    res = run_stage(match_cfg(root, max_days=41, overwrite=True))
    assert res.written == 2


def test_missing_binary_kept_missing_coherence_dropped(layer_dirs, match_cfg) -> None:
    root = layer_dirs(
        lum_change=[lum(11, "20200508", "20200520"), lum(12, "20200508", "20200520")],
        coh_change=[coh(11, "20200426", "20200508", "20200520")],
        dnbr=[dnbr(11, "20200501", "20200521"), dnbr(12, "20200501", "20200521")],
    )
    run_stage(match_cfg(root))
    out = root / "out"
    df = read_match_csv(out / "match.csv")
    assert df["fire_id"].tolist() == ["11"]
    assert df.loc[0, "binary_product"] is None
    row = (out / "match.csv").read_text().splitlines()[1].split(",")
    assert row[4] == ""  # an empty cell, never "None"
    unmatched = (out / "match.unmatched.csv").read_text()
    assert "12_20200508_20200520_DeltaLumin_100m.tif" in unmatched
    assert "no coherence-change file for fire 12" in unmatched


def test_every_sensor_and_tile_form_matches() -> None:
    L, C, D = [], [], []
    for fire, sensor in enumerate(SENSORS, start=20):
        L.append(lum(fire, "20210701", "20210713"))
        C.append(coh(fire, "20210619", "20210701", "20210713"))
        tile = "T10SEH" if sensor.startswith("S2") else "P044R033"
        D.append(dnbr(fire, "20210620", "20210715", sensor, tile))
    res = match_names(L, C, [], D)
    assert res.unmatched.empty
    assert res.matched["dnbr_sensor"].tolist() == list(SENSORS)
    assert sorted(names_of(res.matched, "dnbr")) == sorted(D)


def test_files_of_other_fires_never_match() -> None:
    res = match_names(
        [lum(1, "20200508", "20200520")],
        [coh(2, "20200426", "20200508", "20200520")],
        [binary(2, "20200508", "20200520")],
        [dnbr(2, "20200501", "20200521")],
    )
    assert res.matched.empty
    assert "no coherence-change file for fire 1" in res.unmatched.loc[0, "reason"]
    assert "no dNBR file for fire 1" in res.unmatched.loc[0, "reason"]


def test_unknown_names_are_counted_and_listed_not_fatal(layer_dirs, match_cfg, caplog) -> None:
    root = layer_dirs(
        lum_change=[
            lum(4, "20200508", "20200520"),
            "notes_20200508.tif",
            "4_20201340_20201350_DeltaLumin_1m.tif",
        ],
        coh_change=[coh(4, "20200426", "20200508", "20200520")],
        dnbr=[
            dnbr(4, "20200501", "20200521"),
            "S1A_L2A_T12SVC_4_20200501T000000_20200521T000000_20m_DNBR.TIF",
        ],
    )
    # the dNBR stage's own side files are known and skipped quietly
    for suffix in ("_DNBR_MASK.TIF", "_DNBR_SEVERITY.TIF"):
        (root / "dnbr" / dnbr(4, "20200501", "20200521").replace("_DNBR.TIF", suffix)).touch()
    with caplog.at_level(logging.WARNING, logger="firedpy_nrt"):
        res = run_stage(match_cfg(root))
    assert res.written == 1
    text = caplog.text
    assert "2 file(s) fit no layer name pattern" in text
    assert "notes_20200508.tif" in text and "4_20201340_20201350_DeltaLumin_1m.tif" in text
    assert "S1A_L2A_T12SVC" in text
    assert "DNBR_MASK" not in text and "DNBR_SEVERITY" not in text


def test_missing_directory_is_one_line_error(layer_dirs, match_cfg) -> None:
    root = layer_dirs(lum_change=[lum(1, "20200508", "20200520")])
    cfg = match_cfg(root, coh_dir=str(root / "nowhere"))
    with pytest.raises(DataError) as info:
        run_stage(cfg)
    msg = str(info.value)
    assert msg.startswith("match.coh_dir: no such directory") and "nowhere" in msg
    assert "\n" not in msg


def test_validate_catches_corrupt_rasters(layer_dirs, match_cfg) -> None:
    good = dnbr(8, "20200501", "20200510")
    corrupt = dnbr(8, "20200501", "20200521")  # closer, but unreadable
    root = layer_dirs(
        lum_change=[lum(8, "20200508", "20200520"), lum(8, "20200520", "20200601")],
        coh_change=[coh(8, "20200426", "20200508", "20200520")],
        dnbr=[good],
    )
    (root / "dnbr" / corrupt).write_bytes(b"II*\x00 this is not a GeoTIFF")
    (root / "lum" / lum(8, "20200520", "20200601")).write_bytes(b"")
    # by name alone the corrupt file wins
    assert run_stage(match_cfg(root)).written == 2
    res = run_stage(match_cfg(root, validate=True, overwrite=True))
    assert res.written == 1
    assert len(res.failed) == 2
    assert any(corrupt in f and "unreadable" in f for f in res.failed)
    df = read_match_csv(root / "out" / "match.csv")
    assert names_of(df, "dnbr") == [good]
    unmatched = (root / "out" / "match.unmatched.csv").read_text()
    assert "luminance change unreadable" in unmatched


def test_existing_csv_is_kept_unless_overwrite(layer_dirs, match_cfg) -> None:
    root = layer_dirs(
        lum_change=[lum(2, "20200508", "20200520")],
        coh_change=[coh(2, "20200426", "20200508", "20200520")],
        dnbr=[dnbr(2, "20200501", "20200521")],
    )
    out = root / "out" / "match.csv"
    assert run_stage(match_cfg(root)).written == 1
    # same inputs: nothing to do, no error
    again = run_stage(match_cfg(root))
    assert again.skipped == 1 and again.written == 0
    (root / "out" / "match.unmatched.csv").unlink()  # only a report: brought back, no error
    assert run_stage(match_cfg(root)).skipped == 1
    assert (root / "out" / "match.unmatched.csv").is_file()
    before = out.read_text()
    (root / "dnbr" / dnbr(2, "20200501", "20200520")).write_bytes(b"")
    with pytest.raises(DataError, match="overwrite=true") as info:
        run_stage(match_cfg(root))
    assert "match.output_csv" in str(info.value)
    assert out.read_text() == before
    assert run_stage(match_cfg(root, overwrite=True)).written == 1
    assert out.read_text() != before


def test_patterns_override_recursive_and_shared_folder(tmp_path, match_cfg, tif) -> None:
    root = tmp_path / "mine"
    # all layers in one folder tree; the luminance change named by another tool
    tif(root / "fire7_2020-05-08_2020-05-20_dlum.tif")
    tif(root / "sub" / coh(7, "20200426", "20200508", "20200520"))
    tif(root / "sub" / binary(7, "20200508", "20200520"))
    tif(root / dnbr(7, "20200501", "20200521"))
    keys = {k: str(root) for k in ("lum_dir", "coh_dir", "binary_dir", "dnbr_dir")}
    pattern = r"^fire(?P<fire>\d+)_(?P<d1>[\d-]{10})_(?P<d2>[\d-]{10})_dlum\.tif$"
    cfg = match_cfg(root, **keys, recursive=True, patterns={"lum_change": pattern})
    assert run_stage(cfg).written == 1
    df = read_match_csv(root / "out" / "match.csv")
    assert names_of(df, "binary_product") == [binary(7, "20200508", "20200520")]
    assert df.loc[0, "lum_date_post"] == date(2020, 5, 20)
    # not recursive: the coherence file in the sub-folder is not seen, so nothing matches
    cfg = match_cfg(root, **keys, recursive=False, patterns={"lum_change": pattern}, overwrite=True)
    with pytest.raises(DataError, match="could be matched"):
        run_stage(cfg)


def test_config_errors_are_one_line(tmp_path, match_cfg, layer_dirs) -> None:
    root = layer_dirs(lum_change=[lum(1, "20200508", "20200520")])
    with pytest.raises(ConfigError, match=r"^config key 'match.max_days'"):
        run_stage(match_cfg(root, max_days=-1))
    with pytest.raises(ConfigError, match=r"^config key 'match.patterns.lum_change'.*fire"):
        run_stage(match_cfg(root, patterns={"lum_change": r"^(?P<d1>\d{8})_(?P<d2>\d{8})\.tif$"}))


def test_cli_max_days_negative_exits_with_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "prepare.py"),
            "stages=[match]",
            "match.max_days=-1",
            f"paths.data_dir={tmp_path}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "match.max_days" in lines[-1], proc.stderr


def _reference(lums, cohs, bins, dnbrs, max_days):
    """The rules written the slow, obvious way: for each luminance row, scan every candidate."""
    from firedpy_nrt.data.layers import parse_layer

    P = [parse_layer(n, "lum_change") for n in lums]
    C = [parse_layer(n, "coh_change") for n in cohs]
    B = [parse_layer(n, "binary_product") for n in bins]
    D = [parse_layer(n, "dnbr") for n in dnbrs]
    out = {}
    for p in P:
        d1, d2 = p.dates
        b = sorted(x.path.name for x in B if x.fire == p.fire and x.dates == (d1, d2))
        cs = [x for x in C if x.fire == p.fire]
        c = min(
            cs,
            key=lambda x: (
                not (d1 in x.dates and d2 in x.dates),
                abs((d2 - x.dates[2]).days),
                abs((d1 - x.dates[1]).days),
                x.path.name,
            ),
            default=None,
        )
        ds = [
            x
            for x in D
            if x.fire == p.fire and (max_days is None or abs((d2 - x.dates[1]).days) <= max_days)
        ]
        d = min(
            ds,
            key=lambda x: (abs((d2 - x.dates[1]).days), abs((d1 - x.dates[0]).days), x.path.name),
            default=None,
        )
        if c is not None and d is not None:
            out[p.path.name] = (c.path.name, d.path.name, b[0] if b else None)
    return out


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_vectorised_rules_agree_with_a_per_row_scan(seed) -> None:
    rng = random.Random(seed)
    start = date(2020, 1, 1)

    def day(k: int) -> str:
        return (start + timedelta(days=k)).strftime("%Y%m%d")

    lums, cohs, bins, dnbrs = [], [], [], []
    for fire in range(1, 31):
        # a narrow window of dates, so that ties on every key happen often
        for _ in range(rng.randint(0, 8)):
            a = rng.randint(0, 30)
            b = a + rng.choice([6, 12, 24])
            lums.append(lum(fire, day(a), day(b)))
            if rng.random() < 0.5:
                bins.append(binary(fire, day(a), day(b)))
        for _ in range(rng.randint(0, 6)):
            a = rng.randint(0, 30)
            cohs.append(
                coh(fire, day(a), day(a + rng.choice([6, 12])), day(a + rng.choice([24, 36])))
            )
        for _ in range(rng.randint(0, 8)):
            a = rng.randint(0, 40)
            dnbrs.append(dnbr(fire, day(a), day(a + rng.randint(5, 30)), rng.choice(SENSORS)))
    lums = list(dict.fromkeys(lums))
    for max_days in (None, 10):
        res = match_names(lums, cohs, bins, dnbrs, max_days=max_days)
        ours = {
            Path(r["lum_change"]).name: (
                Path(r["coh_change"]).name,
                Path(r["dnbr"]).name,
                Path(r["binary_product"]).name if r["binary_product"] else None,
            )
            for r in res.matched.to_dict("records")
        }
        assert ours == _reference(lums, cohs, bins, dnbrs, max_days)
        assert len(res.matched) + len(res.unmatched) == len(lums)


def test_cli_matches_users_directories(tmp_path, layer_dirs) -> None:
    root = layer_dirs(
        lum_change=[lum(9844, "20200508", "20200520")],
        coh_change=[coh(9844, "20200426", "20200508", "20200520")],
        binary_product=[binary(9844, "20200508", "20200520")],
        dnbr=[dnbr(9844, "20200501", "20200521", "LC09", "P034R032")],
    )
    out = tmp_path / "result" / "OUT.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "prepare.py"),
            "stages=[match]",
            f"match.lum_dir={root / 'lum'}",
            f"match.coh_dir={root / 'coh'}",
            f"match.binary_dir={root / 'bin'}",
            f"match.dnbr_dir={root / 'dnbr'}",
            f"match.output_csv={out}",
            "match.max_days=10",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    df = read_match_csv(out)
    assert df["fire_id"].tolist() == ["9844"] and df.loc[0, "dnbr_sensor"] == "LC09"
    assert (out.parent / "OUT.unmatched.csv").is_file()


def test_output_named_like_the_report_never_replaces_the_match(layer_dirs, match_cfg) -> None:
    """match.output_csv=<dir>/unmatched.csv run twice: the match CSV and its report keep
    distinct names, so the second run finds its own match unchanged."""
    root = layer_dirs(
        lum_change=[lum(1, "20200508", "20200520"), lum(2, "20200508", "20200520")],
        coh_change=[coh(1, "20200426", "20200508", "20200520")],
        binary_product=[binary(1, "20200508", "20200520")],
        dnbr=[dnbr(1, "20200501", "20200521")],
    )
    out = root / "out" / "unmatched.csv"
    assert run_stage(match_cfg(root, output_csv=str(out))).written == 1
    first = out.read_text()
    report = root / "out" / "unmatched.unmatched.csv"
    assert "fire_id,lum_change" in first and "reason" in report.read_text()
    again = run_stage(match_cfg(root, output_csv=str(out)))
    assert again.skipped == 1 and out.read_text() == first
    assert read_match_csv(out)["fire_id"].tolist() == ["1"]


def test_output_that_is_a_directory_or_not_text_is_one_line(layer_dirs, match_cfg) -> None:
    root = layer_dirs(lum_change=[lum(1, "20200508", "20200520")])
    folder = root / "out" / "dir.csv"
    folder.mkdir(parents=True)
    with pytest.raises(DataError, match=r"match.output_csv .*dir\.csv is a directory") as exc:
        run_stage(match_cfg(root, output_csv=str(folder)))
    assert "\n" not in str(exc.value)
    binary_file = root / "out" / "x.csv"
    binary_file.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(DataError, match=r"x\.csv exists and is not a UTF-8 text file"):
        run_stage(match_cfg(root, output_csv=str(binary_file)))
    assert binary_file.read_bytes() == b"\xff\xfe\x00\x81 not text"  # left as it was


def test_missing_binary_product_folder_gives_rows_without_labels(layer_dirs, match_cfg, caplog):
    """Labels are optional (``prepare.py stages=[sar]`` writes none with ``sar.label=none``): a
    missing binary folder is a warning, and the rows are kept for prediction."""
    root = layer_dirs(
        lum_change=[lum(1, "20200508", "20200520")],
        coh_change=[coh(1, "20200426", "20200508", "20200520")],
        dnbr=[dnbr(1, "20200501", "20200521")],
    )
    cfg = match_cfg(root, binary_dir=str(root / "no-labels"))
    with caplog.at_level(logging.WARNING, logger="firedpy_nrt"):
        res = run_stage(cfg)
    assert res.written == 1
    rows = read_match_csv(root / "out" / "match.csv").to_dict("records")
    assert len(rows) == 1 and not rows[0]["binary_product"]
    assert "match.binary_dir: no such directory" in caplog.text
