"""Sentinel-2 from a hub that still speaks the DHuS API, searched through sentinelsat.

sentinelsat builds and pages the OpenSearch query and reads each product's OData entry (size,
MD5, download URL). The bytes then go through :mod:`.transfer` like every other provider, so a
DHuS download resumes, verifies and retries the same way.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from firedpy_nrt.config.download import DownloadConfig
from firedpy_nrt.errors import CredentialsError, DownloadError
from firedpy_nrt.prepare.download.cdse import search_outline
from firedpy_nrt.prepare.download.credentials import SECRETS, Credentials, scrub
from firedpy_nrt.prepare.download.product import Product
from firedpy_nrt.prepare.download.retry import describe_error
from firedpy_nrt.prepare.download.transfer import TransferSettings, download_product
from firedpy_nrt.prepare.events import FireEvent

log = logging.getLogger(__name__)


def dhus_query(cfg: DownloadConfig, event: FireEvent, start: dt.date, end: dt.date) -> dict:
    """Keyword arguments of ``SentinelAPI.query`` for one event (``end`` included)."""
    return {
        "area": search_outline(event.geometry),
        "date": (start, end + dt.timedelta(days=1)),
        "platformname": cfg.dhus.platform,
        "producttype": cfg.sentinel.product_type,
        "cloudcoverpercentage": (0, cfg.cloud_cover),
        "order_by": "+beginposition",
    }


class BasicAuth:
    """HTTP Basic credentials for the hub's own host only."""

    def __init__(self, credentials: Credentials, api_url: str) -> None:
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        SECRETS.add(token)
        self._header = f"Basic {token}"
        self._host = (urlparse(api_url).hostname or "").lower()

    def headers(self, url: str) -> dict[str, str]:
        if (urlparse(url).hostname or "").lower() != self._host:
            return {}
        return {"Authorization": self._header}

    def unauthorized(self, sent: dict[str, str]) -> None:
        raise CredentialsError(
            f"{self._host} refused the credentials; check DHUS_USERNAME/DHUS_PASSWORD or ~/.netrc"
        )


class DhusProvider:
    """Sentinel-2 L2A through sentinelsat (``download.dhus.api_url``)."""

    name = "dhus"

    def __init__(
        self, cfg: DownloadConfig, credentials: Credentials, settings: TransferSettings
    ) -> None:
        from sentinelsat import SentinelAPI  # only when this provider is chosen

        self.satellite = "sentinel"
        self.cfg = cfg
        self.settings = settings
        self.api = SentinelAPI(
            credentials.username,
            credentials.password,
            api_url=cfg.dhus.api_url,
            show_progressbars=False,
            timeout=(cfg.connect_timeout_s, cfg.read_timeout_s),
        )
        self.auth = BasicAuth(credentials, cfg.dhus.api_url)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from sentinelsat import SentinelAPIError, UnauthorizedError

        try:
            return fn(*args, **kwargs)
        except UnauthorizedError:
            raise CredentialsError(
                f"{what}: {self.cfg.dhus.api_url} refused the credentials; "
                "check DHUS_USERNAME/DHUS_PASSWORD or ~/.netrc"
            ) from None
        except SentinelAPIError as exc:
            text = " ".join(str(exc).split())[:200]
            raise DownloadError(scrub(f"{what}: {self.cfg.dhus.api_url}: {text}")) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise DownloadError(
                f"{what}: {self.cfg.dhus.api_url} sent an answer sentinelsat cannot read "
                f"({type(exc).__name__}: {exc})"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise DownloadError(
                f"{what}: cannot reach {self.cfg.dhus.api_url} ({describe_error(exc)})"
            ) from None

    def search(self, event: FireEvent, start: dt.date, end: dt.date) -> list[Product]:
        found = self._call("search", self.api.query, **dhus_query(self.cfg, event, start, end))
        products = []
        for uuid in found:
            info = self._call("search", self.api.get_product_odata, uuid)
            props = found[uuid]
            sensing = info.get("date") or props.get("beginposition")
            if isinstance(sensing, dt.datetime) and sensing.tzinfo is None:
                sensing = sensing.replace(tzinfo=dt.timezone.utc)
            cloud = props.get("cloudcoverpercentage")
            products.append(
                Product(
                    satellite="sentinel",
                    provider="dhus",
                    id=str(info.get("id", uuid)),
                    name=str(info.get("title") or props.get("title")),
                    sensing_time=sensing,
                    url=str(info["url"]),
                    size=int(info["size"]) if info.get("size") else None,
                    md5=str(info["md5"]).lower() if info.get("md5") else None,
                    cloud_cover=float(cloud) if cloud is not None else None,
                    online=bool(info.get("Online", True)),
                )
            )
        return products

    def download(self, product: Product, dest: Path) -> None:
        download_product(
            product,
            dest,
            auth=self.auth,
            settings=self.settings,
            offline_reason="long-term archive",
        )
