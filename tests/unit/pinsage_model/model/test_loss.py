"""Max-margin loss (Eq. 1), the cross-entropy ablation and the curriculum, on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from pinsage_model.model.loss import hard_negatives_for_epoch, max_margin_loss, xent_loss

# Example 0: q = [1,0], i = [.6,.8] (q·i = .6); example 1: q = [0,1], i = [0,1] (q·i = 1).
Q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
POS = np.array([[0.6, 0.8], [0.0, 1.0]], np.float32)
# Shared negatives [0,1] and [1,0]: scores example 0 -> (0, 1), example 1 -> (1, 0).
NEG = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
# Hard negatives: example 0 has [.8,.6] (q·n = .8) and a missing slot; example 1 has none valid.
HARD = np.array([[[0.8, 0.6], [9.0, 9.0]], [[1.0, 0.0], [0.0, 1.0]]], np.float32)
HARD_MASK = np.array([[1, 0], [0, 0]], np.float32)


def test_max_margin_shared_negatives_only():
    # ex 0: max(0, 0-.6+.1) = 0, max(0, 1-.6+.1) = .5 -> mean .25
    # ex 1: max(0, 1-1+.1) = .1, max(0, 0-1+.1) = 0 -> mean .05
    got = np.asarray(max_margin_loss(Q, POS, NEG, HARD[:, :0], HARD_MASK[:, :0], margin=0.1))
    np.testing.assert_allclose(got, [0.25, 0.05], atol=1e-6)


def test_max_margin_with_hard_negatives():
    # ex 0: hard adds max(0, .8-.6+.1) = .3 -> (0 + .5 + .3) / 3; the masked slot (score 9) is ignored.
    # ex 1: no valid hard negative -> unchanged .05
    got = np.asarray(max_margin_loss(Q, POS, NEG, HARD, HARD_MASK, margin=0.1))
    np.testing.assert_allclose(got, [0.8 / 3, 0.05], atol=1e-6)


def test_max_margin_zero_when_margin_met():
    far = np.array([[-1.0, 0.0], [0.0, -1.0]], np.float32)
    assert np.all(np.asarray(max_margin_loss(Q, Q, far, margin=0.5)) == 0.0)


def test_xent():
    # ex 0, T = 1: -log(e^.6 / (e^.6 + e^0 + e^1)) = 1.1120668; with the hard negative (+e^.8) 1.4497477
    # ex 1, T = 1: logits (1, 1, 0) -> -log(e / (2e + 1)) = 0.8619948
    got = np.asarray(xent_loss(Q, POS, NEG, HARD, HARD_MASK, temperature=1.0))
    np.testing.assert_allclose(got, [1.4497477, 0.8619948], atol=1e-5)
    got = np.asarray(xent_loss(Q, POS, NEG, HARD[:, :0], HARD_MASK[:, :0], temperature=1.0))
    np.testing.assert_allclose(got[0], 1.1120668, atol=1e-5)
    # T = .5 doubles the logits: (1.2, 0, 2) -> 1.2603726
    got = np.asarray(xent_loss(Q[:1], POS[:1], NEG, temperature=0.5))
    np.testing.assert_allclose(got, [1.2603726], atol=1e-5)


def test_curriculum():
    assert [hard_negatives_for_epoch(n, cap=6) for n in range(1, 10)] == [0, 1, 2, 3, 4, 5, 6, 6, 6]
    assert hard_negatives_for_epoch(3, cap=1) == 1
    assert hard_negatives_for_epoch(5, cap=6, enabled=False) == 0
    with pytest.raises(ValueError, match="1-based"):
        hard_negatives_for_epoch(0, cap=6)


def test_max_margin_reductions():
    # ex 0 hinge terms: shared (0, .5), hard .3; ex 1: shared (.1, 0), no valid hard negative.
    got = np.asarray(max_margin_loss(Q, POS, NEG, HARD, HARD_MASK, margin=0.1, reduction="sum"))
    np.testing.assert_allclose(got, [0.8, 0.1], atol=1e-6)
    got = np.asarray(max_margin_loss(Q, POS, NEG, HARD, HARD_MASK, margin=0.1, reduction="mean_per_source"))
    np.testing.assert_allclose(got, [0.25 + 0.3, 0.05], atol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        max_margin_loss(Q, POS, NEG, margin=0.1, reduction="max")


def test_xent_in_batch_negatives_and_accidental_hits():
    # T = 1, no shared negatives that count: both shared ones are masked as accidental hits below.
    # In-batch: ex 0's candidates are its positive (.6) and ex 1's positive [0,1] (q0·p1 = 0);
    # ex 1's are its positive (1) and ex 0's positive [.6,.8] (q1·p0 = .8).
    ids = dict(q_ids=np.array([10, 11]), pos_ids=np.array([20, 21]), neg_ids=np.array([20, 21]))
    got = np.asarray(xent_loss(Q, POS, NEG, temperature=1.0, in_batch=True, **ids))
    # ex 0: neg 20 is its own positive, neg 21 is ex 1's positive (kept as a shared negative):
    # logits .6 | q0·[1,0] = 1 | in-batch 0 -> -log(e^.6 / (e^.6 + e^1 + e^0))
    want0 = -np.log(np.exp(0.6) / (np.exp(0.6) + np.exp(1.0) + 1.0))
    # ex 1: neg 21 masked, neg 20 = q1·[0,1] = 1 kept; in-batch .8 -> -log(e / (e + e + e^.8))
    want1 = -np.log(np.e / (2 * np.e + np.exp(0.8)))
    np.testing.assert_allclose(got, [want0, want1], atol=1e-5)
    # The same positive twice in a batch is not its own negative.
    same = dict(q_ids=np.array([10, 11]), pos_ids=np.array([20, 20]), neg_ids=np.array([30, 31]))
    got = np.asarray(xent_loss(Q, POS, NEG, temperature=1.0, in_batch=True, **same))
    want0 = -np.log(np.exp(0.6) / (np.exp(0.6) + 1.0 + np.exp(1.0)))
    np.testing.assert_allclose(got[0], want0, atol=1e-5)


def test_xent_log_q_correction_subtracts_log_q_from_logits():
    # T = .5: logit = (s - T log Q) / T = s / T - log Q.
    pos_logq = np.log(np.array([0.5, 1.0], np.float32))
    neg_logq = np.log(np.array([2.0, 0.25], np.float32))
    got = np.asarray(xent_loss(Q, POS, NEG, temperature=0.5, pos_logq=pos_logq, neg_logq=neg_logq))
    l0 = np.array([0.6 / 0.5 - np.log(0.5), 0.0 / 0.5 - np.log(2.0), 1.0 / 0.5 - np.log(0.25)])
    l1 = np.array([1.0 / 0.5 - 0.0, 1.0 / 0.5 - np.log(2.0), 0.0 / 0.5 - np.log(0.25)])
    want = [-(ln[0] - np.log(np.exp(ln).sum())) for ln in (l0, l1)]
    np.testing.assert_allclose(got, want, atol=1e-5)
