"""No leakage, on tiny pipeline runs (raw -> pairs -> graph) under both split protocols.

* temporal (default): no validation or test engagement is a graph edge, and every user's held-out
  events come after all of that user's training events; the model stage trains only on train
  pairs and early-stops only on validation pairs.
* hash: held-out pairs are never training positives in either direction, checked on the pairs
  the model stage selects (``components.stages.model._pairs``) and on the positives training
  derives (``batches._positives_csr``, which adds each pair reversed too, so a reversed test
  pair would leak through it).
"""

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.orchestration.local_runner import run_pipeline
from pinsage_model.config import load_config
from pinsage_model.data.contracts import ITEM_IDS, PAIRS, PAIRS_INDEXED, read_table
from pinsage_model.graph.csr import CSRGraph
from pinsage_model.model import batches

pytestmark = pytest.mark.slow  # starts Spark


def _unordered(a, b) -> set[tuple]:
    return {(min(x, y), max(x, y)) for x, y in zip(a, b)}


# the integration tests' Spark settings, so a session they started is reused
SPARK = {"master": "local[2]", "driver_memory": "1g", "shuffle_partitions": 4, "app_name": "pinsage-tests"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = load_config("configs/tiny.yaml", overrides={"spark": SPARK, "pairs": {"split": "hash"}})
    root = tmp_path_factory.mktemp("leak")
    run_pipeline(cfg, root, stop="graph")
    return root


@pytest.fixture(scope="module")
def temporal_run(tmp_path_factory):
    cfg = load_config("configs/tiny.yaml", overrides={"spark": SPARK, "pairs": {"split": "temporal"}})
    assert cfg.pairs.split == "temporal"
    root = tmp_path_factory.mktemp("leak_temporal")
    run_pipeline(cfg, root, stop="graph")
    return root


def test_temporal_held_out_events_are_not_graph_edges(temporal_run):
    clean = pq.read_table(temporal_run / "pairs" / "interactions.parquet").to_pandas()
    assert set(clean["split"]) == {"train", "validation", "test"}
    g = CSRGraph.load(temporal_run / "graph" / "graph.npz")
    items = read_table(temporal_run / "graph" / "item_ids.parquet", ITEM_IDS).column("item_id").to_pylist()
    colls = pq.read_table(temporal_run / "graph" / "collection_ids.parquet").column("collection_id").to_pylist()
    coll_of_edge = np.asarray(colls, dtype=object)[np.asarray(g.item_indices)]
    item_of_edge = np.repeat(np.asarray(items, dtype=object), np.diff(np.asarray(g.item_indptr)))
    edges = set(zip(coll_of_edge, item_of_edge))
    train = clean[clean["split"] == "train"]
    assert edges == set(zip(train["collection_id"], train["item_id"]))
    # per user, every held-out event is at or after the user's last training event
    last_train = train.groupby("user_id")["timestamp"].max()
    held = clean[clean["split"] != "train"]
    first_held = held.groupby("user_id")["timestamp"].min()
    both = first_held.index.intersection(last_train.index)
    assert len(both) and (first_held[both] >= last_train[both]).all()


def test_temporal_training_reads_only_train_pairs(temporal_run, tmp_path):
    from components.stages.model import _pairs

    indexed = read_table(temporal_run / "graph" / "pairs_indexed.parquet", PAIRS_INDEXED).to_pandas()
    n = len(read_table(temporal_run / "graph" / "item_ids.parquet", ITEM_IDS))
    (tq, tp), (vq, vp), _ = _pairs(temporal_run / "graph" / "pairs_indexed.parquet", n, tmp_path)
    by_split = {s: set(zip(g["q_idx"], g["pos_idx"])) for s, g in indexed.groupby("split")}
    assert set(zip(tq.tolist(), tp.tolist())) <= by_split["train"]
    assert set(zip(vq.tolist(), vp.tolist())) <= by_split["validation"]
    assert len(by_split["test"])


def test_pair_splits_are_disjoint_in_both_directions(run_dir):
    pairs = read_table(run_dir / "pairs" / "pairs.parquet", PAIRS).to_pandas()
    by_split = {s: _unordered(g["q_item"], g["pos_item"]) for s, g in pairs.groupby("split")}
    assert by_split["train"] and by_split["test"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["train"] & by_split.get("validation", set())


def test_training_positives_exclude_test_pairs(run_dir, tmp_path):
    """The pairs the model stage trains and early-stops on, and the positives it derives."""
    from components.stages.model import _pairs

    indexed = read_table(run_dir / "graph" / "pairs_indexed.parquet", PAIRS_INDEXED).to_pandas()
    n = len(read_table(run_dir / "graph" / "item_ids.parquet", ITEM_IDS))
    (tq, tp), (vq, vp), counts = _pairs(run_dir / "graph" / "pairs_indexed.parquet", n, tmp_path)
    assert counts["train_pairs"] == len(tq) > 0
    indptr, indices = batches._positives_csr(tq, tp, n)
    positives = {(q, int(p)) for q in range(n) for p in indices[indptr[q] : indptr[q + 1]]}
    early_stopping = set(zip(vq.tolist(), vp.tolist()))
    test = indexed[indexed["split"] == "test"]
    assert len(test)
    leaked = [(q, p) for q, p in zip(test["q_idx"], test["pos_idx"]) if (q, p) in positives or (p, q) in positives]
    assert not leaked, f"{len(leaked)} test pairs are training positives, e.g. {leaked[:3]}"
    assert not early_stopping & set(zip(test["q_idx"].tolist(), test["pos_idx"].tolist()))
    held = indexed[indexed["split"] == "validation"]
    assert not [(q, p) for q, p in zip(held["q_idx"], held["pos_idx"]) if (q, p) in positives or (p, q) in positives]


def test_held_out_pairs_keep_their_split_after_indexing(run_dir):
    pairs = pq.read_table(run_dir / "pairs" / "pairs.parquet").to_pandas()
    indexed = read_table(run_dir / "graph" / "pairs_indexed.parquet", PAIRS_INDEXED).to_pandas()
    ids = read_table(run_dir / "graph" / "item_ids.parquet", ITEM_IDS).to_pandas()
    name = dict(zip(ids["item_idx"], ids["item_id"]))
    got = {(name[q], name[p], s) for q, p, s in zip(indexed["q_idx"], indexed["pos_idx"], indexed["split"])}
    want = set(zip(pairs["q_item"], pairs["pos_item"], pairs["split"]))
    assert got <= want  # indexing never moves a pair to another split
    held_out = {t for t in want if t[2] != "train"}
    assert held_out <= got  # and keeps every held-out pair (evaluation sees all of them)
    assert np.all(indexed.loc[indexed["split"] == "train", "in_train_graph"])
