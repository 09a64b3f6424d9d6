"""Loaders from public formats into the data contracts (interactions, items), with quarantine.

Formats:

* **MovieLens** (:func:`load_movielens`, a folder): ``ratings.csv`` + ``movies.csv`` + ``tags.csv``
  (ml-latest, ml-25m...), ``ratings.dat`` + ``movies.dat`` [+ ``tags.dat``] (ml-1m, ml-10m; ``::``
  separated) or ``u.data`` + ``u.item`` [+ ``u.genre``] (ml-100k; tab / ``|`` separated). Each user
  is also the collection (``collection_id = user_id``), ``weight`` is the rating. Items get
  ``title``, ``genres`` (``|``-separated) and ``tags`` (the item's distinct lower-cased tags,
  sorted, ``|``-separated). Without a movies file the items are the rated ids (tags still read).
* **Adjacency lists** (:func:`load_adjacency`): lines ``user item item ...`` (the NGCF/LightGCN
  benchmark format), a train file and an optional test file. The files carry no times, so an
  item's ``timestamp`` is its 0-based position in its line: consecutive items of a line are 1 s
  apart and become engagement pairs under any ``pairs.max_gap_s >= 1``. The user is the
  collection; ``weight`` is 1.
* **Generic tables** (:func:`load_table`): CSV or Parquet interactions with a column mapping, plus
  an optional item table (a list-of-float vector column, and/or raw ``title``/``genres``/``tags``
  columns) and/or item vectors as ``.npy`` (N, F) with an ids file (``.npy``, ``.txt`` one id a
  line, ``.csv``/``.parquet`` with the item column). Timestamps may be integer Unix seconds (or
  milliseconds / microseconds / nanoseconds, detected and converted with a note) or ISO 8601.

Files are opened through :mod:`pinsage_model.data.inputs` (file-level checks, per-line decoding: a
file that is not valid UTF-8 has only its bad lines decoded as latin-1, with a note).

Bad input: a file unusable as a whole, or a missing required column, raises :class:`LoaderError`
naming the file, the line and the column. Rows that cannot be used go to the quarantine table
with ``reason``, ``source`` (file), ``row`` and, for text files, ``line`` (1-based physical line);
conversions are kept and noted in the file's ``notes``. For every file ``in = kept +
quarantined``, where ``in`` is counted from the file itself, not from the parser: the non-blank
physical lines after the header for CSV, the non-blank lines of ``.dat``/``u.*``, the item tokens
of adjacency lists, the footer's row count for Parquet, the rows of ``.npy``. ``row`` is the
0-based line number for line-oriented files (``.dat``, ``u.*``, adjacency lists) and the 0-based
record number after the header for CSV (blank lines are not records), the row index for Parquet
and ``.npy``. The rules, by class (quarantined / converted / refused), are the README's table.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinsage_model.data.contracts import INTERACTIONS, ITEMS, QUARANTINE, quarantine_table
from pinsage_model.data.inputs import LoaderError, check_file, csv_bytes, read_lines, read_npy, read_parquet

__all__ = [
    "ColumnMap",
    "InputRules",
    "LoadResult",
    "LoaderError",
    "empty_quarantine",
    "load_adjacency",
    "load_movielens",
    "load_table",
    "resolve_path",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_INT_RE = r"\d+"
_INT64_MAX = str(np.iinfo(np.int64).max)
# Integer timestamps whose median reaches these are in finer units than seconds (1e11 s is the
# year 5138; 1e11 ms is 1973): (threshold, unit, divisor).
_TIME_UNITS = ((1e17, "ns", 10**9), (1e14, "us", 10**6), (1e11, "ms", 10**3))
_DIVISOR = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_UNIT_NAME = {"ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# The rating scale of each MovieLens flavour (ml-latest: half stars; ml-1m / ml-100k: 1-5).
_RATING_SCALE = {"ratings.csv": (0.5, 5.0), "ratings.dat": (1.0, 5.0), "u.data": (1.0, 5.0)}


@dataclass(frozen=True)
class InputRules:
    """Value rules the loaders apply beyond parsing (from ``data.*`` of the config).

    Attributes:
      now: the run's logical time in Unix seconds; timestamps after ``now +
        future_tolerance_s`` are quarantined. None: no future check.
      future_tolerance_s: how far past ``now`` a timestamp may lie (clock skew, time zones).
      timestamp_unit: unit of integer timestamps: ``auto`` (detected from their magnitude, with a
        note), or ``s`` / ``ms`` / ``us`` / ``ns``.
      allow_leaks: keep test pairs (user, item) that also occur in train (reported); by default
        they are an error.
    """

    now: int | None = None
    future_tolerance_s: int = 86_400
    timestamp_unit: str = "auto"
    allow_leaks: bool = False


@dataclass
class LoadResult:
    """Loaded tables in the contracts, plus what was quarantined.

    Attributes:
      interactions: interactions contract table.
      items: items contract table, or None when the source has no item file.
      test_interactions: held-out interactions (adjacency test file), or None.
      quarantine: rows that could not be used: their columns as strings, ``reason``, ``source``,
        ``row``.
      counts: per source file ``{"in", "kept", "quarantined", "reasons": {reason: n}, "notes": [...]}``.
      findings: cross-file findings (items missing from the item table, cold test users/items,
        leaks, skipped files), each with counts.
      sources: role (``interactions``, ``items``, ``test``...) -> file.
    """

    interactions: pa.Table
    items: pa.Table | None
    test_interactions: pa.Table | None
    quarantine: pa.Table
    counts: dict[str, dict] = field(default_factory=dict)
    findings: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnMap:
    """Source column names of a generic table (empty = optional column absent or auto-detected)."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    collection: str = ""
    weight: str = ""
    vector: str = "features"


