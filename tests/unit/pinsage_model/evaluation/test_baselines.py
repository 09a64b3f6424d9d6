"""Baselines on a hand-built 3 x 4 collection-item graph with hand-computed expectations."""

import numpy as np
import pytest
import scipy.sparse as sp

from pinsage_model.evaluation import baselines, metrics
from pinsage_model.graph.csr import CSRGraph

# collection 0: items 0, 1; collection 1: items 0, 1, 2; collection 2: items 2, 3.
# Item columns of X: i0 = i1 = (1, 1, 0), i2 = (0, 1, 1), i3 = (0, 0, 1).
GRAPH = CSRGraph.from_edges(
    item_idx=np.array([0, 1, 0, 1, 2, 2, 3]), coll_idx=np.array([0, 0, 1, 1, 1, 2, 2]), num_items=4, num_collections=3
)
X = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64)


def test_collection_item_matrix():
    assert np.array_equal(baselines.collection_item_matrix(GRAPH).toarray(), X)


def test_itemknn_cosine_hand_computed():
    m = baselines.itemknn(GRAPH)
    s = m.item_scores(np.array([0, 2]))
    r2 = 1 / np.sqrt(2)
    np.testing.assert_allclose(s[0], [1, 1, 0.5, 0])  # cos(i0, i1) = 1, cos(i0, i2) = 1/2
    np.testing.assert_allclose(s[1], [0.5, 0.5, 1, r2])
    np.testing.assert_allclose(m.pair_similarity(np.array([0, 2]), np.array([1, 3])), [1, r2])
    # ranks: query 2 -> item 3 (0.707) beats items 0, 1 (0.5)
    r = metrics.score_ranks(lambda pos: m.item_scores(np.array([2, 0])[pos]), [2, 0], [3, 2], 4)
    assert r.tolist() == [1.0, 2.0]


def test_itemknn_sparse_path_matches_dense(monkeypatch):
    dense = baselines.itemknn(GRAPH).item_scores(np.arange(4))
    monkeypatch.setattr(baselines, "_DENSE_ITEMKNN_ENTRIES", 0)
    np.testing.assert_allclose(baselines.itemknn(GRAPH).item_scores(np.arange(4)), dense)


def test_itemknn_item_without_collections_scores_zero():
    g = CSRGraph.from_edges(np.array([0, 1]), np.array([0, 0]), num_items=3, num_collections=1)
    s = baselines.itemknn(g).item_scores(np.array([2, 0]))
    np.testing.assert_allclose(s, [[0, 0, 0], [1, 1, 0]])


def test_popularity_order_and_ties():
    m = baselines.popularity(GRAPH)
    np.testing.assert_allclose(m.item_scores(np.array([3])), [[2, 2, 2, 1]])
    # query 3 -> target 0: tied with items 1 and 2 at degree 2 -> 1 + 0 + 2/2 = 2
    r = metrics.score_ranks(m.item_scores, np.array([3]), np.array([0]), 4)
    assert r.tolist() == [2.0]


def test_svd_factors_reproduce_rank_k_gram_matrix():
    m = baselines.svd(GRAPH, dim=2, seed=0)
    assert m.embeddings.shape == (4, 2)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    want = vt[:2].T @ np.diag(s[:2] ** 2) @ vt[:2]  # (V S)(V S)^T, sign-free
    np.testing.assert_allclose(m.embeddings @ m.embeddings.T, want, atol=1e-5)
    # identical columns get identical factors: cosine 1
    assert m.item_scores(np.array([0]))[0, 1] == pytest.approx(1.0)
    again = baselines.svd(GRAPH, dim=2, seed=0)
    assert np.array_equal(m.embeddings, again.embeddings)


def test_svd_dim_capped_below_matrix_rank_limit():
    assert baselines.svd(GRAPH, dim=64).embeddings.shape == (4, 2)  # svds needs k < min(C, N) = 3


def test_content_is_l2_normalised():
    m = baselines.content(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(m.embeddings, [[0.6, 0.8], [0, 0]])


def test_pixie_multi_hit_boosting():
    counts = sp.csr_matrix(np.array([[4, 0, 1], [1, 9, 0], [0, 0, 5]], dtype=np.float64))
    out = baselines.pixie_boost(counts, np.array([0, 2, 3])).toarray()
    # group 0 = rows 0, 1: (2 + 1)^2 = 9, (0 + 3)^2 = 9, (1 + 0)^2 = 1; group 1 = row 2 as is
    np.testing.assert_allclose(out, [[9, 9, 1], [0, 0, 5]])


def test_default_set_scores_take_best_item():
    m = baselines.Method("e", embeddings=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    s = m.set_scores(np.array([0, 2, 2]), np.array([0, 1]))
    np.testing.assert_allclose(s[0], [1, 1, 1 / np.sqrt(2)])
    assert np.all(np.isneginf(s[1]))  # an empty set scores nothing


def test_query_shift_adds_its_inner_product_with_each_candidate():
    m = baselines.Method(
        "e", embeddings=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), query_shift=np.array([0.0, 1.0])
    )
    r = 1 / np.sqrt(2)
    # query item 0 = (1, 0) + shift = (1, 1) against unit candidates (1, 0), (0, 1), (r, r)
    np.testing.assert_allclose(m.item_scores(np.array([0])), [[1, 1, 2 * r]])
    # a set takes each candidate's best item score; the shift term is common to the set's items
    np.testing.assert_allclose(m.set_scores(np.array([0, 2]), np.array([0, 1]))[0], [1, 2, 2 * r])


def test_method_needs_exactly_one_kind():
    with pytest.raises(ValueError):
        baselines.Method("bad")
    with pytest.raises(ValueError):
        baselines.build(
            "nope",
            graph=GRAPH,
            features=np.zeros((4, 1)),
            svd_dim=2,
            pixie_walks=1,
            walk_length=2,
            restart_prob=0.5,
            seed=0,
            ease_lambda=1.0,
            ease_max_items=4,
        )


def test_pixie_walks_stay_in_component():
    # two components: items {0, 1} via collection 0, items {2, 3} via collection 1
    g = CSRGraph.from_edges(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]), num_items=4, num_collections=2)
    m = baselines.pixie(g, num_walks=50, walk_length=4, restart_prob=0.3, seed=0)
    s = m.item_scores(np.array([0, 3]))
    assert s[0, 1] > 0 and s[0, 2] == 0 and s[0, 3] == 0 and s[0, 0] == 0  # seed excluded
    assert s[1, 2] > 0 and s[1, 0] == 0 and s[1, 1] == 0
    boosted = m.set_scores(np.array([0, 2]), np.array([0, 3]))
    # disjoint supports: each item is hit from one query item only, so (sqrt c)^2 = c
    np.testing.assert_allclose(boosted[0], s[0] + s[1])


