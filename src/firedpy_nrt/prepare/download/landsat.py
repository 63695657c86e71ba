"""Landsat 8/9 Collection 2 Level-2 surface reflectance from the Copernicus Data Space.

The Data Space mirrors the USGS Landsat 8 and 9 collections (``LANDSAT-8``, ``LANDSAT-9``),
reachable with the same account, token, search and download service as Sentinel-2; USGS M2M
would need a second account, a separate access request and a different download flow (scene
lists, then per-file URLs). Level-2 products are picked by the level in their name
(``LC08_L2SP_...``), Collection 2 by its ``_02_`` field, and the tier from the name's end.
"""

from __future__ import annotations

import datetime as dt
import re

from firedpy_nrt.prepare.download.cdse import CdseProvider, product_filter, search_outline
from firedpy_nrt.prepare.download.product import Product
from firedpy_nrt.prepare.events import FireEvent

_NAME = re.compile(r"^L[CO]0[89]_(\w{4})_\d{6}_\d{8}_\d{8}_(\d{2})_(T1|T2|RT)")


class LandsatCdseProvider(CdseProvider):
    """Landsat 8/9 C2 L2 products, each extracted to a folder named by its product id."""

    def product_filter(self, event: FireEvent, start: dt.date, end: dt.date) -> str:
        return product_filter(
            list(self.cfg.landsat.collections),
            start,
            end,
            search_outline(event.geometry),
            self.cfg.cloud_cover,
            name_contains=f"_{self.cfg.landsat.level}_",
        )

    def keep(self, product: Product) -> bool:
        match = _NAME.match(product.name)
        if not match or match.group(1) != self.cfg.landsat.level or match.group(2) != "02":
            return False
        return not self.cfg.landsat.tiers or match.group(3) in self.cfg.landsat.tiers
