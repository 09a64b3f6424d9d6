"""Data contracts: the files that cross stage boundaries, their schemas, and validators.

Every stage reads and writes only these. Ids in user-facing tables are strings; inside the
graph every item and collection has a dense ``int32`` index assigned by the graph stage.

Run directory layout (one folder per stage, each replaced atomically)::

    raw/            interactions.parquet, items.parquet, [test_interactions.parquet], report.json
    pairs/          pairs.parquet, interactions.parquet (cleaned), quarantine.parquet, report.json
    graph/          graph.npz, train_graph.npz, item_ids.parquet, collection_ids.parquet,
                    pairs_indexed.parquet, report.json
    features/       features.npy, feature_names.json, transform/ (TF Transform output), report.json
    neighbourhoods/ train.npz, full.npz, report.json
    model/          model.keras, weights.npz, model_config.json, history.json
    embeddings/     items.npy, collections.npy, query_shift.npy, item_flags.parquet, model.json, report.json
    evaluation/     metrics.json, report.md, *.png
    registration/   decision.json (model version, champion before/after, the gate's metrics)
    index/          versions/<version>/..., CURRENT

Tables (Parquet):

* **interactions**: ``user_id`` str, ``item_id`` str, ``timestamp`` int64 (Unix seconds),
  optional ``collection_id`` str (board/playlist; the user is the collection when absent),
  optional ``weight`` float64 (rating or engagement weight).
* **items**: ``item_id`` str; optional ``features`` fixed-size list<float32> (precomputed
  embeddings), optional raw columns ``title`` str, ``genres`` str ("|"-separated), ``tags`` str.
* **pairs**: ``q_item`` str, ``pos_item`` str, ``count`` int64, ``split`` in
  {train, validation, test}.
* **pairs_indexed**: ``q_idx`` int32, ``pos_idx`` int32, ``count`` int64, ``split`` str,
  ``in_train_graph`` bool (both items in the training subgraph).
* **item_ids** / **collection_ids**: ``item_idx``/``collection_idx`` int32, ``item_id``/
  ``collection_id`` str, ``in_train_graph`` bool.
* **quarantine** (every stage that drops rows writes one, built by :func:`quarantine_table`): the
  offending row's columns as strings, then ``reason`` str, ``source`` str (file) and ``row`` int64
  (0-based row number in that file).

Arrays (``.npz`` uncompressed, so members can be memory-mapped; ``.npy``):

* **graph** (``graph.npz``, ``train_graph.npz``): ``item_indptr`` int64 (N+1,), ``item_indices``
  int32 (collections of each item, sorted), ``coll_indptr`` int64 (C+1,), ``coll_indices`` int32
  (items of each collection, sorted). The training subgraph uses the same dense id space;
  items outside it simply have degree 0.
  ``collection_recency.npy`` int32 (E,) aligned with ``coll_indices``: 0 = the collection's
  most recent item, 1 = the one before, ...
* **neighbourhoods**: ``indices`` int32 (N, T), padded with -1; ``weights`` float32 (N, T),
  L1-normalised over the unpadded entries, 0 where padded.
* **features**: ``features.npy`` float32 (N, F) aligned with ``item_idx``.
* **model weights** (``weights.npz``; row-vector convention ``x @ Q``): ``conv{k}/Q`` (F_k, m),
  ``conv{k}/q`` (m,), ``conv{k}/W`` (F_k + m, d), ``conv{k}/w`` (d,), ``head/G1`` (d, d),
  ``head/g`` (d,), ``head/G2`` (d, d), for k = 1..K with F_1 = F and F_k = d after.
  ``model_config.json`` holds ``num_layers``, ``hidden_dim`` (m), ``output_dim`` (d),
  ``pooling``, ``input_dim`` (F).
* **embeddings**: ``items.npy`` float32 (N, d) L2-normalised; ``collections.npy`` (C, d): unit means of their
  items, or the user head's output (not renormalised);
  ``user_shift.npy`` float32 (d,), added to a collection's vector for homefeed (the user head's,
  else the query shift);
  ``query_shift.npy`` float32 (d,), added to a query's vector before the inner product with items
  (zero when the model learns none; absent in runs older than the shift: read as zero);
  ``item_flags.parquet`` (``item_idx``, ``in_train_graph``, neighbourhood size) and ``model.json``
  (the model version the embeddings came from).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa


class ContractError(ValueError):
    """A file does not match its data contract."""


@dataclass(frozen=True)
class TableContract:
    """Required and optional columns of a Parquet table, with their Arrow types."""

    name: str
    required: dict[str, pa.DataType]
    optional: dict[str, pa.DataType]

    def validate(self, table: pa.Table, source: str) -> pa.Table:
        """Check columns and cast to the contract's types; errors name the column and file."""
        names = set(table.column_names)
        for col in self.required:
            if col not in names:
                raise ContractError(
                    f"{source}: missing required column '{col}' for {self.name} "
                    f"(has: {', '.join(table.column_names)})"
                )
        cols, fields = [], []
        for col, typ in {**self.required, **self.optional}.items():
            if col not in names:
                continue
            arr = table.column(col)
            if not arr.type.equals(typ):
                try:
                    arr = arr.cast(typ)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ContractError(
                        f"{source}: column '{col}' of {self.name} cannot be read as {typ}: {exc}"
                    ) from exc
            cols.append(arr)
            fields.append(pa.field(col, typ))
        return pa.Table.from_arrays(cols, schema=pa.schema(fields))


