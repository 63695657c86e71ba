"""Fixtures for training tests: a tiny synthetic dataset (real UTM GeoTIFFs written by
``prepare.py source=synthetic``), composed train configs on it, and train.py as a subprocess."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from runner import FAST, run_script  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data_dir`` holding ``synthetic/match.csv``: 6 fires of 64 x 64 SAR pixels."""
    root = tmp_path_factory.mktemp("synthetic")
    args = [
        "source=synthetic",
        f"paths.data_dir={root}",
        f"paths.log_dir={root / 'logs'}",
        "synthetic.n_fires=6",
        "synthetic.size=64",
        "synthetic.pairs_per_fire=1",
        "synthetic.dnbr_per_fire=1",
    ]
    # cwd=ROOT: prepare.py looks for conf/ relative to the working directory
    result = run_script("prepare.py", args, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (root / "synthetic" / "match.csv").is_file()
    return root


@pytest.fixture(scope="session")
def fast(data_dir: Path) -> list[str]:
    """FAST overrides on the session's synthetic dataset."""
    return [*FAST, f"paths.data_dir={data_dir}"]


@pytest.fixture
def train_cfg(tmp_path: Path, fast: list[str]) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` with ``fast`` + ``overrides``; the run folder is
    ``tmp_path/train/runs/run`` (where the ``train`` task's runs live under ``paths.log_dir``)."""

    def make(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[*fast, f"paths.log_dir={tmp_path}", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "train" / "runs" / "run")
        return cfg

    return make
