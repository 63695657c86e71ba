"""dNBR stage throughput and peak memory: block-wise (ours) against reading whole arrays.

    python benchmarks/dnbr.py               # a full 10980 x 10980 Sentinel-2 tile at 10 m (B08)
    python benchmarks/dnbr.py --size 2048   # quicker

A synthetic pre/post pair of L2A products (B08 at 10 m, B12 and SCL at 20 m, baseline 05.10 with
the -1000 offset, a burn and a cloud) is written once; each variant then runs in its own
subprocess so its peak resident memory (``ru_maxrss``, which sees GDAL's allocations, unlike
tracemalloc) is its own. Both write the same outputs: dNBR and burn mask as COGs at 10 m.
The bands are stored as tiled GeoTIFF under ``.jp2`` names (GDAL opens by content) so generating
a full tile takes seconds; ``--jp2`` re-encodes them as true JPEG 2000 (lossless, 1024 x 1024
tiles, as ESA ships them) to include OpenJPEG decoding. Both variants read the same files.

- ``blockwise``: ``firedpy_nrt.prepare.dnbr.process_events`` (windows, WarpedVRT for B12/SCL).
- ``whole``: what the replaced notebook did, made correct: read every band whole, bring B12 and
  SCL to 10 m with ``rasterio.warp.reproject`` into full arrays, compute, write whole arrays.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

CRS = "EPSG:32612"
X0, Y0 = 300000.0, 4000020.0
TILE = "T12SVC"
PRE = "S2A_MSIL2A_20200507T180909_N0510_R084_T12SVC_20200507T220022.SAFE"
POST = "S2B_MSIL2A_20200708T175921_N0510_R084_T12SVC_20200708T220022.SAFE"


def _mtd(name: str, images: list[str]) -> str:
    files = "".join(f"<IMAGE_FILE>{i}</IMAGE_FILE>" for i in images)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    return (
        "<Level-2A_User_Product><General_Info><Product_Info>"
        f"<PROCESSING_BASELINE>05.10</PROCESSING_BASELINE><Product_Organisation><Granule_List>"
        f"<Granule>{files}</Granule></Granule_List></Product_Organisation></Product_Info>"
        "<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
        "<BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>"
        f"<BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>"
        "</Product_Image_Characteristics></General_Info></Level-2A_User_Product>"
    )


def _field(rows: np.ndarray, cols: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Smooth, tile-wide reflectance texture (a few sines) so values vary like land cover."""
    rng = np.random.default_rng(seed)
    a = np.zeros((rows.size, cols.size), np.float32)
    for _ in range(4):
        fr, fc, ph = rng.uniform(2, 12, 2).tolist() + [rng.uniform(0, 6.28)]
        a += np.sin(rows[:, None] * fr * 6.28 / n + ph) * np.cos(cols[None, :] * fc * 6.28 / n)
    return a / 4


def to_jpeg2000(root: Path) -> None:
    """Re-encode every band as true JPEG 2000 (lossless, 1024 x 1024 tiles like ESA's products)."""
    import rasterio.shutil

    for path in sorted(root.rglob("*.jp2")):
        tmp = path.with_name(path.stem + ".tmp.jp2")
        rasterio.shutil.copy(path, tmp, driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES",
                             BLOCKXSIZE="1024", BLOCKYSIZE="1024", RESOLUTIONS="6")  # fmt: skip
        os.replace(tmp, path)


