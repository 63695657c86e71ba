"""Chip index and chip cache: coverage, skipping rules, reuse and rebuild, bad rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from firedpy_nrt.data import raster as raster_mod
from firedpy_nrt.data.chips import ChipSettings, cache_path, chip_offsets, ensure_chip_cache
from firedpy_nrt.data.raster import IGNORE, AlignedRow
from firedpy_nrt.errors import DataError

S16 = ChipSettings(chip_size=16, stride=16, min_valid_fraction=0.1)


@pytest.mark.parametrize(
    ("size", "chip", "stride", "expected"),
    [
        (48, 16, 16, [0, 16, 32]),
        (50, 16, 16, [0, 16, 32, 34]),
        (48, 16, 12, [0, 12, 24, 32]),
        (10, 16, 8, [0]),
        (16, 16, 4, [0]),
    ],
)
def test_chip_offsets_cover_the_axis(size, chip, stride, expected):
    assert chip_offsets(size, chip, stride) == expected


def test_cache_chips_equal_aligned_reads(fires_csv, tmp_path):
    csv, fires = fires_csv
    cache = ensure_chip_cache(csv, tmp_path / "cache", S16, progress=False)
    n = len(cache)
    assert cache.images.shape == (n, 3, 16, 16) and cache.images.dtype == np.float32
    assert cache.labels.shape == (n, 16, 16) and cache.labels.dtype == np.uint8
    assert isinstance(cache.images, np.memmap)
    assert set(cache.fires) == {f.fire_id for f in fires}
    # every chip is exactly the aligned read of its window
    rows = {f.fire_id: f.row for f in fires}
    for i in range(0, n, 5):
        idx, r0, c0 = (int(v) for v in cache.windows[i])
        with AlignedRow(rows[str(cache.fire_ids[i])]) as r:
            image, label = r.read((r0, c0, 16, 16))
        np.testing.assert_array_equal(cache.images[i], image)
        np.testing.assert_array_equal(cache.labels[i], label)
    # 3 x 3 windows per 48 px fire; the top row of windows is 6/16 label no-data (kept at 0.1)
    assert n == 6 * 9
    assert cache.meta["chips"] == n and cache.meta["rows_used"] == 6


def test_min_valid_fraction_and_lum_nodata(fires_csv, tmp_path):
    csv, _ = fires_csv
    strict = ensure_chip_cache(
        csv, tmp_path / "c", ChipSettings(16, 16, min_valid_fraction=0.9), progress=False
    )
    # top windows (6 of 16 rows ignored) and right windows (3 of 16 cols outside the map) go
    assert len(strict) == 6 * 4
    assert ((strict.labels != IGNORE).mean(axis=(1, 2)) >= 0.9).all()


def test_chip_of_pure_lum_nodata_is_skipped(geo, tmp_path):
    f = geo.make_fire(tmp_path / "l", "31", size=32)
    import rasterio

    with rasterio.open(f.row["lum_change"], "r+") as ds:
        a = ds.read(1)
        a[:, :16] = -9999.0
        ds.write(a, 1)
    csv = geo.write_csv(tmp_path / "m.csv", [f.row])
    cache = ensure_chip_cache(csv, tmp_path / "c", ChipSettings(16, 16, 0.0), progress=False)
    assert sorted(int(c) for c in cache.windows[:, 2]) == [16, 16]
    assert all(np.isfinite(cache.images[i, 0]).any() for i in range(len(cache)))


def test_raster_smaller_than_a_chip_is_padded(geo, tmp_path):
    f = geo.make_fire(tmp_path / "l", "5", size=10)
    csv = geo.write_csv(tmp_path / "m.csv", [f.row])
    cache = ensure_chip_cache(csv, tmp_path / "c", ChipSettings(16, 8, 0.1), progress=False)
    assert len(cache) == 1
    img, lab = cache.images[0], cache.labels[0]
    assert np.isnan(img[:, 10:, :]).all() and np.isnan(img[:, :, 10:]).all()
    assert (lab[10:] == IGNORE).all() and (lab[:, 10:] == IGNORE).all()
    with AlignedRow(f.row) as r:
        image, label = r.read()
    np.testing.assert_array_equal(img[:, :10, :10], image)
    np.testing.assert_array_equal(lab[:10, :10], label)


def test_cache_is_reused_without_opening_a_geotiff(fires_csv, tmp_path, monkeypatch):
    csv, _ = fires_csv
    first = ensure_chip_cache(csv, tmp_path / "cache", S16, progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a GeoTIFF was opened")

    monkeypatch.setattr(raster_mod.rasterio, "open", refuse)
    second = ensure_chip_cache(csv, tmp_path / "cache", S16, progress=False)
    assert second.path == first.path
    np.testing.assert_array_equal(second.labels, first.labels)
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no temporary folder left


def test_cache_rebuilt_when_inputs_change(fires_csv, tmp_path, geo):
    csv, fires = fires_csv
    base, _ = cache_path(csv, tmp_path / "c", S16)
    ensure_chip_cache(csv, tmp_path / "c", S16, progress=False)
    # a raster rewritten (new mtime)
    dn = Path(fires[2].row["dnbr"])
    st = dn.stat()
    os.utime(dn, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    touched, _ = cache_path(csv, tmp_path / "c", S16)
    assert touched != base
    # chip settings
    other, _ = cache_path(csv, tmp_path / "c", ChipSettings(16, 8, 0.1))
    assert other not in (base, touched)
    # the CSV's content: one fire fewer gives a new, smaller cache
    geo.write_csv(csv, [f.row for f in fires[:5]])
    smaller = ensure_chip_cache(csv, tmp_path / "c", S16, progress=False)
    assert smaller.path not in (base, touched, other)
    assert len(smaller.fires) == 5


def test_rows_without_binary_product_are_counted(geo, tmp_path):
    a = geo.make_fire(tmp_path / "l", "1", size=32)
    b = geo.make_fire(tmp_path / "l", "2", size=32, label=False)
    csv = geo.write_csv(tmp_path / "m.csv", [a.row, b.row])
    cache = ensure_chip_cache(csv, tmp_path / "c", S16, progress=False)
    assert cache.fires == ["1"]
    assert [r["fire_id"] for r in cache.meta["no_label"]] == ["2"]


def _bad_rows(geo, tmp_path: Path) -> tuple[Path, list, dict[str, str]]:
    """A CSV whose rows 2..5 (lines 3..6) each hold one kind of bad raster."""
    layers = tmp_path / "l"
    fires = [geo.make_fire(layers, str(10 + i), size=32) for i in range(6)]
    bad: dict[str, str] = {}
    fires[1].row["dnbr"] = bad["missing"] = str(layers / "gone_DNBR.TIF")
    corrupt = layers / "corrupt.tif"
    corrupt.write_bytes(b"not a tiff at all" * 50)
    fires[2].row["coh_change"] = bad["corrupt"] = str(corrupt)
    from rasterio.transform import from_origin

    far = geo.write_tif(
        layers / "far.tif",
        np.zeros((8, 8), np.float32),
        geo.OTHER_CRS,
        from_origin(200_000, 5_500_000, 30, 30),
    )
    fires[3].row["dnbr"] = bad["non-overlapping"] = str(far)
    nocrs = geo.write_tif(
        layers / "nocrs.tif",
        np.zeros((8, 8), np.float32),
        None,
        from_origin(400_000, 4_000_000, 100, 100),
    )
    fires[4].row["binary_product"] = bad["crs-less"] = str(nocrs)
    return geo.write_csv(tmp_path / "match.csv", [f.row for f in fires]), fires, bad


@pytest.mark.parametrize(
    ("case", "line", "fire"),
    [
        ("missing", 3, "11"),
        ("corrupt", 4, "12"),
        ("non-overlapping", 5, "13"),
        ("crs-less", 6, "14"),
    ],
)
def test_bad_row_is_one_line_naming_file_and_row(geo, tmp_path, case, line, fire):
    csv, fires, bad = _bad_rows(geo, tmp_path)
    # keep only the good first row and the bad one under test, at the same line number
    rows = [f.row for f in fires]
    keep = [rows[0]] + [r if r["fire_id"] == fire else None for r in rows[1:]]
    good = geo.make_fire(tmp_path / "ok", "99", size=32).row
    csv = geo.write_csv(csv, [r if r is not None else good for r in keep])
    with pytest.raises(DataError) as exc:
        ensure_chip_cache(csv, tmp_path / "c", S16, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg
    assert bad[case] in msg and f"{csv} line {line} (fire {fire})" in msg, msg
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_on_bad_row_skip_counts_and_keeps_the_good_rows(geo, tmp_path, caplog):
    csv, fires, bad = _bad_rows(geo, tmp_path)
    settings = ChipSettings(16, 16, 0.1, on_bad_row="skip")
    with caplog.at_level("WARNING"):
        cache = ensure_chip_cache(csv, tmp_path / "c", settings, progress=False)
    assert cache.fires == ["10", "15"]
    assert [r["index"] for r in cache.meta["bad"]] == [1, 2, 3, 4]
    assert "skipped 4 bad rows" in caplog.text
    for reason, path in zip([r["reason"] for r in cache.meta["bad"]], bad.values(), strict=True):
        assert path in reason


def test_empty_csv_is_a_data_error(tmp_path):
    csv = tmp_path / "empty.csv"
    csv.write_text("")
    with pytest.raises(DataError, match="empty"):
        ensure_chip_cache(csv, tmp_path / "c", S16, progress=False)
    header_only = tmp_path / "header.csv"
    header_only.write_text("fire_id,lum_change,coh_change,dnbr,binary_product\n")
    with pytest.raises(DataError, match=str(header_only)):
        ensure_chip_cache(header_only, tmp_path / "c", S16, progress=False)


def test_abandoned_temporary_build_is_cleaned(fires_csv, tmp_path):
    import socket
    import subprocess
    import sys

    csv, _ = fires_csv
    path, _ = cache_path(csv, tmp_path / "c", S16)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = socket.gethostname().replace("-", "_").replace(".", "_") or "host"
    stale = path.with_name(f".{path.name}.{host}-{dead}-deadbeef.tmp")
    live = path.with_name(f".{path.name}.{host}-{os.getpid()}-cafecafe.tmp")
    stale.mkdir(parents=True)
    live.mkdir()
    ensure_chip_cache(csv, tmp_path / "c", S16, progress=False)
    assert not stale.exists() and live.exists()
