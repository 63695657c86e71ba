"""Match luminance-change rasters with their coherence change, binary product and dNBR by name.

One row per luminance-change file (README: data contract), computed for whole tables at once with
numpy, never row by row:

* binary product: a hash join on (fire, d1, d2);
* coherence change: a hash join of (fire, d1, d2) against every pair of each file's three dates
  finds the files that hold both dates; for the rest, the nearest last date;
* dNBR, and that coherence fallback: candidates sorted by (fire, date) packed into one int64; a
  binary search gives each luminance file its nearest candidate date on either side, and only the
  candidates at that nearest date are compared on the second date and then the file name.

So the cost is O((n + m) log m) for n luminance files and m candidates, whatever the number of
files per fire, where the script we replace scanned every dNBR file for every row.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from operator import methodcaller
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.data.layers import REQUIRED_GROUPS, compile_patterns, is_companion
from firedpy_nrt.data.match_csv import (
    COLUMNS,
    atomic_write_text,
    csv_text,
    fire_sort_key,
    match_csv_text,
    relative_path,
)
from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.prepare.pipeline import StageResult

log = logging.getLogger(__name__)

KINDS = ("lum_change", "coh_change", "binary_product", "dnbr")
_DIR_KEYS = {
    "lum_change": "lum_dir",
    "coh_change": "coh_dir",
    "binary_product": "binary_dir",
    "dnbr": "dnbr_dir",
}
_DATE_GROUPS = {
    kind: tuple(g for g in groups if g != "fire") for kind, groups in REQUIRED_GROUPS.items()
}

#: Columns of the unmatched report (``<csv stem>.unmatched.csv``): what the luminance file was, what was found, and why it was dropped.
UNMATCHED_COLUMNS = (
    "fire_id",
    "lum_change",
    "lum_date_pre",
    "lum_date_post",
    "coh_change",
    "dnbr",
    "binary_product",
    "reason",
)

# Day numbers (days since 1970-01-01) of years 0001-9999 fit in 22 bits after this offset, so a
# (fire, day) pair packs into one int64 that sorts by fire, then day.
_DAY_BITS = 22
_DAY_OFFSET = 1 << 20
_RANK_BITS = 24  # candidate rank by file name, the last tie-breaker: 16.7 million files at most
_RANK_MASK = (1 << _RANK_BITS) - 1


@dataclass
class LayerTable:
    """Parsed file names of one layer: ``frame`` has path, name, fire and integer day columns."""

    kind: str
    frame: pd.DataFrame
    unknown: list[str] = field(default_factory=list)


@dataclass
class MatchResult:
    """The matched rows (contract columns), the dropped ones (with a reason), and unparsed names."""

    matched: pd.DataFrame
    unmatched: pd.DataFrame
    unknown: dict[str, list[str]]


def _day_number(text: str | None) -> str:
    """The first eight digits of a date text (``YYYYMMDD``), whatever separates them."""
    text = text or ""
    head = text[:8]
    return head if head.isdigit() else re.sub(r"\D", "", text)[:8]


def _days(texts: Sequence[str | None]) -> np.ndarray:
    """Date texts to day numbers since 1970-01-01 (int64); -1 where no real date."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    # fast path for the contract's stamps (YYYYMMDD or YYYYMMDDTHHMMSS): a fixed-width cut in C
    heads = np.array(texts, dtype=object).astype("U").astype("U8")
    odd = ~np.char.isdigit(heads) | (np.char.str_len(heads) < 8)
    if odd.any():
        heads = heads.astype(object)
        heads[odd] = [_day_number(texts[i]) for i in np.flatnonzero(odd)]
    days = pd.to_datetime(pd.Series(heads, dtype=object), format="%Y%m%d", errors="coerce")
    out = days.to_numpy().astype("datetime64[D]").astype(np.int64)
    out[days.isna().to_numpy()] = -1
    return out


