"""faiss index publishing: exact/approximate kinds, recall floor, atomic versions, live readers."""

import json
import os
import threading
import time

import numpy as np
import pytest

from pinsage_model.config import HnswIndex, IndexConfig, IvfIndex
from pinsage_model.serving.index import CURRENT, IndexRecallError, IndexVersionError, publish
from pinsage_model.serving.query import IndexReader, load_version

CREATED = "2026-01-01T00:00:00Z"
IDS = [f"item-{i}" for i in range(300)]


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_related(emb: np.ndarray, row: int, k: int) -> list[str]:
    scores = emb @ emb[row]
    scores[row] = -np.inf
    return [IDS[j] for j in np.argsort(-scores)[:k]]


def test_publish_writes_complete_version_and_reader_answers(tmp_path):
    emb = unit_rows(300, 16, seed=0)
    vdir = publish(emb, IDS, tmp_path, "m1", {"hit_rate@10": 0.5}, created_at=CREATED)
    assert (tmp_path / CURRENT).read_text().strip() == vdir.name
    assert vdir.name.startswith("m1-")
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["model_version"] == "m1" and manifest["created_at"] == CREATED
    assert manifest["metrics"] == {"hit_rate@10": 0.5}
    assert manifest["index"]["kind"] == "flat_ip" and manifest["recall_at_10"] == 1.0
    assert set(manifest["files"]) == {"index.faiss", "ids.parquet", "embeddings.npy"}
    version = IndexReader(tmp_path).current()
    (nb,) = version.related_items(["item-7"], k=5)
    assert nb.version == vdir.name and nb.item_ids == exact_related(emb, 7, 5)
    np.testing.assert_allclose(nb.scores, np.sort(emb[[IDS.index(i) for i in nb.item_ids]] @ emb[7])[::-1], atol=1e-5)
    # related to any: best score of each candidate against either item, the items excluded
    hf = version.related_to_any(["item-1", "item-2"], k=6)
    best = np.maximum(emb @ emb[1], emb @ emb[2])
    best[[1, 2]] = -np.inf
    assert hf.item_ids == [IDS[j] for j in np.argsort(-best)[:6]]
    # same content again: no new version, CURRENT unchanged
    assert publish(emb, IDS, tmp_path, "m1", {}, created_at=CREATED) == vdir
    assert len(list((tmp_path / "versions").iterdir())) == 1


def test_query_shift_is_published_and_added_to_every_query(tmp_path):
    from pinsage_model.serving.index import mirror_version

    emb = unit_rows(300, 16, seed=3)
    shift = np.full(16, 0.4, np.float32)
    plain = publish(emb, IDS, tmp_path / "a", "m1", {}, created_at=CREATED)
    shifted = publish(emb, IDS, tmp_path / "b", "m1", {}, created_at=CREATED, query_shift=shift)
    assert shifted.name != plain.name  # the shift is part of the version's content
    assert set(json.loads((shifted / "manifest.json").read_text())["files"]) == {
        "index.faiss",
        "ids.parquet",
        "embeddings.npy",
        "query_shift.npy",
    }
    # a zero shift is no shift: the same version as without one
    assert publish(emb, IDS, tmp_path / "c", "m1", {}, created_at=CREATED, query_shift=np.zeros(16)).name == plain.name
    scores = emb @ (emb[7] + shift)
    scores[7] = -np.inf
    want = [IDS[j] for j in np.argsort(-scores)[:5]]
    assert IndexReader(tmp_path / "b").current().related_items(["item-7"], k=5)[0].item_ids == want
    assert IndexReader(tmp_path / "a").current().related_items(["item-7"], k=5)[0].item_ids == exact_related(emb, 7, 5)
    best = np.maximum(emb @ (emb[1] + shift), emb @ (emb[2] + shift))
    best[[1, 2]] = -np.inf
    assert IndexReader(tmp_path / "b").current().related_to_any(["item-1", "item-2"], k=6).item_ids == [
        IDS[j] for j in np.argsort(-best)[:6]
    ]
    mirror_version(shifted, tmp_path / "mirror")
    np.testing.assert_array_equal(load_version(tmp_path / "mirror" / "versions" / shifted.name).query_shift, shift)
    with pytest.raises(ValueError, match="query_shift"):
        publish(emb, IDS, tmp_path / "d", "m1", {}, created_at=CREATED, query_shift=np.ones(3))


