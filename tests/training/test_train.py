"""train(cfg): run directory contents, returned metric, resume, config errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from runner import run_train

from firedpy_nrt.config import validate
from firedpy_nrt.config.train import TrainConfig
from firedpy_nrt.errors import ConfigError
from firedpy_nrt.train.report import EPOCH_COLUMNS, TEST_COLUMNS
from firedpy_nrt.train.run import train as train_validated


def train(cfg):
    """What train.py does with a composed config: validate it once, then train."""
    return train_validated(validate(cfg, TrainConfig))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_the_run_directory_and_returns_best_val_iou(train_cfg) -> None:
    cfg = train_cfg()
    value = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "curves.png").stat().st_size > 1000
    rows = _rows(run / "metrics.csv")
    assert tuple(rows[0]) == EPOCH_COLUMNS
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(r["train_loss"] and r["val_iou"] for r in rows)
    best = max(float(r["val_iou"]) for r in rows)
    assert value == pytest.approx(best, abs=1e-6)
    tests = _rows(run / "test_metrics.csv")
    assert tuple(tests[0]) == TEST_COLUMNS
    assert [r["predictor"] for r in tests] == ["model", "dnbr_threshold", "all_burned"]
    # burned IoU where the dNBR is valid and where it is not, for the model and the threshold
    for row in tests[:2]:
        assert row["iou_clear"] != "" and 0.0 <= float(row["iou_clear"]) <= 1.0
        assert row["iou_cloud"] != "" and 0.0 <= float(row["iou_cloud"]) <= 1.0
    assert tests[2]["iou_clear"] == ""
    assert (run / "config.yaml").is_file() and "${" not in (run / "config.yaml").read_text()
    # the split is saved once (the datamodule's state), the channels with the model
    from firedpy_nrt.predict.checkpoints import read_checkpoint_info

    raw = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    assert set(raw["FireDataModule"]) == {"splits", "cache", "label_threshold", "chip_size"}
    info = read_checkpoint_info(run / "checkpoints" / "best.ckpt")
    assert info.splits == raw["FireDataModule"]["splits"] and info.splits["test"]
    assert info.channels == ["lum_change", "coh_change", "dnbr"]


def _optimizer_state(path: Path) -> tuple[int, int, list[torch.Tensor], dict]:
    ckpt = torch.load(path, weights_only=False)
    state = ckpt["optimizer_states"][0]["state"]
    tensors = [state[k]["exp_avg"] for k in sorted(state)]
    return ckpt["epoch"], ckpt["global_step"], tensors, ckpt["lr_schedulers"][0]


def test_resume_continues_epochs_and_matches_an_uninterrupted_run(train_cfg, tmp_path) -> None:
    # Random states travel in the checkpoint: shuffles and dropout masks match after resume.
    det = ["trainer.max_epochs=2", "trainer.num_sanity_val_steps=0"]
    runs = tmp_path / "train" / "runs"  # the task's runs: ckpt_path=last takes the newest
    full = train_cfg(*det, "test=false")
    full.paths.output_dir = str(runs / "full")
    train(full)

    first = train_cfg(*det, "test=false", "trainer.max_epochs=1")
    first.paths.output_dir = str(runs / "part")
    first.scheduler.T_max = 2  # same schedule as the full run, stopped after one epoch
    train(first)
    part_last = runs / "part" / "checkpoints" / "last.ckpt"

    resumed = train_cfg(*det, "test=false", "ckpt_path=last")
    resumed.paths.output_dir = str(runs / "part")
    train(resumed)

    epoch_a, step_a, exp_a, sched_a = _optimizer_state(runs / "full/checkpoints/last.ckpt")
    epoch_b, step_b, exp_b, sched_b = _optimizer_state(part_last)
    assert (epoch_a, step_a) == (epoch_b, step_b)
    assert step_b == 4  # 2 epochs x 2 batches: the resumed run did not redo epoch 0
    assert sched_a["last_epoch"] == sched_b["last_epoch"]
    for a, b in zip(exp_a, exp_b, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    rows = _rows(runs / "part" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]


def test_missing_resume_checkpoint_is_a_config_error(train_cfg, tmp_path) -> None:
    with pytest.raises(ConfigError, match="ckpt_path.*last"):
        train(train_cfg("ckpt_path=last"))
    with pytest.raises(ConfigError, match="ckpt_path.*no such checkpoint"):
        train(train_cfg(f"ckpt_path={tmp_path}/nope.ckpt"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.threshold=1.5", "model.threshold"),
        ("model.net.backbone=vgg", "model.net.backbone"),
        ("model.net.norm=layer", "model.net.norm"),
        ("+model.nope=1", "model.nope"),
        ("loss.pos_weight=-1", "loss.pos_weight"),
        ("loss.gamma=-2", "loss.gamma"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("+optimizer.betas_typo=1", "optimizer.betas_typo"),
        # targets that check() builds: the misspelt key is named, not the target's TypeError
        ("+loss.typo=1", "loss.typo"),
        ("+scheduler.typo=1", "scheduler.typo"),
        ("trainer.precision=8", "trainer.precision"),
        ("+trainer.max_epoch=3", "trainer.max_epoch"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
        ("+callbacks.early_stopping.patiense=2", "callbacks.early_stopping.patiense"),
        ("seed=-1", "seed"),
        ("data.augment.scale=-0.5", "data.augment.scale"),
        ("data.augment.scale_p=2", "data.augment.scale_p"),
    ],
)
def test_bad_config_values_are_one_line_errors_naming_the_key(train_cfg, override, key) -> None:
    overrides = [override]
    if override.startswith("loss.gamma"):
        overrides = ["loss=focal", override]
    cfg = train_cfg(*overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg, TrainConfig)
    message = str(info.value)
    assert f"'{key}'" in message and "\n" not in message


def test_bad_value_from_the_command_line_exits_with_one_line(tmp_path, fast) -> None:
    result = run_train([*fast, f"paths.log_dir={tmp_path}", "model.threshold=2"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == ["error: config key 'model.threshold': must be in (0, 1)"]
    logs = tmp_path / "typo"
    typo = run_train([*fast, f"paths.log_dir={logs}", "trainer.max_epoch=3"], cwd=tmp_path)
    lines = [ln for ln in typo.stderr.splitlines() if ln.strip()]
    assert typo.returncode == 2 and len(lines) == 1
    assert "trainer.max_epoch" in lines[0] and "max_epochs" in lines[0]  # with a suggestion
    assert not logs.exists()  # stopped before Hydra made a run directory


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_step_checkpoint(train_cfg, tmp_path) -> None:
    common = ["trainer.limit_train_batches=4", "callbacks.step_checkpoint.every_n_train_steps=1"]
    crash = ["+callbacks.crash._target_=runner.CrashAt", "+callbacks.crash.step=6"]
    crashing = train_cfg(*common, *crash, "test=false")  # dies at epoch 1, batch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashing)
    last = Path(crashing.paths.output_dir) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 6  # the step checkpoint right before the crash

    resumed = train_cfg(*common, "test=false", "ckpt_path=last")
    train(resumed)
    final = torch.load(last, weights_only=False)
    assert final["global_step"] == 8  # 2 epochs x 4 batches: nothing redone, nothing skipped
    assert [r["epoch"] for r in _rows(last.parent.parent / "metrics.csv")] == ["0", "1"]


@pytest.mark.slow
def test_tensorboard_and_mlflow_loggers_write_locally(train_cfg, tmp_path) -> None:
    cfg = train_cfg("logger=many", "test=false")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "csv" / "metrics.csv").is_file()
    runs = list((tmp_path / "mlflow").glob("*/*/metrics/val/iou"))
    assert runs, list((tmp_path / "mlflow").rglob("*"))[:20]


@pytest.mark.parametrize(
    "choice",
    [
        "model=deeplabv3_resnet50",
        "model=deeplabv3_resnet101",
        "model=deeplabv3_mobilenet",
        "loss=bce",
        "loss=dice",
        "loss=focal",
        "loss=bce_dice",
        "scheduler=cosine",
        "scheduler=warmup_cosine",
        "scheduler=plateau",
        "scheduler=none",
        "trainer=default",
        "trainer=cpu",
        "trainer=gpu",
        "trainer=ddp",
        "trainer=ddp_cpu",
        "trainer=slurm",
        "logger=csv",
        "logger=tensorboard",
        "logger=mlflow",
        "logger=many",
        "debug=fdr",
        "debug=limit",
        "debug=overfit",
        "experiment=demo",
        "hparams_search=optuna",
    ],
)
def test_every_group_option_composes_and_validates(train_cfg, choice) -> None:
    cfg = train_cfg(choice)
    validate(cfg, TrainConfig)
    if choice == "scheduler=none":
        assert cfg.scheduler is None
    if choice == "trainer=slurm":
        assert cfg.trainer.devices == 1 and cfg.trainer.num_nodes == 1  # outside an allocation


def test_epochs_without_validation_leave_validation_cells_empty(tmp_path) -> None:
    from firedpy_nrt.train.report import RunReport

    class FakeTrainer:
        is_global_zero, sanity_checking, fast_dev_run = True, False, False
        current_epoch = 0
        callback_metrics = {"train/loss_epoch": torch.tensor(0.5), "val/iou": torch.tensor(0.4)}

    report, trainer = RunReport(tmp_path), FakeTrainer()
    report.on_validation_end(trainer, None)
    report.on_train_epoch_end(trainer, None)
    trainer.current_epoch = 1  # no validation this epoch; val/iou is still the old value
    report.on_train_epoch_end(trainer, None)
    rows = _rows(tmp_path / "metrics.csv")
    assert [(r["epoch"], r["val_iou"]) for r in rows] == [("0", "0.4000000059604645"), ("1", "")]
    assert rows[1]["train_loss"] == "0.5"
    assert (tmp_path / "curves.png").is_file()


def test_a_checkpoint_that_monitors_nothing_keeps_the_final_weights(train_cfg) -> None:
    """``callbacks.model_checkpoint.monitor=null`` (final weights on purpose): best.ckpt is the
    last epoch's weights, the ones tested, and ``predict.py ckpt=best`` maps with them."""
    cfg = train_cfg("trainer.max_epochs=3", "callbacks.model_checkpoint.monitor=null")
    train(cfg)
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    best = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    assert best["global_step"] == last["global_step"] > 0  # the end of training, both
    for key, value in last["state_dict"].items():
        assert torch.equal(best["state_dict"][key], value), key
    assert (Path(cfg.paths.output_dir) / "test_metrics.csv").is_file()


