"""The Spark MapReduce inference equals the in-process layer-wise inference."""

import numpy as np
import pytest

from bench.naive_inference import random_weights
from pinsage_model.config import SamplerConfig, SparkConfig
from pinsage_model.graph.csr import Neighbourhoods
from pinsage_model.inference.layerwise import embed_all


@pytest.fixture(scope="module")
def spark():
    from pinsage_model.spark.session import get_spark

    return get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="1g"))


@pytest.fixture(scope="module")
def tiny_inputs():
    """Tiny synthetic graph, its sampler neighbourhoods, and the generator's item features."""
    from pinsage_model.data import synthetic
    from pinsage_model.graph.sampler import compute_neighbourhoods

    data = synthetic.generate("tiny", seed=0)
    graph = synthetic.graph_of(data)
    nbhd = compute_neighbourhoods(graph, SamplerConfig(num_walks=20, walk_length=3, top_t=8), progress=False)
    feats = np.asarray(data.items.column("features").to_pylist(), dtype=np.float32)
    return feats, nbhd


@pytest.mark.slow
@pytest.mark.parametrize(
    "pooling,strategy",
    # importance with the gather strategy: test_spark_backend_stage_equals_numpy (auto picks it)
    [("importance", "shuffle"), ("mean", "gather"), ("max", "broadcast")],
)
def test_spark_equals_in_process(spark, tiny_inputs, tmp_path, monkeypatch, pooling, strategy):
    from pinsage_model.spark import inference as inference_spark
    from pinsage_model.spark.inference import embed_all_spark

    # small files: several scan partitions, so items must not straddle a split
    monkeypatch.setattr(inference_spark, "_ROWS_PER_FILE", 32)
    monkeypatch.setattr(inference_spark, "GATHER_BLOCK_ROWS", 16)  # several blocks per task, several tasks

    feats, nbhd = tiny_inputs
    # a node with an empty neighbourhood exercises the left join's null -> zero path
    idx, wts = nbhd.indices.copy(), nbhd.weights.copy()
    idx[3], wts[3] = -1, 0.0
    nbhd = Neighbourhoods(indices=idx, weights=wts)
    cfg = {"num_layers": 2, "hidden_dim": 12, "output_dim": 16, "pooling": pooling, "input_dim": feats.shape[1]}
    w = random_weights(cfg, seed=3)
    want = embed_all(w, cfg, feats, nbhd)
    got = embed_all_spark(spark, w, cfg, feats, nbhd, scratch_dir=tmp_path / "scratch", strategy=strategy)
    if strategy == "gather":  # the map-side join's shared arrays: projections and outputs per layer
        assert {"p1.bin", "p2.bin", "h1.bin", "h2.bin"} <= {p.name for p in (tmp_path / "scratch").iterdir()}
    else:
        assert len(list((tmp_path / "scratch" / "edges").glob("*.parquet"))) > 3
    assert got.shape == (feats.shape[0], 16)
    assert np.abs(got - want).max() < 1e-4


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_inputs):
    """A run directory with raw, graph, features, neighbourhoods and a (random-weight) model."""
    import json

    import pyarrow as pa

    from pinsage_model.data import synthetic
    from pinsage_model.io import atomic_save_npz, atomic_write_json, atomic_write_parquet

    feats, nbhd = tiny_inputs
    data = synthetic.generate("tiny", seed=0)
    run = tmp_path_factory.mktemp("runs") / "tiny"
    synthetic.write(data, run / "raw")
    graph = synthetic.graph_of(data)
    (run / "graph").mkdir(parents=True)
    graph.save(run / "graph" / "graph.npz")
    n, c = graph.num_items, graph.num_collections
    in_train = np.arange(n) % 2 == 0  # odd items play the items held out of training
    atomic_write_parquet(
        run / "graph" / "item_ids.parquet",
        pa.table(
            {
                "item_idx": pa.array(np.arange(n, dtype=np.int32)),
                "item_id": data.items.column("item_id"),
                "in_train_graph": pa.array(in_train),
            }
        ),
    )
    atomic_write_parquet(
        run / "graph" / "collection_ids.parquet",
        pa.table(
            {
                "collection_idx": pa.array(np.arange(c, dtype=np.int32)),
                "collection_id": [f"c{j:06d}" for j in range(c)],
                "in_train_graph": pa.array(np.ones(c, bool)),
            }
        ),
    )
    (run / "features").mkdir()
    np.save(run / "features" / "features.npy", feats)
    nbhd.save(run / "neighbourhoods" / "full.npz")
    cfg = {"num_layers": 2, "hidden_dim": 12, "output_dim": 16, "pooling": "importance", "input_dim": feats.shape[1]}
    w = random_weights(cfg, seed=11)
    atomic_save_npz(run / "model" / "weights.npz", **w)
    atomic_write_json(run / "model" / "model_config.json", cfg)
    atomic_write_json(run / "evaluation" / "metrics.json", {"hit_rate": {"10": 0.25}, "hist": [1, 2]})
    assert json.loads((run / "model" / "model_config.json").read_text())["input_dim"] == feats.shape[1]
    return run, w, cfg