INTERACTIONS = TableContract(
    "interactions",
    required={"user_id": pa.string(), "item_id": pa.string(), "timestamp": pa.int64()},
    optional={"collection_id": pa.string(), "weight": pa.float64()},
)
ITEMS = TableContract(
    "items",
    required={"item_id": pa.string()},
    optional={
        "features": pa.list_(pa.float32()),
        "title": pa.string(),
        "genres": pa.string(),
        "tags": pa.string(),
    },
)
PAIRS = TableContract(
    "pairs",
    required={
        "q_item": pa.string(),
        "pos_item": pa.string(),
        "count": pa.int64(),
        "split": pa.string(),
    },
    optional={},
)
PAIRS_INDEXED = TableContract(
    "pairs_indexed",
    required={
        "q_idx": pa.int32(),
        "pos_idx": pa.int32(),
        "count": pa.int64(),
        "split": pa.string(),
        "in_train_graph": pa.bool_(),
    },
    optional={},
)
ITEM_IDS = TableContract(
    "item_ids",
    required={"item_idx": pa.int32(), "item_id": pa.string(), "in_train_graph": pa.bool_()},
    optional={"degree": pa.int32()},
)
COLLECTION_IDS = TableContract(
    "collection_ids",
    required={
        "collection_idx": pa.int32(),
        "collection_id": pa.string(),
        "in_train_graph": pa.bool_(),
    },
    optional={},
)

SPLITS = ("train", "validation", "test")

QUARANTINE = TableContract(
    "quarantine",
    required={"reason": pa.string(), "source": pa.string(), "row": pa.int64()},
    optional={},
)


def quarantine_table(columns: dict[str, Any], reason: Any, source: str | Sequence[str], row: Any) -> pa.Table:
    """The quarantine layout every writer shares: the rows' own columns as strings, then
    ``reason``, ``source`` (the file they came from: one for all rows, or one per row) and
    ``row`` (their 0-based row in it)."""
    data = {
        name: col.cast(pa.string()) if isinstance(col, (pa.Array, pa.ChunkedArray)) else pa.array(col, pa.string())
        for name, col in columns.items()
    }
    sources = [source] * len(reason) if isinstance(source, str) else source
    tail = {"reason": pa.array(reason, pa.string()), "source": pa.array(sources, pa.string()), "row": pa.array(row, pa.int64())}
    return pa.table({**data, **tail}, schema=pa.schema([pa.field(c, pa.string()) for c in data] + [pa.field(c, t) for c, t in QUARANTINE.required.items()]))


# The model files a model version is identified by (model.keras is a convenience copy).
MODEL_IDENTITY_FILES = ("weights.npz", "model_config.json", "user_head.npz")


def model_digest(model_dir: str | Path) -> str:
    """SHA-256 over the names and bytes of ``weights.npz``, ``model_config.json`` and, when the
    model has one, ``user_head.npz``: the identity
    of a model version (the registry's ``model_fingerprint`` tag, ``embeddings/model.json``)."""
    import hashlib

    h = hashlib.sha256()
    for name in MODEL_IDENTITY_FILES:
        f = Path(model_dir) / name
        if f.exists():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def collection_recency(graph: "CSRGraph", item_idx: np.ndarray, coll_idx: np.ndarray, last_ts: np.ndarray) -> np.ndarray:
    """(E,) int32 aligned with ``graph.coll_indices``: the number of the collection's items engaged
    later than this one (0 = the latest). Equal timestamps rank the higher item index as later,
    so the order does not depend on how the edges arrived.

    Args:
      graph: the CSR graph built from these edges (one edge per distinct (item, collection)).
      item_idx, coll_idx, last_ts: (E,) the edges in any order, with their latest timestamp.
    """
    order = np.lexsort((item_idx, coll_idx))  # the CSR order: by collection, then item
    item_s, coll_s, ts_s = item_idx[order], coll_idx[order], last_ts[order]
    if not np.array_equal(item_s, graph.coll_indices):
        raise ContractError("collection_recency: the edges do not match the graph's collection rows")
    latest_first = np.lexsort((-item_s, -ts_s, coll_s))
    rank = np.empty(len(order), np.int64)
    rank[latest_first] = np.arange(len(order)) - np.asarray(graph.coll_indptr)[coll_s[latest_first]]
    return rank.astype(np.int32)


