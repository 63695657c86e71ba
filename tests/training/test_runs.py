"""The run layout (firedpy_nrt.train.runs): new folders, resumed ones, folders shared by ranks,
and which checkpoint is the newest whatever its run folder is called."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.train.runs import (
    find_checkpoint,
    newest_checkpoint,
    resolve_run_dir,
    resume_checkpoint,
    saved_config_value,
)


@pytest.fixture(autouse=True)
def _single_process(monkeypatch) -> None:
    for var in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)


def _ckpt(run: Path, name: str, age_s: float) -> Path:
    """``<run>/checkpoints/<name>.ckpt`` written ``age_s`` seconds ago."""
    path = run / "checkpoints" / f"{name}.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0}, path)  # a whole checkpoint file: resuming checks that
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


# Every kind of run folder a task holds; each case makes a different one the newest.
KINDS = {
    "timestamp": "runs/2026-01-05_10-00-00",
    "torchrun": "runs/torchrun-abc",
    "slurm": "runs/slurm-77-0",
    "sweep job": "multiruns/2026-01-04_09-00-00/3",
    "sweep job 10": "multiruns/2026-01-03_09-00-00/10",
}


@pytest.mark.parametrize("newest", list(KINDS))
def test_newest_is_the_last_checkpoint_written_whatever_the_folder_name(tmp_path, newest) -> None:
    logs = tmp_path / "logs"
    paths = {}
    for i, (kind, rel) in enumerate(KINDS.items()):
        age = 10 if kind == newest else 100 + i * 50
        paths[kind] = _ckpt(logs / "train" / rel, "best", age)
    assert newest_checkpoint(logs, "train", "best") == paths[newest]
    assert find_checkpoint("best", None, logs, "train") == paths[newest]


def test_best_and_last_are_found_separately_and_per_task(tmp_path) -> None:
    logs = tmp_path / "logs"
    best = _ckpt(logs / "train/runs/2026-01-01_10-00-00", "best", 300)
    _ckpt(logs / "train/runs/2026-01-01_10-00-00", "last", 300)
    # a newer run that crashed before its best checkpoint: last comes from it, best does not
    last = _ckpt(logs / "train/runs/2026-01-03_08-00-00", "last", 10)
    other_task = _ckpt(logs / "finetune/runs/2026-01-09_08-00-00", "best", 1)
    assert find_checkpoint("best", None, logs, "train") == best
    assert find_checkpoint("last", None, logs, "train") == last
    assert find_checkpoint("best", None, logs, "finetune") == other_task


def test_run_dir_and_paths(tmp_path) -> None:
    run = tmp_path / "logs/train/runs/2026-01-01_10-00-00"
    best = _ckpt(run, "best", 0)
    assert find_checkpoint("best", str(run), tmp_path / "elsewhere", "train") == best
    with pytest.raises(DataError, match=r"last\.ckpt not found"):
        find_checkpoint("last", str(run), tmp_path, "train")
    assert find_checkpoint(str(best), None, tmp_path, "train") == best
    assert find_checkpoint("checkpoints/best.ckpt", str(run), tmp_path, "train") == best
    with pytest.raises(DataError, match="checkpoint best: no run under .*best.ckpt"):
        find_checkpoint("best", None, tmp_path / "nothing", "train")
    with pytest.raises(DataError, match=r"checkpoint nope\.ckpt not found"):
        find_checkpoint("nope.ckpt", None, tmp_path, "train")


def test_new_run_gets_the_new_dir(tmp_path) -> None:
    new = str(tmp_path / "new")
    assert resolve_run_dir(new, None, str(tmp_path), "train") == new


def test_last_resumes_into_the_run_with_the_newest_last_ckpt(tmp_path) -> None:
    logs = tmp_path / "logs"
    _ckpt(logs / "train/runs/2026-01-02_00-00-00", "last", 100)
    newer = _ckpt(logs / "train/runs/torchrun-xyz", "last", 5)  # "t" sorts after any date
    (logs / "train/runs/2026-01-03_00-00-00").mkdir()  # a run that never saved a checkpoint
    assert resume_checkpoint("last", logs, "train") == newer
    assert resolve_run_dir("new", "last", str(logs), "train") == str(newer.parent.parent)


def test_a_checkpoint_path_resumes_into_its_run(tmp_path) -> None:
    ckpt = _ckpt(tmp_path / "r1", "last", 0)
    assert resolve_run_dir("new", str(ckpt), str(tmp_path), "train") == str(tmp_path / "r1")


def test_nothing_to_resume(tmp_path) -> None:
    assert resolve_run_dir("new", "last", str(tmp_path / "empty"), "train") == "new"
    assert resolve_run_dir("new", str(tmp_path / "nope.ckpt"), str(tmp_path), "train") == "new"
    with pytest.raises(ConfigError, match="config key 'ckpt_path': 'last' but no run under"):
        resume_checkpoint("last", tmp_path / "empty", "train")
    with pytest.raises(ConfigError, match="config key 'ckpt_path': no such checkpoint"):
        resume_checkpoint(str(tmp_path / "nope.ckpt"), tmp_path, "train")
    assert resume_checkpoint(None, tmp_path, "train") is None


def test_torchrun_and_srun_ranks_share_one_dir_under_the_task(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    monkeypatch.setenv("WORLD_SIZE", "4")
    runs = tmp_path / "mytask" / "runs"
    assert resolve_run_dir("new", None, str(tmp_path), "mytask") == str(runs / "torchrun-abc")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert resolve_run_dir("new", None, str(tmp_path), "mytask") == str(runs / "slurm-77-0")


def test_saved_config_is_the_resolved_one(tmp_path) -> None:
    run = tmp_path / "run"
    assert saved_config_value(run, "data.match_csv") is None
    run.mkdir()
    # Hydra's own .hydra/config.yaml is unresolved; the run's config.yaml is what counts
    (run / ".hydra").mkdir()
    (run / ".hydra/config.yaml").write_text("data:\n  match_csv: ${paths.data_dir}/wrong.csv\n")
    (run / "config.yaml").write_text("data:\n  match_csv: /d/synthetic/match.csv\n")
    assert saved_config_value(run, "data.match_csv") == "/d/synthetic/match.csv"
    assert saved_config_value(run, "data.nope") is None


def test_only_a_complete_last_ckpt_resumes_in_its_folder(tmp_path) -> None:
    logs = tmp_path / "logs"
    run = logs / "train/runs/2026-01-02_00-00-00"
    last, best = _ckpt(run, "last", 10), _ckpt(run, "best", 10)
    assert resolve_run_dir("new", "last", str(logs), "train", True) == str(run)
    assert resolve_run_dir("new", str(last), str(logs), "train", "True") == str(run)
    # testing only, or fine-tuning from best.ckpt: a new folder
    assert resolve_run_dir("new", str(last), str(logs), "train", False) == "new"
    assert resolve_run_dir("new", str(best), str(logs), "train", True) == "new"
    last.write_bytes(last.read_bytes()[:20])  # truncated
    assert resolve_run_dir("new", str(last), str(logs), "train", True) == "new"
