"""MINIBATCH (Algorithm 2): re-indexing invariants and compact forward == per-node recursion."""

from __future__ import annotations

import numpy as np
import pytest

from pinsage_model.graph.csr import Neighbourhoods
from pinsage_model.model.minibatch import build_minibatch


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
    import keras

    from pinsage_model.model.export import model_weights
    from pinsage_model.model.layers import PinSageModel

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


def _producer_fixture():
    from pinsage_model.config import SamplerConfig
    from pinsage_model.graph.csr import CSRGraph
    from pinsage_model.graph.sampler import compute_neighbourhoods

    # 4 groups of 6 items; every collection holds 4 items of one group.
    rng = np.random.default_rng(0)
    items, colls = [], []
    for c in range(40):
        g = c % 4
        for i in rng.choice(6, 4, replace=False):
            items.append(6 * g + i)
            colls.append(c)
    graph = CSRGraph.from_edges(np.array(items), np.array(colls), 24, 40).validate()
    sampler = SamplerConfig(num_walks=30, walk_length=4, top_t=5, hard_negative_band=(0.0, 1.0), hard_negative_walks=50)
    nb = compute_neighbourhoods(graph, sampler, progress=False)
    feats = rng.normal(size=(24, 3)).astype(np.float32)
    q = np.array([0, 1, 2, 6, 7, 8, 12, 13], np.int32)
    p = np.array([1, 2, 3, 7, 8, 9, 13, 14], np.int32)
    return graph, nb, feats, q, p, sampler


def test_producer_shards_split_the_batch_and_hard_negatives_skip_train_positives():
    from pinsage_model.config import TrainConfig
    from pinsage_model.model.batches import BatchProducer, TrainData

    graph, nb, feats, q, p, sampler = _producer_fixture()
    data = TrainData(feats, nb, graph, q, p, q[:2], p[:2])
    cfg = TrainConfig(batch_size=8, num_negatives=5, max_hard_negatives=4, seed=1, user_loss_weight=0.0)
    prod = BatchProducer(data, 2, cfg, sampler, num_replicas=2)
    order = prod.epoch_order(3)
    batch = prod.make(3, 0, order)
    assert batch["num_hard"] == 2  # epoch 3 -> 2 hard negatives
    shards = batch["shards"]
    assert len(shards) == 2
    got_q = np.concatenate([s["node_ids"][s["q_pos"]] for s in shards])
    got_p = np.concatenate([s["node_ids"][s["p_pos"]] for s in shards])
    np.testing.assert_array_equal(got_q, q[order[:8]])
    np.testing.assert_array_equal(got_p, p[order[:8]])
    # Every replica embeds the same shared negatives, drawn from items with edges.
    negs = [s["node_ids"][s["n_pos"]] for s in shards]
    np.testing.assert_array_equal(negs[0], negs[1])
    assert np.all(graph.item_degree()[negs[0]] > 0)
    positives = {(a, b) for a, b in zip(q, p)} | {(b, a) for a, b in zip(q, p)}
    for s in shards:
        hq = s["node_ids"][s["q_pos"]]
        hard = s["node_ids"][s["h_pos"]]  # (b, 2)
        assert hard.shape == (4, 2)
        for row in range(4):
            for j in range(2):
                if s["h_mask"][row, j]:
                    assert hard[row, j] != hq[row] and (hq[row], hard[row, j]) not in positives
    # The same (seed, epoch, step) gives the same batch.
    again = prod.make(3, 0, prod.epoch_order(3))["shards"][1]
    for key, value in shards[1].items():
        np.testing.assert_array_equal(again[key], value)


def test_positive_exclusion_rows_are_the_queries_own():
    from pinsage_model.graph.csr import csr_rows
    from pinsage_model.model.batches import _positives_csr

    indptr, indices = _positives_csr(np.array([0, 0, 2]), np.array([1, 3, 1]), 4)
    # item 0: {1, 3}; item 1: {0, 2}; item 2: {1}; item 3: {0}
    block_row, idx = csr_rows(indptr, indices, np.array([2, 0, 3]))
    assert block_row.tolist() == [0, 1, 1, 2] and idx.tolist() == [1, 1, 3, 0]


