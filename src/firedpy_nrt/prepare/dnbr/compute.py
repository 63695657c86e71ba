"""Block-wise NBR, dNBR, burn mask, severity classes and RGB for one pre/post pair.

Everything runs window by window on the pre-fire scene's NIR grid, so memory depends on
``dnbr.block_size``, not on the tile: a 10980 x 10980 Sentinel-2 tile at 10 m costs a few
hundred MB. A coarser ``dnbr.resolution`` averages the native dNBR (GDAL ``average`` over valid
pixels only) instead of resampling reflectances, so a pixel half under cloud keeps the clear half.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from rasterio.windows import Window

from firedpy_nrt.atomic import remove, temporary
from firedpy_nrt.config.dnbr import DnbrConfig
from firedpy_nrt.data.layers import dnbr_name, resolution_label, rgb_name
from firedpy_nrt.errors import DataError
from firedpy_nrt.geotiff import GeoTiffWriter
from firedpy_nrt.prepare.dnbr.grid import GridReader, overlaps, to_grid_crs
from firedpy_nrt.prepare.dnbr.pairing import Event, Pair
from firedpy_nrt.prepare.dnbr.scene import RGB_ROLES, OpticalScene
from firedpy_nrt.raster_grid import RasterGrid

log = logging.getLogger(__name__)

MASK_NODATA = 255
#: Block edge of the stage's outputs and work files (pixels).
WORK_BLOCK = 512
#: USGS severity class names (values 1..7) written into the severity raster's tags.
SEVERITY_CLASSES = (
    "enhanced regrowth, high",
    "enhanced regrowth, low",
    "unburned",
    "low severity",
    "moderate-low severity",
    "moderate-high severity",
    "high severity",
)


@dataclass
class PairOutcome:
    """Files one pair wrote, and those it left alone because they were already there."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def nbr(nir: np.ndarray, swir: np.ndarray) -> np.ndarray:
    """Normalised burn ratio (NIR - SWIR) / (NIR + SWIR), float32, NaN where undefined.

    L2A reflectance can be slightly negative (dark water, the 04.00 offset); where the sum is not
    positive the ratio means nothing, and the result is clipped to [-1, 1] so dNBR stays in [-2, 2].
    """
    total = nir + swir
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (nir - swir) / total
    out[~(total > 0)] = np.nan
    np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def burn_mask(dnbr: np.ndarray, threshold: float) -> np.ndarray:
    """1 where dNBR >= threshold, 0 below, 255 where dNBR is NaN."""
    out = (dnbr >= threshold).astype(np.uint8)
    out[np.isnan(dnbr)] = MASK_NODATA
    return out


def severity(dnbr: np.ndarray, breaks: list[float]) -> np.ndarray:
    """USGS severity class 1..7 from the six dNBR ``breaks``; 255 where dNBR is NaN."""
    out = (np.digitize(dnbr, np.asarray(breaks, dtype=np.float32)) + 1).astype(np.uint8)
    out[np.isnan(dnbr)] = MASK_NODATA
    return out


def _scene_nbr(reader: GridReader, scene: OpticalScene, tag: str, window: Window) -> np.ndarray:
    nir, swir = scene.band("nir"), scene.band("swir")
    value = nbr(
        nir.reflectance(reader.read(f"{tag}.nir", window)),
        swir.reflectance(reader.read(f"{tag}.swir", window)),
    )
    value[scene.quality.invalid(reader.read(f"{tag}.q", window))] = np.nan
    return value


def _grid_of(path: str, product: str) -> RasterGrid:
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise DataError(f"{product}: {path.rsplit('/', 1)[-1]} has no CRS")
            return RasterGrid.of(ds)
    except RasterioError as exc:
        msg = (str(exc).splitlines() or ["unreadable"])[0]
        raise DataError(f"{product}: cannot open {path.rsplit('/', 1)[-1]} ({msg})") from None


def output_grids(pre: OpticalScene, resolution: float | None) -> tuple[RasterGrid, RasterGrid]:
    """The native NBR grid (pre scene's NIR band) and the output grid at ``resolution``."""
    native = _grid_of(pre.band("nir").path, pre.product)
    if resolution is None or resolution <= native.res * (1 + 1e-9):
        if resolution is not None and not math.isclose(resolution, native.res):
            log.warning(
                "%s: dnbr.resolution %s m is finer than the native %s m; writing native",
                pre.product,
                resolution,
                native.res,
            )
        return native, native
    return native, native.coarsened(resolution)


def _timestamp(t: datetime) -> datetime:
    return t.replace(microsecond=0)


