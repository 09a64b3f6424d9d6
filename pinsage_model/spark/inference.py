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
     executor mounts read-write): ``P``, ``H`` and the (N, T) neighbourhood arrays live in
     header-less files that map tasks fill and memory-map (the distributed-cache map-side join,
     :class:`SharedArray`); the tasks run over a DataFrame of page-aligned row blocks and pool
     with the compiled in-process kernel. Steps 2-4 and the next layer's step 1 become one map
     job per layer, so the whole plan is K + 1 map jobs without a shuffle, and no vector passes
     through the JVM.
4. map: ``H`` left-joins the pooled table (nodes without neighbours pool to zero) and a
   ``mapInArrow`` computes ``normalize(ReLU(concat(h, n) W + w))``; the result is written as
   Parquet and is the next layer's input (each layer materialised once, never recomputed).

The dense head is a last map job. For ``shuffle`` and ``broadcast`` the driver writes the layer-0
vectors and the exploded neighbourhoods as Parquet into ``scratch_dir`` (a path every executor can
read: a local folder with ``local[N]``, shared storage on a cluster) and reads the final
embeddings back.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pinsage_model.graph.csr import Neighbourhoods
from pinsage_model.inference.layerwise import (
    POOLING_MODES,
    check_inputs,
    head,
    input_rows,
    l2_normalize_f32,
    project,
)

_ROWS_PER_FILE = 1 << 18
# Rows per block of the gather plan: a multiple of the page size for any width of 4-byte values.
GATHER_BLOCK_ROWS = 4096


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
        # uncompressed: float32 bits do not compress and snappy costs a CPU pass per read and write
        pq.write_table(pa.Table.from_batches([batch]), path / f"part-{part:05d}.parquet", compression="none")


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


@dataclass(frozen=True)
class SharedArray:
    """An (rows, width) array in a header-less file that map tasks memory-map by name.

    Without a header, row block ``i`` of ``GATHER_BLOCK_ROWS`` rows starts at a multiple of
    the page size, so no two tasks ever write into the same page (safe on network file systems
    that write back whole pages).
    """

    path: str
    rows: int
    width: int
    dtype: str = "float32"

    def open(self, mode: Literal["r", "r+"] = "r") -> np.ndarray:
        return np.memmap(self.path, dtype=self.dtype, mode=mode, shape=(self.rows, self.width))

    @classmethod
    def create(
        cls,
        path: Path,
        rows: int,
        width: int,
        dtype: str = "float32",
        fill: Callable[[int, int], np.ndarray] | None = None,
    ) -> "SharedArray":
        """Create the file, zero-filled or with rows ``fill(start, stop)`` copied in blocks."""
        arr = np.memmap(path, dtype=dtype, mode="w+", shape=(rows, width))
        if fill is not None:
            for s in range(0, rows, _ROWS_PER_FILE):
                arr[s : s + _ROWS_PER_FILE] = fill(s, min(s + _ROWS_PER_FILE, rows))
        arr.flush()
        del arr
        return cls(str(path), rows, width, dtype)


