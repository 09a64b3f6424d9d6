"""Layer-wise PinSage inference as Spark jobs: the MapReduce plan of paper 3.4 (Figure 3).

Per layer k, with ``H`` the table (item_idx, c0..c{F_k-1}) of layer k-1 representations:

1. map: ``P = H.mapInPandas(ReLU(H Q + q))`` projects every node once (Arrow batches, one sgemm
   per batch);
2. join: the exploded neighbourhood table (item_idx, nbr_idx, weight) joins ``P`` on ``nbr_idx``;
3. reduce: ``groupBy(item_idx)`` pools per node with Spark aggregates (α-weighted mean, mean or
   max of every column p_j), nodes without neighbours get zeros;
4. map: ``H.join(N).mapInPandas(normalize(ReLU(concat(h, n) W + w)))``, written as Parquet, the
   input of the next layer (each layer is materialised once, so Spark never recomputes it).

The dense head runs as a last map job. Vectors travel as one float column per dimension, so
Arrow moves them as flat buffers and the pooling is plain codegen'd Spark SQL aggregation.

The driver writes the features and the exploded neighbourhoods as Parquet into ``scratch_dir``
(a path every executor can read: a local folder with ``local[N]``, shared storage on a cluster)
and reads the final embeddings back into an (N, d) array.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from pinsage_model.contracts import Neighbourhoods
from pinsage_model.inference import check_inputs, input_rows, l2_normalize

_ROWS_PER_GROUP = 1 << 16


def _vector_schema(prefix: str, width: int):
    from pyspark.sql.types import FloatType, IntegerType, StructField, StructType

    return StructType([StructField("item_idx", IntegerType(), False)] + [StructField(f"{prefix}{j}", FloatType(), True) for j in range(width)])


def _write_vectors(path: Path, get_rows, n_items: int, width: int) -> None:
    """Write (item_idx, c0..c{width-1}) Parquet in row groups; ``get_rows(s, e)`` -> (e-s, width)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    names = ["item_idx"] + [f"c{j}" for j in range(width)]
    for part, s in enumerate(range(0, n_items, _ROWS_PER_GROUP * 4)):
        e = min(s + _ROWS_PER_GROUP * 4, n_items)
        block = np.ascontiguousarray(get_rows(s, e), dtype=np.float32)
        cols = [pa.array(np.arange(s, e, dtype=np.int32))] + [pa.array(block[:, j]) for j in range(width)]
        pq.write_table(pa.Table.from_arrays(cols, names=names), path / f"part-{part:05d}.parquet", row_group_size=_ROWS_PER_GROUP)


