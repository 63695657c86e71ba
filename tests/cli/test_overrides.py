"""Command-line typos stop with one line naming the key, before Hydra starts a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firedpy_nrt.cli import check_overrides

ROOT = Path(__file__).resolve().parents[2]


def _check(args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        check_overrides(str(ROOT / "conf"), "prepare", args)
    assert info.value.code == 2


def test_mistyped_key_names_it_and_suggests(capsys):
    _check(["match.max_dayz=3"])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "match.max_dayz" in err and "match.max_days" in err


def test_bad_group_choice_lists_options(capsys):
    _check(["source=synthetc"])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "source/synthetc" in err and "synthetic" in err


@pytest.mark.parametrize("override", ["match.max_days=abc", "match.max_days=-1", "stages=[nope]"])
def test_bad_value_names_key_in_one_line(override):
    # Types and ranges are checked by the schema at start-up, before any stage runs.
    proc = subprocess.run(
        [sys.executable, "prepare.py", override],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    key = override.split("=")[0]
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"'{key}'" in proc.stderr


def test_good_and_sweep_overrides_pass():
    check_overrides(str(ROOT / "conf"), "prepare", ["match.max_days=3", "overwrite=true"])
    # sweep values are Hydra's to expand; the check leaves them alone
    check_overrides(str(ROOT / "conf"), "prepare", ["match.max_days=1,2", "-m"])


def test_entry_point_exit_code_and_single_line():
    proc = subprocess.run(
        [sys.executable, "prepare.py", "match.max_dayz=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "match.max_dayz" in proc.stderr


def test_the_readmes_pattern_override_works_as_written(tmp_path):
    """`match.patterns.lum_change='...'` (no +), as the README shows it, reaches the match stage."""
    from hydra import compose, initialize_config_dir

    from firedpy_nrt.config import validate
    from firedpy_nrt.config.prepare import PrepareConfig

    pattern = r"^fire(?P<fire>\d+)_(?P<d1>\d{8})_(?P<d2>\d{8})_dlum\.tif$"
    override = f"match.patterns.lum_change='{pattern}'"
    check_overrides(str(ROOT / "conf"), "prepare", [override])  # no SystemExit
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[override, f"paths.output_dir={tmp_path}"])
    assert validate(cfg, PrepareConfig).match.patterns.lum_change == pattern


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "paths.log_dir=/proc/firedpy-no",
            "error: paths.log_dir /proc/firedpy-no cannot be written",
        ),
        ("paths.data_dir=/proc/firedpy-no", "error: /proc/firedpy-no: No such file or directory"),
    ],
)
def test_folders_that_cannot_be_written_are_one_line(tmp_path, override, expected):
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, str(ROOT / "prepare.py"), "source=synthetic",
            f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}", override]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-1500:]


@pytest.mark.parametrize("script", ["train.py", "predict.py", "prepare.py"])
def test_a_task_name_that_is_a_path_creates_nothing(tmp_path, script):
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    logs = tmp_path / "a" / "logs"
    args = [sys.executable, str(ROOT / script), f"paths.log_dir={logs}", "task_name=../../escaped"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: config key 'task_name': must be a plain folder name (letters, digits, '.', '_', "
        "'-'), got '../../escaped'"
    ]
    assert not (tmp_path / "escaped").exists() and not logs.exists()
