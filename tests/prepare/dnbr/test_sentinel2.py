"""dNBR from Sentinel-2 L2A SAFE products (true JPEG 2000) against an independent NumPy dNBR."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.data.layers import parse_layer
from firedpy_nrt.prepare.dnbr import find_scenes, process_events
from firedpy_nrt.prepare.dnbr.sentinel2 import parse_metadata, read_product

from .conftest import (
    BURN,
    CLOUD,
    FIRE_ID,
    S2_N20,
    s2_name,
    write_safe,
    zip_product,
)


def make_cfg(data_dir, **kw) -> DnbrConfig:
    cfg = DnbrConfig(scenes_dir=str(data_dir / "scenes"), output_dir=str(data_dir / "dnbr"))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def expected_dnbr(pre, post, scl_pre, scl_post, nir="B8A", res=20, offset=-1000):
    """NumPy dNBR from the reflectances the products were written from (DN rounding included)."""

    def nbr(refl, scl):
        dn = {b: np.clip(np.round(refl[(b, r)] * 1e4 - offset), 1, 65535) for b, r in
              ((nir, res), ("B12", 20))}  # fmt: skip
        n = (dn[nir] + offset) / 1e4
        s = (dn["B12"] + offset) / 1e4
        value = np.clip((n - s) / (n + s), -1, 1)
        value[np.isin(scl, [0, 1, 3, 8, 9, 10, 11])] = np.nan
        return value

    return (nbr(pre, scl_pre) - nbr(post, scl_post)).astype(np.float32)


def outputs(data_dir):
    return sorted(p.name for p in (data_dir / "dnbr").iterdir())


def test_dnbr_matches_numpy_mask_and_names(s2_fire, s2_scenes):
    cfg = make_cfg(s2_fire.data_dir)
    result = process_events([s2_fire.event], cfg)
    assert result.failed == []
    names = outputs(s2_fire.data_dir)
    dnbr_file = "S2B_L2A_T18SUJ_2282_20200507T180909_20200708T175921_20m_DNBR.TIF"
    mask_file = "S2B_L2A_T18SUJ_2282_20200507T180909_20200708T175921_20m_DNBR_MASK.TIF"
    assert names == [dnbr_file, mask_file]
    assert result.written == 2
    parsed = parse_layer(s2_fire.data_dir / "dnbr" / dnbr_file, "dnbr")
    assert parsed is not None and parsed.fire == FIRE_ID and parsed.res == "20m"

    with rasterio.open(s2_fire.data_dir / "dnbr" / dnbr_file) as ds:
        assert ds.driver == "GTiff" and ds.dtypes[0] == "float32"
        assert ds.crs.to_epsg() == 32618 and ds.res == (20.0, 20.0)
        assert ds.profile["tiled"] and ds.overviews(1) == [] or ds.profile["tiled"]
        assert ds.tags()["pre_product"] == s2_fire.pre_name
        got = ds.read(1)
    want = expected_dnbr(s2_fire.pre, s2_fire.post, s2_scenes["scl_pre"], s2_scenes["scl_post"])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=1e-6, equal_nan=True)
    # The cloud is NaN, the burn clearly positive, elsewhere about zero.
    assert np.isnan(got[CLOUD]).all()
    assert np.nanmin(got[BURN]) > 0.1
    outside = np.ones_like(got, bool)
    outside[BURN] = False
    assert np.nanmax(np.abs(got[outside])) < 1e-6

    with rasterio.open(s2_fire.data_dir / "dnbr" / mask_file) as ds:
        mask = ds.read(1)
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8"
    np.testing.assert_array_equal(
        mask, np.where(np.isnan(want), 255, (want >= 0.1).astype(np.uint8))
    )
    assert (mask[BURN] == 1).all() and (mask[CLOUD] == 255).all()


def test_output_is_a_cloud_optimized_geotiff(s2_fire):
    process_events([s2_fire.event], make_cfg(s2_fire.data_dir))
    path = next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert not list((s2_fire.data_dir / "dnbr").glob("*.tmp"))


def test_baselines_before_and_after_0400_give_the_same_dnbr(tmp_path, s2_scenes, s2_fire):
    """02.14 (no offset) and 05.10 (DN + 1000, BOA_ADD_OFFSET -1000) products of one scene."""
    old = tmp_path / "old"
    sentinel = old / "scenes" / FIRE_ID / "sentinel"
    write_safe(sentinel, s2_name("S2A", "20200507T180909", "02.14"), s2_scenes["pre"],
               s2_scenes["scl_pre"], baseline="02.14")  # fmt: skip
    write_safe(sentinel, s2_name("S2B", "20200708T175921", "02.14"), s2_scenes["post"],
               s2_scenes["scl_post"], baseline="02.14")  # fmt: skip
    # The DN really differ by 1000 between the two baselines.
    old_pre = sentinel / s2_name("S2A", "20200507T180909", "02.14")
    old_dn = rasterio.open(next(old_pre.rglob("*_B12_20m.jp2"))).read(1).astype(int)
    new_dn = rasterio.open(next(
        (s2_fire.data_dir / "scenes").rglob(f"{s2_fire.pre_name}/**/*_B12_20m.jp2"))
    ).read(1).astype(int)  # fmt: skip
    np.testing.assert_array_equal(new_dn - old_dn, 1000)

    assert process_events([s2_fire.event], make_cfg(old)).failed == []
    assert process_events([s2_fire.event], make_cfg(s2_fire.data_dir)).failed == []
    a = rasterio.open(next((old / "dnbr").glob("*_DNBR.TIF"))).read(1)
    b = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))).read(1)
    np.testing.assert_allclose(a, b, atol=1e-6, equal_nan=True)
    want = expected_dnbr(s2_fire.pre, s2_fire.post, s2_scenes["scl_pre"],
                         s2_scenes["scl_post"], offset=0)  # fmt: skip
    np.testing.assert_allclose(a, want, atol=1e-6, equal_nan=True)


def test_metadata_offsets_by_baseline(s2_fire):
    new = read_product(s2_fire.data_dir / "scenes" / FIRE_ID / "sentinel" / s2_fire.pre_name,
                       DnbrConfig().sentinel2)  # fmt: skip
    assert new.sensor == "S2A" and new.tile == "T18SUJ" and new.level == "L2A"
    assert new.band("nir").scale == pytest.approx(1e-4)
    assert new.band("nir").offset == pytest.approx(-0.1)
    old = parse_metadata(
        "<a><L2A_QUANTIFICATION_VALUES_LIST><L2A_BOA_QUANTIFICATION_VALUE>10000"
        "</L2A_BOA_QUANTIFICATION_VALUE></L2A_QUANTIFICATION_VALUES_LIST></a>",
        "X",
    )
    assert old.quantification == 10000 and old.offsets == {}


def test_scl_classes_are_a_config_key(s2_fire, s2_scenes):
    cfg = make_cfg(s2_fire.data_dir)
    cfg.sentinel2.scl_mask = [0]  # the cloud (class 9) now counts as clear
    assert process_events([s2_fire.event], cfg).failed == []
    got = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))).read(1)
    assert not np.isnan(got[CLOUD]).any()


def test_band_nodata_is_masked(tmp_path, s2_scenes, s2_fire):
    sentinel = s2_fire.data_dir / "scenes" / FIRE_ID / "sentinel"
    shutil.rmtree(sentinel / s2_fire.post_name)
    nod = (slice(0, 5), slice(0, S2_N20))
    write_safe(sentinel, s2_fire.post_name, s2_scenes["post"], s2_scenes["scl_post"], nodata=nod)
    assert process_events([s2_fire.event], make_cfg(s2_fire.data_dir)).failed == []
    got = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))).read(1)
    assert np.isnan(got[nod]).all() and not np.isnan(got[10:20, :]).all()


def test_zipped_safe_gives_the_same_result(tmp_path, s2_fire):
    process_events([s2_fire.event], make_cfg(s2_fire.data_dir))
    ref = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))).read(1)
    zipped = tmp_path / "zipped"
    sentinel = zipped / "scenes" / FIRE_ID / "sentinel"
    sentinel.mkdir(parents=True)
    for name in (s2_fire.pre_name, s2_fire.post_name):
        zip_product(s2_fire.data_dir / "scenes" / FIRE_ID / "sentinel" / name, sentinel)
    scenes, failures = find_scenes(zipped / "scenes" / FIRE_ID, "sentinel", make_cfg(zipped))
    assert failures == [] and len(scenes) == 2
    assert scenes[0].band("nir").path.startswith("/vsizip/")
    assert process_events([s2_fire.event], make_cfg(zipped)).failed == []
    got = rasterio.open(next((zipped / "dnbr").glob("*_DNBR.TIF"))).read(1)
    np.testing.assert_array_equal(got, ref)


def test_b08_at_10m_with_b12_resampled(s2_fire):
    cfg = make_cfg(s2_fire.data_dir)
    cfg.sentinel2.nir_band = "B08"
    assert process_events([s2_fire.event], cfg).failed == []
    (path,) = (s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF")
    assert "_10m_DNBR" in path.name
    with rasterio.open(path) as ds:
        assert ds.res == (10.0, 10.0) and ds.shape == (2 * S2_N20, 2 * S2_N20)
        got = ds.read(1)
    r, c = BURN
    inner = got[2 * r.start + 2 : 2 * r.stop - 2, 2 * c.start + 2 : 2 * c.stop - 2]
    assert np.nanmin(inner) > 0.1
    assert np.isnan(got[2 * CLOUD[0].start + 1 : 2 * CLOUD[0].stop - 1, 10:40]).all()


def test_coarser_resolution_averages_valid_pixels(s2_fire):
    cfg = make_cfg(s2_fire.data_dir)
    assert process_events([s2_fire.event], cfg).failed == []
    native = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_20m_DNBR.TIF"))).read(1)
    cfg.resolution = 80.0
    assert process_events([s2_fire.event], cfg).failed == []
    (path,) = (s2_fire.data_dir / "dnbr").glob("*_80m_DNBR.TIF")
    assert (s2_fire.data_dir / "dnbr" / path.name.replace("_DNBR", "_DNBR_MASK")).exists()
    with rasterio.open(path) as ds:
        assert ds.res == (80.0, 80.0) and ds.shape == (S2_N20 // 4, S2_N20 // 4)
        got = ds.read(1)
    blocks = native.reshape(S2_N20 // 4, 4, S2_N20 // 4, 4).swapaxes(1, 2).reshape(16, 16, 16)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmean(blocks, axis=2)
    np.testing.assert_allclose(got, want, atol=1e-5, equal_nan=True)


def test_rgb_quicklook_and_reflectance(s2_fire):
    cfg = make_cfg(s2_fire.data_dir)
    cfg.rgb.enabled = True
    cfg.rgb.scenes = ["pre", "post"]
    assert process_events([s2_fire.event], cfg).failed == []
    rgb = sorted((s2_fire.data_dir / "dnbr").glob("*_RGB.TIF"))
    assert [p.name for p in rgb] == [
        "S2A_L2A_T18SUJ_2282_20200507T180909_20m_RGB.TIF",
        "S2B_L2A_T18SUJ_2282_20200708T175921_20m_RGB.TIF",
    ]
    with rasterio.open(rgb[0]) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "uint8"
        q = ds.read()
    red = s2_fire.pre[("B04", 20)]
    dn = np.clip(np.round(red * 1e4 + 1000), 1, 65535)
    want = np.clip(((dn - 1000) / 1e4) / 0.3 * 254 + 1, 1, 255).astype(np.uint8)
    np.testing.assert_array_equal(q[0], want)
    for p in rgb:
        p.unlink()
    cfg.rgb.mode = "reflectance"
    assert process_events([s2_fire.event], cfg).failed == []
    with rasterio.open(sorted((s2_fire.data_dir / "dnbr").glob("*_RGB.TIF"))[0]) as ds:
        assert ds.dtypes[0] == "float32"
        np.testing.assert_allclose(ds.read(1), (dn - 1000) / 1e4, atol=1e-6)


def test_clip_to_buffered_polygon(s2_fire):
    cfg = make_cfg(s2_fire.data_dir, clip=True)
    cfg.pairing.buffer_m = 100.0
    assert process_events([s2_fire.event], cfg).failed == []
    got = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))).read(1)
    r, c = BURN
    assert not np.isnan(got[r, c]).any()
    assert np.isnan(got[: r.start - 6]).all() and np.isnan(got[:, c.stop + 6 :]).all()
    assert not np.isnan(got[r.start - 4, c.start + 1])  # inside the 100 m (5 pixel) buffer


def test_severity_classes(s2_fire, s2_scenes):
    cfg = make_cfg(s2_fire.data_dir, severity=True)
    assert process_events([s2_fire.event], cfg).failed == []
    (path,) = (s2_fire.data_dir / "dnbr").glob("*_DNBR_SEVERITY.TIF")
    sev = rasterio.open(path).read(1)
    d = rasterio.open(next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))).read(1)
    edges = [-0.25, -0.1, 0.1, 0.27, 0.44, 0.66]
    want = np.where(np.isnan(d), 255, np.searchsorted(edges, d, side="right") + 1)
    np.testing.assert_array_equal(sev, want)
    assert (sev[CLOUD] == 255).all() and set(np.unique(sev[BURN])) <= {4, 5, 6, 7}


def test_existing_outputs_are_kept_unless_overwrite(s2_fire):
    cfg = make_cfg(s2_fire.data_dir)
    process_events([s2_fire.event], cfg)
    path = next((s2_fire.data_dir / "dnbr").glob("*_DNBR.TIF"))
    before = path.stat().st_mtime_ns
    again = process_events([s2_fire.event], cfg)
    assert again.written == 0 and again.skipped == 2 and path.stat().st_mtime_ns == before
    forced = process_events([s2_fire.event], cfg, overwrite=True)
    assert forced.written == 2 and path.stat().st_mtime_ns != before


def test_archive_beside_its_folder_is_read_once(s2_fire):
    """download.keep_archives=true leaves X.zip beside X.SAFE: one scene, not two."""
    sentinel = s2_fire.data_dir / "scenes" / FIRE_ID / "sentinel"
    zip_product(sentinel / s2_fire.post_name, sentinel)
    scenes, failures = find_scenes(sentinel.parent, "sentinel", make_cfg(s2_fire.data_dir))
    assert failures == [] and sorted(s.product for s in scenes) == sorted(
        [s2_fire.pre_name, s2_fire.post_name]
    )
    assert all(not s.band("nir").path.startswith("/vsizip/") for s in scenes)
