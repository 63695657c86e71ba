"""dNBR from Landsat 8 C2 L2 products (folders and USGS .tar archives) on real Landsat 8 bands."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import rasterio
from shapely.geometry import box

from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.prepare.dnbr import find_scenes, process_events
from firedpy_nrt.prepare.dnbr.landsat import parse_mtl

from .conftest import (
    FIRE_ID,
    IG,
    L8_CRS,
    L8_N,
    L8_X0,
    L8_Y0,
    QA_CLEAR,
    FireEvent,
    l8_burned,
    l8_dn,
    tar_product,
    to_4326,
    write_landsat,
)

PRE_ID = "LC08_L2SP_021039_20200505_20200820_02_T1"
POST_ID = "LC08_L2SP_021039_20200708_20200820_02_T1"
BURN = (slice(8, 30), slice(10, 40))
CLOUD = (slice(40, 50), slice(5, 20))  # cloud bit 3
SHADOW = (slice(52, 56), slice(30, 50))  # cloud shadow bit 4


def landsat_fire(root, tar: bool = False):
    dn = l8_dn()
    post = l8_burned(dn, BURN)
    qa_pre = np.full((L8_N, L8_N), QA_CLEAR, np.uint16)
    qa_post = qa_pre.copy()
    qa_post[CLOUD] |= 1 << 3
    qa_post[SHADOW] |= 1 << 4
    qa_post[0, :] = 1  # fill row
    post[5][0, :] = 0
    post[7][0, :] = 0
    landsat = root / "scenes" / FIRE_ID / "landsat"
    a = write_landsat(landsat, PRE_ID, dt.datetime(2020, 5, 5, 16, 20, 31), dn, qa_pre)
    b = write_landsat(landsat, POST_ID, dt.datetime(2020, 7, 8, 16, 20, 44), post, qa_post)
    if tar:
        for folder in (a, b):
            tar_product(folder, landsat)
            shutil.rmtree(folder)
    r, c = BURN
    geom = box(L8_X0 + c.start * 30, L8_Y0 - r.stop * 30, L8_X0 + c.stop * 30, L8_Y0 - r.start * 30)
    event = FireEvent(FIRE_ID, IG, dt.date(2020, 6, 1), to_4326(geom, L8_CRS))
    return event, dn, post, qa_pre, qa_post


def expected(dn, post, qa_pre, qa_post):
    def nbr(d, qa):
        n = d[5] * 2.75e-5 - 0.2
        s = d[7] * 2.75e-5 - 0.2
        with np.errstate(all="ignore"):
            v = np.clip((n - s) / (n + s), -1, 1)
        v[~(n + s > 0)] = np.nan
        v[(d[5] == 0) | (d[7] == 0)] = np.nan
        v[(qa & 0b111111) != 0] = np.nan
        return v

    return (nbr(dn, qa_pre) - nbr(post, qa_post)).astype(np.float32)


def cfg_for(root) -> DnbrConfig:
    return DnbrConfig(scenes_dir=str(root / "scenes"), output_dir=str(root / "dnbr"))


def test_landsat_dnbr_matches_numpy(tmp_path):
    event, dn, post, qa_pre, qa_post = landsat_fire(tmp_path)
    result = process_events([event], cfg_for(tmp_path), satellite="landsat")
    assert result.failed == []
    name = "LC08_L2SP_P021R039_2282_20200505T162031_20200708T162044_30m_DNBR.TIF"
    assert sorted(p.name for p in (tmp_path / "dnbr").iterdir()) == [
        name,
        name.replace("_DNBR", "_DNBR_MASK"),
    ]
    with rasterio.open(tmp_path / "dnbr" / name) as ds:
        assert ds.res == (30.0, 30.0) and ds.crs.to_epsg() == 32616
        got = ds.read(1)
    want = expected(dn, post, qa_pre, qa_post)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=1e-5, equal_nan=True)
    assert np.isnan(got[CLOUD]).all() and np.isnan(got[SHADOW]).all() and np.isnan(got[0]).all()
    assert np.nanmedian(got[BURN]) > 0.1


def test_landsat_tar_archives_read_in_place(tmp_path):
    folder_root, tar_root = tmp_path / "folder", tmp_path / "tar"
    event, *_ = landsat_fire(folder_root)
    landsat_fire(tar_root, tar=True)
    scenes, failures = find_scenes(tar_root / "scenes" / FIRE_ID, "landsat", cfg_for(tar_root))
    assert failures == [] and [s.band("nir").path[:8] for s in scenes] == ["/vsitar/"] * 2
    assert not any(p.is_dir() for p in (tar_root / "scenes" / FIRE_ID / "landsat").iterdir())
    for root in (folder_root, tar_root):
        assert process_events([event], cfg_for(root), satellite="landsat").failed == []
    a = rasterio.open(next((folder_root / "dnbr").glob("*_DNBR.TIF"))).read(1)
    b = rasterio.open(next((tar_root / "dnbr").glob("*_DNBR.TIF"))).read(1)
    np.testing.assert_array_equal(a, b)


def test_qa_bits_are_a_config_key(tmp_path):
    event, *_ = landsat_fire(tmp_path)
    cfg = cfg_for(tmp_path)
    cfg.landsat.qa_mask_bits = [0, 4]  # clouds now count as clear, shadow still masked
    assert process_events([event], cfg, satellite="landsat").failed == []
    got = rasterio.open(next((tmp_path / "dnbr").glob("*_DNBR.TIF"))).read(1)
    assert not np.isnan(got[CLOUD]).any() and np.isnan(got[SHADOW]).all()


def test_mtl_sr_group_not_level1_factors():
    text = (
        "GROUP = LANDSAT_METADATA_FILE\n  GROUP = LEVEL1_RADIOMETRIC_RESCALING\n"
        "    REFLECTANCE_MULT_BAND_5 = 2.0000E-05\n  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING\n"
        "  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS\n    REFLECTANCE_MULT_BAND_5 = 2.75E-05\n"
        "  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS\nEND_GROUP = LANDSAT_METADATA_FILE\n"
    )
    mtl = parse_mtl(text, "X")
    assert mtl["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS/REFLECTANCE_MULT_BAND_5"] == "2.75E-05"
    assert mtl["LEVEL1_RADIOMETRIC_RESCALING/REFLECTANCE_MULT_BAND_5"] == "2.0000E-05"


def test_post_on_a_shifted_grid_is_warped_onto_pre(tmp_path):
    """Scenes of one path/row differ in extent: post shifted by whole pixels, read via WarpedVRT."""
    event, dn, post, qa_pre, qa_post = landsat_fire(tmp_path)
    landsat = tmp_path / "scenes" / FIRE_ID / "landsat"
    shutil.rmtree(landsat / POST_ID)
    # Same content, grid origin 3 pixels east / 2 south: pixel (r, c) of post is (r + 2, c + 3) of pre.
    shifted = {k: np.zeros_like(v) for k, v in post.items()}
    for k in shifted:
        shifted[k][:-2, :-3] = post[k][2:, 3:]
    qa_shift = np.ones_like(qa_post)
    qa_shift[:-2, :-3] = qa_post[2:, 3:]
    write_landsat(landsat, POST_ID, dt.datetime(2020, 7, 8, 16, 20, 44), shifted, qa_shift,
                  x0=L8_X0 + 90, y0=L8_Y0 - 60)  # fmt: skip
    assert process_events([event], cfg_for(tmp_path), satellite="landsat").failed == []
    got = rasterio.open(next((tmp_path / "dnbr").glob("*_DNBR.TIF"))).read(1)
    want = expected(dn, post, qa_pre, qa_post)
    np.testing.assert_allclose(got[2:-2, 3:-3], want[2:-2, 3:-3], atol=1e-5, equal_nan=True)
    assert np.isnan(got[:2]).all()  # outside the post scene


def test_landsat_rgb_and_coarser_resolution(tmp_path):
    event, dn, *_ = landsat_fire(tmp_path)
    cfg = cfg_for(tmp_path)
    cfg.resolution = 90.0
    cfg.rgb.enabled = True
    cfg.rgb.mode = "reflectance"
    assert process_events([event], cfg, satellite="landsat").failed == []
    names = sorted(p.name for p in (tmp_path / "dnbr").iterdir())
    assert names == [
        "LC08_L2SP_P021R039_2282_20200505T162031_20200708T162044_90m_DNBR.TIF",
        "LC08_L2SP_P021R039_2282_20200505T162031_20200708T162044_90m_DNBR_MASK.TIF",
        "LC08_L2SP_P021R039_2282_20200708T162044_90m_RGB.TIF",
    ]
    with rasterio.open(tmp_path / "dnbr" / names[2]) as ds:
        assert ds.res == (90.0, 90.0) and ds.count == 3
        red = ds.read(1)
    with rasterio.open(tmp_path / "dnbr" / names[0]) as ds:
        assert ds.shape == (22, 22)  # 64 pixels of 30 m -> ceil(1920 / 90)
    # Post red is unchanged by the burn: 3 x 3 means of SR_B4 reflectance (full blocks only),
    # to within half a DN (GDAL averages the integer DN and rounds).
    refl = dn[4][:63, :63] * 2.75e-5 - 0.2
    want = refl.reshape(21, 3, 21, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(red[:21, :21], want, atol=0.5 * 2.75e-5 + 1e-7)
