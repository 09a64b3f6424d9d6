"""The evaluation report's tables and the protocol's small pure helpers, hand-computed."""

import json

import numpy as np

from pinsage_model.config import config_from_dict
from pinsage_model.evaluation.protocol import finite, split_digest, split_protocol
from pinsage_model.evaluation.report import format_table, inductive_table, user_tables


def test_format_table_rounds_and_marks_methods_without_a_similarity():
    rows = {
        "pinsage": {"hit_rate_at_1": 0.5, "hit_rate_at_5": 0.75, "mrr": 0.123456, "kurtosis": 1.234},
        "popularity": {"hit_rate_at_1": 0.0, "hit_rate_at_5": 0.25, "mrr": 0.01, "kurtosis": None},
        "svd": {"hit_rate_at_1": 0.1, "hit_rate_at_5": 0.2, "mrr": 0.05, "kurtosis": float("nan")},
    }
    assert format_table(rows, (1, 5)).splitlines() == [
        "| method | hit@1 | hit@5 | MRR | kurtosis |",
        "|---|---:|---:|---:|---:|",
        "| pinsage | 0.5000 | 0.7500 | 0.1235 | 1.23 |",
        "| popularity | 0.0000 | 0.2500 | 0.0100 | n/a |",
        "| svd | 0.1000 | 0.2000 | 0.0500 | n/a |",
    ]
    assert format_table({"pinsage": rows["pinsage"]}, (1,), kurtosis=False).splitlines()[:2] == [
        "| method | hit@1 | MRR |",
        "|---|---:|---:|",
    ]


def test_inductive_and_user_tables():
    empty = {"n": 0}
    some = {"n": 3, "hit_rate_at_1": 1 / 3, "mrr": 0.5}
    lines = inductive_table(
        {"pinsage": {"inductive": {"query_in_train_graph": some, "query_not_in_train_graph": empty}}}, 1
    )
    assert lines[-1] == "| pinsage | 3, 0.3333, 0.5000 | 0, -, - |"
    users = {"users": 2, "methods": {"pinsage-pooled": {"recall_at_3": 0.5, "ndcg_at_3": 0.25}}}
    lines = user_tables(users, (3,))
    assert "## User-level, test (full ranking, training items masked; 2 test users)" in lines
    assert lines[-1] == "| pinsage-pooled | 0.5000 | 0.2500 |"
    assert not any("validation" in line for line in lines)  # no validation events ranked
    users["homefeed_prior"] = {"weight": 0.08, "grid": [0.0, 0.08], "recall": [0.0637, 0.0777]}
    assert user_tables(users, (3,))[-1] == (
        "pinsage-pooled adds the homefeed popularity prior, weight 0.08 times log(1 + the item's training "
        "engagements), chosen on the validation users (recall@3 0.0777; 0.0637 without it)."
    )


def test_finite_makes_strict_json():
    doc = finite({"a": float("nan"), "b": [1.0, np.float32("inf")], "c": {"d": 2}})
    assert doc == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    json.dumps(doc, allow_nan=False)


def test_split_digest_ignores_the_order_of_the_pairs():
    ids = np.array(["a", "b", "c"], dtype=object)
    one = split_digest(ids, {"q": np.array([0, 1]), "pos": np.array([2, 0])})
    assert one == split_digest(ids, {"q": np.array([1, 0]), "pos": np.array([0, 2])})
    assert one != split_digest(ids, {"q": np.array([0]), "pos": np.array([2])})


def test_split_protocol_names_the_split():
    assert split_protocol(config_from_dict({"pairs": {"split": "hash"}})).startswith("hash of the unordered pair")
    temporal = split_protocol(config_from_dict({"pairs": {"split": "temporal", "temporal_scope": "user"}}))
    assert temporal.startswith("temporal (each user's latest events") and "not in the graph" in temporal
