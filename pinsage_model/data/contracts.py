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
  When the source carries no event times (adjacency lines, a table without a time column) the
  file's Parquet metadata says so (:data:`TIMES_KEY` = ``none``, see :func:`has_event_times`)
  and ``timestamp`` is only the row's position in its source line (or 0): no order to trust.
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
  most recent item, 1 = the one before, ...; all 0 when the data has no event times.
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
  (zero when the model learns none);
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
                    f"{source}: missing required column '{col}' for {self.name} (has: {', '.join(table.column_names)})"
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

# Parquet key-value metadata of the interactions tables (raw, pairs) whose source has no event
# times: a property of the data the raw stage records, which picks the split protocol downstream.
TIMES_KEY = "pinsage.timestamps"
NO_TIMES = "none"


def times_metadata(event_times: bool) -> dict[str, str] | None:
    """The schema metadata an interactions file is written with (None: event times, nothing to record)."""
    return None if event_times else {TIMES_KEY: NO_TIMES}


def has_event_times(path: str | Path) -> bool:
    """Whether an interactions Parquet file's ``timestamp`` holds event times (read from its
    footer's metadata; files written before the flag existed hold times)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return meta.get(TIMES_KEY.encode()) != NO_TIMES.encode()


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
    tail = {
        "reason": pa.array(reason, pa.string()),
        "source": pa.array(sources, pa.string()),
        "row": pa.array(row, pa.int64()),
    }
    return pa.table(
        {**data, **tail},
        schema=pa.schema(
            [pa.field(c, pa.string()) for c in data] + [pa.field(c, t) for c, t in QUARANTINE.required.items()]
        ),
    )


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


def read_user_shift(embeddings_dir: str | Path, dim: int) -> np.ndarray:
    """(dim,) float32 shift added to a user vector for homefeed: ``user_shift.npy`` (the user
    head's shift, or the query shift for a model without a head)."""
    return _read_shift(Path(embeddings_dir) / "user_shift.npy", dim)


def read_query_shift(embeddings_dir: str | Path, dim: int) -> np.ndarray:
    """(dim,) float32 query shift of an embeddings folder (``query_shift.npy``)."""
    return _read_shift(Path(embeddings_dir) / "query_shift.npy", dim)


def _read_shift(path: Path, dim: int) -> np.ndarray:
    if not path.exists():
        raise ContractError(f"{path}: not found; rerun the embeddings stage, which writes it")
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