class _Products:
    """The dNBR, mask and severity writers of one pair (only those still to write)."""

    def __init__(
        self, paths: dict[str, Path], grid: RasterGrid, cfg: DnbrConfig, tags: dict[str, str]
    ):
        self.cfg = cfg
        self.writers: dict[str, GeoTiffWriter] = {}
        try:
            self._open(paths, grid, cfg, tags)
        except BaseException:
            self.__exit__()
            raise

    def _open(self, paths: dict[str, Path], grid: RasterGrid, cfg: DnbrConfig, tags: dict) -> None:
        if "dnbr" in paths:
            self.writers["dnbr"] = _cog(
                paths["dnbr"], grid, "float32", nodata=float("nan"), tags=tags,
                descriptions=("dNBR",), threads=cfg.threads,
            )  # fmt: skip
        if "mask" in paths:
            self.writers["mask"] = _cog(
                paths["mask"], grid, "uint8", nodata=MASK_NODATA, overview_resampling="NEAREST",
                tags={**tags, "threshold": str(cfg.threshold), "values": "1 burned, 0 unburned"},
                descriptions=("burn mask",), threads=cfg.threads,
            )  # fmt: skip
        if "severity" in paths:
            classes = {str(i + 1): name for i, name in enumerate(SEVERITY_CLASSES)}
            self.writers["severity"] = _cog(
                paths["severity"], grid, "uint8", nodata=MASK_NODATA, overview_resampling="NEAREST",
                tags={**tags, **classes, "breaks": str(cfg.severity_breaks)},
                descriptions=("USGS burn severity class",), threads=cfg.threads,
            )  # fmt: skip

    def __enter__(self) -> _Products:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.writers.values():
            w.__exit__(*exc)

    def write(self, dnbr: np.ndarray, window: Window) -> None:
        if "dnbr" in self.writers:
            self.writers["dnbr"].write(dnbr, window)
        if "mask" in self.writers:
            self.writers["mask"].write(burn_mask(dnbr, self.cfg.threshold), window)
        if "severity" in self.writers:
            self.writers["severity"].write(severity(dnbr, self.cfg.severity_breaks), window)

    def commit(self) -> list[Path]:
        """Finish every product, then give them their names together."""
        for w in self.writers.values():
            w.finish()
        return [w.publish() for w in self.writers.values()]


def _cog(path: Path, grid: RasterGrid, dtype: str, **options: Any) -> GeoTiffWriter:
    """A dNBR-stage COG: 512-pixel blocks (GDAL's JPEG 2000 tiles read fastest that way)."""
    return GeoTiffWriter(path, grid, dtype, block=WORK_BLOCK, **options)


def process_pair(
    pair: Pair, event: Event, cfg: DnbrConfig, out_dir: Path, overwrite: bool = False
) -> PairOutcome:
    """Write the pair's dNBR, burn mask (and severity, RGB when configured); DataError on bad input."""
    pre, post = pair.pre, pair.post
    native, out_grid = output_grids(pre, cfg.resolution)
    post_grid = _grid_of(post.band("nir").path, post.product)
    if not overlaps(native, post_grid):
        raise DataError(f"{pre.product} and {post.product} share no pixels")
    label = resolution_label(out_grid.res)
    t1, t2 = _timestamp(pre.acquired), _timestamp(post.acquired)
    # The name carries the post scene's sensor (the date the matching keys on) and pre's tile.
    args = (post.sensor, post.level, pre.tile, event.id, t1, t2, label)
    wanted = {"dnbr": out_dir / dnbr_name(*args), "mask": out_dir / dnbr_name(*args, "DNBR_MASK")}
    if cfg.severity:
        wanted["severity"] = out_dir / dnbr_name(*args, "DNBR_SEVERITY")
    outcome = PairOutcome()
    todo = {}
    for key, path in wanted.items():
        if path.exists() and not overwrite:
            outcome.skipped.append(path)
        else:
            todo[key] = path
    tags = {
        "pre_product": pre.product,
        "post_product": post.product,
        "fire_id": str(event.id),
        "resolution_m": f"{out_grid.res:g}",
    }
    if todo:
        outcome.written += _write_dnbr(pair, event, cfg, native, out_grid, todo, tags)
    if cfg.rgb.enabled:
        for which in cfg.rgb.scenes:
            scene = pre if which == "pre" else post
            path = out_dir / rgb_name(
                scene.sensor, scene.level, scene.tile, event.id, _timestamp(scene.acquired), label
            )
            if path.exists() and not overwrite:
                outcome.skipped.append(path)
                continue
            outcome.written.append(write_rgb(scene, out_grid, cfg, path))
    return outcome