def make_scenes(root: Path, size: int) -> None:
    """Write the pre and post SAFE products for a ``size`` x ``size`` 10 m tile, block by block."""
    half = size // 2
    for name, post in ((PRE, False), (POST, True)):
        sensing = name.split("_")[2]
        granule = f"GRANULE/L2A_{TILE}_A000001_{sensing}/IMG_DATA"
        bands = {"B08": 10, "B12": 20, "SCL": 20}
        images = []
        for band, res in bands.items():
            rel = f"{granule}/R{res}m/{TILE}_{sensing}_{band}_{res}m"
            images.append(rel)
            path = root / name / f"{rel}.jp2"
            path.parent.mkdir(parents=True, exist_ok=True)
            n = size if res == 10 else half
            dtype = "uint8" if band == "SCL" else "uint16"
            with rasterio.open(
                path, "w", driver="GTiff", width=n, height=n, count=1, dtype=dtype, crs=CRS,
                transform=Affine(res, 0, X0, 0, -res, Y0), tiled=True, blockxsize=512,
                blockysize=512,
            ) as dst:  # fmt: skip
                for r0 in range(0, n, 1024):
                    rows = np.arange(r0, min(n, r0 + 1024))
                    cols = np.arange(n)
                    # Burn: a disc in the tile centre; cloud: a band across the top (post only).
                    rr, cc = rows[:, None] / n - 0.5, cols[None, :] / n - 0.5
                    burn = (rr**2 + cc**2 < 0.04) & post
                    if band == "SCL":
                        a = np.full((rows.size, n), 4, np.uint8)
                        if post:
                            a[(rows[:, None] / n < 0.1) & (cols[None, :] >= 0)] = 9
                    else:
                        base = 0.3 if band == "B08" else 0.15
                        refl = base + 0.08 * _field(rows, cols, n, 1 if band == "B08" else 2)
                        if band == "B08":
                            refl = np.where(burn, refl * 0.5, refl)
                        else:
                            refl = np.where(burn, refl * 1.6, refl)
                        a = np.round(refl * 10000 + 1000).astype(np.uint16)
                    dst.write(a, 1, window=rasterio.windows.Window(0, r0, n, rows.size))
        (root / name / "MTD_MSIL2A.xml").write_text(_mtd(name, images))


@dataclass(frozen=True)
class Event:
    id: str
    ig_date: dt.date
    last_date: dt.date
    geometry: object


def _event():
    from pyproj import Transformer
    from shapely.geometry import box
    from shapely.ops import transform

    tr = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    return Event("2282", dt.date(2020, 5, 20), dt.date(2020, 6, 10),
                 transform(tr.transform, box(X0 + 20000, Y0 - 80000, X0 + 80000, Y0 - 20000)))  # fmt: skip


def run_blockwise(scenes: Path, out: Path, block: int) -> None:
    from firedpy_nrt.config.dnbr import DnbrConfig
    from firedpy_nrt.prepare.dnbr import process_events

    cfg = DnbrConfig(scenes_dir=str(scenes), output_dir=str(out), block_size=block)
    cfg.sentinel2.nir_band = "B08"
    result = process_events([_event()], cfg)
    if result.failed or result.written != 2:
        raise SystemExit(f"blockwise run failed: {result}")


