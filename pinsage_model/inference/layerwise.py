"""Layer-wise PinSage inference in process (paper 3.4), the per-node baseline, collection pooling.

The paper's MapReduce scheme computes each node's layer-k representation exactly once: first
every node is projected into the pooling space (Algorithm 1, line 1), then each node pools the
projections of its importance neighbourhood and combines them with its own vector (lines 2-3);
this repeats K times before the dense head (Algorithm 2, line 16). :func:`embed_all` does the same
over whole arrays: per layer one projection pass over all N nodes, then one pass that pools and
combines, both in cache-sized row blocks spread over worker threads (BLAS sgemms plus compiled
GIL-free kernels). The Spark backend (:mod:`pinsage_model.spark.inference`) runs the same plan as
Spark jobs and reuses the per-block functions below.

The naive per-node Algorithm 2 (the benchmark's baseline and the tests' reference) lives in
``bench/naive_inference.py``.

Conventions follow ``contracts.py``: row vectors (``x @ Q``), weights keyed ``conv{k}/Q`` etc.,
embeddings L2-normalised with ``x / sqrt(max(|x|^2, 1e-12))`` (as ``tf.math.l2_normalize``).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from pinsage_model.data.contracts import ContractError
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods

POOLING_MODES = {"importance": 0, "mean": 1, "max": 2}
_NORM_EPS = 1e-12


@dataclass
class InferenceStats:
    """What one :func:`embed_all` call did; filled in place when passed as ``stats``.

    Attributes:
      projection_counts: per layer, how many times each node was projected (N,) int32; the
        layer-wise scheme makes every entry exactly 1.
      dense_flops: floating-point operations of the matrix products (2 per multiply-add).
      dense_thread_seconds: time the worker threads spent in those products and their
        bias/ReLU/normalisation epilogues, summed over threads.
      pool_thread_seconds: time the worker threads spent in the neighbourhood gather-and-reduce.
      threads: worker threads that ran the blocks.
    """

    projection_counts: list[np.ndarray] = field(default_factory=list)
    dense_flops: float = 0.0
    dense_thread_seconds: float = 0.0
    pool_thread_seconds: float = 0.0
    threads: int = 1

    @property
    def projections(self) -> list[int]:
        """Total projections per layer."""
        return [int(c.sum()) for c in self.projection_counts]

    @property
    def dense_gflops(self) -> float:
        """Throughput of the dense part with all threads busy: flops / (thread-seconds / threads)."""
        return self.dense_flops * self.threads / max(self.dense_thread_seconds, 1e-12) / 1e9


def check_weights(weights: dict[str, np.ndarray], config: dict, source: str = "<weights>") -> None:
    """Check that ``weights`` has every array of the contract with the shape the config implies."""
    for key in ("num_layers", "hidden_dim", "output_dim", "pooling", "input_dim"):
        if key not in config:
            raise ContractError(f"{source}: model config lacks '{key}'")
    if config["pooling"] not in POOLING_MODES:
        raise ContractError(f"{source}: unknown pooling '{config['pooling']}'; expected one of {sorted(POOLING_MODES)}")
    m, d = config["hidden_dim"], config["output_dim"]
    id_dim = int(config.get("id_embedding_dim", 0))
    expected = {}
    if id_dim:
        if (
            "id_embedding/E" not in weights
            or weights["id_embedding/E"].ndim != 2
            or weights["id_embedding/E"].shape[1] != id_dim
        ):
            raise ContractError(
                f"{source}: model config has id_embedding_dim={id_dim} but no (N, {id_dim}) 'id_embedding/E' weight"
            )
    for k in range(1, config["num_layers"] + 1):
        fk = config["input_dim"] + id_dim if k == 1 else d
        expected.update({f"conv{k}/Q": (fk, m), f"conv{k}/q": (m,), f"conv{k}/W": (fk + m, d), f"conv{k}/w": (d,)})
        if k == config["num_layers"] and "user_half_life" in config:
            expected["user/self"] = (fk,)
    expected.update({"head/G1": (d, d), "head/g": (d,), "head/G2": (d, d)})
    if config.get("query_shift", False):
        expected["head/query_shift"] = (d,)
    for key, shape in expected.items():
        if key not in weights:
            raise ContractError(f"{source}: missing weight '{key}'")
        if tuple(weights[key].shape) != shape:
            raise ContractError(f"{source}: weight '{key}' has shape {weights[key].shape}, expected {shape}")


def query_shift(weights: dict[str, np.ndarray], config: dict) -> np.ndarray:
    """(d,) float32 vector added to every query embedding (zero for a model without the shift).

    Item embeddings are the candidates; a related-items query for item q is ``items[q] + shift``
    and a homefeed query ``user vector + shift``, both scored by inner product.
    """
    shift = weights.get("head/query_shift")
    return np.zeros(config["output_dim"], np.float32) if shift is None else np.asarray(shift, np.float32)


def l2_normalize_f32(x: np.ndarray) -> np.ndarray:
    """Row-wise ``x / sqrt(max(|x|^2, 1e-12))`` in float32: the trained model's own rule
    (``layers.l2_normalize``, as ``tf.math.l2_normalize``), so inference matches it; scoring uses
    the float64, zero-rows-stay-zero :func:`pinsage_model.evaluation.metrics.l2_normalise`."""
    sq = np.einsum("ij,ij->i", x, x)
    return x * (1.0 / np.sqrt(np.maximum(sq, _NORM_EPS))).astype(np.float32)[:, None]


@intrinsic
def _prefetch(typingctx, arr, row, col):  # pragma: no cover - compiled
    """Hint the CPU to fetch ``arr[row, col]``'s cache line (LLVM ``prefetch``, read, keep)."""
    sig = types.void(arr, row, col)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        r = context.cast(builder, args[1], signature.args[1], types.intp)
        c = context.cast(builder, args[2], signature.args[2], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [r, c])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch"
        )
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# Neighbours ahead whose projection rows are prefetched: a row is 8 cache lines (m = 128) that
# the gather would otherwise wait for one node after another (about 1.5x faster pooling at 4-8).
_PREFETCH_AHEAD = 6


