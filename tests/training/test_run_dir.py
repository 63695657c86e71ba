"""Run directories: new timestamp, the resumed run's own dir, one dir shared by all ranks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from firedpy_nrt.run_dir import latest_resumable_run, resolve_run_dir


@pytest.fixture(autouse=True)
def _single_process(monkeypatch) -> None:
    for var in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)


def _run_with_last(root: Path, name: str) -> Path:
    ckpt = root / name / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    return ckpt


def test_new_run_gets_the_new_dir(tmp_path) -> None:
    assert resolve_run_dir(str(tmp_path / "new"), None, str(tmp_path)) == str(tmp_path / "new")


def test_last_resumes_into_the_newest_run_with_last_ckpt(tmp_path) -> None:
    old = _run_with_last(tmp_path, "2026-01-01_00-00-00")
    newer = _run_with_last(tmp_path, "2026-01-02_00-00-00")
    (tmp_path / "2026-01-03_00-00-00").mkdir()  # a run that never saved a checkpoint
    now = time.time()
    os.utime(old, (now - 100, now - 100))
    os.utime(newer, (now, now))
    assert latest_resumable_run(tmp_path) == newer.parent.parent
    assert resolve_run_dir("new", "last", str(tmp_path)) == str(newer.parent.parent)


def test_a_checkpoint_path_resumes_into_its_run(tmp_path) -> None:
    ckpt = _run_with_last(tmp_path, "r1")
    assert resolve_run_dir("new", str(ckpt), str(tmp_path)) == str(tmp_path / "r1")


def test_nothing_to_resume_falls_back_to_a_new_dir(tmp_path) -> None:
    assert resolve_run_dir("new", "last", str(tmp_path / "empty")) == "new"
    assert resolve_run_dir("new", str(tmp_path / "nope.ckpt"), str(tmp_path)) == "new"


def test_torchrun_and_srun_ranks_share_one_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_run_dir("new", None, str(tmp_path)) == str(tmp_path / "torchrun-abc")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert resolve_run_dir("new", None, str(tmp_path)) == str(tmp_path / "slurm-77-0")
