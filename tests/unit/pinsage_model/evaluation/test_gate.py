"""The promotion gate as pure functions, with hand-computed expectations."""

from pinsage_model.evaluation.gate import GATE_METRICS, GateDecision, decide, gate, split_metrics


def tags(hr, mrr, split="s1"):
    return {"hit_rate_at_10": repr(hr), "mrr": repr(mrr), "validation_split": split}


def test_gate_without_champion_passes():
    assert gate(tags(0.1, 0.01), None, 0.0) == (True, "no champion yet")


def test_gate_requires_both_metrics_at_least_champion():
    assert gate(tags(0.30, 0.10), tags(0.30, 0.10), 0.0)[0] is True  # equal passes
    ok, why = gate(tags(0.31, 0.09), tags(0.30, 0.10), 0.0)
    assert not ok and "mrr 0.0900 < 0.1000" in why and "hit_rate" not in why
    assert gate(tags(0.31, 0.09), tags(0.30, 0.10), 0.01)[0] is True  # 0.09 >= 0.10 - 0.01
    assert gate(tags(0.31, 0.089), tags(0.30, 0.10), 0.01)[0] is False


def test_gate_refuses_different_split_and_missing_metrics():
    ok, why = gate(tags(0.9, 0.9, "s2"), tags(0.1, 0.1, "s1"), 0.0)
    assert not ok and "different validation splits" in why
    ok, why = gate({"validation_split": "s1"}, tags(0.1, 0.1), 0.0)
    assert not ok and "no validation metrics" in why


def test_gate_metrics_are_pinsage_on_one_split():
    # the evaluation protocol's layout: per method, test and validation splits side by side
    evaluate_layout = {
        "methods": {
            "pinsage": {
                "test": {"hit_rate_at_10": 0.31, "hit_rate_at_50": 0.6, "mrr": 0.12},
                "validation": {"hit_rate_at_10": 0.5, "mrr": 0.3},
            },
            "pixie": {"test": {"hit_rate_at_10": 0.2, "mrr": 0.05}, "validation": {"hit_rate_at_10": 0.1, "mrr": 0.01}},
        },
        "config": {"ks": [10, 50], "test_pairs": 900},
    }
    assert split_metrics(evaluate_layout, "validation") == {"hit_rate_at_10": 0.5, "mrr": 0.3}
    assert split_metrics(evaluate_layout, "test") == {"hit_rate_at_10": 0.31, "mrr": 0.12}
    assert split_metrics({"methods": {"pinsage": {"test": {"mrr": 0.1}, "validation": {}}}}, "validation") == {}
    assert GATE_METRICS == ("hit_rate_at_10", "mrr")


def test_decide_promotes_a_passing_candidate_and_records_the_champion_before():
    assert decide(2, tags(0.4, 0.2), 1, tags(0.3, 0.1), 0.0) == GateDecision(
        True, "hit_rate_at_10 0.4000 >= 0.3000 - 0; mrr 0.2000 >= 0.1000 - 0", 2, 1
    )
    assert decide(1, tags(0.1, 0.01), None, None, 0.0) == GateDecision(True, "no champion yet", 1, None)


def test_decide_keeps_a_failing_candidate_out_unless_forced():
    kept = decide(2, tags(0.2, 0.1), 1, tags(0.3, 0.1), 0.0)
    assert not kept.promote and kept.reason.startswith("worse than champion: hit_rate_at_10 0.2000 < 0.3000")
    forced = decide(2, tags(0.2, 0.1), 1, tags(0.3, 0.1), 0.0, force=True)
    assert forced.promote and forced.reason == f"forced ({kept.reason})"


def test_decide_never_promotes_the_champion_again():
    assert decide(3, {}, 3, None, 0.0, force=True) == GateDecision(False, "version 3 is already champion", 3, 3)
