"""Users as query nodes in training (train.user_loss_weight): the user batches, their
neighbourhood weights, the user convolution and the joint loss, on hand-built graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pinsage_model.graph.csr import CSRGraph, Neighbourhoods
from pinsage_model.model.users import UserRows, sample_users, seen


def _rows(ordered: bool = True) -> UserRows:
    """User 0 engaged 10, 11, 12, 13, 14 in that order; user 1 engaged 3 then 7."""
    return UserRows(np.array([0, 5, 7]), np.array([10, 11, 12, 13, 14, 3, 7], np.int32), ordered)


def test_user_rows_come_oldest_first_and_skip_users_with_one_item():
    # collection 0 holds items 0, 1, 2 engaged in the order 0, 2, 1 (recency: later items);
    # collection 1 holds item 3 only; collection 2 holds items 1, 3, item 3 the latest.
    graph = CSRGraph.from_edges(np.array([0, 1, 2, 3, 1, 3]), np.array([0, 0, 0, 1, 2, 2]), 4, 3)
    recency = np.array([2, 0, 1, 0, 1, 0], np.int32)  # aligned with coll_indices [0 1 2 | 3 | 1 3]
    rows = UserRows.from_graph(graph, recency, np.array([0, 1, 2]))
    assert rows.indptr.tolist() == [0, 3, 5] and rows.items.tolist() == [0, 2, 1, 1, 3] and rows.ordered
    # the cut is uniform in [1, L-1]: the target is never the oldest item, the others alike
    np.testing.assert_allclose(rows.target_weights(), [0, 0.5, 0.5, 0, 1])
    unordered = UserRows.from_graph(graph, np.zeros(6, np.int32), np.array([2, 0]))
    assert not unordered.ordered and unordered.indptr.tolist() == [0, 2, 5]
    np.testing.assert_allclose(unordered.target_weights(), [0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])


def test_ordered_users_predict_the_next_item_from_the_latest_inputs():
    rows = _rows()
    batch = sample_users(np.random.default_rng(0), rows, 64, neighbours=2, half_life=2.0)
    assert batch.index.shape == (64, 2) and set(batch.users.tolist()) == {0, 1}
    for r in range(64):
        seq = rows.items[rows.indptr[batch.users[r]] : rows.indptr[batch.users[r] + 1]].tolist()
        cut = seq.index(batch.targets[r])  # the target is the item right after the input
        assert cut >= 1
        kept = min(cut, 2)
        assert batch.index[r, :kept].tolist() == seq[cut - 1 :: -1][:kept]  # latest first
        assert batch.index[r, kept:].tolist() == [-1] * (2 - kept)
        # importance exp(-age / 2): age 0 for the latest input, 1 for the one before
        np.testing.assert_allclose(batch.weight[r], [1.0, math.exp(-0.5)][:kept] + [0.0] * (2 - kept), rtol=1e-6)
    cuts = [rows.items[:5].tolist().index(t) for t, u in zip(batch.targets, batch.users) if u == 0]
    assert set(cuts) == {1, 2, 3, 4}  # every cut of user 0 is drawn
    again = sample_users(np.random.default_rng(0), rows, 64, neighbours=2, half_life=2.0)
    np.testing.assert_array_equal(again.index, batch.index)


def test_unordered_users_hold_out_a_random_item_and_weigh_inputs_alike():
    rows = _rows(ordered=False)
    batch = sample_users(np.random.default_rng(1), rows, 400, neighbours=3, half_life=2.0)
    targets = [t for t, u in zip(batch.targets, batch.users) if u == 0]
    assert set(targets) == {10, 11, 12, 13, 14}  # any item, the oldest too: there is no order
    for r in range(400):
        user = set(rows.items[rows.indptr[batch.users[r]] : rows.indptr[batch.users[r] + 1]].tolist())
        inputs = [i for i in batch.index[r].tolist() if i >= 0]
        assert len(set(inputs)) == len(inputs) and set(inputs) <= user - {batch.targets[r]}
        np.testing.assert_array_equal(batch.weight[r], (batch.index[r] >= 0).astype(np.float32))


def test_seen_marks_the_users_own_items():
    rows = _rows()
    got = seen(rows, np.array([1, 0, 1]), np.array([7, 10, 5, 3]))
    assert got.tolist() == [[True, False, False, True], [False, True, False, False], [True, False, False, True]]


def test_user_targets_log_q_weighs_items_by_how_often_they_are_targets():
    from pinsage_model.model.batches import candidate_log_q

    rows = UserRows(np.array([0, 3, 5]), np.array([0, 2, 1, 1, 3], np.int32), True)
    # targets: user 0 -> 2 or 1 (1/2 each), user 1 -> 3: frequencies 0, 1/4, 1/4, 1/2 of 2 users;
    # Q = 2 shared draws over 4 items + 2 in-batch draws by frequency
    got = candidate_log_q(rows.items, np.arange(4), 4, 2, 2, rows.target_weights())
    np.testing.assert_allclose(got, np.log([0.5, 1.0, 1.0, 1.5]), rtol=1e-6)
    # without weights: the old rule, counts of the positives
    np.testing.assert_allclose(
        candidate_log_q(np.array([1, 1, 3]), np.arange(4), 4, 2, 3), np.log([0.5, 2.5, 0.5, 1.5]), rtol=1e-6
    )


def _chain_neighbourhoods() -> Neighbourhoods:
    """Item i's neighbours are i+1 and i+2 (mod 8), weights 0.75 and 0.25."""
    idx = np.array([[(i + 1) % 8, (i + 2) % 8] for i in range(8)], np.int32)
    return Neighbourhoods(idx, np.tile(np.array([0.75, 0.25], np.float32), (8, 1)))


