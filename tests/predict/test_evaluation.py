"""Scores equal torchmetrics' (what training logs) and ignore label and luminance nodata."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassJaccardIndex,
)

from firedpy_nrt.predict.evaluation import Confusion, SceneScore, write_evaluation


def _torchmetrics(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    p = torch.from_numpy(pred.astype(np.int64)).flatten()
    t = torch.from_numpy(label.astype(np.int64)).flatten()
    kw = {"ignore_index": 255}
    return {
        "burned_iou": BinaryJaccardIndex(**kw)(p, t).item(),
        "mean_iou": MulticlassJaccardIndex(num_classes=2, average="macro", **kw)(p, t).item(),
        "f1": BinaryF1Score(**kw)(p, t).item(),
        "precision": BinaryPrecision(**kw)(p, t).item(),
        "recall": BinaryRecall(**kw)(p, t).item(),
        "accuracy": BinaryAccuracy(**kw)(p, t).item(),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_as_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    label = rng.choice([0, 1, 255], size=(40, 30), p=[0.5, 0.3, 0.2]).astype(np.uint8)
    mask = rng.choice([0, 1], size=(40, 30)).astype(np.uint8)
    c = Confusion()
    for y0 in range(0, 40, 7):  # band by band, as prediction does
        c.update(mask[y0 : y0 + 7], label[y0 : y0 + 7])
    ours = c.metrics()
    theirs = _torchmetrics(mask, label)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_nodata_in_either_is_left_out_and_hand_computed() -> None:
    label = np.array([[1, 1, 0, 0, 255, 1]], dtype=np.uint8)
    mask = np.array([[1, 0, 1, 0, 1, 255]], dtype=np.uint8)
    c = Confusion()
    c.update(mask, label)
    assert (c.tp, c.fn, c.fp, c.tn) == (1, 1, 1, 1)
    m = c.metrics()
    assert m["burned_iou"] == pytest.approx(1 / 3)
    assert m["mean_iou"] == pytest.approx(1 / 3)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.5)


def test_empty_scene_scores_zero_not_nan() -> None:
    m = Confusion().metrics()
    assert all(v == 0.0 for v in m.values())


def test_csv_has_scenes_and_overall(tmp_path: Path) -> None:
    a = SceneScore("a", "1", Confusion(tp=3, fp=1, fn=0, tn=6))
    b = SceneScore("b", "2", Confusion(tp=0, fp=0, fn=2, tn=8))
    out = tmp_path / "evaluation.csv"
    overall = write_evaluation(out, [a, b])
    rows = list(csv.DictReader(out.open()))
    assert [r["scene"] for r in rows] == ["a", "b", "overall"]
    assert overall.confusion == Confusion(tp=3, fp=1, fn=2, tn=14)
    assert float(rows[2]["burned_iou"]) == pytest.approx(3 / 6)
    assert float(rows[0]["accuracy"]) == pytest.approx(0.9)
    assert int(rows[2]["valid_pixels"]) == 20


def test_clear_and_cloud_scores_on_a_hand_made_case():
    """Two columns clear, two under cloud (dNBR NaN). Model: right everywhere but one clear
    pixel. dNBR >= 0.1 map: right where clear, and unburned under cloud (no dNBR)."""
    from firedpy_nrt.predict.evaluation import condition_scores

    label = np.array([[1, 0, 1, 0], [1, 0, 1, 255]], np.uint8)
    mask = np.array([[1, 1, 1, 0], [1, 0, 1, 0]], np.uint8)  # one false positive, clear
    dnbr = np.array([[0.5, 0.0, np.nan, np.nan], [0.4, 0.05, np.nan, np.nan]], np.float32)
    got = condition_scores(mask, label, dnbr, 0.1)
    clear, cloud = got["clear"], got["cloud"]
    assert (clear.tp, clear.fp, clear.fn, clear.tn) == (2, 1, 0, 1)
    assert (cloud.tp, cloud.fp, cloud.fn, cloud.tn) == (2, 0, 0, 1)  # the 255 is left out
    assert clear.metrics()["burned_iou"] == pytest.approx(2 / 3)
    assert cloud.metrics()["burned_iou"] == 1.0
    d_clear, d_cloud, d_all = got["dnbr_clear"], got["dnbr_cloud"], got["dnbr"]
    assert (d_clear.tp, d_clear.fp, d_clear.fn, d_clear.tn) == (2, 0, 0, 2)
    assert (d_cloud.tp, d_cloud.fn) == (0, 2) and d_cloud.metrics()["burned_iou"] == 0.0
    assert d_all.metrics()["burned_iou"] == pytest.approx(2 / 4)
