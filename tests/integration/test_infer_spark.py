"""The Spark MapReduce inference equals the in-process layer-wise inference."""

import numpy as np
import pytest

from pinsage_model.config import SamplerConfig, SparkConfig
from pinsage_model.contracts import Neighbourhoods
from pinsage_model.inference import embed_all, random_weights


@pytest.fixture(scope="module")
def spark():
    from pinsage_model.spark import get_spark

    return get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="1g"))


@pytest.fixture(scope="module")
def tiny_inputs():
    """Tiny synthetic graph, its sampler neighbourhoods, and the generator's item features."""
    from pinsage_model import synthetic
    from pinsage_model.sampler import compute_neighbourhoods

    data = synthetic.generate("tiny", seed=0)
    graph = synthetic.graph_of(data)
    nbhd = compute_neighbourhoods(graph, SamplerConfig(num_walks=20, walk_length=3, top_t=8), progress=False)
    feats = np.asarray(data.items.column("features").to_pylist(), dtype=np.float32)
    return feats, nbhd


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_spark_equals_in_process(spark, tiny_inputs, tmp_path, pooling):
    from pinsage_model.inference_spark import embed_all_spark

    feats, nbhd = tiny_inputs
    # a node with an empty neighbourhood exercises the left join's null -> zero path
    idx, wts = nbhd.indices.copy(), nbhd.weights.copy()
    idx[3], wts[3] = -1, 0.0
    nbhd = Neighbourhoods(indices=idx, weights=wts)
    cfg = {"num_layers": 2, "hidden_dim": 12, "output_dim": 16, "pooling": pooling, "input_dim": feats.shape[1]}
    w = random_weights(cfg, seed=3)
    want = embed_all(w, cfg, feats, nbhd)
    got = embed_all_spark(spark, w, cfg, feats, nbhd, scratch_dir=tmp_path / "scratch")
    assert got.shape == (feats.shape[0], 16)
    assert np.abs(got - want).max() < 1e-4
