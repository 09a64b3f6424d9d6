"""Metric functions against hand-computed ranks: ties, the excluded query, K beyond the pool, scale."""

import math

import numpy as np
import pytest
import scipy.stats

from pinsage_model.evaluation import metrics

# Six items in 2-D. Cosine to item 0 = (1, 0): item1 0.8, item2 0, item3 -1, item4 0.6,
# item5 0.8 (same direction as item1, twice as long, so it ties with item1).
ITEMS = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0], [0.6, 0.8], [1.6, 1.2]], dtype=np.float32)


def rank_of(target, query=0, candidates=None, exclude=True):
    q = ITEMS[[query]]
    return metrics.ranks(q, [target], ITEMS, [query] if exclude else None, candidates)[0]


def test_ranks_hand_computed():
    assert rank_of(2) == 4.0  # items 1, 5, 4 score higher
    assert rank_of(3) == 5.0  # last of the five other items
    assert rank_of(4) == 3.0  # items 1 and 5 higher


def test_tie_takes_mean_of_best_and_worst_position():
    # item 1 ties with item 5 for first place: positions 1 and 2 -> 1.5
    assert rank_of(1) == 1.5
    assert rank_of(5) == 1.5


def test_all_tied_scorer_gets_middle_rank_not_first():
    flat = np.ones((5, 3), np.float32)
    r = metrics.ranks(flat[[0]], [1], flat, [0])
    # 4 candidates besides the query, all tied: positions 1..4 -> 2.5
    assert r[0] == 2.5


def test_query_is_excluded_only_when_given():
    assert rank_of(1, exclude=True) == 1.5
    # without excluding it, the query (cosine 1) outranks everything
    assert rank_of(1, exclude=False) == 2.5


def test_candidate_pool_plus_target():
    assert rank_of(1, candidates=np.array([2, 3])) == 1.0  # target not drawn, still ranked
    assert rank_of(2, candidates=np.array([1, 3])) == 2.0
    assert rank_of(2, candidates=np.array([0, 3])) == 1.0  # the query in the pool is dropped
    assert rank_of(2, candidates=np.array([2, 3, 4])) == 2.0  # target drawn: not counted twice


def test_zero_vector_scores_zero():
    items = np.vstack([ITEMS, np.zeros((1, 2), np.float32)])  # item 6 = 0-vector, cosine 0
    # target 2 (cosine 0) now ties with item 6: greater 3 (1, 5, 4), equal 1 -> 4.5
    assert metrics.ranks(items[[0]], [2], items, [0])[0] == 4.5


def test_hit_rate_and_k_larger_than_pool():
    r = np.array([1.0, 1.5, 3.0, 5.0])
    assert metrics.hit_rate(r, 1) == 0.25
    assert metrics.hit_rate(r, 2) == 0.5
    assert metrics.hit_rate(r, 3) == 0.75
    all_ranks = metrics.ranks(ITEMS[[0, 0, 0]], [1, 2, 3], ITEMS, [0, 0, 0])
    assert metrics.hit_rate(all_ranks, 100) == 1.0  # pool of 5 < K


def test_mrr_scale_factor():
    r = np.array([1, 150, 250, np.inf])
    assert metrics.mrr(r, 100) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    assert metrics.mrr(r, 1) == pytest.approx((1 + 1 / 150 + 1 / 250) / 4)
    assert metrics.mrr(np.array([100.0, 101.0]), 100) == pytest.approx((1 + 0.5) / 2)
    # a fractional (tied) rank 1.5 rounds up under Eq. 2's ceiling
    assert metrics.mrr(np.array([1.5]), 1) == 0.5
    with pytest.raises(ValueError):
        metrics.mrr(r, 0)


def test_score_ranks_with_ties_popularity_like():
    degree = np.array([3.0, 1.0, 1.0, 1.0, 0.0])
    fn = lambda pos: np.tile(degree, (len(pos), 1))  # noqa: E731
    r = metrics.score_ranks(fn, np.array([0, 0, 1]), np.array([1, 4, 0]), 5)
    # q0 -> 1: tied with 2, 3 -> 1 + 0 + 2/2 = 2; q0 -> 4: 3 higher -> 4; q1 -> 0: highest -> 1
    assert r.tolist() == [2.0, 4.0, 1.0]
    r_pool = metrics.score_ranks(fn, np.array([0]), np.array([1]), 5, candidates=np.array([3, 4]))
    assert r_pool.tolist() == [1.5]


def test_score_ranks_match_embedding_ranks():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    q = rng.integers(0, 40, 30)
    t = (q + 1 + rng.integers(0, 39, 30)) % 40
    e = metrics.l2_normalise(emb)
    r_scores = metrics.score_ranks(lambda pos: e[q[pos]] @ e.T, q, t, 40, block_rows=7)
    assert np.array_equal(r_scores, metrics.ranks(emb[q], t, emb, q))


