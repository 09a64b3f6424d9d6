"""The user head through the stages on the tiny preset: fitted by ``model``, applied by
``embeddings`` (collections and user shift), bundled by ``index``, served by the version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.orchestration.local_runner import run_pipeline
from pinsage_model.config import load_config
from pinsage_model.graph.csr import CSRGraph, read_collection_recency
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
    # the embeddings stage applies exactly the model's head to every collection's items in recency order
    graph = CSRGraph.load(run / "graph" / "graph.npz")
    recency = read_collection_recency(run / "graph", graph)
    items = np.load(run / "embeddings" / "items.npy")
    colls = np.load(run / "embeddings" / "collections.npy")
    np.testing.assert_allclose(colls, user_vectors(items, graph, recency, head), atol=1e-5)
    np.testing.assert_array_equal(np.load(run / "embeddings" / "user_shift.npy"), head["shift"])
    # the index the run publishes carries the head; its user query of a collection's items
    # (oldest first) equals the vector evaluation ranks with
    version = IndexReader(run / "index").current()
    assert version.user_head is not None
    assert "user_head.npz" in json.loads((version.path / "manifest.json").read_text())["files"]
    c = int(np.argmax(np.diff(graph.coll_indptr)))
    row_items = time_ordered(graph, recency)[graph.coll_indptr[c] : graph.coll_indptr[c + 1]]
    ids = [version.item_ids[np.flatnonzero(version.item_idx == i)[0]] for i in row_items]
    np.testing.assert_allclose(version.user_query(ids), colls[c] + head["shift"], atol=1e-4)
