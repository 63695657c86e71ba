"""ckpt=best|last|PATH and run_dir=PATH resolve to the right file; bad ones name themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from predict_standins import ConvModule, LumModule
from predict_support import save_checkpoint

from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.predict.checkpoints import (
    load_module,
    read_checkpoint_info,
    resolve_checkpoint,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_newest_run_with_the_requested_checkpoint(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    old_best = _touch(logs / "train/runs/2026-01-01_10-00-00/checkpoints/best.ckpt")
    _touch(logs / "train/runs/2026-01-01_10-00-00/checkpoints/last.ckpt")
    sweep_best = _touch(logs / "train/multiruns/2026-01-02_09-00-00/10/checkpoints/best.ckpt")
    _touch(logs / "train/multiruns/2026-01-02_09-00-00/2/checkpoints/best.ckpt")
    # the newest run crashed before its best checkpoint: best comes from the sweep, last from it
    new_last = _touch(logs / "train/runs/2026-01-03_08-00-00/checkpoints/last.ckpt")
    os.utime(old_best, (1e9 * 2, 1e9 * 2))  # mtimes do not decide over run timestamps
    assert resolve_checkpoint("best", None, logs) == sweep_best
    assert resolve_checkpoint("last", None, logs) == new_last


def test_run_dir_and_path(tmp_path: Path) -> None:
    run = tmp_path / "logs/train/runs/2026-01-01_10-00-00"
    best = _touch(run / "checkpoints/best.ckpt")
    assert resolve_checkpoint("best", str(run), tmp_path / "elsewhere") == best
    with pytest.raises(DataError, match=r"last\.ckpt not found"):
        resolve_checkpoint("last", str(run), tmp_path)
    assert resolve_checkpoint(str(best), None, tmp_path) == best
    assert (
        resolve_checkpoint("checkpoints/best.ckpt", str(run), tmp_path)
        == run / "checkpoints/best.ckpt"
    )


def test_unknown_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="checkpoint best: no training run under .*best.ckpt"):
        resolve_checkpoint("best", None, tmp_path / "logs")
    with pytest.raises(DataError, match=r"checkpoint nope\.ckpt not found"):
        resolve_checkpoint("nope.ckpt", None, tmp_path)
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


def test_match_csv_defaults_to_the_training_runs(tmp_path: Path) -> None:
    from firedpy_nrt.predict.checkpoints import training_match_csv

    run = tmp_path / "logs/train/runs/2026-01-01_10-00-00"
    best = _touch(run / "checkpoints/best.ckpt")
    assert training_match_csv(best) is None
    (run / ".hydra").mkdir()
    (run / ".hydra/config.yaml").write_text(
        "paths:\n  data_dir: /d\ndata:\n  match_csv: ${paths.data_dir}/synthetic/match.csv\n"
    )
    assert training_match_csv(best) == Path("/d/synthetic/match.csv")
