"""Does the model map burns on fires of another character than it was trained on?

    python benchmarks/generalization.py [--population B B2 ...] [--work DIR] [-- train overrides]

In one run:

1. population A: ``prepare.py source=synthetic`` with its defaults (the training population);
2. the *shifted* populations (``--population``, default B): another seed and other generator
   settings (more cloud, more fires whose backscatter brightens, more unmasked haze, wetter soil,
   other scene sizes, noisier dNBR; B2 to B5 shift further, see ``POPULATIONS``), plus any
   ``--shift KEY=VALUE``;
3. ``train.py experiment=demo`` on A, once (its wall time is printed: the demo's budget is ~4 min);
4. for each shifted population, ``predict.py ckpt=best split=all`` over every scene and its
   ``evaluation.csv``;
5. two baselines on the same pixels: the dNBR >= 0.1 threshold, and a per-pixel logistic
   fusion of the three layers (box-smoothed, plus dNBR validity) fitted on A.

It prints burned IoU overall, where dNBR is valid (clear) and where it is not (cloud), for the
model, the threshold and the fusion, and the model's margin over the threshold, per population,
then a summary over them. The baselines are measured in the same run, on the same pixels.
Everything is written under ``--work`` (default: a temporary folder, removed afterwards unless
``--keep``); a population already prepared there is reused.

    python benchmarks/generalization.py --population B B2 B3 B4 B5 -- seed=7   # the README's table
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_separability import features  # noqa: E402

from firedpy_nrt.data.match_csv import read_match_csv  # noqa: E402
from firedpy_nrt.data.raster import DEFAULT_LABEL_THRESHOLD, AlignedRow  # noqa: E402

#: The shifted population: what differs from ``source=synthetic``'s defaults.
SHIFTED = [
    "synthetic.seed=2026",
    "synthetic.n_fires=6",
    "synthetic.cloud_fraction=0.3",  # 0-60 % of each dNBR under cloud
    "synthetic.brightening_fraction=0.4",
    "synthetic.haze_fraction=0.25",
    "synthetic.moisture_db=1.5",
    "synthetic.size=256",
    "synthetic.size_jitter=0.25",
    "synthetic.dnbr_noise=0.07",
    "synthetic.lum_burn_db=-2.5",
    "synthetic.start_date=2022-07-01",
]

#: Named shifted populations: what each adds to ``SHIFTED`` (the README's table).
POPULATIONS: dict[str, list[str]] = {
    "B": [],
    # five of six fires brightening, burns from -6 to +4.5 dB, wetter soil, larger scenes
    "B2": [
        "synthetic.seed=77",
        "synthetic.brightening_fraction=0.5",
        "synthetic.haze_fraction=0.15",
        "synthetic.size=384",
        "synthetic.moisture_db=2.0",
        "synthetic.lum_burn_db=-3.5",
    ],
    # more cloud and unmasked haze, noisier dNBR
    "B3": [
        "synthetic.seed=123",
        "synthetic.cloud_fraction=0.45",
        "synthetic.brightening_fraction=0.3",
        "synthetic.size=320",
        "synthetic.dnbr_noise=0.1",
        "synthetic.haze_fraction=0.3",
    ],
    # half the labelled pixels under cloud, wetter soil, larger scenes of more varied size
    "B4": [
        "synthetic.seed=314",
        "synthetic.size=448",
        "synthetic.size_jitter=0.3",
        "synthetic.brightening_fraction=0.25",
        "synthetic.moisture_db=2.5",
        "synthetic.cloud_fraction=0.5",
    ],
    # a weaker coherence response, more harvested fields (defined after the recipe was fixed)
    "B5": [
        "synthetic.seed=999",
        "synthetic.cloud_fraction=0.4",
        "synthetic.size=288",
        "synthetic.coh_burn_rise=0.25",
        "synthetic.disturbance_fraction=0.08",
        "synthetic.moisture_db=2.0",
    ],
}


def _run(args: list[str], log: Path) -> float:
    started = time.monotonic()
    with log.open("w") as fh:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(
            f"{' '.join(args[:2])} failed (exit {done.returncode}):\n" + "\n".join(tail)
        )
    return time.monotonic() - started


class Pooled:
    """Burned-class confusion counts, pooled over scenes."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def add(self, pred: np.ndarray, label: np.ndarray, keep: np.ndarray) -> None:
        m = keep & (label != 255)
        p, t = pred[m], label[m] == 1
        self.tp += int((p & t).sum())
        self.fp += int((p & ~t).sum())
        self.fn += int((~p & t).sum())

    @property
    def iou(self) -> float:
        den = self.tp + self.fp + self.fn
        return self.tp / den if den else 0.0