def _execute(stage_name: str, run, **overrides):
    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict

    stage = get_stage(stage_name)
    cfg = config_from_dict(
        {"spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "1g"}, **overrides}
    )
    ctx = StageContext.for_run_dir(run, "2026-01-12T00:00:00Z")
    return execute(stage, cfg, {n: run / n for n in stage.inputs}, run / stage.name, ctx, force=True)


def test_embeddings_index_and_recommend_stages(tiny_run, tiny_inputs, capsys):
    from components.cli import main as cli_main
    from pinsage_model.serving.query import IndexReader

    run, w, cfg = tiny_run
    feats, nbhd = tiny_inputs
    report = _execute("embeddings", run)
    emb = np.load(run / "embeddings" / "items.npy")
    np.testing.assert_allclose(emb, embed_all(w, cfg, feats, nbhd), atol=1e-6)
    assert report["num_items"] == 300 and report["items_held_out"] == 150
    assert report["projections_per_layer"] == [300, 300]
    # held-out items are embedded like any other (from features and full-graph neighbourhoods)
    held = np.arange(300) % 2 == 1
    assert np.all(np.abs(np.linalg.norm(emb[held], axis=1) - 1) < 1e-5)
    colls = np.load(run / "embeddings" / "collections.npy")
    assert colls.shape[0] == report["num_collections"]

    decision = _execute("registration", run, tracking={"enabled": False})
    assert decision["model_version"] is None and decision["promoted"] is False  # nothing registered: the model serves
    rep = _execute("index", run)
    assert rep["index"] == {"kind": "flat_ip"} and rep["recall_at_10"] == 1.0
    published = run.parent / "published" / "tiny"
    assert (published / "CURRENT").read_text().strip() == rep["version"]
    assert (run / "index" / "CURRENT").read_text().strip() == rep["version"]
    (nb,) = IndexReader(run / "index").current().related_items(["i0000007"], k=3)
    scores = emb @ emb[7]
    scores[7] = -np.inf
    assert nb.item_ids == [f"i{j:07d}" for j in np.argsort(-scores)[:3]]

    assert cli_main(["recommend", "--run-dir", str(run), "--item", "i0000007", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert nb.item_ids[0] in out and "items related to i0000007" in out
    assert cli_main(["recommend", "--run-dir", str(run), "--user", "u000000", "-k", "4"]) == 0
    out = capsys.readouterr().out
    assert "homefeed" in out and "collection embedding" in out
    assert cli_main(["recommend", "--run-dir", str(run), "--item", "nope"]) == 1


@pytest.mark.slow
def test_spark_backend_stage_equals_numpy(tiny_run, tiny_inputs):
    run, w, cfg = tiny_run
    feats, nbhd = tiny_inputs
    report = _execute("embeddings", run, inference={"backend": "spark"})
    assert report["backend"] == "spark"
    got = np.load(run / "embeddings" / "items.npy")
    assert np.abs(got - embed_all(w, cfg, feats, nbhd)).max() < 1e-4


def test_shared_array_blocks_start_on_page_boundaries(tmp_path):
    import mmap

    from pinsage_model.spark.inference import GATHER_BLOCK_ROWS, SharedArray

    src = np.arange(10_000 * 3, dtype=np.float32).reshape(10_000, 3)
    arr = SharedArray.create(tmp_path / "a.bin", 10_000, 3, fill=lambda s, e: src[s:e])
    assert (tmp_path / "a.bin").stat().st_size == src.nbytes  # no header: row 0 is at offset 0
    np.testing.assert_array_equal(arr.open(), src)
    for width in (1, 3, 20, 50, 64, 128):  # any width: a block is a whole number of pages
        assert (GATHER_BLOCK_ROWS * 4 * width) % mmap.PAGESIZE == 0


def test_gather_task_names_a_missing_shared_file(tmp_path):
    # what an executor that does not mount the scratch folder reports (run here without Spark)
    from pinsage_model.spark.inference import SharedArray, _gather_layer_fn

    arrays = {"h_in": SharedArray(str(tmp_path / "absent.bin"), 4, 2)}
    fn = _gather_layer_fn(0, False, {}, "importance", arrays, 4, 4)
    with pytest.raises(FileNotFoundError, match="absent.bin is not visible on this executor.*spark_strategy: shuffle"):
        list(fn(iter([])))
