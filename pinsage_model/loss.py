"""Training losses (paper 3.3) and the hard-negative curriculum.

Both losses return one value per training example, so a multi-replica step can sum the per-replica
shares and divide by the *global* batch size: the result equals the one-device loss.
"""

from __future__ import annotations

import tensorflow as tf


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


def max_margin_loss(q, pos, neg, hard=None, hard_mask=None, *, margin: float) -> tf.Tensor:
    """Eq. 1 per example: mean over its negatives of ``max(0, z_q·z_n − z_q·z_i + Δ)``.

    The negatives of example j are the minibatch's shared negatives plus j's own valid hard
    negatives (the curriculum adds them "to the set of negative items for each item").

    Args:
      q: (b, d) query embeddings.
      pos: (b, d) positive embeddings.
      neg: (n, d) shared negatives of the minibatch.
      hard: optional (b, h, d) hard negatives of each example.
      hard_mask: (b, h) 1 where the hard negative exists (the PPR band may be short).
      margin: Δ.

    Returns:
      (b,) losses.
    """
    s_pos, s_neg, s_hard, mask = _scores(q, pos, neg, hard, hard_mask)
    total = tf.reduce_sum(tf.nn.relu(s_neg - s_pos[:, None] + margin), axis=1)  # (b,)
    count = tf.cast(tf.shape(neg)[0], q.dtype) + tf.zeros_like(s_pos)
    if s_hard is not None:
        total += tf.reduce_sum(tf.nn.relu(s_hard - s_pos[:, None] + margin) * mask, axis=1)
        count += tf.reduce_sum(mask, axis=1)
    return total / tf.maximum(count, 1.0)


def xent_loss(q, pos, neg, hard=None, hard_mask=None, *, temperature: float) -> tf.Tensor:
    """Sampled-softmax cross-entropy ablation: −log softmax of the positive among its negatives.

    Same arguments as :func:`max_margin_loss`; scores are divided by ``temperature``.

    Returns:
      (b,) losses.
    """
    s_pos, s_neg, s_hard, mask = _scores(q, pos, neg, hard, hard_mask)
    logits = [s_pos[:, None], s_neg]
    if s_hard is not None:
        # A missing hard negative gets a logit so low that exp() is exactly 0.
        logits.append(s_hard * mask + (mask - 1.0) * 1e9 * temperature)
    logits = tf.concat(logits, axis=1) / temperature  # (b, 1 + n [+ h])
    return -tf.nn.log_softmax(logits, axis=1)[:, 0]
