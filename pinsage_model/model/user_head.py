"""The user head: a learned user (collection) vector for homefeed, over frozen item embeddings.

A user's vector is PinSage's convolution applied to the user as a node whose neighbours are the
user's items (paper 3.1, Algorithm 1, with importance = recency):

    p   = normalise(sum_j a_j z_j / sum_j a_j),  a_j = exp(-age_j / h)   (uniform when h = 0)
    u   = p + relu(p W1 + b1) W2
    score(c) = (u + w_u) . z_c

``age_j`` counts the user's items engaged after item j (``graph/collection_recency.npy``), z the
item embeddings, ``w_u`` the user query shift (a per-candidate prior, as the item model's query
shift). W2 starts at zero, so an untrained head is the mean pooling it replaces. ``u`` is left
unnormalised: its length sets how much the shared prior ``w_u`` weighs for this user, which
measured better on ml-latest-small's validation users (recall@20 0.176 vs 0.170 normalised).

Training asks what a deployment asks: from each training user's earlier items, predict the later
ones (softmax over the candidates, the input items masked as evaluation masks training items).
Data without event times has no earlier and later (``collection_recency.npy`` is all 0): the
input is then a random subset of the user's items, equally weighted, and the targets the rest.
Weights live in ``model/user_head.npz`` (plain arrays): ``W1`` (d, H), ``b1`` (H,), ``W2`` (H, d),
``shift`` (d,), ``recency_half_life`` ().
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pinsage_model.evaluation.metrics import l2_normalise

if TYPE_CHECKING:
    from pinsage_model.config import UserHeadConfig
    from pinsage_model.graph.csr import CSRGraph

log = logging.getLogger("pinsage")

HEAD_FILE = "user_head.npz"
HEAD_KEYS = ("W1", "b1", "W2", "shift", "recency_half_life")


def recency_weights(recency: np.ndarray, half_life: float) -> np.ndarray:
    """(E,) float64 importance ``exp(-age / h)`` of each edge; all ones when ``h`` is 0."""
    if half_life <= 0:
        return np.ones(len(recency), np.float64)
    return np.exp(-np.asarray(recency, np.float64) / half_life)


def pooled(item_emb: np.ndarray, graph: "CSRGraph", weights: np.ndarray) -> np.ndarray:
    """(C, d) float32 ``p``: each collection's weighted mean item embedding, L2-normalised (zero if empty)."""
    import scipy.sparse as sp

    adj = sp.csr_matrix(
        (weights, np.asarray(graph.coll_indices), np.asarray(graph.coll_indptr)),
        shape=(graph.num_collections, graph.num_items),
    )
    total = np.asarray(adj.sum(axis=1)).ravel()
    p = (adj @ np.asarray(item_emb, np.float64)) / np.maximum(total, 1e-12)[:, None]
    return l2_normalise(p).astype(np.float32)


def apply_head(p: np.ndarray, head: dict[str, np.ndarray]) -> np.ndarray:
    """(B, d) float32 ``u = p + relu(p W1 + b1) W2`` for (B, d) pooled vectors (not renormalised)."""
    hidden = np.maximum(p @ head["W1"] + head["b1"], 0.0)  # (B, H)
    return (p + hidden @ head["W2"]).astype(np.float32)


def user_vectors(
    item_emb: np.ndarray, graph: "CSRGraph", recency: np.ndarray, head: dict[str, np.ndarray]
) -> np.ndarray:
    """(C, d) float32 user vectors of every collection of ``graph`` (add ``head["shift"]`` to query)."""
    p = pooled(item_emb, graph, recency_weights(recency, float(head["recency_half_life"])))
    return apply_head(p, head)


def save_head(head: dict[str, np.ndarray], model_dir: str | Path) -> None:
    """Write ``user_head.npz`` atomically (arrays only, no pickle)."""
    from pinsage_model.io import atomic_save_npz

    atomic_save_npz(Path(model_dir) / HEAD_FILE, **{k: np.asarray(head[k], np.float32) for k in HEAD_KEYS})


def load_head(model_dir: str | Path) -> dict[str, np.ndarray] | None:
    """The head of a model folder, or None when the model has none."""
    from pinsage_model.data.contracts import ContractError

    path = Path(model_dir) / HEAD_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in HEAD_KEYS if k not in z.files]
        if missing:
            raise ContractError(f"{path}: missing arrays {missing}; retrain the model stage")
        return {k: z[k] for k in HEAD_KEYS}


