"""What training promises about bad input and finished work: one line for a bad value, a GPU
that is not there or a broken checkpoint; a finished run's folder is never written by a run
that does not really resume it; a checkpoint is whole or the previous one is kept."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch
from runner import run_train

from firedpy_nrt.config import validate
from firedpy_nrt.config.train import TrainConfig
from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.train import checkpoint_io
from firedpy_nrt.train.checkpoint_io import AtomicCheckpointIO
from firedpy_nrt.train.run import train


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("trainer.limit_train_batches=some", "trainer.limit_train_batches"),
        ("trainer.devices=many", "trainer.devices"),
        ("trainer.accumulate_grad_batches=1.5", "trainer.accumulate_grad_batches"),
        ("model.net.aspp_channels=4", "model.net.aspp_channels"),
        ("model.net.atrous_rates=[0,4]", "model.net.atrous_rates"),
        ("model.net.atrous_rates=[]", "model.net.atrous_rates"),
    ],
)
def test_non_numbers_in_trainer_keys_are_one_line(train_cfg, override, key):
    with pytest.raises(ConfigError) as exc:
        validate(train_cfg(override), TrainConfig)
    assert str(exc.value).startswith(f"config key '{key}'") and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["scheduler=warmup_cosine", "scheduler.warmup=1.5"], "scheduler.warmup"),
        (["scheduler=warmup_cosine", "scheduler.final_ratio=-1"], "scheduler.final_ratio"),
        (["scheduler=plateau", "scheduler.mode=maximum"], "scheduler"),
    ],
)
def test_bad_scheduler_values_are_one_line_at_start_up(train_cfg, overrides, key):
    with pytest.raises(ConfigError) as exc:
        validate(train_cfg(*overrides), TrainConfig)
    assert str(exc.value).startswith(f"config key '{key}'") and "\n" not in str(exc.value)


def test_a_truncated_checkpoint_to_resume_is_one_line(train_cfg, tmp_path):
    broken = tmp_path / "last.ckpt"
    buffer = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, buffer)
    broken.write_bytes(buffer.read_bytes()[:2000])
    with pytest.raises(ConfigError, match=r"ckpt_path.*last\.ckpt is not a complete checkpoint"):
        train(validate(train_cfg(f"ckpt_path={broken}"), TrainConfig))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_that_is_not_there_is_one_line(tmp_path, fast):
    result = run_train([*fast, f"paths.log_dir={tmp_path}", "trainer.accelerator=gpu"], tmp_path)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-1500:]
    assert lines[0].startswith("error: config key 'trainer.accelerator'")
    assert "trainer=cpu" in lines[0]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "best.ckpt: No space left on device"),
        # what torch's zip writer raises when the disk fills mid-save (seen on a CI machine)
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5 vs 3"),
            "best.ckpt: the write failed, is the disk full? (",
        ),
    ],
)
def test_checkpoint_save_is_atomic_and_a_failed_one_keeps_the_previous(
    tmp_path, monkeypatch, error, reason
):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "best.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(64)}, path)
    first = path.read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:  # half of it reached the disk, then the disk was full
            fh.truncate(Path(f).stat().st_size // 2)
        raise error

    monkeypatch.setattr(checkpoint_io.torch, "save", disk_full)
    with pytest.raises(DataError) as exc:
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(64)}, path)
    message = str(exc.value)
    assert "\n" not in message and reason in message
    assert "previous one is kept" in message
    assert path.read_bytes() == first  # the earlier checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]  # no temporary left
    assert torch.load(path, weights_only=False)["epoch"] == 1


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_finished_runs_are_only_written_by_a_real_resume(tmp_path, fast):
    logs = tmp_path / "logs"
    common = [*fast, f"paths.log_dir={logs}", "trainer.max_epochs=1"]
    assert run_train(common, tmp_path).returncode == 0
    (finished,) = list((logs / "train" / "runs").iterdir())
    before = _snapshot(finished)
    steps_before = (finished / "csv" / "metrics.csv").read_text().splitlines()

    # testing a checkpoint, fine-tuning from best.ckpt, a broken last.ckpt: each its own folder
    broken = tmp_path / "elsewhere" / "checkpoints" / "last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes((finished / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    for extra in (
        ["train=false", f"ckpt_path={finished / 'checkpoints' / 'best.ckpt'}"],
        [f"ckpt_path={finished / 'checkpoints' / 'best.ckpt'}"],
        [f"ckpt_path={broken}"],
    ):
        result = run_train([*common, *extra], tmp_path)
        assert _snapshot(finished) == before, extra
        if extra[-1].endswith("last.ckpt"):
            assert result.returncode == 2 and "not a complete checkpoint" in result.stderr
    assert len(list((logs / "train" / "runs").iterdir())) == 4

    # a real resume continues the run in its folder: its first records stay, the logs grow
    shutil.rmtree(tmp_path / "elsewhere")
    resumed = run_train([*common, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _snapshot(finished)
    assert after["config.yaml"] == before["config.yaml"]
    assert after[".hydra/config.yaml"] == before[".hydra/config.yaml"]
    assert any(k.startswith("config.resumed-") for k in after)
    assert any(k.startswith(".hydra/resumed-") for k in after)
    steps = (finished / "csv" / "metrics.csv").read_text().splitlines()
    assert steps[: len(steps_before)] == steps_before and len(steps) > len(steps_before)
    epochs = [line.split(",")[0] for line in (finished / "metrics.csv").read_text().splitlines()]
    assert epochs == ["epoch", "0", "1"]
