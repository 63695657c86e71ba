"""Token lifetime, the OData filter, product parsing and selection, DHuS query building."""

from __future__ import annotations

import datetime as dt

import pytest
from shapely.geometry import MultiPoint, Polygon

from firedpy_nrt.config.download import CdseConfig, DownloadConfig
from firedpy_nrt.errors import CredentialsError, DownloadError
from firedpy_nrt.prepare.download.cdse import (
    TokenSource,
    parse_product,
    product_filter,
    search_outline,
)
from firedpy_nrt.prepare.download.credentials import Credentials
from firedpy_nrt.prepare.download.product import Product, select
from firedpy_nrt.prepare.download.retry import RetryPolicy, retry_after_seconds
from firedpy_nrt.prepare.events import FireEvent

FIRE = FireEvent(
    "9844",
    dt.date(2020, 5, 7),
    dt.date(2020, 5, 20),
    Polygon([(-111.7, 35.2), (-111.6, 35.2), (-111.6, 35.28), (-111.7, 35.28)]),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tokens(cdse, clock, **cfg):
    config = CdseConfig(token_url=cdse.config()["cdse"]["token_url"], **cfg)
    creds = Credentials(cdse.username, cdse.password)
    return TokenSource(config, creds, RetryPolicy(retries=1, backoff_s=0.01), (5, 5), clock)


@pytest.mark.network
def test_token_is_renewed_before_expiry_with_the_refresh_token(cdse):
    cdse.expires_in = 600
    clock = Clock()
    tokens = _tokens(cdse, clock, token_margin_s=60)
    first = tokens.token()
    clock.now += 500  # before expiry minus margin: same token
    assert tokens.token() == first and cdse.grants == ["password"]
    clock.now += 50  # within the 60 s margin: renewed through the refresh grant
    second = tokens.token()
    assert second != first and cdse.grants == ["password", "refresh_token"]


@pytest.mark.network
def test_expired_refresh_token_falls_back_to_the_password(cdse):
    clock = Clock()
    tokens = _tokens(cdse, clock)
    tokens.token()
    clock.now += 4000  # refresh token (3600 s) expired too
    tokens.token()
    assert cdse.grants == ["password", "password"]
    cdse.refresh_tokens.clear()  # server forgot the refresh token: still recovers
    clock.now += 590
    tokens.token()
    assert cdse.grants == ["password", "password", "password"]


@pytest.mark.network
def test_invalidate_renews_once(cdse):
    tokens = _tokens(cdse, Clock())
    first = tokens.token()
    tokens.invalidate("some-older-token")
    assert tokens.token() == first
    tokens.invalidate(first)
    assert tokens.token() != first and cdse.grants == ["password", "refresh_token"]


@pytest.mark.network
def test_wrong_password_says_where_it_came_from(cdse):
    config = CdseConfig(token_url=cdse.config()["cdse"]["token_url"])
    creds = Credentials(cdse.username, "wrong-password", source="environment")
    tokens = TokenSource(config, creds, RetryPolicy(retries=0), (5, 5))
    with pytest.raises(CredentialsError, match="refused the username/password from environment"):
        tokens.token()


def test_filter_has_the_documented_form():
    flt = product_filter(
        ["SENTINEL-2"],
        dt.date(2020, 4, 7),
        dt.date(2020, 6, 19),
        "POLYGON((0 0, 1 0, 1 1, 0 0))",
        30,
        product_type="S2MSI2A",
    )
    assert flt == (
        "Collection/Name eq 'SENTINEL-2' and "
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
        "att/OData.CSC.StringAttribute/Value eq 'S2MSI2A') and "
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        "att/OData.CSC.DoubleAttribute/Value le 30.00) and "
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((0 0, 1 0, 1 1, 0 0))') and "
        "ContentDate/Start gt 2020-04-07T00:00:00.000Z and "
        "ContentDate/Start lt 2020-06-20T00:00:00.000Z"
    )
    landsat = product_filter(
        ["LANDSAT-8", "LANDSAT-9"],
        dt.date(2020, 1, 1),
        dt.date(2020, 1, 2),
        "P",
        10,
        name_contains="_L2SP_",
    )
    assert landsat.startswith(
        "(Collection/Name eq 'LANDSAT-8' or Collection/Name eq 'LANDSAT-9') and contains(Name,'_L2SP_')"
    )


def test_outline_is_a_closed_counter_clockwise_polygon_covering_the_fire():
    from shapely import from_wkt

    outline = from_wkt(search_outline(FIRE.geometry))
    assert outline.covers(FIRE.geometry.buffer(-1e-6))
    assert outline.exterior.is_ccw
    points = from_wkt(search_outline(MultiPoint([(-111.6, 35.2)])))  # a one-pixel fire
    assert points.area > 0


def test_parse_product_takes_the_md5_from_the_checksum_list():
    item = {
        "Id": "abc",
        "Name": "S2B_MSIL2A_20200507T180909_N0214_R041_T12SVC_20200507T215853.SAFE",
        "ContentLength": 1234,
        "ContentDate": {"Start": "2020-05-07T18:09:09.024Z", "End": "2020-05-07T18:09:09.024Z"},
        "Checksum": [
            {"Value": "ffff", "Algorithm": "BLAKE3"},
            {"Value": "ABCDEF0123", "Algorithm": "MD5"},
        ],
        "Attributes": [{"Name": "cloudCover", "Value": 12.5}],
    }
    product = parse_product(item, "sentinel", "https://dl.example/odata/v1/")
    assert product.md5 == "abcdef0123" and product.size == 1234 and product.cloud_cover == 12.5
    assert product.url == "https://dl.example/odata/v1/Products(abc)/$value"
    assert product.sensing_time == dt.datetime(2020, 5, 7, 18, 9, 9, 24000, tzinfo=dt.timezone.utc)
    assert product.folder_name == item["Name"] and product.tile == "T12SVC"
    with pytest.raises(DownloadError, match="lacks Id"):
        parse_product({"Name": "x"}, "sentinel", "u")


def _s2(day: str, baseline: str = "0500", tile: str = "12SVC") -> Product:
    name = f"S2A_MSIL2A_{day}T180911_N{baseline}_R041_T{tile}_{day}T215853.SAFE"
    sensing = dt.datetime.strptime(day + "180911", "%Y%m%d%H%M%S")
    return Product("sentinel", "cdse", name, name, sensing, "u")


def test_select_keeps_nearest_per_tile_and_newest_baseline():
    products = [
        _s2("20200410"),
        _s2("20200425"),
        _s2("20200425", baseline="0214"),  # older processing of the same scene
        _s2("20200510"),  # during the fire
        _s2("20200525"),
        _s2("20200604"),
        _s2("20200420", tile="12SVD"),
    ]
    assert len(select(products, FIRE, None)) == 6
    kept = [
        (p.tile, p.sensing_time.date().isoformat(), p.name[28:32])
        for p in select(products, FIRE, 1)
    ]
    assert kept == [
        ("T12SVD", "2020-04-20", "0500"),
        ("T12SVC", "2020-04-25", "0500"),
        ("T12SVC", "2020-05-25", "0500"),
    ]


def test_landsat_folder_and_tile():
    name = "LC09_L2SP_037036_20220612_20220614_02_T1"
    product = Product("landsat", "cdse", "x", name, dt.datetime(2022, 6, 12), "u")
    assert product.folder_name == name and product.tile == "P037R036"
    assert (
        Product("landsat", "cdse", "x", name + ".tar", dt.datetime(2022, 6, 12), "u").folder_name
        == name
    )


def test_retry_after_in_seconds_or_http_date():
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("0.25") == 0.25
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    policy = RetryPolicy(backoff_s=1, backoff_max_s=8)
    for attempt, base in zip((1, 2, 3, 4, 5, 6), (1, 2, 4, 8, 8, 8), strict=True):
        assert base <= policy.backoff(attempt) <= base * 1.1  # up to 10% jitter


def test_dhus_query_through_sentinelsat():
    from sentinelsat import SentinelAPI

    from firedpy_nrt.prepare.download.dhus import dhus_query

    kwargs = dhus_query(
        DownloadConfig(cloud_cover=20), FIRE, dt.date(2020, 4, 7), dt.date(2020, 6, 19)
    )
    order_by = kwargs.pop("order_by")
    assert order_by == "+beginposition"
    query = SentinelAPI.format_query(**kwargs)
    assert 'footprint:"Intersects(POLYGON((' in query
    assert 'beginPosition:["2020-04-07T00:00:00Z" TO "2020-06-20T00:00:00Z"]' in query
    assert 'platformname:"Sentinel-2"' in query and 'producttype:"S2MSI2A"' in query
    assert 'cloudcoverpercentage:["0" TO "20' in query
