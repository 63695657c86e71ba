"""Benchmark the STAC provider's windowed read against downloading the whole asset.

    PYTHONPATH=src python benchmarks/stac_window.py [--size 10980] [--fire-m 2000] [--buffer-m 1000]

One Sentinel-2-like asset (a ``--size`` x ``--size`` uint16 Cloud-Optimized GeoTIFF at 20 m,
deflate, 512-pixel blocks, as the providers serve them) behind a Range-capable HTTP server on
127.0.0.1, and one fire of ``--fire-m`` metres across in it. Ours: ``StacProvider`` reads the
window that covers the fire plus ``--buffer-m`` (HTTP range requests through GDAL). Baseline:
download the whole file (what a SAFE zip or a full-asset download does). The same run prints
bytes read and seconds for both, and their ratios; the server counts the bytes it sends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import rasterio  # noqa: E402
from affine import Affine  # noqa: E402
from shapely.geometry import box  # noqa: E402
from shapely.ops import transform as shapely_transform  # noqa: E402

from firedpy_nrt.config.download import DownloadConfig  # noqa: E402
from firedpy_nrt.geotiff import GeoTiffWriter  # noqa: E402
from firedpy_nrt.prepare.download.product import Product  # noqa: E402
from firedpy_nrt.prepare.download.stac import StacProvider  # noqa: E402
from firedpy_nrt.prepare.events import FireEvent  # noqa: E402
from firedpy_nrt.raster_grid import RasterGrid  # noqa: E402

CRS = "EPSG:32612"
X0, Y0, RES = 399_960.0, 4_000_020.0, 20.0


def make_asset(path: Path, size: int) -> Path:
    grid = RasterGrid(
        rasterio.crs.CRS.from_string(CRS), Affine(RES, 0, X0, 0, -RES, Y0), size, size
    )
    rng = np.random.default_rng(0)
    with GeoTiffWriter(path, grid, "uint16", nodata=0, block=512) as w:
        for window in grid.windows(1024):
            h, wd = int(window.height), int(window.width)
            w.write(rng.integers(1000, 5000, (h, wd), dtype=np.uint16), window)
        w.commit()
    return path


def serve(path: Path) -> tuple[ThreadingHTTPServer, dict[str, int]]:
    data = path.read_bytes()
    sent = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                body = data[start : end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(body)
            with lock:
                sent["bytes"] += len(body)
                sent["requests"] += 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980, help="asset width and height (pixels)")
    ap.add_argument("--fire-m", type=float, default=2000.0, help="fire extent (metres)")
    ap.add_argument("--buffer-m", type=float, default=1000.0)
    args = ap.parse_args()

    from pyproj import Transformer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        asset = make_asset(work / "B8A.tif", args.size)
        server, sent = serve(asset)
        url = f"http://127.0.0.1:{server.server_address[1]}/B8A.tif"
        cx, cy = X0 + RES * args.size / 2, Y0 - RES * args.size / 2
        half = args.fire_m / 2
        to_wgs = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform
        fire = shapely_transform(to_wgs, box(cx - half, cy - half, cx + half, cy + half))
        event = FireEvent("1", dt.date(2020, 5, 1), dt.date(2020, 5, 10), fire)

        cfg = DownloadConfig()
        cfg.stac.sign = "none"
        cfg.stac.buffer_m = args.buffer_m
        provider = StacProvider("sentinel", cfg)
        provider.roles = ("nir",)  # one asset: the figures are per asset
        item = {"id": "bench", "properties": {}, "assets": {"B8A": {"href": url}}}
        product = Product("sentinel", "stac", "bench", "bench", dt.datetime(2020, 5, 20), url,
                          item=item)  # fmt: skip

        t0 = time.perf_counter()
        provider.fetch(product, work / "scenes" / "bench", event)
        ours_s = time.perf_counter() - t0
        ours_bytes, ours_requests = sent["bytes"], sent["requests"]
        with rasterio.open(work / "scenes" / "bench" / "B8A.tif") as ds:
            shape = (ds.height, ds.width)

        sent["bytes"] = sent["requests"] = 0
        t0 = time.perf_counter()
        with urllib.request.urlopen(url) as response, open(work / "whole.tif", "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        base_s = time.perf_counter() - t0
        base_bytes = sent["bytes"]
        server.shutdown()

    size_mb = base_bytes / 1e6
    print(f"asset: {args.size} x {args.size} px uint16 COG, {size_mb:.1f} MB; fire "
          f"{args.fire_m:g} m + {args.buffer_m:g} m buffer -> window {shape[0]} x {shape[1]} px")  # fmt: skip
    print(f"ours (window through range requests): {ours_bytes / 1e6:8.2f} MB in {ours_requests} "
          f"requests, {ours_s:6.2f} s")  # fmt: skip
    print(f"baseline (whole asset download):      {size_mb:8.2f} MB, {base_s:6.2f} s")
    print(f"ratio baseline/ours: bytes {base_bytes / max(ours_bytes, 1):.0f}x, "
          f"time {base_s / max(ours_s, 1e-9):.1f}x (loopback: no network latency or bandwidth "
          "limit, so the time ratio understates a real link)")  # fmt: skip


if __name__ == "__main__":
    main()
