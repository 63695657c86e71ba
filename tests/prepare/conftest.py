"""Fixtures of the prepare tests: layer folders of tiny real GeoTIFFs (UTM) named per the contract."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from omegaconf import DictConfig, OmegaConf
from rasterio.transform import from_origin

LAYER_DIRS = {
    "lum_change": "lum",
    "coh_change": "coh",
    "binary_product": "bin",
    "dnbr": "dnbr",
}


def write_tif(path: Path, value: float = 0.0, crs: str = "EPSG:32612") -> Path:
    """A 4x4 single-band GeoTIFF in UTM with real georeferencing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="float32",
        crs=crs,
        transform=from_origin(500000.0, 4100000.0, 20.0, 20.0),
        nodata=np.nan,
    ) as ds:
        ds.write(np.full((1, 4, 4), value, dtype="float32"))
    return path


@pytest.fixture
def tif() -> Callable[..., Path]:
    """``write_tif`` as a fixture (conftest modules are not importable by name)."""
    return write_tif


@pytest.fixture
def layer_dirs(tmp_path: Path) -> Callable[..., Path]:
    """Write layer files under ``tmp_path/layers/<kind dir>/``; returns the layers root."""

    def make(**names: Iterable[str]) -> Path:
        root = tmp_path / "layers"
        for kind, sub in LAYER_DIRS.items():
            (root / sub).mkdir(parents=True, exist_ok=True)
            for name in names.get(kind, ()):
                write_tif(root / sub / name)
        return root

    return make


@pytest.fixture
def match_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """A prepare config whose match stage reads ``root``'s layer folders."""

    def make(root: Path, **match: object) -> DictConfig:
        overwrite = bool(match.pop("overwrite", False))
        node = {
            "lum_dir": str(root / "lum"),
            "coh_dir": str(root / "coh"),
            "binary_dir": str(root / "bin"),
            "dnbr_dir": str(root / "dnbr"),
            "output_csv": str(root / "out" / "match.csv"),
        }
        node.update(match)
        return OmegaConf.create(
            {"paths": {"data_dir": str(tmp_path)}, "overwrite": overwrite, "match": node}
        )

    return make
