"""How hard is the synthetic dataset? A dNBR >= 0.1 threshold against single layers and a fusion.

    PYTHONPATH=src python prepare.py source=synthetic paths.data_dir=data
    PYTHONPATH=src python benchmarks/synthetic_separability.py data/synthetic/match.csv

Reads every match row through ``data.raster.AlignedRow`` (the grid of the luminance change), splits
the fires 5:3 by id, and scores on the held-out fires (IoU of the burned class, label nodata
ignored): the dNBR >= 0.1 threshold (NaN under clouds counts as unburned, as a threshold map
has it), the luminance change alone (box-smoothed, threshold fitted on the training fires), and a
per-pixel logistic regression on the three box-smoothed layers plus the dNBR validity mask. A
segmentation network should beat the fusion figure; if the threshold matched it, the data would
be too easy to show anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from firedpy_nrt.data.match_csv import read_match_csv  # noqa: E402
from firedpy_nrt.data.raster import AlignedRow  # noqa: E402


def box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """NaN-aware mean over a (2r+1)^2 window, by summed-area tables."""
    valid = np.isfinite(a)
    k = 2 * r + 1

    def window_sum(z: np.ndarray) -> np.ndarray:
        c = np.pad(np.pad(z, r, mode="edge").cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]

    return window_sum(np.where(valid, a, 0.0)) / np.maximum(window_sum(valid.astype(float)), 1)


def features(image: np.ndarray) -> np.ndarray:
    lum, coh, dnbr = image
    dn_valid = np.isfinite(dnbr).astype(float)
    dn = np.nan_to_num(box_mean(dnbr, 1))
    cols = [box_mean(lum, 3), box_mean(coh, 3), dn * dn_valid, dn_valid]
    return np.nan_to_num(np.stack([c.ravel() for c in cols], 1))


def iou(pred: np.ndarray, label: np.ndarray) -> float:
    m = label != 255
    p, t = pred[m], label[m] == 1
    return float((p & t).sum() / max((p | t).sum(), 1))


def fit_and_score(data: list, train: set[str]) -> dict[str, list[float]]:
    """Fit on the ``train`` fires, score every row of the others: IoU per row and method."""
    x = np.concatenate([f[keep] for fire, _, _, f, keep in data if fire in train])
    y = np.concatenate(
        [label.ravel()[keep] for fire, _, label, _, keep in data if fire in train]
    ).astype(float)
    # every third training pixel is plenty for five weights, and three times faster
    x, y = x[::3], y[::3]
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    for _ in range(400):  # plain gradient descent on the logistic loss
        p = 1 / (1 + np.exp(-z @ w))
        w -= 0.5 * z.T @ (p - y) / len(z)
    # luminance alone: the smoothed-change threshold that is best on the training fires
    lum_train = x[:, 0]
    cuts = np.quantile(lum_train, np.linspace(0.05, 0.95, 37))
    best_cut = max(
        cuts,
        key=lambda c: (
            ((lum_train < c) & (y == 1)).sum() / max(((lum_train < c) | (y == 1)).sum(), 1)
        ),
    )
    scores: dict[str, list[float]] = {"dnbr>=0.1": [], "lum alone": [], "fusion (logistic)": []}
    for fire, image, label, f, _ in data:
        if fire in train:
            continue
        shape = label.shape
        scores["dnbr>=0.1"].append(iou(np.nan_to_num(image[2], nan=-1.0) >= 0.1, label))
        scores["lum alone"].append(iou((f[:, 0] < best_cut).reshape(shape), label))
        zz = np.c_[(f - mu) / sd, np.ones(len(f))]
        scores["fusion (logistic)"].append(iou((zz @ w > 0).reshape(shape), label))
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("match_csv", type=Path)
    ap.add_argument(
        "--leave-one-out", action="store_true", help="also hold out each fire in turn (slower)"
    )
    args = ap.parse_args()
    rows = read_match_csv(args.match_csv).to_dict("records")
    data = []
    for row in rows:
        with AlignedRow(row) as r:
            image, label = r.read()
        data.append((row["fire_id"], image, label, features(image), label.ravel() != 255))
    fires = sorted({d[0] for d in data}, key=int)
    train = set(fires[: len(fires) * 5 // 8])
    scores = fit_and_score(data, train)
    cloud = [
        float(np.isnan(im[2])[lab != 255].mean()) for f, im, lab, _, _ in data if f not in train
    ]
    print(
        f"{len(rows)} rows, {len(fires)} fires ({len(train)} for fitting, {len(fires) - len(train)} "
        f"held out); dNBR NaN share on held-out rows: {np.mean(cloud):.2f}"
    )
    for name, values in scores.items():
        print(f"held-out IoU, {name:18s}: {np.mean(values):.3f}")
    base = np.mean(scores["dnbr>=0.1"])
    print(f"ratio fusion / threshold: {np.mean(scores['fusion (logistic)']) / base:.2f}")
    if args.leave_one_out:
        wins = 0
        for fire in fires:
            s = fit_and_score(data, set(fires) - {fire})
            thr, fused = np.mean(s["dnbr>=0.1"]), np.mean(s["fusion (logistic)"])
            wins += fused > thr
            print(f"fire {fire} held out: dnbr>=0.1 {thr:.3f}, fusion {fused:.3f}")
        print(f"leave-one-fire-out: fusion beats the threshold on {wins} of {len(fires)} fires")


if __name__ == "__main__":
    main()
