"""PinSageConv (Algorithm 1) against hand-computed numbers; PinSageModel serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pinsage_model.model.layers import PinSageConv, PinSageModel  # noqa: E402

# 4-node graph. Features h: node0 [1,0], node1 [0,1], node2 [1,1], node3 [2,0].
H = np.array([[1, 0], [0, 1], [1, 1], [2, 0]], np.float32)
# Neighbourhoods (T = 2): 0 -> {1: 0.75, 2: 0.25}; 1 -> {0: 1}; 2 -> {0: 0.5, 3: 0.5}; 3 -> none.
INDEX = np.array([[1, 2], [0, -1], [0, 3], [-1, -1]], np.int32)
WEIGHT = np.array([[0.75, 0.25], [1.0, 0.0], [0.5, 0.5], [0.0, 0.0]], np.float32)
# Q = I, q = [0, -0.5]  =>  ReLU(h Q + q): node0 [1,0], node1 [0,0.5], node2 [1,0.5], node3 [2,0].
Q = np.eye(2, dtype=np.float32)
q = np.array([0.0, -0.5], np.float32)
# W stacks I over I, w = [0, 0.25]  =>  z = ReLU(h_u + n_u + [0, 0.25]).
W = np.vstack([np.eye(2), np.eye(2)]).astype(np.float32)
w = np.array([0.0, 0.25], np.float32)

# Worked by hand (z before normalisation in the comments; values are z / ||z||):
EXPECTED = {
    # n0 = .75*[0,.5] + .25*[1,.5] = [.25,.5] -> z0 = [1.25,.75]; n1 = [1,0] -> z1 = [1,1.25];
    # n2 = .5*[1,0] + .5*[2,0] = [1.5,0] -> z2 = [2.5,1.25]; n3 = 0 -> z3 = [2,.25].
    "importance": [[0.857493, 0.514496], [0.624695, 0.780869], [0.894427, 0.447214], [0.992278, 0.124035]],
    # n0 = mean([0,.5],[1,.5]) = [.5,.5] -> z0 = [1.5,.75]; others as above (one or equal weights).
    "mean": [[0.894427, 0.447214], [0.624695, 0.780869], [0.894427, 0.447214], [0.992278, 0.124035]],
    # n0 = max([0,.5],[1,.5]) = [1,.5] -> z0 = [2,.75]; n2 = max([1,0],[2,0]) = [2,0] -> z2 = [3,1.25].
    "max": [[0.936329, 0.351123], [0.624695, 0.780869], [0.923077, 0.384615], [0.992278, 0.124035]],
}


def _conv(pooling: str) -> PinSageConv:
    conv = PinSageConv(hidden_dim=2, output_dim=2, pooling=pooling)
    conv.build((None, 2))
    conv.set_weights([Q, q, W, w])
    return conv


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_conv_matches_hand_computation(pooling):
    out = np.asarray(_conv(pooling)(H, INDEX, WEIGHT))
    np.testing.assert_allclose(out, np.array(EXPECTED[pooling]), atol=1e-5)


def test_conv_on_a_prefix_uses_own_row_as_self():
    # Only nodes 0 and 1 form S^(k): their rows are the first rows of the previous layer.
    out = np.asarray(_conv("importance")(H, INDEX[:2], WEIGHT[:2]))
    np.testing.assert_allclose(out, np.array(EXPECTED["importance"][:2]), atol=1e-5)


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooling"):
        PinSageConv(hidden_dim=2, output_dim=2, pooling="sum")


def _inputs(rng, n0=6, F=3, T=2):
    # Layer 1: nodes 0..3 of S^(0) (n_1 = 4); layer 2: nodes 0..1 (n_2 = 2).
    return {
        "features": rng.normal(size=(n0, F)).astype(np.float32),
        "node_ids": np.array([5, 1, 7, 0, 2, 3], np.int32),
        "index_1": np.array([[4, 5], [0, -1], [1, 3], [-1, -1]], np.int32),
        "weight_1": np.array([[0.5, 0.5], [1, 0], [0.2, 0.8], [0, 0]], np.float32),
        "index_2": np.array([[1, 2], [3, -1]], np.int32),
        "weight_2": np.array([[0.6, 0.4], [1, 0]], np.float32),
    }


def test_model_save_and_reload(tmp_path):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = PinSageModel(
        input_dim=3, num_layers=2, hidden_dim=4, output_dim=8, pooling="max", num_items=8, id_embedding_dim=2
    )
    x = _inputs(rng)
    z = np.asarray(model(x))
    assert z.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(again, PinSageModel)
    assert again.get_config()["pooling"] == "max" and again.get_config()["id_embedding_dim"] == 2
    np.testing.assert_allclose(np.asarray(again(x)), z, atol=1e-6)
    conv = PinSageConv.from_config(model.convs[0].get_config())
    assert (conv.hidden_dim, conv.output_dim, conv.pooling) == (4, 8, "max")


def test_weights_npz_round_trip(tmp_path):
    from pinsage_model.model.export import load_weights_npz, model_from_weights, save_weights_npz

    rng = np.random.default_rng(1)
    model = PinSageModel(input_dim=3, num_layers=2, hidden_dim=4, output_dim=3)
    x = _inputs(rng)
    save_weights_npz(model, tmp_path)
    weights, config = load_weights_npz(tmp_path)
    assert weights["conv1/Q"].shape == (3, 4) and weights["conv2/W"].shape == (3 + 4, 3)
    assert weights["head/G1"].shape == (3, 3) and weights["head/g"].shape == (3,)
    assert config == {
        "num_layers": 2,
        "hidden_dim": 4,
        "output_dim": 3,
        "pooling": "importance",
        "input_dim": 3,
        "id_embedding_dim": 0,
        "num_items": 0,
        "query_shift": False,
    }
    np.testing.assert_allclose(np.asarray(model_from_weights(weights, config)(x)), np.asarray(model(x)), atol=1e-6)


def test_query_shift_moves_queries_only_and_round_trips(tmp_path):
    from pinsage_model.data.contracts import ContractError
    from pinsage_model.model.export import load_weights_npz, model_from_weights, save_weights_npz

    rng = np.random.default_rng(2)
    model = PinSageModel(input_dim=3, num_layers=2, hidden_dim=4, output_dim=3, query_shift=True)
    x = _inputs(rng)
    z = np.asarray(model(x))
    # Starts at zero: the scores begin as the paper's cosine.
    np.testing.assert_array_equal(np.asarray(model.shift_queries(z)), z)
    model.query_shift.assign([0.5, -1.0, 2.0])
    np.testing.assert_allclose(np.asarray(model.shift_queries(z)), z + [0.5, -1.0, 2.0], atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(model(x)), axis=1), 1.0, atol=1e-5)  # candidates stay unit
    assert "query_shift" in {v.name for v in model.trainable_variables}
    save_weights_npz(model, tmp_path)
    weights, config = load_weights_npz(tmp_path)
    assert config["query_shift"] is True
    np.testing.assert_array_equal(weights["head/query_shift"], np.float32([0.5, -1.0, 2.0]))
    again = model_from_weights(weights, config)
    np.testing.assert_array_equal(again.query_shift.numpy(), model.query_shift.numpy())
    np.savez(tmp_path / "weights.npz", **{k: v for k, v in weights.items() if k != "head/query_shift"})
    with pytest.raises(ContractError, match="head/query_shift"):
        load_weights_npz(tmp_path)
    plain = PinSageModel(input_dim=3, num_layers=2, hidden_dim=4, output_dim=3)
    assert plain.query_shift is None and np.array_equal(np.asarray(plain.shift_queries(z)), z)


def test_weighted_pool_and_its_gradient_by_hand():
    import tensorflow as tf

    from pinsage_model.model.layers import weighted_pool

    projected = tf.constant([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    index = np.array([[1, 2], [0, -1]], np.int32)
    alpha = np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)
    with tf.GradientTape() as tape:
        tape.watch(projected)
        pooled = weighted_pool(projected, index, alpha)
        loss = tf.reduce_sum(pooled * tf.constant([[1.0, 2.0], [3.0, 4.0]]))
    # pooled0 = .25*[0,2] + .75*[3,1] = [2.25, 1.25]; pooled1 = [1, 0].
    np.testing.assert_allclose(pooled.numpy(), [[2.25, 1.25], [1.0, 0.0]], atol=1e-6)
    # d loss / d projected[v] = sum_u alpha[u, v] * g[u]: row0 = 1*[3,4]; row1 = .25*[1,2]; row2 = .75*[1,2].
    np.testing.assert_allclose(tape.gradient(loss, projected).numpy(), [[3, 4], [0.25, 0.5], [0.75, 1.5]], atol=1e-6)


def _reference_forward(model, x):
    """The model as it was written before issue #24's speed-ups: features and id vectors
    concatenated, the bias added after the product, neighbours gathered into an (n_k, T, m)
    tensor and pooled, [h_self, pooled] concatenated before W."""
    import tensorflow as tf

    from pinsage_model.model.layers import l2_normalize

    h = tf.constant(x["features"])
    if model.id_embedding is not None:
        rows = tf.gather(model.id_rows, x["node_ids"])
        ids = model.id_embedding(tf.maximum(rows, 0))
        h = tf.concat([h, tf.reduce_sum(ids * tf.cast(rows >= 0, ids.dtype)[:, :, None], axis=1)], axis=1)
    for k, conv in enumerate(model.convs, 1):
        index, weight = x[f"index_{k}"], x[f"weight_{k}"]
        mask = tf.cast(index >= 0, tf.float32)
        projected = tf.nn.relu(tf.matmul(h, conv.Q) + conv.q)
        neigh = tf.gather(projected, tf.maximum(index, 0))
        if conv.pooling == "importance":
            alpha = weight * mask
            alpha = alpha / tf.maximum(tf.reduce_sum(alpha, axis=1, keepdims=True), 1e-12)
            pooled = tf.einsum("nt,ntm->nm", alpha, neigh)
        else:
            count = tf.reduce_sum(mask, axis=1, keepdims=True)
            pooled = tf.einsum("nt,ntm->nm", mask, neigh) / tf.maximum(count, 1.0)
        z = tf.nn.relu(tf.matmul(tf.concat([h[: index.shape[0]], pooled], axis=1), conv.W) + conv.w)
        h = l2_normalize(z)
    return l2_normalize(model.G2(model.G1(h)))


@pytest.mark.parametrize(
    "pooling,id_dim,sparse",
    [
        ("importance", 0, False),
        ("mean", 0, False),
        ("importance", 3, False),
        ("importance", 0, True),
        ("mean", 3, True),
    ],
)
def test_gradients_of_a_fixed_batch_are_unchanged(pooling, id_dim, sparse):
    """One batch's loss and every weight's gradient against the model as written before the
    speed-ups (:func:`_reference_forward`), to 1e-5; ``sparse``: the features (70% zeros) fed as
    their non-zero entries, as the producer feeds sparse features."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    n0, n1, n2, T, F = 40, 12, 5, 4, 6
    x = {
        "features": rng.normal(size=(n0, F)).astype(np.float32),
        "node_ids": rng.permutation(n0).astype(np.int32),
        "index_1": np.where(rng.random((n1, T)) < 0.2, -1, rng.integers(0, n0, (n1, T))).astype(np.int32),
        "weight_1": rng.random((n1, T)).astype(np.float32),
        "index_2": np.where(rng.random((n2, T)) < 0.2, -1, rng.integers(0, n1, (n2, T))).astype(np.int32),
        "weight_2": rng.random((n2, T)).astype(np.float32),
    }
    x["index_1"][3] = -1  # a node without neighbours pools to 0
    if sparse:
        x["features"][rng.random((n0, F)) < 0.7] = 0.0
    keras.utils.set_random_seed(0)
    model = PinSageModel(
        input_dim=F, num_layers=2, hidden_dim=16, output_dim=8, pooling=pooling, num_items=n0, id_embedding_dim=id_dim
    )
    target = tf.constant(np.random.default_rng(4).normal(size=(n2, 8)).astype(np.float32))

    def loss_and_grads(forward):
        with tf.GradientTape() as tape:
            z = forward(x)
            loss = tf.reduce_sum(z * target)
        grads = tape.gradient(loss, model.trainable_variables)
        return loss.numpy(), [tf.convert_to_tensor(g).numpy() for g in grads]

    fed = dict(x)
    if sparse:
        rows, cols = np.nonzero(x["features"])  # row-major
        fed["feature_indices"] = np.stack([rows, cols], axis=1).astype(np.int64)
        fed["feature_values"] = x["features"][rows, cols]
        del fed["features"]
    loss, grads = loss_and_grads(lambda inputs: model(fed, training=True))
    ref_loss, ref_grads = loss_and_grads(lambda inputs: _reference_forward(model, inputs))
    np.testing.assert_allclose(loss, ref_loss, atol=1e-5)  # a sum of O(1) terms that nearly cancel
    # Q, q, W, w of two layers; G1 kernel and bias, G2; the id table
    assert len(grads) == len(ref_grads) == 11 + (id_dim > 0)
    for g, r in zip(grads, ref_grads):
        scale = np.abs(r).max()
        assert scale > 0
        # 1e-5 of the gradient's largest entry: entries near zero come out of cancellations
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * scale)
