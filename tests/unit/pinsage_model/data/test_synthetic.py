"""Synthetic generator: determinism, the bench recipe on a scaled-down preset, planted structure."""

import dataclasses

import numpy as np
import pyarrow.compute as pc
import pytest

from pinsage_model.data import synthetic
from pinsage_model.data.contracts import INTERACTIONS, ITEMS


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate("tiny", 0)


@pytest.fixture(scope="module")
def demo():
    return synthetic.generate("demo", 0)


def _files(data, out):
    paths = synthetic.write(data, out)
    return {k: p.read_bytes() for k, p in paths.items()}


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_same_seed_gives_byte_identical_files(preset, tiny, demo, tmp_path):
    first = _files(tiny if preset == "tiny" else demo, tmp_path / "a")
    second = _files(synthetic.generate(preset, 0), tmp_path / "b")
    assert first == second


def test_other_seed_differs(tiny, tmp_path):
    a = _files(tiny, tmp_path / "a")
    b = _files(synthetic.generate("tiny", 1), tmp_path / "b")
    assert a["interactions"] != b["interactions"] and a["items"] != b["items"]


def test_tables_follow_contracts_and_sizes(demo):
    p = synthetic.PRESETS["demo"]
    inter = INTERACTIONS.validate(demo.interactions, "demo")
    items = ITEMS.validate(demo.items, "demo")
    assert inter.column_names == ["user_id", "item_id", "timestamp", "collection_id", "weight"]
    assert inter.num_rows == p.num_edges == 100_000
    assert items.num_rows == p.num_items == 5_000
    assert demo.items["item_id"][123].as_py() == "i0000123"
    assert pc.count_distinct(inter["collection_id"]).as_py() == p.num_collections
    # each interaction is a distinct item-collection edge
    keys = pc.binary_join_element_wise(inter["item_id"], inter["collection_id"], "/")
    assert pc.count_distinct(keys).as_py() == inter.num_rows
    assert pc.all(pc.greater_equal(inter["weight"], 1.0)).as_py()
    assert len(demo.items["features"][0]) == p.feature_dim
    # a user owns about collections_per_user collections
    users = pc.count_distinct(inter["user_id"]).as_py()
    assert users == p.num_collections // p.collections_per_user


def test_generate_graph_is_the_same_graph(tiny):
    g = synthetic.generate_graph("tiny", 0)
    h = synthetic.graph_of(tiny)
    g.validate()
    for name in ("item_indptr", "item_indices", "coll_indptr", "coll_indices"):
        assert np.array_equal(getattr(g, name), getattr(h, name))


def test_bench_recipe_on_scaled_down_preset():
    """Same code path as bench: exact distinct edge count, size cap, Pareto tail, Zipf popularity."""
    p = dataclasses.replace(
        synthetic.PRESETS["bench"],
        num_items=20_000,
        num_collections=4_000,
        num_edges=200_000,
        num_topics=20,
        size_cap=2_000,
    )
    g = synthetic.generate_graph(p, 3)
    g.validate()
    assert g.num_edges == 200_000 and g.num_items == 20_000 and g.num_collections == 4_000
    sizes = g.collection_degree()
    assert sizes.min() >= 1 and sizes.max() <= 2_000
    # Pareto shape 2.1: the Hill estimator over the top 10% of sizes lands near 2.1.
    top = np.sort(sizes)[-400:].astype(float)
    hill = 1.0 / np.mean(np.log(top / top[0]))
    assert 1.6 < hill < 2.7
    # Zipf-like popularity: the log-log slope of degree vs (rank + 10) over the head is near -0.85
    # (distinctness per collection flattens it only slightly for the head items).
    deg = np.sort(g.item_degree())[::-1].astype(float)
    r = np.arange(1, len(deg) + 1)
    sel = slice(20, 2_000)
    slope = np.polyfit(np.log(r[sel] + 10), np.log(deg[sel]), 1)[0]
    assert -1.05 < slope < -0.6
    stats = synthetic.degree_stats(g)
    assert stats["edges"] == 200_000 and stats["collection_degree"]["max"] == sizes.max()


def test_collection_sizes_sum_exactly_and_respect_cap():
    p = dataclasses.replace(synthetic.PRESETS["tiny"], num_edges=1_234)
    sizes = synthetic.collection_sizes(p, np.random.default_rng(0))
    assert sizes.sum() == 1_234 and sizes.min() >= 1 and sizes.max() <= p.size_cap
    with pytest.raises(ValueError, match="cannot be split"):
        synthetic.collection_sizes(dataclasses.replace(p, num_edges=10), np.random.default_rng(0))


def _topics_of(data, column):
    return data.item_topic[pc.cast(pc.utf8_slice_codeunits(data.interactions[column], 1), "int64").to_numpy()]


def test_consecutive_engagements_share_a_topic(demo):
    inter = demo.interactions
    topic = _topics_of(demo, "item_id")
    user = inter["user_id"].to_numpy(zero_copy_only=False)
    ts = inter["timestamp"].to_numpy()
    consecutive = (user[1:] == user[:-1]) & (np.diff(ts) < 86400)  # what the pairs stage pairs
    assert np.all(np.diff(ts)[user[1:] == user[:-1]] > 0)
    same = (topic[1:] == topic[:-1])[consecutive].mean()
    chance = ((np.bincount(topic) / len(topic)) ** 2).sum()
    assert same > 0.4 and same > 10 * chance


def test_collections_follow_their_topic_mixture(demo):
    topic = _topics_of(demo, "item_id")
    coll = pc.cast(pc.utf8_slice_codeunits(demo.interactions["collection_id"], 1), "int64").to_numpy()
    in_mixture = (topic == demo.collection_topics[coll, 0]) | (topic == demo.collection_topics[coll, 1])
    assert in_mixture.mean() > 0.5  # random items would hit 2 of 40 topics about 5% of the time


def test_features_carry_the_topic_imperfectly(demo):
    feats = np.stack(demo.items["features"].to_numpy(zero_copy_only=False))  # (N, F)
    topic = demo.item_topic
    k = topic.max() + 1
    centroids = np.stack([feats[topic == t].mean(axis=0) for t in range(k)])
    pred = (feats @ centroids.T - 0.5 * (centroids**2).sum(axis=1)).argmax(axis=1)
    accuracy = (pred == topic).mean()
    assert 5 / k < accuracy < 0.9  # far above chance, far from perfect: the graph must add signal
    genres = demo.items["genres"].to_pylist()
    assert all(g and set(g.split("|")) <= set(synthetic.GENRES) for g in genres)
    assert all(len(t.split(" ")) == synthetic.TITLE_WORDS for t in demo.items["title"].to_pylist())


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown synthetic preset 'huge'"):
        synthetic.generate("huge", 0)
