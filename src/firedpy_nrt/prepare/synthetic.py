"""A realistic synthetic dataset, written offline: SAR change layers, dNBR, labels, fire events.

Each fire gets a hidden "truth" on a grid twice as fine as the SAR pixels: an irregular burn-scar
polygon (with unburned islands and sometimes a spot-fire lobe) that grows from an ignition point
between the first and the last SAR dates, a burn-severity field, harvested fields and sometimes a
lake. The layers are then *observed* from that truth the way the sensors see it:

* luminance change: a log-ratio in dB of two gamma-speckled intensities (``looks``), shifted by a
  few dB over burns (weakly informative alone), plus a smooth moisture term and wind over water;
* coherence change: rises over burns, but also over harvested fields and noisily over water;
* dNBR: area-averaged onto its own Sentinel-2 (20 m) or Landsat (30 m) grid, for some fires in the
  neighbouring UTM zone; burned 0.05-0.8 by severity (some low-severity burns stay below 0.1),
  harvested fields 0.08-0.3, unburned N(0, ``dnbr_noise``), clouds as NaN gaps;
* binary product (the label): 1 where at least half a SAR pixel burned by the post date, 0 where
  not, 255 (nodata) beyond the swath edge, where the SAR layers are NaN.

So no layer alone gives the label: a dNBR >= 0.1 threshold misses clouds and low-severity burns and
fires on harvests; SAR alone is speckled. Every number is a config key (``synthetic.*``); the same
seed gives the same files.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds
from shapely import affinity
from shapely.geometry import Polygon, box, mapping
from shapely.ops import transform as shapely_transform
from shapely.ops import unary_union
from tqdm import tqdm

from firedpy_nrt.atomic import replace_dir, staging_dir
from firedpy_nrt.config.prepare import PrepareConfig, SyntheticConfig
from firedpy_nrt.data.layers import (
    SENSORS,
    binary_product_name,
    coh_change_name,
    dnbr_name,
    lum_change_name,
    resolution_label,
)
from firedpy_nrt.errors import DataError
from firedpy_nrt.geotiff import write_geotiff
from firedpy_nrt.prepare.pipeline import StageResult
from firedpy_nrt.raster_grid import RasterGrid

log = logging.getLogger(__name__)

#: Sub-folders of ``<data_dir>/synthetic`` (the match stage's ``source=synthetic`` reads them).
LAYER_DIRS = ("lum_change", "coh_change", "binary_product", "dnbr")
MANIFEST = "synthetic.json"
EVENTS = "events.gpkg"
LABEL_NODATA = 255
REVISIT_DAYS = 12  # Sentinel-1 repeat cycle
_TRUTH = 2  # truth pixels per SAR pixel (each way)
# Western North America: where FIREDpy events and UTM zones 10-13 are.
_LON = (-123.0, -103.0)
_LAT = (33.0, 46.0)
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_MGRS_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass
class FireSummary:
    """What was written for one fire (kept in ``synthetic.json`` for tests and curious users)."""

    id: str
    ig_date: str
    last_date: str
    sar_crs: str
    dnbr_crs: list[str] = field(default_factory=list)
    burned_fraction: float = 0.0
    cloud_fractions: list[float] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- random fields


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Gaussian-correlated noise (correlation length ``scale_px``), zero mean, unit variance."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (math.pi * scale_px) ** 2 * (fx**2 + fy**2))
    field_ = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    field_ -= field_.mean()
    std = field_.std()
    return (field_ / std if std > 0 else field_).astype(np.float32)


def _uniform_rank(values: np.ndarray) -> np.ndarray:
    """Values mapped to their rank in [0, 1] (a uniform marginal, same spatial pattern)."""
    order = np.argsort(values, axis=None, kind="stable")
    rank = np.empty(values.size, dtype=np.float32)
    rank[order] = np.linspace(0.0, 1.0, values.size, dtype=np.float32)
    return rank.reshape(values.shape)


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int = 96) -> Polygon:
    """An irregular closed shape: log-radius as a random sum of harmonics of the angle."""
    theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    log_r = np.zeros(n)
    for k in range(2, 8):
        log_r += rng.normal(0.0, 0.35 / k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r = radius * np.exp(log_r)
    poly = Polygon(np.column_stack([cx + r * np.cos(theta), cy + r * np.sin(theta)]))
    return poly if poly.is_valid else poly.buffer(0)


# ----------------------------------------------------------------------------- geography


def _utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180.0) // 6.0) + 1
    return (32600 if lat >= 0 else 32700) + zone


def _mgrs_tile(rng: np.random.Generator, epsg: int, lat: float) -> str:
    band = _LAT_BANDS[int((lat + 80.0) // 8.0)]
    letters = "".join(rng.choice(list(_MGRS_LETTERS), 2))
    return f"T{epsg % 100:02d}{band}{letters}"


def _landsat_tile(rng: np.random.Generator, lon: float, lat: float) -> str:
    # WRS-2 paths run westward ~1 per 1.7 degrees at these latitudes; rows ~1 per 1.3 degrees.
    path = int(np.clip(round(34 + (-111.0 - lon) / 1.7 + rng.integers(-1, 2)), 1, 233))
    row = int(np.clip(round(32 - (lat - 40.0) / 1.3), 1, 248))
    return f"P{path:03d}R{row:03d}"


def _overpass(day: date, lon: float, sensor: str) -> datetime:
    """Acquisition time in UTC: about 10:30 (Sentinel-2) or 10:10 (Landsat) local solar time."""
    local_h = 10.5 if sensor.startswith("S2") else 10.17
    seconds = int((local_h - lon / 15.0) * 3600) % 86400
    return datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)


# ----------------------------------------------------------------------------- one fire


class _Fire:
    """The hidden truth of one fire and the layers observed from it."""

    def __init__(
        self,
        cfg: SyntheticConfig,
        index: int,
        fire_id: str,
        other_crs: bool,
        start: date,
    ) -> None:
        self.cfg = cfg
        self.id = fire_id
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
        rng = self.rng
        # (Draws only for settings in use, so a population without them is the same as before.)
        jitter = float(rng.uniform(-cfg.size_jitter, cfg.size_jitter)) if cfg.size_jitter else 0.0
        n = cfg.size if not jitter else max(32, int(round(cfg.size * (1.0 + jitter) / 16)) * 16)
        self.size = n
        self._place(other_crs)
        t = n * _TRUTH
        px = cfg.sar_pixel_m
        self.sar = RasterGrid(self.crs, from_origin(self.x0, self.y0, px, px), n, n)
        self.truth = RasterGrid(
            self.crs, from_origin(self.x0, self.y0, px / _TRUTH, px / _TRUTH), t, t
        )
        # fire dates and the Sentinel-1 acquisitions around them
        self.ig = start + timedelta(days=int(rng.integers(0, 91)))
        first_post = self.ig + timedelta(days=int(rng.integers(1, REVISIT_DAYS)))
        self.last = self.ig + timedelta(days=int(rng.integers(5, 21)))
        self.pres = [first_post - timedelta(days=REVISIT_DAYS * k) for k in (1, 2)]
        n_posts = (cfg.pairs_per_fire + 1) // 2 + 1
        self.posts = [first_post + timedelta(days=REVISIT_DAYS * k) for k in range(n_posts)]
        self.pairs: list[tuple[date, date]] = []
        for post in self.posts:
            for pre in self.pres:
                if len(self.pairs) < cfg.pairs_per_fire:
                    self.pairs.append((pre, post))
        self._swath()
        self._scar()
        self._disturbances()
        self._physics(index)

    def _physics(self, index: int) -> None:
        """This fire's burn response, moisture and noise: the population's values, each scaled
        by its own U(1 - v, 1 + v) with v = ``fire_variation``, so that one population holds
        strong and faint burns, wet and dry dates, clean and noisy products. Drawn from a stream
        of their own, so that everything else about the fires is the same whatever v is."""
        cfg, v = self.cfg, self.cfg.fire_variation
        keys = ("lum_burn_db", "coh_burn_rise", "moisture_db", "coh_noise", "dnbr_noise")
        own = np.random.default_rng(np.random.SeedSequence([cfg.seed, index, 1]))
        scale = own.uniform(1.0 - v, 1.0 + v, len(keys))
        self.physics = {
            key: getattr(cfg, key) * float(f) for key, f in zip(keys, scale, strict=True)
        }

    # -- where and on which grid
    def _place(self, other_crs: bool) -> None:
        rng = self.rng
        lat = float(rng.uniform(*_LAT))
        if other_crs:
            # near a UTM zone border, so a dNBR tile of the next zone covers it (as MGRS tiles do)
            border = -180.0 + 6.0 * int(rng.integers(10, 13))  # -120, -114, -108
            side = 1.0 if rng.random() < 0.5 else -1.0
            lon = border + side * float(rng.uniform(0.08, 0.3))
            self.dnbr_epsg = _utm_epsg(border - side * 0.5, lat)
        else:
            lon = float(rng.uniform(*_LON))
            self.dnbr_epsg = _utm_epsg(lon, lat)
        self.lon, self.lat = lon, lat
        self.epsg = _utm_epsg(lon, lat)
        self.crs = f"EPSG:{self.epsg}"
        to_utm = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        e, nn = to_utm.transform(lon, lat)
        px = self.cfg.sar_pixel_m
        half = self.size * px / 2.0
        self.x0 = round((e - half) / px) * px
        self.y0 = round((nn + half) / px) * px

    def _coords(self, grid: RasterGrid) -> tuple[np.ndarray, np.ndarray]:
        """Scene coordinates in [0, 1] of the pixel centres of a grid in the SAR CRS."""
        u = (np.arange(grid.width) + 0.5) / grid.width
        v = (np.arange(grid.height) + 0.5) / grid.height
        return np.meshgrid(u, v)

    # -- swath edge: SAR nodata beyond a straight line
    def _swath(self) -> None:
        rng = self.rng
        ang = rng.uniform(0, 2 * math.pi)
        self.edge_normal = (math.cos(ang), math.sin(ang))
        self.edge_cut = float(rng.uniform(0.0, self.cfg.nodata_edge))

    def _valid(self, grid: RasterGrid, jitter: float = 0.0) -> np.ndarray:
        u, v = self._coords(grid)
        proj = (u - 0.5) * self.edge_normal[0] + (v - 0.5) * self.edge_normal[1]
        if self.edge_cut <= 0:
            return np.ones(proj.shape, dtype=bool)
        limit = np.quantile(proj, 1.0 - self.edge_cut) + jitter
        return proj <= limit

    def _raster(self, geom: Any, grid: RasterGrid) -> np.ndarray:
        if geom.is_empty:
            return np.zeros((grid.height, grid.width), dtype=bool)
        return rasterize(
            [(mapping(geom), 1)],
            out_shape=(grid.height, grid.width),
            transform=grid.transform,
            fill=0,
            dtype="uint8",
        ).astype(bool)

    # -- the burn scar, its growth and its severity
    def _scar(self) -> None:
        rng, cfg, g = self.rng, self.cfg, self.truth
        extent = self.size * cfg.sar_pixel_m
        scene = box(self.x0, self.y0 - extent, self.x0 + extent, self.y0)
        valid = self._valid(g)
        # centre inside the swath
        for _ in range(100):
            cu, cv = rng.uniform(0.3, 0.7, 2)
            iy, ix = int(cv * g.height), int(cu * g.width)
            if valid[iy, ix]:
                break
        cx, cy = self.x0 + cu * extent, self.y0 - cv * extent
        shape = _blob(rng, cx, cy, 1.0)
        if rng.random() < 0.5:  # a spot fire, downwind
            a = rng.uniform(0, 2 * math.pi)
            shape = unary_union(
                [shape, _blob(rng, cx + 1.2 * math.cos(a), cy + 1.2 * math.sin(a), 0.3)]
            )
        holes = [
            _blob(rng, cx + r * math.cos(a), cy + r * math.sin(a), rng.uniform(0.04, 0.09))
            for r, a in zip(rng.uniform(0.1, 0.6, 4), rng.uniform(0, 2 * math.pi, 4), strict=True)
        ]
        shape = shape.difference(unary_union(holes[: int(rng.integers(0, 5))]))
        target = float(rng.uniform(*cfg.burn_fraction))
        lo, hi = 0.0, extent * 1.5
        n_valid = max(int(valid.sum()), 1)
        for _ in range(22):  # bisection on the scale: burned share of the valid scene = target
            mid = (lo + hi) / 2
            geom = affinity.scale(shape, mid, mid, origin=(cx, cy)).intersection(scene)
            frac = float((self._raster(geom, g) & valid).sum()) / n_valid
            lo, hi = (mid, hi) if frac < target else (lo, mid)
        self.scar = affinity.scale(shape, hi, hi, origin=(cx, cy)).intersection(scene)
        self.scar_mask = self._raster(self.scar, g)
        # growth: arrival order from an ignition point, with irregular fronts
        ia = rng.uniform(0, 2 * math.pi)
        ix = cx + 0.5 * hi * math.cos(ia)
        iy = cy + 0.5 * hi * math.sin(ia)
        u, v = self._coords(g)
        dist = np.hypot(self.x0 + u * extent - ix, self.y0 - v * extent - iy) / max(hi, 1.0)
        arrival = dist + 0.35 * smooth_noise(rng, (g.height, g.width), g.width / 12)
        self.arrival = np.where(self.scar_mask, _uniform_rank(arrival), np.inf).astype(np.float32)
        # severity in [0, 1]: patchy; dNBR 0.05-0.8, some low-severity burns below 0.1
        sev = _uniform_rank(
            smooth_noise(rng, (g.height, g.width), g.width / 40)
            + 0.5 * smooth_noise(rng, (g.height, g.width), g.width / 160)
        )
        self.severity = sev
        # C-band response to burning depends on moisture and vegetation: strong in places, nil or
        # even reversed in others, which is why the luminance change alone is only a weak cue
        self.sar_response = np.clip(
            0.8 + 0.6 * smooth_noise(rng, (g.height, g.width), g.width / 10), -0.4, 1.6
        ).astype(np.float32)
        # Some fires brighten the scene instead (wet soil, debris, a dry canopy before): the
        # whole fire's luminance response is reversed.
        self.brightens = cfg.brightening_fraction > 0 and rng.random() < cfg.brightening_fraction
        if self.brightens:
            self.sar_response = -self.sar_response
        self.dnbr_burn = (0.05 + 0.75 * sev**1.3).astype(np.float32)

    def progress(self, day: date) -> float:
        span = max((self.last - self.ig).days, 1)
        return float(np.clip((day - self.ig).days / span, 0.0, 1.0))

    def burned_by(self, day: date) -> np.ndarray:
        p = self.progress(day)
        if p <= 0.0:
            return np.zeros(self.arrival.shape, dtype=bool)
        return self.arrival <= p

    # -- unburned disturbance: harvested fields, a lake
    def _disturbances(self) -> None:
        rng, cfg, g = self.rng, self.cfg, self.truth
        extent = self.size * cfg.sar_pixel_m
        shape = (g.height, g.width)
        self.harvest_coh = np.zeros(shape, np.float32)
        self.harvest_dnbr = np.zeros(shape, np.float32)
        self.harvest_lum = np.zeros(shape, np.float32)
        self.harvest = np.zeros(shape, bool)
        free = ~self.scar_mask
        tries = 0
        while self.harvest.mean() < cfg.disturbance_fraction and tries < 300:
            tries += 1
            w, h = rng.uniform(0.04, 0.12, 2) * extent
            cx = self.x0 + rng.uniform(0.05, 0.95) * extent
            cy = self.y0 - rng.uniform(0.05, 0.95) * extent
            rect = affinity.rotate(
                box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), rng.uniform(0, 90)
            )
            m = self._raster(rect, g) & free & ~self.harvest
            self.harvest |= m
            self.harvest_coh[m] = rng.uniform(0.15, 0.45)
            self.harvest_dnbr[m] = rng.uniform(0.05, 0.25)
            self.harvest_lum[m] = rng.uniform(-0.5, 1.5)
        self.water = np.zeros(shape, bool)
        if rng.random() < 0.5:
            for _ in range(20):
                lake = _blob(
                    rng,
                    self.x0 + rng.uniform(0.1, 0.9) * extent,
                    self.y0 - rng.uniform(0.1, 0.9) * extent,
                    rng.uniform(0.04, 0.08) * extent,
                )
                m = self._raster(lake, g)
                if not (m & (self.scar_mask | self.harvest)).any():
                    self.water = m
                    break

    # -- observations
    def sar_pair(self, d1: date, d2: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(luminance change dB, coherence change, label) on the SAR grid for one date pair."""
        rng, cfg, phys = self.rng, self.cfg, self.physics
        n = self.size
        k = _TRUTH
        burned = self.burned_by(d2) & ~self.burned_by(d1 - timedelta(days=1))
        frac = _block_mean(burned.astype(np.float32), k)
        sev = _block_mean(np.where(burned, self.severity, 0), k) / np.maximum(frac, 1e-6)
        response = _block_mean(self.sar_response, k)
        water = _block_mean(self.water.astype(np.float32), k)
        looks = cfg.looks
        speckle = 10.0 * np.log10(rng.gamma(looks, 1.0 / looks, (2, n, n)))
        lum = (
            phys["moisture_db"] * smooth_noise(rng, (n, n), n / 10)  # soil moisture, rain
            + frac * phys["lum_burn_db"] * (0.6 + 0.8 * sev) * response
            + _block_mean(self.harvest_lum, k)
            + water * rng.normal(0.0, 3.0, (n, n))  # wind on water
            + speckle[1]
            - speckle[0]
        )
        coh = (
            frac * phys["coh_burn_rise"] * (0.7 + 0.6 * sev)
            + _block_mean(self.harvest_coh, k)
            + 0.06 * smooth_noise(rng, (n, n), n / 8)  # wind in vegetation
            + water * rng.normal(0.0, 0.3, (n, n))
            + rng.normal(0.0, phys["coh_noise"], (n, n))
        )
        coh = np.clip(coh, -1.0, 1.0)
        valid = self._valid(self.sar, jitter=float(rng.normal(0.0, 0.01)))
        label = np.where(valid, frac >= 0.5, LABEL_NODATA).astype(np.uint8)
        lum = np.where(valid, lum, np.nan).astype(np.float32)
        coh = np.where(valid, coh, np.nan).astype(np.float32)
        return lum, coh, label

    def dnbr_grid(self, res: float) -> RasterGrid:
        """A dNBR product grid (its own CRS and pixel size) that covers the SAR scene."""
        extent = self.size * self.cfg.sar_pixel_m
        crs = f"EPSG:{self.dnbr_epsg}"
        left, bottom, right, top = transform_bounds(
            self.crs, crs, self.x0, self.y0 - extent, self.x0 + extent, self.y0
        )
        # products sit on their own pixel lattice, not the SAR one
        left = math.floor(left / res) * res - 2 * res
        top = math.ceil(top / res) * res + 2 * res
        width = math.ceil((right - left) / res) + 2
        height = math.ceil((top - bottom) / res) + 2
        return RasterGrid(crs, from_origin(left, top, res, res), width, height)

    def dnbr(
        self, t1: date, t2: date, res: float, cloud: float
    ) -> tuple[np.ndarray, RasterGrid, float]:
        """dNBR of a (pre t1, post t2) product on its grid, with clouds as NaN."""
        rng, cfg, noise = self.rng, self.cfg, self.physics["dnbr_noise"]
        burned = self.burned_by(t2) & ~self.burned_by(t1)
        truth = np.where(burned, self.dnbr_burn, self.harvest_dnbr).astype(np.float32)
        truth[self.water] = 0.0
        grid = self.dnbr_grid(res)
        out = self._truth_on(truth, grid, fill=np.nan)
        shape = out.shape
        out += rng.normal(0.0, noise, shape).astype(np.float32)
        water = self.water_on(grid)
        out[water] += rng.normal(0.0, 0.05, int(water.sum())).astype(np.float32)
        clouds = np.zeros(shape, bool)
        if cloud > 0:
            field_ = smooth_noise(rng, shape, 1500.0 / res / 2.5)
            clouds = field_ > np.quantile(field_, 1.0 - cloud)
        haze_share = float(rng.uniform(0.0, 2.0 * cfg.haze_fraction)) if cfg.haze_fraction else 0.0
        if haze_share > 0:
            # Thin haze the quality mask misses: the burn signal is damped there and noisier,
            # but the pixels stay valid.
            haze_field = smooth_noise(rng, shape, 2000.0 / res / 2.5)
            haze = (haze_field > np.quantile(haze_field, 1.0 - min(haze_share, 0.9))) & ~clouds
            damp = rng.uniform(0.15, 0.5)
            out[haze] = out[haze] * damp + rng.normal(0.0, 2 * noise, int(haze.sum()))
        out[clouds] = np.nan
        covered = np.isfinite(out).sum() + clouds.sum()
        return out, grid, float(clouds.sum() / max(covered, 1))

    def _truth_on(self, values: np.ndarray, grid: RasterGrid, fill: float) -> np.ndarray:
        """A field on the fine truth grid averaged onto ``grid`` (``fill`` outside it)."""
        out = np.full((grid.height, grid.width), fill, dtype=np.float32)
        reproject(
            values.astype(np.float32),
            out,
            src_transform=self.truth.transform,
            src_crs=self.truth.crs,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling.average,
            src_nodata=None,
            dst_nodata=fill,
        )
        return out

    def water_on(self, grid: RasterGrid) -> np.ndarray:
        return self._truth_on(self.water, grid, fill=0.0) >= 0.5


