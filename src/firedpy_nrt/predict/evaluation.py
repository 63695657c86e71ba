"""Scores of a predicted burn mask against the SAR binary product, per scene and overall.

The definitions are torchmetrics' (what training logs), computed from a confusion matrix that is
summed band by band, so no scene is held in memory: burned IoU ``tp / (tp + fp + fn)``
(``BinaryJaccardIndex``), mean IoU over the burned and unburned classes
(``MulticlassJaccardIndex(num_classes=2, average="macro")``), F1, precision, recall of the burned
class and accuracy, each 0 when its denominator is 0 (torchmetrics' ``zero_division=0``). A pixel
counts as burned when its probability is above the threshold (torchmetrics' ``preds > threshold``).
Pixels whose label is 255 (label nodata) or whose luminance change is nodata are left out. The
overall row sums the confusion matrices of all scenes, as an epoch of torchmetrics does.

Where fusion pays shows per condition: burned IoU on pixels where the dNBR is valid (``clear``)
and where it is not (``cloud``: cloud, shadow, no optical scene), for the model and for a plain
dNBR threshold map (burned where dNBR >= the checkpoint's ``dnbr_threshold``; no dNBR counts as
unburned, as such a map would have it).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from firedpy_nrt.atomic import output_file
from firedpy_nrt.predict.writers import MASK_NODATA

METRICS = ("burned_iou", "mean_iou", "f1", "precision", "recall", "accuracy")
#: Burned IoU per condition and predictor: (column, which confusion).
CONDITION_COLUMNS = (
    ("clear_pixels", None),
    ("cloud_pixels", None),
    ("burned_iou_clear", "clear"),
    ("burned_iou_cloud", "cloud"),
    ("dnbr_burned_iou", "dnbr"),
    ("dnbr_burned_iou_clear", "dnbr_clear"),
    ("dnbr_burned_iou_cloud", "dnbr_cloud"),
)
COLUMNS = (
    "scene", "fire_id", "valid_pixels", "tp", "fp", "fn", "tn", *METRICS,
    *(c for c, _ in CONDITION_COLUMNS),
)  # fmt: skip
CONDITIONS = ("clear", "cloud", "dnbr", "dnbr_clear", "dnbr_cloud")


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass
class Confusion:
    """Pixel counts of the burned class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def update(self, mask: np.ndarray, label: np.ndarray) -> None:
        """Add a block: ``mask`` uint8 (1, 0, 255 nodata), ``label`` uint8 (1, 0, 255 ignore)."""
        valid = (label != MASK_NODATA) & (mask != MASK_NODATA)
        pred = (mask == 1) & valid
        true = (label == 1) & valid
        tp = int(np.count_nonzero(pred & true))
        npred = int(np.count_nonzero(pred))
        ntrue = int(np.count_nonzero(true))
        self.tp += tp
        self.fp += npred - tp
        self.fn += ntrue - tp
        self.tn += int(np.count_nonzero(valid)) - npred - ntrue + tp

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def metrics(self) -> dict[str, float]:
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        burned = _div(tp, tp + fp + fn)
        unburned = _div(tn, tn + fn + fp)
        return {
            "burned_iou": burned,
            "mean_iou": (burned + unburned) / 2.0,
            "f1": _div(2 * tp, 2 * tp + fp + fn),
            "precision": _div(tp, tp + fp),
            "recall": _div(tp, tp + fn),
            "accuracy": _div(tp + tn, self.total),
        }


def condition_scores(
    mask: np.ndarray, label: np.ndarray, dnbr: np.ndarray, dnbr_threshold: float
) -> dict[str, Confusion]:
    """The block's confusions on clear and cloudy pixels, for the model's ``mask`` and for the
    dNBR threshold map (nodata where the model's mask is nodata)."""
    clear = np.isfinite(dnbr)
    dnbr_mask = (np.nan_to_num(dnbr, nan=-np.inf) >= dnbr_threshold).astype(np.uint8)
    dnbr_mask[mask == MASK_NODATA] = MASK_NODATA

    def confusion(pred: np.ndarray, lab: np.ndarray) -> Confusion:
        c = Confusion()
        c.update(pred, lab)
        return c

    # the model's overall confusion is the scene's own; the dNBR map's is kept here
    out = {"dnbr": confusion(dnbr_mask, label)}
    for cond, keep in (("clear", clear), ("cloud", ~clear)):
        lab = np.where(keep, label, MASK_NODATA)
        out[cond] = confusion(mask, lab)
        out[f"dnbr_{cond}"] = confusion(dnbr_mask, lab)
    return out


@dataclass
class SceneScore:
    scene: str
    fire_id: str
    confusion: Confusion
    conditions: dict[str, Confusion] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        c = self.confusion
        out: dict[str, object] = {
            "scene": self.scene,
            "fire_id": self.fire_id,
            "valid_pixels": c.total,
            "tp": c.tp,
            "fp": c.fp,
            "fn": c.fn,
            "tn": c.tn,
        }
        out.update({k: round(v, 6) for k, v in c.metrics().items()})
        cond = {k: self.conditions.get(k, Confusion()) for k in CONDITIONS}
        out["clear_pixels"] = cond["clear"].total
        out["cloud_pixels"] = cond["cloud"].total
        for column, key in CONDITION_COLUMNS:
            if key is not None:
                out[column] = round(cond[key].metrics()["burned_iou"], 6)
        return out


def write_evaluation(path: Path, scores: list[SceneScore], replace: bool = True) -> SceneScore:
    """Write one row per scene and an ``overall`` row; return the overall score."""
    overall = SceneScore(
        "overall",
        "",
        sum((s.confusion for s in scores), Confusion()),
        {
            k: sum((s.conditions.get(k, Confusion()) for s in scores), Confusion())
            for k in CONDITIONS
        },
    )
    with output_file(path, replace=replace) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for score in [*scores, overall]:
            writer.writerow(score.row())
    return overall
