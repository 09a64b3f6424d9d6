"""The homefeed popularity prior: the prior of a hand-built graph and the choice of its weight."""

import numpy as np
import pytest

from pinsage_model.graph.csr import CSRGraph
from pinsage_model.model.prior import fit_weight, item_prior, load_prior, save_prior


def test_item_prior_is_log_one_plus_the_training_degree():
    # items 0..3; collection 0 = {0, 1}, 1 = {0, 2}, 2 = {0}: degrees 3, 1, 1, 0
    graph = CSRGraph.from_edges(np.array([0, 1, 0, 2, 0]), np.array([0, 0, 1, 1, 2]), 4, 3)
    np.testing.assert_allclose(item_prior(graph), np.log([4.0, 2.0, 2.0, 1.0]), rtol=1e-6)


def test_fit_weight_keeps_the_weight_with_the_best_recall_and_the_smallest_on_ties():
    # 3 items on two axes; item 2 is popular (prior 1), items 0 and 1 are not (prior 0)
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    prior = np.array([0.0, 0.0, 1.0], np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    # user 0 has item 0 (masked) and held-out item 2; user 1 has item 1 (masked), held-out item 0
    masked = (np.array([0, 1, 2]), np.array([0, 1]))
    held = (np.array([0, 1, 2]), np.array([2, 0]))
    users = np.array([0, 1])
    # top-1 without the prior: user 0 -> item 2 (0.6 > 0), user 1 -> item 2 (0.8 > 0): recall 1/2
    # with weight w: user 0 item 2 scores 0.6 + w, item 1 scores 0: still 2; user 1 item 2 scores
    # 0.8 + w against item 0's 0: still 2. Every weight ties at 1/2, so the first (0) is kept.
    weight, recall = fit_weight(queries, items, prior, users, masked, held, k=1, grid=(0.0, 0.5, 1.0))
    assert weight == 0.0 and recall == pytest.approx([0.5, 0.5, 0.5])
    # now user 1's held-out item is the popular one, and the unpopular item 0 is closer to it:
    queries = np.array([[0.0, 1.0], [1.0, 0.1]], np.float32)  # user 0 likes item 1, user 1 item 0
    masked = (np.array([0, 0, 0]), np.array([], np.int64))
    held = (np.array([0, 1, 2]), np.array([1, 2]))
    # user 0: items 0, 1, 2 score 0, 1, 0.8 + w: item 1 is top while w < 0.2
    # user 1: items score 1, 0.1, 0.68 + w: item 2 is top once w > 0.32
    weight, recall = fit_weight(queries, items, prior, users, masked, held, k=1, grid=(0.0, 0.1, 0.25, 0.5))
    assert recall == pytest.approx([0.5, 0.5, 0.0, 0.5])
    assert weight == 0.0
    # both users held out the popular item: a weight above 0.2 finds user 0's, above 0.32 user 1's
    held = (np.array([0, 1, 2]), np.array([2, 2]))
    weight, recall = fit_weight(queries, items, prior, users, masked, held, k=1, grid=(0.0, 0.1, 0.25, 0.5))
    assert recall == pytest.approx([0.0, 0.0, 0.5, 1.0]) and weight == 0.5


def test_the_prior_file_round_trips(tmp_path):
    assert load_prior(tmp_path) is None
    save_prior(tmp_path, np.array([0.0, 1.5]), 0.08, {"grid": [0.0, 0.08], "recall": [0.1, 0.2]})
    prior, weight = load_prior(tmp_path)
    np.testing.assert_array_equal(prior, np.array([0.0, 1.5], np.float32))
    assert weight == pytest.approx(0.08)
    with np.load(tmp_path / "homefeed_prior.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["recall"], [0.1, 0.2])