class _Quarantine:
    """Collects bad rows, notes and per-file counts."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.counts: dict[str, dict] = {}
        self.notes: dict[str, list[str]] = {}

    def add(
        self,
        source: str,
        rows: np.ndarray,
        reasons: np.ndarray | str,
        columns: pd.DataFrame,
        lines: np.ndarray | None = None,
    ) -> None:
        """Quarantine ``len(rows)`` rows of ``source`` (``columns`` holds their raw values,
        ``lines`` their 1-based physical lines for text files)."""
        if not len(rows):
            return
        df = columns.reset_index(drop=True).astype("string")
        if lines is not None:
            df["line"] = pd.Series(np.asarray(lines, dtype=np.int64)).astype("string")
        df["reason"] = reasons if isinstance(reasons, str) else pd.Series(reasons, dtype="string")
        df["source"] = source
        df["row"] = np.asarray(rows, dtype=np.int64)
        self.frames.append(df)

    def note(self, source: str, notes: list[str] | str) -> None:
        """A conversion or finding about ``source`` that keeps its rows (shown in the report)."""
        self.notes.setdefault(source, []).extend([notes] if isinstance(notes, str) else notes)

    def record(self, source: str, n_in: int, n_kept: int) -> None:
        reasons: dict[str, int] = {}
        for df in self.frames:
            sub = df[df["source"] == source]
            for reason, n in sub["reason"].value_counts(sort=False).items():
                reasons[str(reason)] = reasons.get(str(reason), 0) + int(n)
        n_q = sum(reasons.values())
        if n_in != n_kept + n_q:
            raise RuntimeError(f"{source}: {n_in} rows in != {n_kept} kept + {n_q} quarantined (loader bug)")
        self.counts[source] = {
            "in": n_in,
            "kept": n_kept,
            "quarantined": n_q,
            "reasons": dict(sorted(reasons.items())),
            "notes": self.notes.get(source, []),
        }

    def table(self) -> pa.Table:
        if not self.frames:
            return empty_quarantine()
        df = pd.concat(self.frames, ignore_index=True)
        values = {c: df[c].to_numpy(dtype=object, na_value=None) for c in df.columns}
        data = {c: v for c, v in values.items() if c not in QUARANTINE.required}
        return quarantine_table(data, values["reason"], values["source"], values["row"])


def empty_quarantine() -> pa.Table:
    """A quarantine table with no rows (just ``reason``, ``source``, ``row``)."""
    return quarantine_table({}, [], [], [])


def resolve_path(path: str | Path, what: str = "data path") -> Path:
    """Resolve a configured path: absolute as is; relative against the working directory first,
    then against the repository root (so ``../shared/data/x`` works from the repo root either way).

    Raises:
      LoaderError: the path exists in neither place.
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p, REPO_ROOT / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
        if c.is_symlink():  # dangling link or loop: let check_file name the problem
            return c
    raise LoaderError(f"{what} '{path}' not found (looked at: {', '.join(str(c) for c in candidates)})")


# ---------------------------------------------------------------------------------------------
# Reading files into string columns


@dataclass
class _Read:
    """A file read into string columns.

    Attributes:
      df: one row per parsed record.
      rows: (n,) the records' ``row`` (see the module doc).
      lines: (n,) their 1-based physical lines, or None (Parquet).
      n_in: records the file holds, counted independently of the parser.
    """

    df: pd.DataFrame
    rows: np.ndarray
    lines: np.ndarray | None
    n_in: int


def _read_separated(path: Path, sep: str, names: list[str], q: _Quarantine, what: str) -> _Read:
    """Split each line on ``sep`` into ``names`` (unquoted formats without header: ``.dat``, ``u.*``).

    Lines whose field count differs from ``len(names)`` are quarantined.
    """
    tl = read_lines(path, what)
    q.note(str(path), tl.note())
    rows = np.flatnonzero(~tl.blank).astype(np.int64)
    lines = tl.lines.take(pa.array(rows))
    parts = pc.split_pattern(lines, sep)
    n = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    ok = n == len(names)
    bad = np.flatnonzero(~ok)
    q.add(
        str(path),
        rows[bad],
        f"expected {len(names)} fields separated by {sep!r}",
        pd.DataFrame({"text": lines.take(pa.array(bad)).to_pandas()}),
        rows[bad] + 1,
    )
    good = parts.filter(pa.array(ok))
    df = pd.DataFrame({name: pc.list_element(good, i).to_pandas() for i, name in enumerate(names)})
    return _Read(df, rows[ok], rows[ok] + 1, len(rows))


def _header(path: Path, text: str, delimiter: str) -> list[str]:
    names = next(csv.reader([text], delimiter=delimiter), [])
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LoaderError(f"{path}: line 1: column '{name}' appears twice in the header; rename one")
        seen.add(name)
    return names


