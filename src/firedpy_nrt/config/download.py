"""Schema of the ``download`` stage of ``prepare.py`` (``download.*`` keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

from firedpy_nrt.config import require

CDSE_TOKEN_URL = (
    "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
)
CDSE_CATALOGUE_URL = "https://catalogue.dataspace.copernicus.eu/odata/v1"
CDSE_DOWNLOAD_URL = "https://download.dataspace.copernicus.eu/odata/v1"
SENTINEL_PROVIDERS = ("stac", "cdse", "dhus")
LANDSAT_PROVIDERS = ("stac",)
STAC_SIGNING = ("none", "planetary_computer")
PC_STAC_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
PC_SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"


def is_http_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc) and "@" not in parsed.netloc


@dataclass
class CdseConfig:
    """Copernicus Data Space Ecosystem endpoints (the real services by default)."""

    token_url: str = CDSE_TOKEN_URL
    catalogue_url: str = CDSE_CATALOGUE_URL
    download_url: str = CDSE_DOWNLOAD_URL
    client_id: str = "cdse-public"
    #: Redirects keep the Authorization header only on these hosts (and the endpoints' own hosts).
    trusted_hosts: list[str] = field(default_factory=lambda: [".dataspace.copernicus.eu"])
    #: Refresh the access token this many seconds before it expires.
    token_margin_s: float = 60.0

    def check(self) -> None:
        for key in ("token_url", "catalogue_url", "download_url"):
            require(
                is_http_url(getattr(self, key)),
                key,
                "must be an http(s) URL without credentials in it",
            )
        require(self.token_margin_s >= 0, "token_margin_s", "must be >= 0")


@dataclass
class DhusConfig:
    """A hub that still speaks the DHuS API, searched through sentinelsat."""

    #: No default: the Copernicus Open Access Hub (apihub.copernicus.eu) closed in October 2023.
    api_url: str | None = None
    platform: str = "Sentinel-2"

    def check(self) -> None:
        require(
            self.api_url is None or is_http_url(self.api_url),
            "api_url",
            "must be an http(s) URL without credentials",
        )


@dataclass
class SentinelSearchConfig:
    collection: str = "SENTINEL-2"
    product_type: str = "S2MSI2A"


@dataclass
class StacAssetsConfig:
    """Which asset key of a collection's items holds each band the dNBR stage reads."""

    nir: str
    swir: str
    quality: str  # Sentinel-2 scene classification (SCL) or Landsat QA_PIXEL
    red: str
    green: str
    blue: str

    def check(self) -> None:
        for key in ("nir", "swir", "quality", "red", "green", "blue"):
            require(bool(str(getattr(self, key)).strip()), key, "needs an asset key")


@dataclass
class StacCollectionConfig:
    collection: str
    assets: StacAssetsConfig


@dataclass
class StacConfig:
    """A STAC API, Planetary Computer by default: searched with pystac-client, then only the
    window of each Cloud-Optimized GeoTIFF asset that covers the buffered event is read."""

    url: str = PC_STAC_URL
    #: ``planetary_computer``: SAS-signed asset hrefs through the planetary-computer package (an
    #: optional subscription key from PC_SDK_SUBSCRIPTION_KEY); ``none``: public hrefs.
    sign: str = "planetary_computer"
    sas_url: str = PC_SAS_URL
    #: Metres around the event polygon read from each asset.
    buffer_m: float = 1000.0
    #: Tries and timeout (seconds) of the HTTP range reads of an asset (GDAL /vsicurl/).
    read_retries: int = 3
    read_timeout_s: float = 60.0
    sentinel: StacCollectionConfig = field(
        default_factory=lambda: StacCollectionConfig(
            "sentinel-2-l2a", StacAssetsConfig("B8A", "B12", "SCL", "B04", "B03", "B02")
        )
    )
    landsat: StacCollectionConfig = field(
        default_factory=lambda: StacCollectionConfig(
            "landsat-c2-l2",
            StacAssetsConfig("nir08", "swir22", "qa_pixel", "red", "green", "blue"),
        )
    )

    def check(self) -> None:
        require(is_http_url(self.url), "url", "must be an http(s) URL without credentials")
        require(is_http_url(self.sas_url), "sas_url", "must be an http(s) URL")
        require(
            self.sign in STAC_SIGNING,
            "sign",
            f"must be one of {', '.join(STAC_SIGNING)} (got {self.sign!r})",
        )
        require(self.buffer_m >= 0, "buffer_m", "must be >= 0")
        require(self.read_retries >= 0, "read_retries", "must be >= 0")
        require(self.read_timeout_s > 0, "read_timeout_s", "must be > 0")


