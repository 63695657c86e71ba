"""Optical scenes from a STAC API, reading only the fire's window of each asset.

Search: pystac-client, by the event polygon, the date window and ``eo:cloud_cover``, every page
followed up to ``download.max_pages``. Planetary Computer asset hrefs are SAS-signed through the
planetary-computer package (``download.stac.sign``). Fetch: each needed asset (NIR, SWIR, the
scene classification or QA band, and RGB when the dnbr stage draws it) is a Cloud-Optimized
GeoTIFF; only the window covering the event buffered by ``download.stac.buffer_m`` is read
(HTTP range requests through GDAL, with retries and a timeout), on the asset's own grid, and
written as a GeoTIFF into ``<scenes>/<fire>/<sentinel|landsat>/<item id>/`` with the item's JSON
(``item.json``, asset hrefs pointing at the local files). The folder is built under a temporary
name and renamed when complete, so a folder under an item id is always whole and a re-run reads
nothing again.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import rasterio
import rasterio.windows
from rasterio.errors import RasterioError
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from firedpy_nrt.atomic import replace_dir, staging_dir, write_text
from firedpy_nrt.config.download import DownloadConfig, StacCollectionConfig
from firedpy_nrt.errors import DownloadError
from firedpy_nrt.geotiff import write_geotiff
from firedpy_nrt.prepare.dnbr.stac_item import ITEM_FILE
from firedpy_nrt.prepare.download.product import Product
from firedpy_nrt.prepare.events import FireEvent
from firedpy_nrt.raster_grid import RasterGrid

#: Band roles always read, and those read only when the dnbr stage writes RGB.
NBR_ROLES = ("nir", "swir", "quality")
RGB_ROLES = ("red", "green", "blue")


def _self_href(item: dict[str, Any]) -> str:
    """The item's own URL (its ``self`` link), against which relative asset hrefs resolve."""
    for link in item.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return ""


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


