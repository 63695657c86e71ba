"""Helpers of the download tests (a module of its own: with several conftest.py folders,
``from conftest import`` is ambiguous, and test modules are not importable by name)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.prepare.download import run_stage

CONF = Path(__file__).resolve().parents[3] / "conf"


def make_cfg(server, tmp_path, events, overrides=(), **download):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "prepare",
            overrides=[
                "stages=[download]",
                "download=cdse",
                f"events={events}",
                f"paths.data_dir={tmp_path / 'data'}",
                f"paths.log_dir={tmp_path / 'logs'}",
                "paths.output_dir=" + str(tmp_path / "out"),
                *overrides,
            ],
        )
    merged = OmegaConf.merge(cfg, {"download": {**server.config(), **download}})
    return validate(merged, PrepareConfig)


def run(server, tmp_path, events, overrides=("event_ids=[9844]",), **download):
    return run_stage(make_cfg(server, tmp_path, events, overrides, **download))


def scenes(tmp_path) -> Path:
    return tmp_path / "data" / "scenes" / "9844"


def leftovers(root: Path) -> list[str]:
    """Temporary or partial things a finished run must not leave behind."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith((".part", ".tmp", ".zip", ".tar")) or p.name.startswith(".")
    )