# ----------------------------------------------------------------------------- writing


def _fire_ids(rng: np.random.Generator, n: int) -> list[str]:
    return [str(i) for i in sorted(rng.choice(np.arange(1000, 99999), size=n, replace=False))]


def generate(cfg: SyntheticConfig, out_dir: Path) -> list[FireSummary]:
    """Write the whole dataset under ``out_dir`` (layer folders, events, manifest)."""
    for sub in LAYER_DIRS:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 10**6]))
    ids = _fire_ids(rng, cfg.n_fires)
    n_other = (
        0 if cfg.other_crs_fraction <= 0 else max(1, round(cfg.other_crs_fraction * cfg.n_fires))
    )
    other = set(rng.permutation(cfg.n_fires)[:n_other].tolist())
    start = date.fromisoformat(cfg.start_date)
    sar_res = resolution_label(cfg.sar_pixel_m)
    summaries: list[FireSummary] = []
    events: list[dict[str, Any]] = []
    for i in tqdm(range(cfg.n_fires), desc="synthetic: fires", unit="fire"):
        fire = _Fire(cfg, i, ids[i], i in other, start)
        s = FireSummary(
            id=fire.id,
            ig_date=fire.ig.isoformat(),
            last_date=fire.last.isoformat(),
            sar_crs=fire.crs,
        )
        burned_max = 0.0
        # one MGRS tile and one WRS-2 path/row per fire, as when products come from one tile
        s2_tile = _mgrs_tile(fire.rng, fire.dnbr_epsg, fire.lat)
        landsat_tile = _landsat_tile(fire.rng, fire.lon, fire.lat)
        for d1, d2 in fire.pairs:
            lum, coh, label = fire.sar_pair(d1, d2)
            valid = label != LABEL_NODATA
            burned_max = max(burned_max, float((label == 1).sum() / max(valid.sum(), 1)))
            d0 = d1 - timedelta(days=REVISIT_DAYS)
            for sub, name, arr, nodata in (
                ("lum_change", lum_change_name(fire.id, d1, d2, sar_res), lum, np.nan),
                ("coh_change", coh_change_name(fire.id, d0, d1, d2), coh, np.nan),
                ("binary_product", binary_product_name(fire.id, d1, d2), label, LABEL_NODATA),
            ):
                write_geotiff(out_dir / sub / name, arr, fire.sar, nodata)
                s.files.append(f"{sub}/{name}")
        s.burned_fraction = burned_max
        for j in range(cfg.dnbr_per_fire):
            sensor = SENSORS[(i * cfg.dnbr_per_fire + j) % len(SENSORS)]
            is_s2 = sensor.startswith("S2")
            res = cfg.s2_pixel_m if is_s2 else cfg.landsat_pixel_m
            post = fire.posts[j % len(fire.posts)]
            t2 = max(
                post + timedelta(days=int(fire.rng.integers(-6, 7))), fire.ig + timedelta(days=1)
            )
            t1 = fire.ig - timedelta(days=int(fire.rng.integers(8, 40)))
            cloud = float(np.clip(fire.rng.uniform(0.0, 2.0 * cfg.cloud_fraction), 0.0, 0.8))
            arr, grid, cloud_share = fire.dnbr(t1, t2, res, cloud)
            tile = s2_tile if is_s2 else landsat_tile
            name = dnbr_name(
                sensor,
                "L2A" if is_s2 else "L2SP",
                tile,
                fire.id,
                _overpass(t1, fire.lon, sensor),
                _overpass(t2, fire.lon, sensor),
                resolution_label(res),
            )
            write_geotiff(out_dir / "dnbr" / name, arr, grid, np.nan)
            s.files.append(f"dnbr/{name}")
            s.dnbr_crs.append(grid.crs)
            s.cloud_fractions.append(round(cloud_share, 4))
        to_wgs84 = Transformer.from_crs(fire.crs, "EPSG:4326", always_xy=True).transform
        events.append(
            {
                "id": int(fire.id),
                "ig_date": fire.ig.isoformat(),
                "last_date": fire.last.isoformat(),
                "event_dur": (fire.last - fire.ig).days + 1,
                "tot_ar_km2": round(fire.scar.area / 1e6, 3),
                "geometry": shapely_transform(to_wgs84, fire.scar),
            }
        )
        summaries.append(s)
    _write_events(events, out_dir)
    write_preview(out_dir, summaries)
    return summaries


