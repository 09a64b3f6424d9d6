"""What changes if a challenger replaces the champion, on hand-built answers (issue 28, point 5)."""

from __future__ import annotations

import numpy as np
import pytest

from pinsage_model.evaluation.changes import compare_versions, sample_items, top_k_changes


def test_hand_built_changes():
    # top-3 answers of the champion (before) and the challenger (after) to three queries
    before = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    after = [["a", "b", "x"], ["y", "z", "w"], ["i", "h", "g"]]
    out = top_k_changes(before, after, k=3)
    # overlaps 2/3, 0, 3/3 -> mean 5/9; one query of three changed entirely;
    # x, y, z, w are in no champion answer
    assert out["mean_overlap_at_3"] == pytest.approx(5 / 9)
    assert out["share_changed_entirely"] == pytest.approx(1 / 3)
    assert (out["queries"], out["new_items"], out["new_item_examples"]) == (3, 4, ["w", "x", "y", "z"])


def test_only_the_top_k_counts_and_empty_answers_are_unchanged():
    before = [["a", "b", "c", "d"], []]
    after = [["b", "a", "q", "c"], []]  # c is beyond the top 2
    out = top_k_changes(before, after, k=2)
    assert out["mean_overlap_at_2"] == 1.0 and out["share_changed_entirely"] == 0.0 and out["new_items"] == 0
    with pytest.raises(ValueError, match="2 champion answers for 1 challenger answers"):
        top_k_changes(before, after[:1])


def test_the_query_sample_is_fixed_by_the_seed_and_common_to_both():
    a, b = [f"i{k}" for k in range(50)], [f"i{k}" for k in range(10, 60)]
    s1 = sample_items(a, b, 8, seed=3)
    assert s1 == sample_items(list(reversed(a)), b, 8, seed=3) and len(set(s1)) == 8
    assert set(s1) <= set(a) & set(b) and s1 != sample_items(a, b, 8, seed=4)


def test_a_version_compared_with_itself_changes_nothing_and_with_another_something(tmp_path):
    from pinsage_model.serving.index import publish
    from pinsage_model.serving.query import load_version

    ids = [f"i{k}" for k in range(30)]
    rng = np.random.default_rng(0)

    def version(name: str):
        emb = rng.normal(size=(len(ids), 8)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        return load_version(publish(emb, ids, tmp_path / name, "m", {}, created_at="2026-01-01T00:00:00Z"))

    v1, v2 = version("a"), version("b")
    users = [["i1", "i2"], ["i3"], ["unknown"]]
    same = compare_versions(v1, v1, ids[:10], users, k=5)
    assert same["related_items"]["mean_overlap_at_5"] == 1.0 and same["homefeeds"]["queries"] == 2
    assert same["related_items"]["new_items"] == same["homefeeds"]["new_items"] == 0
    other = compare_versions(v1, v2, ids[:10], users, k=5)
    assert other["related_items"]["mean_overlap_at_5"] < 1.0
