"""Seconds per training step through our LightningModule + Trainer vs a plain PyTorch loop.

Both train the same network from the same initial weights on the same in-memory batches (raw
images with NaN gaps, labels with 255), with the same loss and AdamW param groups; the plain loop
does exactly normalise -> forward -> loss -> backward -> step. Rounds alternate between the two so
that load from other processes hits both alike; the figure is the median step time.

    python benchmarks/overhead.py                      # MobileNetV3, 64 x 64 chips, batch 8
    python benchmarks/overhead.py --backbone resnet50 --size 128 --batch 4 --steps 10
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from firedpy_nrt.models.segmentation import SegmentationModule


def make_batches(n: int, batch: int, size: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.randn(batch, 3, size, size, generator=g)
        image[:, 2, : size // 4] = float("nan")  # a cloud over dNBR
        label = (torch.rand(batch, size, size, generator=g) > 0.7).to(torch.uint8)
        label[:, -2:] = 255
        out.append({"image": image, "label": label, "fire_id": ["1"] * batch})
    return out


class StepTimer(pl.Callback):
    """Wall time between consecutive training-batch ends: everything a step costs."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


def lightning_steps(module: SegmentationModule, batches: list[dict], warmup: int) -> list[float]:
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(batches),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.times[warmup:]


def plain_steps(module: SegmentationModule, batches: list[dict], warmup: int) -> list[float]:
    module.train()
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    times = []
    for batch in batches:
        start = time.perf_counter()
        x = module.normalize(batch["image"])
        logits = module.net(x)["out"]
        loss = module.criterion(logits, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=64, help="chip side in pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("firedpy_nrt").setLevel(logging.ERROR)  # "no stats": random batches
    warnings.filterwarnings("ignore")

    torch.manual_seed(0)
    reference = SegmentationModule(net={"backbone": args.backbone}, scheduler=None)
    batches = make_batches(args.warmup + args.steps, args.batch, args.size)
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(args.rounds):
        plain += plain_steps(copy.deepcopy(reference), batches, args.warmup)
        ours += lightning_steps(copy.deepcopy(reference), batches, args.warmup)
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    print(
        f"{args.backbone}, {args.batch} x {args.size} x {args.size} chips, "
        f"{len(ours)} timed steps each, torch threads {torch.get_num_threads()}"
    )
    print(f"SegmentationModule + Trainer: {ours_s:.4f} s/step (median)")
    print(f"plain PyTorch loop:           {plain_s:.4f} s/step (median)")
    print(f"ratio: {ours_s / plain_s:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
