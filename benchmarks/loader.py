"""Chips per second from the chip cache against reading and warping the GeoTIFFs per sample.

    PYTHONPATH=src python benchmarks/loader.py [--csv match.csv] [--fires 4 --size 512 --chip 128]

Without ``--csv`` it writes a small dataset of real UTM GeoTIFFs into a temporary folder (per
fire: luminance change at 20 m in zone 12, coherence change at 40 m, dNBR at 30 m in zone 13 with
a cloud gap, uint8 binary product). Both loaders yield the same chips (checked); the baseline is
what a per-sample dataset does: open the row's four rasters and warp the window each time.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from torch.utils.data import DataLoader

from firedpy_nrt.data.chips import ChipSettings, ensure_chip_cache
from firedpy_nrt.data.datamodule import ChipDataset
from firedpy_nrt.data.match_csv import read_match_csv
from firedpy_nrt.data.raster import AlignedRow, row_context

COLUMNS = ("fire_id", "lum_change", "coh_change", "dnbr", "binary_product")


def _tif(path: Path, a: np.ndarray, crs: str, transform, nodata=None) -> str:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=a.shape[0],
        width=a.shape[1],
        count=1,
        dtype=a.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    ) as dst:
        dst.write(a, 1)
    return str(path)


def make_dataset(folder: Path, fires: int, size: int) -> Path:
    """``fires`` fires of ``size`` x ``size`` pixels at 20 m, and their match CSV."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(fires):
        fid = str(1000 + i)
        x0, y0 = 400_000.0 + 30_000 * i, 4_000_000.0
        ext = size * 20.0
        yy, xx = np.mgrid[0:size, 0:size]
        burned = (xx - size * 0.4) ** 2 + (yy - size * 0.6) ** 2 < (size * 0.25) ** 2
        lum = (np.where(burned, -3.0, 0.0) + rng.normal(0, 0.5, burned.shape)).astype(np.float32)
        lum[:, -8:] = -9999.0
        lab = burned.astype(np.uint8)
        lab[: size // 16] = 255
        t = from_origin(x0, y0, 20, 20)
        coh = rng.normal(0, 0.2, (size // 2 + 10, size // 2 + 10)).astype(np.float32)
        left, bottom, right, top = transform_bounds(
            "EPSG:32612", "EPSG:32613", x0, y0 - ext, x0 + ext, y0
        )
        dw, dh = int((right - left) / 30) + 20, int((top - bottom) / 30) + 20
        dn = rng.normal(0.1, 0.1, (dh, dw)).astype(np.float32)
        dn[dh // 2 :, : dw // 3] = np.nan
        rows.append(
            {
                "fire_id": fid,
                "lum_change": _tif(
                    folder / f"{fid}_20200508_20200520_DeltaLumin_20m.tif",
                    lum,
                    "EPSG:32612",
                    t,
                    -9999.0,
                ),
                "coh_change": _tif(
                    folder / f"{fid}_20200426_20200508_20200520_cohChange.tif",
                    coh,
                    "EPSG:32612",
                    from_origin(x0 - 200, y0 + 200, 40, 40),
                ),
                "dnbr": _tif(
                    folder / f"S2B_L2A_T12SVC_{fid}_20200507T180909_20200526T175921_30m_DNBR.TIF",
                    dn,
                    "EPSG:32613",
                    from_origin(left - 300, top + 300, 30, 30),
                ),
                "binary_product": _tif(
                    folder / f"{fid}_FIREDpy_sar_combined_20200508_20200520.tif",
                    lab,
                    "EPSG:32612",
                    t,
                    255,
                ),
            }
        )
    path = folder / "match.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, help="a match CSV (default: generate a dataset)")
    ap.add_argument("--fires", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--chip", type=int, default=128)
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3, help="passes over the chips per loader")
    args = ap.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = args.csv or make_dataset(tmp, args.fires, args.size)
        settings = ChipSettings(args.chip, args.stride or args.chip, 0.1)
        t0 = time.perf_counter()
        cache = ensure_chip_cache(csv_path, tmp / "cache", settings, progress=False)
        build_s = time.perf_counter() - t0
        n = len(cache)
        rows = read_match_csv(csv_path).to_dict("records")

        loader = DataLoader(ChipDataset(cache, np.arange(n)), batch_size=args.batch_size)
        t0 = time.perf_counter()
        seen = 0
        for _ in range(args.epochs):
            for batch in loader:
                seen += batch["image"].shape[0]
        cached = seen / (time.perf_counter() - t0)

        s = settings.chip_size
        t0 = time.perf_counter()
        seen = 0
        for _ in range(args.epochs):
            for j in range(n):
                index, r0, c0 = (int(v) for v in cache.windows[j])
                rec = rows[index]
                with AlignedRow(rec, row_context(csv_path, index, rec["fire_id"])) as row:
                    image, label = row.read((r0, c0, s, s))
                seen += 1
                if j == 0:
                    np.testing.assert_array_equal(image, cache.images[j])
                    np.testing.assert_array_equal(label, cache.labels[j])
        direct = seen / (time.perf_counter() - t0)

        # Kinder baseline: every row's rasters opened once (as an LRU of open files would), so
        # only the windowed warp is paid per chip.
        opened = {
            i: AlignedRow(r, row_context(csv_path, i, r["fire_id"]))
            for i, r in enumerate(rows)
            if r["binary_product"]
        }
        t0 = time.perf_counter()
        seen = 0
        for _ in range(args.epochs):
            for j in range(n):
                index, r0, c0 = (int(v) for v in cache.windows[j])
                opened[index].read((r0, c0, s, s))
                seen += 1
        warp_only = seen / (time.perf_counter() - t0)
        for row in opened.values():
            row.close()

    print(f"chips: {n} of {s}x{s} px, 3 layers; cache built once in {build_s:.2f} s")
    print(f"cache (memmap .npy, DataLoader batch {args.batch_size}):      {cached:10.1f} chips/s")
    print(f"baseline (open + WarpedVRT read per chip):            {direct:10.1f} chips/s")
    print(f"baseline, rasters kept open (WarpedVRT read per chip): {warp_only:10.1f} chips/s")
    print(
        f"ratio cache / baseline: {cached / direct:.1f}x (vs kept-open warps: {cached / warp_only:.1f}x)"
    )


if __name__ == "__main__":
    main()
