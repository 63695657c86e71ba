"""Aligned reads of one match row: grid, alignment across CRS/resolution, nodata, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from firedpy_nrt.data.raster import CHANNELS, IGNORE, AlignedRow, row_context
from firedpy_nrt.errors import DataError


def test_reference_grid_and_shapes(fire, geo):
    with AlignedRow(fire.row) as r:
        assert r.crs.to_string() == geo.REF_CRS
        assert (r.height, r.width) == (fire.size, fire.size)
        assert r.res == (100.0, 100.0)
        assert r.profile["count"] == len(CHANNELS) and r.profile["dtype"] == "float32"
        image, label = r.read()
    assert image.shape == (3, fire.size, fire.size) and image.dtype == np.float32
    assert label.shape == (fire.size, fire.size) and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1, IGNORE}


def test_dnbr_in_other_zone_and_resolution_lands_on_the_burned_disk(fire, geo):
    with AlignedRow(fire.row) as r:
        image, _ = r.read()
        xs, ys = geo.grid_xy(r.transform, r.height, r.width)
    d = np.hypot(xs - fire.centre[0], ys - fire.centre[1])
    dnbr = image[2]
    inside = (d < fire.radius - 150) & np.isfinite(dnbr)
    outside = (d > fire.radius + 150) & np.isfinite(dnbr)
    assert inside.sum() > 20 and outside.sum() > 100
    np.testing.assert_allclose(dnbr[inside], 0.5, atol=1e-3)
    np.testing.assert_allclose(dnbr[outside], 0.0, atol=1e-3)
    # the centroid of the burned dNBR pixels sits on the known centre to within half a pixel
    burned = np.nan_to_num(dnbr) > 0.25
    cx, cy = xs[burned].mean(), ys[burned].mean()
    assert abs(cx - fire.centre[0]) < 50 and abs(cy - fire.centre[1]) < 50


def test_nodata_becomes_nan_and_ignore(fire):
    with AlignedRow(fire.row) as r:
        image, label = r.read()
        lum_ds_nodata = rasterio.open(fire.row["lum_change"]).nodata
    assert lum_ds_nodata == -9999.0
    # SAR border: luminance change nodata -> NaN in the image, ignore in the label
    assert np.isnan(image[0][:, -3:]).all()
    assert (label[:, -3:] == IGNORE).all()
    assert np.isfinite(image[0][:, :-3]).all()
    # label nodata stripe -> ignore, never unburned
    assert (label[: fire.size // 8] == IGNORE).all()
    # the dNBR cloud is NaN in the image but the label there is still a label
    cloud = np.isnan(image[2])
    assert cloud.sum() > 20
    assert np.isin(label[cloud & np.isfinite(image[0])], [0, 1]).all()
    # burned pixels inside the map and outside the stripe are labelled 1
    assert (label == 1).sum() > 50


def test_bilinear_never_blends_a_nodata_value(tmp_path, geo):
    f = geo.make_fire(tmp_path, "7")
    # coherence change at 30 m with a declared nodata value inside the grid
    t = from_origin(400_000 - 100, 4_000_000 + 100, 30.0, 30.0)
    coh = np.full((150, 150), 0.2, np.float32)
    coh[40:80, 40:80] = -9999.0
    f.row["coh_change"] = str(
        geo.write_tif(tmp_path / "coh.tif", coh, geo.REF_CRS, t, nodata=-9999.0)
    )
    with AlignedRow(f.row) as r:
        image, _ = r.read()
    values = image[1][np.isfinite(image[1])]
    assert np.isnan(image[1]).sum() >= 100  # the hole is there...
    np.testing.assert_allclose(values, 0.2, atol=1e-6)  # ...and nothing around it is blended


def test_window_past_the_edge_is_padded(fire):
    with AlignedRow(fire.row) as r:
        full_img, full_lab = r.read()
        image, label = r.read((fire.size - 10, fire.size - 20, 32, 32))
    assert image.shape == (3, 32, 32)
    np.testing.assert_array_equal(image[:, :10, :20], full_img[:, -10:, -20:])
    assert np.isnan(image[:, 10:]).all() and np.isnan(image[:, :, 20:]).all()
    assert (label[10:] == IGNORE).all() and (label[:, 20:] == IGNORE).all()
    np.testing.assert_array_equal(label[:10, :20], full_lab[-10:, -20:])


def test_row_without_binary_product_has_no_label(tmp_path, geo):
    f = geo.make_fire(tmp_path, "9", label=False)
    with AlignedRow(f.row) as r:
        assert not r.has_label
        image, label = r.read((0, 0, 8, 8))
    assert label is None and image.shape == (3, 8, 8)


def _expect_one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("layer", ["lum_change", "coh_change", "dnbr", "binary_product"])
def test_missing_raster(fire, layer):
    fire.row[layer] = fire.row[layer] + ".gone"
    ctx = row_context("m.csv", 4, fire.fire_id)
    with pytest.raises(DataError) as exc:
        AlignedRow(fire.row, context=ctx)
    _expect_one_line(exc, fire.row[layer], "m.csv line 6 (fire 2282)", layer, "not found")


def test_corrupt_raster(fire):
    Path(fire.row["dnbr"]).write_bytes(b"II*\x00 this is not a tiff" * 10)
    with pytest.raises(DataError) as exc:
        AlignedRow(fire.row, context="x.csv line 2 (fire 2282)")
    _expect_one_line(exc, fire.row["dnbr"], "x.csv line 2", "cannot be read")


def test_truncated_raster_fails_on_read(fire, tmp_path, geo):
    big = np.random.default_rng(0).normal(size=(400, 400)).astype(np.float32)
    p = geo.write_tif(
        tmp_path / "trunc.tif", big, geo.REF_CRS, from_origin(399_000, 4_001_000, 20, 20)
    )
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    fire.row["coh_change"] = str(p)
    with (
        pytest.raises(DataError) as exc,
        AlignedRow(fire.row, context="c.csv line 9 (fire 2282)") as r,
    ):
        r.read()
    _expect_one_line(exc, str(p), "c.csv line 9")


def test_non_overlapping_raster(fire, tmp_path, geo):
    far = geo.write_tif(
        tmp_path / "far.tif",
        np.zeros((10, 10), np.float32),
        geo.OTHER_CRS,
        from_origin(300_000, 5_000_000, 30, 30),
    )
    fire.row["dnbr"] = str(far)
    with pytest.raises(DataError) as exc:
        AlignedRow(fire.row, context="ctx")
    _expect_one_line(exc, str(far), "does not overlap")


def test_crs_less_raster(fire, tmp_path, geo):
    p = geo.write_tif(
        tmp_path / "nocrs.tif",
        np.zeros((10, 10), np.float32),
        None,
        from_origin(400_000, 4_000_000, 100, 100),
    )
    fire.row["lum_change"] = str(p)
    with pytest.raises(DataError) as exc:
        AlignedRow(fire.row, context="ctx")
    _expect_one_line(exc, str(p), "no CRS")


@pytest.mark.parametrize("nodata", [None, 255])
def test_outside_a_smaller_label_raster_is_ignore_not_unburned(geo, tmp_path, nodata):
    f = geo.make_fire(tmp_path / "l", "8", size=40)
    # label covering only the left half of the grid, integer, with or without nodata
    lab = np.zeros((40, 20), np.uint8)
    lab[10:20, 5:15] = 1
    p = geo.write_tif(
        tmp_path / "half.tif", lab, geo.REF_CRS, from_origin(400_000, 4_000_000, 100, 100), nodata
    )
    f.row["binary_product"] = str(p)
    with AlignedRow(f.row) as r:
        _, label = r.read()
    assert (label[:, 20:] == IGNORE).all()
    assert (label[10:20, 5:15] == 1).all()
    assert (label[20:, :20] == 0).all()


def test_dnbr_in_geographic_degrees_is_aligned(fire, geo, tmp_path):
    from rasterio.warp import transform_bounds

    # the same disk written in EPSG:4326 at about 10 m
    left, bottom, right, top = transform_bounds(
        geo.REF_CRS, "EPSG:4326", 399_000, 3_995_000, 405_000, 4_001_000
    )
    w, h = 600, 600
    t = from_origin(left, top, (right - left) / w, (top - bottom) / h)
    xs, ys = geo.grid_xy(t, h, w)
    from rasterio.warp import transform as warp_points

    rx, ry = warp_points("EPSG:4326", geo.REF_CRS, xs.ravel(), ys.ravel())
    d = np.hypot(
        np.reshape(rx, xs.shape) - fire.centre[0], np.reshape(ry, ys.shape) - fire.centre[1]
    )
    dn = np.where(d <= fire.radius, 0.5, 0.0).astype(np.float32)
    fire.row["dnbr"] = str(geo.write_tif(tmp_path / "deg.tif", dn, "EPSG:4326", t))
    with AlignedRow(fire.row) as r:
        image, _ = r.read()
        gx, gy = geo.grid_xy(r.transform, r.height, r.width)
    dist = np.hypot(gx - fire.centre[0], gy - fire.centre[1])
    assert (image[2][dist < fire.radius - 150] > 0.45).all()
    assert (image[2][dist > fire.radius + 150] < 0.05).all()


def _noise_tif(geo, path, crs, transform, n, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 1, (n, n)).astype(np.float32)
    data[: n // 10, : n // 7] = np.nan  # a nodata corner
    return geo.write_tif(path, data, crs, transform)


@pytest.mark.parametrize(("size", "chips"), [(333, ((64, 64), (96, 48))), (768, ((256, 256),)),
                                            (1024, ((256, 256), (128, 200)))])  # fmt: skip
def test_reads_do_not_depend_on_the_window(tmp_path, geo, size, chips):
    """The same pixel has the same value whatever window reads it (chips at several strides,
    full-width strips as the chip cache reads, the whole raster), for layers on another CRS and
    resolution, bilinear and nearest alike (GDAL's approximate reprojection made a third of a
    warped layer's pixels differ by up to 0.015 between windows of a 20 km scene)."""
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds

    x0, y0, res = 400_000.0, 4_000_000.0, 20.0
    lum = np.random.default_rng(1).normal(0, 1, (size, size)).astype(np.float32)
    lum_path = geo.write_tif(tmp_path / "1_20200508_20200520_DeltaLumin_20m.tif", lum,
                             geo.REF_CRS, from_origin(x0, y0, res, res))  # fmt: skip
    # coherence: same CRS, 40 m, shifted; dNBR: the neighbouring UTM zone at 30 m
    coh_t = from_origin(x0 - 200, y0 + 190, 40.0, 40.0)
    coh_path = _noise_tif(geo, tmp_path / "coh.tif", geo.REF_CRS, coh_t, size // 2 + 12, 2)
    left, bottom, right, top = transform_bounds(
        geo.REF_CRS, geo.OTHER_CRS, x0, y0 - size * res, x0 + size * res, y0
    )
    n = int(max(right - left, top - bottom) / 30) + 24
    dnbr_path = _noise_tif(geo, tmp_path / "dnbr.tif", geo.OTHER_CRS,
                           from_origin(left - 300, top + 300, 30.0, 30.0), n, 3)  # fmt: skip
    label = (np.random.default_rng(4).random((size // 3, size // 3)) > 0.5).astype(np.uint8)
    bin_path = geo.write_tif(tmp_path / "bin.tif", label, geo.OTHER_CRS,
                             from_origin(left, top, 60.0, 60.0), nodata=255)  # fmt: skip
    row = {"fire_id": "1", "lum_change": str(lum_path), "coh_change": str(coh_path),
           "dnbr": str(dnbr_path), "binary_product": str(bin_path)}  # fmt: skip

    def same(a, b, where):
        np.testing.assert_array_equal(a, b, err_msg=where)

    with AlignedRow(row) as r:
        whole, whole_label = r.read()
        assert np.isfinite(whole[1]).mean() > 0.5 and np.isfinite(whole[2]).mean() > 0.5
        for chip, stride in chips:
            for r0 in range(0, size, stride):
                strip, _ = r.read((r0, 0, chip, size))
                h = min(chip, size - r0)
                same(strip[:, :h], whole[:, r0 : r0 + h], f"strip {chip} at row {r0}")
                for c0 in range(0, size, stride):
                    image, lab = r.read((r0, c0, chip, chip))
                    w = min(chip, size - c0)
                    where = f"chip {chip} stride {stride} at ({r0}, {c0})"
                    same(image[:, :h, :w], whole[:, r0 : r0 + h, c0 : c0 + w], where)
                    same(lab[:h, :w], whole_label[r0 : r0 + h, c0 : c0 + w], where)


@pytest.mark.parametrize(
    ("kind", "threshold"),
    [("filled_0.01", 0.5), ("zero_one", 0.5), ("zero_255_nodata", 0.5), ("fraction", 0.3)],
)
def test_labels_are_burned_at_or_above_the_label_threshold(geo, tmp_path, kind, threshold):
    """As real products write them: the original pipeline fills a raster with 0.01 when fewer
    than 30 pixels burned (``> 0`` read it as all burned); 0/1 products; 0/1 with 255 nodata;
    a burned fraction thresholded at another value. NaN and nodata stay ignored."""
    from rasterio.transform import from_origin

    f = geo.make_fire(tmp_path / "l", "12", size=40)
    t = from_origin(400_000, 4_000_000, 100, 100)
    if kind == "filled_0.01":
        raw, nodata = np.full((40, 40), 0.01, np.float32), None
        raw[:5] = np.nan
        expected = np.zeros((40, 40), np.uint8)
        expected[:5] = IGNORE
    elif kind == "zero_one":
        raw, nodata = np.zeros((40, 40), np.uint8), None
        raw[10:20, 10:20] = 1
        expected = raw.copy()
    elif kind == "zero_255_nodata":
        raw, nodata = np.zeros((40, 40), np.uint8), 255
        raw[10:20, 10:20] = 1
        raw[30:, :] = 255
        expected = raw.copy()
        expected[30:, :] = IGNORE
    else:
        raw, nodata = np.linspace(0, 1, 1600, dtype=np.float32).reshape(40, 40), None
        expected = (raw >= np.float32(threshold)).astype(np.uint8)
    f.row["binary_product"] = str(geo.write_tif(tmp_path / "bin.tif", raw, geo.REF_CRS, t, nodata))
    with AlignedRow(f.row, label_threshold=threshold) as r:
        lum, label = r.read_label()
    expected = expected.copy()
    expected[np.isnan(lum)] = IGNORE  # outside the luminance change: not a label either
    np.testing.assert_array_equal(label, expected)


def test_label_threshold_is_a_validated_data_key():
    from omegaconf import OmegaConf

    from firedpy_nrt.config import validate
    from firedpy_nrt.config.data import DataConfig
    from firedpy_nrt.errors import ConfigError

    base = {"match_csv": "m.csv", "cache_dir": "c"}
    assert validate(OmegaConf.create(base), DataConfig).label_threshold == 0.5
    with pytest.raises(ConfigError, match="config key 'label_threshold': must be > 0"):
        validate(OmegaConf.create({**base, "label_threshold": 0}), DataConfig)
