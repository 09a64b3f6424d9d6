"""Stage "pairs" on hand-written interaction logs: exact pairs, quarantine, ties and splits.

One log holds three parts with disjoint ids, so a single Spark run checks them all:

* a hand-written log (users u1-u4) whose pairs are worked out below;
* 400 users with two events at the SAME second, items ``ta<i>`` < ``tb<i>``: an id order would
  always give ta -> tb;
* 12 000 users with two events each on random items ``s<k>``: about 12k distinct pairs for the
  split fractions.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.data.contracts import ContractError

pytestmark = pytest.mark.slow
WHEN = "2026-01-12T00:00:00Z"

# (user, item, timestamp as written, weight). max_gap_s = 100 in these tests.
HAND = [
    ("u1", "A", "0", 4.0),
    ("u1", "B", "10", 4.0),
    ("u1", "B", "20", 4.0),  # repeat of B: no self-pair; the last B pairs with C
    ("u1", "C", "30", 2.0),
    ("u1", "D", "100000", 4.0),  # 99 970 s after C: over the gap
    ("u1", "E", "100050", 4.0),
    ("u2", "B", "6", 4.0),  # written out of time order on purpose
    ("u2", "A", "5", 4.0),
    ("u2", "A", "7", 4.0),
    ("u2", "B", "8", 4.0),
    ("u3", "X", "50", 4.0),  # X and Y at the same second: one pair, direction from the hash
    ("u3", "Y", "50", 4.0),
    (None, "A", "1", 4.0),  # row 12: null user
    ("u4", None, "1", 4.0),  # row 13: null item
    ("u4", "A", "abc", 4.0),  # row 14: unparsable timestamp
    ("u4", "A", "3", float("nan")),  # row 15: NaN weight
    ("u1", "A", "0", 5.0),  # row 16: repeat of row 0's (user, item, timestamp)
]
EXPECTED_HAND = {("A", "B"): 3, ("B", "A"): 1, ("B", "C"): 1, ("D", "E"): 1}
EXPECTED_QUARANTINE = [
    (12, "null_user_id"),
    (13, "null_item_id"),
    (14, "bad_timestamp"),
    (15, "bad_weight"),
    (16, "duplicate"),
]
N_TIED_USERS = 400
N_SPLIT_USERS = 12_000


def _log() -> pa.Table:
    users, items, ts, weight = (list(c) for c in zip(*HAND))
    for i in range(N_TIED_USERS):
        users += [f"t{i:04d}"] * 2
        items += [f"ta{i:04d}", f"tb{i:04d}"]
        ts += ["1000", "1000"]
        weight += [4.0, 4.0]
    rng = np.random.default_rng(7)
    picks = rng.integers(0, 200_000, size=(N_SPLIT_USERS, 2))
    for i, (a, b) in enumerate(picks):
        users += [f"s{i:05d}"] * 2
        items += [f"s{a:06d}", f"s{b:06d}x"]  # the suffix keeps the two items distinct
        ts += ["2000", "2010"]
        weight += [4.0, 4.0]
    return pa.table({"user_id": users, "item_id": items, "timestamp": ts, "weight": weight})


def _cfg(spark_section: dict, **pairs) -> object:
    # the hash split: these logs check pair extraction and the pair hash (test_pairs_temporal.py
    # checks the temporal split)
    return config_from_dict({"spark": spark_section, "pairs": {"max_gap_s": 100, "split": "hash", **pairs}})


def _pairs(out: Path) -> dict[tuple[str, str], tuple[int, str]]:
    t = pq.read_table(out / "pairs.parquet").to_pylist()
    return {(r["q_item"], r["pos_item"]): (r["count"], r["split"]) for r in t}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, spark, spark_section):
    d = tmp_path_factory.mktemp("pairs_run")
    (d / "raw").mkdir()
    pq.write_table(_log(), d / "raw" / "interactions.parquet", row_group_size=5000)
    report = execute(
        get_stage("pairs"), _cfg(spark_section), {"raw": d / "raw"}, d / "pairs", StageContext.create(d, "test", WHEN)
    )
    return d, report


def test_hand_written_log_gives_exact_pairs(run_dir):
    d, report = run_dir
    pairs = _pairs(d / "pairs")
    hand = {k: v[0] for k, v in pairs.items() if k[0] in "ABCDEXY" and len(k[0]) == 1}
    tie = [k for k in hand if set(k) == {"X", "Y"}]
    assert len(tie) == 1 and hand.pop(tie[0]) == 1
    assert hand == EXPECTED_HAND
    # the unordered pair decides the split: (A, B) and (B, A) never land in different splits
    assert pairs[("A", "B")][1] == pairs[("B", "A")][1]


def test_quarantine_and_row_accounting(run_dir):
    d, report = run_dir
    q = pq.read_table(d / "pairs" / "quarantine.parquet").to_pylist()
    assert [(r["row"], r["reason"]) for r in q] == EXPECTED_QUARANTINE
    assert q[2]["timestamp"] == "abc" and q[2]["source"].endswith("raw/interactions.parquet")
    n_in = len(HAND) + 2 * N_TIED_USERS + 2 * N_SPLIT_USERS
    assert report["interactions_read"] == n_in
    assert report["interactions_quarantined"] == len(EXPECTED_QUARANTINE)
    assert report["interactions_kept"] + report["interactions_quarantined"] == n_in
    assert report["quarantined_by_reason"] == {r: 1 for _, r in EXPECTED_QUARANTINE}
    kept = n_in - len(EXPECTED_QUARANTINE)
    # X/Y plus the 400 tied users share a timestamp with another of their user's events
    assert report["same_timestamp_event_share"] == pytest.approx((2 + 2 * N_TIED_USERS) / kept)
    assert report["repeat_transitions"] == 1 and report["over_gap_transitions"] == 1


def test_cleaned_interactions_are_the_kept_rows_in_file_order(run_dir):
    d, report = run_dir
    clean = pq.read_table(d / "pairs" / "interactions.parquet")
    bad_rows = {row for row, _ in EXPECTED_QUARANTINE}
    kept = [r for i, r in enumerate(_log().to_pylist()) if i not in bad_rows]
    assert clean.num_rows == report["clean_interactions"] == report["interactions_kept"] == len(kept)
    assert clean.column("item_id").to_pylist() == [r["item_id"] for r in kept]
    assert clean.column("timestamp").to_pylist() == [int(r["timestamp"]) for r in kept]
    # no collection column in the log: each user is their own collection
    assert clean.column("collection_id").to_pylist() == [r["user_id"] for r in kept]
    assert clean.schema.field("timestamp").type == pa.int64() and clean.schema.field("weight").type == pa.float64()


def test_same_timestamp_ties_are_not_ordered_by_item_id(run_dir):
    d, _ = run_dir
    pairs = _pairs(d / "pairs")
    tied = [k for k in pairs if k[0].startswith("t")]
    assert len(tied) == N_TIED_USERS  # exactly one direction per user
    forward = sum(k[0].startswith("ta") for k in tied)
    # an id order would give 400; a fair hash gives 200 +- 10 (one SD): allow 5 SD
    assert abs(forward - N_TIED_USERS / 2) < 5 * math.sqrt(N_TIED_USERS / 4)


def test_splits_are_disjoint_and_near_70_10_20(run_dir):
    d, report = run_dir
    t = pq.read_table(d / "pairs" / "pairs.parquet")
    keys = list(zip(t.column("q_item").to_pylist(), t.column("pos_item").to_pylist()))
    assert len(keys) == len(set(keys))  # each pair once, so in exactly one split
    splits = t.column("split").to_pylist()
    sampled = [s for (q, _), s in zip(keys, splits) if q.startswith("s")]
    assert len(sampled) >= 10_000
    for name, frac in zip(("train", "validation", "test"), (0.7, 0.1, 0.2)):
        assert abs(sampled.count(name) / len(sampled) - frac) <= 0.01, name
    assert sum(report["pairs_per_split"].values()) == t.num_rows


def test_pairs_identical_on_local_1_with_other_partitioning(run_dir, spark_section, tmp_path):
    """A separate JVM on local[1], 3 shuffle partitions (the fixture: local[2], 4) and the input
    split into other row groups, through the stage's command line: byte-identical pairs."""
    d, _ = run_dir
    raw2 = tmp_path / "raw"
    raw2.mkdir()
    pq.write_table(_log(), raw2 / "interactions.parquet", row_group_size=777)
    conf = tmp_path / "local1.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "spark": {**spark_section, "master": "local[1]", "shuffle_partitions": 3},
                "pairs": {"max_gap_s": 100, "split": "hash"},
            }
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.stages.pairs",
            "--config",
            str(conf),
            "--raw",
            str(raw2),
            "--output",
            str(tmp_path / "pairs1"),
            "--run-id",
            "local1",
            "--run-area",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("pairs.parquet", "interactions.parquet"):
        assert (tmp_path / "pairs1" / name).read_bytes() == (d / "pairs" / name).read_bytes(), name


