"""Stage "graph": the bipartite item-collection graph in CSR form and the training subgraph.

Reads ``pairs/interactions.parquet`` (the interactions the pairs stage cleaned; its ``train``
rows are the edges: validation and test engagements never reach the graph),
``raw/items.parquet`` (items without interactions still get an id, with degree 0) and
``pairs/pairs.parquet``. Writes:

* ``graph.npz``: the full graph (used by inference and evaluation);
* ``train_graph.npz``: the training subgraph (paper 4.1): a seeded fraction
  ``graph.train_collection_fraction`` of the collections, chosen by a hash of the collection id,
  and every item they touch; same dense id space, other items have degree 0;
* ``collection_recency.npy``: (E,) int32 aligned with ``graph.npz``'s ``coll_indices``: how many
  of the collection's items were engaged later than this one (0 = its latest), the order the
  user head reads a user's items in; 0 for every edge when the data has no event times
  (:func:`pinsage_model.data.contracts.has_event_times`): no item is later than another;
* ``item_ids.parquet`` / ``collection_ids.parquet``: dense ids assigned in ascending id-string
  order (so they do not depend on partitioning), ``in_train_graph`` and the item's full degree;
* ``pairs_indexed.parquet``: the pairs with dense ids. Training pairs are kept only when both
  items are in the training subgraph (so every training pair can be convolved on it);
  validation and test pairs are kept for all items (evaluation uses the full graph) with their
  ``in_train_graph`` flag.

Collections are the ``collection_id`` column when the interactions have one, else the user (the
pairs stage fills that in). The cleaned interactions keep rows under ``pairs.min_rating``: any
engagement is an edge; duplicate edges are merged. Dedupe and indexing run in Spark; only the
indexed edge list reaches the driver, which it needs to write the CSR arrays.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from components.orchestration.execution import StageError, print_table, stage_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

# Collections are sampled by comparing a hash modulo this with the training fraction.
_SAMPLE_BUCKETS = 1_000_000


def dense_index(df: "DataFrame", col: str, idx_col: str, tmp_dir: Path) -> "DataFrame":
    """Assign ``idx_col`` = rank of ``col`` in ascending order, computed inside Spark.

    The distinct values are range-partitioned by a global sort; each row's rank is its
    partition's offset (a small per-partition count collected to the driver) plus its position
    inside the partition. The sorted frame is materialised once under ``tmp_dir`` so the counts
    and the positions come from the same partitioning.
    """
    from pyspark.sql import functions as F

    spark = df.sparkSession
    path = str(tmp_dir.resolve())
    (
        df.select(col)
        .distinct()
        .orderBy(col)
        .select(
            col,
            F.spark_partition_id().alias("_pid"),
            # monotonically_increasing_id = (partition id << 33) + position within the partition
            (F.monotonically_increasing_id() % F.lit(1 << 33)).alias("_pos"),
        )
        .write.mode("overwrite")
        .parquet(path)
    )
    sorted_df = spark.read.parquet(path)
    counts = sorted((int(r["_pid"]), int(r["count"])) for r in sorted_df.groupBy("_pid").count().collect())
    offsets, total = [], 0
    for pid, n in counts:
        offsets.append((pid, total))
        total += n
    off_df = spark.createDataFrame(offsets, "_pid int, _off long")
    return sorted_df.join(F.broadcast(off_df), "_pid").select(
        col, (F.col("_off") + F.col("_pos")).cast("int").alias(idx_col)
    )


def degree_quantiles(degree, qs=(0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)) -> dict[str, float]:
    """Quantiles of a degree vector, keyed ``p50`` etc."""
    import numpy as np

    if len(degree) == 0:
        return {}
    vals = np.quantile(np.asarray(degree, dtype=np.float64), qs)
    return {f"p{int(round(q * 100))}": float(v) for q, v in zip(qs, vals)}


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    """Build the graphs, id maps and indexed pairs into ``out_dir``."""
    from pinsage_model.data.contracts import PAIRS, read_table
    from pinsage_model.spark.session import get_spark

    raw = Path(inputs["raw"])
    pairs_path = Path(inputs["pairs"]) / "pairs.parquet"
    clean_path = Path(inputs["pairs"]) / "interactions.parquet"
    read_table(pairs_path, PAIRS)  # schema check with a clear error before Spark starts work
    if not clean_path.exists():
        raise StageError(f"{clean_path}: not found; rerun the pairs stage, which writes the cleaned interactions")
    items_path = raw / "items.parquet"
    read = [pairs_path, clean_path] + ([items_path] if items_path.exists() else [])
    spark = get_spark(cfg.spark, visible=read, writable=[out_dir])
    tmp = out_dir / "_spark"
    pairs = spark.read.parquet(str(pairs_path.resolve()))
    edges, items = _train_edges_and_items(spark, clean_path, items_path, pairs)
    item_map = dense_index(items, "item_id", "item_idx", tmp / "items_sorted")
    coll_map = dense_index(edges.select("collection_id"), "collection_id", "collection_idx", tmp / "colls_sorted")
    full, train, coll_in_train = _write_graphs(cfg, edges, item_map, coll_map, clean_path, out_dir, tmp)
    item_in_train = train.item_degree() > 0  # (N,)
    pidx, is_train, both_in = _index_pairs(pairs, item_map, item_in_train, tmp)
    n_train_kept = int((is_train & both_in).sum())
    if n_train_kept == 0:
        raise StageError(
            f"no training pair has both items in the training subgraph "
            f"(graph.train_collection_fraction={cfg.graph.train_collection_fraction}); raise the fraction"
        )
    from pinsage_model.io import atomic_write_parquet

    atomic_write_parquet(out_dir / "pairs_indexed.parquet", pidx)
    shutil.rmtree(tmp, ignore_errors=True)
    return _report(full, train, item_in_train, coll_in_train, pidx, is_train, both_in)


def _train_edges_and_items(spark, clean_path: Path, items_path: Path, pairs: "DataFrame"):
    """(edges, items): one training edge per (item, collection) with its latest engagement time
    ``last_ts`` (the recency order), and every item id the graph must number (edges, catalogue,
    pairs)."""
    from pyspark.sql import functions as F

    from pinsage_model.data.contracts import SPLITS

    clean = spark.read.parquet(str(clean_path.resolve()))
    if "split" not in clean.columns:
        raise StageError(f"{clean_path}: no 'split' column; rerun the pairs stage")
    edges = (
        clean.where(F.col("split") == SPLITS[0])
        .groupBy("item_id", "collection_id")
        .agg(F.max("timestamp").alias("last_ts"))
    )
    items = edges.select("item_id")
    if items_path.exists():
        catalogue = (
            spark.read.parquet(str(items_path.resolve()))
            .select(F.col("item_id").cast("string").alias("item_id"))
            .where(F.col("item_id").isNotNull() & (F.trim("item_id") != ""))
        )
        items = items.unionByName(catalogue)
    items = items.unionByName(pairs.select(F.col("q_item").alias("item_id"))).unionByName(
        pairs.select(F.col("pos_item").alias("item_id"))
    )
    return edges, items


def _write_graphs(cfg: "PipelineConfig", edges, item_map, coll_map, clean_path: Path, out_dir: Path, tmp: Path):
    """Write ``graph.npz``, ``train_graph.npz``, ``collection_recency.npy`` and the id maps;
    returns (full graph, training graph, (C,) bool collections in the training graph)."""
    import numpy as np
    from pyspark.sql import functions as F

    from pinsage_model.data.contracts import has_event_times
    from pinsage_model.graph.csr import CSRGraph, collection_recency
    from pinsage_model.io import atomic_save_npy
    from pinsage_model.spark.session import spark_to_arrow

    item_tbl = spark_to_arrow(item_map, tmp / "item_map").sort_by("item_idx")
    coll_tbl = spark_to_arrow(coll_map, tmp / "coll_map").sort_by("collection_idx")
    n_items, n_colls = item_tbl.num_rows, coll_tbl.num_rows
    if n_colls == 0:
        raise StageError(f"{clean_path}: no usable interactions, so the graph has no edges")
    if not np.array_equal(item_tbl.column("item_idx").to_numpy(), np.arange(n_items)):
        raise StageError("dense item ids are not contiguous (internal error in dense_index)")

    frac = cfg.graph.train_collection_fraction
    in_train = F.pmod(F.xxhash64("collection_id", F.lit(cfg.graph.seed)), F.lit(_SAMPLE_BUCKETS)) < F.lit(
        frac * _SAMPLE_BUCKETS
    )
    edge_idx = (
        edges.join(item_map, "item_id")
        .join(coll_map.withColumn("train", in_train), "collection_id")
        .select("item_idx", "collection_idx", "train", "last_ts")
    )
    etbl = spark_to_arrow(edge_idx, tmp / "edges")
    e_item = etbl.column("item_idx").to_numpy().astype(np.int64)  # (E,)
    e_coll = etbl.column("collection_idx").to_numpy().astype(np.int64)  # (E,)
    e_train = etbl.column("train").to_numpy(zero_copy_only=False)  # (E,) bool
    full = CSRGraph.from_edges(e_item, e_coll, n_items, n_colls).validate("graph.npz")
    train = CSRGraph.from_edges(e_item[e_train], e_coll[e_train], n_items, n_colls).validate("train_graph.npz")
    full.save(out_dir / "graph.npz")
    train.save(out_dir / "train_graph.npz")
    last_ts = etbl.column("last_ts").to_numpy().astype(np.int64)  # (E,)
    if has_event_times(clean_path):
        recency = collection_recency(full, e_item, e_coll, last_ts)
    else:  # a position in a line is no time: ranking by it would invent "recent" items
        recency = np.zeros(full.num_edges, np.int32)
    atomic_save_npy(out_dir / "collection_recency.npy", recency)

    coll_in_train = np.zeros(n_colls, dtype=bool)
    coll_in_train[np.unique(e_coll[e_train])] = True
    _write_id_maps(out_dir, item_tbl, coll_tbl, full, train.item_degree() > 0, coll_in_train)
    return full, train, coll_in_train


def _write_id_maps(out_dir: Path, item_tbl, coll_tbl, full, item_in_train, coll_in_train) -> None:
    """``item_ids.parquet`` (with ``in_train_graph`` and the full degree) and ``collection_ids.parquet``."""
    import numpy as np
    import pyarrow as pa

    from pinsage_model.io import atomic_write_parquet

    atomic_write_parquet(
        out_dir / "item_ids.parquet",
        pa.table(
            {
                "item_idx": pa.array(np.arange(item_tbl.num_rows, dtype=np.int32)),
                "item_id": item_tbl.column("item_id"),
                "in_train_graph": pa.array(item_in_train),
                "degree": pa.array(full.item_degree().astype(np.int32)),
            }
        ),
    )
    atomic_write_parquet(
        out_dir / "collection_ids.parquet",
        pa.table(
            {
                "collection_idx": pa.array(np.arange(coll_tbl.num_rows, dtype=np.int32)),
                "collection_id": coll_tbl.column("collection_id"),
                "in_train_graph": pa.array(coll_in_train),
            }
        ),
    )


def _index_pairs(pairs: "DataFrame", item_map, item_in_train, tmp: Path):
    """(pairs_indexed table, (P,) is a training pair, (P,) both items in the training graph):
    training pairs kept only when both items are in the training subgraph, the others all."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from pinsage_model.spark.session import spark_to_arrow

    q_map = item_map.select(F.col("item_id").alias("q_item"), F.col("item_idx").alias("q_idx"))
    p_map = item_map.select(F.col("item_id").alias("pos_item"), F.col("item_idx").alias("pos_idx"))
    ptbl = spark_to_arrow(
        pairs.join(q_map, "q_item").join(p_map, "pos_item").select("q_idx", "pos_idx", "count", "split"),
        tmp / "pairs",
    )
    q_idx = ptbl.column("q_idx").to_numpy()
    pos_idx = ptbl.column("pos_idx").to_numpy()
    both_in = item_in_train[q_idx] & item_in_train[pos_idx]
    is_train = pc.equal(ptbl.column("split"), "train").to_numpy(zero_copy_only=False)
    keep = both_in | ~is_train
    pidx = pa.table(
        {
            "q_idx": pa.array(q_idx[keep].astype(np.int32)),
            "pos_idx": pa.array(pos_idx[keep].astype(np.int32)),
            "count": ptbl.column("count").filter(pa.array(keep)).cast(pa.int64()),
            "split": ptbl.column("split").filter(pa.array(keep)),
            "in_train_graph": pa.array(both_in[keep]),
        }
    ).sort_by([("q_idx", "ascending"), ("pos_idx", "ascending"), ("split", "ascending")])
    return pidx, is_train, both_in


