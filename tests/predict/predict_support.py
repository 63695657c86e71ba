"""Helpers and fixtures of the prediction tests: real UTM GeoTIFFs named by the contract, stand-in checkpoints."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import lightning
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).parent))  # predict_standins, importable by dotted name

CRS = "EPSG:32612"
FIRE = "2282"
LUM_NODATA = -9999.0


def write_tif(path: Path, data: np.ndarray, transform, crs: str = CRS, nodata=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return path


@dataclass
class SceneFiles:
    lum_change: Path
    coh_change: Path
    dnbr: Path
    binary_product: Path | None
    lum: np.ndarray  # luminance change with NaN where nodata
    label: np.ndarray | None  # 1 burned, 0 unburned, 255 nodata

    def row(self, fire: str = FIRE) -> dict:
        return {
            "fire_id": fire,
            "lum_change": str(self.lum_change),
            "coh_change": str(self.coh_change),
            "dnbr": str(self.dnbr),
            "binary_product": str(self.binary_product) if self.binary_product else None,
        }


def make_scene(
    root: Path,
    height: int,
    width: int,
    *,
    fire: str = FIRE,
    dates: tuple[str, str] = ("20200508", "20200520"),
    label: bool = True,
    seed: int = 0,
) -> SceneFiles:
    """A scene on a 30 m UTM grid: lum change in [-3, 3] with a nodata border strip; coherence and
    dNBR on a coarser 60 m grid (so reads are warped), dNBR with a cloud gap (NaN); a label that is
    burned where lum > 0, with a block of label nodata."""
    rng = np.random.default_rng(seed)
    transform = from_origin(500_000.0, 4_000_000.0, 30.0, 30.0)
    lum = rng.uniform(-3, 3, size=(height, width)).astype(np.float32)
    lum[:, : max(1, width // 10)] = np.nan  # SAR border: nodata
    stored = np.where(np.isnan(lum), LUM_NODATA, lum).astype(np.float32)
    d1, d2 = dates
    lum_path = write_tif(
        root / "sar" / "lum_change" / f"{fire}_{d1}_{d2}_DeltaLumin_30m.tif",
        stored,
        transform,
        nodata=LUM_NODATA,
    )
    coarse = from_origin(500_000.0 - 60.0, 4_000_000.0 + 60.0, 60.0, 60.0)
    ch, cw = height // 2 + 3, width // 2 + 3
    coh = rng.uniform(-1, 1, size=(ch, cw)).astype(np.float32)
    coh_path = write_tif(
        root / "sar" / "coh_change" / f"{fire}_20200426_{d1}_{d2}_cohChange.tif", coh, coarse
    )
    dnbr = rng.uniform(-0.5, 1.0, size=(ch, cw)).astype(np.float32)
    dnbr[: ch // 3, : cw // 3] = np.nan  # cloud gap
    dnbr_path = write_tif(
        root / "dnbr" / f"S2B_L2A_T12SVC_{fire}_{d1}T180909_{d2}T175921_30m_DNBR.TIF",
        dnbr,
        coarse,
    )
    lab = None
    bin_path = None
    if label:
        raw = (lum > 0).astype(np.float32)
        raw[height // 2 :, width // 2 :][: max(1, height // 5), : max(1, width // 5)] = np.nan
        bin_path = write_tif(
            root / "sar" / "binary_product" / f"{fire}_FIREDpy_sar_combined_{d1}_{d2}.tif",
            raw,
            transform,
        )
        lab = np.where(raw > 0, 1, 0).astype(np.uint8)
        lab[np.isnan(raw) | np.isnan(lum)] = 255
    return SceneFiles(lum_path, coh_path, dnbr_path, bin_path, lum, lab)


def save_checkpoint(
    path: Path,
    module: lightning.LightningModule,
    splits: dict | None = None,
    chip_size: int | None = None,
) -> Path:
    """A checkpoint as Lightning writes it (state, hyperparameters, version), with the fire split
    and the training chip size where a training run's datamodule state puts them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    if splits is not None or chip_size is not None:
        ckpt["FireDataModule"] = {"splits": splits or {}, "chip_size": chip_size}
    torch.save(ckpt, path)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a loaded machine OpenMP's spinning threads
    make a MobileNet forward 50x slower; restore the setting after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scene_factory(tmp_path: Path):
    def factory(height: int, width: int, **kw) -> SceneFiles:
        return make_scene(tmp_path / "data", height, width, **kw)

    return factory


ROOT = Path(__file__).resolve().parents[2]


def write_match_csv(path: Path, scenes: list[SceneFiles], fires: list[str] | None = None) -> Path:
    """A match CSV with the path columns (relative to the CSV's folder) and fire ids."""
    import csv
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fire_id", "lum_change", "coh_change", "dnbr", "binary_product"])
        for i, s in enumerate(scenes):
            rel = [
                os.path.relpath(p, path.parent) if p else ""
                for p in (s.lum_change, s.coh_change, s.dnbr, s.binary_product)
            ]
            w.writerow([fires[i] if fires else FIRE, *rel])
    return path


def compose(overrides: list[str]):
    """``conf/predict.yaml`` composed and validated as ``predict.py`` does, with test overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from firedpy_nrt.config import validate
    from firedpy_nrt.config.predict import PredictConfig

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return validate(hydra_compose(config_name="predict", overrides=overrides), PredictConfig)


@pytest.fixture
def predict_cfg(tmp_path: Path):
    """Build a config for a checkpoint and CSV: small tiles, CPU, outputs under tmp_path."""

    def build(ckpt: Path, csv: Path, *extra: str, module: str = "LumModule"):
        return compose(
            [
                f"ckpt={ckpt}",
                f"data.match_csv={csv}",
                f"paths.log_dir={tmp_path / 'logs'}",
                f"paths.output_dir={tmp_path / 'run'}",
                f"output_dir={tmp_path / 'out'}",
                f"module_class=predict_standins.{module}",
                "split=all",
                "tile_size=64",
                "overlap=16",
                "batch_size=3",
                "trainer.accelerator=cpu",
                *extra,
            ]
        )

    return build


def lightning_checkpoint(
    path: Path, module: lightning.LightningModule, splits: dict | None
) -> Path:
    """A checkpoint written by ``Trainer.save_checkpoint`` (the module's own hooks run), plus the
    fire split a training run's datamodule state would add."""
    import lightning.pytorch as pl

    path.parent.mkdir(parents=True, exist_ok=True)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    if splits is not None:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        ckpt["FireDataModule"] = {"splits": splits}
        torch.save(ckpt, path)
    return path


#: Overrides that map with a stand-in module in small tiles on the CPU (tests only).
STANDIN_ARGS = [
    "split=all",
    "module_class=predict_standins.LumModule",
    "tile_size=32",
    "overlap=8",
    "trainer.accelerator=cpu",
]


def run_predict_py(cwd: Path, *args: str):
    """``python predict.py ARGS`` as a user runs it, with our src/ and the stand-ins importable."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(Path(__file__).parent)]),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
