"""The dnbr config group: composed from conf/, every key validated with its full name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.errors import ConfigError
from firedpy_nrt.prepare.dnbr import dnbr_config, run_stage

CONF = Path(__file__).resolve().parents[3] / "conf"


def composed(tmp_path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "prepare",
            overrides=[
                f"paths.data_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/out",
                *overrides,
            ],
        )


def test_defaults_compose_and_resolve(tmp_path):
    cfg = composed(tmp_path)
    validate(cfg, PrepareConfig)
    d = dnbr_config(cfg)
    assert d.scenes_dir == f"{tmp_path}/scenes" and d.output_dir == f"{tmp_path}/dnbr"
    assert cfg.match.dnbr_dir == d.output_dir  # the match stage reads what this stage writes
    assert d.sentinel2.nir_band == "B8A" and d.sentinel2.scl_mask == [0, 1, 3, 8, 9, 10, 11]
    assert d.landsat.qa_mask_bits == [0, 1, 2, 3, 4, 5] and d.threshold == 0.1
    assert d.resolution is None and d.pairing.mode == "best"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dnbr.sentinel2.nir_band=B09", "dnbr.sentinel2.nir_band"),
        ("dnbr.sentinel2.scl_mask=[3,12]", "dnbr.sentinel2.scl_mask"),
        ("dnbr.landsat.qa_mask_bits=[16]", "dnbr.landsat.qa_mask_bits"),
        ("dnbr.threshold=five", "dnbr.threshold"),
        ("dnbr.resolution=-20", "dnbr.resolution"),
        ("dnbr.pairing.mode=closest", "dnbr.pairing.mode"),
        ("dnbr.rgb.mode=png", "dnbr.rgb.mode"),
        ("dnbr.block_size=100", "dnbr.block_size"),
        ("+dnbr.treshold=0.2", "dnbr.treshold"),
    ],
)
def test_bad_values_name_their_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate(composed(tmp_path, override), PrepareConfig)


def test_stage_needs_events(tmp_path):
    with pytest.raises(ConfigError, match="'events'"):
        run_stage(composed(tmp_path, "stages=[dnbr]"))