def _gather_layer_fn(
    layer: int,
    last: bool,
    weights: dict[str, np.ndarray],
    pooling: str,
    arrays: dict[str, SharedArray],
    n_items: int,
    block_rows: int,
):
    """One map job of the ``gather`` plan over a DataFrame of row blocks (``layer`` 0: project only).

    Each task memory-maps the shared arrays (the distributed cache) and, per block of
    ``block_rows`` nodes: for ``layer`` >= 1 pools the nodes' neighbours from this
    layer's (N, m) projections ``proj`` with the compiled in-process kernel, combines them with
    the nodes' own vectors ``h_in`` and writes the result to ``h_out`` (through the dense head on
    the last layer); then projects the result for the next layer into ``next_proj``. A task
    writes only its own blocks, so a retried or speculative task rewrites the same bytes.
    """

    def layer_blocks(batches):
        from pinsage_model.inference.layerwise import combine, head, pool_neighbours, project

        try:
            mapped = {k: a.open("r+" if k in ("h_out", "next_proj") else "r") for k, a in arrays.items()}
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"inference gather plan: {exc.filename} is not visible on this executor; put the run area on a "
                "volume every executor mounts read-write, or set inference.spark_strategy: shuffle"
            ) from exc
        for b in batches:
            for block in b.column("block").to_numpy():
                s, e = int(block) * block_rows, min((int(block) + 1) * block_rows, n_items)
                z = np.asarray(mapped["h_in"][s:e])  # (B, F_k)
                if layer >= 1:
                    pooled = pool_neighbours(
                        mapped["proj"], mapped["nb_idx"][s:e], mapped["nb_w"][s:e], pooling
                    )  # (B, m)
                    z = combine(z, pooled, weights, layer)  # (B, d)
                    mapped["h_out"][s:e] = head(z, weights) if last else z
                if not last:
                    mapped["next_proj"][s:e] = project(z, weights, layer + 1)  # (B, m)
            yield b
        for k in ("h_out", "next_proj"):
            if k in mapped:
                mapped[k].flush()

    return layer_blocks


def _project_fn(weights: dict[str, np.ndarray], layer: int):
    """Map rows ``(item_idx, v)`` to their layer projections ``(nbr_idx, v)`` (:func:`project`)."""
    w = {k: weights[k] for k in (f"conv{layer}/Q", f"conv{layer}/q")}  # only what the executors need
    width = w[f"conv{layer}/Q"].shape[0]

    def run(batches):
        for b in batches:
            yield encode(b.column("item_idx").to_numpy(), project(decode(b.column("v"), width), w, layer), "nbr_idx")

    return run


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
            yield encode(b.column("item_idx").to_numpy(), l2_normalize_f32(np.maximum(z, 0.0, out=z)))  # (B, d)

    return combine


def _head_fn(weights: dict[str, np.ndarray]):
    """Map rows ``(item_idx, v)`` of the last layer to the output embeddings (:func:`head`)."""
    w = {k: weights[k] for k in ("head/G1", "head/g", "head/G2")}
    d = w["head/G1"].shape[0]

    def run(batches):
        for b in batches:
            yield encode(b.column("item_idx").to_numpy(), head(decode(b.column("v"), d), w))

    return run


def _check_covered(rows: int, expected: int, what: str) -> None:
    if rows != expected:
        raise RuntimeError(f"the {what} job processed {rows} row blocks, expected {expected}")


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
      spark: an active SparkSession (``pinsage_model.spark.session.get_spark(cfg.spark)``).
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
    check_inputs(weights, config, features, neighbourhoods)
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    if strategy == "auto":
        strategy = "gather" if features.shape[0] * config["hidden_dim"] * 4 <= broadcast_max_bytes else "shuffle"
    if strategy not in ("shuffle", "broadcast", "gather"):
        raise ValueError(f"strategy must be 'auto', 'shuffle', 'broadcast' or 'gather', got {strategy!r}")
    own_scratch = scratch_dir is None
    scratch = Path(tempfile.mkdtemp(prefix="pinsage-infer-")) if scratch_dir is None else Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if strategy == "gather":
            return _embed_gather(spark, weights, config, features, neighbourhoods, scratch)
        return _embed_join(spark, weights, config, features, neighbourhoods, scratch, strategy == "broadcast")
    finally:
        if own_scratch and not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _embed_join(
    spark,
    weights: dict[str, np.ndarray],
    config: dict,
    features: np.ndarray,
    nbhd: Neighbourhoods,
    scratch: Path,
    broadcast: bool,
) -> np.ndarray:
    """The ``shuffle`` and ``broadcast`` plans: per layer, the projections joined to the edge
    table (broadcast, or shuffled by item), reduced per item and combined; vectors in Parquet
    tables under ``scratch``."""
    from pyspark.sql import functions as F

    n_items = features.shape[0]
    m, d, mode = config["hidden_dim"], config["output_dim"], POOLING_MODES[config["pooling"]]
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    width = weights["conv1/Q"].shape[0]
    _write_vectors(scratch / "h0", lambda s, e: input_rows(features, weights, slice(s, e)), n_items)
    _write_edges(scratch / "edges", nbhd)
    edges = spark.read.parquet(str(scratch / "edges"))
    for layer in range(1, config["num_layers"] + 1):
        h = spark.read.parquet(str(scratch / f"h{layer - 1}"))
        proj = h.mapInArrow(_project_fn(weights, layer), _vector_schema("nbr_idx"))
        if broadcast:
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
        _head_fn(weights), _vector_schema()
    )
    final.write.mode("overwrite").parquet(str(scratch / "out"))
    return _read_embeddings(scratch / "out", n_items, d)


