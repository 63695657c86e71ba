"""Slow: train.py as users start it: DDP on two CPU processes, a grid multirun, an Optuna sweep."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from runner import run_train

pytestmark = pytest.mark.slow

SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=1"]


def _epochs(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return [row["epoch"] for row in csv.DictReader(fh)]


def test_ddp_cpu_two_processes_share_one_run_dir(tmp_path, fast) -> None:
    args = [*fast, f"paths.log_dir={tmp_path}", "trainer=ddp_cpu"]
    args += ["trainer.limit_train_batches=2", "trainer.max_epochs=2"]
    result = run_train(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 1, runs  # the rank-1 process wrote into rank 0's directory
    run = runs[0]
    assert (run / "train_ddp_process_1.log").is_file()
    assert _epochs(run / "metrics.csv") == ["0", "1"]  # one writer: no duplicate rows
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "test_metrics.csv").is_file()
    hydra_cfg = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert "trainer=ddp_cpu" in hydra_cfg


def test_grid_multirun_runs_two_jobs(tmp_path, fast) -> None:
    args = ["-m", *fast, *SHORT, f"paths.log_dir={tmp_path}", "optimizer.lr=0.001,0.0001"]
    result = run_train(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    lrs = set()
    for job in jobs:
        assert _epochs(sweep / job / "metrics.csv") == ["0"]
        cfg = yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())
        lrs.add(cfg["optimizer"]["lr"])
    assert lrs == {0.001, 0.0001}


def test_optuna_sweep_of_two_trials_with_a_sqlite_study(tmp_path, fast) -> None:
    db = tmp_path / "optuna.db"
    args = ["-m", *fast, *SHORT, f"paths.log_dir={tmp_path}", "hparams_search=optuna"]
    args += ["hydra.sweeper.n_trials=2", f"hydra.sweeper.storage=sqlite:///{db}"]
    result = run_train(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert "optimizer.lr" in results["best_params"]
    assert 0.0 <= results["best_value"] <= 1.0
    import optuna

    study = optuna.load_study(study_name="firedpy-nrt", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    assert all(t.value is not None for t in study.trials)


def test_submitit_local_launcher_runs_a_job(tmp_path, fast) -> None:
    args = ["-m", *fast, *SHORT, f"paths.log_dir={tmp_path}", "hydra/launcher=submitit_local"]
    result = run_train(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    assert _epochs(sweep / "0" / "metrics.csv") == ["0"]