def test_user_head_is_published_and_builds_the_homefeed_vector_as_evaluation_does(tmp_path):
    from pinsage_model.graph.csr import CSRGraph, collection_recency
    from pinsage_model.model.user_head import user_vectors

    emb = unit_rows(300, 16, seed=0)
    rng = np.random.default_rng(1)
    head = {
        "W1": rng.normal(size=(16, 8)).astype(np.float32),
        "b1": rng.normal(size=8).astype(np.float32),
        "W2": rng.normal(size=(8, 16)).astype(np.float32),
        "shift": rng.normal(size=16).astype(np.float32),
        "recency_half_life": np.float32(1.5),
    }
    plain = publish(emb, IDS, tmp_path / "a", "m1", {}, created_at=CREATED)
    vdir = publish(emb, IDS, tmp_path / "b", "m1", {}, created_at=CREATED, user_head=head)
    assert vdir.name != plain.name and "user_head.npz" in json.loads((vdir / "manifest.json").read_text())["files"]
    v = load_version(vdir)
    assert load_version(plain).user_head is None and np.array_equal(v.user_head["W2"], head["W2"])
    # one user who engaged items 5, 9, 2 in that order: the served vector equals evaluation's
    items = np.array([5, 9, 2])
    g = CSRGraph.from_edges(items, np.zeros(3, int), 300, 1)
    served = v.user_query(["item-5", "item-9", "item-2"])
    offline = (
        user_vectors(emb, g, collection_recency(g, items, np.zeros(3, int), np.array([1, 2, 3])), head)[0]
        + head["shift"]
    )
    np.testing.assert_allclose(served, offline, atol=1e-5)
    feed = IndexReader(tmp_path / "b").current().homefeed_from_recent(["item-5", "nope", "item-9", "item-2"], k=4)
    scores = emb @ served
    scores[[5, 9, 2]] = -np.inf
    assert feed.item_ids == [IDS[j] for j in np.argsort(-scores)[:4]]
    # without a head: the recent items' mean on the unit sphere plus the query shift
    mean = emb[[5, 9]].mean(0)
    np.testing.assert_allclose(
        load_version(plain).user_query(["item-5", "item-9"]), mean / np.linalg.norm(mean), atol=1e-6
    )
    with pytest.raises(KeyError):
        IndexReader(tmp_path / "b").current().homefeed_from_recent(["nope"])


def test_homefeed_from_a_user_vector_adds_the_user_shift(tmp_path):
    emb = unit_rows(300, 16, seed=4)
    shift = np.full(16, 0.2, np.float32)
    rng = np.random.default_rng(2)
    head = {
        "W1": rng.normal(size=(16, 4)).astype(np.float32),
        "b1": np.zeros(4, np.float32),
        "W2": rng.normal(size=(4, 16)).astype(np.float32),
        "shift": rng.normal(size=16).astype(np.float32),
        "recency_half_life": np.float32(2.0),
    }
    plain = load_version(publish(emb, IDS, tmp_path / "a", "m1", {}, created_at=CREATED, query_shift=shift))
    headed = load_version(
        publish(emb, IDS, tmp_path / "b", "m1", {}, created_at=CREATED, query_shift=shift, user_head=head)
    )
    user = unit_rows(1, 16, seed=9)[0]
    # without a head the user shift is the query shift; with one, the head's own shift
    for version, user_shift in ((plain, shift), (headed, head["shift"])):
        scores = emb @ (user + user_shift)
        scores[3] = -np.inf
        feed = version.homefeed(user, k=5, exclude=["item-3"])
        assert feed.item_ids == [IDS[j] for j in np.argsort(-scores)[:5]]
        np.testing.assert_allclose(feed.scores, np.sort(scores)[::-1][:5], atol=1e-5)


