"""Generic tables: CSV or Parquet interactions with a column mapping, plus an optional item table
(a list-of-float vector column, and/or raw ``title``/``genres``/``tags`` columns) and/or item
vectors as ``.npy`` (N, F) with an ids file (``.npy``, ``.txt`` one id a line, ``.csv``/``.parquet``
with the item column). Timestamps may be integer Unix seconds (or milliseconds / microseconds /
nanoseconds, detected and converted with a note) or ISO 8601. Bad input as in
:mod:`pinsage_model.data.reading`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pinsage_model.config import DataConfig
from pinsage_model.data.checks import InputRules, RowChecker, fail_duplicate_ids
from pinsage_model.data.contracts import ITEMS
from pinsage_model.data.inputs import LoaderError, check_file, read_lines, read_npy
from pinsage_model.data.quarantine import Quarantine
from pinsage_model.data.reading import (
    LoadResult,
    Records,
    interactions_table,
    note_repeats,
    read_table_file,
    require_columns,
    unknown_items,
)


@dataclass(frozen=True)
class ColumnMap:
    """Source column names of a generic table (empty = optional column absent or auto-detected)."""

    user: str
    item: str
    timestamp: str
    collection: str
    weight: str
    vector: str

    @classmethod
    def of(cls, data: DataConfig | None = None, **overrides: str) -> ColumnMap:
        """The ``data.*_column`` names (default: the schema's defaults), with ``overrides`` by field."""
        d = data or DataConfig()
        names = dict(
            user=d.user_column,
            item=d.item_column,
            timestamp=d.timestamp_column,
            collection=d.collection_column,
            weight=d.weight_column,
            vector=d.vector_column,
        )
        return cls(**(names | overrides))


def load_table(
    interactions_path: str | Path,
    items_path: str | Path | None = None,
    item_vectors_path: str | Path | None = None,
    item_vector_ids_path: str | Path | None = None,
    columns: ColumnMap | None = None,
    rules: InputRules | None = None,
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
    columns = columns or ColumnMap.of()
    rules = rules or InputRules.of()
    q = Quarantine()
    src = Path(interactions_path)
    interactions = _read_interactions(src, columns, rules, q)
    items = _load_items(items_path, item_vectors_path, item_vector_ids_path, columns, q)
    sources = {"interactions": str(src)}
    findings: dict[str, dict] = {}
    if items is not None:
        sources["items"] = str(items_path or item_vectors_path)
        findings = unknown_items(interactions, items, sources["items"], str(src))
    timed = bool(columns.timestamp)
    return LoadResult(interactions, items, None, q.table(), q.counts, findings, sources, event_times=timed)


def _read_interactions(src: Path, columns: ColumnMap, rules: InputRules, q: Quarantine) -> pa.Table:
    """The interactions contract table of a generic table file; bad rows quarantined, counts recorded.

    Without a time column (``columns.timestamp`` empty) ``timestamp`` is the row's 0-based position
    in the file: an order-free table, as adjacency lines are (the caller records ``event_times``
    False), and repeated (user, item) rows are repeat engagements, not duplicate events.
    """
    timed = bool(columns.timestamp)
    required = [columns.user, columns.item] + ([columns.timestamp] if timed else [])
    read = read_table_file(
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
            require_columns(list(df.columns), [col], src)
    chk = RowChecker(df)
    chk.ident(columns.user)
    chk.ident(columns.item)
    if timed:
        chk.timestamp(columns.timestamp, rules, q, str(src), allow_datetime=True)
    if coll_col:
        chk.ident(coll_col)
    if weight_col:
        chk.number(weight_col)
        chk.fail(chk.values[weight_col].to_numpy() < 0, f"negative {weight_col}")
    if timed:
        key = [columns.user, columns.item, columns.timestamp] + ([coll_col] if coll_col else [])
        chk.duplicates(key, "duplicate event (same user, item, timestamp)")
    keep = chk.quarantine(q, str(src), read)
    v = chk.values
    note_repeats(
        q, str(src), v[columns.user][keep].to_numpy(dtype=object), v[columns.item][keep].to_numpy(dtype=object)
    )
    interactions = interactions_table(
        v[columns.user][keep].to_numpy(dtype=object),
        v[columns.item][keep].to_numpy(dtype=object),
        v[columns.timestamp][keep].to_numpy() if timed else np.flatnonzero(keep).astype(np.int64),
        v[coll_col][keep].to_numpy(dtype=object) if coll_col else None,
        v[weight_col][keep].to_numpy() if weight_col else None,
    )
    q.record(str(src), read.n_in, interactions.num_rows)
    return interactions


def _parse_vector_strings(s: pd.Series) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for text in s.astype("string").fillna(""):  # one short string per item (item tables are small)
        body = text.strip().strip("[]")
        try:
            out.append(np.array([float(t) for t in re.split(r"[,\s]+", body) if t], dtype=np.float64))
        except ValueError:
            out.append(None)
    return out


def _vector_rows(
    vectors: list, source: str, read: Records, sel: np.ndarray, q: Quarantine, ids: pd.Series
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


def _load_ids(path: Path, columns: ColumnMap, q: Quarantine, vectors: Path) -> pd.Series:
    what = "item vector ids (.npy, .txt one id a line, or .csv/.parquet with the item column)"
    if path.suffix == ".npy":
        arr = read_npy(path, what, kinds="iuUS")
        if arr.ndim != 1:
            raise LoaderError(f"{path}: ids of shape {arr.shape}, expected a 1-D array of ids")
        return pd.Series(arr.astype(str), dtype="string")
    if path.suffix in (".csv", ".parquet"):
        return read_table_file(path, [columns.item], q, what).df[columns.item].astype("string")
    tl = read_lines(path, what)
    q.note(str(vectors), [f"{path}: {n}" for n in tl.note()])  # the ids' counts are the vectors file's
    return pd.Series(tl.lines.to_pandas(), dtype="string")


def _load_items(items_path, vectors_path, ids_path, columns: ColumnMap, q: Quarantine) -> pa.Table | None:
    """The items contract table from an item table and/or item vectors (None without either)."""
    if not items_path and not vectors_path:
        return None
    frames: dict[str, pd.Series | pa.Array] = {}
    ids = pd.Series([], dtype="string")
    if items_path:
        ids, frames = _read_item_table(Path(items_path), bool(vectors_path), columns, q)
    if vectors_path:
        ids, frames = _add_item_vectors(ids, frames, Path(vectors_path), ids_path, columns, q)
    cols = {"item_id": pa.array(ids.to_numpy(dtype=object), pa.string())}
    for col in ("features", "title", "genres", "tags"):
        if col in frames:
            s = frames[col]
            cols[col] = s if isinstance(s, pa.Array) else pa.array(s.to_numpy(dtype=object, na_value=None), pa.string())
    return ITEMS.validate(pa.table(cols), str(items_path or vectors_path))


def _read_item_table(
    src: Path, has_vectors_file: bool, columns: ColumnMap, q: Quarantine
) -> tuple[pd.Series, dict[str, pd.Series | pa.Array]]:
    """The kept item ids of an item table and their ``title``/``genres``/``tags`` (and, unless a
    vectors file replaces it, ``features``) columns."""
    read = read_table_file(
        src,
        [columns.item],
        q,
        f"an item table (column '{columns.item}')",
        " (set data.item_column in the config to map it)",
    )
    df = read.df.reset_index(drop=True)
    chk = RowChecker(df)
    chk.ident(columns.item)
    fail_duplicate_ids(chk, df, columns.item, "item_id")
    keep = chk.quarantine(q, str(src), read)
    n_kept = int(keep.sum())
    ids = chk.values[columns.item][keep].reset_index(drop=True)
    frames: dict[str, pd.Series | pa.Array] = {}
    for col in ("title", "genres", "tags"):
        if col in df.columns:
            frames[col] = df[col][keep].astype("string").reset_index(drop=True)
    if columns.vector in df.columns and not has_vectors_file:
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
    return ids, frames


def _add_item_vectors(
    ids: pd.Series, frames: dict, vsrc: Path, ids_path, columns: ColumnMap, q: Quarantine
) -> tuple[pd.Series, dict[str, pd.Series | pa.Array]]:
    """Join ``.npy`` item vectors (row i for the i-th id of ``ids_path``) to the item table's ids:
    its items keep their order, ids only in the vectors file follow; bad rows quarantined."""
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
    chk = RowChecker(pd.DataFrame({"item_id": vids}))
    chk.values["item_id"] = vids
    chk.fail(vid_null, "null item_id")
    finite = np.isfinite(mat).all(axis=1)
    chk.fail(~finite, "non-finite feature (NaN or inf)")
    fail_duplicate_ids(chk, pd.DataFrame(mat).assign(item_id=vids), "item_id", "item_id")
    keep = chk.quarantine(q, str(vsrc), Records(chk.df, rows, None, len(vids)))
    q.record(str(vsrc), len(vids), int(keep.sum()))
    vids = vids[keep].reset_index(drop=True)
    vmat = mat[keep].astype(np.float32)
    all_ids = pd.concat([ids, vids[~vids.isin(ids)]], ignore_index=True)
    pos = pd.Index(vids).get_indexer(all_ids)  # (n_items,) row in vmat or -1
    has = pos >= 0
    full = np.zeros((len(all_ids), mat.shape[1]), dtype=np.float32)
    full[has] = vmat[pos[has]]
    frames = {k: s.reindex(range(len(all_ids))) for k, s in frames.items()}
    frames["features"] = _list_array(full, has)
    return all_ids, frames


# Column names recognised per role, in order of preference, compared lower-case with "_", "-" and
# spaces dropped (``userId``, ``user_id`` and ``User ID`` are one name).
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "user", "uid", "customer_id", "customer", "visitor_id", "member_id", "account_id"),
    "item": (
        "item_id",
        "item",
        "iid",
        "product_id",
        "product",
        "movie_id",
        "pin_id",
        "sku",
        "article_id",
        "track_id",
        "video_id",
        "content_id",
    ),
    "timestamp": ("timestamp", "ts", "time", "event_time", "event_timestamp", "datetime", "date", "created_at"),
    "collection": (
        "collection_id",
        "collection",
        "board_id",
        "board",
        "playlist_id",
        "playlist",
        "session_id",
        "basket_id",
    ),
    "weight": ("weight", "rating", "score"),
}
# A table without a time column is order-free (data.timestamp_column ""): see _read_interactions.
REQUIRED_ROLES = ("user", "item")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def header_of(path: Path) -> list[str]:
    """The column names of a CSV (its first line) or Parquet file (its schema)."""
    import csv

    import pyarrow.parquet as pq

    check_file(path, "interactions table (.csv or .parquet)")
    if path.suffix.lower() == ".parquet":
        return list(pq.read_schema(path).names)
    if path.suffix.lower() != ".csv":
        raise LoaderError(f"{path}: expected a .csv or .parquet file, got '{path.suffix or 'no extension'}'")
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def detect_columns(path: Path, given: dict[str, str] | None = None) -> dict[str, str]:
    """Role -> column of the table at ``path``: the ``given`` names (checked against the header),
    else the first header name :data:`COLUMN_NAMES` recognises; optional roles without a match
    (collection, weight) are left out, and a table without a time column maps ``timestamp`` to
    ``""`` (no event times: the pipeline then holds out random events, not the latest).

    Raises:
      LoaderError: one line naming the file, the role, the names looked for and the header, when a
        required role has no column or a given column is not in the file.
    """
    header = header_of(path)
    by_norm = {_norm(c): c for c in reversed(header)}  # the first of two spellings wins
    out: dict[str, str] = {}
    for role, names in COLUMN_NAMES.items():
        if given and role in given:
            if given[role] not in header:
                raise LoaderError(
                    f"{path}: line 1: no column '{given[role]}' (given for {role}); has: {', '.join(header)}"
                )
            out[role] = given[role]
            continue
        found = next((by_norm[_norm(n)] for n in names if _norm(n) in by_norm), None)
        if found is not None and found not in out.values():
            out[role] = found
        elif role == "timestamp":
            out[role] = ""
        elif role in REQUIRED_ROLES:
            raise LoaderError(
                f"{path}: line 1: no {role} column (looked for {', '.join(names[:4])}...; has: "
                f"{', '.join(header) or 'no columns'}); name it with --columns {role}=COLUMN"
            )
    return out
