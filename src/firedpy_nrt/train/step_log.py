"""The per-step CSV log of a run (``csv/metrics.csv``), which a resumed run appends to.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when its folder is not empty, so
resuming a run in its own folder would lose every step logged before the stop. This logger keeps
the file and appends (rewriting the header only when new metric names appear, as Lightning does).
"""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
            header = next(csv.reader(fh), [])
        self.metrics_keys = header  # the file's own column order, so appended rows line up


class StepCSVLogger(CSVLogger):
    """``CSVLogger`` that continues an existing ``metrics.csv`` instead of deleting it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
