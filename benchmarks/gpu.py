"""GPU throughput: images/s and model FLOP utilisation of DeepLabV3 training at 256 x 256.

Ours: SegmentationModule + Trainer with ``bf16-mixed`` and channels-last (``trainer=gpu
model.channels_last=true``). Baseline, same run: a plain fp32 PyTorch loop (contiguous NCHW) on
the same network and batches. FLOPs per image (forward + backward) are counted with
``torch.utils.flop_counter`` on this very model (about 245 GFLOP for ResNet-50 at 256 x 256);
MFU = achieved FLOP/s / the GPU's dense bf16 peak (a table of common cards, or --peak-tflops).

    python benchmarks/gpu.py                        # needs a CUDA GPU; says so and exits if none
    python benchmarks/gpu.py --cpu --size 64 --batch 2 --steps 2   # the same code path on CPU
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from firedpy_nrt.models.segmentation import SegmentationModule

#: dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "L4": 121.0,
    "V100": 125.0,  # fp16 (V100 has no bf16)
}


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def make_batches(n: int, batch: int, size: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        image = torch.randn(batch, 3, size, size, generator=g)
        image[:, 2, : size // 4] = float("nan")
        label = (torch.rand(batch, size, size, generator=g) > 0.7).to(torch.uint8)
        out.append({"image": image, "label": label, "fire_id": ["1"] * batch})
    return out


def flops_per_image(module: SegmentationModule, size: int, device: torch.device) -> float:
    module = copy.deepcopy(module).to(device).train()
    x = module.normalize(torch.randn(2, 3, size, size, device=device))
    counter = FlopCounterMode(display=False)
    with counter:
        module.net(x)["out"].sum().backward()
    return counter.get_total_flops() / 2


class Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self._sync(pl_module)
            self.end = time.perf_counter()
            self.steps += 1


def ours(module, batches, warmup, accelerator, precision) -> float:
    """Seconds per step through our module and Lightning's Trainer."""
    timer = Timer(warmup)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=len(batches),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, pin_memory=True))
    return (timer.end - timer.start) / max(timer.steps, 1)


def plain_fp32(module, batches, warmup, device) -> float:
    """Seconds per step of a plain fp32 NCHW loop (the baseline)."""
    module = module.to(device).train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    for i, batch in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        loss = module.criterion(module.net(module.normalize(image))["out"], label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (len(batches) - warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the table")
    parser.add_argument("--cpu", action="store_true", help="run the code path on CPU (fp32)")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("firedpy_nrt").setLevel(logging.ERROR)  # "no stats": random batches
    warnings.filterwarnings("ignore")

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure (use --cpu to exercise the code path)")
        return 0
    device = torch.device("cpu" if args.cpu else "cuda")
    accelerator, precision = ("cpu", "32-true") if args.cpu else ("gpu", "bf16-mixed")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # an honest fp32 baseline
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"

    torch.manual_seed(0)
    reference = SegmentationModule(net={"backbone": args.backbone}, scheduler=None)
    flops = flops_per_image(reference, args.size, device)
    batches = make_batches(args.warmup + args.steps, args.batch, args.size)

    fast = SegmentationModule(
        net={"backbone": args.backbone}, scheduler=None, channels_last=not args.cpu
    )
    fast.load_state_dict(reference.state_dict())
    ours_s = ours(fast, batches, args.warmup, accelerator, precision)
    base_s = plain_fp32(copy.deepcopy(reference), batches, args.warmup, device)

    ours_ips, base_ips = args.batch / ours_s, args.batch / base_s
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    print(f"{name}: DeepLabV3-{args.backbone}, {args.batch} x {args.size} x {args.size}")
    print(f"model FLOPs per image, forward + backward: {flops / 1e9:.1f} GFLOP")
    label = "bf16-mixed + channels-last" if not args.cpu else "fp32 (CPU path)"
    for what, ips in ((f"ours ({label}, Trainer)", ours_ips), ("plain fp32 loop", base_ips)):
        tflops = ips * flops / 1e12
        mfu = f", MFU {100 * tflops / peak:.1f}% of {peak:g} TFLOP/s" if peak else ""
        print(f"{what}: {ips:.1f} images/s, {tflops:.2f} TFLOP/s{mfu}")
    print(f"speed-up ours / baseline: {ours_ips / base_ips:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
