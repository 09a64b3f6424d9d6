"""User head: recency order by hand, the untrained head equals mean pooling, training and files."""

import numpy as np
import pytest

from pinsage_model.config import ConfigError, UserHeadConfig, config_from_dict
from pinsage_model.data.contracts import ContractError, read_user_shift
from pinsage_model.graph.csr import CSRGraph, collection_recency, read_collection_recency
from pinsage_model.model.user_head import (
    apply_head,
    load_head,
    pooled,
    recency_weights,
    save_head,
    time_ordered,
    train_head,
    user_vectors,
)


def _graph():
    # collection 0 engaged items 2 (t=5), 0 (t=9), 3 (t=1); collection 1 items 1 (t=4), 3 (t=4)
    items, colls, ts = np.array([2, 0, 3, 1, 3]), np.array([0, 0, 0, 1, 1]), np.array([5, 9, 1, 4, 4])
    return CSRGraph.from_edges(items, colls, 4, 2), items, colls, ts


def test_collection_recency_by_hand():
    g, items, colls, ts = _graph()
    assert g.coll_indices.tolist() == [0, 2, 3, 1, 3]  # rows sorted by item
    rec = collection_recency(g, items, colls, ts)
    # collection 0: item 0 latest (0), item 2 next (1), item 3 oldest (2); collection 1: equal
    # timestamps rank the higher item index as later: item 3 -> 0, item 1 -> 1
    assert rec.tolist() == [0, 1, 2, 1, 0]
    assert time_ordered(g, rec).tolist() == [3, 2, 0, 1, 3]  # oldest first
    # edges that are not the graph's are refused
    with pytest.raises(ContractError):
        collection_recency(g, items[:4], colls[:4], ts[:4])


def test_recency_weights_and_pooling_by_hand():
    g, items, colls, ts = _graph()
    rec = collection_recency(g, items, colls, ts)
    assert recency_weights(rec, 0.0).tolist() == [1.0] * 5
    w = recency_weights(rec, 2.0)
    assert w == pytest.approx(np.exp(-np.array([0, 1, 2, 1, 0]) / 2.0))
    emb = np.eye(4, dtype=np.float32)
    p = pooled(emb, g, w)
    expect0 = np.array([1.0, 0.0, np.exp(-0.5), np.exp(-1.0)])
    assert p[0] == pytest.approx(expect0 / np.linalg.norm(expect0), abs=1e-6)


def test_untrained_head_is_mean_pooling_and_the_hidden_layer_adds_to_it():
    g, items, colls, ts = _graph()
    rec = collection_recency(g, items, colls, ts)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 3)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    head = {
        "W1": rng.normal(size=(3, 5)).astype(np.float32),
        "b1": np.zeros(5, np.float32),
        "W2": np.zeros((5, 3), np.float32),
        "shift": np.zeros(3, np.float32),
        "recency_half_life": np.float32(0),
    }
    mean = emb[[0, 2, 3]].mean(0)
    assert user_vectors(emb, g, rec, head)[0] == pytest.approx(mean / np.linalg.norm(mean), abs=1e-6)
    head["W2"] = np.ones((5, 3), np.float32)
    p = pooled(emb, g, np.ones(5))
    u = p + np.maximum(p @ head["W1"], 0) @ head["W2"]
    assert apply_head(p, head) == pytest.approx(u, abs=1e-5)


def _sequences(n_users=40, n_items=30, length=8, seed=0):
    """Users who walk a ring of items: later items follow from the latest ones, not the mean."""
    rng = np.random.default_rng(seed)
    items, colls, ts = [], [], []
    for u in range(n_users):
        start = rng.integers(n_items)
        path = (start + np.arange(length)) % n_items
        items += path.tolist()
        colls += [u] * length
        ts += list(range(length))
    items, colls, ts = np.array(items), np.array(colls), np.array(ts)
    g = CSRGraph.from_edges(items, colls, n_items, n_users)
    return g, collection_recency(g, items, colls, ts)


def test_training_lowers_the_loss_deterministically_and_round_trips(tmp_path):
    g, rec = _sequences()
    angle = 2 * np.pi * np.arange(30) / 30
    emb = np.stack([np.cos(angle), np.sin(angle), np.zeros(30)], 1).astype(np.float32)  # items on a circle
    cfg = UserHeadConfig(enabled=True, hidden_dim=16, recency_half_life=2.0, steps=60, batch_size=16, lr=0.01)
    head, report = train_head(emb, g, rec, np.arange(g.num_collections), cfg, progress=False)
    assert report["users"] == 40 and report["loss_last"] < report["loss_first"]
    again, _ = train_head(emb, g, rec, np.arange(g.num_collections), cfg, progress=False)
    for k in head:
        assert np.array_equal(head[k], again[k]), k
    save_head(head, tmp_path)
    loaded = load_head(tmp_path)
    assert set(loaded) == set(head) and np.array_equal(loaded["W1"], head["W1"])
    assert float(loaded["recency_half_life"]) == 2.0
    assert load_head(tmp_path / "nowhere") is None
    # a sampled candidate set trains too
    sampled, rep = train_head(emb, g, rec, np.arange(40), cfg.replace(experimental={"negatives": 8}), progress=False)
    assert np.all(np.isfinite(sampled["W2"])) and rep["loss_last"] < rep["loss_first"]


