"""Layer-wise PinSage inference as Spark jobs: the MapReduce plan of paper 3.4 (Figure 3).

Vectors travel as one binary column ``v`` holding the row's float32 values (Arrow moves them as
one flat buffer per batch; the dense maths runs in numpy inside Arrow-based ``mapInArrow``
functions). Per layer k, with ``H`` = (item_idx, v) the layer k-1 representations:

1. map: ``P = H.mapInArrow(ReLU(H Q + q))`` projects every node exactly once (one sgemm per batch);
2. join: the exploded neighbourhood table (item_idx, nbr_idx, weight) joins ``P`` on ``nbr_idx``;
3. reduce: a ``mapInArrow`` reduces each node's contiguous rows with ``np.add.reduceat``
   (α-weighted mean), mean or ``np.maximum.reduceat`` (max), vectorised per Arrow batch (a node's
   rows may span batches). Two join strategies make each node's rows contiguous:

   * ``shuffle`` (the paper's MapReduce join, any scale): both sides are shuffled on ``nbr_idx``,
     the joined rows are hash-partitioned by ``item_idx`` and sorted within partitions;
   * ``broadcast`` (when ``P`` fits executor memory): ``P`` is broadcast and the edge table is
     streamed in file order; the driver writes it sorted by ``item_idx`` with one Parquet row
     group per file (Spark never splits a row group), so no shuffle of the N*T joined rows at all;
   * ``gather`` (when ``P`` fits executor memory and ``scratch_dir`` is a file system every
     executor mounts): the map job's ``P`` is laid out as one (N, m) ``.npy`` that each task
     memory-maps (the distributed-cache map-side join); per node the neighbour ids and weights
     travel with ``H`` and pooling is the compiled in-process kernel. Steps 2-4 become one map job.
4. map: ``H`` left-joins the pooled table (nodes without neighbours pool to zero) and a
   ``mapInArrow`` computes ``normalize(ReLU(concat(h, n) W + w))``; the result is written as
   Parquet and is the next layer's input (each layer materialised once, never recomputed).

The dense head is a last map job. The driver writes the layer-0 vectors and the exploded
neighbourhoods as Parquet into ``scratch_dir`` (a path every executor can read: a local folder
with ``local[N]``, shared storage on a cluster) and reads the final embeddings back.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from pinsage_model.contracts import Neighbourhoods
from pinsage_model.inference import POOLING_MODES, check_inputs, input_rows, l2_normalize

_ROWS_PER_FILE = 1 << 18


def binary_column(rows: np.ndarray):
    """(B, w) array of 4-byte values -> Arrow binary array, one row per value, zero-copy."""
    import pyarrow as pa

    rows = np.ascontiguousarray(rows)
    n, width = rows.shape
    offsets = (np.arange(n + 1, dtype=np.int64) * (rows.itemsize * width)).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(rows)])


def encode(ids: np.ndarray, vectors: np.ndarray, id_name: str = "item_idx"):
    """(B,) ids and (B, w) float32 vectors -> Arrow RecordBatch (id int32, v binary), zero-copy."""
    import pyarrow as pa

    values = binary_column(np.asarray(vectors, dtype=np.float32))
    return pa.RecordBatch.from_arrays([pa.array(np.asarray(ids, dtype=np.int32)), values], names=[id_name, "v"])


def decode(arr, width: int, dtype=np.float32) -> np.ndarray:
    """Arrow binary column of fixed-width rows -> (B, width) ``dtype``; null rows become zeros."""
    import pyarrow as pa

    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    n = len(arr)
    out = np.zeros((n, width), dtype=dtype)
    if n == 0:
        return out
    nbytes = np.dtype(dtype).itemsize * width
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    starts = offsets[:-1][valid].astype(np.int64)
    if len(starts) and np.all(np.diff(starts) == nbytes) and starts[0] + nbytes * len(starts) <= len(data):
        rows = data[starts[0] : starts[0] + nbytes * len(starts)]  # contiguous fast path
    else:
        rows = data[starts[:, None] + np.arange(nbytes)].reshape(-1)
    out[valid] = rows.view(dtype).reshape(-1, width)
    return out


def _vector_schema(id_name: str = "item_idx"):
    from pyspark.sql.types import BinaryType, IntegerType, StructField, StructType

    return StructType([StructField(id_name, IntegerType(), False), StructField("v", BinaryType(), True)])


def _write_vectors(path: Path, get_rows, n_items: int) -> None:
    """Write (item_idx, v) Parquet files; ``get_rows(s, e)`` -> (e-s, width) float32."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    for part, s in enumerate(range(0, n_items, _ROWS_PER_FILE)):
        e = min(s + _ROWS_PER_FILE, n_items)
        batch = encode(np.arange(s, e), get_rows(s, e))
        pq.write_table(pa.Table.from_batches([batch]), path / f"part-{part:05d}.parquet")


