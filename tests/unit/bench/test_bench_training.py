"""The training benchmark's FLOP count of one step, by hand on tiny shapes."""

from types import SimpleNamespace

from bench.bench_training import dense_products, sparse_flops

# S^(0), S^(1), S^(2) of 10, 4 and 2 nodes; T = 3; F = 5 dense features, no id embedding; one
# example, two shared negatives.
SHAPES = {"n": [10, 4, 2], "T": 3, "F": 5, "e": 0, "nnz": None, "b": 1, "negatives": 2, "hard": 0}
MODEL = SimpleNamespace(hidden_dim=6, output_dim=3)


def test_dense_flops_of_a_step_by_hand():
    products = dense_products(SHAPES, MODEL, in_batch=False)
    flops = {name: 2 * r * k * c for name, r, k, c in products}
    # conv1 projection [h, 1] (10 x 6) @ (6 x 6): forward and dQ; no input gradient (features)
    assert flops["conv1 projection fwd"] == flops["conv1 projection dW"] == 720
    assert "conv1 projection dX" not in flops and "conv1 W self dX" not in flops
    # conv1 W by row blocks: h_self (4 x 5) @ (5 x 3), pooled (4 x 6) @ (6 x 3) with its dX
    assert flops["conv1 W self fwd"] == flops["conv1 W self dW"] == 120
    assert flops["conv1 W pooled fwd"] == flops["conv1 W pooled dW"] == flops["conv1 W pooled dX"] == 144
    # conv2 projection [h, 1] (4 x 4) @ (4 x 6); W self (2 x 3) @ (3 x 3), pooled (2 x 6) @ (6 x 3)
    assert sum(v for k, v in flops.items() if k.startswith("conv2 projection")) == 3 * 192
    assert sum(v for k, v in flops.items() if k.startswith("conv2 W self")) == 3 * 36
    assert sum(v for k, v in flops.items() if k.startswith("conv2 W pooled")) == 3 * 72
    # head G1, G2 (2 x 3) @ (3 x 3); scores (1 x 3) @ (3 x 2)
    assert sum(v for k, v in flops.items() if k.startswith("head")) == 6 * 36
    assert sum(v for k, v in flops.items() if k.startswith("scores")) == 3 * 12
    assert sum(flops.values()) == 3264


def test_id_embeddings_and_in_batch_scores_add_their_products():
    products = dense_products({**SHAPES, "e": 2}, MODEL, in_batch=True)
    flops = {name: 2 * r * k * c for name, r, k, c in products}
    # ids (10 x 2) @ (2 x 6) into the projection and (4 x 2) @ (2 x 3) into W, with input gradients
    assert flops["conv1 projection ids fwd"] == flops["conv1 projection ids dX"] == 240
    assert flops["conv1 W ids fwd"] == flops["conv1 W ids dX"] == 48
    assert flops["scores in-batch fwd"] == 6


def test_sparse_features_leave_the_dense_products_for_a_sparse_one():
    sparse = {**SHAPES, "nnz": 7}
    names = {p[0].rsplit(" ", 1)[0] for p in dense_products(sparse, MODEL, in_batch=False)}
    assert "conv1 projection" not in names and "conv1 W self" not in names and "conv1 W pooled" in names
    # [h Q | h W] over 7 entries, forward and transposed: 2 x 2 x 7 x (6 + 3), on top of pooling
    assert sparse_flops(sparse, MODEL) - sparse_flops(SHAPES, MODEL) == 252


def test_sparse_pooling_flops_by_hand():
    # A @ P and A^T @ dP per layer: 2 x 2 x n_k x T x m
    assert sparse_flops(SHAPES, MODEL) == 4 * (4 * 3 * 6 + 2 * 3 * 6)


def test_dense_op_seconds_counts_every_matmul_kind_but_the_sparse_product():
    from bench.bench_training import dense_op_seconds

    profile = [
        {"op": "SparseMatrixMatMul", "s_per_step": 0.7},
        {"op": "_MklMatMul", "s_per_step": 0.5},
        {"op": "_MklNativeFusedMatMul", "s_per_step": 0.01},
        {"op": "BatchMatMulV2", "s_per_step": 0.02},
        {"op": "ReluGrad", "s_per_step": 0.05},
    ]
    assert dense_op_seconds(profile) == 0.5 + 0.01 + 0.02