def test_user_shift_is_read_and_required(tmp_path):
    with pytest.raises(ContractError, match="user_shift.npy: not found; rerun the embeddings stage"):
        read_user_shift(tmp_path, 3)
    np.save(tmp_path / "query_shift.npy", np.array([1, 2, 3], np.float32))
    with pytest.raises(ContractError, match="user_shift.npy"):
        read_user_shift(tmp_path, 3)  # the query shift is not read in its place
    np.save(tmp_path / "user_shift.npy", np.array([4, 5, 6], np.float32))
    assert read_user_shift(tmp_path, 3).tolist() == [4.0, 5.0, 6.0]
    with pytest.raises(ContractError):
        read_user_shift(tmp_path, 2)


def test_recency_file_is_required_and_checked(tmp_path):
    g, items, colls, ts = _graph()
    with pytest.raises(ContractError, match="rerun the graph stage"):
        read_collection_recency(tmp_path, g)
    np.save(tmp_path / "collection_recency.npy", np.zeros(3, np.int32))
    with pytest.raises(ContractError, match="shape"):
        read_collection_recency(tmp_path, g)


def test_config_ranges():
    assert config_from_dict({"user_head": {"enabled": True}}).user_head.steps == 2000
    bad_values = (
        {"experimental": {"min_input_fraction": 1.0}},
        {"steps": 0},
        {"recency_half_life": -1.0},
        {"experimental": {"negatives": -1}},
    )
    for bad in bad_values:
        with pytest.raises(ConfigError, match="user_head"):
            config_from_dict({"user_head": bad})


def _dense_reference_batch(rng, users, indptr, seq, n, cfg):
    """The per-user loop with dense (B, K) target and mask matrices the array form replaced (issue #24)."""
    batch = rng.choice(users, cfg.batch_size)
    lens = np.diff(indptr)[batch]
    cuts = np.clip(
        np.floor(lens * rng.uniform(cfg.experimental.min_input_fraction, 1.0, len(batch))).astype(np.int64), 1, lens - 1
    )
    inp = np.full((len(batch), int(cuts.max())), n, np.int64)
    a = np.zeros(inp.shape, np.float32)
    rows_in, rows_out = [], []
    for r, (c, k) in enumerate(zip(batch, cuts)):
        items = seq[indptr[c] : indptr[c + 1]]
        inp[r, :k] = items[:k]
        a[r, :k] = np.exp(-np.arange(k - 1, -1, -1) / cfg.recency_half_life)
        rows_in.append(items[:k])
        rows_out.append(items[k:])
    if cfg.experimental.negatives:
        cand = np.unique(np.concatenate([rng.choice(n, cfg.experimental.negatives, replace=False), *rows_out]))
    else:
        cand = np.arange(n)
    pos_of = np.full(n, -1, np.int64)
    pos_of[cand] = np.arange(len(cand))
    tgt, mask = np.zeros((len(batch), len(cand)), np.float32), np.zeros((len(batch), len(cand)), np.float32)
    for r in range(len(batch)):
        tgt[r, pos_of[rows_out[r]]] = 1.0
        seen = pos_of[rows_in[r]]
        mask[r, seen[seen >= 0]] = 1.0
    return inp, a, cand, tgt, mask


@pytest.mark.parametrize("negatives", [0, 7])
def test_batch_pairs_equal_the_dense_reference(negatives):
    from pinsage_model.model.user_head import _head_batch

    rng = np.random.default_rng(5)
    n, n_users = 30, 12
    lens = rng.integers(2, 9, n_users)
    indptr = np.concatenate([[0], np.cumsum(lens)])
    seq = np.concatenate([rng.choice(n, k, replace=False) for k in lens])  # distinct items per user
    cfg = UserHeadConfig(batch_size=16, recency_half_life=3.0, experimental={"negatives": negatives})
    users = np.arange(n_users)
    inp, a, cand, targets, seen = _head_batch(np.random.default_rng(1), users, indptr, seq, n, cfg)
    r_inp, r_a, r_cand, tgt, mask = _dense_reference_batch(np.random.default_rng(1), users, indptr, seq, n, cfg)
    np.testing.assert_array_equal(inp, r_inp)
    np.testing.assert_allclose(a, r_a, rtol=1e-6)
    np.testing.assert_array_equal(cand, r_cand)
    np.testing.assert_array_equal(targets, np.argwhere(tgt > 0))
    np.testing.assert_array_equal(seen, np.argwhere(mask > 0))
