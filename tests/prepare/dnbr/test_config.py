"""The dnbr config group: composed from conf/, every key validated with its full name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from firedpy_nrt.cli import check_overrides
from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.errors import ConfigError
from firedpy_nrt.prepare.dnbr import run_stage

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
    cfg = validate(composed(tmp_path), PrepareConfig)
    d = cfg.dnbr
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
    ],
)
def test_bad_values_name_their_key(tmp_path, override, key, capsys):
    """As prepare.py checks them: a wrong type while composing, a bad value when validating."""
    try:
        check_overrides(str(CONF), "prepare", [override])
    except SystemExit as exc:
        assert exc.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: config key '{key}'")
        return
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate(composed(tmp_path, override), PrepareConfig)


def test_unknown_keys_are_refused_with_or_without_plus(tmp_path, capsys):
    """Without +, Hydra's typed composition refuses the key (with a suggestion); with +, which
    Hydra lets through, validation does."""
    with pytest.raises(SystemExit) as exc:
        check_overrides(str(CONF), "prepare", ["dnbr.treshold=0.2"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: config key 'dnbr.treshold' does not exist (did you mean 'dnbr.threshold'?)"
    ]
    with pytest.raises(ConfigError, match="config key 'dnbr.treshold' does not exist"):
        validate(composed(tmp_path, "+dnbr.treshold=0.2"), PrepareConfig)


def test_stage_needs_events(tmp_path):
    with pytest.raises(ConfigError, match="'events'"):
        run_stage(validate(composed(tmp_path, "stages=[dnbr]"), PrepareConfig))
