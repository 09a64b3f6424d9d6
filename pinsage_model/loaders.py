"""Loaders from public formats into the data contracts (interactions, items), with quarantine.

Formats:

* **MovieLens** (:func:`load_movielens`, a folder): ``ratings.csv`` + ``movies.csv`` + ``tags.csv``
  (ml-latest, ml-25m...), ``ratings.dat`` + ``movies.dat`` [+ ``tags.dat``] (ml-1m, ml-10m; ``::``
  separated) or ``u.data`` + ``u.item`` [+ ``u.genre``] (ml-100k; tab / ``|`` separated). Each user
  is also the collection (``collection_id = user_id``), ``weight`` is the rating. Items get
  ``title``, ``genres`` (``|``-separated) and ``tags`` (the item's distinct lower-cased tags,
  sorted, ``|``-separated).
* **Adjacency lists** (:func:`load_adjacency`): lines ``user item item ...`` (the NGCF/LightGCN
  benchmark format), a train file and an optional test file. The files carry no times, so an
  item's ``timestamp`` is its 0-based position in its line: consecutive items of a line are 1 s
  apart and become engagement pairs under any ``pairs.max_gap_s >= 1``. The user is the
  collection; ``weight`` is 1.
* **Generic tables** (:func:`load_table`): CSV or Parquet interactions with a column mapping, plus
  an optional item table (a list-of-float vector column, and/or raw ``title``/``genres``/``tags``
  columns) and/or item vectors as ``.npy`` (N, F) with an ids file (``.npy``, ``.txt`` one id a
  line, ``.csv``/``.parquet`` with the item column). Timestamps may be integer Unix seconds or ISO
  8601 date-times.

Text files are read as UTF-8, or latin-1 when they are not valid UTF-8 (older MovieLens files).

Bad input: a missing file or required column raises :class:`LoaderError` naming the file and the
column; rows that cannot be used (wrong field count, null or non-integer ids, unparsable
timestamps or ratings, non-finite or wrong-length feature vectors, duplicate item rows) go to the
quarantine table with ``reason``, ``source`` (file) and ``row``, and for every file
``in = kept + quarantined``. ``row`` is the 0-based line number for line-oriented files
(``.dat``, ``u.*``, adjacency lists) and the 0-based record number after the header for CSV
(blank lines are not records), the row index for Parquet and ``.npy``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinsage_model.contracts import INTERACTIONS, ITEMS, QUARANTINE, quarantine_table

REPO_ROOT = Path(__file__).resolve().parents[1]
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
_INT_RE = r"\d+"


class LoaderError(ValueError):
    """An input file is missing or unusable as a whole; the message names the file and column."""


@dataclass
class LoadResult:
    """Loaded tables in the contracts, plus what was quarantined.

    Attributes:
      interactions: interactions contract table.
      items: items contract table, or None when the source has no item file.
      test_interactions: held-out interactions (adjacency test file), or None.
      quarantine: rows that could not be used: their columns as strings, ``reason``, ``source``,
        ``row``.
      counts: per source file ``{"in", "kept", "quarantined", "reasons": {reason: n}}``.
    """

    interactions: pa.Table
    items: pa.Table | None
    test_interactions: pa.Table | None
    quarantine: pa.Table
    counts: dict[str, dict] = field(default_factory=dict)


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
    """Collects bad rows and per-file counts."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.counts: dict[str, dict] = {}

    def add(self, source: str, rows: np.ndarray, reasons: np.ndarray | str, columns: pd.DataFrame) -> None:
        """Quarantine ``len(rows)`` rows of ``source`` (``columns`` holds their raw values)."""
        if not len(rows):
            return
        df = columns.reset_index(drop=True).astype("string")
        df["reason"] = reasons if isinstance(reasons, str) else pd.Series(reasons, dtype="string")
        df["source"] = source
        df["row"] = np.asarray(rows, dtype=np.int64)
        self.frames.append(df)

    def record(self, source: str, n_in: int, n_kept: int) -> None:
        reasons: dict[str, int] = {}
        for df in self.frames:
            sub = df[df["source"] == source]
            for reason, n in sub["reason"].value_counts(sort=False).items():
                reasons[str(reason)] = reasons.get(str(reason), 0) + int(n)
        n_q = sum(reasons.values())
        if n_in != n_kept + n_q:
            raise RuntimeError(f"{source}: {n_in} rows in != {n_kept} kept + {n_q} quarantined (loader bug)")
        self.counts[source] = {"in": n_in, "kept": n_kept, "quarantined": n_q, "reasons": dict(sorted(reasons.items()))}

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
    raise LoaderError(f"{what} '{path}' not found (looked at: {', '.join(str(c) for c in candidates)})")