def _write_edges(path: Path, nbhd: Neighbourhoods) -> int:
    """Explode the (N, T) neighbourhood table into (item_idx, nbr_idx, weight) rows of real entries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    n_items = nbhd.indices.shape[0]
    step = max(1, (_ROWS_PER_GROUP * 16) // max(1, nbhd.indices.shape[1]))
    total = 0
    for part, s in enumerate(range(0, n_items, step)):
        e = min(s + step, n_items)
        idx = np.asarray(nbhd.indices[s:e])
        mask = idx >= 0
        rows, _ = np.nonzero(mask)
        table = pa.table(
            {
                "item_idx": pa.array((rows + s).astype(np.int32)),
                "nbr_idx": pa.array(idx[mask].astype(np.int32)),
                "weight": pa.array(np.asarray(nbhd.weights[s:e])[mask].astype(np.float32)),
            }
        )
        total += table.num_rows
        pq.write_table(table, path / f"part-{part:05d}.parquet", row_group_size=_ROWS_PER_GROUP)
    return total


def _project_fn(q_mat: np.ndarray, q_bias: np.ndarray, width: int):
    cols = [f"c{j}" for j in range(width)]
    m = q_mat.shape[1]

    def project(batches):
        import pandas as pd

        for pdf in batches:
            h = pdf[cols].to_numpy(dtype=np.float32)  # (B, F_k)
            p = np.maximum(h @ q_mat + q_bias, 0.0).astype(np.float32)  # (B, m)
            out = pd.DataFrame(p, columns=[f"p{j}" for j in range(m)])
            out.insert(0, "item_idx", pdf["item_idx"].to_numpy(dtype=np.int32))
            yield out

    return project


def _combine_fn(w_mat: np.ndarray, w_bias: np.ndarray, width: int, m: int):
    h_cols = [f"c{j}" for j in range(width)]
    n_cols = [f"n{j}" for j in range(m)]
    d = w_mat.shape[1]

    def combine(batches):
        import pandas as pd

        for pdf in batches:
            h = pdf[h_cols].to_numpy(dtype=np.float32)  # (B, F_k)
            # nodes without neighbours come out of the left join with nulls: their n_u is 0
            n = pdf[n_cols].fillna(0.0).to_numpy(dtype=np.float32)  # (B, m)
            z = np.maximum(h @ w_mat[:width] + n @ w_mat[width:] + w_bias, 0.0).astype(np.float32)
            out = pd.DataFrame(l2_normalize(z), columns=[f"c{j}" for j in range(d)])
            out.insert(0, "item_idx", pdf["item_idx"].to_numpy(dtype=np.int32))
            yield out

    return combine


def _head_fn(g1: np.ndarray, g: np.ndarray, g2: np.ndarray):
    d = g1.shape[0]
    cols = [f"c{j}" for j in range(d)]

    def head(batches):
        import pandas as pd

        for pdf in batches:
            h = pdf[cols].to_numpy(dtype=np.float32)  # (B, d)
            z = l2_normalize((np.maximum(h @ g1 + g, 0.0) @ g2).astype(np.float32))
            out = pd.DataFrame(z, columns=[f"c{j}" for j in range(g2.shape[1])])
            out.insert(0, "item_idx", pdf["item_idx"].to_numpy(dtype=np.int32))
            yield out

    return head


def _pool_exprs(pooling: str, m: int):
    from pyspark.sql import functions as F

    if pooling == "importance":
        total = F.sum(F.col("weight").cast("double"))
        # α-weighted mean; a zero weight sum (no real weight) pools to 0 like the Keras layer
        return [
            F.coalesce(F.sum(F.col("weight").cast("double") * F.col(f"p{j}").cast("double")) / F.when(total > 1e-12, total), F.lit(0.0))
            .cast("float")
            .alias(f"n{j}")
            for j in range(m)
        ]
    if pooling == "mean":
        return [F.avg(F.col(f"p{j}").cast("double")).cast("float").alias(f"n{j}") for j in range(m)]
    return [F.max(F.col(f"p{j}")).alias(f"n{j}") for j in range(m)]


def embed_all_spark(
    spark,
    weights: dict[str, np.ndarray],
    config: dict,
    features: np.ndarray,
    neighbourhoods: Neighbourhoods,
    *,
    scratch_dir: str | Path | None = None,
    keep_scratch: bool = False,
) -> np.ndarray:
    """Embeddings of every item with the Spark MapReduce plan (same result as ``embed_all``).

    Args:
      spark: an active SparkSession (``pinsage_model.spark.get_spark(cfg.spark)``).
      weights: arrays keyed as in ``contracts.py``; shipped to executors inside the map functions.
      config: ``model_config.json`` content.
      features: (N, F) float32 features aligned with ``item_idx``.
      neighbourhoods: (N, T) importance neighbourhoods.
      scratch_dir: folder for the per-layer Parquet tables (default: a new temp folder).
      keep_scratch: keep the Parquet tables (for inspection) instead of deleting them.

    Returns:
      (N, d) float32 L2-normalised embeddings.
    """
    import pyarrow.parquet as pq

    check_inputs(weights, config, features, neighbourhoods)
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    n_items = features.shape[0]
    m, d, pooling = config["hidden_dim"], config["output_dim"], config["pooling"]
    own_scratch = scratch_dir is None
    scratch = Path(tempfile.mkdtemp(prefix="pinsage-infer-")) if own_scratch else Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        width = weights["conv1/Q"].shape[0]
        _write_vectors(scratch / "h0", lambda s, e: input_rows(features, weights, slice(s, e)), n_items, width)
        _write_edges(scratch / "edges", neighbourhoods)
        edges = spark.read.parquet(str(scratch / "edges"))
        for layer in range(1, config["num_layers"] + 1):
            h = spark.read.parquet(str(scratch / f"h{layer - 1}"))
            proj = h.mapInPandas(
                _project_fn(weights[f"conv{layer}/Q"], weights[f"conv{layer}/q"], width), _vector_schema("p", m)
            ).withColumnRenamed("item_idx", "nbr_idx")
            pooled = edges.join(proj, "nbr_idx").groupBy("item_idx").agg(*_pool_exprs(pooling, m))
            nxt = h.join(pooled, "item_idx", "left").mapInPandas(
                _combine_fn(weights[f"conv{layer}/W"], weights[f"conv{layer}/w"], width, m), _vector_schema("c", d)
            )
            nxt.write.mode("overwrite").parquet(str(scratch / f"h{layer}"))
            width = d
        final = spark.read.parquet(str(scratch / f"h{config['num_layers']}")).mapInPandas(
            _head_fn(weights["head/G1"], weights["head/g"], weights["head/G2"]), _vector_schema("c", d)
        )
        final.write.mode("overwrite").parquet(str(scratch / "out"))
        table = pq.read_table(scratch / "out")
        rows = table.column("item_idx").to_numpy()
        if len(rows) != n_items or len(np.unique(rows)) != n_items:
            raise RuntimeError(f"Spark inference returned {len(rows)} rows for {n_items} items")
        out = np.empty((n_items, d), dtype=np.float32)
        out[rows] = np.stack([table.column(f"c{j}").to_numpy() for j in range(d)], axis=1)
        return out
    finally:
        if own_scratch and not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
