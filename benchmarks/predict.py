"""Benchmark of ``predict``: throughput and peak memory against a plain loop of tiles.

    python benchmarks/predict.py                       # 2048^2 and 6144^2 synthetic scenes, CPU
    python benchmarks/predict.py --sizes 1024 4096 --tile-size 256 --accelerator gpu

Ours: the full pipeline (overlapping tiles, Gaussian blending, ``trainer.predict``, streamed
HDF5 + COG + PNG). Baseline: a plain loop of non-overlapping tiles through the same model into a
whole-scene array, written as one GeoTIFF at the end (what a script without streaming does). Each
run is a separate subprocess so its peak resident memory (``ru_maxrss``) is its own; the figure
that matters is how memory moves from the small to the large scene. Both runs get the same GDAL
block cache (``--gdal-cache-mb``), which otherwise fills up to 5% of RAM as a scene is read. Model: a tiny CNN (a 3x3 and
a 1x1 convolution over the normalised layers and validity channels), so the I/O and stitching, which
are what this code adds, are not hidden behind a large network's time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rasterio.windows import Window  # noqa: E402

FIRE = "4242"


class TinyNet(pl.LightningModule):
    """Follows interface 7: saved hyperparameters, Normalize-style buffers, forward(raw) -> logits."""

    def __init__(self, num_layers: int = 3, width: int = 8, threshold: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.register_buffer("mean", torch.zeros(num_layers))
        self.register_buffer("std", torch.ones(num_layers))
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(2 * num_layers, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, 1, 1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        valid = torch.isfinite(x).to(x.dtype)
        return self.net(torch.cat([torch.nan_to_num(x, nan=0.0), valid], dim=1))


# -- synthetic data, written block by block ---------------------------------------------------
def _write_layer(path: Path, size: int, seed: int, nodata: float | None) -> None:
    profile = {
        "driver": "GTiff", "height": size, "width": size, "count": 1, "dtype": "float32",
        "crs": "EPSG:32612", "transform": from_origin(500_000.0, 4_000_000.0, 20.0, 20.0),
        "nodata": nodata, "tiled": True, "blockxsize": 512, "blockysize": 512,
        "compress": "deflate", "predictor": 3,
    }  # fmt: skip
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **profile) as dst:
        for y0 in range(0, size, 512):
            h = min(512, size - y0)
            yy, xx = np.mgrid[y0 : y0 + h, 0:size].astype(np.float32)
            block = np.sin(yy / 97.0 + seed) * np.cos(xx / 131.0) + 0.1 * rng.standard_normal(
                (h, size), dtype=np.float32
            )
            if nodata is not None:
                block[:, : size // 20] = nodata  # a nodata border strip
            dst.write(block.astype(np.float32), 1, window=Window(0, y0, size, h))


def make_scene(root: Path, size: int) -> Path:
    """Layers of one ``size x size`` scene and its match CSV; returns the CSV."""
    d = root / f"scene_{size}"
    d.mkdir(parents=True, exist_ok=True)
    lum = d / f"{FIRE}_20200508_20200520_DeltaLumin_20m.tif"
    coh = d / f"{FIRE}_20200426_20200508_20200520_cohChange.tif"
    dnbr = d / f"S2B_L2A_T12SVC_{FIRE}_20200507T180909_20200708T175921_20m_DNBR.TIF"
    for i, (path, nodata) in enumerate(((lum, -9999.0), (coh, None), (dnbr, None))):
        if not path.exists():
            _write_layer(path, size, i, nodata)
    csv = d / "match.csv"
    csv.write_text(
        f"fire_id,lum_change,coh_change,dnbr,binary_product\n{FIRE},{lum.name},{coh.name},{dnbr.name},\n"
    )
    return csv


def make_checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    module = TinyNet()
    path = root / "tiny.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": pl.__version__ if hasattr(pl, "__version__") else "2.6",
        },
        path,
    )
    return path


# -- the two methods, each run in its own process -----------------------------------------------
def run_ours(csv: Path, ckpt: Path, out: Path, args: argparse.Namespace) -> None:
    from hydra import compose, initialize_config_dir

    from firedpy_nrt.config import validate
    from firedpy_nrt.config.predict import PredictConfig
    from firedpy_nrt.config.store import register_schemas
    from firedpy_nrt.predict.run import predict

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="predict",
            overrides=[
                f"ckpt={ckpt}", f"data.match_csv={csv}", "split=all", f"output_dir={out}",
                f"paths.output_dir={out}", "module_class=__main__.TinyNet",
                f"tile_size={args.tile_size}", f"overlap={args.overlap}", f"blend={args.blend}",
                f"batch_size={args.batch_size}", f"trainer.accelerator={args.accelerator}",
                f"trainer.precision={args.precision}", "overwrite=true",
                f"gdal_cache_mb={args.gdal_cache_mb}", f"data.num_workers={args.num_workers}",
            ],
        )  # fmt: skip
    predict(validate(cfg, PredictConfig))


def run_baseline(csv: Path, ckpt: Path, out: Path, args: argparse.Namespace) -> None:
    """Non-overlapping tiles, in a loop, into a whole-scene array; one GeoTIFF at the end."""
    from firedpy_nrt.data.match_csv import read_match_csv
    from firedpy_nrt.data.raster import AlignedRow

    device = torch.device("cuda" if args.accelerator in ("gpu", "cuda") else "cpu")
    model = TinyNet.load_from_checkpoint(ckpt, map_location=device).eval()
    row = read_match_csv(csv).iloc[0].to_dict()
    t = args.tile_size
    with AlignedRow(row) as reader, torch.no_grad():
        prob = np.full((reader.height, reader.width), np.nan, dtype=np.float32)
        for y0 in range(0, reader.height, t):
            for x0 in range(0, reader.width, t):
                image, _ = reader.read(Window(x0, y0, t, t))  # padded past the edge
                x = torch.from_numpy(image)[None].to(device)
                p = torch.sigmoid(model(x).float())[0, 0].cpu().numpy()
                h, w = min(t, reader.height - y0), min(t, reader.width - x0)
                prob[y0 : y0 + h, x0 : x0 + w] = p[:h, :w]
        lum, _ = reader.read_label()
        prob[np.isnan(lum)] = np.nan
        profile = {
            "driver": "GTiff", "height": reader.height, "width": reader.width, "count": 1,
            "dtype": "float32", "crs": reader.crs, "transform": reader.transform,
            "nodata": float("nan"), "tiled": True, "compress": "deflate",
        }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(out / "baseline_pred.tif", "w", **profile) as dst:
        dst.write(prob, 1)


def child(args: argparse.Namespace) -> None:
    csv, ckpt, out = Path(args.csv), Path(args.ckpt), Path(args.out)
    fn = run_ours if args.child == "ours" else run_baseline
    t0 = time.perf_counter()
    # the same GDAL block cache for both methods (ours sets it from gdal_cache_mb as well)
    with rasterio.Env(GDAL_CACHEMAX=args.gdal_cache_mb * 1024 * 1024):
        fn(csv, ckpt, out, args)
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print("RESULT " + json.dumps({"seconds": seconds, "peak_mib": peak_mib}), flush=True)


def spawn(method: str, csv: Path, ckpt: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--child", method, "--csv", str(csv), "--ckpt", str(ckpt),
        "--out", str(out), "--tile-size", str(args.tile_size), "--overlap", str(args.overlap),
        "--blend", args.blend, "--batch-size", str(args.batch_size),
        "--accelerator", args.accelerator, "--precision", args.precision,
        "--gdal-cache-mb", str(args.gdal_cache_mb), "--num-workers", str(args.num_workers),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{method} run failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs=2, default=[2048, 6144], metavar=("SMALL", "LARGE"))
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--blend", default="gaussian")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--gdal-cache-mb", type=int, default=64, help="GDAL block cache, both methods")
    p.add_argument("--repeat", type=int, default=2, help="runs per method and size (fastest kept)")
    p.add_argument("--num-workers", type=int, default=0, help="ours: DataLoader workers")
    p.add_argument("--workdir", type=Path, default=None, help="keep data here (default: temp)")
    p.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--csv", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ckpt = make_checkpoint(root)
        results: dict[tuple[str, int], dict] = {}
        for size in args.sizes:
            print(f"writing a {size} x {size} synthetic scene ...", flush=True)
            csv = make_scene(root, size)
            # alternate the methods; keep each one's fastest run and its highest peak memory
            for rep in range(args.repeat):
                for method in ("ours", "baseline"):
                    r = spawn(method, csv, ckpt, root / f"out_{method}_{size}", args)
                    best = results.setdefault((method, size), r)
                    best["seconds"] = min(best["seconds"], r["seconds"])
                    best["peak_mib"] = max(best["peak_mib"], r["peak_mib"])
                    print(f"    run {rep + 1} {method}: {r['seconds']:.2f} s", flush=True)
            for method in ("ours", "baseline"):
                r = results[method, size]
                mp = size * size / 1e6
                print(
                    f"  {method:8s} {size:>6d}^2: {r['seconds']:7.2f} s, {mp / r['seconds']:6.2f} MP/s,"
                    f" peak RSS {r['peak_mib']:7.0f} MiB",
                    flush=True,
                )
        small, large = args.sizes
        mp = large * large / 1e6
        ours_rate = mp / results["ours", large]["seconds"]
        base_rate = mp / results["baseline", large]["seconds"]
        print()
        print(
            f"throughput on {large}^2 ({args.accelerator}, tile {args.tile_size}, overlap "
            f"{args.overlap}): ours {ours_rate:.2f} MP/s, baseline {base_rate:.2f} MP/s, "
            f"ratio {ours_rate / base_rate:.2f}"
        )
        growth = {
            m: results[m, large]["peak_mib"] - results[m, small]["peak_mib"]
            for m in ("ours", "baseline")
        }
        print(
            f"peak memory {small}^2 -> {large}^2 ({(large / small) ** 2:.0f}x the pixels): ours "
            f"{results['ours', small]['peak_mib']:.0f} -> {results['ours', large]['peak_mib']:.0f} "
            f"MiB (+{growth['ours']:.0f}), baseline {results['baseline', small]['peak_mib']:.0f} -> "
            f"{results['baseline', large]['peak_mib']:.0f} MiB (+{growth['baseline']:.0f}); "
            f"growth ratio baseline/ours {growth['baseline'] / max(growth['ours'], 1.0):.1f}"
        )
        overlap_cost = (
            ((args.tile_size / (args.tile_size - args.overlap)) ** 2) if args.overlap else 1
        )
        print(f"(ours computes ~{overlap_cost:.2f}x the pixels of the baseline for the overlap)")


if __name__ == "__main__":
    main()