def read_collection_recency(graph_dir: str | Path, graph: "CSRGraph") -> np.ndarray:
    """(E,) ``collection_recency.npy`` of a graph folder, checked against ``graph``."""
    path = Path(graph_dir) / "collection_recency.npy"
    if not path.exists():
        raise ContractError(f"{path}: not found; rerun the graph stage (graph folders older than the user head lack it)")
    rec = np.load(path, allow_pickle=False)
    if rec.shape != (graph.num_edges,):
        raise ContractError(f"{path}: shape {rec.shape}, expected ({graph.num_edges},) like graph.npz's edges; rerun the graph stage")
    return rec


def read_user_shift(embeddings_dir: str | Path, dim: int) -> np.ndarray:
    """(dim,) float32 shift added to a user vector for homefeed: ``user_shift.npy``, else the
    query shift (models without a user head, older runs)."""
    path = Path(embeddings_dir) / "user_shift.npy"
    if not path.exists():
        return read_query_shift(embeddings_dir, dim)
    shift = np.load(path, allow_pickle=False)
    if shift.shape != (dim,):
        raise ContractError(f"{path}: shape {shift.shape}, expected ({dim},) like the item embeddings")
    return shift.astype(np.float32)


def read_query_shift(embeddings_dir: str | Path, dim: int) -> np.ndarray:
    """(dim,) float32 query shift of an embeddings folder; zero when the file is absent (older runs)."""
    path = Path(embeddings_dir) / "query_shift.npy"
    if not path.exists():
        return np.zeros(dim, np.float32)
    shift = np.load(path, allow_pickle=False)
    if shift.shape != (dim,):
        raise ContractError(f"{path}: shape {shift.shape}, expected ({dim},) like the item embeddings")
    return shift.astype(np.float32)


