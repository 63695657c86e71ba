"""Benchmark the match stage's matching against a per-row scan like the original script's.

    PYTHONPATH=src python benchmarks/match.py [--fires 2000] [--per-fire 50] [--baseline-rows 50]

Both work on names only (no files). Ours matches the full set (parsing included). The baseline,
like the script we replace, scans every dNBR, coherence and binary name for each luminance row
(generously, on names it parsed once up front rather than in the loop);
it is quadratic, so it runs on a random subsample of luminance rows against the *full* candidate
lists and its time is extrapolated linearly to all rows (its cost per row does not depend on which
rows). Its choices on the subsample are checked against ours.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from firedpy_nrt.data.layers import SENSORS, parse_layer  # noqa: E402
from firedpy_nrt.prepare.match import match_names  # noqa: E402


def make_names(fires: int, per_fire: int, seed: int) -> tuple[list[str], ...]:
    """Realistic names: 12-day SAR pairs, triplets, binaries for most pairs, dNBR of five sensors."""
    rng = random.Random(seed)
    t0 = date(2019, 1, 1)

    def d(k: int) -> str:
        return (t0 + timedelta(days=k)).strftime("%Y%m%d")

    lum, coh, binary, dnbr = [], [], [], []
    for i in range(fires):
        fire = 1000 + i
        base = rng.randint(0, 1500)
        for k in range(per_fire):
            a = base + 12 * k
            b = a + 12 * rng.choice([1, 2])
            lum.append(f"{fire}_{d(a)}_{d(b)}_DeltaLumin_100m.tif")
            coh.append(f"{fire}_{d(a - 12)}_{d(a)}_{d(b)}_cohChange.tif")
            binary.append(f"{fire}_FIREDpy_sar_combined_{d(a)}_{d(b)}.tif")
            sensor = rng.choice(SENSORS)
            t1 = base - rng.randint(5, 40)
            t2 = base + rng.randint(0, 12 * per_fire + 30)
            tile = "T12SVC" if sensor.startswith("S2") else "P034R032"
            level = "L2A" if sensor.startswith("S2") else "L2SP"
            dnbr.append(
                f"{sensor}_{level}_{tile}_{fire}_{d(t1)}T180909_{d(t2)}T175921_30m_DNBR.TIF"
            )
    return lum, coh, binary, dnbr


def baseline_parse(coh: list[str], binary: list[str], dnbr: list[str]) -> tuple[list, ...]:
    """The baseline's one-off cost: parse every candidate name once."""
    return (
        [parse_layer(n, "coh_change") for n in coh],
        [parse_layer(n, "binary_product") for n in binary],
        [parse_layer(n, "dnbr") for n in dnbr],
    )


def baseline(lum_rows: list[str], C: list, B: list, D: list) -> dict:
    """Per-row scan: for each luminance row, walk every candidate of every layer."""
    out = {}
    for name in lum_rows:
        p = parse_layer(name, "lum_change")
        d1, d2 = p.dates
        best_b = None
        for x in B:
            if (
                x.fire == p.fire
                and x.dates == (d1, d2)
                and (best_b is None or x.path.name < best_b)
            ):
                best_b = x.path.name
        best_c, key_c = None, None
        for x in C:
            if x.fire != p.fire:
                continue
            k = (
                not (d1 in x.dates and d2 in x.dates),
                abs((d2 - x.dates[2]).days),
                abs((d1 - x.dates[1]).days),
                x.path.name,
            )
            if key_c is None or k < key_c:
                best_c, key_c = x.path.name, k
        best_d, key_d = None, None
        for x in D:
            if x.fire != p.fire:
                continue
            k = (abs((d2 - x.dates[1]).days), abs((d1 - x.dates[0]).days), x.path.name)
            if key_d is None or k < key_d:
                best_d, key_d = x.path.name, k
        if best_c and best_d:
            out[name] = (best_c, best_d, best_b)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fires", type=int, default=2000)
    ap.add_argument("--per-fire", type=int, default=50)
    ap.add_argument("--baseline-rows", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    lum, coh, binary, dnbr = make_names(args.fires, args.per_fire, args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start")
    print(
        f"names: {len(lum):,} luminance change, {len(coh):,} coherence change, "
        f"{len(binary):,} binary product, {len(dnbr):,} dNBR over {args.fires:,} fires"
    )
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        res = match_names(lum, coh, binary, dnbr)
        times.append(time.perf_counter() - t)
    ours = min(times)
    print(
        f"ours, full set (parsing included): {ours:.2f} s "
        f"(best of {args.repeat}; {len(res.matched):,} rows matched, {len(res.unmatched):,} dropped)"
    )

    rows = random.Random(args.seed + 1).sample(lum, args.baseline_rows)
    t = time.perf_counter()
    parsed = baseline_parse(coh, binary, dnbr)
    base_parse = time.perf_counter() - t
    t = time.perf_counter()
    ref = baseline(rows, *parsed)
    base = time.perf_counter() - t
    per_row = base / len(rows)
    base_full = base_parse + per_row * len(lum)
    print(
        f"baseline per-row scan: parsing once {base_parse:.2f} s, then {base:.2f} s for "
        f"{len(rows):,} sampled rows against all candidates ({per_row * 1000:.0f} ms/row); "
        f"extrapolated linearly to {len(lum):,} rows: {base_full:,.0f} s (~{base_full / 3600:.1f} h)"
    )
    t = time.perf_counter()
    sub = match_names(rows, coh, binary, dnbr)
    ours_sub = time.perf_counter() - t
    print(f"ours on the same {len(rows):,} rows (parsing all candidates): {ours_sub:.2f} s")

    def choices(result) -> dict:
        return {
            Path(r["lum_change"]).name: (
                Path(r["coh_change"]).name,
                Path(r["dnbr"]).name,
                Path(r["binary_product"]).name if r["binary_product"] else None,
            )
            for r in result.matched.to_dict("records")
        }

    full = choices(res)
    got = {k: full.get(k) for k in rows}
    assert choices(sub) == {k: v for k, v in got.items() if v is not None}
    agree = sum(got.get(k) == v for k, v in ref.items())
    print(f"agreement on the sample: {agree}/{len(ref)} rows choose the same files")
    print(
        f"ratio (baseline extrapolated / ours full): {base_full / ours:,.0f}x; "
        f"on the same {len(rows)} rows, both parsing all candidates: "
        f"{(base_parse + base) / ours_sub:,.1f}x; target for ours: < 5 s -> "
        f"{'met' if ours < 5 else 'NOT met'}"
    )
    if agree != len(ref):
        sys.exit(1)


if __name__ == "__main__":
    main()
