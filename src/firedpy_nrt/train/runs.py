"""Where training runs live, and which checkpoint is the newest: the one home of the run layout.

A task's runs (``task_name``, ``train`` by default) live under ``<paths.log_dir>/<task_name>/``:

- ``runs/<YYYY-MM-DD_HH-MM-SS>/``: one run (``hydra.run.dir``);
- ``runs/torchrun-<id>/``, ``runs/slurm-<job>-<step>/``: one run of several processes started by
  torchrun or srun, which all compose their own config and must agree on one folder;
- ``multiruns/<YYYY-MM-DD_HH-MM-SS>/<job number>/``: the jobs of a sweep (``-m``).

Each run folder holds ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``, the resolved
``config.yaml`` and the reports. "Newest" always means the newest checkpoint file written
(its modification time), whatever its folder is called: folder names sort differently by kind
(``torchrun-...`` after any timestamp), and a resumed old run is newer than its name says.

``conf/train.yaml`` sets ``hydra.run.dir`` through the ``firedpy_run_dir`` resolver registered
here, training resumes with :func:`resume_checkpoint`, and ``predict.py`` finds ``ckpt=best`` with
:func:`find_checkpoint`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from firedpy_nrt.errors import ConfigError, DataError

RUNS = "runs"
MULTIRUNS = "multiruns"
CHECKPOINT_DIR = "checkpoints"
NAMED = ("best", "last")
#: The run's resolved config (interpolations resolved, secrets redacted), written by train().
CONFIG_NAME = "config.yaml"
TIMESTAMP = "%Y-%m-%d_%H-%M-%S"


def task_dir(log_dir: str | os.PathLike[str], task_name: str) -> Path:
    """``<log_dir>/<task_name>``: every run and sweep of one task."""
    return Path(log_dir) / task_name


def checkpoint_file(run_dir: str | os.PathLike[str], name: str) -> Path:
    """``<run_dir>/checkpoints/<name>.ckpt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{name}.ckpt"


def run_dir_of_checkpoint(ckpt: str | os.PathLike[str]) -> Path:
    """A checkpoint's run folder: the parent of its ``checkpoints/`` folder."""
    path = Path(ckpt).expanduser()
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


def run_dirs(log_dir: str | os.PathLike[str], task_name: str) -> list[Path]:
    """Every run folder of the task: single runs, torchrun/SLURM runs and sweep jobs."""
    root = task_dir(log_dir, task_name)
    found = [p for p in (root / RUNS).glob("*") if p.is_dir()]
    found += [p for p in (root / MULTIRUNS).glob("*/*") if p.is_dir()]
    return found


def checkpoints(log_dir: str | os.PathLike[str], task_name: str, name: str) -> list[Path]:
    """Every ``<name>.ckpt`` of the task's runs, oldest first (by the time the file was written)."""
    found = []
    for run in run_dirs(log_dir, task_name):
        path = checkpoint_file(run, name)
        try:
            found.append((path.stat().st_mtime_ns, str(path), path))
        except FileNotFoundError:
            continue
    return [p for _, _, p in sorted(found)]


def newest_checkpoint(log_dir: str | os.PathLike[str], task_name: str, name: str) -> Path | None:
    """The most recently written ``<name>.ckpt`` of any run of the task, or None."""
    found = checkpoints(log_dir, task_name, name)
    return found[-1] if found else None


def _named_checkpoint(log_dir: str | os.PathLike[str], task_name: str, name: str) -> Path:
    """The task's newest ``<name>.ckpt``; a DataError saying where it looked when there is none."""
    newest = newest_checkpoint(log_dir, task_name, name)
    if newest is None:
        raise DataError(
            f"no run under {task_dir(log_dir, task_name)} has {CHECKPOINT_DIR}/{name}.ckpt"
        )
    return newest


def find_checkpoint(
    ckpt: str, run_dir: str | None, log_dir: str | os.PathLike[str], task_name: str
) -> Path:
    """The checkpoint file that ``ckpt`` (``best``, ``last`` or a path) and ``run_dir`` name.

    ``best``/``last`` come from ``run_dir`` when given, else from the task's newest run that
    has that file; a missing file is a :class:`DataError` saying what was searched.
    """
    if ckpt in NAMED and run_dir:
        path = checkpoint_file(run_dir, ckpt)
        if not path.is_file():
            raise DataError(f"checkpoint {path} not found (run_dir={run_dir}, ckpt={ckpt})")
        return path
    if ckpt in NAMED:
        try:
            return _named_checkpoint(log_dir, task_name, ckpt)
        except DataError as exc:
            hint = "train first, or pass run_dir=PATH or ckpt=PATH"
            raise DataError(f"checkpoint {ckpt}: {exc} ({hint})") from None
    path = Path(ckpt).expanduser()
    if not path.is_absolute() and run_dir and (Path(run_dir) / path).is_file():
        path = Path(run_dir) / path
    if not path.is_file():
        raise DataError(f"checkpoint {ckpt} not found (ckpt is best, last or a .ckpt file)")
    return path