def test_learning_rate_warms_up_over_the_first_epoch_then_decays():
    from pinsage_model.model.schedule import WarmupExponentialDecay

    lr = WarmupExponentialDecay(peak=0.4, warmup_steps=4, steps_per_epoch=4, decay=0.5)
    got = [float(lr(s)) for s in range(0, 13, 1)]
    np.testing.assert_allclose(got[:4], [0.1, 0.2, 0.3, 0.4], rtol=1e-6)  # linear to base_lr * B / 256
    np.testing.assert_allclose([got[4], got[8], got[12]], [0.4, 0.2, 0.1], rtol=1e-6)  # x0.5 per epoch
    assert got[5] < got[4] and got[6] < got[5]


def test_each_worker_builds_its_own_shards_of_the_same_global_batch():
    """Two workers of one replica each: worker w's shard is shard w of the whole batch, built
    from the same shared and hard negatives (hand-built graph of the minibatch tests)."""
    from pinsage_model.config import TrainConfig
    from pinsage_model.model.batches import BatchProducer, TrainData

    graph, nb, feats, q, p, sampler = _producer_fixture()
    data = TrainData(feats, nb, graph, q, p, q[:2], p[:2])
    cfg = TrainConfig(batch_size=8, num_negatives=5, max_hard_negatives=4, seed=1, user_loss_weight=0.0)
    whole = BatchProducer(data, 2, cfg, sampler, num_replicas=2)
    order = whole.epoch_order(3)
    everything = whole.make(3, 0, order)["shards"]
    for w in range(2):
        worker = BatchProducer(data, 2, cfg, sampler, num_replicas=2, local_replicas=range(w, w + 1))
        np.testing.assert_array_equal(worker.epoch_order(3), order)
        (mine,) = worker.make(3, 0, order)["shards"]
        assert mine.keys() == everything[w].keys()
        for key, value in everything[w].items():
            np.testing.assert_array_equal(mine[key], value, err_msg=key)
    with pytest.raises(ValueError, match="not a part of the 2 replicas"):
        BatchProducer(data, 2, cfg, sampler, num_replicas=2, local_replicas=range(1, 3))


def test_sparse_features_give_the_dense_rows_entries():
    from pinsage_model.model.minibatch import SparseFeatures, SparseRows, sparse_if_sparse

    nb, feats = _toy()
    dense = build_minibatch(np.array([3, 7, 3]), nb, feats, 2)
    assert sparse_if_sparse(feats) is feats  # dense random features stay dense
    feats = feats.copy()
    feats[:, 1:] = 0.0  # one column in five non-zero: 20% > SPARSE_MAX_DENSITY
    assert sparse_if_sparse(feats) is feats
    feats[np.arange(12) % 4 != 3] = 0.0  # items 3, 7, 11 keep column 0: 3 of 60 entries
    sp = sparse_if_sparse(feats)
    assert isinstance(sp, SparseFeatures)
    np.testing.assert_array_equal(sp.indptr, np.cumsum([0] + [1 if i % 4 == 3 else 0 for i in range(12)]))
    mb = build_minibatch(np.array([3, 7, 3]), nb, sp, 2)
    np.testing.assert_array_equal(mb.nodes, dense.nodes)
    assert isinstance(mb.features, SparseRows)
    inputs = mb.model_inputs()
    assert "features" not in inputs
    back = np.zeros((len(mb.nodes), feats.shape[1]), np.float32)
    back[inputs["feature_indices"][:, 0], inputs["feature_indices"][:, 1]] = inputs["feature_values"]
    np.testing.assert_array_equal(back, feats[mb.nodes])
    rows = inputs["feature_indices"][:, 0]
    assert np.all(np.diff(rows) >= 0) and inputs["feature_indices"].dtype == np.int64