def test_the_weight_average_is_validated_saved_and_tested(train_cfg, tmp_path) -> None:
    """``callbacks.ema`` (WeightEMA): best.ckpt's state_dict is the average, the weights being
    trained are kept beside it for a resume, and the test after fitting runs the average, not
    the raw weights Lightning's callback would restore over it."""
    seen = tmp_path / "tested_weights.pt"
    cfg = train_cfg(
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "+callbacks.ema._target_=firedpy_nrt.train.weight_ema.WeightEMA",
        "+callbacks.ema.decay=0.5",
        "+callbacks.probe._target_=runner.RecordTestWeights",
        f"+callbacks.probe.path={seen}",
    )
    train(cfg)
    best = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    average, current = best["state_dict"], best["current_model_state"]
    floats = [k for k, v in average.items() if v.is_floating_point()]
    assert any(not torch.equal(average[k], current[k]) for k in floats)
    tested = torch.load(seen, map_location="cpu")
    for key, value in average.items():
        assert torch.equal(tested[key], value), key


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("+callbacks.ema.decay=1.5", "callbacks.ema", "decay must be in"),
        ("+callbacks.ema.decayy=0.9", "callbacks.ema.decayy", "not a parameter"),
    ],
)
def test_a_bad_weight_average_setting_is_one_line_naming_the_key(
    train_cfg, override, key, message
) -> None:
    cfg = train_cfg("+callbacks.ema._target_=firedpy_nrt.train.weight_ema.WeightEMA", override)
    with pytest.raises(ConfigError, match=message) as info:
        validate(cfg, TrainConfig)
    assert f"'{key}'" in str(info.value) and "\n" not in str(info.value)


def test_a_time_budget_stops_training_and_keeps_both_checkpoints(train_cfg) -> None:
    """``trainer.max_time`` (what ``experiment=demo`` uses) ends training on time, not on the
    epoch count, and the run still has ``last.ckpt`` and ``best.ckpt`` and its reports; the
    budget's schedule (``scheduler=warmup_cosine``) has annealed the rate by then."""
    cfg = train_cfg(
        "trainer.max_epochs=10000", "+trainer.max_time=00:00:00:04", "scheduler=warmup_cosine"
    )
    train(cfg)
    run = Path(cfg.paths.output_dir)
    rows = _rows(run / "metrics.csv")
    assert 1 <= len(rows) < 10000
    assert (run / "checkpoints" / "best.ckpt").is_file()
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # the datamodule's state records the chips, so prediction cuts tiles of that extent
    assert last["FireDataModule"]["chip_size"] == cfg.data.chip_size
    (sched,) = last["lr_schedulers"]
    assert "_trainer" not in sched
    base = float(cfg.optimizer.lr)
    assert max(sched["_last_lr"]) < 0.1 * base, sched["_last_lr"]  # the floor, not mid-way
    assert (run / "test_metrics.csv").is_file()