@numba.njit(nogil=True, cache=True)
def _pool_kernel(proj, idx, wts, mode, out, col):  # pragma: no cover - compiled
    """Reduce neighbour projections per node: importance (0, α-weighted mean), mean (1) or max (2).

    proj (N, m) float32; idx (B, T) int32 with -1 padding; wts (B, T) float32; results go to
    columns ``col:col + m`` of the C-contiguous ``out`` (B, >= col + m), e.g. the right-hand part
    of the combine's ``[h | pooled]`` buffer (a strided view instead would defeat the inner
    loop's vectorisation). Nodes without neighbours get a zero vector (projections are ReLU
    outputs, so >= 0). Random row reads dominate, so the rows a few neighbours ahead are
    prefetched. Serial and GIL-free: callers run blocks of rows on their own threads.
    """
    b_rows, t_cols = idx.shape
    m = proj.shape[1]
    for b in range(b_rows):
        row = out[b, col : col + m]
        for j in range(m):
            row[j] = 0.0
        count = 0
        total = np.float32(0.0)
        for t in range(t_cols):
            ahead_b, ahead_t = b + (t + _PREFETCH_AHEAD) // t_cols, (t + _PREFETCH_AHEAD) % t_cols
            if ahead_b < b_rows and idx[ahead_b, ahead_t] >= 0:
                for c in range(0, m, 16):  # 16 float32 = one 64-byte cache line
                    _prefetch(proj, idx[ahead_b, ahead_t], c)
            v = idx[b, t]
            if v < 0:
                continue
            count += 1
            if mode == 0:
                a = wts[b, t]
                total += a
                for j in range(m):
                    row[j] += a * proj[v, j]
            elif mode == 1:
                for j in range(m):
                    row[j] += proj[v, j]
            else:
                for j in range(m):
                    if count == 1 or proj[v, j] > row[j]:
                        row[j] = proj[v, j]
        if mode == 1 and count > 0:
            inv = np.float32(1.0) / np.float32(count)
            for j in range(m):
                row[j] *= inv
        elif mode == 0 and total > 1e-12:
            # α-weighted mean: divide by the weights' sum (1 for L1-normalised neighbourhoods)
            inv = np.float32(1.0) / total
            for j in range(m):
                row[j] *= inv


