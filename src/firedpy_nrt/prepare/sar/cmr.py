"""OPERA RTC-S1 granules from NASA CMR's granule search (UMM-G JSON), one record per burst.

``GET {sar.search_url}/granules.umm_json`` with the collection's short name, the event's
bounding box and a temporal range; pages are followed with the ``CMR-Search-After`` header
until CMR has given every hit, at most ``sar.max_pages`` of them. No login is needed to search.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import requests
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from firedpy_nrt.config.sar import SarConfig
from firedpy_nrt.errors import DownloadError
from firedpy_nrt.prepare.download.retry import RetryPolicy, send
from firedpy_nrt.prepare.download.transfer import origin

log = logging.getLogger(__name__)

#: OPERA_L2_RTC-S1_{burst}_{acquired}Z_{produced}Z_{sensor}_30_v{version}
_UR = re.compile(
    r"^OPERA_L2_RTC-S1_(?P<burst>T\d{3}-\d{6}-IW\d)_(?P<acq>\d{8}T\d{6})Z_"
    r"(?P<prod>\d{8}T\d{6})Z_(?P<sensor>S1[A-D])_(?P<res>\d+)_v(?P<version>[\d.]+)$"
)
#: A Sentinel-1 IW SLC scene name, as HyP3 takes it (InputGranules may add a suffix).
_SLC = re.compile(
    r"S1[A-D]_IW_SLC__1S[SD][VH]_\d{8}T\d{6}_\d{8}T\d{6}_\d{6}_[0-9A-F]{6}_[0-9A-F]{4}"
)


@dataclass(frozen=True)
class RtcGranule:
    """One OPERA RTC-S1 burst product as its UMM-G record describes it."""

    ur: str
    burst_id: str
    path: int  # relative orbit
    direction: str  # ASCENDING or DESCENDING
    acquired: dt.datetime
    produced: dt.datetime
    version: str
    res_m: int  # pixel size in metres, from the product name
    footprint: BaseGeometry  # lon/lat
    urls: dict[str, str] = field(default_factory=dict)  # polarization -> COG URL
    sizes: dict[str, int] = field(default_factory=dict)
    slc: str | None = None

    @property
    def track(self) -> tuple[int, str]:
        return (self.path, self.direction)

    @property
    def day(self) -> dt.date:
        return self.acquired.date()


def _attribute(umm: dict[str, Any], name: str) -> str | None:
    for attr in umm.get("AdditionalAttributes") or []:
        if isinstance(attr, dict) and attr.get("Name") == name:
            values = attr.get("Values") or []
            return str(values[0]) if values else None
    return None


def _time(text: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).replace(tzinfo=None)


def _footprint(umm: dict[str, Any]) -> BaseGeometry:
    geometry = ((umm.get("SpatialExtent") or {}).get("HorizontalSpatialDomain") or {}).get(
        "Geometry"
    ) or {}
    for polygon in geometry.get("GPolygons") or []:
        points = ((polygon or {}).get("Boundary") or {}).get("Points") or []
        ring = [(float(p["Longitude"]), float(p["Latitude"])) for p in points]
        if len(ring) >= 3:
            shape = Polygon(ring)
            return shape if shape.is_valid else shape.buffer(0)
    for rect in geometry.get("BoundingRectangles") or []:
        return box(
            float(rect["WestBoundingCoordinate"]),
            float(rect["SouthBoundingCoordinate"]),
            float(rect["EastBoundingCoordinate"]),
            float(rect["NorthBoundingCoordinate"]),
        )
    raise ValueError("no GPolygons or BoundingRectangles")


def parse_granule(record: dict[str, Any]) -> RtcGranule:
    """An RtcGranule from one ``items[]`` entry; ValueError naming what is missing."""
    umm = record.get("umm") or {}
    ur = str(umm.get("GranuleUR") or (record.get("meta") or {}).get("native-id") or "")
    match = _UR.match(ur)
    if not match:
        raise ValueError(f"GranuleUR {ur!r} is not an OPERA RTC-S1 burst product name")
    burst = (_attribute(umm, "OPERA_BURST_ID") or match["burst"]).replace("_", "-").upper()
    path = _attribute(umm, "PATH_NUMBER")
    direction = (_attribute(umm, "ASCENDING_DESCENDING") or "").upper()
    if path is None or not path.strip().isdigit():
        raise ValueError(f"{ur}: no PATH_NUMBER")
    if direction not in ("ASCENDING", "DESCENDING"):
        raise ValueError(f"{ur}: no ASCENDING_DESCENDING")
    temporal = umm.get("TemporalExtent") or {}
    begin = (temporal.get("RangeDateTime") or {}).get("BeginningDateTime") or temporal.get(
        "SingleDateTime"
    )
    acquired = _time(begin) if begin else dt.datetime.strptime(match["acq"], "%Y%m%dT%H%M%S")
    urls: dict[str, str] = {}
    for entry in umm.get("RelatedUrls") or []:
        url = str((entry or {}).get("URL", ""))
        if entry.get("Type") != "GET DATA" or not url.startswith(("http://", "https://")):
            continue
        pol = re.search(r"_(VV|VH|HH|HV)\.tif$", url)
        if pol:
            urls[pol.group(1)] = url
    sizes: dict[str, int] = {}
    archive = (umm.get("DataGranule") or {}).get("ArchiveAndDistributionInformation") or []
    for entry in archive:
        pol = re.search(r"_(VV|VH|HH|HV)\.tif$", str((entry or {}).get("Name", "")))
        if pol and isinstance(entry.get("SizeInBytes"), (int, float)):
            sizes[pol.group(1)] = int(entry["SizeInBytes"])
    slc = None
    for name in umm.get("InputGranules") or []:
        found = _SLC.search(str(name))
        if found:
            slc = found.group(0)
            break
    return RtcGranule(
        ur=ur,
        burst_id=burst,
        path=int(path),
        direction=direction,
        acquired=acquired,
        produced=dt.datetime.strptime(match["prod"], "%Y%m%dT%H%M%S"),
        version=match["version"],
        res_m=int(match["res"]),
        footprint=_footprint(umm),
        urls=urls,
        sizes=sizes,
        slc=slc,
    )


def _cmr_errors(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return str(errors[0])[:200] if errors else ""
    except (ValueError, AttributeError):
        return ""


def search_rtc(
    cfg: SarConfig,
    area: BaseGeometry,
    start: dt.date,
    end: dt.date,
    session: requests.Session,
    policy: RetryPolicy,
    timeout: tuple[float, float],
) -> list[RtcGranule]:
    """Every granule of ``cfg.rtc_collection`` over ``area`` (lon/lat) from ``start`` to
    ``end`` inclusive; records that are not burst products are skipped with a warning."""
    url = cfg.search_url.rstrip("/") + "/granules.umm_json"
    west, south, east, north = area.bounds
    params = {
        "short_name": cfg.rtc_collection,
        "bounding_box": f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}",
        "temporal": f"{start.isoformat()}T00:00:00Z,{end.isoformat()}T23:59:59Z",
        "page_size": str(cfg.page_size),
    }
    server = origin(cfg.search_url)
    granules: list[RtcGranule] = []
    seen = 0
    search_after: str | None = None
    for _page in range(cfg.max_pages):
        headers = {"Accept": "application/json"}
        if search_after:
            headers["CMR-Search-After"] = search_after
        response = send(
            session,
            "GET",
            url,
            policy,
            "CMR search",
            params=params,
            headers=headers,
            timeout=timeout,
        )
        with response:
            if response.status_code != 200:
                detail = _cmr_errors(response)
                raise DownloadError(
                    f"CMR search at {server}: HTTP {response.status_code}"
                    + (f" ({detail})" if detail else "")
                )
            try:
                body = response.json()
                items = list(body.get("items") or [])
            except (ValueError, AttributeError, TypeError):
                raise DownloadError(
                    f"CMR search at {server}: the answer is not UMM-G JSON"
                ) from None
            hits_header = response.headers.get("CMR-Hits", "")
            hits = int(hits_header) if hits_header.isdigit() else body.get("hits")
            search_after = response.headers.get("CMR-Search-After")
        for record in items:
            try:
                granules.append(parse_granule(record))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("CMR search: skipped a record (%s)", exc)
        seen += len(items)
        if not items or not search_after or (isinstance(hits, int) and seen >= hits):
            return granules
    raise DownloadError(
        f"CMR search at {server}: more than sar.max_pages={cfg.max_pages} pages of "
        f"{cfg.page_size}; raise sar.max_pages or sar.page_size"
    )
