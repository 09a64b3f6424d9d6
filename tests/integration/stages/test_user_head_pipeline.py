"""The user head through the stages on the tiny preset, with the user->item term on (the
default): fitted by ``model`` after training, applied by ``embeddings`` together with the model's
own user convolution (collections and user shift are the two views' means), bundled by ``index``
with ``user_nodes.npz``, served by the version as evaluation ranks it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.orchestration.local_runner import run_pipeline
from pinsage_model.config import load_config
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods, read_collection_recency
from pinsage_model.inference.layerwise import embed_all, query_shift, user_embeddings
from pinsage_model.model.export import load_weights_npz
from pinsage_model.model.user_head import load_head, time_ordered, user_vectors
from pinsage_model.serving.query import IndexReader

pytestmark = pytest.mark.slow


def test_user_head_from_model_to_served_homefeed(tmp_path):
    cfg = load_config(
        "configs/tiny.yaml",
        overrides={
            "tracking": {"enabled": False},
            "user_head": {"enabled": True, "hidden_dim": 16, "recency_half_life": 5.0, "steps": 40, "batch_size": 16},
        },
    )
    run = tmp_path / "run"
    reports = run_pipeline(cfg, run)
    rep = reports["model"]["user_head"]
    assert rep["users"] > 0 and rep["steps"] == 40 and np.isfinite(rep["loss_last"])
    head = load_head(run / "model")
    assert head is not None and float(head["recency_half_life"]) == 5.0
    assert cfg.train.user_loss_weight > 0 and reports["model"]["user_term_users"] > 0
    # the embeddings stage writes the mean of the model's user convolution over every collection's
    # items and the head over them in recency order; the shift is the mean of the two shifts
    graph = CSRGraph.load(run / "graph" / "graph.npz")
    recency = read_collection_recency(run / "graph", graph)
    items = np.load(run / "embeddings" / "items.npy")
    weights, mcfg = load_weights_npz(run / "model")
    proj = np.empty((graph.num_items, mcfg["hidden_dim"]), np.float32)
    features = np.load(run / "features" / "features.npy")
    embed_all(weights, mcfg, features, Neighbourhoods.load(run / "neighbourhoods" / "full.npz"), last_projections=proj)
    conv = user_embeddings(proj, graph.coll_indptr, graph.coll_indices, recency, weights, mcfg)
    colls = np.load(run / "embeddings" / "collections.npy")
    np.testing.assert_allclose(colls, 0.5 * (conv + user_vectors(items, graph, recency, head)), atol=1e-5)
    user_shift = np.load(run / "embeddings" / "user_shift.npy")
    np.testing.assert_allclose(user_shift, 0.5 * (query_shift(weights, mcfg) + head["shift"]), atol=1e-7)
    # the index the run publishes carries the head and the user nodes; its user query of a
    # collection's items (oldest first) equals the vector evaluation ranks with
    version = IndexReader(run / "index").current()
    assert version.user_head is not None and version.user_nodes is not None
    files = json.loads((version.path / "manifest.json").read_text())["files"]
    assert "user_head.npz" in files and "user_nodes.npz" in files
    c = int(np.argmax(np.diff(graph.coll_indptr)))
    row_items = time_ordered(graph, recency)[graph.coll_indptr[c] : graph.coll_indptr[c + 1]]
    ids = [version.item_ids[np.flatnonzero(version.item_idx == i)[0]] for i in row_items]
    np.testing.assert_allclose(version.user_query(ids), colls[c] + user_shift, atol=1e-4)
    # the tiny preset's collections are not users with validation events: no homefeed prior is
    # chosen, none is bundled, and the homefeed is the inner product alone
    assert not (run / "evaluation" / "homefeed_prior.npz").exists()
    assert version.homefeed_prior is None and "homefeed_prior.npz" not in files
    scores = version.embeddings @ version.user_query(ids)
    scores[[version.row_of[i] for i in ids]] = -np.inf
    np.testing.assert_allclose(version.homefeed_from_recent(ids, k=5).scores, np.sort(scores)[::-1][:5], atol=1e-4)