class StacProvider:
    """One satellite's items from a STAC API, behind the download stage's Provider interface."""

    name = "stac"

    def __init__(self, satellite: str, cfg: DownloadConfig, rgb: bool = False) -> None:
        self.satellite = satellite
        self.cfg = cfg
        self.collection: StacCollectionConfig = getattr(cfg.stac, satellite)
        self.roles = NBR_ROLES + (RGB_ROLES if rgb else ())
        self._client: Any = None

    # -- search ------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._client is not None:
            return self._client
        from pystac_client import Client

        modifier = None
        if self.cfg.stac.sign == "planetary_computer":
            import planetary_computer

            planetary_computer.settings.Settings.get().sas_url = self.cfg.stac.sas_url
            modifier = planetary_computer.sign_inplace
        try:
            self._client = Client.open(
                self.cfg.stac.url,
                modifier=modifier,
                timeout=(self.cfg.connect_timeout_s, self.cfg.read_timeout_s),
            )
        except Exception as exc:  # requests, pystac_client.APIError, JSON errors
            raise DownloadError(
                f"search: cannot open the STAC API {self.cfg.stac.url} ({_first_line(exc)})"
            ) from None
        return self._client

    def search(self, event: FireEvent, start: dt.date, end: dt.date) -> list[Product]:
        """Items of the collection intersecting the event and sensed in ``[start, end]``."""
        client = self._open()
        url = self.cfg.stac.url
        common = {
            "collections": [self.collection.collection],
            "intersects": mapping(event.geometry),
            "datetime": f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59Z",
            "limit": self.cfg.page_size,
        }
        cloud = {"eo:cloud_cover": {"lte": self.cfg.cloud_cover}}
        # POST with the query extension (what Planetary Computer and Earth Search answer); an
        # API without POST search or without the query extension is asked again by GET, and
        # then without the query (the cloud limit is applied here in any case).
        attempts = (("POST", cloud), ("GET", cloud), ("GET", None))
        first_error: Exception | None = None
        items: list[dict[str, Any]] = []
        for method, query in attempts:
            try:
                items = self._pages(client, method, query, common, url)
                break
            except DownloadError:
                raise
            except Exception as exc:  # APIError, requests errors, malformed answers
                first_error = first_error or exc
        else:
            raise DownloadError(f"search: {url}: {_first_line(first_error)}") from None
        products = []
        for item in items:
            try:
                products.append(self._product(item))
            except DownloadError as exc:
                raise DownloadError(f"{exc} (from {url})") from None
        return [
            p for p in products if p.cloud_cover is None or p.cloud_cover <= self.cfg.cloud_cover
        ]

    def _pages(
        self, client: Any, method: str, query: Any, common: dict[str, Any], url: str
    ) -> list[dict[str, Any]]:
        search = client.search(method=method, query=query, **common)
        items: list[dict[str, Any]] = []
        for pages, page in enumerate(search.pages_as_dicts(), start=1):
            if pages > self.cfg.max_pages:
                raise DownloadError(
                    f"search: {url} kept sending next pages (more than download.max_pages="
                    f"{self.cfg.max_pages}); raise download.max_pages if the search is that large"
                )
            items += list(page.get("features") or [])
        return items

    def _product(self, item: dict[str, Any]) -> Product:
        props = item.get("properties") or {}
        item_id = str(item.get("id", ""))
        stamp = props.get("datetime") or props.get("start_datetime")
        try:
            sensing = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise DownloadError(
                f"search: item {item_id!r} has an unparsable datetime {stamp!r}"
            ) from None
        assets = item.get("assets") or {}
        missing = [
            getattr(self.collection.assets, r)
            for r in self.roles
            if getattr(self.collection.assets, r) not in assets
        ]
        if missing:
            raise DownloadError(
                f"search: item {item_id!r} has no asset {', '.join(missing)} "
                f"(download.stac.{self.satellite}.assets)"
            )
        cloud = props.get("eo:cloud_cover")
        return Product(
            satellite=self.satellite,
            provider=self.name,
            id=item_id,
            name=item_id,
            sensing_time=sensing,
            url=str(assets[self.collection.assets.nir].get("href", "")),
            cloud_cover=float(cloud) if isinstance(cloud, (int, float)) else None,
            item=item,
        )

    # -- fetch -------------------------------------------------------------------------------
    def _gdal_env(self) -> rasterio.Env:
        return rasterio.Env(
            GDAL_HTTP_MAX_RETRY=str(self.cfg.stac.read_retries),
            GDAL_HTTP_RETRY_DELAY="1",
            GDAL_HTTP_TIMEOUT=str(int(math.ceil(self.cfg.stac.read_timeout_s))),
            GDAL_HTTP_CONNECTTIMEOUT=str(int(math.ceil(self.cfg.connect_timeout_s))),
            GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
            GDAL_HTTP_MERGE_CONSECUTIVE_RANGES="YES",
        )

    def fetch(self, product: Product, folder: Path, event: FireEvent) -> None:
        """Read the event's window of every needed asset into ``folder`` (built aside, renamed)."""
        item = product.item
        if item is None:
            raise DownloadError(f"{product.name}: no STAC item to read")
        tmp = staging_dir(folder)
        try:
            local: dict[str, dict[str, Any]] = {}
            roles: dict[str, str] = {}
            with self._gdal_env():
                for role in self.roles:
                    key = getattr(self.collection.assets, role)
                    asset = dict(item["assets"][key])
                    name = f"{key}.tif"
                    href = urljoin(_self_href(item), str(asset["href"]))  # relative hrefs too
                    self._read_window(product, key, href, event, tmp / name)
                    asset["href"] = f"./{name}"
                    local[key] = asset
                    roles[role] = key
            saved = {k: v for k, v in item.items() if k not in ("assets", "links")}
            saved["assets"] = local
            saved["links"] = []
            saved["firedpy"] = {"roles": roles, "satellite": self.satellite}
            write_text(tmp / ITEM_FILE, json.dumps(saved, indent=1))
            replace_dir(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _read_window(
        self, product: Product, key: str, href: str, event: FireEvent, dest: Path
    ) -> None:
        try:
            with rasterio.open(href) as src:
                area = shape(transform_geom("EPSG:4326", src.crs, mapping(event.geometry)))
                buffer = (
                    self.cfg.stac.buffer_m
                    if src.crs.is_projected
                    else (self.cfg.stac.buffer_m / 111_320.0)
                )
                left, bottom, right, top = area.buffer(buffer).bounds
                full = rasterio.windows.Window(0, 0, src.width, src.height)
                exact = rasterio.windows.from_bounds(left, bottom, right, top, src.transform)
                c0, r0 = math.floor(exact.col_off), math.floor(exact.row_off)
                c1 = math.ceil(exact.col_off + exact.width)
                r1 = math.ceil(exact.row_off + exact.height)
                window = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)  # whole pixels, out
                try:
                    window = window.intersection(full)
                except rasterio.errors.WindowError:
                    raise DownloadError(
                        f"{product.name}: asset {key} does not cover the event"
                    ) from None
                data = src.read(1, window=window)
                grid = RasterGrid(
                    src.crs,
                    src.window_transform(window),
                    int(window.width),
                    int(window.height),
                )
                write_geotiff(dest, data, grid, src.nodata)
        except DownloadError:
            raise
        except (RasterioError, OSError) as exc:
            raise DownloadError(
                f"{product.name}: cannot read asset {key} ({_first_line(exc)})"
            ) from None
