"""The match CSV: one row per luminance-change raster with its matched layers (README: data contract).

``read_match_csv`` is what training and prediction read; it also loads the old scripts' CSVs
that hold only the four path columns (fire id and dates then come from the file names).
``write_match_csv`` writes the contract's columns, paths relative to the CSV's folder, through a
temporary file and a rename so a crash never leaves half a CSV behind.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from firedpy_nrt.data.layers import compile_patterns, normalise_fire_id, parse_layer
from firedpy_nrt.atomic import output_file
from firedpy_nrt.errors import DataError, first_line

#: The contract's columns, in order.
COLUMNS: tuple[str, ...] = (
    "fire_id",
    "lum_change",
    "coh_change",
    "dnbr",
    "binary_product",
    "lum_date_pre",
    "lum_date_post",
    "dnbr_sensor",
    "dnbr_date_pre",
    "dnbr_date_post",
    "dnbr_gap_days",
)
PATH_COLUMNS: tuple[str, ...] = ("lum_change", "coh_change", "dnbr", "binary_product")
DATE_COLUMNS: tuple[str, ...] = ("lum_date_pre", "lum_date_post", "dnbr_date_pre", "dnbr_date_post")
#: Path columns every row must fill; ``binary_product`` may be empty (rows for prediction only).
REQUIRED_PATHS: tuple[str, ...] = ("lum_change", "coh_change", "dnbr")

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
def _blank(text: str | None) -> bool:
    return text is None or text.strip() == "" or text.strip().lower() in ("none", "nan", "null")


def _where(csv_path: Path, line: int) -> str:
    return f"{csv_path} line {line}"


def _parse_iso(text: str, csv_path: Path, line: int, column: str) -> date | None:
    if _blank(text):
        return None
    text = text.strip()
    # Dates written by spreadsheets often carry a midnight time; the day is what matters.
    day = text[:10]
    if not _ISO.match(day):
        raise DataError(f"{_where(csv_path, line)}: {column}={text!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise DataError(f"{_where(csv_path, line)}: {column}={text!r} is not a real date") from None


def _resolve(text: str, base: Path) -> str:
    p = Path(text.strip())
    if not p.is_absolute():
        p = base / p
    return os.path.normpath(str(p))


def read_match_csv(path: str | Path, patterns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a match CSV into the contract's columns (absolute paths, ``date`` objects, None for none).

    Old four-column CSVs load too: a missing fire id or date is taken from the file names, parsed
    with the contract's patterns (or ``patterns``, as in ``match.patterns``). Extra columns are kept
    after the contract's. Raises :class:`DataError` naming the file (and line) when the CSV is
    missing, empty, lacks a path column, or holds a bad value.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise DataError(f"match CSV not found: {csv_path}")
    try:
        # utf-8-sig: spreadsheets on Windows start their CSVs with a byte-order mark
        raw = pd.read_csv(
            csv_path,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"match CSV is empty: {csv_path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = first_line(exc)
        raise DataError(f"match CSV is malformed: {csv_path}: {first}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    # pandas' default index column in CSVs written with ``to_csv(index=True)``
    raw = raw.loc[:, [c for c in raw.columns if c and not c.startswith("Unnamed:")]]
    missing = [c for c in REQUIRED_PATHS if c not in raw.columns]
    if missing:
        raise DataError(
            f"match CSV {csv_path} lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(raw.columns) or 'none'})"
        )
    if len(raw) == 0:
        raise DataError(f"match CSV has no rows: {csv_path}")

    compiled = compile_patterns(dict(patterns) if patterns else None)
    base = csv_path.absolute().parent
    extras = [c for c in raw.columns if c not in COLUMNS]
    records: list[dict[str, Any]] = []
    for i, row in enumerate(raw.to_dict("records")):
        line = i + 2  # header is line 1
        rec: dict[str, Any] = {}
        for col in PATH_COLUMNS:
            cell = row.get(col, "")
            if _blank(cell):
                if col in REQUIRED_PATHS:
                    raise DataError(f"{_where(csv_path, line)}: {col} is empty")
                rec[col] = None
            else:
                rec[col] = _resolve(cell, base)
        lum = parse_layer(rec["lum_change"], "lum_change", compiled)
        dn = parse_layer(rec["dnbr"], "dnbr", compiled)

        fire = row.get("fire_id", "")
        if _blank(fire):
            if lum is None:
                raise DataError(
                    f"{_where(csv_path, line)}: no fire_id, and the lum_change name "
                    f"{Path(rec['lum_change']).name!r} does not fit the contract's pattern"
                )
            fire = lum.fire
        rec["fire_id"] = normalise_fire_id(fire)

        for col in DATE_COLUMNS:
            rec[col] = _parse_iso(row.get(col, ""), csv_path, line, col)
        if lum is not None:
            rec["lum_date_pre"] = rec["lum_date_pre"] or lum.dates[0]
            rec["lum_date_post"] = rec["lum_date_post"] or lum.dates[1]
        if dn is not None:
            rec["dnbr_date_pre"] = rec["dnbr_date_pre"] or dn.dates[0]
            rec["dnbr_date_post"] = rec["dnbr_date_post"] or dn.dates[1]
        sensor = row.get("dnbr_sensor", "")
        rec["dnbr_sensor"] = sensor.strip() if not _blank(sensor) else (dn.sensor if dn else None)

        gap = row.get("dnbr_gap_days", "")
        if _blank(gap):
            if rec["lum_date_post"] is not None and rec["dnbr_date_post"] is not None:
                rec["dnbr_gap_days"] = float(
                    abs((rec["lum_date_post"] - rec["dnbr_date_post"]).days)
                )
            else:
                rec["dnbr_gap_days"] = math.nan
        else:
            try:
                rec["dnbr_gap_days"] = float(gap)
            except ValueError:
                raise DataError(
                    f"{_where(csv_path, line)}: dnbr_gap_days={gap!r} is not a number"
                ) from None
        for col in extras:
            rec[col] = row[col]
        records.append(rec)

    df = pd.DataFrame.from_records(records, columns=[*COLUMNS, *extras])
    # Keep None (not NaN) in object columns so callers can test ``is None``.
    df = df.astype(object).where(pd.notna(df), None)
    df["dnbr_gap_days"] = df["dnbr_gap_days"].astype(float)
    return df


def relative_path(path_text: str | os.PathLike[str] | None, base: Path) -> str:
    """``path_text`` relative to folder ``base`` as posix text; empty for none."""
    if path_text is None or (isinstance(path_text, float) and math.isnan(path_text)):
        return ""
    p = Path(path_text)
    if not p.is_absolute():
        p = Path.cwd() / p
    try:
        return Path(os.path.relpath(p, base)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return str(p)


def _iso(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return "" if pd.isna(value) else value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    return "" if _blank(text) else text[:10]


def _number(value: Any) -> str:
    if value is None:
        return ""
    x = float(value)
    if math.isnan(x):
        return ""
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def fire_sort_key(fire: str) -> tuple[int, int, str]:
    """Numeric fire ids in numeric order (9 before 10), any non-numeric ids after them."""
    return (0, int(fire), fire) if fire.isdigit() else (1, 0, fire)


def atomic_write_text(path: Path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` atomically (:mod:`firedpy_nrt.atomic`); refuse to replace unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(
            f"{path} already exists; pass overwrite=true to replace it, or write elsewhere"
        )
    with output_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return path


def csv_text(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """CSV text of a header and rows (``\\n`` line ends), with None written as an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def match_csv_text(rows: pd.DataFrame | Iterable[Mapping[str, Any]], path: str | Path) -> str:
    """The text :func:`write_match_csv` writes for ``rows`` at ``path`` (paths relative to it)."""
    path = Path(path)
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(r) for r in rows]
    base = path.absolute().parent
    out: list[tuple[tuple, list[str]]] = []
    for rec in records:
        missing = [c for c in COLUMNS if c not in rec]
        if missing:
            raise DataError(f"cannot write {path}: rows lack column(s) {', '.join(missing)}")
        fire = normalise_fire_id(rec["fire_id"])
        cells = [
            fire,
            *(relative_path(rec[c], base) for c in PATH_COLUMNS),
            _iso(rec["lum_date_pre"]),
            _iso(rec["lum_date_post"]),
            _text(rec["dnbr_sensor"]),
            _iso(rec["dnbr_date_pre"]),
            _iso(rec["dnbr_date_post"]),
            _number(rec["dnbr_gap_days"]),
        ]
        out.append(((fire_sort_key(fire), cells[6], cells[1]), cells))
    out.sort(key=lambda kc: kc[0])
    return csv_text(COLUMNS, (cells for _, cells in out))


def write_match_csv(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], path: str | Path, overwrite: bool = False
) -> Path:
    """Write matched rows as the contract's CSV at ``path``; return the path.

    ``rows`` holds the contract's columns (paths absolute or relative to the working directory,
    dates as ``date`` or ISO text, None/NaN for none). Paths are written relative to the CSV's
    folder, dates as ``YYYY-MM-DD``, none as an empty cell; rows sorted by fire_id (numerically),
    lum_date_post, lum_change. An existing file is kept unless ``overwrite``.
    """
    return atomic_write_text(Path(path), match_csv_text(rows, path), overwrite=overwrite)