def _read_csv(path: Path, required: list[str], q: _Quarantine, what: str, hint: str = "") -> _Read:
    """A quoted CSV with a header (tab-separated for ``.tsv``), every column as a string.

    Each physical line is one record: a line with an odd number of ``"`` (a quoted field not closed
    on its line) and a line with the wrong field count are quarantined, so one bad quote never
    swallows the records after it.
    """
    import pyarrow.csv as pcsv

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    tl = read_lines(path, what)
    nonblank = np.flatnonzero(~tl.blank).astype(np.int64)
    if not len(nonblank):
        raise LoaderError(f"{path}: only blank lines, expected {what} with a header line ({', '.join(required)})")
    head = int(nonblank[0])
    header_text = tl.lines[head].as_py()
    names = _header(path, header_text, delimiter)
    _require(names, required, path, hint, line=head + 1, header=header_text, delimiter=delimiter)
    q.note(str(path), tl.note())
    rec = nonblank[1:]  # (n_in,) 0-based physical line of each record
    n_in = len(rec)
    quotes = pc.count_substring(tl.lines.take(pa.array(rec, pa.int64())), '"').to_numpy(zero_copy_only=False)
    odd = (quotes % 2) == 1
    src = str(path)
    q.add(
        src,
        np.flatnonzero(odd),
        "unbalanced quote (a quoted field is not closed on its line)",
        pd.DataFrame({"text": tl.lines.take(pa.array(rec[odd], pa.int64())).to_pandas()}),
        rec[odd] + 1,
    )
    fed_rec = np.flatnonzero(~odd)  # record numbers handed to the parser, in order
    feed = np.zeros(len(tl.lines), dtype=bool)
    feed[head] = True
    feed[rec[fed_rec]] = True
    longest = int(pc.max(pc.binary_length(tl.lines)).as_py() or 0)
    bad: list[tuple[int, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number - 2, row.text))  # number: 1-based line of the fed text, header = 1
        return "skip"

    try:
        table = pcsv.read_csv(
            csv_bytes(tl, feed),
            read_options=pcsv.ReadOptions(use_threads=False, block_size=max(1 << 20, 2 * longest + 16)),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise LoaderError(f"{path}: not readable as CSV ({exc}), expected {what}") from None
    fed_bad = np.array([b[0] for b in bad], dtype=np.int64)
    bad_rec = fed_rec[fed_bad]
    q.add(
        src,
        bad_rec,
        f"expected {len(names)} {'tab' if delimiter == chr(9) else 'comma'}-separated fields",
        pd.DataFrame({"text": [b[1] for b in bad]}),
        rec[bad_rec] + 1,
    )
    rows = np.delete(fed_rec, fed_bad)
    if table.num_rows != len(rows):  # reconcile the parser with the line count
        raise LoaderError(
            f"{path}: the CSV parser read {table.num_rows} records where {len(rows)} lines were "
            "given to it; a record spans lines or the file is not CSV"
        )
    return _Read(table.to_pandas(), rows, rec[rows] + 1, n_in)


def _require(
    columns: list[str],
    required: list[str],
    path: Path,
    hint: str = "",
    line: int | None = None,
    header: str = "",
    delimiter: str = ",",
) -> None:
    for col in required:
        if col in columns:
            continue
        where = f"line {line}: " if line else ""
        for alt in (";", "\t", "|", ",", "::"):
            if alt != delimiter and alt in header and col in [c.strip().strip('"') for c in header.split(alt)]:
                raise LoaderError(
                    f"{path}: {where}fields are separated by {alt!r}, expected {delimiter!r} "
                    f"(header {header!r}); re-export the file with {delimiter!r} as the separator"
                )
        raise LoaderError(
            f"{path}: {where}missing required column '{col}'{hint} "
            f"(has: {', '.join(map(str, columns)) or 'no columns'})"
        )


def _existing(path: Path, what: str) -> Path:
    return check_file(path, what)


# ---------------------------------------------------------------------------------------------
# Row checks


class _Checker:
    """Per-row validation of string columns; the first failed check of a row is its reason."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.reason = np.full(len(df), None, dtype=object)
        self.values: dict[str, pd.Series] = {}

    def fail(self, bad: np.ndarray, why: str) -> None:
        self.reason[np.asarray(bad, dtype=bool) & pd.isna(self.reason)] = why

    def ident(self, col: str, integer: bool = False) -> None:
        v = self.df[col].astype("string").str.strip().reset_index(drop=True)
        null = v.isna() | (v == "")
        self.fail(null.to_numpy(), f"null {col}")
        if integer:
            bad = ~v.str.fullmatch(_INT_RE).fillna(False).astype(bool)
            self.fail((bad & ~null).to_numpy(), f"bad int {col}")
            v = v.str.lstrip("0").where(lambda s: s != "", "0")  # "007" and "7" are the same id
            n = v.str.len().fillna(0).to_numpy()
            big = (n > len(_INT64_MAX)) | ((n == len(_INT64_MAX)) & (v > _INT64_MAX).fillna(False).to_numpy())
            self.fail(big & ~bad.to_numpy() & ~null.to_numpy(), f"{col} beyond int64")
        self.values[col] = v

    def number(self, col: str) -> None:
        s = self.df[col].reset_index(drop=True)
        v = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_numeric_dtype(s) else s.astype("float64")
        v = v.astype("float64")
        self.fail(~np.isfinite(v.to_numpy(dtype=np.float64, na_value=np.nan)), f"bad number {col}")
        self.values[col] = v

    def within(self, col: str, lo: float, hi: float, scale: str) -> None:
        v = self.values[col].to_numpy(dtype=np.float64, na_value=np.nan)
        self.fail((v < lo) | (v > hi), f"{col} outside {lo:g}-{hi:g} ({scale})")

    def timestamp(self, col: str, rules: InputRules, q: _Quarantine, source: str, allow_datetime: bool = False) -> None:
        """Parse ``col`` to Unix seconds; unit conversion noted; negative / future rows fail."""
        s = self.df[col].reset_index(drop=True)
        out = np.zeros(len(s), dtype=np.int64)
        numeric = np.zeros(len(s), dtype=bool)  # parsed from a number (unit applies), not a date-time
        if pd.api.types.is_datetime64_any_dtype(s):
            ok = s.notna().to_numpy()
            dt = s[ok]
            if dt.dt.tz is not None:
                dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
            out[ok] = dt.to_numpy(dtype="datetime64[s]").astype(np.int64)
        elif pd.api.types.is_integer_dtype(s):
            ok = s.notna().to_numpy()
            out[ok] = s[ok].astype("int64").to_numpy()
            numeric = ok.copy()
        elif pd.api.types.is_float_dtype(s):
            f = s.to_numpy(dtype=np.float64, na_value=np.nan)
            ok = np.isfinite(f) & (f == np.floor(f)) & (np.abs(f) < 2**63)
            out[ok] = f[ok].astype(np.int64)
            numeric = ok.copy()
            if ok.any():
                q.note(source, f"column '{col}' holds floating-point numbers: whole numbers read as integer timestamps")
        else:
            text = s.astype("string").str.strip()
            is_int = text.str.fullmatch(r"-?\d{1,19}").fillna(False).astype(bool).to_numpy()
            num = pd.to_numeric(text.where(is_int), errors="coerce")
            ok = is_int & num.notna().to_numpy()
            out[ok] = num[ok].astype("int64").to_numpy()
            numeric = ok.copy()
            if allow_datetime and (~ok).any():
                rest = ~ok & text.notna().to_numpy()
                dt = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
                good = dt.notna().to_numpy()
                idx = np.flatnonzero(rest)[good]
                out[idx] = dt[good].astype("int64").to_numpy() // 1_000_000_000
                ok[idx] = True
                if len(idx) and source.endswith(".parquet"):
                    q.note(
                        source,
                        f"column '{col}' holds strings: {len(idx)} parsed as ISO 8601 date-times "
                        f"and {int(numeric.sum())} as integers",
                    )
        self.fail(~ok, f"unparsable {col}")
        unit = rules.timestamp_unit
        if unit == "auto":
            unit = "s"
            vals = out[numeric & ok & (out > 0)]
            if len(vals):
                median = float(np.median(vals))
                for threshold, name, _ in _TIME_UNITS:
                    if median >= threshold:
                        unit = name
                        q.note(
                            source,
                            f"column '{col}' looks like {_UNIT_NAME[name]} (median {median:.4g}): "
                            f"converted to seconds (set data.timestamp_unit to override)",
                        )
                        break
        if unit != "s":
            out[numeric] = np.floor_divide(out[numeric], _DIVISOR[unit])
        self.fail(ok & (out < 0), f"negative {col}")
        if rules.now is not None:
            limit = rules.now + rules.future_tolerance_s
            self.fail(
                ok & (out > limit), f"{col} in the future (after the run's logical time + data.future_tolerance_s)"
            )
        self.values[col] = pd.Series(out)

    def duplicates(self, cols: list[str], why: str) -> np.ndarray:
        """Fail rows whose ``cols`` values repeat an earlier valid row's; returns that mask."""
        frame = pd.DataFrame({c: self.values[c] for c in cols})
        ok = ~self.bad()
        dup = np.zeros(len(frame), dtype=bool)
        dup[ok] = frame[ok].duplicated(keep="first").to_numpy()
        self.fail(dup, why)
        return dup

    def bad(self) -> np.ndarray:
        return ~pd.isna(self.reason)

    def quarantine(self, q: _Quarantine, source: str, read: _Read) -> np.ndarray:
        """Quarantine failing rows; returns the boolean mask of kept rows."""
        bad = self.bad()
        q.add(
            source,
            read.rows[bad],
            self.reason[bad],
            self.df.loc[bad],
            read.lines[bad] if read.lines is not None else None,
        )
        return ~bad


def _duplicate_ids(chk: _Checker, df: pd.DataFrame, col: str, what: str) -> None:
    """Repeated ids of an item table: identical copies and copies with other values, first kept."""
    ok = ~chk.bad()
    ids = chk.values[col]
    dup = ids.duplicated(keep="first").to_numpy() & ok
    if not dup.any():
        return
    whole = df.reset_index(drop=True).astype("string").assign(**{col: ids})
    same = np.zeros(len(df), dtype=bool)
    same[ok] = whole[ok].duplicated(keep="first").to_numpy()
    chk.fail(dup & same, f"duplicate {what} (identical row)")
    chk.fail(dup & ~same, f"duplicate {what} with other values (first copy kept)")


def _repeats_note(q: _Quarantine, source: str, user: np.ndarray, item: np.ndarray) -> None:
    n = int(pd.DataFrame({"u": user, "i": item}).duplicated().sum())
    if n:
        q.note(source, f"{n} repeated (user, item) engagements at other times kept (genuine repeats)")


def _interactions(user, item, ts, coll=None, weight=None) -> pa.Table:
    cols = {
        "user_id": pa.array(np.asarray(user, dtype=object), pa.string()),
        "item_id": pa.array(np.asarray(item, dtype=object), pa.string()),
        "timestamp": pa.array(np.asarray(ts, dtype=np.int64), pa.int64()),
    }
    if coll is not None:
        cols["collection_id"] = pa.array(np.asarray(coll, dtype=object), pa.string())
    if weight is not None:
        cols["weight"] = pa.array(np.asarray(weight, dtype=np.float64), pa.float64())
    return INTERACTIONS.validate(pa.table(cols), "<interactions>")


# ---------------------------------------------------------------------------------------------
# Cross-file findings


def _examples(values: pa.Array, n: int = 3) -> list[str]:
    return pc.unique(values).sort().slice(0, n).to_pylist()


def _unknown_items(interactions: pa.Table, items: pa.Table, items_file: str, source: str) -> dict:
    """Interactions whose item is absent from the item table (kept: the graph still uses them)."""
    missing = pc.invert(pc.is_in(interactions["item_id"], value_set=items["item_id"].combine_chunks()))
    n = pc.sum(missing).as_py() or 0
    if not n:
        return {}
    ids = interactions["item_id"].filter(missing)
    return {
        "items_missing_from_item_table": {
            "file": source,
            "item_table": items_file,
            "interactions": n,
            "items": pc.count_distinct(ids).as_py(),
            "examples": _examples(ids),
        }
    }


def _test_findings(train: pa.Table, test: pa.Table, train_file: str, test_file: str, rules: InputRules) -> dict:
    """Cold test users/items and test pairs that also occur in train (a leak: an error by default)."""
    out: dict[str, dict] = {}
    for col, key in (("user_id", "test_users_not_in_train"), ("item_id", "test_items_not_in_train")):
        cold = pc.invert(pc.is_in(test[col], value_set=pc.unique(train[col])))
        n = pc.sum(cold).as_py() or 0
        if n:
            vals = test[col].filter(cold)
            out[key] = {
                "file": test_file,
                "rows": n,
                "distinct": pc.count_distinct(vals).as_py(),
                "examples": _examples(vals),
            }
    keys = ["user_id", "item_id"]
    seen = train.select(keys).group_by(keys).aggregate([])
    leak = (
        test.select(keys)
        .append_column("_row", pa.array(np.arange(test.num_rows)))
        .join(seen, keys, join_type="left semi")
    )
    if leak.num_rows:
        first = leak.sort_by("_row").slice(0, 1).to_pylist()[0]
        out["test_pairs_in_train"] = {
            "file": test_file,
            "train_file": train_file,
            "rows": leak.num_rows,
            "first": {"user_id": first["user_id"], "item_id": first["item_id"]},
        }
        if not rules.allow_leaks:
            raise LoaderError(
                f"{test_file}: {leak.num_rows} test pairs (user, item) also occur in {train_file} "
                f"(a leak; first: user '{first['user_id']}', item '{first['item_id']}'); remove them from "
                "the test file, or set data.allow_leaks: true to keep them"
            )
    return out


# ---------------------------------------------------------------------------------------------
# MovieLens


def load_movielens(path: str | Path, rules: InputRules = InputRules()) -> LoadResult:
    """Load a MovieLens folder (``ratings.csv``, ``ratings.dat`` or ``u.data`` flavour).

    Args:
      path: the folder holding the MovieLens files.
      rules: value rules (future timestamps, timestamp unit).

    Returns:
      :class:`LoadResult` with interactions (user = collection, weight = rating) and items.

    Raises:
      LoaderError: no ratings file, a file unusable as a whole, or a required column is missing.
    """
    path = Path(path)
    if path.is_file():
        raise LoaderError(f"{path}: is a file, expected a MovieLens folder (with ratings.csv, ratings.dat or u.data)")
    if not path.is_dir():
        raise LoaderError(f"{path}: not a folder (expected a MovieLens folder)")
    q = _Quarantine()
    fields = ["userId", "movieId", "rating", "timestamp"]
    if (path / "ratings.csv").exists() or (path / "ratings.csv").is_symlink():
        src = path / "ratings.csv"
        read = _read_csv(src, fields, q, "MovieLens ratings CSV (userId,movieId,rating,timestamp)")
    elif (path / "ratings.dat").exists():
        src = path / "ratings.dat"
        read = _read_separated(src, "::", fields, q, "MovieLens ratings.dat (userId::movieId::rating::timestamp)")
    elif (path / "u.data").exists():
        src = path / "u.data"
        read = _read_separated(src, "\t", fields, q, "MovieLens u.data (tab-separated)")
    else:
        raise LoaderError(f"{path}: no MovieLens ratings file (ratings.csv, ratings.dat or u.data)")
    chk = _Checker(read.df)
    chk.ident("userId", integer=True)
    chk.ident("movieId", integer=True)
    chk.number("rating")
    chk.within("rating", *_RATING_SCALE[src.name], f"the MovieLens {src.name} scale")
    chk.timestamp("timestamp", rules, q, str(src))
    chk.duplicates(["userId", "movieId", "timestamp"], "duplicate rating (same user, movie, timestamp)")
    keep = chk.quarantine(q, str(src), read)
    user = chk.values["userId"][keep].to_numpy(dtype=object)
    movie = chk.values["movieId"][keep].to_numpy(dtype=object)
    _repeats_note(q, str(src), user, movie)
    interactions = _interactions(
        user, movie, chk.values["timestamp"][keep].to_numpy(), user, chk.values["rating"][keep].to_numpy()
    )
    q.record(str(src), read.n_in, interactions.num_rows)
    findings: dict[str, dict] = {}
    sources = {"interactions": str(src)}
    items, items_src = _movielens_items(path, q, interactions, findings)
    if items_src:
        sources["items"] = items_src
        findings.update(_unknown_items(interactions, items, items_src, str(src)))
    return LoadResult(interactions, items, None, q.table(), q.counts, findings, sources)


def _movielens_items(path: Path, q: _Quarantine, interactions: pa.Table, findings: dict) -> tuple[pa.Table | None, str]:
    if (path / "movies.csv").exists() or (path / "movies.csv").is_symlink():
        src = path / "movies.csv"
        read = _read_csv(src, ["movieId", "title", "genres"], q, "MovieLens movies CSV (movieId,title,genres)")
    elif (path / "movies.dat").exists():
        src = path / "movies.dat"
        read = _read_separated(src, "::", ["movieId", "title", "genres"], q, "MovieLens movies.dat")
    elif (path / "u.item").exists():
        src = path / "u.item"
        genre_names = _ml100k_genres(path / "u.genre")
        names = ["movieId", "title", "release", "video_release", "url"] + [f"g{i}" for i in range(len(genre_names))]
        read = _read_separated(src, "|", names, q, "MovieLens u.item")
        movies = read.df
        flags = movies[names[5:]].to_numpy(dtype=object)
        bad_flag = ~np.isin(flags, ["0", "1"]).all(axis=1)
        named = np.where(flags == "1", np.array([g + "|" for g in genre_names], dtype=object), "")
        movies = movies[["movieId", "title"]].assign(
            genres=pd.Series(named.sum(axis=1), dtype="string").str.rstrip("|")
        )
        movies.loc[bad_flag, "genres"] = pd.NA
        read.df = movies
    else:
        # No movies file: the items are the rated ids; tags are still read (or their absence noted).
        ids = pc.unique(interactions["item_id"]).sort()
        findings["movies_file"] = {
            "file": None,
            "status": "missing (movies.csv / movies.dat / u.item): items are the rated ids, without titles or genres",
            "items": len(ids),
        }
        cols = {"item_id": ids}
        tags = _movielens_tags(path, q, findings)
        if tags is not None:
            cols["tags"] = pa.array(
                pd.Series(ids.to_numpy(zero_copy_only=False)).map(tags).to_numpy(dtype=object, na_value=None),
                pa.string(),
            )
        return ITEMS.validate(pa.table(cols), str(path)), ""
    movies = read.df
    chk = _Checker(movies)
    chk.ident("movieId", integer=True)
    if src.name == "u.item":
        chk.fail(bad_flag, "bad genre flag")
    _duplicate_ids(chk, movies[["movieId", "title", "genres"]], "movieId", "movieId")
    keep = chk.quarantine(q, str(src), read)
    ids = chk.values["movieId"][keep].reset_index(drop=True)
    genres = movies["genres"].reset_index(drop=True)[keep].astype("string").str.strip().reset_index(drop=True)
    genres = genres.mask(genres.isin(["(no genres listed)", ""]))
    q.record(str(src), read.n_in, len(ids))
    cols = {
        "item_id": pa.array(ids.to_numpy(dtype=object), pa.string()),
        "title": pa.array(
            movies["title"].reset_index(drop=True)[keep].astype("string").str.strip().to_numpy(dtype=object),
            pa.string(),
        ),
        "genres": pa.array(genres.to_numpy(dtype=object, na_value=None), pa.string()),
    }
    tags = _movielens_tags(path, q, findings)
    if tags is not None:
        cols["tags"] = pa.array(ids.map(tags).to_numpy(dtype=object, na_value=None), pa.string())
    return ITEMS.validate(pa.table(cols), str(src)), str(src)


def _ml100k_genres(path: Path) -> tuple[str, ...]:
    if not path.exists():
        return ML100K_GENRES
    tl = read_lines(path, "MovieLens u.genre")
    pairs = [line.split("|") for line in tl.lines.to_pylist() if line.strip()]  # ~20 lines
    return tuple(name for name, _ in sorted(((p[0], int(p[1])) for p in pairs if len(p) == 2), key=lambda t: t[1]))


def _movielens_tags(path: Path, q: _Quarantine, findings: dict) -> pd.Series | None:
    """movieId -> "tag1|tag2" (distinct lower-cased tags, sorted)."""
    if (path / "tags.csv").exists() or (path / "tags.csv").is_symlink():
        src = path / "tags.csv"
        read = _read_csv(src, ["userId", "movieId", "tag"], q, "MovieLens tags CSV (userId,movieId,tag,timestamp)")
    elif (path / "tags.dat").exists():
        src = path / "tags.dat"
        read = _read_separated(src, "::", ["userId", "movieId", "tag", "timestamp"], q, "MovieLens tags.dat")
    else:
        return None
    chk = _Checker(read.df)
    chk.ident("movieId", integer=True)
    chk.ident("tag")
    keep = chk.quarantine(q, str(src), read)
    q.record(str(src), read.n_in, int(keep.sum()))
    findings["tags_file"] = {"file": str(src), "status": "read", "tags": int(keep.sum())}
    t = (
        pd.DataFrame(
            {
                "movieId": chk.values["movieId"][keep].to_numpy(dtype=object),
                "tag": chk.values["tag"][keep].str.lower().str.replace("|", "/", regex=False).to_numpy(dtype=object),
            }
        )
        .drop_duplicates()
        .sort_values(["movieId", "tag"])
    )
    return t.groupby("movieId", sort=True)["tag"].agg("|".join)


# ---------------------------------------------------------------------------------------------
# Adjacency lists


def _read_adjacency(path: Path, q: _Quarantine) -> pa.Table:
    what = "an adjacency list (lines 'user item item ...', whitespace-separated integers)"
    tl = read_lines(path, what)
    q.note(str(path), tl.note())
    rows = np.flatnonzero(~tl.blank).astype(np.int64)
    lines = pc.utf8_trim_whitespace(tl.lines.take(pa.array(rows)))
    tokens = pc.split_pattern_regex(lines, r"\s+")
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)  # (L,) incl. the user
    user = pc.list_element(tokens, 0).to_numpy(zero_copy_only=False).astype(object)
    items = pc.list_flatten(tokens).to_numpy(zero_copy_only=False).astype(object)
    line_of = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    pos = np.arange(len(items)) - starts[line_of]  # 0 = the user token
    is_item = pos > 0
    item, item_line, position = items[is_item], line_of[is_item], pos[is_item] - 1
    if len(rows) and not len(item) and pc.any(pc.match_substring(lines, ",")).as_py():
        raise LoaderError(
            f"{path}: line {rows[0] + 1}: ids are separated by ',', expected whitespace "
            f"({what}); replace the commas by spaces"
        )
    df = pd.DataFrame({"user_id": user[item_line], "item_id": item})
    chk = _Checker(df)
    chk.ident("user_id", integer=True)
    chk.ident("item_id", integer=True)
    chk.values["_line"] = pd.Series(item_line)
    chk.duplicates(["_line", "item_id"], "item repeated on its line (first kept)")
    read = _Read(df, rows[item_line], rows[item_line] + 1, len(item))
    keep = chk.quarantine(q, str(path), read)
    if not len(item) and len(rows):
        q.note(str(path), f"{len(rows)} lines hold a user and no items")
    q.record(str(path), len(item), int(keep.sum()))
    u = chk.values["user_id"][keep].to_numpy(dtype=object)
    return _interactions(
        u, chk.values["item_id"][keep].to_numpy(dtype=object), position[keep], u, np.ones(int(keep.sum()))
    )