def pool_neighbours(proj: np.ndarray, idx: np.ndarray, wts: np.ndarray, pooling: str) -> np.ndarray:
    """Gather-and-reduce neighbour projections (the γ of Algorithm 1), on the calling thread.

    Args:
      proj: (N, m) float32 projections of every node.
      idx: (B, T) int32 neighbour ids, -1 padded.
      wts: (B, T) float32 importance weights (used by ``importance`` only).
      pooling: ``importance`` (α-weighted mean), ``mean`` or ``max`` over unpadded entries.

    Returns:
      (B, m) float32; zero rows where a node has no neighbours.
    """
    out = np.empty((idx.shape[0], proj.shape[1]), dtype=np.float32)
    _pool_kernel(
        np.ascontiguousarray(proj, dtype=np.float32),
        np.ascontiguousarray(idx, dtype=np.int32),
        np.ascontiguousarray(wts, dtype=np.float32),
        POOLING_MODES[pooling],
        out,
        0,
    )
    return out


@numba.njit(nogil=True, cache=True, fastmath=True)
def _normalize_kernel(z):  # pragma: no cover - compiled
    """In place, row-wise ``z / sqrt(max(|z|^2, 1e-12))`` over (B, k) float32."""
    rows, cols = z.shape
    for i in range(rows):
        sq = np.float32(0.0)
        for j in range(cols):
            sq += z[i, j] * z[i, j]
        inv = np.float32(1.0) / np.sqrt(max(sq, np.float32(_NORM_EPS)))
        for j in range(cols):
            z[i, j] *= inv


@numba.njit(nogil=True, cache=True, fastmath=True)
def _bias_relu_kernel(z, bias, normalize):  # pragma: no cover - compiled
    """In place over (B, k) float32: z = ReLU(z + bias), then row-wise L2 if asked.

    ``fastmath`` lets the row sums vectorise (reassociated float32 adds); the result depends only
    on the compiled code, so reruns stay identical.
    """
    rows, cols = z.shape
    for i in range(rows):
        for j in range(cols):
            z[i, j] = max(z[i, j] + bias[j], np.float32(0.0))
    if normalize:
        _normalize_kernel(z)


def _bias_relu(z: np.ndarray, bias: np.ndarray, normalize: bool) -> np.ndarray:
    z = np.ascontiguousarray(z, dtype=np.float32)
    _bias_relu_kernel(z, np.ascontiguousarray(bias, dtype=np.float32), normalize)
    return z


def project(h: np.ndarray, weights: dict[str, np.ndarray], layer: int) -> np.ndarray:
    """Algorithm 1 line 1 before pooling: ``ReLU(h Q + q)``, (B, F_k) -> (B, m)."""
    return _bias_relu(h @ weights[f"conv{layer}/Q"], weights[f"conv{layer}/q"], False)


def combine(h: np.ndarray, n: np.ndarray, weights: dict[str, np.ndarray], layer: int) -> np.ndarray:
    """Algorithm 1 lines 2-3: ``normalize(ReLU(concat(h, n) W + w))``, (B, F_k), (B, m) -> (B, d)."""
    # one sgemm with K = F_k + m runs faster than two thin ones (h @ W[:F_k] + n @ W[F_k:])
    z = np.concatenate([h, n], axis=1) @ weights[f"conv{layer}/W"]  # (B, F_k + m) @ (F_k + m, d)
    return _bias_relu(z, weights[f"conv{layer}/w"], True)


