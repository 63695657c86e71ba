"""A small real SAR scene for the SAR stage's tests, and the truth to check its outputs against.

Track 71 descending has two overlapping bursts (A: columns 0-89, B: 70-159 of a 30 m UTM
lattice) on five dates; the fire burns a disc between d1 and d2, darkening the backscatter by
3 dB and decorrelating the pair that spans it. Burst A's d2 image exists twice: an older
production with wrong values and the newer, right one. A decoy track (144 ascending) covers
only the event's east end. HyP3 products are 80 m coherence rasters on one lattice, the
(d0, d1) product's raster offset by whole pixels from the (d1, d2) one's.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

CRS = "EPSG:32611"
X0, Y0, RES = 500_000.0, 4_200_000.0, 30.0
ROWS, COLS = 80, 160
COH_RES = 80.0
COH_X0, COH_Y0 = X0 - 800.0, Y0 + 800.0  # the (d1, d2) product's origin
COH_ROWS, COH_COLS = 50, 80
PRE_SHIFT = (2, 3)  # the (d0, d1) product starts 2 columns east, 3 rows south
IG_DATE, LAST_DATE = dt.date(2021, 6, 20), dt.date(2021, 7, 1)
DATES = [
    dt.date(2021, 5, 21),
    dt.date(2021, 6, 2),
    dt.date(2021, 6, 14),
    dt.date(2021, 6, 26),
    dt.date(2021, 7, 8),
]
D0, D1, D2 = DATES[1], DATES[2], DATES[4]
DECOY_DATES = [dt.date(2021, 6, 5), dt.date(2021, 6, 17), dt.date(2021, 7, 11)]
EVENT_BOX = (X0 + 40 * RES, Y0 - 60 * RES, X0 + 120 * RES, Y0 - 20 * RES)  # UTM
BURSTS = {"T071-151230-IW1": (0, 90), "T071-151231-IW2": (70, 160)}  # columns


def utm_to_lonlat(geom):
    return shape(transform_geom(CRS, "EPSG:4326", mapping(geom)))


def slc_name(day: dt.date, track: int = 71) -> str:
    stamp = f"{day:%Y%m%d}T1354{track % 60:02d}"
    end = f"{day:%Y%m%d}T1355{track % 60:02d}"
    return f"S1A_IW_SLC__1SDV_{stamp}_{end}_0{38000 + track:05d}_0486{track % 100:02d}_1A2B"


def _burned() -> np.ndarray:
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    return (rows - 40) ** 2 + (cols - 85) ** 2 <= 15**2


def _cog(array: np.ndarray, transform, nodata: float | None) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.tif"
        with rasterio.open(
            path,
            "w",
            driver="COG",
            width=array.shape[1],
            height=array.shape[0],
            count=1,
            dtype=array.dtype.name,
            crs=CRS,
            transform=transform,
            nodata=nodata,
            blocksize=128,
        ) as ds:
            ds.write(array, 1)
        return path.read_bytes()


def _umm(
    ur: str,
    burst: str,
    path: int,
    direction: str,
    when: dt.datetime,
    footprint,
    urls: dict[str, str],
    slc: str,
    concept: int,
) -> dict[str, Any]:
    points = [
        {"Longitude": round(x, 6), "Latitude": round(y, 6)} for x, y in footprint.exterior.coords
    ]
    related = [
        {
            "URL": url,
            "Type": "GET DATA",
            "Description": f"Download {url.rsplit('/', 1)[1]}",
            "Format": "GeoTIFF",
        }
        for url in urls.values()
    ] + [
        {
            "URL": f"s3://asf-cumulus-prod-opera-products/OPERA_L2_RTC-S1/{ur}/{ur}_VV.tif",
            "Type": "GET DATA VIA DIRECT ACCESS",
            "Format": "GeoTIFF",
        },
        {
            "URL": f"https://datapool.asf.alaska.edu/BROWSE/OPERA-S1/{ur}_BROWSE.png",
            "Type": "GET RELATED VISUALIZATION",
            "Format": "PNG",
        },
    ]
    return {
        "meta": {
            "concept-type": "granule",
            "concept-id": f"G{concept}-ASF",
            "revision-id": 1,
            "native-id": ur,
            "provider-id": "ASF",
            "format": "application/vnd.nasa.cmr.umm+json",
        },
        "umm": {
            "TemporalExtent": {
                "RangeDateTime": {
                    "BeginningDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "EndingDateTime": (when + dt.timedelta(seconds=3)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                }
            },
            "OrbitCalculatedSpatialDomains": [{"OrbitNumber": 38350}],
            "GranuleUR": ur,
            "AdditionalAttributes": [
                {"Name": "ASCENDING_DESCENDING", "Values": [direction]},
                {"Name": "BEAM_MODE", "Values": ["IW"]},
                {"Name": "OPERA_BURST_ID", "Values": [burst.replace("-", "_")]},
                {"Name": "PATH_NUMBER", "Values": [str(path)]},
                {"Name": "POLARIZATION", "Values": ["VV", "VH"]},
                {"Name": "PROCESSING_TYPE", "Values": ["RTC"]},
                {"Name": "SUBSWATH_NAME", "Values": [burst[-3:]]},
            ],
            "SpatialExtent": {
                "HorizontalSpatialDomain": {
                    "Geometry": {"GPolygons": [{"Boundary": {"Points": points}}]}
                }
            },
            "CollectionReference": {"ShortName": "OPERA_L2_RTC-S1_V1", "Version": "1"},
            "InputGranules": [slc, "S1A_OPER_AUX_POEORB_OPOD_20210704T121510_V20210613T225942"],
            "DataGranule": {
                "ArchiveAndDistributionInformation": [
                    {
                        "Name": url.rsplit("/", 1)[1],
                        "SizeInBytes": 30000,
                        "Format": "GeoTIFF",
                        "Checksum": {"Value": "0" * 32, "Algorithm": "MD5"},
                    }
                    for url in urls.values()
                ]
            },
            "RelatedUrls": related,
        },
    }


@dataclass
class SarScene:
    """The truth of the scene, and what the server holds."""

    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(3))
    power: dict[dt.date, np.ndarray] = field(default_factory=dict)
    coh_co: np.ndarray | None = None  # (d1, d2) coherence on its own raster
    coh_pre: np.ndarray | None = None  # (d0, d1) coherence on its own (shifted) raster

    def build(self, state) -> None:
        """Fill the server's granules and files; set its product callback."""
        base = self.rng.uniform(0.02, 0.3, (ROWS, COLS)).astype(np.float32)
        burned = _burned()
        for day in DATES:
            factor = np.where(burned & (day > LAST_DATE), 10 ** (-3 / 10), 1.0)
            noise = self.rng.uniform(0.9, 1.1, (ROWS, COLS))
            self.power[day] = (base * factor * noise).astype(np.float32)
        concept = 1000
        for burst, (c0, c1) in BURSTS.items():
            footprint = utm_to_lonlat(box(X0 + c0 * RES, Y0 - ROWS * RES, X0 + c1 * RES, Y0))
            for k, day in enumerate(DATES):
                image = self.power[day][:, c0:c1].copy()
                if burst.endswith("IW1"):
                    image[:30, 80:] = np.nan  # the other burst has these pixels
                transform = from_origin(X0 + c0 * RES, Y0, RES, RES)
                productions = [(dt.timedelta(hours=9), image)]
                if burst.endswith("IW1") and day == D2:  # an older, wrong production
                    productions.insert(0, (dt.timedelta(hours=5), np.ones_like(image)))
                for delay, values in productions:
                    when = dt.datetime.combine(day, dt.time(13, 55, k))
                    produced = when + delay
                    ur = (
                        f"OPERA_L2_RTC-S1_{burst}_{when:%Y%m%dT%H%M%S}Z_"
                        f"{produced:%Y%m%dT%H%M%S}Z_S1A_30_v1.0"
                    )
                    state.files[f"{ur}_VV.tif"] = _cog(values, transform, float("nan"))
                    urls = {p: state.data_url(f"{ur}_{p}.tif") for p in ("VV", "VH")}
                    concept += 1
                    state.granules.append(
                        _umm(
                            ur,
                            burst,
                            71,
                            "DESCENDING",
                            when,
                            footprint,
                            urls,
                            slc_name(day),
                            concept,
                        )
                    )
        # The decoy track: one burst over the event's east end only.
        footprint = utm_to_lonlat(box(X0 + 105 * RES, Y0 - ROWS * RES, X0 + 200 * RES, Y0))
        for k, day in enumerate(DECOY_DATES):
            when = dt.datetime.combine(day, dt.time(1, 30, k))
            ur = (
                f"OPERA_L2_RTC-S1_T144-307000-IW3_{when:%Y%m%dT%H%M%S}Z_"
                f"{when + dt.timedelta(hours=7):%Y%m%dT%H%M%S}Z_S1A_30_v1.0"
            )
            values = np.full((ROWS, 95), 0.5, dtype=np.float32)
            state.files[f"{ur}_VV.tif"] = _cog(
                values, from_origin(X0 + 105 * RES, Y0, RES, RES), float("nan")
            )
            urls = {p: state.data_url(f"{ur}_{p}.tif") for p in ("VV", "VH")}
            concept += 1
            state.granules.append(
                _umm(
                    ur,
                    "T144-307000-IW3",
                    144,
                    "ASCENDING",
                    when,
                    footprint,
                    urls,
                    slc_name(day, 144),
                    concept,
                )
            )
        # Coherence: 0.75 before; across the fire 0.2 over the burn; 0 (nodata) in a strip.
        rows, cols = np.mgrid[0:COH_ROWS, 0:COH_COLS]
        x = COH_X0 + (cols + 0.5) * COH_RES
        y = COH_Y0 - (rows + 0.5) * COH_RES
        burn_x, burn_y = X0 + 85.5 * RES, Y0 - 40.5 * RES
        burned_coh = (x - burn_x) ** 2 + (y - burn_y) ** 2 <= (15 * RES) ** 2
        co = np.where(burned_coh, 0.2, 0.75) + self.rng.uniform(-0.05, 0.05, burned_coh.shape)
        co[:, :3] = 0.0
        self.coh_co = co.astype(np.float32)
        pre = 0.75 + self.rng.uniform(-0.05, 0.05, (COH_ROWS, COH_COLS))
        pre[20:23, :] = 0.0
        self.coh_pre = pre.astype(np.float32)
        state.product = self.product

    def product(self, granules: list[str]) -> tuple[str, bytes]:
        """A HyP3 INSAR_GAMMA product zip for the pair ``granules``."""
        pre = sorted(granules) == sorted([slc_name(D0), slc_name(D1)])
        co = sorted(granules) == sorted([slc_name(D1), slc_name(D2)])
        assert pre or co, f"an unexpected pair was submitted: {granules}"
        first, second = (D0, D1) if pre else (D1, D2)
        stem = (
            f"S1AA_{first:%Y%m%d}T135446_{second:%Y%m%d}T135446_VVP"
            f"{(second - first).days:03d}_INT80_G_ueF_{'A1B2' if pre else 'C3D4'}"
        )
        if pre:
            dc, dr = PRE_SHIFT
            transform = from_origin(COH_X0 + dc * COH_RES, COH_Y0 - dr * COH_RES, COH_RES, COH_RES)
            array = self.coh_pre[dr:, dc:]
        else:
            transform = from_origin(COH_X0, COH_Y0, COH_RES, COH_RES)
            array = self.coh_co
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(
                f"{stem}/{stem}_corr.tif", _cog(np.ascontiguousarray(array), transform, 0.0)
            )
            zf.writestr(f"{stem}/{stem}_amp.tif", _cog(np.ones((4, 4), np.float32), transform, 0.0))
            zf.writestr(f"{stem}/{stem}.README.md.txt", "HyP3 InSAR product\n")
        return f"{stem}.zip", buffer.getvalue()

    # -- truth on an output grid ------------------------------------------------------------
    def expected_lum(self, transform, shape_: tuple[int, int]) -> np.ndarray:
        rows, cols = np.mgrid[0 : shape_[0], 0 : shape_[1]]
        x = transform.c + (cols + 0.5) * transform.a
        y = transform.f + (rows + 0.5) * transform.e
        c = np.floor((x - X0) / RES).astype(int)
        r = np.floor((Y0 - y) / RES).astype(int)
        inside = (r >= 0) & (r < ROWS) & (c >= 0) & (c < COLS)
        out = np.full(shape_, np.nan)
        pre, post = self.power[D1], self.power[D2]
        out[inside] = 10 * np.log10(post[r[inside], c[inside]] / pre[r[inside], c[inside]])
        return out

    def expected_coh(self, transform, shape_: tuple[int, int]) -> np.ndarray:
        rows, cols = np.mgrid[0 : shape_[0], 0 : shape_[1]]
        x = transform.c + (cols + 0.5) * transform.a
        y = transform.f + (rows + 0.5) * transform.e
        c = np.floor((x - COH_X0) / COH_RES).astype(int)
        r = np.floor((COH_Y0 - y) / COH_RES).astype(int)
        out = np.full(shape_, np.nan)
        dc, dr = PRE_SHIFT
        inside = (r >= dr) & (r < COH_ROWS) & (c >= dc) & (c < COH_COLS)
        co = self.coh_co[r[inside], c[inside]]
        pre = self.coh_pre[r[inside], c[inside]]
        value = np.where((co > 0) & (pre > 0), pre - co, np.nan)
        out[inside] = value
        return out


def write_events(path: Path, event_id: int = 3129) -> Path:
    outline = utm_to_lonlat(box(*EVENT_BOX))
    feature = {
        "type": "Feature",
        "properties": {
            "id": event_id,
            "ig_date": IG_DATE.isoformat(),
            "last_date": LAST_DATE.isoformat(),
        },
        "geometry": mapping(outline),
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path
