"""What every input format shares: reading files into string columns (headerless separated lines,
quoted CSV, Parquet) with exact record counts, the interactions table, cross-file findings and the
result type.

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
and ``.npy``. The rules, by class (quarantined / converted / refused), are in docs/bad-input.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinsage_model.data.contracts import INTERACTIONS
from pinsage_model.data.inputs import LoaderError, check_file, csv_bytes, read_lines, read_parquet
from pinsage_model.data.quarantine import Quarantine

REPO_ROOT = Path(__file__).resolve().parents[2]


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
      event_times: False when the source has no event times (adjacency lines, a table without a
        time column): ``timestamp`` is then a position, not an order, and the pipeline holds out a
        seeded random share of each user's events instead of the latest ones.
    """

    interactions: pa.Table
    items: pa.Table | None
    test_interactions: pa.Table | None
    quarantine: pa.Table
    counts: dict[str, dict] = field(default_factory=dict)
    findings: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    event_times: bool = True


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


@dataclass
class Records:
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


def read_separated(path: Path, sep: str, names: list[str], q: Quarantine, what: str) -> Records:
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
    return Records(df, rows[ok], rows[ok] + 1, len(rows))


def _header(path: Path, text: str, delimiter: str) -> list[str]:
    names = next(csv.reader([text], delimiter=delimiter), [])
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LoaderError(f"{path}: line 1: column '{name}' appears twice in the header; rename one")
        seen.add(name)
    return names


def read_csv(path: Path, required: list[str], q: Quarantine, what: str, hint: str = "") -> Records:
    """A quoted CSV with a header (tab-separated for ``.tsv``), every column as a string.

    Each physical line is one record: a line with an odd number of ``"`` (a quoted field not closed
    on its line) and a line with the wrong field count are quarantined, so one bad quote never
    swallows the records after it.
    """
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    tl = read_lines(path, what)
    nonblank = np.flatnonzero(~tl.blank).astype(np.int64)
    if not len(nonblank):
        raise LoaderError(f"{path}: only blank lines, expected {what} with a header line ({', '.join(required)})")
    head = int(nonblank[0])
    header_text = tl.lines[head].as_py()
    names = _header(path, header_text, delimiter)
    require_columns(names, required, path, hint, line=head + 1, header=header_text, delimiter=delimiter)
    q.note(str(path), tl.note())
    rec = nonblank[1:]  # (n_in,) 0-based physical line of each record
    src = str(path)
    quotes = pc.count_substring(tl.lines.take(pa.array(rec, pa.int64())), '"').to_numpy(zero_copy_only=False)
    odd = (quotes % 2) == 1
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
    table, bad = _parse_csv_lines(path, tl, feed, names, delimiter, what)
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
    return Records(table.to_pandas(), rows, rec[rows] + 1, len(rec))


def _parse_csv_lines(
    path: Path, tl, feed: np.ndarray, names: list[str], delimiter: str, what: str
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Parse the ``feed`` lines of ``tl`` (the header first) as CSV, every column a string; returns
    the table and the (fed record number, text) of each line with the wrong field count."""
    import pyarrow.csv as pcsv

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
    return table, bad


def require_columns(
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


def read_table_file(path: Path, required: list[str], q: Quarantine, what: str, hint: str = "") -> Records:
    check_file(path, what)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table, n_rows = read_parquet(path, what)
        require_columns(table.column_names, required, path, hint)
        # Integer columns stay integers with nulls (nullable dtypes), so a null is not a float.
        df = table.to_pandas(
            types_mapper=lambda t: pd.Int64Dtype() if pa.types.is_integer(t) and t != pa.uint64() else None
        )
        return Records(df, np.arange(table.num_rows, dtype=np.int64), None, n_rows)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(path, required, q, what, hint)
    raise LoaderError(f"{path}: unsupported table format '{suffix}' (use .csv, .tsv or .parquet)")


def interactions_table(user, item, ts, coll=None, weight=None) -> pa.Table:
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


def note_repeats(q: Quarantine, source: str, user: np.ndarray, item: np.ndarray) -> None:
    n = int(pd.DataFrame({"u": user, "i": item}).duplicated().sum())
    if n:
        q.note(source, f"{n} repeated (user, item) engagements at other times kept (genuine repeats)")


def examples(values: pa.Array, n: int = 3) -> list[str]:
    return pc.unique(values).sort().slice(0, n).to_pylist()


def unknown_items(interactions: pa.Table, items: pa.Table, items_file: str, source: str) -> dict:
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
            "examples": examples(ids),
        }
    }