def load_adjacency(
    train_path: str | Path, test_path: str | Path | None = None, rules: InputRules = InputRules()
) -> LoadResult:
    """Load "user item item ..." adjacency-list files (train, optional test).

    Each item token of a line becomes one interaction of the line's user, timestamped by its
    0-based position in the line; ids must be non-negative integers within int64; an item
    repeated on its line is quarantined. Counts are per item token.

    Returns:
      :class:`LoadResult` with interactions (train) and test_interactions; items is None.

    Raises:
      LoaderError: a file unusable as a whole, or test pairs that also occur in train (unless
        ``rules.allow_leaks``).
    """
    q = _Quarantine()
    train = _read_adjacency(Path(train_path), q)
    test = _read_adjacency(Path(test_path), q) if test_path else None
    sources = {"interactions": str(train_path)}
    findings: dict[str, dict] = {}
    if test is not None:
        sources["test"] = str(test_path)
        findings = _test_findings(train, test, str(train_path), str(test_path), rules)
    return LoadResult(train, None, test, q.table(), q.counts, findings, sources)


# ---------------------------------------------------------------------------------------------
# Generic tables


def _read_any(path: Path, required: list[str], q: _Quarantine, what: str, hint: str = "") -> _Read:
    check_file(path, what)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table, n_rows = read_parquet(path, what)
        _require(table.column_names, required, path, hint)
        # Integer columns stay integers with nulls (nullable dtypes), so a null is not a float.
        df = table.to_pandas(
            types_mapper=lambda t: pd.Int64Dtype() if pa.types.is_integer(t) and t != pa.uint64() else None
        )
        return _Read(df, np.arange(table.num_rows, dtype=np.int64), None, n_rows)
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_csv(path, required, q, what, hint)
    raise LoaderError(f"{path}: unsupported table format '{suffix}' (use .csv, .tsv or .parquet)")