def _write_edges(path: Path, nbhd: Neighbourhoods) -> int:
    """Explode the (N, T) neighbourhood table into (item_idx, nbr_idx, weight) rows of real entries.

    Rows are in item order, files hold whole items and each file is a single row group, so a
    Spark scan split never separates the rows of one item (the ``broadcast`` strategy relies on it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    n_items = nbhd.indices.shape[0]
    step = max(1, (_ROWS_PER_FILE * 8) // max(1, nbhd.indices.shape[1]))
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
        pq.write_table(table, path / f"part-{part:05d}.parquet", row_group_size=max(1, table.num_rows))
    return total


def _write_neighbourhood_rows(path: Path, nbhd: Neighbourhoods) -> None:
    """Write (item_idx, nidx, nw): each node's T neighbour ids and weights as binary rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    n_items = nbhd.indices.shape[0]
    for part, s in enumerate(range(0, n_items, _ROWS_PER_FILE)):
        e = min(s + _ROWS_PER_FILE, n_items)
        table = pa.table(
            {
                "item_idx": pa.array(np.arange(s, e, dtype=np.int32)),
                "nidx": binary_column(np.asarray(nbhd.indices[s:e], dtype=np.int32)),
                "nw": binary_column(np.asarray(nbhd.weights[s:e], dtype=np.float32)),
            }
        )
        pq.write_table(table, path / f"part-{part:05d}.parquet")


def _gather_combine_fn(proj_path: str, pooling: str, t_cols: int, w_mat: np.ndarray, w_bias: np.ndarray, width: int):
    """Map-side join: pool from the memory-mapped (N, m) projections, then combine."""

    def gather_combine(batches):
        from pinsage_model.inference import pool_neighbours

        proj = np.load(proj_path, mmap_mode="r")  # (N, m), shared by every task on the node
        for b in batches:
            h = decode(b.column("v"), width)  # (B, F_k)
            idx = decode(b.column("nidx"), t_cols, np.int32)  # (B, T)
            wts = decode(b.column("nw"), t_cols)  # (B, T)
            n = pool_neighbours(proj, idx, wts, pooling)  # (B, m)
            z = h @ w_mat[:width]
            z += n @ w_mat[width:]
            z += w_bias
            yield encode(b.column("item_idx").to_numpy(), l2_normalize(np.maximum(z, 0.0, out=z)))  # (B, d)

    return gather_combine


def _project_fn(q_mat: np.ndarray, q_bias: np.ndarray):
    width = q_mat.shape[0]

    def project(batches):
        for b in batches:
            h = decode(b.column("v"), width)  # (B, F_k)
            p = h @ q_mat
            p += q_bias
            yield encode(b.column("item_idx").to_numpy(), np.maximum(p, 0.0, out=p), "nbr_idx")  # (B, m)

    return project


def _reduce_fn(m: int, mode: int):
    """Pool the rows of each node; each node's rows must be contiguous within the partition."""

    def pool(ids: np.ndarray, w: np.ndarray, p: np.ndarray):
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        if mode == POOLING_MODES["max"]:
            n = np.maximum.reduceat(p, starts, axis=0)
        elif mode == POOLING_MODES["mean"]:
            n = np.add.reduceat(p, starts, axis=0) / np.diff(np.r_[starts, len(ids)])[:, None]
        else:
            total = np.add.reduceat(w, starts)
            n = np.add.reduceat(p * w[:, None], starts, axis=0)
            n = np.where(total[:, None] > 1e-12, n / np.maximum(total, 1e-12)[:, None], 0.0)
        return encode(ids[starts], n.astype(np.float32))

    def reduce(batches):
        carry = None
        for b in batches:
            ids = b.column("item_idx").to_numpy()
            w = b.column("weight").to_numpy().astype(np.float64)
            p = decode(b.column("v"), m).astype(np.float64)  # (B, m); float64 sums like Spark's
            if carry is not None:
                ids, w, p = (np.concatenate([c, x]) for c, x in zip(carry, (ids, w, p)))
            if len(ids) == 0:
                continue
            # the last node's run of rows may continue in the next batch: hold it back
            change = np.flatnonzero(ids[1:] != ids[:-1])
            last = int(change[-1]) + 1 if len(change) else 0
            carry = (ids[last:], w[last:], p[last:])
            if last > 0:
                yield pool(ids[:last], w[:last], p[:last])
        if carry is not None and len(carry[0]):
            yield pool(*carry)

    return reduce


def _combine_fn(w_mat: np.ndarray, w_bias: np.ndarray, width: int, m: int):
    def combine(batches):
        for b in batches:
            h = decode(b.column("v"), width)  # (B, F_k)
            n = decode(b.column("n"), m)  # (B, m); null (no neighbours) -> 0
            z = h @ w_mat[:width]
            z += n @ w_mat[width:]
            z += w_bias
            yield encode(b.column("item_idx").to_numpy(), l2_normalize(np.maximum(z, 0.0, out=z)))  # (B, d)

    return combine


def _head_fn(g1: np.ndarray, g: np.ndarray, g2: np.ndarray):
    d = g1.shape[0]

    def head(batches):
        for b in batches:
            h = decode(b.column("v"), d)  # (B, d)
            a = h @ g1
            a += g
            yield encode(b.column("item_idx").to_numpy(), l2_normalize(np.maximum(a, 0.0, out=a) @ g2))

    return head


