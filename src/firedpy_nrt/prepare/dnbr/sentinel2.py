"""Sentinel-2 L2A products (``.SAFE`` folders or ``.zip`` archives of them).

Reflectance = (DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE, both read from ``MTD_MSIL2A.xml``:
processing baseline 04.00 and later (January 2022 on) store DN with an offset of -1000, older
products none; ignoring it biases NBR towards zero for every post-2022 scene. DN 0 is no data.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from firedpy_nrt.config.dnbr import Sentinel2Config
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr.scene import Band, OpticalScene, ProductFiles, QualityBand

METADATA = "MTD_MSIL2A.xml"
#: Band order of ``band_id`` in the L2A metadata (used when Spectral_Information is absent).
BAND_ORDER = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
_NAME = re.compile(
    r"^(?P<sensor>S2[ABCD])_MSIL2A_(?P<time>\d{8}T\d{6})_N(?P<baseline>\d{4})_R\d{3}_"
    r"(?P<tile>T\d{2}[A-Z]{3})_\d{8}T\d{6}"
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _physical(name: str) -> str:
    """``B1`` -> ``B01``, ``B8A`` stays."""
    name = name.strip().upper()
    m = re.fullmatch(r"B(\d{1,2})", name)
    return f"B{int(m.group(1)):02d}" if m else name


@dataclass(frozen=True)
class L2AMetadata:
    """What the dNBR needs from ``MTD_MSIL2A.xml``."""

    quantification: float
    offsets: dict[str, float]
    baseline: str
    spacecraft: str | None
    start: datetime | None
    image_files: tuple[str, ...]


def parse_metadata(text: str, product: str) -> L2AMetadata:
    """Parse ``MTD_MSIL2A.xml`` (any PSD version, with or without the 04.00 offsets)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DataError(f"{product}: {METADATA} is not valid XML ({exc})") from None
    quant = None
    offsets_by_id: dict[str, float] = {}
    band_names: dict[str, str] = {}
    baseline = ""
    spacecraft = None
    start = None
    images: list[str] = []
    try:
        for el in root.iter():
            tag = _local(el.tag)
            text_ = (el.text or "").strip()
            # PSD 14.6+ writes BOA_QUANTIFICATION_VALUE; older L2A products L2A_BOA_QUANTIFICATION_VALUE.
            if tag in ("BOA_QUANTIFICATION_VALUE", "L2A_BOA_QUANTIFICATION_VALUE"):
                quant = float(text_)
            elif tag == "BOA_ADD_OFFSET":
                offsets_by_id[el.get("band_id", "")] = float(text_)
            elif tag == "Spectral_Information" and el.get("bandId") is not None:
                band_names[el.get("bandId", "")] = _physical(el.get("physicalBand", ""))
            elif tag == "PROCESSING_BASELINE":
                baseline = text_
            elif tag == "SPACECRAFT_NAME":
                spacecraft = text_
            elif tag == "PRODUCT_START_TIME" and text_:
                start = datetime.fromisoformat(text_.replace("Z", "").split(".")[0])
            elif tag.startswith("IMAGE_FILE") and text_:
                images.append(text_)
    except ValueError as exc:
        raise DataError(f"{product}: {METADATA} has a malformed value ({exc})") from None
    if quant is None or quant <= 0:
        raise DataError(f"{product}: {METADATA} gives no BOA quantification value")
    offsets: dict[str, float] = {}
    for band_id, value in offsets_by_id.items():
        name = band_names.get(band_id)
        if name is None and band_id.isdigit() and int(band_id) < len(BAND_ORDER):
            name = BAND_ORDER[int(band_id)]
        if name:
            offsets[name] = value
    return L2AMetadata(quant, offsets, baseline, spacecraft, start, tuple(images))


def _band_member(files: ProductFiles, meta: L2AMetadata, band: str, res: int) -> str | None:
    """The member holding ``band`` at ``res`` metres: from the metadata's IMAGE_FILE list, else by name."""
    tail = f"_{band}_{res}m"
    for image in meta.image_files:
        if image.endswith(tail):
            hits = files.find(image + ".jp2")
            if hits:
                return hits[0]
    hits = [m for m in files.find(f"{tail}.jp2") if f"/IMG_DATA/R{res}m/" in m]
    return hits[0] if hits else None


def read_product(source: Path, cfg: Sentinel2Config) -> OpticalScene:
    """Open a Sentinel-2 L2A ``.SAFE`` folder or ``.zip``; DataError naming it when unusable."""
    files = ProductFiles(source)
    product = source.name.removesuffix(".zip").removesuffix(".ZIP")
    mtd = files.find("/" + METADATA) + [m for m in files.members if m == METADATA]
    if not mtd:
        raise DataError(f"{product}: no {METADATA} (not a Sentinel-2 L2A product?)")
    meta = parse_metadata(files.read_text(sorted(mtd, key=len)[0]), product)
    m = _NAME.match(Path(product).name)
    if m is None:
        raise DataError(f"{product}: not a Sentinel-2 L2A product name (S2x_MSIL2A_...)")
    sensor = m.group("sensor")
    if meta.spacecraft and meta.spacecraft.startswith("Sentinel-2"):
        sensor = "S2" + meta.spacecraft[-1]
    acquired = datetime.strptime(m.group("time"), "%Y%m%dT%H%M%S")

    # NBR grid: B8A and B12 at 20 m (default), or B08 at 10 m with B12 brought to 10 m bilinearly.
    res = 10 if cfg.nir_band == "B08" else 20
    wanted = {"nir": (cfg.nir_band, res), "swir": ("B12", 20)}
    wanted.update({"red": ("B04", res), "green": ("B03", res), "blue": ("B02", res)})
    bands: dict[str, Band] = {}
    for role, (name, band_res) in wanted.items():
        member = _band_member(files, meta, name, band_res)
        if member is None and role in ("nir", "swir"):
            raise DataError(f"{product}: band {name} at {band_res} m is missing")
        if member is None:
            continue
        offset = meta.offsets.get(name, 0.0)
        bands[role] = Band(
            files.gdal_path(member), 1.0 / meta.quantification, offset / meta.quantification
        )
    scl = _band_member(files, meta, "SCL", 20)
    if scl is None:
        raise DataError(f"{product}: scene classification band SCL (20 m) is missing")
    quality = QualityBand(files.gdal_path(scl), "classes", tuple(cfg.scl_mask))
    return OpticalScene(product, source, sensor, "L2A", m.group("tile"), acquired, bands, quality)
