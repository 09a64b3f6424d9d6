"""MINIBATCH re-indexing (paper Algorithm 2 and "producer-consumer minibatch construction").

From a batch of node ids M this builds S^(K) = M and S^(k-1) = S^(k) ∪ N(S^(k)) through the
importance neighbourhoods, then re-indexes the sub-graph into compact local ids so the model
only sees small tensors:

* S^(K) ⊂ S^(K-1) ⊂ ... ⊂ S^(0) are stored as *prefixes* of one array of global ids (new nodes
  are appended in order of first appearance), so node ``i`` of S^(k) is also row ``i`` of S^(k-1);
* per layer k = 1..K an (n_k, T) int32 matrix of neighbour positions inside S^(k-1) (-1 padding)
  and the (n_k, T) float32 importance weights;
* the compact (n_0, F) feature matrix of S^(0), or, for sparse features
  (:class:`SparseFeatures`: at most :data:`SPARSE_MAX_DENSITY` of the entries non-zero, such as
  hashed title tokens and multi-hot genres), the non-zero entries of its rows.

The numba kernel keeps a global->local scratch map of size N per producer thread and resets only
the entries it touched, so a batch costs O(n_0 · T), not O(N).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from pinsage_model.graph.csr import Neighbourhoods


@numba.njit(nogil=True, cache=True, inline="always")  # inlined into the kernels below: no call cost
def _slot(v, scratch, order, count):  # pragma: no cover - compiled
    """Local position of node ``v``, registered at ``count`` when new; returns (position, count)."""
    p = scratch[v]
    if p < 0:
        p = count
        scratch[v] = p
        order[count] = v
        count += 1
    return p, count


@numba.njit(nogil=True, cache=True)
def _register(nodes, scratch, order, count=0):  # pragma: no cover - compiled
    """Unique ``nodes`` in first-appearance order into ``order`` after ``count``; ``scratch[v]`` = position."""
    pos = np.empty(len(nodes), dtype=np.int32)
    for i in range(len(nodes)):
        p, count = _slot(nodes[i], scratch, order, count)
        pos[i] = p
    return pos, count


@numba.njit(nogil=True, cache=True)
def _expand(order, n_k, count, nbr, scratch):  # pragma: no cover - compiled
    """Local neighbour matrix of ``order[:n_k]``; appends unseen neighbours after ``count``."""
    T = nbr.shape[1]
    local = np.empty((n_k, T), dtype=np.int32)
    for i in range(n_k):
        u = order[i]
        for t in range(T):
            v = nbr[u, t]
            if v < 0:
                local[i, t] = -1
                continue
            p, count = _slot(v, scratch, order, count)
            local[i, t] = p
    return local, count


@numba.njit(nogil=True, cache=True)
def _reset(order, count, scratch):  # pragma: no cover - compiled
    for i in range(count):
        scratch[order[i]] = -1


_scratch = threading.local()


def _scratch_map(n: int) -> np.ndarray:
    """This thread's (N,) global->local map, all -1 between calls."""
    s = getattr(_scratch, "map", None)
    if s is None or len(s) != n:
        s = np.full(n, -1, dtype=np.int32)
        _scratch.map = s
    return s


# Features with at most this share of non-zero entries are fed to the model as sparse rows: the
# first layer's products with them then cost O(nnz) instead of O(n_0 F) (ml-latest-small's 468
# columns hold 8.7 non-zeros per item, 1.9%), and the producer copies nnz values, not n_0 F.
SPARSE_MAX_DENSITY = 0.1


