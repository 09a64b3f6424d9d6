"""Training losses (paper 3.3) and the hard-negative curriculum.

Both losses return one value per training example, so a multi-replica step can sum the per-replica
shares and divide by the *global* batch size: the result equals the one-device loss.
"""

from __future__ import annotations

import tensorflow as tf

MARGIN_REDUCTIONS = ("mean", "mean_per_source", "sum")


def hard_negatives_for_epoch(epoch: int, cap: int, enabled: bool = True) -> int:
    """Curriculum (paper 3.3): epoch 1 uses none, epoch n uses n - 1 per example, at most ``cap``.

    Args:
      epoch: 1-based epoch number.
      cap: the most hard negatives per example (paper: 6).
      enabled: False turns hard negatives off for every epoch (the ``mean-pooling`` ablation).
    """
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    if not enabled:
        return 0
    return max(0, min(epoch - 1, cap))


def _scores(q, pos, neg, hard, hard_mask):
    """Positive (b,), shared-negative (b, n) and hard-negative (b, h) inner products."""
    s_pos = tf.reduce_sum(q * pos, axis=1)  # (b,)
    s_neg = tf.matmul(q, neg, transpose_b=True)  # (b, n)
    if hard is None:
        return s_pos, s_neg, None, None
    s_hard = tf.einsum("bd,bhd->bh", q, hard)  # (b, h)
    return s_pos, s_neg, s_hard, tf.cast(hard_mask, q.dtype)


def max_margin_loss(q, pos, neg, hard=None, hard_mask=None, *, margin: float, reduction: str = "mean") -> tf.Tensor:
    """Eq. 1 per example: ``max(0, z_q·z_n − z_q·z_i + Δ)`` reduced over the example's negatives.

    The negatives of example j are the minibatch's shared negatives plus j's own valid hard
    negatives (the curriculum adds them "to the set of negative items for each item").

    Args:
      q: (b, d) query embeddings.
      pos: (b, d) positive embeddings.
      neg: (n, d) shared negatives of the minibatch.
      hard: optional (b, h, d) hard negatives of each example.
      hard_mask: (b, h) 1 where the hard negative exists (the PPR band may be short).
      margin: Δ.
      reduction: ``mean`` over all of an example's negatives (the paper); ``mean_per_source``,
        the mean over shared negatives plus the mean over hard negatives, so a handful of hard
        negatives is not drowned by hundreds of shared ones (with ``mean`` 6 hard among 506
        carry about 1% of the loss); ``sum``.

    Returns:
      (b,) losses.
    """
    if reduction not in MARGIN_REDUCTIONS:
        raise ValueError(f"reduction must be one of {MARGIN_REDUCTIONS}, got {reduction!r}")
    s_pos, s_neg, s_hard, mask = _scores(q, pos, neg, hard, hard_mask)
    shared = tf.reduce_sum(tf.nn.relu(s_neg - s_pos[:, None] + margin), axis=1)  # (b,)
    n_shared = tf.cast(tf.shape(neg)[0], q.dtype) + tf.zeros_like(s_pos)
    hard_total = tf.zeros_like(s_pos)
    n_hard = tf.zeros_like(s_pos)
    if s_hard is not None:
        hard_total = tf.reduce_sum(tf.nn.relu(s_hard - s_pos[:, None] + margin) * mask, axis=1)
        n_hard = tf.reduce_sum(mask, axis=1)
    if reduction == "sum":
        return shared + hard_total
    if reduction == "mean_per_source":
        return shared / tf.maximum(n_shared, 1.0) + hard_total / tf.maximum(n_hard, 1.0)
    return (shared + hard_total) / tf.maximum(n_shared + n_hard, 1.0)


def xent_loss(
    q,
    pos,
    neg,
    hard=None,
    hard_mask=None,
    *,
    temperature: float,
    pos_logq=None,
    neg_logq=None,
    in_batch=False,
    q_ids=None,
    pos_ids=None,
    neg_ids=None,
    drop_neg=None,
    drop_batch=None,
) -> tf.Tensor:
    """Sampled softmax: −log softmax of the positive among its negatives, scores / ``temperature``.

    Candidates of example j: its positive, the shared negatives, with ``in_batch`` the other
    examples' positives (in-batch negatives), and j's valid hard negatives. With ``pos_logq`` /
    ``neg_logq`` the logits of the positives and shared negatives are corrected by ``− log Q``,
    Q the expected number of times the item is drawn as a candidate (Yi et al., RecSys 2019): in-batch
    negatives are drawn in proportion to how often an item is a positive, so without the
    correction popular items are pushed down. Hard negatives are not corrected. With item ids,
    candidates equal to the example's query or positive ("accidental hits") are masked out.

    Args:
      q, pos: (b, d); neg: (n, d); hard: (b, h, d); hard_mask: (b, h) as in :func:`max_margin_loss`.
      temperature: τ (embeddings are unit vectors, so scores lie in [−1, 1]).
      pos_logq: (b,) log Q of each positive item as a candidate, or None.
      neg_logq: (n,) log Q of each shared negative, or None.
      in_batch: use the other examples' positives as negatives.
      q_ids, pos_ids, neg_ids: (b,), (b,), (n,) item ids for the accidental-hit mask, or None.
      drop_neg, drop_batch: optional (b, n) and (b, b) bool: shared and in-batch candidates that
        are not negatives of the example (a user's own training items), masked out like hits.

    Returns:
      (b,) losses.
    """
    s_pos, s_neg, s_hard, mask = _scores(q, pos, neg, hard, hard_mask)
    if pos_logq is not None:
        s_pos = s_pos - temperature * tf.cast(pos_logq, q.dtype)
        s_neg = s_neg - temperature * tf.cast(neg_logq, q.dtype)[None, :]
    off = -1e9 * temperature  # exp(off / τ) is exactly 0
    if neg_ids is not None:
        hit = tf.equal(neg_ids[None, :], pos_ids[:, None]) | tf.equal(neg_ids[None, :], q_ids[:, None])  # (b, n)
        s_neg = tf.where(hit, off, s_neg)
    if drop_neg is not None:
        s_neg = tf.where(tf.cast(drop_neg, tf.bool), off, s_neg)
    logits = [s_pos[:, None], s_neg]
    if in_batch:
        s_batch = tf.matmul(q, pos, transpose_b=True)  # (b, b): column k is example k's positive
        if pos_logq is not None:
            s_batch = s_batch - temperature * tf.cast(pos_logq, q.dtype)[None, :]
        logits.append(tf.where(_in_batch_drop(tf.shape(q)[0], q_ids, pos_ids, drop_batch), off, s_batch))
    if s_hard is not None:
        logits.append(s_hard * mask + (mask - 1.0) * 1e9 * temperature)
    logits = tf.concat(logits, axis=1) / temperature  # (b, 1 + n [+ b] [+ h])
    return -tf.nn.log_softmax(logits, axis=1)[:, 0]


def _in_batch_drop(b, q_ids, pos_ids, drop_batch) -> tf.Tensor:
    """(b, b) bool: in-batch candidates that are no negatives. The own positive is already the
    first column; another example's positive that is this example's positive or query is an
    accidental hit; ``drop_batch`` adds the caller's own."""
    drop = tf.eye(b, dtype=tf.bool)
    if pos_ids is not None:
        drop = drop | tf.equal(pos_ids[None, :], pos_ids[:, None]) | tf.equal(pos_ids[None, :], q_ids[:, None])
    if drop_batch is not None:
        drop = drop | tf.cast(drop_batch, tf.bool)
    return drop