def write_preview(out_dir: Path, summaries: list[FireSummary], max_fires: int = 12) -> Path:
    """``preview.png``: per fire, its first pair's luminance and coherence change, label and dNBR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = summaries[:max_fires]
    fig, axes = plt.subplots(len(shown), 4, figsize=(12, 3 * len(shown)), squeeze=False)
    panels = (
        ("lum_change", "luminance change (dB)", {"cmap": "RdBu", "vmin": -8, "vmax": 8}),
        ("coh_change", "coherence change", {"cmap": "viridis", "vmin": -0.5, "vmax": 0.8}),
        ("binary_product", "label (binary product)", {"cmap": "magma", "vmin": 0, "vmax": 1}),
        ("dnbr", "dNBR", {"cmap": "YlOrRd", "vmin": -0.1, "vmax": 0.8}),
    )
    for ax_row, fire in zip(axes, shown, strict=True):
        for ax, (sub, title, style) in zip(ax_row, panels, strict=True):
            name = next(f for f in fire.files if f.startswith(sub + "/"))
            with rasterio.open(out_dir / name) as ds:
                data = ds.read(1, masked=True).astype("float32").filled(np.nan)
            image = ax.imshow(data, **style)
            ax.set_title(f"{fire.id}: {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = out_dir / "preview.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def _write_events(events: list[dict[str, Any]], out_dir: Path) -> None:
    """FIREDpy-style events: a GeoPackage, and a CSV with WKT geometry for tools without GDAL."""
    import geopandas as gpd

    frame = gpd.GeoDataFrame(events, geometry="geometry", crs="EPSG:4326")
    frame.to_file(out_dir / EVENTS, driver="GPKG", layer="events")
    table = frame.drop(columns="geometry")
    table["geometry"] = frame.geometry.to_wkt()
    table.to_csv(out_dir / "events.csv", index=False)


# ----------------------------------------------------------------------------- the stage


def _settings(scfg: SyntheticConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(scfg)))


def _complete(out: Path, scfg: SyntheticConfig) -> bool:
    """True when ``out`` holds a finished dataset made with these settings."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("settings") != _settings(scfg):
        return False
    files = [f for fire in manifest.get("fires", []) for f in fire.get("files", [])]
    return bool(files) and all((out / f).is_file() for f in files) and (out / EVENTS).is_file()