def _report(full, train, item_in_train, coll_in_train, pidx, is_train, both_in) -> dict:
    """The stage's report (sizes, degree quantiles, pairs per split), also printed as a table."""
    import numpy as np
    import pyarrow.compute as pc

    from pinsage_model.data.contracts import SPLITS

    split_col = pidx.column("split")
    per_split = {s: int(pc.sum(pc.equal(split_col, s)).as_py() or 0) for s in SPLITS}
    report = {
        "items": full.num_items,
        "collections": full.num_collections,
        "edges": full.num_edges,
        "items_without_edges": int(np.sum(full.item_degree() == 0)),
        "train_items": int(item_in_train.sum()),
        "train_collections": int(coll_in_train.sum()),
        "train_edges": train.num_edges,
        "item_degree": degree_quantiles(full.item_degree()),
        "collection_degree": degree_quantiles(full.collection_degree()),
        "train_item_degree": degree_quantiles(train.item_degree()[item_in_train]),
        "pairs_indexed_per_split": per_split,
        "train_pairs_dropped_outside_train_graph": int(np.sum(is_train & ~both_in)),
        "eval_pairs_in_train_graph": int(np.sum(~is_train & both_in)),
    }
    rows = [(k, v) for k, v in report.items() if not isinstance(v, dict)]
    rows += [(f"pairs: {k}", v) for k, v in per_split.items()]
    rows += [(f"item degree {k}", f"{v:g}") for k, v in report["item_degree"].items()]
    print_table("graph stage", rows)
    return report


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
