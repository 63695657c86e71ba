"""The learning-rate schedule that spans the training budget: steps or wall time, whichever
ends first, on real Lightning runs of a small model."""

from __future__ import annotations

import math
import time

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from quiet_trainer import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from firedpy_nrt.config import Invalid
from firedpy_nrt.models.schedule import WarmupCosine

BASE_LR = 0.1


class Tiny(LightningModule):
    def __init__(self, sleep_s: float = 0.0, warmup: float = 0.1, final_ratio: float = 0.01):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.sleep_s, self.warmup, self.final_ratio = sleep_s, warmup, final_ratio

    def training_step(self, batch, batch_idx):
        if self.sleep_s:
            time.sleep(self.sleep_s)  # a slow machine: time ends the run, not the step count
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=BASE_LR)
        sched = WarmupCosine(opt, warmup=self.warmup, final_ratio=self.final_ratio)
        sched.follow(self.trainer)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": sched.interval}}


class Rates(Callback):
    """The rate each optimizer step ran with, and the one left after the last step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_end(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _fit(module: LightningModule, tmp_path, **trainer_kwargs) -> tuple[Trainer, list[float]]:
    rates = Rates()
    data = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=4)  # 4 steps an epoch
    trainer = quiet_trainer(tmp_path, callbacks=[rates], **trainer_kwargs)
    trainer.fit(module, data)
    return trainer, rates.lrs


def test_the_factor_warms_up_peaks_and_ends_at_its_floor() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = WarmupCosine(opt, warmup=0.2, final_ratio=0.05)
    assert s.factor(0.0) == pytest.approx(0.05)
    assert s.factor(0.1) == pytest.approx(0.05 + 0.95 * 0.5)
    assert s.factor(0.2) == pytest.approx(1.0)
    assert s.factor(0.6) == pytest.approx(0.05 + 0.95 * 0.5)
    assert s.factor(1.0) == pytest.approx(0.05)
    assert s.factor(3.0) == pytest.approx(0.05)  # never below the floor, never back up
    values = [s.factor(p / 100) for p in range(101)]
    peak = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(values[peak:-1], values[peak + 1 :], strict=True))
    assert s.progress() == 0.0  # not following a run: the first rate is the warm-up's start


def test_steps_end_the_schedule_when_they_end_the_run(tmp_path) -> None:
    trainer, lrs = _fit(Tiny(warmup=0.1), tmp_path, max_epochs=10)  # 40 steps
    assert trainer.global_step == 40 and len(lrs) == 41
    assert max(lrs) == pytest.approx(BASE_LR, rel=0.02)
    assert lrs.index(max(lrs)) == 4  # 10 % of 40 steps
    assert lrs[-1] == pytest.approx(BASE_LR * 0.01)
    # half-way through the decay the rate is half-way down
    mid = 4 + 18
    expected = BASE_LR * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 18 / 36)))
    assert lrs[mid] == pytest.approx(expected, rel=1e-6)


def test_the_clock_ends_the_schedule_when_time_ends_the_run(tmp_path) -> None:
    """max_epochs far out of reach, max_time 3 s: the rate still rises, peaks and is at its
    floor when the time is up, though only a small part of the planned steps ran."""
    trainer, lrs = _fit(
        Tiny(sleep_s=0.03, warmup=0.2), tmp_path, max_epochs=100_000, max_time={"seconds": 3}
    )
    steps_fraction = trainer.global_step / trainer.estimated_stepping_batches
    assert steps_fraction < 0.01, trainer.global_step
    assert trainer.global_step >= 20  # enough steps to see the shape
    peak = lrs.index(max(lrs))
    assert max(lrs) > 0.8 * BASE_LR
    assert 0.1 * len(lrs) < peak < 0.35 * len(lrs), (peak, len(lrs))
    assert lrs[0] < 0.3 * BASE_LR
    assert lrs[-1] < 0.05 * BASE_LR, lrs[-5:]


def test_a_checkpoint_holds_plain_state_and_resumes_the_clock(tmp_path) -> None:
    """The scheduler's state has no trainer in it; loading it into a new scheduler keeps that
    one's trainer (the new run's clock, which Lightning's Timer restores on resume)."""
    trainer, _ = _fit(Tiny(), tmp_path, max_epochs=2)
    sched = trainer.lr_scheduler_configs[0].scheduler
    state = sched.state_dict()
    assert "_trainer" not in state and state["warmup"] == 0.1
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    other = WarmupCosine(opt)
    sentinel = object()
    other.follow(sentinel)
    other.load_state_dict(loaded)
    assert other._trainer is sentinel and other.warmup == 0.1


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"warmup": 1.0}, "warmup"), ({"final_ratio": -0.1}, "final_ratio")]
)
def test_bad_values_name_the_key(kwargs, key) -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(Invalid) as exc:
        WarmupCosine(opt, **kwargs)
    assert exc.value.key == key
