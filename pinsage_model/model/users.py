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
"""

from __future__ import annotations

from dataclasses import dataclass

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
