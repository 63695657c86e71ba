"""The per-event manifest: which products are in ``scenes/<fire id>/`` and in what state.

``scenes/<fire id>/manifest.json`` lists one entry per product (satellite, provider, id, name,
sensing time, size, checksum, cloud cover, folder, status and, for a failure, why). It is
rewritten atomically after every change, so an interrupted run leaves a readable manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from firedpy_nrt.atomic import write_text
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.download.credentials import scrub
from firedpy_nrt.prepare.download.product import Product
from firedpy_nrt.prepare.events import FireEvent

MANIFEST_NAME = "manifest.json"
COMPLETE, FAILED, PENDING = "complete", "failed", "pending"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


class Manifest:
    """Thread-safe view of one event's manifest file."""

    def __init__(self, event_dir: Path, event: FireEvent) -> None:
        self.dir = event_dir
        self.path = event_dir / MANIFEST_NAME
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {
            "fire_id": event.id,
            "ig_date": event.ig_date.isoformat(),
            "last_date": event.last_date.isoformat(),
            "products": [],
        }
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())
                self._data["products"] = list(old.get("products", []))
            except (OSError, ValueError, AttributeError) as exc:
                raise DataError(f"{self.path}: unreadable manifest ({exc})") from None

    def entry(self, product: Product) -> dict[str, Any] | None:
        with self._lock:
            for item in self._data["products"]:
                if item.get("satellite") == product.satellite and item.get("id") == product.id:
                    return dict(item)
        return None

    def record(self, product: Product, status: str, error: str | None = None) -> None:
        entry: dict[str, Any] = {
            "satellite": product.satellite,
            "provider": product.provider,
            "id": product.id,
            "name": product.name,
            "sensing_time": product.sensing_time.isoformat(),
            "size": product.size,
            "checksum": {"algorithm": "MD5", "value": product.md5} if product.md5 else None,
            "cloud_cover": product.cloud_cover,
            "path": f"{product.satellite}/{product.folder_name}",
            "status": status,
            "updated": _now(),
        }
        if error:
            entry["error"] = scrub(error)
        with self._lock:
            items = [
                item
                for item in self._data["products"]
                if not (item.get("satellite") == product.satellite and item.get("id") == product.id)
            ]
            items.append(entry)
            items.sort(key=lambda i: (i.get("satellite", ""), i.get("sensing_time", "")))
            self._data["products"] = items
            self._write()

    def save(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        self._data["updated"] = _now()
        write_text(self.path, json.dumps(self._data, indent=2) + "\n")


def read_manifest(event_dir: Path) -> list[dict[str, Any]]:
    """The product entries of ``event_dir``'s manifest (empty when there is none)."""
    path = event_dir / MANIFEST_NAME
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()).get("products", []))
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from None
