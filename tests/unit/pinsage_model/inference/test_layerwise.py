"""Layer-wise inference: hand-computed layers, agreement with per-node Algorithm 2, counters."""

import numpy as np
import pytest

from bench.naive_inference import embed_nodes_naive, random_weights
from pinsage_model.data.contracts import ContractError
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods
from pinsage_model.inference.layerwise import InferenceStats, collection_embeddings, embed_all


def random_neighbourhoods(n: int, t: int, seed: int) -> Neighbourhoods:
    """Random top-T neighbourhoods with ragged padding; node 0 has none (degree 0)."""
    rng = np.random.default_rng(seed)
    idx = np.full((n, t), -1, dtype=np.int32)
    wts = np.zeros((n, t), dtype=np.float32)
    for i in range(1, n):
        k = rng.integers(1, t + 1)
        nb = rng.choice(np.delete(np.arange(n), i), size=k, replace=False)
        w = rng.random(k).astype(np.float32) + 0.05
        idx[i, :k], wts[i, :k] = nb, w / w.sum()
    return Neighbourhoods(indices=idx, weights=wts).validate()


def model_config(pooling: str = "importance", f: int = 6, m: int = 8, d: int = 16, k: int = 2) -> dict:
    return {"num_layers": k, "hidden_dim": m, "output_dim": d, "pooling": pooling, "input_dim": f}


def test_one_layer_hand_computed():
    # 3 nodes, F = m = d = 2, identity-like weights so each step can be followed by hand
    cfg = model_config(f=2, m=2, d=2, k=1)
    w = {
        "conv1/Q": np.eye(2, dtype=np.float32),
        "conv1/q": np.zeros(2, np.float32),
        "conv1/W": np.array([[1, 0], [0, 0], [0, 0], [0, 1]], np.float32),  # z = (h_0, n_1)
        "conv1/w": np.zeros(2, np.float32),
        "head/G1": np.eye(2, dtype=np.float32),
        "head/g": np.zeros(2, np.float32),
        "head/G2": np.eye(2, dtype=np.float32),
    }
    feats = np.array([[3.0, 1.0], [1.0, 2.0], [2.0, -4.0]], np.float32)
    nb = Neighbourhoods(
        indices=np.array([[1, 2], [0, -1], [-1, -1]], np.int32),
        weights=np.array([[0.25, 0.75], [1.0, 0.0], [0.0, 0.0]], np.float32),
    )
    # projections ReLU(h): [3,1], [1,2], [2,0]; node 0 pools 0.25*[1,2] + 0.75*[2,0] = [1.75, 0.5]
    # z0 = normalize(ReLU([3, 0.5])); node 1 pools [3,1] -> z1 = normalize([1, 1]); node 2: [2, 0]
    got = embed_all(w, cfg, feats, nb)
    want = np.array([[3, 0.5], [1, 1], [1, 0]], np.float64)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # max pooling takes the element-wise max instead: node 0 pools max([1,2],[2,0])[1] = 2
    got_max = embed_all(w, {**cfg, "pooling": "max"}, feats, nb)
    np.testing.assert_allclose(got_max[0], np.array([3, 2]) / np.sqrt(13), atol=1e-6)
    # mean pooling ignores α: node 0 pools ([1,2] + [2,0]) / 2 = [1.5, 1]
    got_mean = embed_all(w, {**cfg, "pooling": "mean"}, feats, nb)
    np.testing.assert_allclose(got_mean[0], np.array([3, 1]) / np.sqrt(10), atol=1e-6)


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_layerwise_equals_per_node_algorithm2(pooling):
    cfg = model_config(pooling)
    w = random_weights(cfg, seed=1)
    feats = np.random.default_rng(2).normal(size=(40, cfg["input_dim"])).astype(np.float32)
    nb = random_neighbourhoods(40, 5, seed=3)
    fast = embed_all(w, cfg, feats, nb, batch_size=7)
    nodes = np.arange(40)
    slow, n_proj = embed_nodes_naive(w, cfg, feats, nb, nodes)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert n_proj > 2 * 40  # the naive path projects shared neighbours again and again


def test_each_node_projected_once_per_layer():
    cfg = model_config(k=3)
    w = random_weights(cfg, seed=0)
    feats = np.random.default_rng(0).normal(size=(23, cfg["input_dim"])).astype(np.float32)
    stats = InferenceStats()
    embed_all(w, cfg, feats, random_neighbourhoods(23, 4, seed=0), batch_size=5, stats=stats)
    assert len(stats.projection_counts) == 3
    for counts in stats.projection_counts:
        assert counts.shape == (23,) and np.all(counts == 1)
    assert stats.projections == [23, 23, 23]
    # F=6, m=8, d=16: layer 1 2*(6*8 + 14*16) = 544, layers 2-3 2*(16*8 + 24*16) = 1024, head 2*2*256
    assert stats.dense_flops == 23 * (544 + 2 * 1024 + 1024)


def test_block_size_does_not_change_results():
    cfg = model_config("mean")
    w = random_weights(cfg, seed=4)
    feats = np.random.default_rng(4).normal(size=(31, cfg["input_dim"])).astype(np.float32)
    nb = random_neighbourhoods(31, 6, seed=4)
    np.testing.assert_allclose(embed_all(w, cfg, feats, nb, batch_size=4), embed_all(w, cfg, feats, nb), atol=1e-6)


