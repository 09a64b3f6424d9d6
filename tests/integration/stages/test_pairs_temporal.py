"""The temporal split (pairs.split: temporal) through the pairs and graph stages, on a hand-written log.

u1 rates I0..I9 at t = 0, 10, ..., 90 and u2 rates J0..J4 at t = 1000..1040; fractions
(0.6, 0.2, 0.2). Per user, event k (1-based) of n is test when k > 0.8 n and validation when
k > 0.6 n: u1's I8, I9 are test, I6, I7 validation; u2's J4 is test, J3 validation. A pair takes
the split of its later event, and only train events become graph edges.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.orchestration.execution import execute
from components.stages import get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.graph.csr import CSRGraph

pytestmark = pytest.mark.slow

U1 = [("u1", f"I{k}", 10 * k) for k in range(10)]
U2 = [("u2", f"J{k}", 1000 + 10 * k) for k in range(5)]


def _run(tmp_path, spark_section, stage_ctx, **pairs):
    users, items, ts = (list(c) for c in zip(*(U1 + U2)))
    (tmp_path / "raw").mkdir()
    pq.write_table(
        pa.table({"user_id": users, "item_id": items, "timestamp": ts}), tmp_path / "raw" / "interactions.parquet"
    )
    cfg = config_from_dict(
        {
            "spark": spark_section,
            "graph": {"train_collection_fraction": 1.0},
            "pairs": {"max_gap_s": 100, "fractions": [0.6, 0.2, 0.2], **pairs},
        }
    )
    inputs = {"raw": tmp_path / "raw"}
    report = execute(get_stage("pairs"), cfg, inputs, tmp_path / "pairs", stage_ctx)
    execute(get_stage("graph"), cfg, {**inputs, "pairs": tmp_path / "pairs"}, tmp_path / "graph", stage_ctx)
    pairs = {
        (r["q_item"], r["pos_item"]): r["split"]
        for r in pq.read_table(tmp_path / "pairs" / "pairs.parquet").to_pylist()
    }
    return report, pairs


def _edges(tmp_path) -> set[tuple[str, str]]:
    g = CSRGraph.load(tmp_path / "graph" / "graph.npz")
    items = pq.read_table(tmp_path / "graph" / "item_ids.parquet").column("item_id").to_pylist()
    colls = pq.read_table(tmp_path / "graph" / "collection_ids.parquet").column("collection_id").to_pylist()
    out = set()
    for i, name in enumerate(items):
        for c in g.item_indices[g.item_indptr[i] : g.item_indptr[i + 1]]:
            out.add((colls[int(c)], name))
    return out


def test_per_user_temporal_split(tmp_path, spark_section, stage_ctx):
    report, pairs = _run(tmp_path, spark_section, stage_ctx)
    want = {(f"I{k}", f"I{k + 1}"): "train" for k in range(5)}
    want.update({("I5", "I6"): "validation", ("I6", "I7"): "validation", ("I7", "I8"): "test", ("I8", "I9"): "test"})
    want.update({("J0", "J1"): "train", ("J1", "J2"): "train", ("J2", "J3"): "validation", ("J3", "J4"): "test"})
    assert pairs == want
    assert report["split_protocol"] == "temporal (user)"
    assert report["events_per_split"] == {"train": 9, "validation": 3, "test": 3}
    # the graph holds exactly the train events: nothing a held-out pair is scored on
    assert _edges(tmp_path) == {("u1", f"I{k}") for k in range(6)} | {("u2", f"J{k}") for k in range(3)}
    clean = pq.read_table(tmp_path / "pairs" / "interactions.parquet").to_pylist()
    assert [r["split"] for r in clean if r["user_id"] == "u1"] == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2


def test_global_time_cut(tmp_path, spark_section, stage_ctx):
    # fractions (0.5, 0.25, 0.25) over 15 timestamps: the exact 0.5 and 0.75 quantiles are the
    # 8th and 12th smallest (ranks ceil(7.5) and ceil(11.25)): 70 (I7) and 1010 (J1). Events after
    # 1010 are test (J2..J4), events in (70, 1010] validation (I8, I9, J0, J1).
    report, pairs = _run(tmp_path, spark_section, stage_ctx, temporal_scope="global", fractions=[0.5, 0.25, 0.25])
    assert report["split_protocol"] == "temporal (global)"
    want = {(f"I{k}", f"I{k + 1}"): "train" for k in range(7)}
    want.update(
        {
            ("I7", "I8"): "validation",
            ("I8", "I9"): "validation",
            ("J0", "J1"): "validation",
            ("J1", "J2"): "test",
            ("J2", "J3"): "test",
            ("J3", "J4"): "test",
        }
    )
    assert pairs == want
    assert _edges(tmp_path) == {("u1", f"I{k}") for k in range(8)}


def test_train_window_widens_training_pairs_only(tmp_path, spark_section, stage_ctx):
    # W = 3: each event also pairs with the events two and three later, kept only when that
    # later event is a training event; held-out pairs stay the consecutive ones above.
    _, pairs = _run(tmp_path, spark_section, stage_ctx, train_window=3)
    want = {(f"I{k}", f"I{k + 1}"): "train" for k in range(5)}
    want.update({(f"I{k}", f"I{k + d}"): "train" for d in (2, 3) for k in range(6 - d)})
    want.update({("I5", "I6"): "validation", ("I6", "I7"): "validation", ("I7", "I8"): "test", ("I8", "I9"): "test"})
    want.update(
        {
            ("J0", "J1"): "train",
            ("J1", "J2"): "train",
            ("J0", "J2"): "train",
            ("J2", "J3"): "validation",
            ("J3", "J4"): "test",
        }
    )
    assert pairs == want
