"""On the demo data, both inference backends equal the Keras model's forward (issue #6 acceptance).

The demo preset's graph (5k items), its importance neighbourhoods with the demo config's sampler
settings, the generator's item features, and the demo config's model shape. The weights are
random with non-zero biases (every term of Algorithm 1 matters) and go through the same path as a
trained model: the contract's weight dict rebuilt into a Keras ``PinSageModel``.
"""

from pathlib import Path

import numpy as np
import pytest

from bench.naive_inference import random_weights
from pinsage_model.inference.layerwise import embed_all

REPO = Path(__file__).resolve().parents[4]
TOLERANCE = 1e-4  # max abs difference of L2-normalised embeddings


@pytest.fixture(scope="module")
def demo_case():
    from pinsage_model.config import load_config
    from pinsage_model.data import synthetic
    from pinsage_model.graph.sampler import compute_neighbourhoods

    cfg = load_config(REPO / "configs" / "demo.yaml")
    data = synthetic.generate(cfg.data.preset, seed=cfg.data.seed)
    graph = synthetic.graph_of(data)
    nbhd = compute_neighbourhoods(graph, cfg.sampler, progress=False)
    feats = np.asarray(data.items.column("features").to_pylist(), dtype=np.float32)
    model_cfg = {
        "num_layers": cfg.model.num_layers,
        "hidden_dim": cfg.model.hidden_dim,
        "output_dim": cfg.model.output_dim,
        "pooling": cfg.model.pooling,
        "input_dim": feats.shape[1],
    }
    weights = random_weights(model_cfg, seed=11)
    return model_cfg, weights, feats, nbhd


@pytest.fixture(scope="module")
def keras_embeddings(demo_case):
    """The Keras model's forward over every demo item, in minibatches of 1,000 targets."""
    from pinsage_model.model.export import model_from_weights
    from pinsage_model.model.minibatch import build_minibatch

    model_cfg, weights, feats, nbhd = demo_case
    model = model_from_weights(weights, model_cfg)
    n = feats.shape[0]
    out = np.empty((n, model_cfg["output_dim"]), dtype=np.float32)
    for s in range(0, n, 1000):
        targets = np.arange(s, min(s + 1000, n))
        batch = build_minibatch(targets, nbhd, feats, model_cfg["num_layers"])
        out[targets] = np.asarray(model(batch.model_inputs()))[batch.positions]
    return out


@pytest.mark.slow
def test_demo_sizes_are_the_real_ones(demo_case):
    model_cfg, _, feats, nbhd = demo_case
    assert feats.shape[0] >= 4000 and nbhd.indices.shape == (feats.shape[0], 20)
    assert (nbhd.indices >= 0).sum() > 10 * feats.shape[0]  # real neighbourhoods, not padding
    assert model_cfg["hidden_dim"] == 128 and model_cfg["output_dim"] == 64


@pytest.mark.slow
def test_in_process_equals_keras_on_demo_data(demo_case, keras_embeddings):
    model_cfg, weights, feats, nbhd = demo_case
    got = embed_all(weights, model_cfg, feats, nbhd, batch_size=512, num_threads=2)
    assert np.abs(got - keras_embeddings).max() < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["gather", "shuffle"])
def test_spark_equals_keras_on_demo_data(spark, demo_case, keras_embeddings, strategy):
    from pinsage_model.spark.inference import embed_all_spark

    model_cfg, weights, feats, nbhd = demo_case
    got = embed_all_spark(spark, weights, model_cfg, feats, nbhd, strategy=strategy)
    assert np.abs(got - keras_embeddings).max() < TOLERANCE