def time_ordered(graph: "CSRGraph", recency: np.ndarray) -> np.ndarray:
    """(E,) item indices of each collection's row, oldest first (rows keep ``coll_indptr``)."""
    coll_of_edge = np.repeat(np.arange(graph.num_collections), np.diff(np.asarray(graph.coll_indptr)))
    order = np.lexsort((-np.asarray(recency, np.int64), coll_of_edge))
    return np.asarray(graph.coll_indices)[order]


def train_head(
    item_emb: np.ndarray,
    graph: "CSRGraph",
    recency: np.ndarray,
    users: np.ndarray,
    cfg: "UserHeadConfig",
    init_shift: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict]:
    """Fit the head on ``users``' item sequences; returns (head arrays, report).

    Args:
      item_emb: (N, d) L2-normalised item embeddings (frozen).
      graph: the graph whose collection rows are the users' items.
      recency: (E,) ``collection_recency.npy`` aligned with ``graph.coll_indices``.
      users: collection indices to learn from (those with at least two items are used).
      cfg: the ``user_head`` section.
      init_shift: (d,) starting user shift (the item model's query shift), zero if None.
    """
    import tensorflow as tf

    from pinsage_model.progress import progress_bar

    n, d = item_emb.shape
    indptr = np.asarray(graph.coll_indptr, np.int64)
    seq = time_ordered(graph, recency)  # (E,)
    ordered = bool(np.any(recency))  # all 0: no event times, so no "later" to predict
    users = np.asarray(users, np.int64)
    users = users[np.diff(indptr)[users] >= 2]
    if len(users) == 0:
        raise ValueError("user head: no training user has two or more items")
    rng = np.random.default_rng(cfg.seed)
    tf.random.set_seed(cfg.seed)
    z = tf.constant(np.vstack([item_emb, np.zeros((1, d))]).astype(np.float32))  # (N+1, d): row N pads
    w1 = tf.Variable(rng.normal(0, 1 / np.sqrt(d), (d, cfg.hidden_dim)).astype(np.float32))
    b1 = tf.Variable(np.zeros(cfg.hidden_dim, np.float32))
    w2 = tf.Variable(np.zeros((cfg.hidden_dim, d), np.float32))
    shift = tf.Variable(np.zeros(d, np.float32) if init_shift is None else np.asarray(init_shift, np.float32))
    scale = tf.Variable(10.0)  # softmax temperature on inner products of near-unit vectors
    step = _train_step(z, w1, b1, w2, shift, scale, tf.keras.optimizers.Adam(cfg.lr))
    losses = []
    for _ in progress_bar(range(cfg.steps), desc="user head", disable=not progress, leave=False):
        batch = _head_batch(rng, users, indptr, seq, n, cfg, ordered)
        losses.append(float(step(*(tf.constant(x) for x in batch))))
    head = {
        "W1": w1.numpy(),
        "b1": b1.numpy(),
        "W2": w2.numpy(),
        "shift": shift.numpy(),
        "recency_half_life": np.float32(cfg.recency_half_life),
    }
    report = _head_report(len(users), cfg.steps, losses)
    report["objective"] = (
        "earlier items -> later items"
        if ordered
        else "random input/target subsets of each user's items: the input has no timestamps"
    )
    return head, report


