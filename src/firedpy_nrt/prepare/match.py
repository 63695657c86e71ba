"""Match luminance-change rasters with their coherence change, binary product and dNBR by name.

One row per luminance-change file (README: data contract). The rules are applied to whole tables
at once: every (luminance file, candidate of the same fire) pair gets one integer sort key that
encodes the rule's order of preference (a flag, then the primary and secondary date gaps in days,
then the candidate's rank by file name), and the best candidate of each luminance file is the
minimum of its keys, found with ``np.minimum.reduceat`` over contiguous pair blocks. That is
linear in the number of pairs, where the old script scanned every dNBR file for every row.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from firedpy_nrt.config import validate
from firedpy_nrt.config.prepare import MatchConfig
from firedpy_nrt.data.layers import REQUIRED_GROUPS, compile_patterns, is_companion
from firedpy_nrt.data.match_csv import (
    COLUMNS,
    atomic_write_text,
    csv_text,
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

#: Columns of ``unmatched.csv``: what the luminance file was, what was found, and why it was dropped.
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

# Sort-key layout (int64, non-negative): bit 62 flag | 19 bits primary gap | 19 bits secondary
# gap | 24 bits candidate rank. Gaps are clipped at 2**19 - 1 days (1,400 years).
_RANK_BITS = 24
_GAP_BITS = 19
_GAP_MAX = (1 << _GAP_BITS) - 1
_SECOND_SHIFT = _RANK_BITS
_FIRST_SHIFT = _RANK_BITS + _GAP_BITS
_FLAG = np.int64(1) << np.int64(_FIRST_SHIFT + _GAP_BITS)
_RANK_MASK = np.int64((1 << _RANK_BITS) - 1)
#: Pairs held in memory at once; a fire with many files is processed in slices of this size.
_PAIR_CHUNK = 4_000_000


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


def _day_number(text: str) -> str:
    head = text[:8]
    return head if head.isdigit() else re.sub(r"\D", "", text)[:8]


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
    extra = ("sensor",) if kind == "dnbr" else ()
    paths: list[str] = []
    fires: list[str] = []
    stamps: list[list[str]] = [[] for _ in date_groups]
    extras: list[str | None] = []
    unknown: list[str] = []
    for raw in names:
        path = os.fspath(raw)
        name = os.path.basename(path)
        m = pat.match(name)
        if m is None:
            unknown.append(path)
            continue
        paths.append(path)
        fire = m.group("fire")
        fires.append(str(int(fire)) if fire.isdigit() else fire)
        for slot, g in zip(stamps, date_groups, strict=True):
            slot.append(_day_number(m.group(g) or ""))
        if extra:
            extras.append(m.groupdict().get("sensor"))
    frame = pd.DataFrame(
        {"path": paths, "name": [os.path.basename(p) for p in paths], "fire": fires}
    )
    valid = np.ones(len(frame), dtype=bool)
    for g, slot in zip(date_groups, stamps, strict=True):
        days = pd.to_datetime(pd.Series(slot, dtype=object), format="%Y%m%d", errors="coerce")
        valid &= days.notna().to_numpy()
        frame[g] = days.to_numpy().astype("datetime64[D]").astype(np.int64)
    if extra:
        frame["sensor"] = extras
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


def _gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.minimum(np.abs(a - b), _GAP_MAX)


def _best_keys(
    lum_fire: np.ndarray,
    cand_fire: np.ndarray,
    n_fires: int,
    key_fn: Any,
) -> np.ndarray:
    """For each luminance row, the smallest key over the candidates of its fire; -1 when none.

    ``key_fn(lum_idx, cand_idx)`` returns the int64 keys of those pairs; the candidate's rank sits
    in the low bits, so the key identifies the candidate (see :func:`_decode`).
    """
    n_lum = len(lum_fire)
    best_key = np.full(n_lum, -1, dtype=np.int64)
    if n_lum == 0 or len(cand_fire) == 0:
        return best_key
    order = np.argsort(cand_fire, kind="stable")
    per_fire = np.bincount(cand_fire, minlength=n_fires)
    fire_start = np.concatenate(([0], np.cumsum(per_fire)[:-1]))
    counts = per_fire[lum_fire]
    rows = np.flatnonzero(counts)
    if rows.size == 0:
        return best_key
    cum = np.cumsum(counts[rows])
    lo = 0
    while lo < rows.size:
        base = cum[lo - 1] if lo else 0
        # at least one row per slice, so a single huge fire still progresses
        hi = max(lo + 1, int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")))
        idx = rows[lo:hi]
        c = counts[idx]
        starts = np.cumsum(c) - c
        lum_rep = np.repeat(idx, c)
        within = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(starts, c)
        cand = order[np.repeat(fire_start[lum_fire[idx]], c) + within]
        keys = key_fn(lum_rep, cand)
        mins = np.minimum.reduceat(keys, starts)
        best_key[idx] = mins
        lo = hi
    return best_key


def _decode(best_key: np.ndarray, rank_to_cand: np.ndarray) -> np.ndarray:
    out = np.full(best_key.shape, -1, dtype=np.int64)
    found = best_key >= 0
    out[found] = rank_to_cand[best_key[found] & _RANK_MASK]
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
        if len(table) >= (1 << _RANK_BITS):
            raise DataError(f"too many files to match at once ({len(table)}); split the folders")
    fire_codes, fires = pd.factorize(pd.concat([L["fire"], C["fire"], B["fire"], D["fire"]]))
    n_fires = len(fires)
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
        c0, c1, c2 = (C[g].to_numpy(np.int64) for g in ("d0", "d1", "d2"))
        crank = _ranks(C)

        def coh_key(li: np.ndarray, ci: np.ndarray) -> np.ndarray:
            a, b = l1[li], l2[li]
            x0, x1, x2 = c0[ci], c1[ci], c2[ci]
            has_both = ((a == x0) | (a == x1) | (a == x2)) & ((b == x0) | (b == x1) | (b == x2))
            return (
                np.where(has_both, 0, _FLAG)
                | (_gap(b, x2) << _FIRST_SHIFT)
                | (_gap(a, x1) << _SECOND_SHIFT)
                | crank[ci]
            )

        key = _best_keys(lf, cf, n_fires, coh_key)
        coh_idx = _decode(key, np.argsort(crank))

    # 3. dNBR: closest post date, then closest pre date, then file name; max_days excludes
    dn_idx = np.full(nl, -1, dtype=np.int64)
    dn_gap = np.full(nl, -1, dtype=np.int64)
    if nl and len(D):
        t1, t2 = D["t1"].to_numpy(np.int64), D["t2"].to_numpy(np.int64)
        drank = _ranks(D)
        limit = _GAP_MAX if max_days is None else max_days

        def dnbr_key(li: np.ndarray, di: np.ndarray) -> np.ndarray:
            g2 = _gap(l2[li], t2[di])
            return (
                np.where(g2 > limit, _FLAG, 0)
                | (g2 << _FIRST_SHIFT)
                | (_gap(l1[li], t1[di]) << _SECOND_SHIFT)
                | drank[di]
            )

        key = _best_keys(lf, df_, n_fires, dnbr_key)
        found = key >= 0
        dn_gap[found] = (key[found] >> _FIRST_SHIFT) & _GAP_MAX
        beyond = found & ((key & _FLAG) != 0)
        dn_idx = _decode(key, np.argsort(drank))
        dn_idx_closest = dn_idx.copy()
        dn_idx[beyond] = -1
    else:
        beyond = np.zeros(nl, dtype=bool)
        dn_idx_closest = dn_idx

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


def match_config(cfg: DictConfig) -> MatchConfig:
    """The ``match`` node of a prepare config (or a bare match node) as a checked MatchConfig."""
    node = cfg.match if "match" in cfg else cfg
    container = OmegaConf.to_container(node, resolve=True)
    try:
        return validate(OmegaConf.create(container), MatchConfig)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("config key '", "config key 'match.", 1)) from None


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
    for rec in frame.to_dict("records"):
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


def run_stage(cfg: DictConfig) -> StageResult:
    """List the four layer folders, match them, write ``match.output_csv`` and ``unmatched.csv``."""
    mcfg = match_config(cfg)
    overwrite = bool(cfg.get("overwrite", False)) if "match" in cfg else False
    result = StageResult(stage="match")
    dirs: dict[str, Path] = {}
    for kind in KINDS:
        key = _DIR_KEYS[kind]
        folder = Path(getattr(mcfg, key)).expanduser().absolute()
        if not folder.is_dir():
            raise DataError(f"match.{key}: no such directory: {folder}")
        dirs[kind] = folder
    output = Path(mcfg.output_csv).expanduser().absolute()
    unmatched_path = output.with_name("unmatched.csv")
    try:
        pats = compile_patterns({k: v for k, v in vars(mcfg.patterns).items() if v})
    except ValueError as exc:
        kind, _, why = str(exc).partition(": ")
        raise ConfigError(f"config key 'match.patterns.{kind}': {why}") from None

    # Each folder is listed once; a folder may hold several layers (then each file is one of them).
    tables: dict[str, LayerTable] = {}
    for folder in dict.fromkeys(dirs.values()):
        files = _list_files(folder, mcfg.recursive)
        kinds = [k for k in KINDS if dirs[k] == folder]
        parsed = {k: parse_names(files, k, pats) for k in kinds}
        used = set()
        for k in kinds:
            used.update(parsed[k].frame["path"])
        _log_unknown(folder, [f for f in files if f not in used])
        tables.update(parsed)
        for k in kinds:
            tables[k].unknown = []  # reported per folder above
    for kind in KINDS:
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
        same = output.read_text(encoding="utf-8") == csv_new and (
            unmatched_path.exists() and unmatched_path.read_text(encoding="utf-8") == unmatched_new
        )
        if same:
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