@dataclass(frozen=True)
class SparseFeatures:
    """(N, F) constant input features as CSR rows: ``indptr`` (N + 1,) int64, ``indices`` (nnz,)
    int32 columns (ascending within a row), ``values`` (nnz,) float32."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def from_dense(cls, features: np.ndarray) -> "SparseFeatures":
        rows, cols = np.nonzero(features)  # row-major, so columns ascend within a row
        indptr = np.zeros(features.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=features.shape[0]), out=indptr[1:])
        values = np.asarray(features[rows, cols], dtype=np.float32)
        return cls(indptr, cols.astype(np.int32), values, (int(features.shape[0]), int(features.shape[1])))


def sparse_if_sparse(features: np.ndarray) -> "np.ndarray | SparseFeatures":
    """``features`` as :class:`SparseFeatures` when at most :data:`SPARSE_MAX_DENSITY` of its
    entries are non-zero, else unchanged."""
    if features.size == 0 or np.count_nonzero(features) > SPARSE_MAX_DENSITY * features.size:
        return features
    return SparseFeatures.from_dense(features)


@dataclass(frozen=True)
class SparseRows:
    """Rows of :class:`SparseFeatures` in local order: ``indices`` (nnz, 2) int64 (local row,
    column) in row-major order, ``values`` (nnz,) float32; the COO form a ``tf.SparseTensor`` takes."""

    indices: np.ndarray
    values: np.ndarray


@numba.njit(nogil=True, cache=True)
def _gather_sparse(indptr, cols, vals, rows):  # pragma: no cover - compiled
    nnz = 0
    for i in range(len(rows)):
        nnz += indptr[rows[i] + 1] - indptr[rows[i]]
    coo = np.empty((nnz, 2), dtype=np.int64)
    out = np.empty(nnz, dtype=np.float32)
    p = 0
    for i in range(len(rows)):
        for j in range(indptr[rows[i]], indptr[rows[i] + 1]):
            coo[p, 0] = i
            coo[p, 1] = cols[j]
            out[p] = vals[j]
            p += 1
    return coo, out


def gather_rows(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), F) float32 copy of ``features[rows]``.

    A memory-mapped matrix is read in sorted row order (sequential reads), then permuted back;
    an in-memory one is gathered directly (the sort cost a quarter of the producer's time at the
    paper's settings, 650k rows per batch).
    """
    if not isinstance(features, np.memmap):
        return np.asarray(np.take(features, rows, axis=0), dtype=np.float32)
    order_sorted = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), features.shape[1]), dtype=np.float32)
    out[order_sorted] = features[rows[order_sorted]]
    return out