def _train_step(z, w1, b1, w2, shift, scale, opt):
    """The compiled training step: the softmax over candidates of each user's later items, from
    the head's vector of their earlier items; returns the batch loss."""
    import tensorflow as tf

    params = [w1, b1, w2, shift, scale]

    @tf.function(reduce_retracing=True)
    def step(inp, a, cand, targets, seen):
        # inp, a: (B, L) input items (N = pad) and weights; cand: (K,); targets, seen: (P, 2) and
        # (S, 2) [user row, candidate position] pairs: the later items and the masked input items.
        with tf.GradientTape() as tape:
            p = tf.reduce_sum(a[:, :, None] * tf.gather(z, inp), 1) / tf.maximum(
                tf.reduce_sum(a, 1, keepdims=True), 1e-12
            )
            p = tf.math.l2_normalize(p, 1)
            u = p + tf.nn.relu(p @ w1 + b1) @ w2 + shift  # (B, d)
            logits = scale * tf.matmul(u, tf.gather(z, cand), transpose_b=True)  # (B, K)
            logits = tf.tensor_scatter_nd_update(logits, seen, tf.fill(tf.shape(seen)[:1], -1e9))
            b = tf.shape(logits)[0]
            hit = tf.gather_nd(tf.nn.log_softmax(logits), targets)  # (P,)
            total = tf.math.unsorted_segment_sum(hit, targets[:, 0], b)  # (B,)
            count = tf.math.unsorted_segment_sum(tf.ones_like(hit), targets[:, 0], b)  # (B,)
            loss = -tf.reduce_mean(total / count)
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    return step


def _head_batch(
    rng: np.random.Generator,
    users: np.ndarray,
    indptr: np.ndarray,
    seq: np.ndarray,
    n: int,
    cfg: "UserHeadConfig",
    ordered: bool = True,
) -> tuple[np.ndarray, ...]:
    """One batch: each sampled user's sequence cut at a random point into earlier items (input,
    recency-weighted) and later items (targets); unless ``ordered``, the user's items are shuffled
    first and weigh alike, so input and targets are random complementary subsets. Returns (inp
    (B, L) with pad ``n``, weights (B, L), candidates (K,), target pairs (P, 2), seen pairs
    (S, 2)); a pair is [row, candidate position], unique per batch. Built with array operations:
    the per-user loops and the dense (B, N) target and mask matrices were most of the head's time."""
    batch = rng.choice(users, cfg.batch_size)
    lens = np.diff(indptr)[batch]
    cuts = np.clip(
        np.floor(lens * rng.uniform(cfg.experimental.min_input_fraction, 1.0, len(batch))).astype(np.int64), 1, lens - 1
    )
    rows = np.repeat(np.arange(len(batch)), lens)  # (E_b,) the batch row of every item of the sampled users
    j = np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)  # position inside the user's sequence
    items = seq[np.repeat(indptr[batch], lens) + j]
    if not ordered:  # a random permutation inside each user's block: rows stay grouped
        items = items[np.lexsort((rng.random(len(items)), rows))]
    is_input = j < cuts[rows]
    width = int(cuts.max())
    inp = np.full((len(batch), width), n, np.int64)
    a = np.zeros((len(batch), width), np.float32)
    r_in, j_in = rows[is_input], j[is_input]
    inp[r_in, j_in] = items[is_input]
    age = (cuts[r_in] - 1 - j_in).astype(np.float64)
    a[r_in, j_in] = np.exp(-age / cfg.recency_half_life) if cfg.recency_half_life > 0 and ordered else 1.0
    out_items = items[~is_input]
    if cfg.experimental.negatives and cfg.experimental.negatives < n:
        cand = np.unique(np.concatenate([rng.choice(n, cfg.experimental.negatives, replace=False), out_items]))
    else:
        cand = np.arange(n)
    pos_of = np.full(n, -1, np.int64)
    pos_of[cand] = np.arange(len(cand))
    targets = _unique_pairs(rows[~is_input], pos_of[out_items], len(cand))
    seen_pos = pos_of[items[is_input]]
    seen = _unique_pairs(r_in[seen_pos >= 0], seen_pos[seen_pos >= 0], len(cand))
    return inp, a, cand, targets, seen


def _unique_pairs(rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    """(P, 2) int64 distinct [row, col] pairs, sorted."""
    key = np.unique(rows.astype(np.int64) * width + cols)
    return np.stack([key // width, key % width], axis=1)


def _head_report(num_users: int, steps: int, losses: list[float]) -> dict:
    """Users, steps and the mean loss of the first and last tenth of the steps (also logged)."""
    tail = max(1, len(losses) // 10)
    report = {
        "users": int(num_users),
        "steps": steps,
        "loss_first": round(float(np.mean(losses[:tail])), 6),
        "loss_last": round(float(np.mean(losses[-tail:])), 6),
    }
    log.info(
        "user head: %d users, %d steps, loss %.4f -> %.4f",
        num_users,
        steps,
        report["loss_first"],
        report["loss_last"],
    )
    return report
