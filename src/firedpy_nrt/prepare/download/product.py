"""A scene product found by a search, the provider interface, and which products to keep."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from firedpy_nrt.errors import DownloadError
from firedpy_nrt.prepare.events import FireEvent

SATELLITES = ("sentinel", "landsat")
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_S2_NAME = re.compile(
    r"^(S2[A-D])_MSI(L\w\w)_(\d{8}T\d{6})_N(\d{4})_R(\d{3})_T(\w{5})_(\d{8}T\d{6})"
)
_LANDSAT_NAME = re.compile(r"^(L[COTEM]0\d)_(\w{4})_(\d{6})_(\d{8})_(\d{8})_(\d{2})_(T1|T2|RT)")
#: What a name from a server must look like to become a folder name: one path component of
#: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit (every Sentinel-2 and
#: Landsat product name does), so it can never be ``..``, absolute, hidden or contain a separator.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def safe_name(name: str, what: str = "product name") -> str:
    """``name`` if it is one safe path component; a DownloadError naming it otherwise."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise DownloadError(
            f"refused {what} {name[:120]!r}: not a plain file name (a server may not choose "
            "where files go)"
        )
    return name


@dataclass(frozen=True)
class Product:
    """One downloadable product: what the catalogue says about it and where to fetch it."""

    satellite: str
    provider: str
    id: str
    name: str
    sensing_time: dt.datetime
    url: str
    size: int | None = None
    md5: str | None = None
    cloud_cover: float | None = None
    online: bool = True
    #: The STAC item (a STAC provider's products), as the API sent it.
    item: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # The name becomes a folder and an archive name under paths.data_dir/scenes.
        safe_name(self.name)

    @property
    def folder_name(self) -> str:
        """The product's folder: ``<name>.SAFE`` for a Sentinel-2 archive, the product id for
        Landsat and for a STAC item."""
        name = self.name
        if self.item is not None:
            return name
        for suffix in _ARCHIVE_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        if self.satellite == "sentinel":
            return name if name.endswith(".SAFE") else f"{name}.SAFE"
        return name

    @property
    def archive_name(self) -> str:
        """The downloaded archive, named after the folder it holds."""
        return f"{self.folder_name.removesuffix('.SAFE')}.zip"

    @property
    def tile(self) -> str:
        """MGRS tile (``T12SVC``) or Landsat path/row (``P034R032``); the name when unknown."""
        props = (self.item or {}).get("properties") or {}
        if self.item is not None and self.satellite == "sentinel":
            from firedpy_nrt.prepare.dnbr.stac_item import mgrs_tile

            square = mgrs_tile(props, self.name)
            if square:
                return f"T{square}"
        if props.get("landsat:wrs_path") and props.get("landsat:wrs_row"):
            return f"P{int(props['landsat:wrs_path']):03d}R{int(props['landsat:wrs_row']):03d}"
        if m := _S2_NAME.match(self.name):
            return f"T{m.group(6)}"
        if m := _LANDSAT_NAME.match(self.name):
            return f"P{m.group(3)[:3]}R{m.group(3)[3:]}"
        return self.name

    @property
    def scene_key(self) -> tuple[str, ...]:
        """What stays the same when a scene is reprocessed (platform, tile, sensing date)."""
        if m := _S2_NAME.match(self.name):
            return (m.group(1), m.group(3), m.group(6))
        if m := _LANDSAT_NAME.match(self.name):
            return (m.group(1), m.group(3), m.group(4))
        return (self.name,)

    @property
    def processing_key(self) -> str:
        """Sorts newer processing of the same scene last (baseline/processing date)."""
        if m := _S2_NAME.match(self.name):
            return f"{m.group(4)}{m.group(7)}"
        if m := _LANDSAT_NAME.match(self.name):
            return f"{m.group(6)}{m.group(5)}"
        return self.name

    def label(self, event_id: str) -> str:
        return f"fire {event_id} {self.satellite} {self.name}"


class Provider(Protocol):
    """Searches one satellite's products and downloads one product's archive."""

    name: str
    satellite: str

    def search(self, event: FireEvent, start: dt.date, end: dt.date) -> list[Product]:
        """Products intersecting the event's outline and sensed in ``[start, end]``."""
        ...

    def download(self, product: Product, dest: Path) -> None:
        """Fetch the product's archive to ``dest`` (through ``<dest>.part``), verified."""
        ...


def search_window(event: FireEvent, days_before: int, days_after: int) -> tuple[dt.date, dt.date]:
    """The dates to search: ``days_before`` ahead of ignition to ``days_after`` past the end."""
    return (
        event.ig_date - dt.timedelta(days=days_before),
        event.last_date + dt.timedelta(days=days_after),
    )


def deduplicate(products: list[Product]) -> list[Product]:
    """Keep the newest processing of each scene (the catalogues list reprocessed copies too)."""
    best: dict[tuple[str, ...], Product] = {}
    for product in products:
        key = (product.satellite, *product.scene_key)
        if key not in best or product.processing_key > best[key].processing_key:
            best[key] = product
    return sorted(best.values(), key=lambda p: (p.sensing_time, p.name))


def select(products: list[Product], event: FireEvent, per_side: int | None) -> list[Product]:
    """Keep ``per_side`` scenes per tile before ignition and after the last date (nearest first).

    ``per_side`` None keeps every product. Scenes sensed during the fire are dropped then: they
    are neither a pre-fire nor a post-fire image.
    """
    products = deduplicate(products)
    if per_side is None:
        return products
    kept: list[Product] = []
    tiles = sorted({p.tile for p in products})
    for tile in tiles:
        mine = [p for p in products if p.tile == tile]
        before = [p for p in mine if p.sensing_time.date() < event.ig_date]
        after = [p for p in mine if p.sensing_time.date() > event.last_date]
        kept += sorted(before, key=lambda p: p.sensing_time, reverse=True)[:per_side]
        kept += sorted(after, key=lambda p: p.sensing_time)[:per_side]
    return sorted(kept, key=lambda p: (p.sensing_time, p.name))