def test_context_nodes_join_the_layer_below_only():
    from pinsage_model.model.minibatch import build_minibatch

    nb, feats = _chain_neighbourhoods(), np.eye(8, dtype=np.float32)
    plain = build_minibatch(np.array([0]), nb, feats, 2)
    mb = build_minibatch(np.array([0]), nb, feats, 2, context=np.array([5, 1]))
    # S^(2) = {0}; S^(1) = {0, 1, 2} + context {5} (1 is there already); S^(0) adds their neighbours
    assert mb.sizes[2] == 1 and mb.nodes[: mb.sizes[1]].tolist() == [0, 1, 2, 5]
    assert mb.nodes[mb.context_positions].tolist() == [5, 1] and mb.context_positions.max() < mb.sizes[1]
    assert sorted(mb.nodes.tolist()) == [0, 1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(mb.index[1], plain.index[1])  # layer 2 reads the same rows
    one = build_minibatch(np.array([0]), nb, feats, 1, context=np.array([6]))
    assert one.nodes.tolist() == [0, 1, 2, 6] and one.context_positions.tolist() == [3]


def _user_model(num_layers: int, pooling: str = "importance"):
    import keras

    from pinsage_model.model.layers import PinSageModel

    keras.utils.set_random_seed(0)
    model = PinSageModel(
        input_dim=8, num_layers=num_layers, hidden_dim=6, output_dim=4, pooling=pooling, user_half_life=2.0
    )
    model.user_self.assign(np.linspace(-1, 1, model.user_self.shape[0]).astype(np.float32))
    return model


def test_a_user_is_the_last_convolution_of_its_items_by_hand():
    """One layer: u = head(normalise(ReLU(own W_self + (sum_j a_j ReLU(x_j Q + q) / sum a) W_nb + w)))."""
    model = _user_model(1)
    from pinsage_model.model.minibatch import build_minibatch

    nb, feats = _chain_neighbourhoods(), np.eye(8, dtype=np.float32)
    mb = build_minibatch(np.array([0]), nb, feats, 1, context=np.array([4, 6]))
    inputs = {**mb.model_inputs(), "user_index": mb.context_positions[None, :], "user_weight": np.array([[1.0, 3.0]])}
    z, u = model.embed_with_users(inputs)
    conv = model.convs[0]
    Q, q, W, w = (v.numpy() for v in (conv.Q, conv.q, conv.W, conv.w))
    pooled = (1.0 * np.maximum(feats[4] @ Q + q, 0) + 3.0 * np.maximum(feats[6] @ Q + q, 0)) / 4.0
    h = np.maximum(model.user_self.numpy() @ W[:8] + pooled @ W[8:] + w, 0)
    h /= np.linalg.norm(h)
    g = np.maximum(h @ model.G1.kernel.numpy() + model.G1.bias.numpy(), 0) @ model.G2.kernel.numpy()
    np.testing.assert_allclose(u.numpy()[0], g / np.linalg.norm(g), atol=1e-5)
    np.testing.assert_array_equal(z.numpy(), model(inputs).numpy())  # the items are untouched


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_training_and_inference_give_a_user_the_same_vector(pooling):
    """The training forward (minibatch, TF) and the embeddings stage's (layer-wise numpy) agree
    for a user whose importance in training is its items' recency."""
    from pinsage_model.inference.layerwise import embed_all, user_embeddings
    from pinsage_model.model.export import model_config, model_weights
    from pinsage_model.model.minibatch import build_minibatch

    model = _user_model(2, pooling)
    nb, feats = _chain_neighbourhoods(), np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    items, recency = np.array([3, 5, 6]), np.array([2, 0, 1])  # 3 oldest, 5 latest
    mb = build_minibatch(np.array([0]), nb, feats, 2, context=items)
    alpha = np.exp(-recency / 2.0).astype(np.float32)[None, :]
    _, u = model.embed_with_users(
        {**mb.model_inputs(), "user_index": mb.context_positions[None, :], "user_weight": alpha}
    )
    weights, config = model_weights(model), model_config(model)
    proj = np.empty((8, 6), np.float32)
    embed_all(weights, config, feats, nb, last_projections=proj)
    got = user_embeddings(proj, np.array([0, 3, 3]), items, recency, weights, config)
    np.testing.assert_allclose(got[0], u.numpy()[0], atol=1e-5)
    assert np.isfinite(got[1]).all()  # a user without items is its own representation alone


def _producer(weight: float, users: UserRows | None):
    from pinsage_model.config import SamplerConfig, TrainConfig
    from pinsage_model.model.batches import BatchProducer, TrainData

    rng = np.random.default_rng(0)
    items = np.concatenate([rng.choice(6, 4, replace=False) + 6 * (c % 4) for c in range(40)])
    graph = CSRGraph.from_edges(items, np.repeat(np.arange(40), 4), 24, 40)
    nb = Neighbourhoods(
        np.array([[(i + 1) % 24, (i + 2) % 24] for i in range(24)], np.int32), np.full((24, 2), 0.5, np.float32)
    )
    q, p = np.array([0, 1, 2, 6, 7, 8, 12, 13], np.int32), np.array([1, 2, 3, 7, 8, 9, 13, 14], np.int32)
    data = TrainData(rng.normal(size=(24, 3)).astype(np.float32), nb, graph, q, p, q[:2], p[:2], users=users)
    cfg = TrainConfig(batch_size=8, num_negatives=5, use_hard_negatives=False, seed=1, user_loss_weight=weight)
    sampler = SamplerConfig(top_t=2)
    return BatchProducer(data, 2, cfg, sampler, num_replicas=2), cfg, graph


def _graph_users(graph: CSRGraph) -> UserRows:
    return UserRows.from_graph(graph, np.zeros(graph.num_edges, np.int32), np.arange(graph.num_collections))


def test_weight_zero_builds_the_item_batches_of_before():
    prod, _, graph = _producer(0.0, None)
    with_users, _, _ = _producer(0.0, _graph_users(graph))
    joint, _, _ = _producer(0.5, _graph_users(graph))
    order = prod.epoch_order(1)
    old, off, on = (p.make(1, 0, order)["shards"] for p in (prod, with_users, joint))
    for a, b, c in zip(old, off, on):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        # the user term adds its keys and the users' nodes, never other items' queries or negatives
        assert set(c) - set(a) == {
            "user_index",
            "user_weight",
            "u_pos",
            "u_logq",
            "u_n_logq",
            "u_drop_neg",
            "u_drop_batch",
        }
        for key in ("q_pos", "p_pos", "n_pos"):
            np.testing.assert_array_equal(a["node_ids"][a[key]], c["node_ids"][c[key]])
        # user rows: their inputs are rows of S^(1), their targets rows of S^(2)
        assert c["user_index"].max() < len(c["index_1"]) and c["u_pos"].max() < len(c["index_2"])
    with pytest.raises(ValueError, match="training users"):
        _producer(0.5, None)


def test_joint_loss_is_item_loss_plus_weighted_user_loss_and_weight_zero_is_the_old_loss():
    import tensorflow as tf

    from pinsage_model.model.layers import PinSageModel
    from pinsage_model.model.training import per_example_loss, per_user_loss, step_loss

    graph = _producer(0.0, None)[2]
    prod, cfg, _ = _producer(0.5, _graph_users(graph))
    shard = {k: tf.constant(v) for k, v in prod.make(1, 0, prod.epoch_order(1))["shards"][0].items()}
    model = PinSageModel(input_dim=3, num_layers=2, hidden_dim=6, output_dim=4, user_half_life=10.0)
    z, u = model.embed_with_users(shard)
    item = tf.reduce_sum(per_example_loss(cfg, model.shift_queries)(z, shard)) / 8.0
    user = tf.reduce_sum(per_user_loss(cfg, model.shift_queries)(z, u, shard)) / 8.0
    np.testing.assert_allclose(step_loss(model, cfg, 8)(shard).numpy(), item.numpy() + 0.5 * user.numpy(), rtol=1e-6)
    assert user.numpy() > 0
    # weight 0: the loss and gradients of the item loss alone, as the step computed them before
    off = cfg.replace(user_loss_weight=0.0)
    with tf.GradientTape(persistent=True) as tape:
        new = step_loss(model, off, 8)(shard)
        old = tf.reduce_sum(per_example_loss(off, model.shift_queries)(model(shard, training=True), shard)) / 8.0
    assert new.numpy() == old.numpy()
    for a, b in zip(tape.gradient(new, model.trainable_variables), tape.gradient(old, model.trainable_variables)):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy())


