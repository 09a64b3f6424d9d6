"""Data without times through the raw, pairs and graph stages (issue #25): adjacency lines.

train.txt: user 0 holds items 10..19, user 1 items 20..24; test.txt: user 0 item 30, user 1 item
31. fractions (0.6, 0.2, 0.2). A seeded hash of (user, item, seed) orders each user's events;
with the test file the last 20% in that order are validation (k > 0.8 n: user 0's last 2 of 10,
user 1's last 1 of 5) and the test file is the test split. Without it the last 20% are test and
the 20% before validation (k > 0.6 n): with the same seed, the same order, so the test events
then are exactly the validation events with the file. Pairs join each event to the next of its
collection (the user) in that order, train events first.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.orchestration.execution import execute
from components.stages import get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.data.contracts import has_event_times
from pinsage_model.graph.csr import CSRGraph

pytestmark = pytest.mark.slow

ITEMS = {"0": {str(i) for i in range(10, 20)} | {"30"}, "1": {str(i) for i in range(20, 25)} | {"31"}}


def _run(tmp_path, spark_section, stage_ctx, test_file: bool, graph: bool = False):
    data = tmp_path / "data"
    data.mkdir(parents=True)
    (data / "train.txt").write_text("0 " + " ".join(map(str, range(10, 20))) + "\n1 20 21 22 23 24\n")
    if test_file:
        (data / "test.txt").write_text("0 30\n1 31\n")
    cfg = config_from_dict(
        {
            "data": {"source": "adjacency", "path": str(data)},
            "spark": spark_section,
            "graph": {"train_collection_fraction": 1.0},
            "pairs": {"fractions": [0.6, 0.2, 0.2], "train_window": 1, "max_gap_s": 1},
        }
    )
    raw = execute(get_stage("raw"), cfg, {}, tmp_path / "raw", stage_ctx)
    report = execute(get_stage("pairs"), cfg, {"raw": tmp_path / "raw"}, tmp_path / "pairs", stage_ctx)
    if graph:
        inputs = {"raw": tmp_path / "raw", "pairs": tmp_path / "pairs"}
        execute(get_stage("graph"), cfg, inputs, tmp_path / "graph", stage_ctx)
    clean = pq.read_table(tmp_path / "pairs" / "interactions.parquet").to_pandas()
    rows = clean.itertuples()
    held: dict[str, set] = {"validation": set(), "test": set()}
    for r in rows:
        held.get(r.split, set()).add((r.user_id, r.item_id))
    pairs = pq.read_table(tmp_path / "pairs" / "pairs.parquet").to_pylist()
    return raw, report, held, pairs


def test_random_hold_out_test_file_and_co_engagement_pairs(tmp_path, spark_section, stage_ctx):
    raw, report, held, pairs = _run(tmp_path / "a", spark_section, stage_ctx, test_file=True, graph=True)
    assert raw["event_times"] is False and not has_event_times(tmp_path / "a" / "raw" / "interactions.parquet")
    assert report["event_times"] is False
    assert report["split_protocol"] == (
        "random per-user hold-out (seeded; test: the data's own test file): the input has no timestamps"
    )
    assert report["events_per_split"] == {"train": 12, "validation": 3, "test": 0}
    assert [sum(u == user for u, _ in held["validation"]) for user in ("0", "1")] == [2, 1]
    val_items = {i for _, i in held["validation"]}
    # every pair lies within one user's items; a train pair touches no held-out event
    assert all(any({p["q_item"], p["pos_item"]} <= items for items in ITEMS.values()) for p in pairs)
    by_split = {s: [(p["q_item"], p["pos_item"]) for p in pairs if p["split"] == s] for s in ("train", "validation")}
    assert len(by_split["train"]) == 7 + 3 and not {i for pair in by_split["train"] for i in pair} & val_items
    assert len(by_split["validation"]) == 3 and {pos for _, pos in by_split["validation"]} == val_items
    # the test split is the test file: one pair per user, from its last validation item to its test item
    test = sorted((p["q_item"], p["pos_item"]) for p in pairs if p["split"] == "test")
    assert [pos for _, pos in test] == ["30", "31"] and all(q in val_items for q, _ in test)
    # the graph holds the train events only, with no recency order
    g = CSRGraph.load(tmp_path / "a" / "graph" / "graph.npz")
    assert g.num_edges == 12
    assert not np.load(tmp_path / "a" / "graph" / "collection_recency.npy").any()

    raw, report, held_b, pairs = _run(tmp_path / "b", spark_section, stage_ctx, test_file=False)
    assert report["split_protocol"].startswith("random per-user hold-out (seeded; test: a seeded random per-user")
    assert report["events_per_split"] == {"train": 9, "validation": 3, "test": 3}
    assert held_b["test"] == held["validation"]  # the same seeded order
    assert not held_b["test"] & held_b["validation"]
