"""Stage "features" (TF Transform on Beam's DirectRunner) on a hand-written item table.

Graph items A-F (dense ids 0-5). Vectors: A [1, 2], B [3, 4], C [5, 0] (mean [3, 2], variance
8/3 in both dimensions); D's vector holds inf (quarantined, its title still counts); E has no
vector; F has no row at all. Degrees: A 2, B 1, C 1, D 0, E 1, F 1.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.graph.csr import CSRGraph

pytestmark = pytest.mark.slow

IDS = ["A", "B", "C", "D", "E", "F"]
DEGREE = [2, 1, 1, 0, 1, 1]


def _zscore(v) -> np.ndarray:
    """The features stage's degree scaling: mean 0, unit (population) variance over all items."""
    v = np.asarray(v, np.float64)
    return (v - v.mean()) / v.std()


ITEMS = {
    "item_id": ["A", "B", "C", "D", "E", "Q", "A"],
    "features": [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [math.inf, 1.0], None, [0.0, 0.0], [9.0, 9.0]],
    "title": ["Toy Story (1995)", "Story of toys", None, "Up", "Heat", "q", "dup"],
    "genres": ["Comedy|Drama", "Drama", "Comedy|Horror", None, None, "Drama", "Drama"],
}
BUCKETS = 16


def _hash_row(text: str) -> np.ndarray:
    import tensorflow as tf

    row = np.zeros(BUCKETS, np.float32)
    for tok in text.lower().replace("(", " ").replace(")", " ").split():
        row[int(tf.strings.to_hash_bucket_fast(tok, BUCKETS).numpy())] = 1.0
    return row


@pytest.fixture(scope="module")
def feat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("features_run")
    raw, graph = root / "raw", root / "graph"
    raw.mkdir()
    graph.mkdir()
    items = pa.table({**ITEMS, "features": pa.array(ITEMS["features"], pa.list_(pa.float32()))})
    pq.write_table(items, raw / "items.parquet")
    pq.write_table(
        pa.table(
            {
                "item_idx": pa.array(range(6), pa.int32()),
                "item_id": IDS,
                "in_train_graph": [True] * 6,
                "degree": pa.array(DEGREE, pa.int32()),
            }
        ),
        graph / "item_ids.parquet",
    )
    # edges: A-c0, A-c1, B-c0, C-c1, E-c0, F-c1
    CSRGraph.from_edges(np.array([0, 0, 1, 2, 4, 5]), np.array([0, 1, 0, 1, 0, 1]), 6, 2).save(graph / "graph.npz")
    cfg = config_from_dict(
        {
            "features": {
                "experimental": {
                    "text_hash_buckets": BUCKETS,
                    "categorical_vocab_top_k": 5,
                    "categorical_oov_buckets": 1,
                }
            }
        }
    )
    report = execute(
        get_stage("features"),
        cfg,
        {"raw": raw, "graph": graph},
        root / "features",
        StageContext.create(root, "test", "2026-01-12T00:00:00Z"),
    )
    x = np.load(root / "features" / "features.npy")
    names = json.loads((root / "features" / "feature_names.json").read_text())
    return root, report, x, names


def _col(x, names, name):
    return x[:, names["names"].index(name)]


def test_matrix_matches_hand_computed_features(feat_run):
    _, report, x, names = feat_run
    # vector(2) + log_degree + has_features + title(16) + genres(5 + 1 OOV)
    assert x.shape == (6, 2 + 1 + 1 + BUCKETS + 6) and x.dtype == np.float32
    assert report["feature_width"] == x.shape[1]
    s = math.sqrt(8 / 3)
    z = np.array([[-2 / s, 0], [0, 2 / s], [2 / s, -2 / s], [0, 0], [0, 0], [0, 0]], np.float32)
    np.testing.assert_allclose(x[:, :2], z, rtol=1e-6, atol=1e-7)
    assert names["names"][:4] == ["vector_0", "vector_1", "log_degree", "has_features"]
    np.testing.assert_allclose(_col(x, names, "log_degree"), _zscore(np.log1p(DEGREE)), rtol=1e-6)
    assert _col(x, names, "has_features").tolist() == [1, 1, 1, 1, 1, 0]
    title = x[:, 4 : 4 + BUCKETS]
    for i, text in enumerate(["Toy Story (1995)", "Story of toys", "", "Up", "Heat", ""]):
        assert np.array_equal(title[i], _hash_row(text)), IDS[i]
    assert _col(x, names, "genres=Drama").tolist() == [1, 1, 0, 0, 0, 0]
    assert _col(x, names, "genres=Comedy").tolist() == [1, 0, 1, 0, 0, 0]
    assert _col(x, names, "genres=Horror").tolist() == [0, 0, 1, 0, 0, 0]
    assert names["missing_features"] == "id_embedding" and names["has_features_column"] == 3
    assert names["items_without_features"] == 1


