"""Users as query nodes in PinSage's own training (``train.user_loss_weight`` > 0).

A user (collection) is a node whose neighbourhood is its training items (paper 3.1: the graph's
nodes are items and collections). Each training step draws a batch of training users; each
user's items are cut into an input and a target:

* data with event times (``graph/collection_recency.npy`` not all 0): the items oldest first,
  a cut ``c`` uniform in [1, L-1]; the input is the ``c`` earlier items, the target the next one
  (what a deployment asks: from what a user did, the next engagement); the importance of input
  item j is ``exp(-age_j / h)``, age_j = how many input items came after it;
* data without times: the items in a random order, the input the first ``c``, the target item
  ``c`` (a uniformly random one of the user's items), every input item weighing the same.

At most ``neighbours`` input items are kept, the most important (latest) ones; the model
convolves the user over their layer-(K-1) representations
(:meth:`pinsage_model.model.layers.PinSageModel.embed_with_users`), and the loss scores the
target with the item loss's negatives and log-Q correction; the user's other training items are
not negatives for it (evaluation masks them too).

Everything here is array code over the batch's users: no loop over users or items.

Serving a user of such a model needs the last layer's projections of the items and the few
weights that convolve a user (``user_nodes.npz``, :func:`user_nodes_arrays`), which the
embeddings stage writes and the index bundles: :func:`recent_user_vector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinsage_model.graph.csr import CSRGraph, csr_rows


@dataclass(frozen=True)
class UserRows:
    """The training users' items: ``indptr`` (U+1,) int64, ``items`` (E,) int32, each user's
    items oldest first when ``ordered`` (else in graph order); only users with two or more items."""

    indptr: np.ndarray
    items: np.ndarray
    ordered: bool

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_graph(cls, graph: CSRGraph, recency: np.ndarray, users: np.ndarray) -> "UserRows":
        """The rows of ``users`` (collection ids of ``graph``) with at least two items.

        Args:
          graph: the graph whose collection rows are the users' training items (``graph.npz``).
          recency: (E,) ``collection_recency.npy`` aligned with ``graph.coll_indices``.
          users: collection ids to train on (the training graph's collections).
        """
        from pinsage_model.model.user_head import time_ordered

        indptr = np.asarray(graph.coll_indptr, np.int64)
        users = np.asarray(users, np.int64)
        users = users[np.diff(indptr)[users] >= 2]
        seq = time_ordered(graph, recency)  # (E,) oldest first within each row
        lengths = np.diff(indptr)[users]
        ptr = np.zeros(len(users) + 1, np.int64)
        np.cumsum(lengths, out=ptr[1:])
        return cls(ptr, csr_rows(indptr, seq, users)[1].astype(np.int32), bool(np.any(recency)))

    def target_weights(self) -> np.ndarray:
        """(E,) probability that each row entry is its user's target, given the user: 1/(L-1)
        for all but the oldest item when ordered (the cut is uniform in [1, L-1]), else 1/L."""
        lengths = np.diff(self.indptr)
        if not self.ordered:
            return np.repeat(1.0 / lengths, lengths)
        w = np.repeat(1.0 / (lengths - 1), lengths)
        w[self.indptr[:-1]] = 0.0  # the oldest item is never a target
        return w


@dataclass(frozen=True)
class UserBatch:
    """One step's users: ``users`` (B,) row numbers of :class:`UserRows`, ``targets`` (B,) item
    ids, ``index`` (B, T_u) int32 input item ids (-1 = padding), ``weight`` (B, T_u) float32
    importance (0 at padding)."""

    users: np.ndarray
    targets: np.ndarray
    index: np.ndarray
    weight: np.ndarray


def sample_users(rng: np.random.Generator, rows: UserRows, batch: int, neighbours: int, half_life: float) -> UserBatch:
    """Draw ``batch`` users uniformly (with replacement), cut each into input and target.

    Args:
      rng: the step's generator.
      rows: the training users.
      batch: B.
      neighbours: T_u, the most input items kept per user (the latest ones).
      half_life: h of the importance ``exp(-age / h)`` (0 = uniform); unused without times.
    """
    users = rng.integers(0, rows.num_users, batch)  # (B,)
    start, lengths = rows.indptr[users], np.diff(rows.indptr)[users]  # (B,)
    cut = 1 + np.floor(rng.random(batch) * (lengths - 1)).astype(np.int64)  # (B,) in [1, L-1]
    seq, base = rows.items, start  # item j of batch row r is seq[base[r] + j]
    if not rows.ordered:
        # a random order of each user's items: sort the batch users' entries by (row, random key)
        r_all = np.repeat(np.arange(batch), lengths)
        entries = rows.items[np.repeat(start, lengths) + _offsets(lengths)]
        seq, base = entries[np.lexsort((rng.random(len(entries)), r_all))], np.cumsum(lengths) - lengths
    width = int(min(neighbours, cut.max()))
    kept = np.minimum(cut, neighbours)  # (B,) input items kept: the latest ones before the cut
    r = np.repeat(np.arange(batch), kept)
    slot = _offsets(kept)  # 0 = the latest input item
    index = np.full((batch, width), -1, np.int32)
    weight = np.zeros((batch, width), np.float32)
    index[r, slot] = seq[base[r] + cut[r] - 1 - slot]
    weight[r, slot] = np.exp(-slot / half_life) if rows.ordered and half_life > 0 else 1.0
    return UserBatch(users, seq[base + cut].astype(np.int32), index, weight)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """0..L_i-1 for each block of ``lengths``, concatenated."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def seen(rows: UserRows, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(B, K) bool: whether candidate k is one of user b's training items (not a negative for it)."""
    n = int(max(rows.items.max(initial=0), candidates.max(initial=0))) + 1
    block, items = csr_rows(rows.indptr, rows.items, users)
    keys = np.sort(block.astype(np.int64) * n + items)  # (E_b,) the batch users' (row, item)
    query = np.arange(len(users), dtype=np.int64)[:, None] * n + np.asarray(candidates, np.int64)[None, :]
    at = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return keys[at] == query if len(keys) else np.zeros(query.shape, bool)


# Serving: what a homefeed query needs to convolve a user over its recent items, the way the
# embeddings stage convolves every collection (one function, layerwise.user_embeddings).
USER_NODES_FILE = "user_nodes.npz"


def user_nodes_arrays(projections: np.ndarray, weights: dict[str, np.ndarray], config: dict) -> dict[str, np.ndarray]:
    """The content of ``user_nodes.npz``: ``projections`` (N, m) float32 (rows by item index: the
    last layer's ``ReLU(h^(K-1) Q_K + q_K)``), the last layer's ``W``/``w``, ``user/self``, the
    head, and the scalars ``num_layers``, ``pooling`` (its code in ``layerwise.POOLING_MODES``) and
    ``user_half_life``."""
    from pinsage_model.inference.layerwise import POOLING_MODES

    k = int(config["num_layers"])
    keys = (f"conv{k}/W", f"conv{k}/w", "user/self", "head/G1", "head/g", "head/G2")
    return {
        "projections": np.asarray(projections, np.float32),
        **{key: np.asarray(weights[key], np.float32) for key in keys},
        "num_layers": np.array(k, np.int64),
        "pooling": np.array(POOLING_MODES[config["pooling"]], np.int64),
        "user_half_life": np.array(config["user_half_life"], np.float64),
    }


def save_user_nodes(arrays: dict[str, np.ndarray], folder: str | Path) -> None:
    """Write ``user_nodes.npz`` (:func:`user_nodes_arrays`) atomically, arrays only."""
    from pinsage_model.io import atomic_save_npz

    atomic_save_npz(Path(folder) / USER_NODES_FILE, **arrays)


def load_user_nodes(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The ``user_nodes.npz`` of a folder, or None when its model has no user nodes."""
    path = Path(folder) / USER_NODES_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def recent_user_vector(arrays: dict[str, np.ndarray], item_idx: np.ndarray) -> np.ndarray:
    """(d,) float32 vector of a user whose items are ``item_idx`` (item indices), oldest first:
    the convolution the embeddings stage applies to a collection, recency by position."""
    from pinsage_model.inference.layerwise import POOLING_MODES, user_embeddings

    k = int(arrays["num_layers"])
    config = {
        "num_layers": k,
        "pooling": {code: name for name, code in POOLING_MODES.items()}[int(arrays["pooling"])],
        "user_half_life": float(arrays["user_half_life"]),
        "output_dim": int(arrays["head/G2"].shape[1]),
    }
    n = len(item_idx)
    proj = np.ascontiguousarray(arrays["projections"][np.asarray(item_idx, np.int64)])  # (L, m)
    recency = np.arange(n - 1, -1, -1)  # the last item is the latest
    return user_embeddings(proj, np.array([0, n]), np.arange(n), recency, arrays, config)[0]
