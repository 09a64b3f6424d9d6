"""One end-to-end run of every stage on the tiny synthetic preset, then a rerun that skips all."""

import json
from pathlib import Path

import numpy as np
import pytest

from components.orchestration.local_runner import run_pipeline
from components.stages import STAGE_NAMES


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tiny_run):
    cfg, run_dir, reports = tiny_run  # configs/tiny.yaml through every stage (tests/conftest.py)
    assert list(reports) == list(STAGE_NAMES)
    assert all(not r["skipped"] for r in reports.values())
    # The first model version is registered and, with no champion yet, promoted; its index serves.
    decision = json.loads((run_dir / "registration" / "decision.json").read_text())
    assert decision["model_version"] == 1 and decision["promoted"] is True and decision["champion_after"] == 1
    assert reports["index"]["serving"] is True and reports["index"]["champion_version"] == 1
    n_items = len(np.load(run_dir / "features" / "features.npy", mmap_mode="r"))
    emb = np.load(run_dir / "embeddings" / "items.npy")
    assert emb.shape[0] == n_items and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert "pinsage" in json.dumps(metrics).lower()
    assert (run_dir / "evaluation" / "report.md").exists()
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        again = run_pipeline(cfg, run_dir)
    assert all(r["skipped"] for r in again.values())  # registration too: nothing is logged twice
    assert Path(run_dir / "config.resolved.yaml").exists()