def test_thread_count_does_not_change_results():
    # every block is computed the same way on whichever thread runs it: bit-identical output
    cfg = model_config("importance")
    w = random_weights(cfg, seed=5)
    feats = np.random.default_rng(5).normal(size=(57, cfg["input_dim"])).astype(np.float32)
    nb = random_neighbourhoods(57, 6, seed=5)
    one = embed_all(w, cfg, feats, nb, batch_size=8, num_threads=1)
    stats = InferenceStats()
    two = embed_all(w, cfg, feats, nb, batch_size=8, num_threads=2, stats=stats)
    np.testing.assert_array_equal(one, two)
    assert stats.threads == 2 and stats.dense_thread_seconds > 0 and stats.pool_thread_seconds > 0


def test_bad_inputs_are_named():
    cfg = model_config()
    w = random_weights(cfg)
    w["conv2/W"] = w["conv2/W"][:-1]
    feats = np.zeros((4, cfg["input_dim"]), np.float32)
    with pytest.raises(ContractError, match="conv2/W"):
        embed_all(w, cfg, feats, random_neighbourhoods(4, 2, 0))
    with pytest.raises(ContractError, match=r"features have shape \(4, 5\)"):
        embed_all(random_weights(cfg), cfg, np.zeros((4, 5), np.float32), random_neighbourhoods(4, 2, 0))


def test_collection_embeddings_pool_members():
    # items 0,1 in collection 0; item 2 in collection 1; collection 2 empty
    graph = CSRGraph.from_edges(np.array([0, 1, 2]), np.array([0, 0, 1]), num_items=3, num_collections=3)
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    got = collection_embeddings(emb, graph)
    np.testing.assert_allclose(got, [[0.5**0.5, 0.5**0.5], [0.6, 0.8], [0, 0]], atol=1e-6)
    # weights 3:1 on collection 0's edges (coll_indices order: item 0, item 1)
    got_w = collection_embeddings(emb, graph, edge_weights=np.array([3.0, 1.0, 1.0]))
    np.testing.assert_allclose(got_w[0], np.array([3, 1]) / np.sqrt(10), atol=1e-6)


def test_importance_weights_are_a_weighted_mean():
    # weights that do not sum to 1 are renormalised (as the Keras layer does): scaling them is a no-op
    cfg = model_config()
    w = random_weights(cfg, seed=5)
    feats = np.random.default_rng(5).normal(size=(12, cfg["input_dim"])).astype(np.float32)
    nb = random_neighbourhoods(12, 3, seed=5)
    scaled = Neighbourhoods(indices=nb.indices, weights=nb.weights * 3.0)
    np.testing.assert_allclose(embed_all(w, cfg, feats, scaled), embed_all(w, cfg, feats, nb), atol=1e-6)


def test_id_embedding_is_concatenated_to_features():
    cfg = {**model_config(), "id_embedding_dim": 3}
    base = model_config(f=cfg["input_dim"] + 3)
    w = random_weights(base, seed=6)
    feats = np.random.default_rng(6).normal(size=(15, cfg["input_dim"])).astype(np.float32)
    ids = np.random.default_rng(7).normal(size=(15, 3)).astype(np.float32)
    nb = random_neighbourhoods(15, 4, seed=6)
    got = embed_all({**w, "id_embedding/E": ids}, cfg, feats, nb)
    np.testing.assert_allclose(got, embed_all(w, base, np.concatenate([feats, ids], axis=1), nb), atol=1e-6)
    np.testing.assert_allclose(
        got, embed_nodes_naive({**w, "id_embedding/E": ids}, cfg, feats, nb, np.arange(15))[0], atol=1e-5
    )


def keras_forward(w: dict, cfg: dict, feats: np.ndarray, nb: Neighbourhoods) -> np.ndarray:
    """The model engineer's Keras PinSageModel on a minibatch of every node, with weights ``w``."""
    from pinsage_model.model.layers import PinSageModel
    from pinsage_model.model.minibatch import build_minibatch

    model = PinSageModel(
        input_dim=cfg["input_dim"],
        num_layers=cfg["num_layers"],
        hidden_dim=cfg["hidden_dim"],
        output_dim=cfg["output_dim"],
        pooling=cfg["pooling"],
    )
    for k, conv in enumerate(model.convs, 1):
        for name in ("Q", "q", "W", "w"):
            getattr(conv, name).assign(w[f"conv{k}/{name}"])
    model.G1.kernel.assign(w["head/G1"])
    model.G1.bias.assign(w["head/g"])
    model.G2.kernel.assign(w["head/G2"])
    batch = build_minibatch(np.arange(len(feats)), nb, feats, cfg["num_layers"])
    out = np.asarray(model(batch.model_inputs()))
    return out[batch.positions]


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_layerwise_equals_keras_model_forward(pooling):
    cfg = model_config(pooling, f=10, m=12, d=16)
    w = random_weights(cfg, seed=8)
    feats = np.random.default_rng(8).normal(size=(60, 10)).astype(np.float32)
    nb = random_neighbourhoods(60, 6, seed=8)
    np.testing.assert_allclose(embed_all(w, cfg, feats, nb, batch_size=16), keras_forward(w, cfg, feats, nb), atol=1e-5)


def test_arrow_vector_encoding_round_trips_with_nulls_and_slices():
    import pyarrow as pa

    from pinsage_model.spark.inference import decode, encode

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    batch = encode(np.array([5, 6, 7, 8]), x)
    assert batch.column("item_idx").to_pylist() == [5, 6, 7, 8]
    np.testing.assert_array_equal(decode(batch.column("v"), 3), x)
    np.testing.assert_array_equal(decode(batch.column("v").slice(1, 2), 3), x[1:3])
    with_null = pa.array([x[0].tobytes(), None, x[2].tobytes()], pa.binary())
    np.testing.assert_array_equal(decode(with_null, 3), [x[0], [0, 0, 0], x[2]])