def head(h: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """Algorithm 2 line 16 plus output normalisation: ``normalize(ReLU(h G1 + g) G2)``."""
    a = _bias_relu(h @ weights["head/G1"], weights["head/g"], False)
    return l2_normalize_f32(a @ weights["head/G2"])


def input_rows(features: np.ndarray, weights: dict[str, np.ndarray], rows: slice | np.ndarray) -> np.ndarray:
    """Layer-0 representations of ``rows``: features, plus the learned id embedding when present.

    With ``id_embedding/E`` in the weights (transductive fallback, ``id_embedding_dim`` > 0 in the
    model config) the layer-0 vector is ``concat(features, id_embedding)``, as in training.
    """
    h = np.asarray(features[rows], dtype=np.float32)
    if "id_embedding/E" in weights:
        h = np.concatenate([h, np.asarray(weights["id_embedding/E"][rows], dtype=np.float32)], axis=1)
    return h


def check_inputs(weights: dict, config: dict, features: np.ndarray, nbhd: Neighbourhoods) -> None:
    """Check weights, features and neighbourhoods against each other before any work starts."""
    check_weights(weights, config)
    if features.ndim != 2 or features.shape[1] != config["input_dim"]:
        raise ContractError(f"features have shape {features.shape}; the model expects (N, {config['input_dim']})")
    if "id_embedding/E" in weights and weights["id_embedding/E"].shape[0] != features.shape[0]:
        raise ContractError(
            f"the model's id embedding covers {weights['id_embedding/E'].shape[0]} items "
            f"but features {features.shape[0]}; "
            "items unseen in training have no learned id (use a feature-only model for inductive inference)"
        )
    if nbhd.indices.shape[0] != features.shape[0]:
        raise ContractError(
            f"neighbourhoods have {nbhd.indices.shape[0]} rows but features {features.shape[0]}; "
            "both must cover every item"
        )
    if nbhd.indices.size and nbhd.indices.max() >= features.shape[0]:
        raise ContractError(
            f"a neighbour index ({int(nbhd.indices.max())}) is out of range for {features.shape[0]} items"
        )


def embed_all(
    weights: dict[str, np.ndarray],
    config: dict,
    features: np.ndarray,
    neighbourhoods: Neighbourhoods,
    *,
    batch_size: int = 4096,
    num_threads: int | None = None,
    progress: bool = False,
    stats: InferenceStats | None = None,
    last_projections: np.ndarray | None = None,
) -> np.ndarray:
    """Embeddings of every item, layer by layer (paper 3.4): each node projected once per layer.

    Per layer, one pass projects every node into an (N, m) table (the "map"); a second pass, per
    block of rows, pools each node's neighbours from that table and combines them with the
    node's own vector (:func:`_layer_passes`). Blocks run on ``num_threads`` threads, each block
    the same way whatever the thread count, so the result does not depend on it.

    Args:
      weights: arrays keyed as in ``contracts.py`` (``conv{k}/Q`` ...).
      config: ``model_config.json`` content (``num_layers``, ``hidden_dim``, ``output_dim``,
        ``pooling``, ``input_dim``).
      features: (N, F) float32 item features aligned with ``item_idx``.
      neighbourhoods: importance neighbourhoods of all N items (rows aligned with ``item_idx``).
      batch_size: rows per block; besides the (N, m) projections and two (N, d) layer buffers,
        each thread holds about ``batch_size * (F + 2m + d)`` floats of scratch.
      num_threads: worker threads (default: the CPUs available to this process); progress: a tqdm bar per pass.
      stats: optional :class:`InferenceStats` filled with projection counts and timings.
      last_projections: optional (N, m) float32 out-array for the last layer's projections (users pool them).

    Returns: (N, d) float32 L2-normalised embeddings.
    """
    from threadpoolctl import threadpool_limits

    check_inputs(weights, config, features, neighbourhoods)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    n_items, m, d = features.shape[0], config["hidden_dim"], config["output_dim"]
    stats = stats or InferenceStats()
    stats.threads = num_threads or len(os.sched_getaffinity(0))
    # allocated once (first-touch page faults cost a thin sgemm): (N, m) projections, two (N, d) layer buffers
    proj = _projection_table(last_projections, n_items, m)
    layer_out = (np.empty((n_items, d), dtype=np.float32), np.empty((n_items, d), dtype=np.float32))
    scratch = _Scratch(min(batch_size, n_items))
    h: np.ndarray | None = None  # (N, d) output of the previous layer; layer 1 reads the features
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(stats.threads) as pool:
        for layer in range(1, config["num_layers"] + 1):
            counts = np.zeros(n_items, dtype=np.int32)
            nxt = layer_out[layer % 2]
            passes = _layer_passes(weights, config, layer, features, h, neighbourhoods, proj, nxt, counts, scratch)
            _run_blocks(pool, passes[0], n_items, batch_size, stats, f"layer {layer} project", progress)
            _run_blocks(pool, passes[1], n_items, batch_size, stats, f"layer {layer} pool+combine", progress)
            stats.projection_counts.append(counts)
            fk = weights[f"conv{layer}/Q"].shape[0]  # F_k
            stats.dense_flops += 2.0 * n_items * (fk * m + (fk + m) * d)
            h = nxt
    stats.dense_flops += 2.0 * n_items * 2 * d * d
    return layer_out[config["num_layers"] % 2]  # the last layer's output


def _projection_table(out: np.ndarray | None, n_items: int, m: int) -> np.ndarray:
    """The (N, m) projections table: ``out`` (checked) when the caller keeps the last layer's."""
    if out is None:
        return np.empty((n_items, m), dtype=np.float32)
    if out.shape != (n_items, m) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"last_projections must be a C-contiguous float32 ({n_items}, {m}) array")
    return out