def parse_names(
    names: Iterable[str | os.PathLike[str]],
    kind: str,
    patterns: Mapping[str, re.Pattern[str]] | None = None,
) -> LayerTable:
    """Parse file names (or paths) of one layer kind; names that fit no pattern go to ``unknown``.

    Dates become integer day numbers (days since 1970-01-01); a name whose dates are not real
    calendar dates counts as unknown.
    """
    pats = patterns or compile_patterns()
    pat = pats[kind]
    date_groups = _DATE_GROUPS[kind]
    with_sensor = kind == "dnbr" and "sensor" in pat.groupindex
    wanted = ["fire", *date_groups, *(["sensor"] if with_sensor else [])]
    index = [pat.groupindex[g] for g in wanted]
    sep, alt = os.sep, os.altsep
    # C-level iteration (map/filter) where it can be: this runs over every file name.
    paths = [p if isinstance(p, str) else os.fspath(p) for p in names]
    basenames = [p.rpartition(sep)[2] for p in paths]
    if alt:
        basenames = [n.rpartition(alt)[2] for n in basenames]
    found = list(map(pat.match, basenames))
    unknown: list[str] = []
    if any(m is None for m in found):
        unknown = [p for p, m in zip(paths, found, strict=True) if m is None]
        paths = [p for p, m in zip(paths, found, strict=True) if m is not None]
        basenames = [n for n, m in zip(basenames, found, strict=True) if m is not None]
        found = [m for m in found if m is not None]
    groups = list(map(methodcaller("group", *index), found))
    columns = list(zip(*groups, strict=True)) if groups else [() for _ in wanted]
    codes, uniques = pd.factorize(np.array(columns[0], dtype=object))
    fires = (
        np.array([str(int(u)) if u.isdigit() else u for u in uniques] or [""], dtype=object)[codes]
        if len(codes)
        else np.zeros(0, dtype=object)
    )
    frame = pd.DataFrame({"path": paths, "name": basenames, "fire": fires})
    valid = np.ones(len(frame), dtype=bool)
    for g, col in zip(date_groups, columns[1 : 1 + len(date_groups)], strict=True):
        frame[g] = _days(list(col))
        valid &= frame[g].to_numpy() >= 0
    if kind == "dnbr":
        frame["sensor"] = list(columns[-1]) if with_sensor else None
    if not valid.all():
        unknown.extend(frame.loc[~valid, "path"].tolist())
        frame = frame.loc[valid].reset_index(drop=True)
    return LayerTable(kind=kind, frame=frame, unknown=unknown)


def _ranks(frame: pd.DataFrame) -> np.ndarray:
    """Each candidate's rank by file name (then full path), the last tie-breaker of the rules."""
    order = np.lexsort((frame["path"].to_numpy(dtype=str), frame["name"].to_numpy(dtype=str)))
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame), dtype=np.int64)
    return rank


def _fire_day(fire: np.ndarray, day: np.ndarray) -> np.ndarray:
    return (fire.astype(np.int64) << _DAY_BITS) | (day + _DAY_OFFSET)


