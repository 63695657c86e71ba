"""Two CPU processes with DDP: the cache is built once (rank zero), the sampler is distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from lightning.pytorch import LightningModule, Trainer
    from firedpy_nrt.data import chips
    from firedpy_nrt.data.datamodule import FireDataModule

    out = sys.argv[2]
    builds = []
    _build = chips.build_chip_cache
    def counting_build(*args, **kwargs):
        builds.append(1)
        return _build(*args, **kwargs)
    chips.build_chip_cache = counting_build

    class Probe(LightningModule):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)
            self.seen = []
        def training_step(self, batch, batch_idx):
            self.seen += batch["fire_id"]
            x = torch.nan_to_num(batch["image"])
            return self.conv(x).mean()
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    from firedpy_nrt.config.data import DataConfig, SplitConfig
    dm = FireDataModule(DataConfig(match_csv=sys.argv[1], chip_size=16, stride=16,
                                   cache_dir=os.path.join(out, "cache"), batch_size=2,
                                   split=SplitConfig(val=["101"], test=["102"])), progress=False)
    model = Probe()
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1,
                      limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=out)
    trainer.fit(model, datamodule=dm)
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as fh:
        json.dump({"builds": len(builds), "seen": len(model.seen),
                   "train": len(dm.datasets["train"]),
                   "sampler": type(trainer.train_dataloader.sampler).__name__}, fh)
    # as train() does: a gloo group left to interpreter shutdown can abort the process
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_two_cpu_processes(fires_csv, tmp_path):
    csv, _ = fires_csv
    script = tmp_path / "ddp_probe.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(csv), str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["builds"] for r in ranks] == [1, 0]  # rank zero built, rank one only read
    assert all(r["sampler"] == "DistributedSampler" for r in ranks)
    n = ranks[0]["train"]
    # each rank saw its half of the training chips (whole batches of 2), not all of them
    assert all(r["seen"] == (-(-n // 2)) // 2 * 2 for r in ranks), (ranks, n)
    assert len(list((out / "cache").glob("chips-*"))) == 1
