"""Copernicus Data Space Ecosystem: access token, OData product search and product download.

The token comes from the identity service (password grant, client ``cdse-public``) and is
renewed before it expires: with the refresh token while that is still valid, else with the
password again; a 401 from the download service renews it too. Searches follow every page of
results. Downloads go through :mod:`.transfer` with the token as a Bearer header, kept on
redirects only to Data Space hosts.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import requests
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from firedpy_nrt.config.download import CdseConfig, DownloadConfig
from firedpy_nrt.errors import CredentialsError, DownloadError
from firedpy_nrt.prepare.download.credentials import SECRETS, Credentials, scrub
from firedpy_nrt.prepare.download.product import Product
from firedpy_nrt.prepare.download.retry import RetryPolicy, send
from firedpy_nrt.prepare.download.transfer import (
    TransferSettings,
    download_product,
    plain_session,
)
from firedpy_nrt.prepare.events import FireEvent

log = logging.getLogger(__name__)

#: A search outline with more corners than this becomes its minimum rotated rectangle, which
#: still covers the fire and keeps the request URL short.
MAX_OUTLINE_VERTICES = 60


class TokenSource:
    """A Data Space access token, renewed before it expires and on request after a 401."""

    def __init__(
        self,
        cfg: CdseConfig,
        credentials: Credentials,
        policy: RetryPolicy,
        timeout: tuple[float, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._credentials = credentials
        self._policy = policy
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._session = plain_session()
        self._access: str | None = None
        self._renew_at = 0.0
        self._refresh: str | None = None
        self._refresh_until = 0.0
        self.grants: list[str] = []  # which grant each renewal used (for logs and tests)

    def token(self) -> str:
        """A valid access token (renewed first when it is due)."""
        with self._lock:
            now = self._clock()
            if self._access and now < self._renew_at:
                return self._access
            if self._refresh and now < self._refresh_until:
                try:
                    self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                    return self._access  # type: ignore[return-value]
                except CredentialsError:
                    log.info("refresh token refused; signing in again")
            self._grant(
                {
                    "grant_type": "password",
                    "username": self._credentials.username,
                    "password": self._credentials.password,
                }
            )
            return self._access  # type: ignore[return-value]

    def invalidate(self, token: str) -> None:
        """``token`` was refused: renew on the next :meth:`token` (once, however many threads)."""
        with self._lock:
            if token == self._access:
                self._renew_at = 0.0

    def _grant(self, form: dict[str, str]) -> None:
        kind = form["grant_type"]
        data = {"client_id": self.cfg.client_id, **form}
        response = send(
            self._session,
            "POST",
            self.cfg.token_url,
            self._policy,
            "token",
            data=data,
            timeout=self._timeout,
        )
        with response:
            if response.status_code in (400, 401, 403):
                if kind == "refresh_token":
                    self._refresh = None
                    raise CredentialsError("refresh token refused")
                raise CredentialsError(
                    f"the identity service {self.cfg.token_url} refused the username/password "
                    f"from {self._credentials.source or 'the environment'} "
                    f"(HTTP {response.status_code}); check CDSE_USERNAME/CDSE_PASSWORD or ~/.netrc"
                )
            if response.status_code != 200:
                raise DownloadError(
                    f"token: {self.cfg.token_url} answered HTTP {response.status_code}"
                )
            try:
                body = response.json()
                access = str(body["access_token"])
                expires_in = float(body.get("expires_in", 600))
            except (ValueError, KeyError, TypeError):
                raise DownloadError(
                    f"token: {self.cfg.token_url} sent no access_token in its answer"
                ) from None
        SECRETS.add(access)
        now = self._clock()
        margin = min(self.cfg.token_margin_s, expires_in / 2)
        self._access = access
        self._renew_at = now + expires_in - margin
        refresh = body.get("refresh_token")
        if refresh:
            SECRETS.add(str(refresh))
            try:
                refresh_in = float(body.get("refresh_expires_in", 3600))
            except (TypeError, ValueError):
                raise DownloadError(
                    f"token: {self.cfg.token_url} sent a refresh_expires_in that is not a number"
                ) from None
            self._refresh = str(refresh)
            self._refresh_until = now + refresh_in - min(self.cfg.token_margin_s, refresh_in / 2)
        self.grants.append(kind)
        log.debug("access token renewed (%s grant, valid %.0f s)", kind, expires_in)


class BearerAuth:
    """Bearer token for the Data Space hosts only (the download service redirects)."""

    def __init__(self, tokens: TokenSource, cfg: CdseConfig) -> None:
        self.tokens = tokens
        self._suffixes = [h.lower() for h in cfg.trusted_hosts if h.startswith(".")]
        self._hosts = {h.lower() for h in cfg.trusted_hosts if not h.startswith(".")}
        self._hosts |= {
            (urlparse(u).hostname or "").lower()
            for u in (cfg.token_url, cfg.catalogue_url, cfg.download_url)
        }
        self._https_only = urlparse(cfg.download_url).scheme == "https"

    def trusts(self, url: str) -> bool:
        parsed = urlparse(url)
        host = (parsed.hostname or "").lower()
        if self._https_only and parsed.scheme != "https":
            return False
        return host in self._hosts or any(host.endswith(s) for s in self._suffixes)

    def headers(self, url: str) -> dict[str, str]:
        if not self.trusts(url):
            return {}
        return {"Authorization": f"Bearer {self.tokens.token()}"}

    def unauthorized(self, sent: dict[str, str]) -> None:
        value = sent.get("Authorization", "")
        if value.startswith("Bearer "):
            self.tokens.invalidate(value[len("Bearer ") :])


def search_outline(geometry: BaseGeometry) -> str:
    """WKT polygon (lon lat, counter-clockwise) covering ``geometry``, for ``Intersects``."""
    hull = geometry.convex_hull
    if not isinstance(hull, Polygon) or hull.area == 0:
        hull = hull.buffer(0.001).convex_hull
    if len(hull.exterior.coords) > MAX_OUTLINE_VERTICES:
        hull = shapely.minimum_rotated_rectangle(hull)
    hull = orient(hull, 1.0)
    coords = ", ".join(f"{x:.6f} {y:.6f}" for x, y in hull.exterior.coords)
    return f"POLYGON(({coords}))"


def _odata_time(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def product_filter(
    collections: list[str],
    start: dt.date,
    end: dt.date,
    outline_wkt: str,
    cloud_cover: float,
    product_type: str | None = None,
    name_contains: str | None = None,
) -> str:
    """The OData ``$filter`` for products of ``collections`` over the outline from start to end
    (both days included) with at most ``cloud_cover`` percent cloud."""
    names = " or ".join(f"Collection/Name eq '{c}'" for c in collections)
    parts = [f"({names})" if len(collections) > 1 else names]
    if product_type:
        parts.append(
            "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
            f"att/OData.CSC.StringAttribute/Value eq '{product_type}')"
        )
    if name_contains:
        parts.append(f"contains(Name,'{name_contains}')")
    parts += [
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        f"att/OData.CSC.DoubleAttribute/Value le {cloud_cover:.2f})",
        f"OData.CSC.Intersects(area=geography'SRID=4326;{outline_wkt}')",
        f"ContentDate/Start gt {_odata_time(start)}",
        f"ContentDate/Start lt {_odata_time(end + dt.timedelta(days=1))}",
    ]
    return " and ".join(parts)


def _short_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") or body.get("error") or ""
    if isinstance(detail, dict):
        detail = detail.get("message", "")
    if isinstance(detail, list) and detail:
        detail = detail[0].get("msg", "") if isinstance(detail[0], dict) else detail[0]
    text = " ".join(str(detail).split())[:200]
    return f": {scrub(text)}" if text else ""


def parse_product(item: dict[str, Any], satellite: str, download_url: str) -> Product:
    """A :class:`Product` from one OData ``Products`` entry; a DownloadError naming the entry
    when a field it relies on is missing or malformed."""
    try:
        product_id = str(item["Id"])
        name = str(item["Name"])
        start = str(item["ContentDate"]["Start"])
    except (KeyError, TypeError):
        raise DownloadError(
            f"search: a result lacks Id, Name or ContentDate: {item!r}"[:300]
        ) from None
    try:
        sensing = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise DownloadError(
            f"search: result {name!r} has an unparsable ContentDate/Start {start!r}"[:300]
        ) from None
    md5 = None
    checksums = item.get("Checksum") or []
    if not isinstance(checksums, list) or not all(isinstance(c, dict) for c in checksums):
        raise DownloadError(
            f"search: result {name!r} has a Checksum that is not a list of objects"[:300]
        )
    for checksum in checksums:
        if str(checksum.get("Algorithm", "")).upper() == "MD5" and checksum.get("Value"):
            md5 = str(checksum["Value"]).lower()
    cloud = None
    attributes = item.get("Attributes") or []
    for attribute in attributes if isinstance(attributes, list) else []:
        if isinstance(attribute, dict) and attribute.get("Name") == "cloudCover":
            try:
                cloud = float(attribute.get("Value"))
            except (TypeError, ValueError):
                cloud = None
    size = item.get("ContentLength")
    return Product(
        satellite=satellite,
        provider="cdse",
        id=product_id,
        name=name,
        sensing_time=sensing,
        url=f"{download_url.rstrip('/')}/Products({product_id})/$value",
        size=int(size) if isinstance(size, (int, float)) and size > 0 else None,
        md5=md5,
        cloud_cover=cloud,
        online=bool(item.get("Online", True)),
    )


class CdseCatalogue:
    """Search the Data Space OData catalogue, following every page."""

    def __init__(self, cfg: DownloadConfig, policy: RetryPolicy) -> None:
        self.cfg = cfg
        self.policy = policy
        self.session = plain_session()
        self.timeout = (cfg.connect_timeout_s, cfg.read_timeout_s)

    def query(self, odata_filter: str) -> list[dict[str, Any]]:
        """Every ``Products`` entry matching ``odata_filter``."""
        url = f"{self.cfg.cdse.catalogue_url.rstrip('/')}/Products"
        params: dict[str, Any] | None = {
            "$filter": odata_filter,
            "$orderby": "ContentDate/Start asc",
            "$top": self.cfg.page_size,
            "$expand": "Attributes",
        }
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        next_url: str | None = url
        pages = 0
        while next_url:
            pages += 1
            if pages > self.cfg.max_pages:
                raise DownloadError(
                    f"search: {url} kept sending next pages (more than download.max_pages="
                    f"{self.cfg.max_pages}); raise download.max_pages if the search is that large"
                )
            response = send(
                self.session,
                "GET",
                next_url,
                self.policy,
                "search",
                params=params,
                timeout=self.timeout,
            )
            with response:
                if response.status_code != 200:
                    raise DownloadError(
                        f"search: {url} answered HTTP {response.status_code}"
                        f"{_short_detail(response)}"
                    )
                try:
                    body = response.json()
                    page = list(body["value"])
                except (ValueError, KeyError, TypeError):
                    raise DownloadError(f"search: {url} sent no 'value' list") from None
            items += page
            link = body.get("@odata.nextLink") or body.get("@OData.nextLink")
            if not link or not page:
                break
            next_url = urljoin(url, link)
            if next_url in seen:
                raise DownloadError(f"search: {url} sent the same next page twice")
            seen.add(next_url)
            params = None  # the next link carries the query
        return items


class CdseProvider:
    """Sentinel-2 L2A (or another collection) from the Data Space, behind the Provider interface."""

    name = "cdse"

    def __init__(
        self,
        satellite: str,
        cfg: DownloadConfig,
        catalogue: CdseCatalogue,
        auth: BearerAuth,
        settings: TransferSettings,
    ) -> None:
        self.satellite = satellite
        self.cfg = cfg
        self.catalogue = catalogue
        self.auth = auth
        self.settings = settings

    def product_filter(self, event: FireEvent, start: dt.date, end: dt.date) -> str:
        return product_filter(
            [self.cfg.sentinel.collection],
            start,
            end,
            search_outline(event.geometry),
            self.cfg.cloud_cover,
            product_type=self.cfg.sentinel.product_type,
        )

    def keep(self, product: Product) -> bool:
        return True

    def search(self, event: FireEvent, start: dt.date, end: dt.date) -> list[Product]:
        items = self.catalogue.query(self.product_filter(event, start, end))
        catalogue = self.cfg.cdse.catalogue_url
        products = []
        for item in items:
            try:
                products.append(parse_product(item, self.satellite, self.cfg.cdse.download_url))
            except DownloadError as exc:
                raise DownloadError(f"{exc} (from {catalogue})") from None
        return [p for p in products if self.keep(p)]

    def download(self, product: Product, dest: Path) -> None:
        download_product(
            product, dest, auth=self.auth, settings=self.settings, offline_reason="not yet restored"
        )