@dataclass(frozen=True)
class Minibatch:
    """Compact sub-graph of one minibatch (what the model sees).

    Attributes:
      nodes: (n_0,) int32 global ids of S^(0); S^(k) is ``nodes[:sizes[k]]``.
      sizes: n_0, ..., n_K (n_0 >= ... >= n_K).
      index: K arrays, ``index[k-1]`` (n_k, T) int32 positions inside S^(k-1), -1 = padding.
      weight: K arrays, ``weight[k-1]`` (n_k, T) float32 importance weights (0 at padding).
      features: (n_0, F) float32 features of S^(0), or their non-zero entries
        (:class:`SparseRows`) when the features are :class:`SparseFeatures`.
      positions: (len(batch),) int32 row of each requested node inside S^(K) (duplicates share).
      context_positions: (len(context),) int32 row of each context node inside S^(K-1).
    """

    nodes: np.ndarray
    sizes: tuple[int, ...]
    index: tuple[np.ndarray, ...]
    weight: tuple[np.ndarray, ...]
    features: np.ndarray | SparseRows
    positions: np.ndarray
    context_positions: np.ndarray | None = None

    @property
    def num_layers(self) -> int:
        return len(self.index)

    def mask(self, k: int) -> np.ndarray:
        """(n_k, T) bool: which neighbour slots of layer k are real."""
        return self.index[k - 1] >= 0

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The dict :class:`pinsage_model.model.layers.PinSageModel` reads."""
        out: dict[str, np.ndarray] = {"node_ids": self.nodes}
        if isinstance(self.features, SparseRows):
            out["feature_indices"], out["feature_values"] = self.features.indices, self.features.values
        else:
            out["features"] = self.features
        for k in range(1, self.num_layers + 1):
            out[f"index_{k}"] = self.index[k - 1]
            out[f"weight_{k}"] = self.weight[k - 1]
        return out


def _sample_layers(nodes: np.ndarray, extra: np.ndarray, has_context: bool, nbr: np.ndarray, order: np.ndarray, K: int):
    """Algorithm 2, lines 1-7, into ``order``: S^(K) = ``nodes``, ``extra`` joined to S^(K-1)
    (when ``has_context``). Returns (positions of ``nodes``, positions of ``extra`` or None,
    sizes n_0..n_K, the K local neighbour matrices, layer 1's first)."""
    scratch = _scratch_map(nbr.shape[0])
    count = 0
    context_positions = None
    try:
        positions, count = _register(nodes, scratch, order)
        sizes = [count]
        index: list[np.ndarray] = []
        for layer in range(K):
            local, count = _expand(order, sizes[-1], count, nbr, scratch)
            if layer == 0 and has_context:  # count is now |S^(K-1)| so far
                context_positions, count = _register(extra, scratch, order, count)
            index.append(local)
            sizes.append(count)
    finally:
        _reset(order, count, scratch)
    sizes.reverse()  # n_0 ... n_K
    index.reverse()  # index[0] serves layer 1: nodes S^(1), positions in S^(0)
    return positions, context_positions, tuple(sizes), tuple(index)


def build_minibatch(
    nodes: np.ndarray,
    neighbourhoods: Neighbourhoods,
    features: np.ndarray | SparseFeatures,
    num_layers: int,
    context: np.ndarray | None = None,
) -> Minibatch:
    """Algorithm 2, lines 1-7, plus re-indexing and the compact feature gather.

    Args:
      nodes: (B,) global item ids of the minibatch M (duplicates allowed).
      neighbourhoods: (N, T) importance neighbourhoods of every item.
      features: (N, F) input features (may be memory-mapped), or :class:`SparseFeatures`.
      num_layers: K.
      context: optional (C,) item ids needed at layer K-1 only (the neighbours of users, who are
        convolved by the last layer): added to S^(K-1) after N(S^(K)), so they get the
        representations that layer reads without the cost of their own layer-K neighbourhood.

    Returns:
      The compact :class:`Minibatch`.
    """
    nbr = neighbourhoods.indices
    n_items = nbr.shape[0]
    nodes = np.ascontiguousarray(nodes, dtype=np.int32)
    if len(nodes) and (nodes.min() < 0 or nodes.max() >= n_items):
        raise ValueError(f"minibatch node ids must lie in [0, {n_items}); got {nodes.min()}..{nodes.max()}")
    T = nbr.shape[1]
    extra = np.zeros(0, np.int32) if context is None else np.ascontiguousarray(context, dtype=np.int32)
    if len(extra) and (extra.min() < 0 or extra.max() >= n_items):
        raise ValueError(f"context node ids must lie in [0, {n_items}); got {extra.min()}..{extra.max()}")
    # Upper bound of |S^(0)|: every node adds at most T new ones per layer.
    cap = min(n_items, (len(nodes) * (T + 1) + len(extra)) * (T + 1) ** (num_layers - 1))
    order = np.empty(cap, dtype=np.int32)
    positions, context_positions, sizes, index = _sample_layers(
        nodes, extra, context is not None, nbr, order, K=num_layers
    )
    all_nodes = order[: sizes[0]].copy()
    weights = tuple(
        np.asarray(neighbourhoods.weights[all_nodes[: sizes[k]]], dtype=np.float32) for k in range(1, num_layers + 1)
    )
    feats: np.ndarray | SparseRows
    if isinstance(features, SparseFeatures):
        feats = SparseRows(*_gather_sparse(features.indptr, features.indices, features.values, all_nodes))
    else:
        feats = gather_rows(features, all_nodes)  # (n_0, F)
    return Minibatch(
        nodes=all_nodes,
        sizes=sizes,
        index=index,
        weight=weights,
        features=feats,
        positions=positions,
        context_positions=context_positions,
    )