# ---------------------------------------------------------------------------------------------
# Reading files into string columns


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _lines(path: Path) -> tuple[pa.Array, np.ndarray]:
    """Non-blank lines of a text file (string array) and their 0-based line numbers."""
    lines = pa.array(_read_text(path).split("\n"), pa.string())
    lines = pc.utf8_rtrim(lines, "\r")
    keep = pc.invert(pc.match_substring_regex(lines, r"^\s*$")).to_numpy(zero_copy_only=False)
    return lines.filter(pa.array(keep)), np.flatnonzero(keep).astype(np.int64)


def _read_separated(path: Path, sep: str, names: list[str], q: _Quarantine) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Split each line on ``sep`` into ``names`` (unquoted formats without header: ``.dat``, ``u.*``).

    Lines whose field count differs from ``len(names)`` are quarantined. Returns (string frame,
    0-based line numbers of its rows, non-blank lines read).
    """
    lines, rows = _lines(path)
    parts = pc.split_pattern(lines, sep)
    n = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    ok = n == len(names)
    bad = np.flatnonzero(~ok)
    q.add(str(path), rows[bad], f"expected {len(names)} fields separated by {sep!r}",
          pd.DataFrame({"line": lines.take(pa.array(bad)).to_pandas()}))
    good = parts.filter(pa.array(ok))
    df = pd.DataFrame({name: pc.list_element(good, i).to_pandas() for i, name in enumerate(names)})
    return df, rows[ok], len(lines)


def _csv_header(path: Path) -> list[str]:
    import csv
    import io

    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        text = first.decode("latin-1")
    return next(csv.reader(io.StringIO(text.lstrip("\ufeff"))), [])


def _read_csv(path: Path, required: list[str], q: _Quarantine) -> tuple[pd.DataFrame, np.ndarray, int]:
    """A quoted CSV with a header, every column as a string.

    Records with the wrong field count are quarantined. Returns (frame, rows, records read).
    """
    import pyarrow.csv as pcsv

    names = _csv_header(path)
    _require(names, required, path)
    bad: list[tuple[int, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number - 2, row.text))  # number: 1-based, header counted; want 0-based records
        return "skip"

    def read(encoding: str) -> pa.Table:
        bad.clear()
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(use_threads=False, encoding=encoding),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )

    try:
        try:
            table = read("utf8")
        except pa.ArrowInvalid as exc:
            if "UTF8" not in str(exc):
                raise
            table = read("latin1")  # older MovieLens files are latin-1
    except pa.ArrowInvalid as exc:
        raise LoaderError(f"{path}: not readable as CSV: {exc}") from exc
    total = table.num_rows + len(bad)
    bad_rows = np.array([b[0] for b in bad], dtype=np.int64)
    q.add(str(path), bad_rows, f"expected {len(names)} comma-separated fields",
          pd.DataFrame({"line": [b[1] for b in bad]}))
    rows = np.setdiff1d(np.arange(total, dtype=np.int64), bad_rows, assume_unique=True)
    return table.to_pandas(), rows, total


def _require(columns: list[str], required: list[str], path: Path, hint: str = "") -> None:
    for col in required:
        if col not in columns:
            raise LoaderError(
                f"{path}: missing required column '{col}'{hint} (has: {', '.join(map(str, columns)) or 'no columns'})"
            )


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise LoaderError(f"{path}: file not found ({what})")
    return path


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
        v = self.df[col].astype("string").str.strip()
        null = v.isna() | (v == "")
        self.fail(null.to_numpy(), f"null {col}")
        if integer:
            bad = ~v.str.fullmatch(_INT_RE).fillna(False).astype(bool)
            self.fail((bad & ~null).to_numpy(), f"bad int {col}")
            v = v.str.lstrip("0").where(lambda s: s != "", "0")  # "007" and "7" are the same id
        self.values[col] = v

    def number(self, col: str) -> None:
        s = self.df[col]
        v = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_numeric_dtype(s) else s.astype("float64")
        v = v.astype("float64")
        self.fail(~np.isfinite(v.to_numpy(dtype=np.float64, na_value=np.nan)), f"bad number {col}")
        self.values[col] = v

    def timestamp(self, col: str, allow_datetime: bool = False) -> None:
        s = self.df[col]
        out = np.zeros(len(s), dtype=np.int64)
        if pd.api.types.is_datetime64_any_dtype(s):
            ok = s.notna().to_numpy()
            dt = s[ok]
            if dt.dt.tz is not None:
                dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
            out[ok] = dt.to_numpy(dtype="datetime64[s]").astype(np.int64)
        elif pd.api.types.is_integer_dtype(s):
            ok = s.notna().to_numpy()
            out[ok] = s[ok].astype("int64").to_numpy()
        else:
            text = s.astype("string").str.strip()
            is_int = text.str.fullmatch(r"-?\d+").fillna(False).astype(bool).to_numpy()
            num = pd.to_numeric(text.where(is_int), errors="coerce")
            ok = is_int & num.notna().to_numpy()
            out[ok] = num[ok].astype("int64").to_numpy()
            if allow_datetime and (~ok).any():
                rest = ~ok & text.notna().to_numpy()
                dt = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
                good = dt.notna().to_numpy()
                idx = np.flatnonzero(rest)[good]
                out[idx] = dt[good].astype("int64").to_numpy() // 1_000_000_000
                ok[idx] = True
        self.fail(~ok, f"unparsable {col}")
        self.values[col] = pd.Series(out)

    def bad(self) -> np.ndarray:
        return ~pd.isna(self.reason)

    def quarantine(self, q: _Quarantine, source: str, rows: np.ndarray) -> np.ndarray:
        """Quarantine failing rows; returns the boolean mask of kept rows."""
        bad = self.bad()
        q.add(source, rows[bad], self.reason[bad], self.df.loc[bad])
        return ~bad


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
# MovieLens


def load_movielens(path: str | Path) -> LoadResult:
    """Load a MovieLens folder (``ratings.csv``, ``ratings.dat`` or ``u.data`` flavour).

    Args:
      path: the folder holding the MovieLens files.

    Returns:
      :class:`LoadResult` with interactions (user = collection, weight = rating) and items.

    Raises:
      LoaderError: no ratings file, or a required column is missing.
    """
    path = Path(path)
    if not path.is_dir():
        raise LoaderError(f"{path}: not a folder (expected a MovieLens folder)")
    q = _Quarantine()
    if (path / "ratings.csv").exists():
        ratings, rrows, n_in = _read_csv(path / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], q)
        src = path / "ratings.csv"
    elif (path / "ratings.dat").exists():
        src = path / "ratings.dat"
        ratings, rrows, n_in = _read_separated(src, "::", ["userId", "movieId", "rating", "timestamp"], q)
    elif (path / "u.data").exists():
        src = path / "u.data"
        ratings, rrows, n_in = _read_separated(src, "\t", ["userId", "movieId", "rating", "timestamp"], q)
    else:
        raise LoaderError(f"{path}: no MovieLens ratings file (ratings.csv, ratings.dat or u.data)")
    chk = _Checker(ratings)
    chk.ident("userId", integer=True)
    chk.ident("movieId", integer=True)
    chk.number("rating")
    chk.timestamp("timestamp")
    keep = chk.quarantine(q, str(src), rrows)
    user = chk.values["userId"][keep].to_numpy(dtype=object)
    interactions = _interactions(
        user, chk.values["movieId"][keep].to_numpy(dtype=object), chk.values["timestamp"][keep].to_numpy(), user,
        chk.values["rating"][keep].to_numpy(),
    )
    q.record(str(src), n_in, interactions.num_rows)
    items = _movielens_items(path, q)
    return LoadResult(interactions, items, None, q.table(), q.counts)


def _movielens_items(path: Path, q: _Quarantine) -> pa.Table | None:
    if (path / "movies.csv").exists():
        src = path / "movies.csv"
        movies, rows, n_in = _read_csv(src, ["movieId", "title", "genres"], q)
    elif (path / "movies.dat").exists():
        src = path / "movies.dat"
        movies, rows, n_in = _read_separated(src, "::", ["movieId", "title", "genres"], q)
    elif (path / "u.item").exists():
        src = path / "u.item"
        genre_names = _ml100k_genres(path / "u.genre")
        names = ["movieId", "title", "release", "video_release", "url"] + [f"g{i}" for i in range(len(genre_names))]
        movies, rows, n_in = _read_separated(src, "|", names, q)
        flags = movies[names[5:]].to_numpy(dtype=object)
        bad_flag = ~np.isin(flags, ["0", "1"]).all(axis=1)
        named = np.where(flags == "1", np.array([g + "|" for g in genre_names], dtype=object), "")
        movies = movies[["movieId", "title"]].assign(genres=pd.Series(named.sum(axis=1), dtype="string").str.rstrip("|"))
        movies.loc[bad_flag, "genres"] = pd.NA
    else:
        return None
    chk = _Checker(movies)
    chk.ident("movieId", integer=True)
    if src.name == "u.item":
        chk.fail(bad_flag, "bad genre flag")
    # The first row of an id wins; later ones are quarantined rather than silently merged.
    dup = chk.values["movieId"].duplicated(keep="first").to_numpy() & ~chk.bad()
    chk.fail(dup, "duplicate movieId")
    keep = chk.quarantine(q, str(src), rows)
    ids = chk.values["movieId"][keep].reset_index(drop=True)
    genres = movies["genres"][keep].astype("string").str.strip().reset_index(drop=True)
    genres = genres.mask(genres.isin(["(no genres listed)", ""]))
    q.record(str(src), n_in, len(ids))
    cols = {
        "item_id": pa.array(ids.to_numpy(dtype=object), pa.string()),
        "title": pa.array(movies["title"][keep].astype("string").str.strip().to_numpy(dtype=object), pa.string()),
        "genres": pa.array(genres.to_numpy(dtype=object, na_value=None), pa.string()),
    }
    tags = _movielens_tags(path, q)
    if tags is not None:
        cols["tags"] = pa.array(ids.map(tags).to_numpy(dtype=object, na_value=None), pa.string())
    return ITEMS.validate(pa.table(cols), str(src))


def _ml100k_genres(path: Path) -> tuple[str, ...]:
    if not path.exists():
        return ML100K_GENRES
    pairs = [line.split("|") for line in _read_text(path).splitlines() if line.strip()]
    return tuple(name for name, _ in sorted(((p[0], int(p[1])) for p in pairs if len(p) == 2), key=lambda t: t[1]))


def _movielens_tags(path: Path, q: _Quarantine) -> pd.Series | None:
    """movieId -> "tag1|tag2" (distinct lower-cased tags, sorted)."""
    if (path / "tags.csv").exists():
        src = path / "tags.csv"
        tags, rows, n_in = _read_csv(src, ["userId", "movieId", "tag"], q)
    elif (path / "tags.dat").exists():
        src = path / "tags.dat"
        tags, rows, n_in = _read_separated(src, "::", ["userId", "movieId", "tag", "timestamp"], q)
    else:
        return None
    chk = _Checker(tags)
    chk.ident("movieId", integer=True)
    chk.ident("tag")
    keep = chk.quarantine(q, str(src), rows)
    q.record(str(src), n_in, int(keep.sum()))
    t = pd.DataFrame({
        "movieId": chk.values["movieId"][keep].to_numpy(dtype=object),
        "tag": chk.values["tag"][keep].str.lower().str.replace("|", "/", regex=False).to_numpy(dtype=object),
    }).drop_duplicates().sort_values(["movieId", "tag"])
    return t.groupby("movieId", sort=True)["tag"].agg("|".join)


# ---------------------------------------------------------------------------------------------
# Adjacency lists


def _read_adjacency(path: Path, q: _Quarantine) -> pa.Table:
    lines, rows = _lines(_existing(path, "adjacency list"))
    tokens = pc.split_pattern_regex(pc.utf8_trim_whitespace(lines), r"\s+")
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)  # (L,) incl. the user
    user = pc.list_element(tokens, 0).to_numpy(zero_copy_only=False).astype(object)
    items = tokens.flatten().to_numpy(zero_copy_only=False).astype(object)
    line_of = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(len(items)) - starts[line_of]  # 0 = the user token
    is_item = pos > 0
    item, item_line, position = items[is_item], line_of[is_item], pos[is_item] - 1
    df = pd.DataFrame({"user_id": user[item_line], "item_id": item})
    chk = _Checker(df)
    chk.ident("user_id", integer=True)
    chk.ident("item_id", integer=True)
    keep = chk.quarantine(q, str(path), rows[item_line])
    q.record(str(path), len(item), int(keep.sum()))
    u = chk.values["user_id"][keep].to_numpy(dtype=object)
    return _interactions(u, chk.values["item_id"][keep].to_numpy(dtype=object), position[keep], u,
                         np.ones(int(keep.sum())))


def load_adjacency(train_path: str | Path, test_path: str | Path | None = None) -> LoadResult:
    """Load "user item item ..." adjacency-list files (train, optional test).

    Each item token of a line becomes one interaction of the line's user, timestamped by its
    0-based position in the line; ids must be non-negative integers. Counts are per item token.

    Returns:
      :class:`LoadResult` with interactions (train) and test_interactions; items is None.
    """
    q = _Quarantine()
    train = _read_adjacency(Path(train_path), q)
    test = _read_adjacency(Path(test_path), q) if test_path else None
    return LoadResult(train, None, test, q.table(), q.counts)


# ---------------------------------------------------------------------------------------------
# Generic tables


def _read_any(path: Path, required: list[str], q: _Quarantine, hint: str = "") -> tuple[pd.DataFrame, np.ndarray, int]:
    _existing(path, "table")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        _require(table.column_names, required, path, hint)
        return table.to_pandas(), np.arange(table.num_rows, dtype=np.int64), table.num_rows
    if suffix in (".csv", ".tsv", ".txt"):
        _require(_csv_header(path), required, path, hint)
        return _read_csv(path, required, q)
    raise LoaderError(f"{path}: unsupported table format '{suffix}' (use .csv or .parquet)")


def load_table(
    interactions_path: str | Path,
    items_path: str | Path | None = None,
    item_vectors_path: str | Path | None = None,
    item_vector_ids_path: str | Path | None = None,
    columns: ColumnMap = ColumnMap(),
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

    Raises:
      LoaderError: a file or required column is missing, or vectors and ids disagree in length.
    """
    q = _Quarantine()
    src = Path(interactions_path)
    required = [columns.user, columns.item, columns.timestamp]
    df, rows, n_in = _read_any(src, required, q, " (set data.*_column in the config to map it)")
    coll_col = columns.collection or ("collection_id" if "collection_id" in df.columns else "")
    weight_col = columns.weight or next((c for c in ("weight", "rating") if c in df.columns), "")
    for col in (coll_col, weight_col):
        if col:
            _require(list(df.columns), [col], src)
    chk = _Checker(df)
    chk.ident(columns.user)
    chk.ident(columns.item)
    chk.timestamp(columns.timestamp, allow_datetime=True)
    if coll_col:
        chk.ident(coll_col)
    if weight_col:
        chk.number(weight_col)
    keep = chk.quarantine(q, str(src), rows)
    v = chk.values
    interactions = _interactions(
        v[columns.user][keep].to_numpy(dtype=object),
        v[columns.item][keep].to_numpy(dtype=object),
        v[columns.timestamp][keep].to_numpy(),
        v[coll_col][keep].to_numpy(dtype=object) if coll_col else None,
        v[weight_col][keep].to_numpy() if weight_col else None,
    )
    q.record(str(src), n_in, interactions.num_rows)
    items = _load_items(items_path, item_vectors_path, item_vector_ids_path, columns, q)
    return LoadResult(interactions, items, None, q.table(), q.counts)


