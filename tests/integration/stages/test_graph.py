"""Stage "graph" on a hand-written log with collections and a hand-written pairs table.

The edges come from the cleaned interactions the pairs stage writes (its cleaning runs on the
hand-written log here). Hand part: items A-D (+ Z, catalogue only), collections c1-c3. Filler part: 2 000 collections
``d<i>`` with items ``f<j>``; their ids sort after the hand ids, so A-D, Z keep the dense ids
0-4 and c1-c3 keep 0-2, and the many collections make the sampled fraction measurable.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from components.stages.pairs import event_splits, label_interactions, write_clean_interactions
from pinsage_model.config import config_from_dict
from pinsage_model.graph.csr import CSRGraph
from pinsage_model.io import file_digest

pytestmark = pytest.mark.slow
WHEN = "2026-01-12T00:00:00Z"

N_FILLER = 2000
FRACTION = 0.3


def _inputs(root, spark):
    raw, pairs = root / "raw", root / "pairs"
    raw.mkdir()
    pairs.mkdir()
    rows = [  # user, item, timestamp, collection
        ("u1", "A", 1, "c1"),
        ("u1", "B", 2, "c1"),
        ("u2", "B", 3, "c1"),  # the same edge B-c1 again: merged
        ("u2", "C", 4, "c2"),
        ("u3", "D", 5, "c3"),
        ("u3", "A", 6, "c3"),
        ("u3", None, 7, "c3"),  # null item: not an edge
    ]
    for i in range(N_FILLER):
        rows += [(f"v{i}", f"f{i % 500:03d}", 10, f"d{i:04d}"), (f"v{i}", f"f{(i * 7 + 1) % 500:03d}", 11, f"d{i:04d}")]
    u, it, ts, c = (list(x) for x in zip(*rows))
    pq.write_table(
        pa.table({"user_id": u, "item_id": it, "timestamp": ts, "collection_id": c}), raw / "interactions.parquet"
    )
    # the hash split keeps every cleaned event a training event: all of them are edges here
    events = event_splits(
        label_interactions(spark, raw / "interactions.parquet", None), config_from_dict({"pairs": {"split": "hash"}})
    )
    write_clean_interactions(events, pairs / "interactions.parquet", root / "_spark_clean")
    pq.write_table(pa.table({"item_id": ["A", "B", "C", "D", "Z"]}), raw / "items.parquet")
    q, p, s = [], [], []
    for a, b, split in [("A", "B", "train"), ("B", "C", "train"), ("C", "D", "validation"), ("D", "A", "test")]:
        q.append(a), p.append(b), s.append(split)
    rng = np.random.default_rng(0)
    for k in range(600):
        a, b = rng.integers(0, 500, 2)
        if a != b:
            q.append(f"f{a:03d}"), p.append(f"f{b:03d}"), s.append(("train", "validation", "test")[k % 3])
    keys = sorted(set(zip(q, p, s)), key=lambda r: r[:2])
    seen, uniq = set(), []
    for r in keys:
        if r[:2] not in seen:
            seen.add(r[:2])
            uniq.append(r)
    q, p, s = (list(x) for x in zip(*uniq))
    pq.write_table(
        pa.table({"q_item": q, "pos_item": p, "count": pa.array([1] * len(q), pa.int64()), "split": s}),
        pairs / "pairs.parquet",
    )
    return {"raw": raw, "pairs": pairs}


def _cfg(spark_section, **spark):
    return config_from_dict(
        # seed 1: the graph's derived seed is 3 (PipelineConfig.seed_for("graph"))
        {"seed": 1, "spark": {**spark_section, **spark}, "graph": {"train_collection_fraction": FRACTION}}
    )


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory, spark, spark_section):
    root = tmp_path_factory.mktemp("graph_run")
    inputs = _inputs(root, spark)
    report = execute(
        get_stage("graph"), _cfg(spark_section), inputs, root / "graph", StageContext.create(root, "test", WHEN)
    )
    return root, inputs, report


def test_full_graph_matches_hand_computed_csr(graph_run):
    root, _, report = graph_run
    g = CSRGraph.load(root / "graph" / "graph.npz")
    items = pq.read_table(root / "graph" / "item_ids.parquet")
    colls = pq.read_table(root / "graph" / "collection_ids.parquet")
    assert items.column("item_id").to_pylist()[:5] == ["A", "B", "C", "D", "Z"]
    assert items.column("item_idx").to_pylist() == list(range(items.num_rows))
    assert colls.column("collection_id").to_pylist()[:3] == ["c1", "c2", "c3"]
    # A: c1, c3; B: c1 (merged duplicate); C: c2; D: c3; Z: none
    assert g.item_indptr[:6].tolist() == [0, 2, 3, 4, 5, 5]
    assert g.item_indices[:5].tolist() == [0, 2, 0, 1, 2]
    # c1: A, B; c2: C; c3: A, D
    assert g.coll_indptr[:4].tolist() == [0, 2, 3, 5]
    assert g.coll_indices[:5].tolist() == [0, 1, 2, 0, 3]
    # recency per collection row: c1's B (last at t=3) is later than A (t=1); c3's A (t=6) later than D (t=5)
    assert np.load(root / "graph" / "collection_recency.npy")[:5].tolist() == [1, 0, 0, 0, 1]
    assert items.column("degree").to_pylist()[:5] == [2, 1, 1, 1, 0]
    assert report["items"] == 5 + 500 and report["collections"] == 3 + N_FILLER
    assert report["items_without_edges"] == 1


def test_training_subgraph_keeps_whole_sampled_collections(graph_run):
    root, _, report = graph_run
    g = CSRGraph.load(root / "graph" / "graph.npz")
    t = CSRGraph.load(root / "graph" / "train_graph.npz")
    c_in = np.asarray(pq.read_table(root / "graph" / "collection_ids.parquet").column("in_train_graph").to_pylist())
    i_in = np.asarray(pq.read_table(root / "graph" / "item_ids.parquet").column("in_train_graph").to_pylist())
    assert abs(c_in.mean() - FRACTION) < 0.04  # 2003 collections: SD about 0.01
    for c in range(g.num_collections):  # a kept collection keeps all its items, others none
        full = g.coll_indices[g.coll_indptr[c] : g.coll_indptr[c + 1]].tolist()
        sub = t.coll_indices[t.coll_indptr[c] : t.coll_indptr[c + 1]].tolist()
        assert sub == (full if c_in[c] else [])
    touched = np.zeros(g.num_items, bool)
    touched[t.coll_indices] = True
    assert np.array_equal(i_in, touched) and np.array_equal(i_in, t.item_degree() > 0)
    assert report["train_collections"] == int(c_in.sum())


def test_every_training_pair_is_inside_the_training_subgraph(graph_run):
    root, inputs, report = graph_run
    px = pq.read_table(root / "graph" / "pairs_indexed.parquet")
    i_in = np.asarray(pq.read_table(root / "graph" / "item_ids.parquet").column("in_train_graph").to_pylist())
    q, p = px.column("q_idx").to_numpy(), px.column("pos_idx").to_numpy()
    split = np.asarray(px.column("split").to_pylist())
    flag = np.asarray(px.column("in_train_graph").to_pylist())
    train = split == "train"
    assert train.sum() > 0
    assert np.all(i_in[q[train]]) and np.all(i_in[p[train]])
    assert np.array_equal(flag, i_in[q] & i_in[p])
    # validation and test pairs are all kept, inside the training subgraph or not
    src = pq.read_table(inputs["pairs"] / "pairs.parquet").column("split").to_pylist()
    assert (~train).sum() == sum(s != "train" for s in src)
    assert train.sum() + report["train_pairs_dropped_outside_train_graph"] == src.count("train")


def test_outputs_identical_with_other_partitioning(graph_run, spark_section, tmp_path, stage_ctx):
    root, inputs, _ = graph_run
    execute(get_stage("graph"), _cfg(spark_section, shuffle_partitions=9), inputs, tmp_path / "graph", stage_ctx)
    for name in (
        "graph.npz",
        "train_graph.npz",
        "collection_recency.npy",
        "item_ids.parquet",
        "collection_ids.parquet",
        "pairs_indexed.parquet",
    ):
        assert file_digest(tmp_path / "graph" / name) == file_digest(root / "graph" / name), name