def test_bad_item_rows_are_quarantined(feat_run):
    root, report, _, _ = feat_run
    q = pq.read_table(root / "features" / "quarantine.parquet").to_pylist()
    assert [(r["row"], r["reason"]) for r in q] == [(3, "bad_vector"), (5, "unknown_item_id"), (6, "duplicate_item_id")]
    assert report["item_rows_read"] == report["item_rows_clean"] + report["item_rows_quarantined"] == 7


def test_saved_transform_featurises_new_items_like_training(feat_run):
    from pinsage_model.features.transform import transform_new_items

    root, _, x, names = feat_run
    transform = root / "features" / "transform"
    # an item seen in training, alone in its batch: exactly its training-time row
    again = transform_new_items(
        transform,
        pa.table(
            {
                "item_id": ["B"],
                "features": pa.array([[3.0, 4.0]], pa.list_(pa.float32())),
                "title": ["Story of toys"],
                "genres": ["Drama"],
            }
        ),
        np.array([1]),
    )
    assert np.array_equal(again[0], x[1])
    # a brand-new item: its vector is the training mean, one known and one unseen genre
    new = transform_new_items(
        transform,
        pa.table(
            {
                "item_id": ["N"],
                "features": pa.array([[3.0, 2.0]], pa.list_(pa.float32())),
                "title": ["toy story"],
                "genres": ["Horror|Western"],
            }
        ),
        np.array([3]),
    )[0]
    expected = np.zeros(x.shape[1], np.float32)
    log_deg = np.log1p(np.asarray(DEGREE, np.float64))
    expected[2], expected[3] = (np.log1p(3) - log_deg.mean()) / log_deg.std(), 1.0
    expected[4 : 4 + BUCKETS] = _hash_row("toy story")
    expected[names["names"].index("genres=Horror")] = 1.0
    expected[names["names"].index("genres_oov_0")] = 1.0
    np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-7)


def test_no_item_table_falls_back_to_degree_only(tmp_path, stage_ctx):
    """Data without an item table (e.g. adjacency lists) under ``missing_features: zeros``."""
    raw, graph = tmp_path / "raw", tmp_path / "graph"
    raw.mkdir()
    graph.mkdir()
    pq.write_table(
        pa.table(
            {
                "item_idx": pa.array(range(3), pa.int32()),
                "item_id": ["a", "b", "c"],
                "in_train_graph": [True] * 3,
            }
        ),
        graph / "item_ids.parquet",
    )
    CSRGraph.from_edges(np.array([0, 0, 2]), np.array([0, 1, 1]), 3, 2).save(graph / "graph.npz")
    cfg = config_from_dict({"features": {"missing_features": "zeros"}})
    report = execute(get_stage("features"), cfg, {"raw": raw, "graph": graph}, tmp_path / "features", stage_ctx)
    x = np.load(tmp_path / "features" / "features.npy")
    np.testing.assert_allclose(
        x, _zscore(np.log1p(np.array([[2], [0], [1]], np.float64))).astype(np.float32), rtol=1e-6
    )
    names = json.loads((tmp_path / "features" / "feature_names.json").read_text())
    assert names["names"] == ["log_degree"] and names["has_features_column"] is None
    assert report["items_without_features"] == 3 and report["item_rows_read"] == 0