def test_install_version_copies_a_version_unchanged_without_switching_current(tmp_path):
    from pinsage_model.serving.index import VERSIONS, install_version

    built = publish(unit_rows(300, 8, 5), IDS, tmp_path / "built", "m1", {}, created_at=CREATED, make_current=False)
    assert not (tmp_path / "built" / CURRENT).exists()
    serving = publish(unit_rows(300, 8, 6), IDS, tmp_path / "root", "m0", {}, created_at=CREATED)
    dest = install_version(built, tmp_path / "root")
    assert dest == tmp_path / "root" / VERSIONS / built.name
    assert {f.name: f.read_bytes() for f in dest.iterdir()} == {f.name: f.read_bytes() for f in built.iterdir()}
    assert (tmp_path / "root" / CURRENT).read_text().strip() == serving.name
    assert install_version(built, tmp_path / "root") == dest  # already there: nothing to do
    assert load_version(dest).name == built.name  # checksums verified
    with pytest.raises(IndexVersionError):
        install_version(tmp_path / "nowhere", tmp_path / "root")


def test_publish_embeddings_orders_by_item_idx_and_leaves_zero_rows_out(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pinsage_model.serving.index import publish_embeddings

    emb = unit_rows(5, 4, seed=7)
    emb[2] = 0.0  # a dead row
    (tmp_path / "emb").mkdir()
    np.save(tmp_path / "emb" / "items.npy", emb)
    np.save(tmp_path / "emb" / "query_shift.npy", np.zeros(4, np.float32))  # zero: no shift in the version
    (tmp_path / "emb" / "model.json").write_text(json.dumps({"model_version": "sha-1", "weights_digest": "w1"}))
    ids = pa.table(
        {
            "item_idx": pa.array([4, 0, 3, 1, 2], pa.int32()),
            "item_id": ["e", "a", "d", "b", "c"],
            "in_train_graph": [True] * 5,
        }
    )
    pq.write_table(ids, tmp_path / "item_ids.parquet")
    cfg = IndexConfig()
    vdir, excluded = publish_embeddings(
        tmp_path / "emb",
        tmp_path / "item_ids.parquet",
        tmp_path / "root",
        {"m": 1.0},
        created_at=CREATED,
        cfg=cfg,
        seed=0,
        make_current=False,
    )
    assert excluded == 1 and not (tmp_path / "root" / CURRENT).exists()
    v = load_version(vdir)
    assert v.item_ids.tolist() == ["a", "b", "d", "e"] and v.item_idx.tolist() == [0, 1, 3, 4]
    np.testing.assert_allclose(v.embeddings, emb[[0, 1, 3, 4]])
    assert (v.manifest["model_version"], v.manifest["weights_digest"], v.manifest["metrics"]) == (
        "sha-1",
        "w1",
        {"m": 1.0},
    )
    assert v.homefeed_prior is None  # no prior folder given
    # the evaluation's homefeed prior (by item index) travels with the version, by the index's rows
    from pinsage_model.model.prior import save_prior

    save_prior(tmp_path / "eval", np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 0.05)
    vdir = publish_embeddings(
        tmp_path / "emb",
        tmp_path / "item_ids.parquet",
        tmp_path / "root",
        {"m": 1.0},
        created_at=CREATED,
        cfg=cfg,
        seed=0,
        make_current=False,
        prior_dir=tmp_path / "eval",
    )[0]
    v = load_version(vdir)
    np.testing.assert_array_equal(v.homefeed_prior[0], [0.0, 1.0, 3.0, 4.0])
    assert v.homefeed_prior[1] == pytest.approx(0.05)


def test_recall_floor_stops_publishing(tmp_path):
    emb = unit_rows(2000, 32, seed=1)
    weak = IndexConfig(exact_threshold=0, ann=HnswIndex(m=2, ef_search=1), recall_floor=0.99, recall_queries=200)
    with pytest.raises(IndexRecallError, match="recall@10 of the hnsw index is"):
        publish(emb, [str(i) for i in range(2000)], tmp_path, "m", {}, created_at=CREATED, cfg=weak)
    assert not (tmp_path / CURRENT).exists()
    assert not (tmp_path / "versions").exists() or not any((tmp_path / "versions").iterdir())
    # IVF probing every list is exhaustive: recall 1 passes the same floor
    exhaustive = IndexConfig(exact_threshold=0, ann=IvfIndex(nlist=8, nprobe=8), recall_floor=0.99, recall_queries=200)
    vdir = publish(emb, [str(i) for i in range(2000)], tmp_path, "m", {}, created_at=CREATED, cfg=exhaustive)
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["index"] == {"kind": "ivf", "nlist": 8, "nprobe": 8}
    assert manifest["recall_at_10"] == 1.0


def test_corrupted_version_is_refused(tmp_path):
    vdir = publish(unit_rows(300, 8, 2), IDS, tmp_path, "m", {}, created_at=CREATED)
    arr = np.load(vdir / "embeddings.npy")
    arr[0, 0] += 1
    np.save(vdir / "embeddings.npy", arr)
    with pytest.raises(IndexVersionError, match="checksum"):
        load_version(vdir)


def test_reader_never_sees_a_mixed_index_while_publishing(tmp_path):
    # four versions over the same ids with different geometry: each has its own exact answers
    embs = [unit_rows(300, 16, seed=s) for s in range(4)]
    queries = [0, 5, 17, 42]
    publish(embs[0], IDS, tmp_path, "v0", {}, created_at=CREATED)
    expected: dict[str, list[list[str]]] = {}
    names = []
    for i, e in enumerate(embs):
        name = publish(e, IDS, tmp_path / "scratch", f"v{i}", {}, created_at=CREATED).name
        names.append(name)
        expected[name] = [exact_related(e, q, 10) for q in queries]
    reader = IndexReader(tmp_path)
    stop, errors, seen = threading.Event(), [], []
    lock = threading.Condition()

    def query_loop():
        while not stop.is_set():
            version = None
            try:
                answers = reader.current().related_items([IDS[q] for q in queries], k=10)
                versions = {a.version for a in answers}
                assert len(versions) == 1, f"one batch answered from {versions}"
                version = answers[0].version
                assert [a.item_ids for a in answers] == expected[version], f"answers differ from version {version}"
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(repr(exc))
                stop.set()
            with lock:
                seen.append(version)
                lock.notify_all()

    thread = threading.Thread(target=query_loop)
    thread.start()
    try:
        for round_ in range(3):
            for i in [1, 2, 3, 0]:
                publish(embs[i], IDS, tmp_path, f"v{i}", {}, created_at=CREATED)
                with lock:  # let the reader answer a few batches from this version
                    target = len(seen) + 3
                    lock.wait_for(lambda: len(seen) >= target or stop.is_set(), timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors[:3]
    assert set(seen) == set(names)  # every version was served at some point


def test_prune_keeps_newest_serving_protected_and_recently_served_versions(tmp_path):
    """The grace period is wall-clock time since a version was installed or last served, never the
    runs' logical times: weekly runs with keep_versions 1 keep the version readers may still load."""
    from pinsage_model.serving.index import VERSIONS, prune_versions, remove_unfinished, set_current

    days = [f"2026-11-0{i}T00:00:00Z" for i in range(1, 7)]  # logical times a week of runs apart
    names = [
        publish(unit_rows(300, 8, 10 + i), IDS, tmp_path, f"m{i}", {}, created_at=day).name
        for i, day in enumerate(days)
    ]
    now = time.time()
    for name in names:  # installed a day ago by the wall clock
        os.utime(tmp_path / VERSIONS / name, (now - 86400, now - 86400))
    set_current(tmp_path, names[3])
    set_current(tmp_path, names[0])  # a rollback: m3 stopped serving just now, m0 serves again
    crashed = tmp_path / VERSIONS / ".m9-abc.x.tmp"  # a publisher that died mid-build
    crashed.mkdir()
    pruned = prune_versions(tmp_path, 2, protect={names[2]}, now_s=now, grace_s=3600)
    # kept: the 2 newest (m5, m4), CURRENT (m0), the champion history (m2), m3 (readers may still load it)
    assert pruned == [names[1]]
    left = sorted(p.name for p in (tmp_path / VERSIONS).iterdir() if not p.name.startswith("."))
    assert left == sorted([names[0], names[2], names[3], names[4], names[5]])
    assert (tmp_path / CURRENT).read_text().strip() == names[0]
    assert len(IndexReader(tmp_path).current().related_items([IDS[0]], k=3)[0].item_ids) == 3
    # two hours later, keep=1 and nothing protected: only the newest and the serving one stay
    assert prune_versions(tmp_path, 1, now_s=now + 7200, grace_s=3600) == [names[2], names[3], names[4]]
    assert remove_unfinished(tmp_path) == [crashed.name] and not crashed.exists()
    with pytest.raises(ValueError):
        prune_versions(tmp_path, 0, now_s=now, grace_s=0)


@pytest.mark.parametrize("weight", [0.0, 0.3, 2.0])
def test_homefeed_adds_the_popularity_prior_exactly(tmp_path, weight):
    emb = unit_rows(300, 16, seed=11)
    # by item index: 310 items, of which rows 0..299 are published as items 10..309
    prior = np.random.default_rng(3).exponential(size=310).astype(np.float32)
    idx = np.arange(10, 310, dtype=np.int32)
    vdir = publish(emb, IDS, tmp_path, "m1", {}, created_at=CREATED, item_idx=idx, homefeed_prior=(prior, weight))
    version = load_version(vdir)
    user = unit_rows(1, 16, seed=12)[0]
    exclude = ["item-0", "item-7"]
    scores = emb @ user + weight * prior[idx]  # brute force over every row
    scores[[0, 7]] = -np.inf
    for k in (1, 5, 60):  # 60: past the first candidate block when the prior reorders much
        feed = version.homefeed(user, k=k, exclude=exclude)
        assert feed.item_ids == [IDS[j] for j in np.argsort(-scores, kind="stable")[:k]]
        np.testing.assert_allclose(feed.scores, np.sort(scores)[::-1][:k], atol=1e-5)
    assert "homefeed_prior.npz" in json.loads((vdir / "manifest.json").read_text())["files"]
    # related items never use the prior
    assert version.related_items(["item-2"], k=5)[0].item_ids == exact_related(emb, 2, 5)


def test_the_prior_is_part_of_the_version_name(tmp_path):
    emb = unit_rows(300, 8, seed=13)
    prior = np.ones(300, np.float32)
    plain = publish(emb, IDS, tmp_path / "a", "m1", {}, created_at=CREATED).name
    with_prior = publish(emb, IDS, tmp_path / "b", "m1", {}, created_at=CREATED, homefeed_prior=(prior, 0.1)).name
    other = publish(emb, IDS, tmp_path / "c", "m1", {}, created_at=CREATED, homefeed_prior=(prior, 0.2)).name
    assert len({plain, with_prior, other}) == 3
    with pytest.raises(ValueError, match="homefeed prior has 200 items"):
        publish(emb, IDS, tmp_path / "d", "m1", {}, created_at=CREATED, homefeed_prior=(prior[:200], 0.1))