def ease_by_column_ridge(x: np.ndarray, lam: float) -> np.ndarray:
    """EASE from its objective: with diag(B) = 0, ||X - XB||^2 + lam ||B||^2 separates by column,
    and column j is the ridge regression of item j's column on all the other items' columns."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        rest = [i for i in range(n) if i != j]
        xr = x[:, rest]
        b[rest, j] = np.linalg.solve(xr.T @ xr + lam * np.eye(n - 1), xr.T @ x[:, j])
    return b


def test_ease_two_items_hand_computed():
    # X = [[1, 1], [1, 0]]: G = [[2, 1], [1, 1]]; lam = 1: P = [[2, -1], [-1, 3]] / 5.
    # B[0, 1] = -P[0, 1] / P[1, 1] = 1/3 (regress i1 = (1, 0) on i0 = (1, 1): 1 / (2 + 1)),
    # B[1, 0] = -P[1, 0] / P[0, 0] = 1/2 (regress i0 on i1: 1 / (1 + 1)).
    g = CSRGraph.from_edges(np.array([0, 1, 0]), np.array([0, 0, 1]), num_items=2, num_collections=2)
    m = baselines.ease(g, 1.0)
    np.testing.assert_allclose(m.item_scores(np.array([0, 1])), [[0, 1 / 3], [1 / 2, 0]], rtol=1e-6)


def test_ease_matches_the_per_column_ridge_solution():
    for lam in (0.5, 3.0):
        want = ease_by_column_ridge(X, lam)
        m = baselines.ease(GRAPH, lam)
        # Row i scores every item for query i: the user who holds item i alone, e_i B.
        np.testing.assert_allclose(m.item_scores(np.arange(4)), want, rtol=1e-5, atol=1e-7)
        assert np.all(np.diag(m.item_scores(np.arange(4))) == 0)
        # A set scores x_u B: the sum of its items' rows; an item held twice counts once.
        s = m.set_scores(np.array([0, 2, 4, 4]), np.array([0, 2, 1, 1]))
        np.testing.assert_allclose(s, [want[0] + want[2], want[1], np.zeros(4)], rtol=1e-5, atol=1e-7)


def test_ease_item_without_collections_gives_and_gets_zero():
    g = CSRGraph.from_edges(np.array([0, 1]), np.array([0, 0]), num_items=3, num_collections=1)
    s = baselines.ease(g, 1.0).item_scores(np.arange(3))
    np.testing.assert_allclose(s[:, 2], 0)
    np.testing.assert_allclose(s[2], 0)
    assert s[0, 1] == pytest.approx(0.5)  # 1 / (1 + 1)


def test_ease_needs_a_positive_lambda():
    with pytest.raises(ValueError, match="L2 weight"):
        baselines.ease(GRAPH, 0.0)


def test_ease_skipped_above_max_items():
    common = dict(
        graph=GRAPH, features=np.zeros((4, 1)), svd_dim=2, pixie_walks=1, walk_length=2, restart_prob=0.5, seed=0
    )
    with pytest.raises(baselines.BaselineSkipped, match="4 items > evaluation.ease_max_items = 3"):
        baselines.build("ease", **common, ease_lambda=1.0, ease_max_items=3)
    m = baselines.build("ease", **common, ease_lambda=1.0, ease_max_items=4)
    np.testing.assert_allclose(m.item_scores(np.arange(4)), ease_by_column_ridge(X, 1.0), rtol=1e-5, atol=1e-7)
    assert "ease" in baselines.BASELINES


def test_itemknn_user_score_sums_the_cosines_to_the_users_items():
    m = baselines.itemknn(GRAPH)
    # user {0, 2} (item 0 listed twice counts once): cos rows of i0 (1, 1, .5, 0) + i2 (.5, .5, 1, .707)
    got = m.set_scores(np.array([0, 3]), np.array([0, 2, 0]))
    np.testing.assert_allclose(got[0], [1.5, 1.5, 1.5, 1 / np.sqrt(2)])


def test_svd_user_score_is_the_projection_on_the_item_factors():
    m = baselines.svd(GRAPH, dim=2, seed=0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    v = vt[:2].T  # (N, 2): the top-2 right singular vectors (sign-free: V V^T is unique)
    x_u = np.array([[0.0, 1.0, 0.0, 1.0]])
    np.testing.assert_allclose(m.set_scores(np.array([0, 2]), np.array([1, 3])), x_u @ v @ v.T, atol=1e-6)