@dataclass
class DownloadConfig:
    #: The default (``download=planetary_computer``) needs no account at all.
    sentinel_provider: str = "stac"
    landsat_provider: str = "stac"
    #: Search from ig_date minus this many days ...
    days_before: int = 30
    #: ... to last_date plus this many days.
    days_after: int = 30
    #: Keep this many scenes per tile before ig_date and after last_date (nearest in time);
    #: null keeps every scene of the window.
    scenes_per_side: int | None = None
    cloud_cover: float = 30.0
    page_size: int = 100
    workers: int = 4
    retries: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    retry_after_max_s: float = 900.0
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 300.0
    chunk_bytes: int = 1 << 20
    keep_archives: bool = False
    #: Largest total an archive may extract to, and largest extracted/compressed size ratio:
    #: far above a real product (an S2 L2A or Landsat C2 L2 product is about 1 GB, ratio ~1),
    #: so only a hostile archive (a bomb) is refused.
    max_extract_gb: float = 2.0
    max_compression_ratio: float = 100.0
    #: Search pages followed at most before the search is called endless (next links that loop).
    max_pages: int = 200
    #: A transfer slower than this on average (after min_rate_grace_s) is cut off and retried:
    #: a server that trickles bytes never ends otherwise (read_timeout_s is per read).
    min_rate_kbps: float = 8.0
    min_rate_grace_s: float = 60.0
    progress: bool = True
    #: A search that finds nothing for a requested satellite is a warning naming the event and
    #: the window, and the stage's exit code is 1; true accepts empty searches quietly.
    empty_ok: bool = False
    stac: StacConfig = field(default_factory=StacConfig)
    cdse: CdseConfig = field(default_factory=CdseConfig)
    dhus: DhusConfig = field(default_factory=DhusConfig)
    sentinel: SentinelSearchConfig = field(default_factory=SentinelSearchConfig)

    def check(self) -> None:
        require(
            self.sentinel_provider in SENTINEL_PROVIDERS,
            "sentinel_provider",
            f"must be one of {', '.join(SENTINEL_PROVIDERS)} (got {self.sentinel_provider!r})",
        )
        require(
            self.landsat_provider != "cdse",
            "landsat_provider",
            "the Data Space has no Landsat Level-2 surface reflectance outside Europe (its "
            "LANDSAT-8/9 collections are Level-1; LANDSAT-8-ESA covers Europe only): use "
            "download=planetary_computer or download.landsat_provider=stac",
        )
        require(
            self.landsat_provider in LANDSAT_PROVIDERS,
            "landsat_provider",
            f"must be one of {', '.join(LANDSAT_PROVIDERS)} (got {self.landsat_provider!r})",
        )
        require(
            self.sentinel_provider != "dhus" or bool(self.dhus.api_url),
            "dhus.api_url",
            "must be set for download=dhus (the Copernicus Open Access Hub closed in October "
            "2023; give a hub that still speaks the DHuS API)",
        )
        require(self.days_before >= 0, "days_before", "must be >= 0")
        require(self.days_after >= 0, "days_after", "must be >= 0")
        require(
            self.scenes_per_side is None or self.scenes_per_side >= 1,
            "scenes_per_side",
            "must be >= 1 or null",
        )
        require(0 <= self.cloud_cover <= 100, "cloud_cover", "must be between 0 and 100")
        require(1 <= self.page_size <= 1000, "page_size", "must be between 1 and 1000")
        require(1 <= self.workers <= 16, "workers", "must be between 1 and 16")
        require(self.retries >= 0, "retries", "must be >= 0")
        require(self.backoff_s >= 0, "backoff_s", "must be >= 0")
        require(self.backoff_max_s >= self.backoff_s, "backoff_max_s", "must be >= backoff_s")
        require(self.retry_after_max_s >= 0, "retry_after_max_s", "must be >= 0")
        require(self.connect_timeout_s > 0, "connect_timeout_s", "must be > 0")
        require(self.read_timeout_s > 0, "read_timeout_s", "must be > 0")
        require(self.chunk_bytes >= 1024, "chunk_bytes", "must be >= 1024")
        require(self.max_extract_gb > 0, "max_extract_gb", "must be > 0")
        require(self.max_compression_ratio >= 1, "max_compression_ratio", "must be >= 1")
        require(self.max_pages >= 1, "max_pages", "must be >= 1")
        require(self.min_rate_kbps >= 0, "min_rate_kbps", "must be >= 0 (0: no bound)")
        require(self.min_rate_grace_s >= 0, "min_rate_grace_s", "must be >= 0")
