"""A scene the STAC provider stored (``item.json`` + one GeoTIFF window per asset) as the dNBR
stage reads it: the same :class:`OpticalScene` as a SAFE or a Landsat bundle.

Reflectance: Sentinel-2 from the asset's ``raster:bands`` scale/offset where the item gives them,
else from ``s2:processing_baseline`` (DN / 10000, with an offset of -0.1 from baseline 04.00 on,
as BOA_ADD_OFFSET = -1000); Landsat C2 L2 from ``raster:bands``, else scale 0.0000275 and offset
-0.2. Masks: the SCL classes or QA_PIXEL bits of the dnbr config. Sensor, tile and time for the
output names come from ``platform``, ``s2:mgrs_tile`` or ``landsat:wrs_path``/``wrs_row``, and
``datetime``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.errors import DataError
from firedpy_nrt.prepare.dnbr.scene import Band, OpticalScene, QualityBand

#: The item's JSON in an item folder; the STAC provider writes it, this module reads it.
ITEM_FILE = "item.json"
S2_QUANTIFICATION = 10000.0
S2_OFFSET_SINCE = (4, 0)  # processing baseline 04.00: BOA_ADD_OFFSET = -1000
LANDSAT_SCALE, LANDSAT_OFFSET = 0.0000275, -0.2


def is_item_folder(path: Path) -> bool:
    return path.is_dir() and (path / ITEM_FILE).is_file()


def _sensor(platform: str, product: str) -> str:
    p = platform.lower().replace("_", "-")
    if p.startswith("sentinel-2") and p[-1:] in "abcd":
        return f"S2{p[-1].upper()}"
    if p.startswith("landsat-") and p.removeprefix("landsat-").isdigit():
        return f"LC{int(p.removeprefix('landsat-')):02d}"
    raise DataError(f"{product}: unknown platform {platform!r} in item.json")


_S2_ID_TILE = re.compile(r"_(\d{2}[C-X][A-Z]{2})_")  # Earth Search ids: S2A_12SVC_20200507_0_L2A


def mgrs_tile(props: dict[str, Any], item_id: str) -> str | None:
    """The MGRS tile (``12SVC``) of a Sentinel-2 item: ``s2:mgrs_tile`` (Planetary Computer),
    the ``mgrs:*`` fields (Earth Search v1), or the tile in the item id."""
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"]).removeprefix("T")
    zone, band, square = (
        props.get(f"mgrs:{k}") for k in ("utm_zone", "latitude_band", "grid_square")
    )
    if zone and band and square:
        return f"{int(zone):02d}{band}{square}"
    match = _S2_ID_TILE.search(item_id) or re.search(r"_T(\d{2}[C-X][A-Z]{2})_", item_id)
    return match.group(1) if match else None


def _baseline(value: Any, product: str) -> tuple[int, int]:
    try:
        major, minor = str(value).split(".")
        return int(major), int(minor)
    except ValueError:
        raise DataError(f"{product}: unparsable s2:processing_baseline {value!r}") from None


def _scaling(asset: dict[str, Any], default: tuple[float, float]) -> tuple[float, float, int]:
    bands = asset.get("raster:bands") or [{}]
    first = bands[0] if isinstance(bands, list) and bands and isinstance(bands[0], dict) else {}
    scale = first.get("scale", default[0])
    offset = first.get("offset", default[1])
    nodata = first.get("nodata", 0)
    return float(scale), float(offset), int(nodata) if nodata is not None else 0


def read_item(folder: Path, cfg: DnbrConfig) -> OpticalScene:
    """The scene stored in ``folder`` by the STAC provider; DataError naming it when unusable."""
    product = folder.name
    try:
        item = json.loads((folder / ITEM_FILE).read_text(encoding="utf-8"))
        props = item["properties"]
        roles: dict[str, str] = item["firedpy"]["roles"]
        assets: dict[str, Any] = item["assets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{product}: unreadable item.json ({exc})") from None
    product = str(item.get("id", product))
    sensor = _sensor(str(props.get("platform", "")), product)
    try:
        acquired = dt.datetime.fromisoformat(str(props["datetime"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise DataError(f"{product}: item.json has no usable datetime") from None
    acquired = acquired.replace(tzinfo=None)
    if sensor.startswith("S2"):
        level = "L2A"
        square = mgrs_tile(props, product)
        if square is None:
            raise DataError(f"{product}: item.json names no MGRS tile (s2:mgrs_tile, mgrs:*)")
        tile = f"T{square}"
        baseline = _baseline(props.get("s2:processing_baseline", "04.00"), product)
        offset = -1000.0 / S2_QUANTIFICATION if baseline >= S2_OFFSET_SINCE else 0.0
        default = (1.0 / S2_QUANTIFICATION, offset)
        quality_kind, quality_values = "classes", tuple(cfg.sentinel2.scl_mask)
    else:
        level = "L2SP"
        try:
            tile = f"P{int(props['landsat:wrs_path']):03d}R{int(props['landsat:wrs_row']):03d}"
        except (KeyError, ValueError):
            raise DataError(f"{product}: item.json has no landsat:wrs_path/wrs_row") from None
        default = (LANDSAT_SCALE, LANDSAT_OFFSET)
        quality_kind, quality_values = "bits", tuple(cfg.landsat.qa_mask_bits)

    def local(role: str) -> tuple[str, dict[str, Any]]:
        key = roles.get(role)
        asset = assets.get(key) if key else None
        if not asset:
            raise DataError(f"{product}: no {role} band in item.json")
        path = (folder / str(asset["href"])).resolve()
        if folder.resolve() not in path.parents or not path.is_file():
            raise DataError(f"{product}: {role} band {asset['href']} is not in {folder}")
        return str(path), asset

    bands: dict[str, Band] = {}
    for role in ("nir", "swir", "red", "green", "blue"):
        if role not in roles:
            continue
        path, asset = local(role)
        scale, offset, nodata = _scaling(asset, default)
        bands[role] = Band(path, scale, offset, nodata)
    quality_path, _ = local("quality")
    quality = QualityBand(quality_path, quality_kind, quality_values)
    return OpticalScene(product, folder, sensor, level, tile, acquired, bands, quality)