def resume_checkpoint(
    ckpt_path: str | None, log_dir: str | os.PathLike[str], task_name: str
) -> Path | None:
    """The checkpoint ``train.py ckpt_path=...`` resumes from: ``last`` is the task's newest
    ``last.ckpt``; a path must be a file. None when not resuming."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        try:
            return _named_checkpoint(log_dir, task_name, "last")
        except DataError as exc:
            raise ConfigError(f"config key 'ckpt_path': 'last' but {exc}") from None
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config key 'ckpt_path': no such checkpoint: {path}")
    if not is_complete_checkpoint(path):
        raise ConfigError(
            f"config key 'ckpt_path': {path} is not a complete checkpoint (truncated, or not a "
            "file torch/Lightning wrote)"
        )
    return path


def is_complete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a whole torch checkpoint: a zip archive with its central directory
    (what ``torch.save`` writes; a truncated file lacks the directory at its end)."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def is_resumable(ckpt: Path) -> bool:
    """A checkpoint that continues its own run: a complete ``<run>/checkpoints/last.ckpt``.
    Any other checkpoint (``best.ckpt``, a file from elsewhere) starts a run of its own."""
    return (
        ckpt.name == "last.ckpt"
        and ckpt.parent.name == CHECKPOINT_DIR
        and is_complete_checkpoint(ckpt)
    )


def saved_config_value(run_dir: str | os.PathLike[str], key: str) -> Any:
    """``key`` (dotted) of the run's resolved ``config.yaml``, or None when the run did not
    write one or it lacks the key."""
    saved = Path(run_dir) / CONFIG_NAME
    if not saved.is_file():
        return None
    try:
        return OmegaConf.select(OmegaConf.load(saved), key, default=None)
    except Exception:  # an unreadable saved config just gives no value
        return None


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


def resolve_run_dir(
    new_dir: str, ckpt_path: str | None, log_dir: str, task_name: str, train: Any = True
) -> str:
    """The folder of this run: the resumed run's, a job-shared one, or ``new_dir``.

    Only a real resume (training on from a run's complete ``last.ckpt``) writes into the old
    run's folder; testing a checkpoint (``train=false``), fine-tuning from ``best.ckpt`` or any
    other file, and a checkpoint that cannot be read all get a new folder, so a finished run's
    config, reports and logs are never touched.
    """
    if ckpt_path and str(train).lower() not in ("false", "0", "none"):
        try:
            resumed = resume_checkpoint(ckpt_path, log_dir, task_name)
        except ConfigError:
            resumed = None  # train() reports it as a config error; Hydra gets a fresh folder
        if resumed is not None and is_resumable(resumed):
            return str(run_dir_of_checkpoint(resumed))
    shared = _job_dir_name()
    if shared is not None:
        return str(task_dir(log_dir, task_name) / RUNS / shared)
    return new_dir


def saved_config_name(run_dir: str | os.PathLike[str], stamp: str) -> str:
    """Where this run saves its resolved config: ``config.yaml``, or in a folder that already has
    one (a resumed run) ``config.resumed-<stamp>.yaml``, so the run's first record is kept."""
    if (Path(run_dir) / CONFIG_NAME).exists():
        return f"config.resumed-{stamp}.yaml"
    return CONFIG_NAME


def hydra_subdir(run_dir: str, stamp: str) -> str:
    """Hydra's own record of this invocation: ``.hydra``, or ``.hydra/resumed-<stamp>`` in the
    folder of a resumed run (whose first ``.hydra`` stays as it was)."""
    if (Path(run_dir) / ".hydra").exists():
        return f".hydra/resumed-{stamp}"
    return ".hydra"


def register_resolvers() -> None:
    """Register ``firedpy_run_dir`` and ``firedpy_hydra_subdir`` (idempotent); call before
    ``@hydra.main`` composes."""
    # use_cache: one value per process, however often hydra re-reads hydra.run.dir
    if not OmegaConf.has_resolver("firedpy_run_dir"):
        OmegaConf.register_new_resolver("firedpy_run_dir", resolve_run_dir, use_cache=True)
    if not OmegaConf.has_resolver("firedpy_hydra_subdir"):
        OmegaConf.register_new_resolver("firedpy_hydra_subdir", hydra_subdir, use_cache=True)
