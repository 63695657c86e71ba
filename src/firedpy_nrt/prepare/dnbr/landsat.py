"""Landsat 8/9 Collection 2 Level-2 products (product folders or ``.tar`` archives of them).

Surface reflectance = DN * REFLECTANCE_MULT_BAND_n + REFLECTANCE_ADD_BAND_n from the MTL's
LEVEL2_SURFACE_REFLECTANCE_PARAMETERS group (0.0000275 and -0.2 for every C2 product; the
configured values are the fallback). The MTL's LEVEL1 group has its own REFLECTANCE_MULT values
for top-of-atmosphere reflectance, which must not be used on SR bands. DN 0 is fill.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from firedpy_nrt.config.dnbr import LandsatConfig
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr.scene import Band, OpticalScene, ProductFiles, QualityBand

#: OLI band numbers of each role (Landsat 8 and 9).
OLI_BANDS = {"nir": 5, "swir": 7, "red": 4, "green": 3, "blue": 2}
SR_GROUP = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"
_NAME = re.compile(
    r"^(?P<sensor>L[COTEM]0\d)_(?P<level>L2S[PR])_(?P<path>\d{3})(?P<row>\d{3})_(?P<date>\d{8})_"
    r"\d{8}_02_(?:T1|T2|RT)"
)


def parse_mtl(text: str, product: str) -> dict[str, str]:
    """Flatten an MTL (``.xml`` or ``.txt``) to ``{"GROUP/KEY": value}`` with the innermost group."""
    out: dict[str, str] = {}
    if text.lstrip().startswith("<"):
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise DataError(f"{product}: MTL is not valid XML ({exc})") from None
        for group in root:
            for el in group:
                out[f"{group.tag}/{el.tag}"] = (el.text or "").strip().strip('"')
        return out
    groups: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip().strip('"')
        if key == "GROUP":
            groups.append(value)
        elif key == "END_GROUP":
            if groups:
                groups.pop()
        elif groups:
            out[f"{groups[-1]}/{key}"] = value
    return out


def _get(mtl: dict[str, str], key: str) -> str | None:
    for k, v in mtl.items():
        if k.endswith("/" + key):
            return v
    return None


def read_product(source: Path, cfg: LandsatConfig) -> OpticalScene:
    """Open a Landsat C2 L2 product folder or ``.tar``; DataError naming it when unusable."""
    files = ProductFiles(source)
    product = source.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if product.lower().endswith(suffix):
            product = product[: -len(suffix)]
    mtl_member = (files.find("_MTL.xml") or files.find("_MTL.txt") or [None])[0]
    if mtl_member is None:
        raise DataError(f"{product}: no MTL metadata (_MTL.xml or _MTL.txt)")
    mtl = parse_mtl(files.read_text(mtl_member), product)
    product_id = _get(mtl, "LANDSAT_PRODUCT_ID") or Path(mtl_member).name.rsplit("_MTL", 1)[0]
    m = _NAME.match(product_id)
    if m is None:
        raise DataError(f"{product}: not a Landsat Collection 2 Level-2 product id ({product_id})")
    sensor = m.group("sensor")
    if sensor not in ("LC08", "LC09"):
        raise DataError(f"{product}: sensor {sensor} is not supported (Landsat 8/9 OLI only)")
    day = _get(mtl, "DATE_ACQUIRED") or m.group("date")
    clock = (_get(mtl, "SCENE_CENTER_TIME") or "00:00:00").rstrip("Z").split(".")[0]
    try:
        acquired = datetime.fromisoformat(f"{day.replace('/', '-')}T{clock}")
    except ValueError:
        acquired = datetime.strptime(m.group("date"), "%Y%m%d")
    bands: dict[str, Band] = {}
    for role, number in OLI_BANDS.items():
        hits = files.find(f"_SR_B{number}.TIF")
        if not hits:
            if role in ("nir", "swir"):
                raise DataError(f"{product}: band SR_B{number} is missing")
            continue
        mult = mtl.get(f"{SR_GROUP}/REFLECTANCE_MULT_BAND_{number}")
        add = mtl.get(f"{SR_GROUP}/REFLECTANCE_ADD_BAND_{number}")
        try:
            scale = float(mult) if mult else cfg.scale
            offset = float(add) if add else cfg.offset
        except ValueError:
            raise DataError(f"{product}: MTL band {number} scaling is malformed") from None
        bands[role] = Band(files.gdal_path(hits[0]), scale, offset)
    qa = files.find("_QA_PIXEL.TIF")
    if not qa:
        raise DataError(f"{product}: quality band QA_PIXEL is missing")
    quality = QualityBand(files.gdal_path(qa[0]), "bits", tuple(cfg.qa_mask_bits))
    tile = f"P{m.group('path')}R{m.group('row')}"
    return OpticalScene(product, source, sensor, m.group("level"), tile, acquired, bands, quality)
