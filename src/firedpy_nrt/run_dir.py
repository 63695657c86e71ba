"""Where a training run writes: a new timestamped directory, or the one of the run it resumes.

``train.py`` registers :func:`register_resolvers` before ``@hydra.main``; ``conf/train.yaml``
sets ``hydra.run.dir: ${firedpy_run_dir:<new dir>,${ckpt_path},<runs root>}`` so that
``ckpt_path=last`` (or a checkpoint path) continues in the directory that holds the checkpoint.
Processes started by torchrun or srun (one per rank, each composing its own config) share one
directory named after the job instead of each taking its own timestamp.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

LAST = "last"
CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.ckpt"


def latest_resumable_run(runs_root: str | os.PathLike) -> Path | None:
    """The run directory under ``runs_root`` whose ``checkpoints/last.ckpt`` is newest."""
    root = Path(runs_root)
    if not root.is_dir():
        return None
    found = [p for p in root.glob(f"*/{CHECKPOINT_DIR}/{LAST_NAME}") if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime).parent.parent


def run_dir_of_checkpoint(ckpt: str | os.PathLike) -> Path:
    """A checkpoint's run directory: the parent of its ``checkpoints/`` folder."""
    path = Path(ckpt).expanduser()
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


def _job_dir_name() -> str | None:
    """A name every rank of a multi-process launch agrees on, or None for a single process."""
    env = os.environ
    if env.get("TORCHELASTIC_RUN_ID") and int(env.get("WORLD_SIZE", "1")) > 1:
        run_id = env["TORCHELASTIC_RUN_ID"]
        if run_id == "none":  # torchrun without --rdzv-id: the agent's pid is shared per node
            run_id = f"{env.get('GROUP_RANK', '0')}-{os.getppid()}"
        return f"torchrun-{run_id}"
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1")) > 1:
        step = env.get("SLURM_STEP_ID", "0")
        return f"slurm-{env['SLURM_JOB_ID']}-{step}"
    return None


def resolve_run_dir(new_dir: str, ckpt_path: str | None, runs_root: str) -> str:
    """The directory for this run: the resumed run's, a job-shared one, or ``new_dir``."""
    if ckpt_path:
        if str(ckpt_path) == LAST:
            previous = latest_resumable_run(runs_root)
            if previous is not None:
                return str(previous)
        elif Path(ckpt_path).expanduser().is_file():
            return str(run_dir_of_checkpoint(ckpt_path))
        # Nothing to resume: training.py reports it as a config error; write a fresh dir.
    shared = _job_dir_name()
    if shared is not None:
        return str(Path(runs_root) / shared)
    return new_dir


def register_resolvers() -> None:
    """Register ``firedpy_run_dir`` (idempotent); call before ``@hydra.main`` runs."""
    if not OmegaConf.has_resolver("firedpy_run_dir"):
        # use_cache: one value per process, however often hydra re-reads hydra.run.dir
        OmegaConf.register_new_resolver("firedpy_run_dir", resolve_run_dir, use_cache=True)