def test_a_published_version_serves_the_user_vector_the_embeddings_stage_writes(tmp_path):
    """user_nodes.npz travels with the index: a homefeed query over a user's recent items (oldest
    first) is the collection's vector of the embeddings stage plus the query shift."""
    from pinsage_model.graph.csr import CSRGraph, collection_recency
    from pinsage_model.inference.layerwise import embed_all, user_embeddings
    from pinsage_model.model.export import model_config, model_weights
    from pinsage_model.model.user_head import user_vectors
    from pinsage_model.model.users import user_nodes_arrays
    from pinsage_model.serving.index import publish
    from pinsage_model.serving.query import LoadedVersion, load_version

    model = _user_model(2)
    nb, feats = _chain_neighbourhoods(), np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32)
    weights, config = model_weights(model), model_config(model)
    proj = np.empty((8, 6), np.float32)
    emb = embed_all(weights, config, feats, nb, last_projections=proj)
    # the collection holds items 2, 4, 7: engaged 7, then 2, then 4 (recency 1, 0, 2)
    colls = user_embeddings(proj, np.array([0, 3]), np.array([2, 4, 7]), np.array([1, 0, 2]), weights, config)
    ids = [f"m{i}" for i in range(8)]
    vdir = publish(emb, ids, tmp_path, "m1", {}, created_at="2026-01-01T00:00:00Z", query_shift=np.full(4, 0.1))
    assert load_version(vdir).user_nodes is None
    nodes = user_nodes_arrays(proj, weights, config)

    def published(**user) -> "LoadedVersion":
        kw = dict(created_at="2026-01-01T00:00:00Z", query_shift=np.full(4, 0.1), user_nodes=nodes, **user)
        return load_version(publish(emb, ids, tmp_path, "m1", {}, **kw))

    version = published()
    np.testing.assert_allclose(version.user_query(["m7", "m2", "m4"]), colls[0] + 0.1, atol=1e-6)
    np.testing.assert_allclose(version.user_shift, np.full(4, 0.1))
    assert version.homefeed_from_recent(["m7", "m2", "m4"], k=3).item_ids[0] not in {"m7", "m2", "m4"}
    # with a user head as well, the query is the mean of the two users' queries (the embeddings
    # stage writes the mean of the vectors and of the shifts): recency 1, 0, 2 as above
    rng = np.random.default_rng(2)
    head = {
        "W1": rng.normal(size=(4, 3)).astype(np.float32),
        "b1": rng.normal(size=3).astype(np.float32),
        "W2": rng.normal(size=(3, 4)).astype(np.float32),
        "shift": np.full(4, 0.3, np.float32),
        "recency_half_life": np.float32(2.0),
    }
    g = CSRGraph.from_edges(np.array([2, 4, 7]), np.zeros(3, int), 8, 1)
    by_head = user_vectors(
        emb, g, collection_recency(g, np.array([2, 4, 7]), np.zeros(3, int), np.array([2, 3, 1])), head
    )
    both = published(user_head=head)
    want = 0.5 * ((colls[0] + 0.1) + (by_head[0] + 0.3))
    np.testing.assert_allclose(both.user_query(["m7", "m2", "m4"]), want, atol=1e-5)
    np.testing.assert_allclose(both.user_shift, np.full(4, 0.2), atol=1e-7)