def _parse_vector_strings(s: pd.Series) -> list:
    out = []
    for text in s.astype("string").fillna(""):
        body = text.strip().strip("[]")
        try:
            out.append(np.array([float(t) for t in re.split(r"[,\s]+", body) if t], dtype=np.float64))
        except ValueError:
            out.append(None)
    return out


def _vector_rows(
    vectors: list, source: str, rows: np.ndarray, q: _Quarantine, ids: pd.Series
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
    q.add(source, rows[bad], reason[bad], pd.DataFrame({"item_id": ids[bad].to_numpy(dtype=object)}))
    return ~bad, mat.astype(np.float32)


def _list_array(mat: np.ndarray, valid: np.ndarray) -> pa.Array:
    """(n, F) float32 rows as list<float32>; rows where not ``valid`` are null."""
    lengths = np.where(valid, mat.shape[1], 0)
    offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(mat[valid].ravel(), pa.float32()), mask=pa.array(~valid))


def _load_ids(path: Path, columns: ColumnMap, q: _Quarantine) -> pd.Series:
    _existing(path, "item vector ids")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        return pd.Series(arr.astype(str), dtype="string")
    if path.suffix in (".csv", ".parquet"):
        df, _, _ = _read_any(path, [columns.item], q)
        return df[columns.item].astype("string")
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return pd.Series([s.rstrip("\r") for s in lines], dtype="string")