def test_faiss_ranks_agree_with_exact_and_cap():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.integers(0, 300, 50)
    t = (q + 1 + rng.integers(0, 299, 50)) % 300
    exact = metrics.ranks(emb[q], t, emb, q)
    fast = metrics.ranks_faiss(emb[q], t, emb, q, max_rank=100)
    assert np.array_equal(fast[exact <= 100], exact[exact <= 100])
    assert np.all(np.isinf(fast[exact > 100]))


def test_evaluate_embeddings_pool_is_seeded():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(200, 8))
    q, t = np.arange(0, 50), np.arange(50, 100)
    a = metrics.evaluate_embeddings(emb, q, t, ks=(1, 10), candidate_pool=60, seed=3)
    b = metrics.evaluate_embeddings(emb, q, t, ks=(1, 10), candidate_pool=60, seed=3)
    assert a["pool"] == 60 and np.array_equal(a["ranks"], b["ranks"])
    assert a["ranks"].max() <= 61  # 60 candidates (minus the query) plus the target
    full = metrics.evaluate_embeddings(emb, q, t, ks=(1, 10))
    assert full["pool"] == 200 and full["hit_rate_at_10"] == metrics.hit_rate(full["ranks"], 10)
    via_faiss = metrics.evaluate_embeddings(emb, q, t, ks=(1, 10), exact_max_pool=100)
    assert via_faiss["hit_rate_at_10"] == full["hit_rate_at_10"]


def test_spread_summary_kurtosis_hand_computed():
    # mean 0.25; m2 = 0.1875, m4 = 0.08203125 -> 0.08203125 / 0.03515625 - 3 = -2/3
    summary = metrics.spread_summary(np.array([0, 0, 0, 1.0]))
    assert summary["kurtosis"] == pytest.approx(-2 / 3)
    assert summary["mean"] == 0.25 and summary["std"] == pytest.approx(0.1875**0.5)
    x = np.random.default_rng(0).standard_t(5, 1000)
    assert metrics.spread_summary(x)["kurtosis"] == pytest.approx(scipy.stats.kurtosis(x, fisher=True, bias=True))
    # a constant sample has no kurtosis
    assert np.isnan(metrics.spread_summary(np.full(7, 0.1))["kurtosis"])


def test_random_pairs_distinct_and_seeded():
    a, b = metrics.random_pairs(5, 1000, seed=4)
    assert np.all(a != b) and set(a) | set(b) == set(range(5))
    a2, b2 = metrics.random_pairs(5, 1000, seed=4)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    # items 0, 1, 4, 5 have pairwise cosines >= 0.6; the zero rows after them are never sampled
    spread = metrics.similarity_spread(np.vstack([ITEMS[[0, 1, 4, 5]], np.zeros((3, 2))]), 500, seed=0)
    assert spread["similarities"].shape == (500,)
    assert spread["similarities"].min() >= 0.6 - 1e-6


def test_user_recall_ndcg_hand_computed():
    scores = np.array([[9, 5, 4, 3, 1], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], dtype=np.float64)
    train_indptr, train_indices = np.array([0, 1, 1, 2]), np.array([0, 2])
    test_indptr, test_indices = np.array([0, 2, 3, 3]), np.array([1, 3, 4])  # user 2: no test
    out = metrics.user_topk_metrics(
        lambda pos: scores[pos], np.arange(3), train_indptr, train_indices, test_indptr, test_indices, 5, ks=(2, 10)
    )
    assert out["users"] == 2
    # user 0: item 0 masked, top-2 = [1, 2], hits [1, 0] of test {1, 3}
    ndcg0 = 1.0 / (1 + 1 / math.log2(3))
    assert out["recall_at_2"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["ndcg_at_2"] == pytest.approx((ndcg0 + 1.0) / 2)
    # K beyond the item count: every test item is found; user 0 finds item 3 at position 3
    assert out["recall_at_10"] == 1.0
    ndcg0_10 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert out["ndcg_at_10"] == pytest.approx((ndcg0_10 + 1.0) / 2)


def test_query_shift_adds_a_candidate_prior():
    # Query item 0 = (1, 0), shifted by (0, 1.5) to (1, 1.5); candidates are the unit rows. Scores:
    # item 1 (0.8, 0.6) 1.7, item 2 (0, 1) 1.5, item 3 (-1, 0) -1, item 4 (0.6, 0.8) 1.8 and
    # item 5 (unit: exactly item 1) 1.7. Plain cosine puts item 4 third (after items 1 and 5).
    shift = np.float32([0, 1.5])
    r = metrics.evaluate_embeddings(ITEMS, np.array([0, 0, 0]), np.array([4, 2, 1]), ks=(1,), query_shift=shift)[
        "ranks"
    ]
    assert list(r) == [1.0, 4.0, 2.5]  # item 4 first; item 2 after 4, 1 and 5; items 1 and 5 tie
    via_faiss = metrics.evaluate_embeddings(
        ITEMS, np.array([0]), np.array([4]), ks=(1,), query_shift=shift, exact_max_pool=2
    )
    assert via_faiss["ranks"][0] == 1.0
    plain = metrics.evaluate_embeddings(ITEMS, np.array([0]), np.array([4]), ks=(1,))["ranks"]
    assert plain[0] == 3.0
