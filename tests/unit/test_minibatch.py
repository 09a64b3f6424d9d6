"""MINIBATCH (Algorithm 2): re-indexing invariants and compact forward == per-node recursion."""

from __future__ import annotations

import numpy as np
import pytest

from pinsage_model.contracts import Neighbourhoods
from pinsage_model.minibatch import build_minibatch


def _toy(n=12, t=3, seed=0) -> tuple[Neighbourhoods, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.full((n, t), -1, np.int32)
    wts = np.zeros((n, t), np.float32)
    for u in range(n):
        k = [3, 2, 1, 0][u % 4]  # some rows padded, node 3, 7, 11 have no neighbours
        if k:
            idx[u, :k] = rng.choice(np.setdiff1d(np.arange(n), [u]), k, replace=False)
            raw = rng.random(k) + 0.1
            wts[u, :k] = raw / raw.sum()
    return Neighbourhoods(idx, wts).validate(), rng.normal(size=(n, 5)).astype(np.float32)


def test_layers_are_nested_prefixes_and_indices_map_back():
    nb, feats = _toy()
    batch = np.array([5, 0, 5, 9], np.int32)
    mb = build_minibatch(batch, nb, feats, num_layers=2)
    n0, n1, n2 = mb.sizes
    assert n2 == 3 and n0 >= n1 >= n2
    np.testing.assert_array_equal(mb.nodes[:n2], [5, 0, 9])  # first-appearance order
    np.testing.assert_array_equal(mb.nodes[mb.positions], batch)
    assert len(np.unique(mb.nodes)) == n0
    for k, (rows, prev) in ((2, (n2, n1)), (1, (n1, n0))):
        s_k = mb.nodes[:rows]
        index = mb.index[k - 1]
        assert index.shape == (rows, 3) and index.max() < prev
        mapped = np.where(index >= 0, mb.nodes[np.maximum(index, 0)], -1)
        np.testing.assert_array_equal(mapped, nb.indices[s_k])
        np.testing.assert_array_equal(mb.weight[k - 1], nb.weights[s_k])
        # S^(k-1) = S^(k) ∪ N(S^(k)), nothing more.
        expected = set(s_k.tolist()) | set(nb.indices[s_k][nb.indices[s_k] >= 0].tolist())
        assert set(mb.nodes[:prev].tolist()) == expected
    np.testing.assert_array_equal(mb.features, feats[mb.nodes])


def test_repeat_calls_are_identical_and_ids_checked():
    nb, feats = _toy()
    a = build_minibatch(np.array([1, 2]), nb, feats, 2)
    b = build_minibatch(np.array([1, 2]), nb, feats, 2)  # the scratch map was reset
    np.testing.assert_array_equal(a.nodes, b.nodes)
    with pytest.raises(ValueError, match="node ids"):
        build_minibatch(np.array([12]), nb, feats, 2)


def _brute_force(u, k, weights, nb, feats, pooling):
    """h_u^(k) by direct recursion over the global graph (Algorithm 1 per node)."""
    if k == 0:
        return feats[u].astype(np.float64)
    h_u = _brute_force(u, k - 1, weights, nb, feats, pooling)
    Q, q, W, w = (weights[f"conv{k}/{n}"].astype(np.float64) for n in ("Q", "q", "W", "w"))
    nbrs = [(v, a) for v, a in zip(nb.indices[u], nb.weights[u]) if v >= 0]
    if nbrs:
        proj = np.stack([np.maximum(_brute_force(v, k - 1, weights, nb, feats, pooling) @ Q + q, 0) for v, _ in nbrs])
        alpha = np.array([a for _, a in nbrs])
        if pooling == "importance":
            n_u = alpha @ proj / alpha.sum()
        elif pooling == "mean":
            n_u = proj.mean(axis=0)
        else:
            n_u = proj.max(axis=0)
    else:
        n_u = np.zeros(Q.shape[1])
    z = np.maximum(np.concatenate([h_u, n_u]) @ W + w, 0)
    return z / max(np.linalg.norm(z), 1e-6)


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_compact_forward_equals_per_node_recursion(pooling):
    keras = pytest.importorskip("keras")
    from pinsage_model.export import model_weights
    from pinsage_model.model import PinSageModel

    nb, feats = _toy(seed=1)
    keras.utils.set_random_seed(3)
    model = PinSageModel(input_dim=5, num_layers=2, hidden_dim=6, output_dim=8, pooling=pooling)
    # Non-zero biases so every parameter takes part.
    for conv in model.convs:
        conv.q.assign(np.linspace(-0.2, 0.3, 6).astype(np.float32))
        conv.w.assign(np.linspace(0.1, -0.1, 8).astype(np.float32))
    model.G1.bias.assign(np.full(8, 0.05, np.float32))
    weights = model_weights(model)
    batch = np.array([0, 4, 3, 4, 10, 6], np.int32)
    mb = build_minibatch(batch, nb, feats, num_layers=2)
    got = keras.ops.convert_to_numpy(model(mb.model_inputs()))[mb.positions]  # (B, d)
    for row, u in enumerate(batch):
        h = _brute_force(u, 2, weights, nb, feats, pooling)
        z = np.maximum(h @ weights["head/G1"] + weights["head/g"], 0) @ weights["head/G2"]
        z /= max(np.linalg.norm(z), 1e-6)
        np.testing.assert_allclose(got[row], z, atol=1e-5)
