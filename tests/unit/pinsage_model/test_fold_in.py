"""Folded-in collection vectors: a likelihood fit against fixed item vectors, not a mean."""

from __future__ import annotations

import numpy as np

from pinsage_model.contracts import CSRGraph
from pinsage_model.fold_in import fold_in


def _graph(members: list[list[int]], n: int) -> CSRGraph:
    items = np.concatenate([np.asarray(m, dtype=np.int64) for m in members])
    colls = np.repeat(np.arange(len(members)), [len(m) for m in members])
    return CSRGraph.from_edges(items, colls, n, len(members))


def _loglik(u, z, members, scales=np.linspace(0.5, 40, 200)):
    """Best mean log-softmax of the members over scalings of the unit direction u."""
    best = -np.inf
    for s in scales:
        logits = s * z @ u
        logp = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        best = max(best, logp[members].mean())
    return best


def test_single_item_and_empty_collections():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    u = fold_in(z, _graph([[7], [], [3, 3]], 30), temperature=0.1, steps=30)
    assert np.argmax(u[0] @ (z / np.linalg.norm(z, axis=1, keepdims=True)).T) == 7
    assert np.all(u[1] == 0)
    np.testing.assert_allclose(np.linalg.norm(u[[0, 2]], axis=1), 1.0, rtol=1e-5)


def test_fit_is_at_least_as_likely_as_the_mean_and_deterministic():
    rng = np.random.default_rng(1)
    # a dense popular cluster near the mean of the collection's two distant items
    cluster = np.array([1.0, 1.0, 0.0]) + 0.05 * rng.normal(size=(40, 3))
    z = np.vstack([[1.0, 0.0, 0.2], [0.0, 1.0, -0.2], cluster, rng.normal(size=(20, 3))])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    g = _graph([[0, 1]], len(z))
    u = fold_in(z, g, temperature=0.1, steps=100)[0]
    mean = z[[0, 1]].mean(axis=0)
    mean /= np.linalg.norm(mean)
    assert _loglik(u, z, [0, 1]) >= _loglik(mean, z, [0, 1]) - 1e-9
    np.testing.assert_array_equal(u, fold_in(z, g, temperature=0.1, steps=100)[0])