def _nearest(
    q_fire: np.ndarray,
    q_first: np.ndarray,
    q_second: np.ndarray,
    c_fire: np.ndarray,
    c_first: np.ndarray,
    c_second: np.ndarray,
    c_rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the candidate of the same fire with the smallest ``|q_first - c_first|``,
    ties broken by ``|q_second - c_second|`` and then by rank (file name).

    Returns (candidate index or -1, that smallest first gap in days or -1). Candidates are sorted
    by (fire, first date) once; each query finds its nearest first dates on both sides by binary
    search, and only the candidates sharing that nearest date are compared further. Cost is
    O((queries + candidates) log candidates), whatever the number of files per fire.
    """
    nq = len(q_fire)
    best = np.full(nq, -1, dtype=np.int64)
    gap = np.full(nq, -1, dtype=np.int64)
    if nq == 0 or len(c_fire) == 0:
        return best, gap
    ckey = _fire_day(c_fire, c_first)
    order = np.argsort(ckey, kind="stable")
    sorted_keys = ckey[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(sorted_keys)]
    groups = sorted_keys[starts]  # distinct (fire, first date), ascending
    qkey = _fire_day(q_fire, q_first)
    pos = np.searchsorted(groups, qkey, side="left")
    right = np.minimum(pos, len(groups) - 1)
    left = np.maximum(pos - 1, 0)
    q_code = q_fire.astype(np.int64)
    right_ok = (pos < len(groups)) & ((groups[right] >> _DAY_BITS) == q_code)
    left_ok = (pos > 0) & ((groups[left] >> _DAY_BITS) == q_code)
    none = np.iinfo(np.int64).max
    gap_right = np.where(right_ok, groups[right] - qkey, none)
    gap_left = np.where(left_ok, qkey - groups[left], none)
    smallest = np.minimum(gap_right, gap_left)
    found = smallest < none
    if not found.any():
        return best, gap
    gap[found] = smallest[found]
    # the candidate groups at the smallest gap: right, left, or both on a tie
    take_r = found & (gap_right == smallest)
    take_l = found & (gap_left == smallest)
    q_idx = np.r_[np.flatnonzero(take_r), np.flatnonzero(take_l)]
    g_idx = np.r_[right[take_r], left[take_l]]
    by_query = np.argsort(q_idx, kind="stable")
    q_idx, g_idx = q_idx[by_query], g_idx[by_query]
    sizes = ends[g_idx] - starts[g_idx]
    offsets = np.cumsum(sizes) - sizes
    rep_q = np.repeat(q_idx, sizes)
    within = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(offsets, sizes)
    cand = order[np.repeat(starts[g_idx], sizes) + within]
    key = (np.abs(q_second[rep_q] - c_second[cand]) << _RANK_BITS) | c_rank[cand]
    seg = np.flatnonzero(np.r_[True, rep_q[1:] != rep_q[:-1]])
    mins = np.minimum.reduceat(key, seg)
    rank_to_cand = np.empty(len(c_rank), dtype=np.int64)
    rank_to_cand[c_rank] = np.arange(len(c_rank), dtype=np.int64)
    best[rep_q[seg]] = rank_to_cand[mins & _RANK_MASK]
    return best, gap


def _coherence_with_both_dates(
    lf: np.ndarray,
    l1: np.ndarray,
    l2: np.ndarray,
    cf: np.ndarray,
    C: pd.DataFrame,
    crank: np.ndarray,
) -> np.ndarray:
    """Per luminance row, the best coherence file whose three dates include both d1 and d2 (or -1).

    A hash join of (fire, d1, d2) against every ordered pair of each file's dates; among several
    such files: closest last date, then middle date, then file name.
    """
    out = np.full(len(lf), -1, dtype=np.int64)
    dates = [C[g].to_numpy(np.int64) for g in ("d0", "d1", "d2")]
    idx = np.arange(len(C), dtype=np.int64)
    pairs = pd.DataFrame(
        {
            "f": np.tile(cf.astype(np.int64), 9),
            "a": np.concatenate([dates[i] for i in range(3) for _ in range(3)]),
            "b": np.concatenate([dates[j] for _ in range(3) for j in range(3)]),
            "c": np.tile(idx, 9),
        }
    ).drop_duplicates()
    query = pd.DataFrame({"f": lf.astype(np.int64), "a": l1, "b": l2, "q": np.arange(len(lf))})
    hits = query.merge(pairs, on=["f", "a", "b"], how="inner")
    if hits.empty:
        return out
    q = hits["q"].to_numpy(np.int64)
    c = hits["c"].to_numpy(np.int64)
    order = np.lexsort((crank[c], np.abs(l1[q] - dates[1][c]), np.abs(l2[q] - dates[2][c]), q))
    q, c = q[order], c[order]
    first = np.r_[True, q[1:] != q[:-1]]
    out[q[first]] = c[first]
    return out


def _days_to_dates(days: np.ndarray) -> list[Any]:
    return pd.to_datetime(days.astype("datetime64[D]")).date.tolist() if len(days) else []


def _objects(frame: pd.DataFrame, keep_float: tuple[str, ...] = ()) -> pd.DataFrame:
    """Object columns with None for none (pandas would infer string columns holding NaN)."""
    for col in frame.columns:
        if col not in keep_float:
            values = frame[col].to_numpy(dtype=object, copy=True)
            values[pd.isna(values)] = None
            frame[col] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def match_tables(
    lum: LayerTable,
    coh: LayerTable,
    binary: LayerTable,
    dnbr: LayerTable,
    max_days: int | None = None,
) -> MatchResult:
    """Apply the contract's matching rules to parsed layer tables (one row per luminance file)."""
    L, C, B, D = lum.frame, coh.frame, binary.frame, dnbr.frame
    for table in (C, D):
        if len(table) > _RANK_MASK:
            raise DataError(f"too many files to match at once ({len(table)}); split the folders")
    fire_codes, fires = pd.factorize(pd.concat([L["fire"], C["fire"], B["fire"], D["fire"]]))
    nl, nc, nb = len(L), len(C), len(B)
    lf = fire_codes[:nl]
    cf = fire_codes[nl : nl + nc]
    bf = fire_codes[nl + nc : nl + nc + nb]
    df_ = fire_codes[nl + nc + nb :]
    l1 = L["d1"].to_numpy(np.int64) if nl else np.zeros(0, np.int64)
    l2 = L["d2"].to_numpy(np.int64) if nl else np.zeros(0, np.int64)

    # 1. binary product: exact (fire, d1, d2); duplicates resolved by file name
    bin_idx = np.full(nl, -1, dtype=np.int64)
    if nl and nb:
        bkeys = pd.DataFrame({"f": bf, "d1": B["d1"].to_numpy(), "d2": B["d2"].to_numpy()})
        bkeys["rank"] = _ranks(B)
        bkeys["i"] = np.arange(nb)
        bkeys = bkeys.sort_values("rank").drop_duplicates(["f", "d1", "d2"], keep="first")
        if len(bkeys) < nb:
            log.warning(
                "%d binary products share fire and dates with another; kept the first by name",
                nb - len(bkeys),
            )
        merged = pd.DataFrame({"f": lf, "d1": l1, "d2": l2}).merge(
            bkeys[["f", "d1", "d2", "i"]], on=["f", "d1", "d2"], how="left"
        )
        bin_idx = merged["i"].fillna(-1).to_numpy(np.int64)

    # 2. coherence change: dates include both d1 and d2; else closest last date, then middle date
    coh_idx = np.full(nl, -1, dtype=np.int64)
    if nl and nc:
        crank = _ranks(C)
        coh_idx = _coherence_with_both_dates(lf, l1, l2, cf, C, crank)
        rest = np.flatnonzero(coh_idx < 0)
        if rest.size:
            coh_idx[rest], _ = _nearest(
                lf[rest],
                l2[rest],
                l1[rest],
                cf,
                C["d2"].to_numpy(np.int64),
                C["d1"].to_numpy(np.int64),
                crank,
            )

    # 3. dNBR: closest post date, then closest pre date, then file name; max_days excludes.
    # The limit is on the post-date gap only, so the best within it is the overall best, if any.
    dn_idx = np.full(nl, -1, dtype=np.int64)
    dn_gap = np.full(nl, -1, dtype=np.int64)
    if nl and len(D):
        dn_idx, dn_gap = _nearest(
            lf,
            l2,
            l1,
            df_,
            D["t2"].to_numpy(np.int64),
            D["t1"].to_numpy(np.int64),
            _ranks(D),
        )
    dn_idx_closest = dn_idx.copy()
    beyond = (dn_idx >= 0) & (max_days is not None) & (dn_gap > (max_days or 0))
    dn_idx[beyond] = -1

    keep = (coh_idx >= 0) & (dn_idx >= 0)
    fire_ids = np.asarray(fires, dtype=object)[lf] if nl else np.zeros(0, dtype=object)

    def pick(table: pd.DataFrame, idx: np.ndarray, column: str) -> np.ndarray:
        values = table[column].to_numpy(dtype=object) if len(table) else np.zeros(0, dtype=object)
        out = np.full(len(idx), None, dtype=object)
        ok = idx >= 0
        out[ok] = values[idx[ok]]
        return out

    lum_paths = L["path"].to_numpy(dtype=object) if nl else np.zeros(0, dtype=object)
    k = np.flatnonzero(keep)
    di = dn_idx[k]
    matched = pd.DataFrame(
        {
            "fire_id": fire_ids[k],
            "lum_change": lum_paths[k],
            "coh_change": pick(C, coh_idx[k], "path"),
            "dnbr": pick(D, di, "path"),
            "binary_product": pick(B, bin_idx[k], "path"),
            "lum_date_pre": _days_to_dates(l1[k]),
            "lum_date_post": _days_to_dates(l2[k]),
            "dnbr_sensor": pick(D, di, "sensor") if "sensor" in D else np.full(len(k), None),
            "dnbr_date_pre": _days_to_dates(D["t1"].to_numpy(np.int64)[di]) if len(k) else [],
            "dnbr_date_post": _days_to_dates(D["t2"].to_numpy(np.int64)[di]) if len(k) else [],
            "dnbr_gap_days": dn_gap[k].astype(float),
        },
        columns=list(COLUMNS),
    )

    u = np.flatnonzero(~keep)
    reasons: list[str] = []
    for i in u:
        why = []
        if coh_idx[i] < 0:
            why.append(f"no coherence-change file for fire {fire_ids[i]}")
        if dn_idx[i] < 0:
            if beyond[i]:
                why.append(
                    f"no dNBR within max_days={max_days} of the post date "
                    f"(closest is {dn_gap[i]} days away)"
                )
            else:
                why.append(f"no dNBR file for fire {fire_ids[i]}")
        reasons.append("; ".join(why))
    unmatched = pd.DataFrame(
        {
            "fire_id": fire_ids[u],
            "lum_change": lum_paths[u],
            "lum_date_pre": _days_to_dates(l1[u]),
            "lum_date_post": _days_to_dates(l2[u]),
            "coh_change": pick(C, coh_idx[u], "path"),
            "dnbr": pick(D, dn_idx_closest[u], "path"),
            "binary_product": pick(B, bin_idx[u], "path"),
            "reason": reasons,
        },
        columns=list(UNMATCHED_COLUMNS),
    )
    unknown = {t.kind: t.unknown for t in (lum, coh, binary, dnbr)}
    matched = _objects(matched, keep_float=("dnbr_gap_days",))
    unmatched = _objects(unmatched)
    return MatchResult(matched=matched, unmatched=unmatched, unknown=unknown)


def match_names(
    lum: Sequence[str | os.PathLike[str]],
    coh: Sequence[str | os.PathLike[str]],
    binary: Sequence[str | os.PathLike[str]],
    dnbr: Sequence[str | os.PathLike[str]],
    max_days: int | None = None,
    patterns: Mapping[str, str] | None = None,
) -> MatchResult:
    """Match lists of file names or paths by the contract's rules; no file is opened."""
    pats = compile_patterns(dict(patterns) if patterns else None)
    return match_tables(
        parse_names(lum, "lum_change", pats),
        parse_names(coh, "coh_change", pats),
        parse_names(binary, "binary_product", pats),
        parse_names(dnbr, "dnbr", pats),
        max_days=max_days,
    )


# --------------------------------------------------------------------------- the prepare stage


def _list_files(folder: Path, recursive: bool) -> list[str]:
    """Files in ``folder`` (and below when ``recursive``), without hidden, temporary or side-car files."""
    found: list[str] = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(root, f) for f in files)
    else:
        with os.scandir(folder) as it:
            found.extend(e.path for e in it if e.is_file())
    return sorted(
        p
        for p in found
        if not (
            os.path.basename(p).startswith(".")
            or p.endswith(".tmp")
            or is_companion(os.path.basename(p))
        )
    )


