"""What prediction reads from a checkpoint; bad checkpoints name themselves in one line.

Which file ckpt=best|last|PATH names is tested with the run layout (tests/training/test_runs.py)
and end to end in test_predict.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from predict_standins import ConvModule, LumModule
from predict_support import save_checkpoint

from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.predict.checkpoints import load_module, read_checkpoint_info


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    bad = _touch(tmp_path / "corrupt.ckpt")
    with pytest.raises(DataError, match=r"corrupt\.ckpt cannot be read") as err:
        read_checkpoint_info(bad)
    assert "\n" not in str(err.value)


def test_info_and_load(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "m.ckpt", LumModule(num_layers=3, threshold=0.35), {"test": [2282, "9844"]}
    )
    info = read_checkpoint_info(path)
    assert info.threshold == pytest.approx(0.35)
    assert info.splits["test"] == ["2282", "9844"]
    module = load_module(path, "predict_standins.LumModule")
    assert module.hparams.num_layers == 3 and not module.training
    with pytest.raises(ConfigError, match="module_class"):
        load_module(path, "predict_standins.Nope")
    # a checkpoint of another module: one line naming the checkpoint and the class
    other = save_checkpoint(tmp_path / "c.ckpt", ConvModule())
    with pytest.raises(DataError, match=r"c\.ckpt does not load into predict_standins\.LumModule"):
        load_module(other, "predict_standins.LumModule")