class _Scratch:
    """Each worker thread's (rows, width) float32 scratch buffers, reused across blocks."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.local = threading.local()

    def get(self, name: str, width: int) -> np.ndarray:
        buf = getattr(self.local, name, None)
        if buf is None or buf.shape[1] != width:
            buf = np.empty((self.rows, width), dtype=np.float32)
            setattr(self.local, name, buf)
        return buf


def _layer_passes(
    weights: dict[str, np.ndarray],
    config: dict,
    layer: int,
    features: np.ndarray,
    h: np.ndarray | None,
    neighbourhoods: Neighbourhoods,
    proj: np.ndarray,
    nxt: np.ndarray,
    counts: np.ndarray,
    scratch: _Scratch,
):
    """The two per-block functions ``(start, stop) -> (dense_s, pool_s)`` of one layer.

    ``project`` writes the block's rows of the (N, m) projections ``proj``; ``combine`` pools each
    node's neighbours from ``proj`` into a (B, F_k + m) buffer ``[h | pooled]`` and combines in
    one sgemm; bias, ReLU and normalisation run in place on each sgemm's output while it is still
    in cache. The last layer runs the head on each block and writes ``nxt``.

    Blocks are cache-sized and run with single-threaded BLAS and GIL-free kernels: the products
    are thin (K of 32 to 192), so a multi-threaded BLAS spends more time waking its pool than
    multiplying, and its spinning threads starve the pooling kernel.
    """
    q_mat, q_bias = weights[f"conv{layer}/Q"], weights[f"conv{layer}/q"]
    w_mat, w_bias = weights[f"conv{layer}/W"], weights[f"conv{layer}/w"]
    g1, g, g2 = weights["head/G1"], weights["head/g"], weights["head/G2"]
    fk, m, d = q_mat.shape[0], config["hidden_dim"], config["output_dim"]
    mode, last = POOLING_MODES[config["pooling"]], layer == config["num_layers"]
    nb_idx, nb_w = neighbourhoods.indices, neighbourhoods.weights
    rows_of = (lambda s, e: input_rows(features, weights, slice(s, e))) if h is None else (lambda s, e: h[s:e])
    clock = time.perf_counter

    def project_block(s: int, e: int) -> tuple[float, float]:
        t0 = clock()
        np.matmul(rows_of(s, e), q_mat, out=proj[s:e])  # (B, F_k) @ (F_k, m)
        _bias_relu_kernel(proj[s:e], q_bias, False)
        counts[s:e] += 1
        return clock() - t0, 0.0

    def combine_block(s: int, e: int) -> tuple[float, float]:
        b = e - s
        cat = scratch.get("cat", fk + m)[:b]  # (B, F_k + m) = [h | pooled]
        t0 = clock()
        idx, wts = np.asarray(nb_idx[s:e], dtype=np.int32), np.asarray(nb_w[s:e], dtype=np.float32)
        _pool_kernel(proj, idx, wts, mode, cat, fk)
        t1 = clock()
        cat[:, :fk] = rows_of(s, e)
        z = scratch.get("z", d)[:b] if last else nxt[s:e]  # (B, d)
        np.matmul(cat, w_mat, out=z)  # (B, F_k + m) @ (F_k + m, d)
        _bias_relu_kernel(z, w_bias, True)
        if last:  # Algorithm 2 line 16 and the output normalisation
            a = scratch.get("head", d)[:b]
            np.matmul(z, g1, out=a)
            _bias_relu_kernel(a, g, False)
            np.matmul(a, g2, out=nxt[s:e])
            _normalize_kernel(nxt[s:e])
        return clock() - t1, t1 - t0

    return project_block, combine_block


def _run_blocks(pool, fn, n_items: int, batch_size: int, stats: InferenceStats, desc: str, progress: bool) -> None:
    """Run ``fn(start, stop) -> (dense_s, pool_s)`` over row blocks on ``pool``; add up the times."""
    from pinsage_model.progress import progress_bar

    blocks = range(0, n_items, batch_size)
    futures = [pool.submit(fn, s, min(s + batch_size, n_items)) for s in blocks]
    for f in progress_bar(futures, desc=desc, disable=not progress, unit="block"):
        dense_s, pool_s = f.result()
        stats.dense_thread_seconds += dense_s
        stats.pool_thread_seconds += pool_s


def collection_embeddings(item_emb: np.ndarray, graph: CSRGraph, edge_weights: np.ndarray | None = None) -> np.ndarray:
    """Collection (board/user) embeddings by importance pooling of member items, L2-normalised.

    The graph stores membership only, so by default every member item weighs the same (uniform
    importance over a collection's distinct items). ``edge_weights`` (E,) aligned with
    ``graph.coll_indices`` (e.g. engagement counts or random-walk visit counts from the
    collection) are L1-normalised per collection and used instead. Empty collections get zeros.

    Returns:
      (C, d) float32.
    """
    import scipy.sparse as sp

    n_coll, n_items = graph.num_collections, graph.num_items
    if item_emb.shape[0] != n_items:
        raise ContractError(f"item embeddings have {item_emb.shape[0]} rows, the graph {n_items} items")
    if edge_weights is None:
        edge_weights = np.ones(graph.num_edges, dtype=np.float64)
    elif edge_weights.shape != (graph.num_edges,):
        raise ContractError(f"edge_weights must have shape ({graph.num_edges},), got {edge_weights.shape}")
    adj = sp.csr_matrix(
        (np.asarray(edge_weights, dtype=np.float64), np.asarray(graph.coll_indices), np.asarray(graph.coll_indptr)),
        shape=(n_coll, n_items),
    )
    sums = np.asarray(adj.sum(axis=1)).ravel()
    adj = (
        sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ adj
    )  # L1 per collection (scale-free after norm, kept for clarity)
    pooled = np.asarray(adj @ item_emb.astype(np.float64), dtype=np.float32)  # (C, d)
    return l2_normalize_f32(pooled)


def user_embeddings(
    proj: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    recency: np.ndarray,
    weights: dict[str, np.ndarray],
    config: dict,
    block: int = 65536,
) -> np.ndarray:
    """(C, d) float32 vectors of users as query nodes (a model trained with the user term).

    A user's neighbourhood is all of its items; it is convolved by the last layer (Algorithm 1)
    with ``user/self`` as its own representation and passed through the head, as in training
    (:meth:`pinsage_model.model.layers.PinSageModel.embed_with_users`): γ pools the items' rows of
    ``proj`` with importance ``exp(-recency / user_half_life)`` (uniform for ``mean``; ``max``
    takes the maximum). Unit vectors, comparable with the item embeddings.

    Args:
      proj: (N, m) the last layer's projections (``embed_all(..., last_projections=...)``).
      indptr, indices: CSR of each user's items ((C+1,), (E,)), e.g. ``graph.coll_*``.
      recency: (E,) how many of the user's items came later (0 = latest), aligned with ``indices``.
      weights, config: the model's arrays and ``model_config.json`` (with ``user_half_life``).
      block: users per block (bounds the (block, F_K + m) scratch).
    """
    import scipy.sparse as sp

    from pinsage_model.model.user_head import recency_weights

    if "user_half_life" not in config:
        raise ContractError("the model has no user nodes: it was trained without train.user_loss_weight")
    layer, pooling = config["num_layers"], config["pooling"]
    indptr, indices = np.asarray(indptr, np.int64), np.asarray(indices, np.int64)
    n_users, n_items = len(indptr) - 1, proj.shape[0]
    if pooling == "importance":
        alpha = recency_weights(recency, float(config["user_half_life"]))
    else:
        alpha = np.ones(len(indices), np.float64)
    adj = sp.csr_matrix((alpha.astype(np.float32), indices, indptr), shape=(n_users, n_items))
    own = np.asarray(weights["user/self"], np.float32)
    out = np.empty((n_users, config["output_dim"]), np.float32)
    for s in range(0, n_users, block):
        e = min(s + block, n_users)
        if pooling == "max":
            pooled = _max_pool_rows(proj, indptr[s : e + 1], indices)
        else:
            rows = adj[s:e]
            pooled = np.asarray(rows @ proj, np.float32)  # (b, m)
            pooled /= np.maximum(np.asarray(rows.sum(axis=1), np.float32), 1e-12)
        z = combine(np.broadcast_to(own, (e - s, len(own))), pooled, weights, layer)
        out[s:e] = head(z, weights)
    return out


def _max_pool_rows(proj: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(len(indptr) - 1, m) elementwise max of each CSR row's ``proj`` rows (0 for an empty row)."""
    lengths = np.diff(indptr)
    out = np.zeros((len(lengths), proj.shape[1]), np.float32)
    full = lengths > 0
    if full.any():
        rows = proj[indices[indptr[0] : indptr[-1]]]  # (E_block, m)
        out[full] = np.maximum.reduceat(rows, (indptr[:-1] - indptr[0])[full], axis=0)
    return out
