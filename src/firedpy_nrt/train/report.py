"""Run reports written by rank zero: ``metrics.csv`` per epoch, ``test_metrics.csv``, ``curves.png``.

``metrics.csv`` has exactly the columns :data:`EPOCH_COLUMNS`, one row per finished training
epoch (validation values empty where validation did not run). It is rewritten whole after each
epoch (atomically, :mod:`firedpy_nrt.atomic`), and on resume the rows of epochs the run had finished are kept.
``test_metrics.csv`` has one row per predictor on the test chips: the model and the two
baselines (dNBR >= threshold, everything burned), columns :data:`TEST_COLUMNS`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402

from firedpy_nrt.atomic import output_file  # noqa: E402

log = logging.getLogger(__name__)

EPOCH_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_iou",
    "val_miou",
    "val_f1",
    "val_precision",
    "val_recall",
    "val_acc",
)
#: metrics.csv column -> logged metric name
LOGGED = {
    "train_loss": "train/loss_epoch",
    "val_loss": "val/loss",
    "val_iou": "val/iou",
    "val_miou": "val/miou",
    "val_f1": "val/f1",
    "val_precision": "val/precision",
    "val_recall": "val/recall",
    "val_acc": "val/acc",
}
TEST_COLUMNS = (
    "predictor", "loss", "iou", "miou", "f1", "precision", "recall", "acc",
    "iou_clear", "iou_cloud",  # burned IoU where the dNBR is valid / is not (cloud)
)  # fmt: skip
#: test_metrics.csv predictor -> prefix of its logged metrics
TEST_PREDICTORS = {
    "model": "test/",
    "dnbr_threshold": "test/dnbr_",
    "all_burned": "test/all_burned_",
}


def _value(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with output_file(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})


def read_epoch_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an existing ``metrics.csv`` (values as float, empty cells as None)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {"epoch": int(raw["epoch"])}
            for col in EPOCH_COLUMNS[1:]:
                cell = raw.get(col, "")
                row[col] = float(cell) if cell not in ("", None) else None
            rows.append(row)
    return rows


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Loss and validation metrics against epoch, as a PNG."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    for col, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = [(e, r[col]) for e, r in zip(epochs, rows, strict=True) if r.get(col) is not None]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend(loc="best")
    for col in ("val_iou", "val_miou", "val_f1", "val_precision", "val_recall", "val_acc"):
        pts = [(e, r[col]) for e, r in zip(epochs, rows, strict=True) if r.get(col) is not None]
        if pts:
            ax_metric.plot(*zip(*pts, strict=True), marker="o", label=col[4:])
    ax_metric.set(xlabel="epoch", ylabel="score", title="Validation (burned class)", ylim=(0, 1))
    ax_metric.legend(loc="best")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with output_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


class RunReport(Callback):
    """Writes ``metrics.csv``, ``curves.png`` and ``test_metrics.csv`` into ``run_dir`` (rank 0)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self._validated_epoch: int | None = None

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "metrics.csv"

    @property
    def test_csv(self) -> Path:
        return self.run_dir / "test_metrics.csv"

    @property
    def curves_png(self) -> Path:
        return self.run_dir / "curves.png"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        # A resumed run keeps the epochs it had finished; a fresh run starts empty.
        start = trainer.current_epoch
        self.rows = [r for r in read_epoch_rows(self.metrics_csv) if r["epoch"] < start]

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking or trainer.fast_dev_run:
            return
        metrics = trainer.callback_metrics
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        validated = self._validated_epoch == trainer.current_epoch
        for col, name in LOGGED.items():
            # callback_metrics keeps old values: no validation this epoch means empty cells
            row[col] = _value(metrics, name) if validated or not col.startswith("val_") else None
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(self.metrics_csv, EPOCH_COLUMNS, self.rows)
        try:
            plot_curves(self.rows, self.curves_png)
        except (OSError, ValueError) as exc:  # a plot must never stop training
            log.warning("could not draw %s: %s", self.curves_png, exc)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        rows = []
        for predictor, prefix in TEST_PREDICTORS.items():
            row: dict[str, Any] = {"predictor": predictor}
            for col in TEST_COLUMNS[1:]:
                row[col] = _value(metrics, prefix + col)
            if any(row[c] is not None for c in TEST_COLUMNS[2:]):
                rows.append(row)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(self.test_csv, TEST_COLUMNS, rows)
        for row in rows:
            log.info(
                "test %-15s burned IoU %s (where dNBR is valid %s, under cloud %s)  "
                "mean IoU %s  accuracy %s",
                row["predictor"],
                _fmt(row["iou"]),
                _fmt(row.get("iou_clear")),
                _fmt(row.get("iou_cloud")),
                _fmt(row["miou"]),
                _fmt(row["acc"]),
            )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