def _parquet_to_npy(src: Path, dst: Path, n_items: int, width: int) -> None:
    """Scatter a (nbr_idx, v) Parquet table into an (N, width) float32 .npy by id."""
    import pyarrow.parquet as pq

    out = np.lib.format.open_memmap(dst, mode="w+", dtype=np.float32, shape=(n_items, width))
    for f in sorted(src.glob("*.parquet")):
        t = pq.read_table(f)
        out[t.column("nbr_idx").to_numpy()] = decode(t.column("v"), width)
    out.flush()
    del out


def embed_all_spark(
    spark,
    weights: dict[str, np.ndarray],
    config: dict,
    features: np.ndarray,
    neighbourhoods: Neighbourhoods,
    *,
    scratch_dir: str | Path | None = None,
    keep_scratch: bool = False,
    strategy: str = "auto",
    broadcast_max_bytes: int = 1 << 30,
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
      strategy: ``shuffle``, ``broadcast``, ``gather`` or ``auto`` (``gather`` when the (N, m)
        float32 projections take at most ``broadcast_max_bytes``, else ``shuffle``).
      broadcast_max_bytes: the ``auto`` threshold.

    Returns:
      (N, d) float32 L2-normalised embeddings.
    """
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    check_inputs(weights, config, features, neighbourhoods)
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    n_items = features.shape[0]
    m, d, mode = config["hidden_dim"], config["output_dim"], POOLING_MODES[config["pooling"]]
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    if strategy == "auto":
        strategy = "gather" if n_items * m * 4 <= broadcast_max_bytes else "shuffle"
    if strategy not in ("shuffle", "broadcast", "gather"):
        raise ValueError(f"strategy must be 'auto', 'shuffle', 'broadcast' or 'gather', got {strategy!r}")
    own_scratch = scratch_dir is None
    scratch = Path(tempfile.mkdtemp(prefix="pinsage-infer-")) if own_scratch else Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        width = weights["conv1/Q"].shape[0]
        _write_vectors(scratch / "h0", lambda s, e: input_rows(features, weights, slice(s, e)), n_items)
        if strategy == "gather":
            _write_neighbourhood_rows(scratch / "nbhd", neighbourhoods)
            nbhd_rows = spark.read.parquet(str(scratch / "nbhd"))
        else:
            _write_edges(scratch / "edges", neighbourhoods)
            edges = spark.read.parquet(str(scratch / "edges"))
        for layer in range(1, config["num_layers"] + 1):
            h = spark.read.parquet(str(scratch / f"h{layer - 1}"))
            proj = h.mapInArrow(_project_fn(weights[f"conv{layer}/Q"], weights[f"conv{layer}/q"]), _vector_schema("nbr_idx"))
            if strategy == "gather":
                # map job writes P; the driver lays it out as one (N, m) .npy that every task
                # memory-maps (a map-side join through the distributed cache, no shuffle of N*T rows)
                proj.write.mode("overwrite").parquet(str(scratch / f"p{layer}"))
                _parquet_to_npy(scratch / f"p{layer}", scratch / f"p{layer}.npy", n_items, m)
                nxt = h.join(nbhd_rows, "item_idx").mapInArrow(
                    _gather_combine_fn(
                        str(scratch / f"p{layer}.npy"), config["pooling"], neighbourhoods.indices.shape[1],
                        weights[f"conv{layer}/W"], weights[f"conv{layer}/w"], width,
                    ),
                    _vector_schema(),
                )
            else:
                if strategy == "broadcast":
                    # streamed in file order: each item's rows stay contiguous, no shuffle
                    joined = edges.join(F.broadcast(proj), "nbr_idx").select("item_idx", "weight", "v")
                else:
                    joined = (
                        edges.join(proj, "nbr_idx")
                        .select("item_idx", "weight", "v")
                        .repartition(parts, "item_idx")
                        .sortWithinPartitions("item_idx")
                    )
                pooled = joined.mapInArrow(_reduce_fn(m, mode), _vector_schema()).withColumnRenamed("v", "n")
                nxt = h.join(pooled, "item_idx", "left").mapInArrow(
                    _combine_fn(weights[f"conv{layer}/W"], weights[f"conv{layer}/w"], width, m), _vector_schema()
                )
            nxt.write.mode("overwrite").parquet(str(scratch / f"h{layer}"))
            width = d
        final = spark.read.parquet(str(scratch / f"h{config['num_layers']}")).mapInArrow(
            _head_fn(weights["head/G1"], weights["head/g"], weights["head/G2"]), _vector_schema()
        )
        final.write.mode("overwrite").parquet(str(scratch / "out"))
        table = pq.read_table(scratch / "out")
        rows = table.column("item_idx").to_numpy()
        if len(rows) != n_items or len(np.unique(rows)) != n_items:
            raise RuntimeError(f"Spark inference returned {len(rows)} rows for {n_items} items")
        out = np.empty((n_items, d), dtype=np.float32)
        out[rows] = decode(table.column("v"), d)
        return out
    finally:
        if own_scratch and not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
