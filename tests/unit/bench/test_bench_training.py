"""The training benchmark's FLOP count of one step, by hand on tiny shapes."""

from types import SimpleNamespace

from bench.bench_training import dense_products, sparse_flops

# S^(0), S^(1), S^(2) of 10, 4 and 2 nodes; T = 3; F = 5; one example, two shared negatives.
SHAPES = {"n": [10, 4, 2], "T": 3, "F": 5, "b": 1, "negatives": 2, "hard": 0}
MODEL = SimpleNamespace(hidden_dim=6, output_dim=3)


def test_dense_flops_of_a_step_by_hand():
    products = dense_products(SHAPES, MODEL, in_batch=False, id_embedding=False)
    flops = {name: 2 * r * k * c for name, r, k, c in products}
    # conv1 projection [h, 1] (10 x 6) @ (6 x 6): forward and dQ; no input gradient (features)
    assert flops["conv1 projection fwd"] == flops["conv1 projection dW"] == 720
    assert "conv1 projection dX" not in flops
    # conv1 W: (4 x 11) @ (11 x 3), forward, dW, dX
    assert flops["conv1 W fwd"] == flops["conv1 W dW"] == flops["conv1 W dX"] == 264
    # conv2 projection (4 x 4) @ (4 x 6) and W (2 x 9) @ (9 x 3), each three products
    assert sum(v for k, v in flops.items() if k.startswith("conv2 projection")) == 3 * 192
    assert sum(v for k, v in flops.items() if k.startswith("conv2 W")) == 3 * 108
    # head G1, G2 (2 x 3) @ (3 x 3); scores (1 x 3) @ (3 x 2)
    assert sum(v for k, v in flops.items() if k.startswith("head")) == 6 * 36
    assert sum(v for k, v in flops.items() if k.startswith("scores")) == 3 * 12
    assert sum(flops.values()) == 3384


def test_id_embeddings_add_the_first_input_gradient_and_in_batch_scores():
    names = {p[0] for p in dense_products(SHAPES, MODEL, in_batch=True, id_embedding=True)}
    assert {"conv1 projection dX", "scores in-batch fwd"} <= names


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