def load_table(
    interactions_path: str | Path,
    items_path: str | Path | None = None,
    item_vectors_path: str | Path | None = None,
    item_vector_ids_path: str | Path | None = None,
    columns: ColumnMap = ColumnMap(),
    rules: InputRules = InputRules(),
) -> LoadResult:
    """Load generic CSV/Parquet interactions, plus optional item table and/or item vectors.

    Args:
      interactions_path: ``.csv`` or ``.parquet`` with the mapped user, item, timestamp columns
        (and optionally collection and weight; ``weight``, then ``rating``, are used when no weight
        column is mapped, ``collection_id`` when no collection column is mapped).
      items_path: item table; the item column, an optional vector column (list of floats, or a
        CSV string like ``"0.1 0.2"`` / ``"[0.1, 0.2]"``) and ``title``/``genres``/``tags``.
      item_vectors_path: ``.npy`` (N, F) float vectors, row i for the i-th id of
        ``item_vector_ids_path``; they replace any vector column of the item table.
      item_vector_ids_path: ``.npy``, ``.txt`` (one id a line), or ``.csv``/``.parquet`` with the
        item column.
      columns: source column names.
      rules: value rules (future timestamps, timestamp unit).

    Raises:
      LoaderError: a file or required column is missing or unusable, or vectors and ids disagree
        in length.
    """
    q = _Quarantine()
    src = Path(interactions_path)
    required = [columns.user, columns.item, columns.timestamp]
    read = _read_any(
        src,
        required,
        q,
        f"an interactions table ({', '.join(required)})",
        " (set data.*_column in the config to map it)",
    )
    df = read.df
    coll_col = columns.collection or ("collection_id" if "collection_id" in df.columns else "")
    weight_col = columns.weight or next((c for c in ("weight", "rating") if c in df.columns), "")
    for col in (coll_col, weight_col):
        if col:
            _require(list(df.columns), [col], src)
    chk = _Checker(df)
    chk.ident(columns.user)
    chk.ident(columns.item)
    chk.timestamp(columns.timestamp, rules, q, str(src), allow_datetime=True)
    if coll_col:
        chk.ident(coll_col)
    if weight_col:
        chk.number(weight_col)
        chk.fail(chk.values[weight_col].to_numpy() < 0, f"negative {weight_col}")
    key = [columns.user, columns.item, columns.timestamp] + ([coll_col] if coll_col else [])
    chk.duplicates(key, "duplicate event (same user, item, timestamp)")
    keep = chk.quarantine(q, str(src), read)
    v = chk.values
    _repeats_note(
        q, str(src), v[columns.user][keep].to_numpy(dtype=object), v[columns.item][keep].to_numpy(dtype=object)
    )
    interactions = _interactions(
        v[columns.user][keep].to_numpy(dtype=object),
        v[columns.item][keep].to_numpy(dtype=object),
        v[columns.timestamp][keep].to_numpy(),
        v[coll_col][keep].to_numpy(dtype=object) if coll_col else None,
        v[weight_col][keep].to_numpy() if weight_col else None,
    )
    q.record(str(src), read.n_in, interactions.num_rows)
    items = _load_items(items_path, item_vectors_path, item_vector_ids_path, columns, q)
    sources = {"interactions": str(src)}
    findings: dict[str, dict] = {}
    if items is not None:
        sources["items"] = str(items_path or item_vectors_path)
        findings = _unknown_items(interactions, items, sources["items"], str(src))
    return LoadResult(interactions, items, None, q.table(), q.counts, findings, sources)