def _load_items(items_path, vectors_path, ids_path, columns: ColumnMap, q: _Quarantine) -> pa.Table | None:
    frames: dict[str, pd.Series] = {}
    ids = pd.Series([], dtype="string")
    if items_path:
        src = Path(items_path)
        df, rows, n_in = _read_any(src, [columns.item], q, " (set data.item_column in the config to map it)")
        chk = _Checker(df)
        chk.ident(columns.item)
        dup = chk.values[columns.item].duplicated(keep="first").to_numpy() & ~chk.bad()
        chk.fail(dup, "duplicate item_id")
        keep = chk.quarantine(q, str(src), rows)
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
            ok, mat = _vector_rows(vectors, str(src), rows[keep], q, ids)
            n_kept = int(ok.sum())
            ids = ids[ok].reset_index(drop=True)
            frames = {k: s[ok].reset_index(drop=True) for k, s in frames.items()}
            frames["features"] = _list_array(mat[ok], np.ones(int(ok.sum()), dtype=bool))
        q.record(str(src), n_in, n_kept)
    if vectors_path:
        vsrc = Path(_existing(Path(vectors_path), "item vectors"))
        if not ids_path:
            raise LoaderError(f"{vsrc}: item vectors need data.item_vector_ids_path (one id per row)")
        vids = _load_ids(Path(ids_path), columns, q)
        mat = np.load(vsrc, allow_pickle=False)
        if mat.ndim != 2 or len(mat) != len(vids):
            raise LoaderError(
                f"{vsrc}: vectors of shape {mat.shape} do not match the {len(vids)} ids of {ids_path} (need (N, F))"
            )
        rows = np.arange(len(vids), dtype=np.int64)
        vid_null = vids.isna() | (vids.str.strip() == "")
        dup = vids.duplicated(keep="first") & ~vid_null
        reason = np.where(vid_null, "null item_id", np.where(dup, "duplicate item_id", None))
        finite = np.isfinite(mat).all(axis=1)
        reason = np.where(pd.isna(reason) & ~finite, "non-finite feature (NaN or inf)", reason)
        bad = ~pd.isna(reason)
        q.add(str(vsrc), rows[bad], reason[bad], pd.DataFrame({"item_id": vids[bad].to_numpy(dtype=object)}))
        q.record(str(vsrc), len(vids), int((~bad).sum()))
        vids = vids[~bad].str.strip().reset_index(drop=True)
        vmat = mat[~bad].astype(np.float32)
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