def test_rating_filter_and_min_support(spark_section, tmp_path, stage_ctx):
    (tmp_path / "raw").mkdir()
    users, items, ts, weight = (list(c) for c in zip(*HAND[:12]))
    pq.write_table(
        pa.table({"user_id": users, "item_id": items, "timestamp": ts, "weight": weight}),
        tmp_path / "raw" / "interactions.parquet",
    )
    cfg = _cfg(spark_section, min_rating=3.0, min_item_support=2)
    report = execute(get_stage("pairs"), cfg, {"raw": tmp_path / "raw"}, tmp_path / "pairs", stage_ctx)
    # C (weight 2) is filtered, so u1 reads A B B | D E: B -> D is over the gap. Support:
    # A 3, B 4, D 1, E 1, X 1, Y 1 -> only pairs among A and B survive.
    assert {k: v[0] for k, v in _pairs(tmp_path / "pairs").items()} == {("A", "B"): 3, ("B", "A"): 1}
    assert report["quarantined_by_reason"] == {"below_min_rating": 1}
    assert report["interactions_kept"] == 11
    # the rating selects engagements for pairs; the cleaned interactions (graph edges) keep C
    clean = pq.read_table(tmp_path / "pairs" / "interactions.parquet")
    assert clean.num_rows == report["clean_interactions"] == 12 and "C" in clean.column("item_id").to_pylist()


def test_errors_name_the_file_and_column(spark_section, tmp_path, stage_ctx):
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["A"]}), tmp_path / "raw" / "interactions.parquet")
    with pytest.raises(ContractError, match=r"interactions.parquet: missing required column 'timestamp'"):
        execute(get_stage("pairs"), _cfg(spark_section), {"raw": tmp_path / "raw"}, tmp_path / "pairs", stage_ctx)
    pq.write_table(
        pa.table({"user_id": ["u", "u"], "item_id": ["A", "B"], "timestamp": [1, 2], "weight": [1.0, 1.0]}),
        tmp_path / "raw" / "interactions.parquet",
    )
    with pytest.raises(Exception, match=r"all 2 interactions were quarantined"):
        execute(
            get_stage("pairs"),
            _cfg(spark_section, min_rating=3.0),
            {"raw": tmp_path / "raw"},
            tmp_path / "pairs",
            stage_ctx,
        )
    assert not (tmp_path / "pairs").exists()  # a failed stage leaves nothing behind