def _parse_vector_strings(s: pd.Series) -> list:
    out = []
    for text in s.astype("string").fillna(""):  # one short string per item (item tables are small)
        body = text.strip().strip("[]")
        try:
            out.append(np.array([float(t) for t in re.split(r"[,\s]+", body) if t], dtype=np.float64))
        except ValueError:
            out.append(None)
    return out


def _vector_rows(
    vectors: list, source: str, read: _Read, sel: np.ndarray, q: _Quarantine, ids: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Check a list of vectors: (valid mask, (n_valid, F) float32). Bad ones are quarantined."""
    lengths = np.array([len(v) if v is not None else -1 for v in vectors])
    present = lengths > 0
    dim = int(np.bincount(lengths[present]).argmax()) if present.any() else 0
    reason = np.full(len(vectors), None, dtype=object)
    reason[~present] = "unparsable features"
    reason[present & (lengths != dim)] = f"features length != {dim}"
    ok_len = present & (lengths == dim)
    mat = np.zeros((len(vectors), dim), dtype=np.float64)
    if ok_len.any():
        mat[ok_len] = np.stack([vectors[i] for i in np.flatnonzero(ok_len)])
    finite = np.isfinite(mat).all(axis=1)
    reason[ok_len & ~finite] = "non-finite feature (NaN or inf)"
    bad = ~pd.isna(reason)
    lines = read.lines[sel][bad] if read.lines is not None else None
    q.add(source, read.rows[sel][bad], reason[bad], pd.DataFrame({"item_id": ids[bad].to_numpy(dtype=object)}), lines)
    return ~bad, mat.astype(np.float32)


def _list_array(mat: np.ndarray, valid: np.ndarray) -> pa.Array:
    """(n, F) float32 rows as list<float32>; rows where not ``valid`` are null."""
    lengths = np.where(valid, mat.shape[1], 0)
    offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(mat[valid].ravel(), pa.float32()), mask=pa.array(~valid))


def _load_ids(path: Path, columns: ColumnMap, q: _Quarantine, vectors: Path) -> pd.Series:
    what = "item vector ids (.npy, .txt one id a line, or .csv/.parquet with the item column)"
    if path.suffix == ".npy":
        arr = read_npy(path, what, kinds="iuUS")
        if arr.ndim != 1:
            raise LoaderError(f"{path}: ids of shape {arr.shape}, expected a 1-D array of ids")
        return pd.Series(arr.astype(str), dtype="string")
    if path.suffix in (".csv", ".parquet"):
        return _read_any(path, [columns.item], q, what).df[columns.item].astype("string")
    tl = read_lines(path, what)
    q.note(str(vectors), [f"{path}: {n}" for n in tl.note()])  # the ids' counts are the vectors file's
    return pd.Series(tl.lines.to_pandas(), dtype="string")


def _load_items(items_path, vectors_path, ids_path, columns: ColumnMap, q: _Quarantine) -> pa.Table | None:
    frames: dict[str, pd.Series] = {}
    ids = pd.Series([], dtype="string")
    if items_path:
        src = Path(items_path)
        read = _read_any(
            src,
            [columns.item],
            q,
            f"an item table (column '{columns.item}')",
            " (set data.item_column in the config to map it)",
        )
        df = read.df.reset_index(drop=True)
        chk = _Checker(df)
        chk.ident(columns.item)
        _duplicate_ids(chk, df, columns.item, "item_id")
        keep = chk.quarantine(q, str(src), read)
        n_kept = int(keep.sum())
        ids = chk.values[columns.item][keep].reset_index(drop=True)
        for col in ("title", "genres", "tags"):
            if col in df.columns:
                frames[col] = df[col][keep].astype("string").reset_index(drop=True)
        if columns.vector in df.columns and not vectors_path:
            raw = df[columns.vector][keep]
            vectors = (
                [None if v is None else np.asarray(v, dtype=np.float64) for v in raw]
                if src.suffix == ".parquet"
                else _parse_vector_strings(raw)
            )
            ok, mat = _vector_rows(vectors, str(src), read, keep, q, ids)
            n_kept = int(ok.sum())
            ids = ids[ok].reset_index(drop=True)
            frames = {k: s[ok].reset_index(drop=True) for k, s in frames.items()}
            frames["features"] = _list_array(mat[ok], np.ones(int(ok.sum()), dtype=bool))
        q.record(str(src), read.n_in, n_kept)
    if vectors_path:
        vsrc = Path(vectors_path)
        mat = read_npy(vsrc, "item vectors (N, F) of numbers", kinds="fiu")
        if not ids_path:
            raise LoaderError(f"{vsrc}: item vectors need data.item_vector_ids_path (one id per row)")
        vids = _load_ids(Path(ids_path), columns, q, vsrc)
        if mat.ndim != 2 or len(mat) != len(vids):
            raise LoaderError(
                f"{vsrc}: vectors of shape {mat.shape} do not match the {len(vids)} ids of {ids_path} (need (N, F))"
            )
        rows = np.arange(len(vids), dtype=np.int64)
        vids = vids.str.strip()
        vid_null = (vids.isna() | (vids == "")).to_numpy()
        chk = _Checker(pd.DataFrame({"item_id": vids}))
        chk.values["item_id"] = vids
        chk.fail(vid_null, "null item_id")
        finite = np.isfinite(mat).all(axis=1)
        chk.fail(~finite, "non-finite feature (NaN or inf)")
        _duplicate_ids(chk, pd.DataFrame(mat).assign(item_id=vids), "item_id", "item_id")
        keep = chk.quarantine(q, str(vsrc), _Read(chk.df, rows, None, len(vids)))
        q.record(str(vsrc), len(vids), int(keep.sum()))
        vids = vids[keep].reset_index(drop=True)
        vmat = mat[keep].astype(np.float32)
        # Items of the item table keep their order; ids only in the vectors file follow.
        all_ids = pd.concat([ids, vids[~vids.isin(ids)]], ignore_index=True)
        pos = pd.Index(vids).get_indexer(all_ids)  # (n_items,) row in vmat or -1
        has = pos >= 0
        full = np.zeros((len(all_ids), mat.shape[1]), dtype=np.float32)
        full[has] = vmat[pos[has]]
        frames = {k: s.reindex(range(len(all_ids))) for k, s in frames.items()}
        frames["features"] = _list_array(full, has)
        ids = all_ids
    if not items_path and not vectors_path:
        return None
    cols = {"item_id": pa.array(ids.to_numpy(dtype=object), pa.string())}
    for col in ("features", "title", "genres", "tags"):
        if col in frames:
            s = frames[col]
            cols[col] = s if isinstance(s, pa.Array) else pa.array(s.to_numpy(dtype=object, na_value=None), pa.string())
    return ITEMS.validate(pa.table(cols), str(items_path or vectors_path))