def raster_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a raster's header cannot serve as a layer (unreadable, no CRS), or None when it can."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                return "has no CRS"
            if ds.count < 1:
                return "has no band"
    except (RasterioError, OSError) as exc:
        text = str(exc).strip().splitlines()
        return f"unreadable ({text[0] if text else type(exc).__name__})"
    return None


def _validate_headers(paths: Sequence[str]) -> dict[str, str]:
    """Open every raster header (a few at a time: on network disks this is latency-bound)."""
    problems: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(raster_problem, paths)
        for path, problem in tqdm(
            zip(paths, results, strict=True), total=len(paths), desc="match: headers", unit="file"
        ):
            if problem:
                problems[path] = problem
    return problems


def _log_unknown(folder: Path, names: list[str], limit: int = 200) -> None:
    if not names:
        return
    shown = ", ".join(os.path.relpath(n, folder) for n in names[:limit])
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    log.warning(
        "%s: %d file(s) fit no layer name pattern (skipped): %s%s", folder, len(names), shown, more
    )


def _unmatched_text(frame: pd.DataFrame, path: Path) -> str:
    base = path.absolute().parent
    rows = []
    records = sorted(
        frame.to_dict("records"),
        key=lambda r: (
            fire_sort_key(str(r["fire_id"])),
            r["lum_date_post"] or date.min,
            str(r["lum_change"]),
        ),
    )
    for rec in records:
        rows.append(
            [
                rec["fire_id"],
                relative_path(rec["lum_change"], base),
                rec["lum_date_pre"].isoformat() if rec["lum_date_pre"] else "",
                rec["lum_date_post"].isoformat() if rec["lum_date_post"] else "",
                relative_path(rec["coh_change"], base),
                relative_path(rec["dnbr"], base),
                relative_path(rec["binary_product"], base),
                rec["reason"],
            ]
        )
    return csv_text(UNMATCHED_COLUMNS, rows)