def _open_pair(reader: GridReader, pre: OpticalScene, post: OpticalScene) -> None:
    for tag, scene in (("pre", pre), ("post", post)):
        for role in ("nir", "swir"):
            band = scene.band(role)
            reader.add(f"{tag}.{role}", band.path, scene.product, Resampling.bilinear, band.nodata)
        reader.add(f"{tag}.q", scene.quality.path, scene.product, Resampling.nearest, None)


def _write_dnbr(
    pair: Pair,
    event: Event,
    cfg: DnbrConfig,
    native: RasterGrid,
    out_grid: RasterGrid,
    todo: dict[str, Path],
    tags: dict[str, str],
) -> list[Path]:
    pre, post = pair.pre, pair.post
    clip = to_grid_crs(event.geometry, native.crs, cfg.pairing.buffer_m) if cfg.clip else None
    coarse = not out_grid.same_as(native)
    first = next(iter(todo.values()))
    native_tmp = temporary(first, ".native")
    valid = 0
    try:
        with GridReader(native) as reader, _Products(todo, out_grid, cfg, tags) as products:
            _open_pair(reader, pre, post)
            # Coarse output: the native dNBR goes to a work file, then is averaged into the output.
            sink = (
                GeoTiffWriter(
                    native_tmp, native, "float32", nodata=float("nan"), cog=False, block=WORK_BLOCK
                )
                if coarse
                else None
            )
            try:
                for window in native.windows(cfg.block_size):
                    dnbr = _scene_nbr(reader, pre, "pre", window)
                    dnbr -= _scene_nbr(reader, post, "post", window)
                    if clip is not None:
                        outside = geometry_mask(
                            [clip],
                            (int(window.height), int(window.width)),
                            native.window_transform(window),
                        )
                        dnbr[outside] = np.nan
                    valid += int(np.count_nonzero(~np.isnan(dnbr)))
                    if sink is not None:
                        sink.write(dnbr, window)
                    else:
                        products.write(dnbr, window)
                if sink is not None:
                    sink.commit()
            finally:
                if sink is not None:
                    sink.abort()
            if valid == 0:
                raise DataError(
                    f"{pre.product} and {post.product} share no valid pixel "
                    "(masked, nodata or outside each other)"
                )
            if coarse:
                with GridReader(out_grid) as coarse_reader:
                    coarse_reader.add(
                        "d", str(native_tmp), "native dNBR", Resampling.average, float("nan")
                    )
                    for window in out_grid.windows(cfg.block_size):
                        products.write(coarse_reader.read("d", window), window)
            written = products.commit()
    finally:
        remove(native_tmp)
    log.info(
        "fire %s: %s -> %s, %d valid pixels at %s m",
        event.id,
        pre.product,
        post.product,
        valid,
        f"{native.res:g}",
    )
    return written


def write_rgb(scene: OpticalScene, grid: RasterGrid, cfg: DnbrConfig, path: Path) -> Path:
    """The scene's red, green, blue on ``grid``: float32 reflectance or a stretched 8-bit quicklook."""
    bands = [scene.band(role) for role in RGB_ROLES]
    quicklook = cfg.rgb.mode == "quicklook"
    lo, hi = cfg.rgb.stretch
    with (
        GridReader(grid) as reader,
        _cog(
            path,
            grid,
            "uint8" if quicklook else "float32",
            count=3,
            nodata=0 if quicklook else float("nan"),
            descriptions=("red", "green", "blue"),
            tags={"product": scene.product, "mode": cfg.rgb.mode},
            threads=cfg.threads,
        ) as writer,
    ):
        for role, band in zip(RGB_ROLES, bands, strict=True):
            reader.add(role, band.path, scene.product, Resampling.average
                       if grid.res > _grid_of(band.path, scene.product).res * 1.001
                       else Resampling.bilinear, band.nodata)  # fmt: skip
        for window in grid.windows(cfg.block_size):
            refl = np.stack(
                [
                    b.reflectance(reader.read(role, window))
                    for role, b in zip(RGB_ROLES, bands, strict=True)
                ]
            )
            if quicklook:
                scaled = np.clip((refl - lo) / (hi - lo) * 254.0 + 1.0, 1.0, 255.0)
                out = np.where(np.isnan(refl), 0, scaled).astype(np.uint8)
                writer.write(out, window)
            else:
                writer.write(refl, window)
        return writer.commit()
