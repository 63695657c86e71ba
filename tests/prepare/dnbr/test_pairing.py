"""Pair selection (date windows, tile, most valid pixels over the polygon) and the error cases."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest
import rasterio

from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr import find_scenes, process_events
from firedpy_nrt.prepare.dnbr.compute import process_pair
from firedpy_nrt.prepare.dnbr.pairing import Pair, candidates, choose

from .conftest import (
    BURN,
    FIRE_ID,
    S2_X0,
    SCL_HIGH_CLOUD,
    FireEvent,
    s2_name,
    write_safe,
)


def cfg_for(root, **pairing) -> DnbrConfig:
    cfg = DnbrConfig(scenes_dir=str(root / "scenes"), output_dir=str(root / "dnbr"))
    for k, v in pairing.items():
        setattr(cfg.pairing, k, v)
    return cfg


def sentinel_dir(fire):
    return fire.data_dir / "scenes" / FIRE_ID / "sentinel"


def add_cloudy_post(fire, s2_scenes, when="20200620T175919", cover=BURN):
    """An earlier post scene whose cloud covers ``cover`` (the burn by default)."""
    scl = s2_scenes["scl_pre"].copy()
    scl[cover] = SCL_HIGH_CLOUD
    name = s2_name("S2A", when, "05.10")
    write_safe(sentinel_dir(fire), name, s2_scenes["post"], scl)
    return name


def test_best_pair_is_the_clearest_not_the_closest(s2_fire, s2_scenes):
    add_cloudy_post(s2_fire, s2_scenes)
    cfg = cfg_for(s2_fire.data_dir)
    scenes, _ = find_scenes(sentinel_dir(s2_fire).parent, "sentinel", cfg)
    pairs = candidates(s2_fire.event, scenes, cfg.pairing)
    assert [p[1].acquired.date() for p in pairs] == [dt.date(2020, 6, 20), dt.date(2020, 7, 8)]
    chosen, failures = choose(s2_fire.event, scenes, cfg.pairing)
    assert failures == [] and len(chosen) == 1
    assert chosen[0].post.product == s2_fire.post_name and chosen[0].valid_pixels > 0
    result = process_events([s2_fire.event], cfg)
    assert result.failed == [] and result.written == 2
    assert all("20200708T175921" in p.name for p in (s2_fire.data_dir / "dnbr").iterdir())


def test_mode_all_writes_every_pair_and_reports_empty_ones(s2_fire, s2_scenes):
    add_cloudy_post(s2_fire, s2_scenes)  # no valid pixel over the polygon: reported, skipped
    add_cloudy_post(s2_fire, s2_scenes, "20200625T175919", cover=(slice(10, 25), BURN[1]))
    cfg = cfg_for(s2_fire.data_dir, mode="all", buffer_m=0.0)
    result = process_events([s2_fire.event], cfg)
    assert len(result.failed) == 1 and "20200620T175919" in result.failed[0]
    assert "share no valid pixel" in result.failed[0]
    dnbr = sorted(p.name for p in (s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))
    assert len(dnbr) == 2 and "20200625T175919" in dnbr[0] and "20200708T175921" in dnbr[1]


def test_date_windows_and_tiles(s2_fire, s2_scenes):
    # Too early for a 30-day pre window, and a post scene of another tile: neither pairs.
    write_safe(sentinel_dir(s2_fire), s2_name("S2A", "20200301T180909", "05.10"),
               s2_scenes["pre"], s2_scenes["scl_pre"])  # fmt: skip
    write_safe(sentinel_dir(s2_fire), s2_name("S2A", "20200610T180909", "05.10", "T18SUK"),
               s2_scenes["post"], s2_scenes["scl_post"])  # fmt: skip
    cfg = cfg_for(s2_fire.data_dir, pre_days=30)
    scenes, _ = find_scenes(sentinel_dir(s2_fire).parent, "sentinel", cfg)
    assert len(scenes) == 4
    pairs = candidates(s2_fire.event, scenes, cfg.pairing)
    assert [(a.product, b.product) for a, b in pairs] == [(s2_fire.pre_name, s2_fire.post_name)]
    late = FireEvent(FIRE_ID, dt.date(2020, 7, 1), dt.date(2020, 7, 20), s2_fire.event.geometry)
    assert candidates(late, scenes, cfg.pairing) == []
    _, failures = choose(late, scenes, cfg.pairing)
    assert "no pre-fire" in failures[0]


def test_missing_band_names_the_product_and_others_go_on(s2_fire, s2_scenes):
    broken = add_cloudy_post(s2_fire, s2_scenes, cover=(slice(0, 2), slice(0, 2)))
    next((sentinel_dir(s2_fire) / broken).rglob("*_B12_20m.jp2")).unlink()
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir, mode="all"))
    assert result.failed == [f"{broken.removesuffix('.SAFE')}.SAFE: band B12 at 20 m is missing"]
    assert result.written == 2  # the good pair


def test_corrupt_jpeg2000_fails_its_pair_only(s2_fire, s2_scenes):
    corrupt = add_cloudy_post(s2_fire, s2_scenes, cover=(slice(0, 2), slice(0, 2)))
    jp2 = next((sentinel_dir(s2_fire) / corrupt).rglob("*_B12_20m.jp2"))
    jp2.write_bytes(jp2.read_bytes()[:300])  # truncated codestream
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir, mode="all"))
    assert len(result.failed) == 1 and corrupt in result.failed[0]
    assert "\n" not in result.failed[0]
    assert result.written == 2
    assert not list((s2_fire.data_dir / "dnbr").glob("*tmp"))
    assert all("20200620" not in p.name for p in (s2_fire.data_dir / "dnbr").iterdir())


def test_product_without_metadata(s2_fire):
    (sentinel_dir(s2_fire) / s2_fire.post_name / "MTD_MSIL2A.xml").unlink()
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir))
    assert (
        result.failed[0]
        == f"{s2_fire.post_name}: no MTD_MSIL2A.xml (not a Sentinel-2 L2A product?)"
    )
    assert result.written == 0 and not list((s2_fire.data_dir / "dnbr").iterdir())


def test_scenes_sharing_no_pixels(s2_fire, s2_scenes):
    far = s2_name("S2B", "20200630T175921", "05.10")
    write_safe(sentinel_dir(s2_fire), far, s2_scenes["post"], s2_scenes["scl_post"],
               x0=S2_X0 + 50_000)  # fmt: skip
    cfg = cfg_for(s2_fire.data_dir, mode="all")
    result = process_events([s2_fire.event], cfg)
    assert any(far in m and "share no valid pixel" in m for m in result.failed)
    scenes, _ = find_scenes(sentinel_dir(s2_fire).parent, "sentinel", cfg)
    pre = next(s for s in scenes if s.product == s2_fire.pre_name)
    post = next(s for s in scenes if s.product == far)
    with pytest.raises(DataError, match="share no pixels"):
        process_pair(Pair(pre, post, 0), s2_fire.event, cfg, s2_fire.data_dir / "x")


def test_no_scenes_for_an_event(tmp_path):
    event = FireEvent("77", dt.date(2020, 1, 1), dt.date(2020, 1, 5), None)
    result = process_events([event], cfg_for(tmp_path))
    assert result.failed == [f"fire 77: no sentinel scenes under {tmp_path / 'scenes' / '77'}"]


def test_pre_fire_burn_mask_values(s2_fire):
    """Masks stay uint8 0/1/255 even with a threshold no pixel reaches."""
    cfg = cfg_for(s2_fire.data_dir)
    cfg.threshold = 1.9
    assert process_events([s2_fire.event], cfg).failed == []
    mask = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_MASK.TIF"))).read(1)
    assert set(np.unique(mask)) == {0, 255}


def test_malformed_metadata_value(s2_fire):
    mtd = sentinel_dir(s2_fire) / s2_fire.pre_name / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text().replace(">10000<", ">ten thousand<", 1))
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir))
    assert result.failed[0].startswith(f"{s2_fire.pre_name}: MTD_MSIL2A.xml has a malformed value")


def test_best_pair_only_over_a_cloudy_polygon_names_the_products(s2_fire, s2_scenes):
    sentinel = sentinel_dir(s2_fire)
    shutil.rmtree(sentinel / s2_fire.post_name)
    cloudy = add_cloudy_post(s2_fire, s2_scenes)
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir, buffer_m=0.0))
    assert len(result.failed) == 1
    assert s2_fire.pre_name in result.failed[0] and cloudy in result.failed[0]


def test_both_satellites_pair_within_each_sensor(s2_fire, s2_scenes):
    """Landsat scenes in the same fire folder never pair with Sentinel-2; the S2 pair wins here
    because the Landsat scenes lie elsewhere (no valid area over the polygon)."""
    from .test_landsat import landsat_fire

    landsat_fire(s2_fire.data_dir)
    cfg = cfg_for(s2_fire.data_dir)
    scenes, failures = find_scenes(sentinel_dir(s2_fire).parent, "both", cfg)
    assert failures == [] and len(scenes) == 4
    pairs = candidates(s2_fire.event, scenes, cfg.pairing)
    assert {(a.family, b.family) for a, b in pairs} == {
        ("sentinel2", "sentinel2"),
        ("landsat", "landsat"),
    }
    result = process_events([s2_fire.event], cfg, satellite="both")
    assert result.failed == [] and result.written == 2
    assert all(p.name.startswith("S2B_") for p in (s2_fire.data_dir / "dnbr").iterdir())
    only_landsat = process_events([s2_fire.event], cfg, satellite="landsat")
    assert "no pre/post pair shares a valid pixel" in only_landsat.failed[0]


def test_band_without_crs_is_one_line(s2_fire):
    scl = next((sentinel_dir(s2_fire) / s2_fire.pre_name).rglob("*_SCL_20m.jp2"))
    data = rasterio.open(scl).read(1)
    scl.unlink()
    with rasterio.open(scl, "w", driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint8", QUALITY=100, REVERSIBLE="YES") as dst:  # fmt: skip
        dst.write(data, 1)
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir))
    assert result.failed == [f"{s2_fire.pre_name}: {scl.name} has no CRS"]


def test_corrupt_tile_inside_a_jpeg2000_is_an_error_not_nodata(s2_fire):
    """A JPEG 2000 whose header is fine but whose later tiles are cut off: GDAL's threaded decoder
    would hand back zeros (silent nodata); the stage reads single-threaded and reports it."""
    jp2 = next((sentinel_dir(s2_fire) / s2_fire.post_name).rglob("*_B12_20m.jp2"))
    with rasterio.open(jp2) as src:
        data, profile = src.read(1), src.profile
    jp2.unlink()
    profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES", BLOCKXSIZE=32,
                   BLOCKYSIZE=32)  # fmt: skip
    with rasterio.open(jp2, "w", **profile) as dst:
        dst.write(data, 1)
    jp2.write_bytes(jp2.read_bytes()[: int(jp2.stat().st_size * 0.6)])
    result = process_events([s2_fire.event], cfg_for(s2_fire.data_dir))
    assert len(result.failed) == 1
    assert result.failed[0].startswith(f"{s2_fire.post_name}: cannot read {jp2.name}")
    assert result.written == 0