def run_whole(scenes: Path, out: Path) -> None:
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    def nbr(safe: Path) -> np.ndarray:
        img = next((safe / "GRANULE").iterdir()) / "IMG_DATA"
        with rasterio.open(next(img.glob("R10m/*_B08_10m.jp2"))) as src:
            nir = src.read(1)
            profile = src.profile
        swir = np.zeros_like(nir)
        scl = np.zeros(nir.shape, np.uint8)
        for pattern, dst, how in (("*_B12_20m.jp2", swir, Resampling.bilinear),
                                  ("*_SCL_20m.jp2", scl, Resampling.nearest)):  # fmt: skip
            with rasterio.open(next(img.glob(f"R20m/{pattern}"))) as src:
                reproject(src.read(1), dst, src_transform=src.transform, src_crs=src.crs,
                          dst_transform=profile["transform"], dst_crs=profile["crs"],
                          resampling=how, src_nodata=0, dst_nodata=0)  # fmt: skip
        n = (nir.astype(np.float32) - 1000) / 10000
        s = (swir.astype(np.float32) - 1000) / 10000
        with np.errstate(all="ignore"):
            v = np.clip((n - s) / (n + s), -1, 1)
        v[(nir == 0) | (swir == 0) | np.isin(scl, [0, 1, 3, 8, 9, 10, 11]) | ~(n + s > 0)] = np.nan
        return v, profile

    pre, profile = nbr(scenes / "2282" / "sentinel" / PRE)
    post, _ = nbr(scenes / "2282" / "sentinel" / POST)
    dnbr = pre - post
    mask = np.where(np.isnan(dnbr), 255, dnbr >= 0.1).astype(np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(driver="COG", width=dnbr.shape[1], height=dnbr.shape[0], count=1,
                  crs=profile["crs"], transform=profile["transform"], COMPRESS="DEFLATE",
                  PREDICTOR="YES", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")  # fmt: skip
    with rasterio.open(out / "whole_DNBR.TIF", "w", dtype="float32", nodata=np.nan, **common) as d:
        d.write(dnbr, 1)
    with rasterio.open(out / "whole_DNBR_MASK.TIF", "w", dtype="uint8", nodata=255, **common) as d:
        d.write(mask, 1)


def compare_reads(scenes: Path, block: int) -> None:
    """B12 (bilinear) and SCL (nearest) from 20 m onto the 10 m grid: our lattice reader vs GDAL."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from firedpy_nrt.config.dnbr import Sentinel2Config
    from firedpy_nrt.prepare.dnbr.grid import GridReader
    from firedpy_nrt.prepare.dnbr.sentinel2 import read_product
    from firedpy_nrt.raster_grid import RasterGrid

    scene = read_product(scenes / "2282" / "sentinel" / POST, Sentinel2Config(nir_band="B08"))
    with rasterio.open(scene.band("nir").path) as ds:
        grid = RasterGrid.of(ds)
    print(f"\n20 m -> 10 m reads, {block} px windows: lattice reader vs WarpedVRT")
    with rasterio.Env(GDAL_CACHEMAX=256):
        for name, path, how, nodata in (
            ("B12 bilinear", scene.band("swir").path, Resampling.bilinear, 0),
            ("SCL nearest", scene.quality.path, Resampling.nearest, None),
        ):
            with GridReader(grid) as reader:
                reader.add("b", path, scene.product, how, nodata)
                t0 = time.perf_counter()
                for w in grid.windows(block):
                    reader.read("b", w)
                ours = time.perf_counter() - t0
            with rasterio.open(path) as src, WarpedVRT(
                src, crs=grid.crs, transform=grid.transform, width=grid.width,
                height=grid.height, resampling=how, src_nodata=nodata, nodata=nodata,
            ) as vrt:  # fmt: skip
                t0 = time.perf_counter()
                for w in grid.windows(block):
                    vrt.read(1, window=w)
                gdal = time.perf_counter() - t0
            print(f"{name:<13} ours {ours:6.2f} s   WarpedVRT {gdal:6.2f} s   {gdal / ours:5.1f}x")


def child(variant: str, scenes: Path, out: Path, block: int) -> None:
    t0 = time.perf_counter()
    # Both variants get the same GDAL settings (the stage's defaults: 256 MB cache, all cores).
    with rasterio.Env(GDAL_CACHEMAX=256, GDAL_NUM_THREADS="ALL_CPUS"):
        if variant == "blockwise":
            run_blockwise(scenes, out, block)
        else:
            run_whole(scenes, out)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"variant": variant, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980, help="tile side at 10 m, pixels")
    ap.add_argument("--block", type=int, default=1024, help="dnbr.block_size for blockwise")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write (default: temp)")
    ap.add_argument(
        "--jp2",
        action="store_true",
        help="bands as true JPEG 2000 (slow to generate; measures OpenJPEG decoding too)",
    )
    ap.add_argument("--child", choices=("blockwise", "whole"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.size % 2:
        ap.error("--size must be even (20 m bands are half the size)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dnbr-bench-"))
    scenes = work / "scenes"
    if args.child:
        child(args.child, scenes, work / f"out-{args.child}", args.block)
        return

    sentinel = scenes / "2282" / "sentinel"
    if not (sentinel / POST / "MTD_MSIL2A.xml").exists():
        t0 = time.perf_counter()
        make_scenes(sentinel, args.size)
        if args.jp2:
            to_jpeg2000(sentinel)
        print(f"wrote synthetic {args.size} x {args.size} pair in {time.perf_counter() - t0:.1f} s")
    mpix = args.size * args.size / 1e6
    results = {}
    env = dict(os.environ)
    for variant in ("blockwise", "whole"):
        cmd = [sys.executable, __file__, "--child", variant, "--size", str(args.size),
               "--block", str(args.block), "--workdir", str(work)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(f"{variant}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            results[variant] = None
            continue
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\ntile {args.size} x {args.size} at 10 m ({mpix:.1f} Mpx), block {args.block}")
    print(f"{'variant':<10} {'seconds':>9} {'Mpx/s':>8} {'peak MB':>9}")
    for variant, r in results.items():
        if r:
            print(
                f"{variant:<10} {r['seconds']:9.1f} {mpix / r['seconds']:8.2f} {r['peak_mb']:9.0f}"
            )
    b, w = results.get("blockwise"), results.get("whole")
    if b and w:
        print(f"\nthroughput blockwise / whole: {w['seconds'] / b['seconds']:.2f}x")
        print(f"peak memory whole / blockwise: {w['peak_mb'] / b['peak_mb']:.2f}x")
        print(f"blockwise under 1.5 GB: {'yes' if b['peak_mb'] < 1536 else 'NO'}")
    compare_reads(scenes, args.block)
    if args.workdir is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