def _embed_gather(
    spark, weights: dict[str, np.ndarray], config: dict, features: np.ndarray, nbhd: Neighbourhoods, scratch: Path
) -> np.ndarray:
    """The ``gather`` plan: K + 1 map jobs over a DataFrame of row blocks, no shuffle.

    Vectors live in shared memory-mapped files in ``scratch`` (the distributed cache; this is why
    ``scratch`` must be a file system every executor mounts read-write): the layer-0 vectors,
    the neighbourhoods, per layer the (N, m) projections and the (N, d) outputs. Job 0 projects
    the layer-0 vectors into ``p1``; job k (1..K) pools layer k from ``p{k}``, combines, writes
    ``h{k}`` and projects it into ``p{k+1}`` (the last job applies the head instead). Only block
    numbers travel through the JVM: moving the vectors through Parquet between jobs cost more
    than the whole computation on a 2-core machine.
    """
    n_items = features.shape[0]
    m, d, num_layers = config["hidden_dim"], config["output_dim"], config["num_layers"]
    t_cols = nbhd.indices.shape[1]
    shared = {
        "nb_idx": SharedArray.create(
            scratch / "nbhd_indices.bin", n_items, t_cols, "int32", lambda s, e: nbhd.indices[s:e]
        ),
        "nb_w": SharedArray.create(
            scratch / "nbhd_weights.bin", n_items, t_cols, "float32", lambda s, e: nbhd.weights[s:e]
        ),
        "h_in": SharedArray.create(
            scratch / "h0.bin",
            n_items,
            weights["conv1/Q"].shape[0],
            "float32",
            lambda s, e: input_rows(features, weights, slice(s, e)),
        ),
    }
    block_rows = GATHER_BLOCK_ROWS
    n_blocks = -(-n_items // block_rows)
    parts = min(n_blocks, max(int(spark.sparkContext.defaultParallelism), -(-n_items // _ROWS_PER_FILE)))
    blocks = spark.range(0, n_blocks, numPartitions=parts).withColumnRenamed("id", "block")
    for layer in range(0, num_layers + 1):
        last = layer == num_layers
        arrays = dict(shared)
        if layer >= 1:
            arrays["h_out"] = SharedArray.create(scratch / f"h{layer}.bin", n_items, d)
        if not last:
            arrays["next_proj"] = SharedArray.create(scratch / f"p{layer + 1}.bin", n_items, m)
        fn = _gather_layer_fn(layer, last, weights, config["pooling"], arrays, n_items, block_rows)
        _check_covered(blocks.mapInArrow(fn, blocks.schema).count(), n_blocks, f"layer-{layer} gather")
        if layer >= 1:
            shared["h_in"] = arrays["h_out"]
        if not last:
            shared["proj"] = arrays["next_proj"]
    return np.array(shared["h_in"].open())


def _read_embeddings(path: Path, n_items: int, d: int) -> np.ndarray:
    """Read the final (item_idx, v) table into an (N, d) array, checking every item came back once."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = table.column("item_idx").to_numpy()
    if len(rows) != n_items or len(np.unique(rows)) != n_items:
        raise RuntimeError(f"Spark inference returned {len(rows)} rows for {n_items} items")
    out = np.empty((n_items, d), dtype=np.float32)
    out[rows] = decode(table.column("v"), d)
    return out