def run_stage(cfg: PrepareConfig) -> StageResult:
    """Write ``<paths.data_dir>/synthetic``; kept as is when already made with the same settings.

    The dataset is generated in a temporary folder and renamed into place, so an interrupted run
    never leaves half a dataset that looks finished. An existing dataset made with other settings
    is replaced only with ``overwrite=true``.
    """
    scfg = cfg.synthetic
    overwrite = cfg.overwrite
    out = Path(cfg.paths.data_dir).expanduser().absolute() / "synthetic"
    result = StageResult(stage="synthetic")
    if out.exists():
        if _complete(out, scfg) and not overwrite:
            log.info("synthetic: %s already holds this dataset (seed %d)", out, scfg.seed)
            result.skipped = 1
            return result
        if not overwrite:
            raise DataError(
                f"{out} already exists but was made with other settings or is incomplete; "
                "pass overwrite=true to regenerate it, or choose another paths.data_dir"
            )
    tmp = staging_dir(out)
    try:
        summaries = generate(scfg, tmp)
        manifest = {"settings": _settings(scfg), "fires": [asdict(s) for s in summaries]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_files = sum(len(s.files) for s in summaries)
    log.info(
        "synthetic: wrote %d fires (%d rasters) and %s under %s",
        len(summaries),
        n_files,
        EVENTS,
        out,
    )
    result.written = n_files
    return result
