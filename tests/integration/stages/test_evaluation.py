"""The evaluation stage on a hand-built run directory with hand-computed expectations."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.graph.csr import CSRGraph
from pinsage_model.model.prior import BETA_GRID, load_prior

pytestmark = pytest.mark.slow  # compiles the sampler's numba kernels (Pixie)

# 8 items, 4 collections: c0 {0, 1, 2}, c1 {0, 1}, c2 {2, 3, 4}, c3 {5, 6, 7}.
# Item degrees (full graph): 2, 2, 2, 1, 1, 1, 1, 1. The training subgraph drops c3.
EDGES = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 2), (3, 2), (4, 2), (5, 3), (6, 3), (7, 3)]
TEST = [(0, 1), (2, 3), (4, 5), (6, 7)]
VALIDATION = [(3, 2)]


def _emb() -> np.ndarray:
    """Items 2k and 2k+1 point almost the same way (cosine 0.999); other pairs about 0.1 or 0."""
    e = np.zeros((8, 4), np.float32)
    for k in range(4):
        e[2 * k, k], e[2 * k, (k + 1) % 4] = 1.0, 0.1
        e[2 * k + 1, k], e[2 * k + 1, (k + 1) % 4] = 1.0, 0.05
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    for d in ("raw", "pairs", "graph", "features", "neighbourhoods", "embeddings"):
        (root / d).mkdir()
    items, colls = np.array(EDGES).T
    CSRGraph.from_edges(items, colls, 8, 4).save(root / "graph" / "graph.npz")
    keep = colls != 3
    CSRGraph.from_edges(items[keep], colls[keep], 8, 4).save(root / "graph" / "train_graph.npz")
    pq.write_table(
        pa.table(
            {
                "item_idx": pa.array(range(8), pa.int32()),
                "item_id": [f"i{i}" for i in range(8)],
                "in_train_graph": [i < 5 for i in range(8)],
            }
        ),
        root / "graph" / "item_ids.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "collection_idx": pa.array(range(4), pa.int32()),
                "collection_id": [f"u{c}" for c in range(4)],
                "in_train_graph": [c < 3 for c in range(4)],
            }
        ),
        root / "graph" / "collection_ids.parquet",
    )
    pairs = TEST + VALIDATION
    pq.write_table(
        pa.table(
            {
                "q_idx": pa.array([p[0] for p in pairs], pa.int32()),
                "pos_idx": pa.array([p[1] for p in pairs], pa.int32()),
                "count": pa.array([1] * len(pairs), pa.int64()),
                "split": ["test"] * 4 + ["validation"],
                "in_train_graph": [True] * len(pairs),
            }
        ),
        root / "graph" / "pairs_indexed.parquet",
    )
    np.save(root / "features" / "features.npy", np.eye(8, 3, dtype=np.float32))
    (root / "features" / "feature_names.json").write_text(json.dumps({"names": ["log_degree", "f1", "f2"]}))
    (root / "neighbourhoods" / "full.npz").write_bytes(b"unused here")
    emb = _emb()
    np.save(root / "embeddings" / "items.npy", emb)
    np.save(root / "embeddings" / "collections.npy", emb[[3, 0, 5, 6]])  # user u0 looks like item 3, u2 like item 5
    np.save(root / "embeddings" / "query_shift.npy", np.zeros(emb.shape[1], np.float32))
    np.save(root / "embeddings" / "user_shift.npy", np.zeros(emb.shape[1], np.float32))
    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{c}" for _, c in EDGES],
                "item_id": [f"i{i}" for i, _ in EDGES],
                "timestamp": pa.array(range(len(EDGES)), pa.int64()),
            }
        ),
        root / "raw" / "interactions.parquet",
    )
    # the pairs stage's cleaned interactions: every edge is a training event (the test events
    # are in the raw test file)
    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{c}" for _, c in EDGES],
                "item_id": [f"i{i}" for i, _ in EDGES],
                "timestamp": pa.array(range(len(EDGES)), pa.int64()),
                "collection_id": [f"u{c}" for _, c in EDGES],
                "split": ["train"] * len(EDGES),
            }
        ),
        root / "pairs" / "interactions.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": ["u0", "u2", "u9"],
                "item_id": ["i3", "i5", "i1"],
                "timestamp": pa.array([100, 101, 102], pa.int64()),
            }
        ),
        root / "raw" / "test_interactions.parquet",
    )
    return root


CFG = config_from_dict(
    {
        "sampler": {"walk_length": 4, "restart_prob": 0.5, "num_walks": 10, "top_t": 3},
        "tracking": {"enabled": False},  # no promotion gate: ks need not hold its 10
        "evaluation": {
            "ks": [1, 5],
            "mrr_scale": 1.0,
            "similarity_pairs": 500,
            "baseline_graph": "full",
            "baselines": ["content", "pixie", "popularity", "itemknn", "svd"],
            "svd_dim": 2,
            "pixie_walks": 50,
            "user_ks": [1, 3],
            "recent_items": 2,
        },
    }
)


def _run(run_dir, out_name, cfg=CFG):
    stage = get_stage("evaluation")
    inputs = {n: run_dir / n for n in stage.inputs}
    return execute(
        stage, cfg, inputs, run_dir / out_name, StageContext.for_run_dir(run_dir, "2026-01-12T00:00:00Z"), force=True
    )


@pytest.fixture(scope="module")
def evaluated(run_dir):
    report = _run(run_dir, "evaluation")
    return report, json.loads((run_dir / "evaluation" / "metrics.json").read_text())


def test_pinsage_ranks_every_partner_first(evaluated):
    _, m = evaluated
    t = m["methods"]["pinsage"]["test"]
    assert t["hit_rate_at_1"] == 1.0 and t["mrr"] == 1.0 and t["n"] == 4 and t["pool"] == 8
    assert m["methods"]["pinsage"]["validation"]["hit_rate_at_1"] == 1.0


def test_popularity_hand_computed_with_ties(evaluated):
    _, m = evaluated
    t = m["methods"]["popularity"]["test"]
    # 0->1: tie with item 2 -> 1.5; 2->3: 0, 1 higher, 4..7 tied -> 5; 4->5 and 6->7: 3 higher, 3 tied -> 5.5
    assert t["hit_rate_at_1"] == 0.0 and t["hit_rate_at_5"] == 0.5
    assert t["mrr"] == pytest.approx((1 / 2 + 1 / 5 + 1 / 6 + 1 / 6) / 4)
    assert m["methods"]["popularity"]["similarity"] is None


def test_itemknn_hand_computed(evaluated):
    _, m = evaluated
    t = m["methods"]["itemknn"]["test"]
    # item columns over c0..c3: i0 = i1 = 1100, i2 = 1010, i3 = i4 = 0010, i5 = i6 = i7 = 0001
    # 0->1: cosine 1, alone -> 1. 2->3: 0.707, tied with item 4 -> 1.5.
    # 4->5: 0; items 3 (1) and 2 (0.707) higher, 0, 1, 6, 7 tied at 0 -> 1 + 2 + 4/2 = 5.
    # 6->7: cosine 1, tied with item 5 -> 1.5.
    assert t["hit_rate_at_1"] == 0.25 and t["hit_rate_at_5"] == 1.0
    assert t["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 2) / 4)
    assert np.isfinite(m["methods"]["itemknn"]["similarity"]["kurtosis"])


def test_inductive_breakdown(evaluated):
    _, m = evaluated
    ind = m["methods"]["pinsage"]["inductive"]
    assert ind["query_in_train_graph"]["n"] == 3 and ind["query_not_in_train_graph"]["n"] == 1
    assert ind["query_in_train_graph"]["hit_rate_at_1"] == 1.0


def test_metric_keys_have_one_spelling_and_splits_a_digest(evaluated):
    """Every ranking key in metrics.json is MLflow-safe (no '@'), as the registry logs it."""
    import hashlib

    _, m = evaluated
    assert "@" not in json.dumps(m)
    assert set(m["methods"]["pinsage"]["test"]) >= {"hit_rate_at_1", "hit_rate_at_5", "mrr"}
    lines = "".join(sorted(f"i{q}\ti{p}\n" for q, p in VALIDATION))
    assert m["config"]["split_digests"]["validation"] == hashlib.sha256(lines.encode()).hexdigest()
    assert m["config"]["split_digests"]["test"] != m["config"]["split_digests"]["validation"]


def test_user_level_metrics(evaluated):
    _, m = evaluated
    u = m["user_level"]
    assert u["users"] == 2 and u["test_interactions_dropped_unknown"] == 1  # u9 is unknown
    pooled = u["methods"]["pinsage-pooled"]
    assert pooled["recall_at_1"] == 1.0 and pooled["ndcg_at_1"] == 1.0
    assert {"content-recent", "pixie-recent", "popularity-recent", "itemknn-recent", "svd-recent"} <= set(u["methods"])


def test_outputs_written_and_deterministic(run_dir, evaluated):
    report, _ = evaluated
    out = run_dir / "evaluation"
    md = (out / "report.md").read_text()
    assert "| pinsage | 1.0000 | 1.0000 | 1.0000 |" in md
    for png in (
        "hit_rate_curve.png",
        "similarity_all.png",
        "similarity_pinsage.png",
        "similarity_content.png",
        "similarity_itemknn.png",
    ):
        assert (out / png).stat().st_size > 1000
    assert report["test_pairs"] == 4
    assert "NaN" not in (out / "metrics.json").read_text()  # content's kurtosis is undefined here
    _run(run_dir, "evaluation_again")
    again = run_dir / "evaluation_again"
    for f in ("metrics.json", "report.md", "hit_rate_curve.png", "similarity_all.png"):
        assert (out / f).read_bytes() == (again / f).read_bytes(), f


def _ease_cfg(max_items: int):
    return config_from_dict(
        {
            "sampler": {"walk_length": 4, "restart_prob": 0.5, "num_walks": 10, "top_t": 3},
            "tracking": {"enabled": False},  # no promotion gate: ks need not hold its 10
            "evaluation": {
                "ks": [1, 5],
                "similarity_pairs": 500,
                "baselines": ["popularity", "ease"],
                "ease_lambda": 1.0,
                "ease_max_items": max_items,
                "user_ks": [1, 3],
                "recent_items": 2,
            },
        }
    )


def test_ease_hand_computed(run_dir):
    _run(run_dir, "evaluation_ease", _ease_cfg(8))
    m = json.loads((run_dir / "evaluation_ease" / "metrics.json").read_text())
    assert m["skipped_baselines"] == {}
    # lambda = 1. Block {5, 6, 7} (all in c3): G + I = J + I, P = I - J/4, B[i, j] = (1/4)/(3/4) = 1/3;
    # the blocks do not interact, so B is exactly 0 across them. The block {0..4} gives (as the
    # per-column ridge of test_baselines.py) row 0 = (0, 11/18, 1/5, -1/21, -1/21, 0, 0, 0),
    # row 2 = (1/6, 1/6, 0, 5/21, 5/21, 0, 0, 0), row 4 = (-1/18, -1/18, 1/3, 8/21, 0, 0, 0, 0).
    # Ranks: 0->1: 1. 2->3: tied with item 4 -> 1.5. 4->5: items 3, 2 higher, 6 and 7 tied at 0
    # -> 1 + 2 + 2/2 = 4. 6->7: tied with item 5 -> 1.5.
    t = m["methods"]["ease"]["test"]
    assert t["hit_rate_at_1"] == 0.25 and t["hit_rate_at_5"] == 1.0
    assert t["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 2) / 4)
    assert m["methods"]["ease"]["similarity"] is None
    assert "ease-recent" in m["user_level"]["methods"]


def test_ease_skipped_above_max_items_with_a_note(run_dir):
    report = _run(run_dir, "evaluation_ease_skipped", _ease_cfg(7))
    out = run_dir / "evaluation_ease_skipped"
    m = json.loads((out / "metrics.json").read_text())
    assert "ease" not in m["methods"] and "popularity" in m["methods"]
    assert m["skipped_baselines"]["ease"].startswith("ease skipped: 8 items > evaluation.ease_max_items = 7")
    assert report["skipped_baselines"] == m["skipped_baselines"]
    assert "Not evaluated: ease skipped: 8 items" in (out / "report.md").read_text()


def test_content_baseline_reads_content_columns_only(tmp_path):
    from pinsage_model.evaluation.protocol import content_columns

    (tmp_path / "feature_names.json").write_text(
        json.dumps({"names": ["log_degree", "has_features", "title_hash_0", "genres=Drama"]})
    )
    assert content_columns(tmp_path) == [2, 3]


def test_user_level_from_the_temporal_split_without_a_test_file(run_dir, tmp_path):
    """User-item data under the temporal split: each user's test events are the targets."""
    import shutil

    root = tmp_path / "run"
    shutil.copytree(run_dir, root, ignore=shutil.ignore_patterns("evaluation*"))
    (root / "raw" / "test_interactions.parquet").unlink()
    clean = pq.read_table(root / "pairs" / "interactions.parquet").to_pydict()
    events = (
        ("u0", "i3", "test"),
        ("u2", "i5", "test"),
        ("u0", "i3", "validation"),
    )  # later engagements, not graph edges
    for user, item, split in events:
        for key, value in (
            ("user_id", user),
            ("item_id", item),
            ("timestamp", 999),
            ("collection_id", user),
            ("split", split),
        ):
            clean[key].append(value)
    pq.write_table(
        pa.table({**clean, "timestamp": pa.array(clean["timestamp"], pa.int64())}),
        root / "pairs" / "interactions.parquet",
    )
    _run(root, "evaluation")
    u = json.loads((root / "evaluation" / "metrics.json").read_text())["user_level"]
    assert u["users"] == 2 and u["source"].startswith("temporal split")
    assert u["methods"]["pinsage-pooled"]["recall_at_1"] == 1.0
    # the validation events are ranked the same way, for choosing settings without the test
    assert u["validation"]["pinsage-pooled"]["users"] == 1 and u["validation"]["pinsage-pooled"]["recall_at_1"] == 1.0
    assert "## User-level, validation, for tuning" in (root / "evaluation" / "report.md").read_text()
    # the homefeed prior's weight is chosen on those validation users: recall@1 is 1 without it,
    # so every weight ties and the first, 0, is kept; the prior is log(1 + training degree)
    fit = u["homefeed_prior"]
    assert fit["weight"] == 0.0 and fit["grid"] == list(BETA_GRID) and fit["recall"][0] == 1.0
    prior, weight = load_prior(root / "evaluation")
    graph = CSRGraph.load(root / "graph" / "graph.npz")
    np.testing.assert_allclose(prior, np.log1p(graph.item_degree()), rtol=1e-6)
    assert weight == 0.0
    # with a hash split there is no user-level protocol for this data
    _run(root, "evaluation_hash", cfg=CFG.replace(pairs=CFG.pairs.replace(split="hash")))
    assert json.loads((root / "evaluation_hash" / "metrics.json").read_text())["user_level"] is None


def test_kurtosis_reference_is_that_of_random_unit_vectors():
    from pinsage_model.evaluation.protocol import random_kurtosis

    cfg = config_from_dict({"evaluation": {"similarity_pairs": 200_000}})
    # cosine of random unit vectors in d dims: excess kurtosis -6 / (d + 2), about -0.09 for d = 64
    assert random_kurtosis(5000, 64, cfg) == pytest.approx(-6 / 66, abs=0.03)