def read_table(path: str | Path, contract: TableContract) -> pa.Table:
    """Read a Parquet file and validate it against ``contract``."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: file not found (expected the {contract.name} table)")
    return contract.validate(pq.read_table(path), str(path))


@dataclass(frozen=True)
class CSRGraph:
    """Bipartite item-collection graph in CSR form, both directions.

    ``item_indptr``/``item_indices``: collections of each item; ``coll_indptr``/``coll_indices``:
    items of each collection. Arrays may be memory-mapped.
    """

    item_indptr: np.ndarray  # (N+1,) int64
    item_indices: np.ndarray  # (E,) int32
    coll_indptr: np.ndarray  # (C+1,) int64
    coll_indices: np.ndarray  # (E,) int32

    @property
    def num_items(self) -> int:
        return len(self.item_indptr) - 1

    @property
    def num_collections(self) -> int:
        return len(self.coll_indptr) - 1

    @property
    def num_edges(self) -> int:
        return len(self.item_indices)

    def item_degree(self) -> np.ndarray:
        return np.diff(self.item_indptr)

    def collection_degree(self) -> np.ndarray:
        return np.diff(self.coll_indptr)

    def validate(self, source: str = "<graph>") -> "CSRGraph":
        for name in ("item_indptr", "coll_indptr"):
            a = getattr(self, name)
            if a.dtype != np.int64 or a.ndim != 1 or a[0] != 0 or np.any(np.diff(a) < 0):
                raise ContractError(f"{source}: '{name}' must be a non-decreasing int64 vector from 0")
        for name in ("item_indices", "coll_indices"):
            if getattr(self, name).dtype != np.int32:
                raise ContractError(f"{source}: '{name}' must be int32")
        if self.item_indptr[-1] != len(self.item_indices) or self.coll_indptr[-1] != len(self.coll_indices):
            raise ContractError(f"{source}: indptr does not end at the number of edges")
        if len(self.item_indices) != len(self.coll_indices):
            raise ContractError(f"{source}: the two directions have different edge counts")
        if len(self.item_indices) and (
            self.item_indices.max() >= self.num_collections or self.coll_indices.max() >= self.num_items
        ):
            raise ContractError(f"{source}: an index is out of range")
        return self

    @staticmethod
    def from_edges(item_idx: np.ndarray, coll_idx: np.ndarray, num_items: int, num_collections: int) -> "CSRGraph":
        """Build both CSR directions from an edge list; duplicate edges are merged."""
        item_idx = np.asarray(item_idx, dtype=np.int64)
        coll_idx = np.asarray(coll_idx, dtype=np.int64)
        # Sort + neighbour comparison: much faster than np.unique on large int64 arrays.
        key = np.sort(item_idx * num_collections + coll_idx)
        if len(key):
            key = key[np.concatenate(([True], key[1:] != key[:-1]))]
        items, colls = key // num_collections, key % num_collections
        item_indptr = np.zeros(num_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=num_items), out=item_indptr[1:])
        order = np.lexsort((items, colls))
        coll_indptr = np.zeros(num_collections + 1, dtype=np.int64)
        np.cumsum(np.bincount(colls, minlength=num_collections), out=coll_indptr[1:])
        return CSRGraph(
            item_indptr=item_indptr,
            item_indices=colls.astype(np.int32),
            coll_indptr=coll_indptr,
            coll_indices=items[order].astype(np.int32),
        )

    def save(self, path: str | Path) -> None:
        from pinsage_model.io import atomic_save_npz

        atomic_save_npz(
            path,
            item_indptr=self.item_indptr,
            item_indices=self.item_indices,
            coll_indptr=self.coll_indptr,
            coll_indices=self.coll_indices,
        )

    @staticmethod
    def load(path: str | Path, mmap: bool = True) -> "CSRGraph":
        """Load a graph; with ``mmap`` the arrays are memory-mapped from the npz members."""
        path = Path(path)
        if not path.exists():
            raise ContractError(f"{path}: graph file not found")
        arrays = load_npz(path, mmap=mmap)
        missing = {"item_indptr", "item_indices", "coll_indptr", "coll_indices"} - set(arrays)
        if missing:
            raise ContractError(f"{path}: missing arrays {sorted(missing)}")
        return CSRGraph(**{k: arrays[k] for k in ("item_indptr", "item_indices", "coll_indptr", "coll_indices")}).validate(str(path))


def load_npz(path: str | Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load every member of an uncompressed ``.npz``; memory-mapped where possible."""
    import zipfile

    path = Path(path)
    out: dict[str, np.ndarray] = {}
    if mmap:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if all(i.compress_type == zipfile.ZIP_STORED for i in infos):
                for info in infos:
                    name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    out[name] = _mmap_member(path, info)
                return out
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _mmap_member(path: Path, info) -> np.ndarray:
    """Memory-map one stored (uncompressed) ``.npy`` member of a zip file."""
    import struct

    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        data_offset = info.header_offset + 30 + name_len + extra_len
        fh.seek(data_offset)
        version = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


@dataclass(frozen=True)
class Neighbourhoods:
    """Importance neighbourhoods: top-T items per item with L1-normalised visit weights."""

    indices: np.ndarray  # (N, T) int32, -1 = padding
    weights: np.ndarray  # (N, T) float32, 0 at padding

    @property
    def mask(self) -> np.ndarray:
        return self.indices >= 0

    def validate(self, source: str = "<neighbourhoods>", atol: float = 1e-4) -> "Neighbourhoods":
        if self.indices.shape != self.weights.shape or self.indices.ndim != 2:
            raise ContractError(f"{source}: indices and weights must both be (N, T)")
        if self.indices.dtype != np.int32 or self.weights.dtype != np.float32:
            raise ContractError(f"{source}: indices must be int32 and weights float32")
        sums = self.weights.sum(axis=1)
        has = self.mask.any(axis=1)
        if np.any(np.abs(sums[has] - 1.0) > atol) or np.any(self.weights[~self.mask] != 0):
            raise ContractError(f"{source}: weights must sum to 1 over unpadded entries, 0 at padding")
        return self

    def save(self, path: str | Path) -> None:
        from pinsage_model.io import atomic_save_npz

        atomic_save_npz(path, indices=self.indices, weights=self.weights)

    @staticmethod
    def load(path: str | Path, mmap: bool = False) -> "Neighbourhoods":
        path = Path(path)
        if not path.exists():
            raise ContractError(f"{path}: neighbourhood file not found")
        a = load_npz(path, mmap=mmap)
        return Neighbourhoods(indices=a["indices"], weights=a["weights"]).validate(str(path))
