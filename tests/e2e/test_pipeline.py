"""One end-to-end run of every stage on the tiny synthetic preset, then a rerun that skips all."""

import json
from pathlib import Path

import numpy as np
import pytest

from components.registry import STAGE_NAMES, available_stages
from components.runner import run_pipeline
from pinsage_model.config import load_config


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path):
    assert [s.name for s in available_stages()] == list(STAGE_NAMES), "a stage module is missing"
    cfg = load_config("configs/tiny.yaml", overrides={"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}})
    run_dir = tmp_path / "run"
    reports = run_pipeline(cfg, run_dir)
    tracking = reports.pop("tracking")
    assert list(reports) == list(STAGE_NAMES)
    assert all(not r["skipped"] for r in reports.values())
    # The first model version is registered and, with no champion yet, promoted.
    assert tracking["model_version"] == 1 and tracking["promotion"]["promote"] is True
    n_items = len(np.load(run_dir / "features" / "features.npy", mmap_mode="r"))
    emb = np.load(run_dir / "embeddings" / "items.npy")
    assert emb.shape[0] == n_items and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert "pinsage" in json.dumps(metrics).lower()
    assert (run_dir / "evaluation" / "report.md").exists()
    again = run_pipeline(cfg, run_dir)
    assert "tracking" not in again and all(r["skipped"] for r in again.values())
    assert Path(run_dir / "config.resolved.yaml").exists()