def unmatched_report(output_csv: Path) -> Path:
    """The report of dropped rows beside a match CSV: ``<stem>.unmatched.csv``, a name that is
    never the match CSV itself (``x.csv`` -> ``x.unmatched.csv``)."""
    return output_csv.with_name(f"{output_csv.stem}.unmatched.csv")


def _check_writable_csv(path: Path, key: str) -> None:
    """An existing output must be a readable UTF-8 text file (it is compared, then replaced)."""
    if path.is_dir():
        raise DataError(f"{key} {path} is a directory; give a .csv file path")
    if path.exists():
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(
                f"{key} {path} exists and is not a UTF-8 text file (not a match CSV); "
                "move it or choose another name"
            ) from None
        except OSError as exc:
            raise DataError(f"{key} {path} cannot be read ({exc.strerror})") from None


def run_stage(cfg: PrepareConfig) -> StageResult:
    """List the four layer folders, match them, write ``match.output_csv`` and its report of dropped rows, ``<stem>.unmatched.csv``."""
    mcfg = cfg.match
    overwrite = cfg.overwrite
    result = StageResult(stage="match")
    dirs: dict[str, Path] = {}
    for kind in KINDS:
        key = _DIR_KEYS[kind]
        folder = Path(getattr(mcfg, key)).expanduser().absolute()
        if not folder.is_dir() and kind == "binary_product":
            # Labels are optional (the sar stage writes none with sar.label=none): every row then
            # has an empty binary_product, usable for prediction, not for training.
            log.warning(
                "match.%s: no such directory: %s; the rows get no binary product", key, folder
            )
            continue
        if not folder.is_dir():
            raise DataError(f"match.{key}: no such directory: {folder}")
        dirs[kind] = folder
    output = Path(mcfg.output_csv).expanduser().absolute()
    unmatched_path = unmatched_report(output)
    _check_writable_csv(output, "match.output_csv")
    try:
        pats = compile_patterns({k: v for k, v in vars(mcfg.patterns).items() if v})
    except ValueError as exc:
        kind, _, why = str(exc).partition(": ")
        raise ConfigError(f"config key 'match.patterns.{kind}': {why}") from None

    # Each folder is listed once; a folder may hold several layers (then each file is one of them).
    tables: dict[str, LayerTable] = {}
    for folder in dict.fromkeys(dirs.values()):
        files = _list_files(folder, mcfg.recursive)
        kinds = [k for k in KINDS if dirs.get(k) == folder]
        parsed = {k: parse_names(files, k, pats) for k in kinds}
        used = set()
        for k in kinds:
            used.update(parsed[k].frame["path"])
        _log_unknown(folder, [f for f in files if f not in used])
        tables.update(parsed)
        for k in kinds:
            tables[k].unknown = []  # reported per folder above
    for kind in KINDS:
        if kind not in tables:  # an absent optional folder
            tables[kind] = parse_names([], kind, pats)
    for kind in dirs:
        log.info("match: %d %s file(s) in %s", len(tables[kind].frame), kind, dirs[kind])
    if tables["lum_change"].frame.empty:
        raise DataError(
            f"match.lum_dir: no file in {dirs['lum_change']} fits the luminance-change name "
            "pattern (README: data contract; match.patterns.lum_change changes it)"
        )

    unreadable_lum = pd.DataFrame(columns=list(UNMATCHED_COLUMNS))
    if mcfg.validate:
        every = [p for t in tables.values() for p in t.frame["path"]]
        problems = _validate_headers(list(dict.fromkeys(every)))
        for path, problem in problems.items():
            log.error("match: %s %s", path, problem)
            result.failed.append(f"{path}: {problem}")
        if problems:
            lum = tables["lum_change"].frame
            bad = lum["path"].isin(problems)
            unreadable_lum = pd.DataFrame(
                {
                    "fire_id": lum.loc[bad, "fire"],
                    "lum_change": lum.loc[bad, "path"],
                    "lum_date_pre": _days_to_dates(lum.loc[bad, "d1"].to_numpy(np.int64)),
                    "lum_date_post": _days_to_dates(lum.loc[bad, "d2"].to_numpy(np.int64)),
                    "coh_change": None,
                    "dnbr": None,
                    "binary_product": None,
                    "reason": [f"luminance change {problems[p]}" for p in lum.loc[bad, "path"]],
                },
                columns=list(UNMATCHED_COLUMNS),
            )
            for table in tables.values():
                keep = ~table.frame["path"].isin(problems)
                table.frame = table.frame.loc[keep].reset_index(drop=True)

    matched = match_tables(
        tables["lum_change"],
        tables["coh_change"],
        tables["binary_product"],
        tables["dnbr"],
        max_days=mcfg.max_days,
    )
    unmatched = pd.concat(
        [f for f in (matched.unmatched, unreadable_lum) if len(f)] or [matched.unmatched],
        ignore_index=True,
    )
    if mcfg.validate and result.failed:
        unmatched["reason"] = [
            r if r.startswith("luminance change") else f"{r} (unreadable files were left out)"
            for r in unmatched["reason"]
        ]

    csv_new = match_csv_text(matched.matched, output)
    unmatched_new = _unmatched_text(unmatched, unmatched_path)
    if output.exists():
        if output.read_text(encoding="utf-8") == csv_new:
            # the same match: keep it; the unmatched report is only a report, refresh it if it differs
            if not (
                unmatched_path.exists()
                and unmatched_path.read_text(encoding="utf-8") == unmatched_new
            ):
                atomic_write_text(unmatched_path, unmatched_new)
            log.info("match: %s is already up to date", output)
            result.skipped = len(matched.matched)
            return result
        if not overwrite:
            raise DataError(
                f"match.output_csv {output} already exists and differs from this match; "
                "pass overwrite=true to replace it, or set match.output_csv to a new file"
            )
    if matched.matched.empty:
        atomic_write_text(unmatched_path, unmatched_new)
        raise DataError(
            f"no luminance-change file in {dirs['lum_change']} could be matched "
            f"({len(unmatched)} dropped; reasons in {unmatched_path})"
        )
    atomic_write_text(unmatched_path, unmatched_new)
    atomic_write_text(output, csv_new)
    with_label = int(matched.matched["binary_product"].notna().sum())
    log.info(
        "match: wrote %s (%d rows, %d with a binary product, %d without) and %s (%d dropped)",
        output,
        len(matched.matched),
        with_label,
        len(matched.matched) - with_label,
        unmatched_path,
        len(unmatched),
    )
    for reason, count in unmatched["reason"].value_counts().head(10).items():
        log.info("match: dropped %d: %s", count, reason)
    result.written = len(matched.matched)
    return result