def _rows(csv_path: Path) -> list[dict]:
    return read_match_csv(csv_path).to_dict("records")


class Fusion:
    """The per-pixel logistic fusion baseline: fitted once on A, scored on each population."""

    def __init__(self, train_csv: Path, label_threshold: float) -> None:
        """Fit on every labelled pixel of A (a third of them), by gradient descent."""
        self.label_threshold = label_threshold
        xs, ys = [], []
        for row in _rows(train_csv):
            with AlignedRow(row, label_threshold=label_threshold) as r:
                image, label = r.read()
            keep = label.ravel() != 255
            xs.append(features(image)[keep][::3])
            ys.append((label.ravel()[keep] == 1)[::3].astype(float))
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        z = np.c_[(x - self.mu) / self.sd, np.ones(len(x))]
        self.w = np.zeros(z.shape[1])
        for _ in range(400):  # gradient descent on the logistic loss
            p = 1 / (1 + np.exp(-z @ self.w))
            self.w -= 0.5 * z.T @ (p - y) / len(z)

    def scores(self, test_csv: Path) -> dict[str, float]:
        """Burned IoU pooled over every scene of ``test_csv``: overall, clear and cloud."""
        pooled = {k: Pooled() for k in ("all", "clear", "cloud")}
        for row in _rows(test_csv):
            with AlignedRow(row, label_threshold=self.label_threshold) as r:
                image, label = r.read()
            f = features(image)
            z = np.c_[(f - self.mu) / self.sd, np.ones(len(f))]
            pred = ((z @ self.w) > 0).reshape(label.shape)
            clear = np.isfinite(image[2])
            pooled["all"].add(pred, label, np.ones_like(clear))
            pooled["clear"].add(pred, label, clear)
            pooled["cloud"].add(pred, label, ~clear)
        return {k: v.iou for k, v in pooled.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="folder for data, runs and maps")
    ap.add_argument("--keep", action="store_true", help="keep the --work folder's contents")
    ap.add_argument("--experiment", default="demo", help="train.py experiment=<this>")
    ap.add_argument(
        "--population",
        nargs="+",
        default=["B"],
        choices=sorted(POPULATIONS),
        help="shifted populations to score, one training for all (default: B)",
    )
    ap.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change every scored population further (e.g. --shift synthetic.seed=77)",
    )
    ap.add_argument(
        "--predict",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a predict.py override for every population (e.g. --predict tta=none)",
    )
    ap.add_argument(
        "--skip-training", action="store_true", help="score the newest run in --work again"
    )
    ap.add_argument("train_overrides", nargs="*", help="more train.py overrides (after --)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="firedpy-generalization-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _main(args, work)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _population_dir(name: str, shifts: list[str]) -> str:
    """A folder name per population and extra shifts, so prepared data is reused safely."""
    extra = [*POPULATIONS[name], *shifts]
    return name.lower() + "".join("-" + x.split(".", 1)[-1].replace("=", "") for x in extra)


def _main(args: argparse.Namespace, work: Path) -> None:
    a, logs = work / "a", work / "logs"
    common = [f"paths.log_dir={logs}"]
    print(f"work folder: {work}")
    if not (a / "synthetic" / "match.csv").is_file():
        _run(
            ["prepare.py", "source=synthetic", f"paths.data_dir={a}", *common],
            work / "prepare_a.log",
        )
    train_s = 0.0
    if not args.skip_training:
        train_s = _run(
            [
                "train.py",
                f"experiment={args.experiment}",
                f"paths.data_dir={a}",
                *common,
                "task_name=generalization",
                *args.train_overrides,
            ],
            work / "train.log",
        )
        print(
            f"trained on population A (defaults) in {train_s / 60:.1f} min wall "
            f"(train.py experiment={args.experiment}, prepare excluded)"
        )
    fusion = Fusion(a / "synthetic" / "match.csv", DEFAULT_LABEL_THRESHOLD)
    results = {}
    for name in dict.fromkeys(args.population):
        results[name] = _score(args, work, name, common, fusion)
    if len(results) > 1:
        print(
            f"\n{'burned IoU overall':20s} {'model':>8s} {'cloud':>8s} {'dNBR>=0.1':>10s} {'fusion':>8s}"
        )
        for name, r in results.items():
            print(
                f"{name:20s} {r['model']['all']:8.3f} {r['model']['cloud']:8.3f} "
                f"{r['dnbr_threshold']['all']:10.3f} {r['fusion']['all']:8.3f}"
            )
        model = [r["model"]["all"] for r in results.values()]
        margin = [r["model"]["all"] - r["dnbr_threshold"]["all"] for r in results.values()]
        print(
            f"{'mean':20s} {np.mean(model):8.3f}   (model {min(model):.3f} to {max(model):.3f}; "
            f"margin over the threshold {min(margin):+.3f} to {max(margin):+.3f})"
        )
    summary = {"train_minutes": train_s / 60, "experiment": args.experiment, "populations": results}
    (work / "generalization.json").write_text(json.dumps(summary, indent=1))


def _score(
    args: argparse.Namespace, work: Path, name: str, common: list[str], fusion: Fusion
) -> dict:
    """Prepare population ``name`` (unless there), map it with the newest run, score it."""
    shifted = [*SHIFTED, *POPULATIONS[name], *args.shift]
    b_name = _population_dir(name, args.shift)
    b = work / b_name
    if not (b / "synthetic" / "match.csv").is_file():
        _run(
            ["prepare.py", "source=synthetic", f"paths.data_dir={b}", *common, *shifted],
            work / f"prepare_{b_name}.log",
        )
    maps = work / "maps" / b_name
    shutil.rmtree(maps, ignore_errors=True)
    _run(
        [
            "predict.py",
            "ckpt=best",
            "train_task=generalization",
            "split=all",
            f"data.match_csv={b / 'synthetic' / 'match.csv'}",
            f"output_dir={maps}",
            f"paths.data_dir={b}",
            *common,
            "task_name=generalization-predict",
            *args.predict,
        ],
        work / f"predict_{b_name}.log",
    )
    with (maps / "evaluation.csv").open(newline="") as fh:
        overall = next(r for r in csv.DictReader(fh) if r["scene"] == "overall")
    suffixes = {"all": "", "clear": "_clear", "cloud": "_cloud"}
    model = {k: float(overall[f"burned_iou{x}"]) for k, x in suffixes.items()}
    dnbr = {k: float(overall[f"dnbr_burned_iou{x}"]) for k, x in suffixes.items()}
    fusion_iou = fusion.scores(b / "synthetic" / "match.csv")
    n_b = len(_rows(b / "synthetic" / "match.csv"))
    print(
        f"\nscored on population {name} (shifted: "
        f"{', '.join(s.split('.', 1)[1] for s in shifted)}), {n_b} scenes, "
        f"{overall['clear_pixels']} clear and {overall['cloud_pixels']} cloudy labelled pixels"
    )
    print(f"{'burned IoU on ' + name:28s} {'overall':>8s} {'clear':>8s} {'cloud':>8s}")
    for label, sc in (
        ("model (" + args.experiment + ")", model),
        ("dNBR >= 0.1", dnbr),
        ("logistic fusion (fit on A)", fusion_iou),
    ):
        print(f"{label:28s} {sc['all']:8.3f} {sc['clear']:8.3f} {sc['cloud']:8.3f}")
    print(
        f"model - threshold: {model['all'] - dnbr['all']:+.3f} overall; "
        f"ratio model / threshold: {model['all'] / max(dnbr['all'], 1e-9):.2f}"
    )
    return {
        "model": model,
        "dnbr_threshold": dnbr,
        "fusion": fusion_iou,
        "scenes": n_b,
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
    }


if __name__ == "__main__":
    main()
