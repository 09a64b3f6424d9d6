"""``pinsage tune`` end to end on the tiny config: trials, nested MLflow runs, a loadable best config."""

from __future__ import annotations

import json

import pytest

from components.cli import main
from components.commands import tune
from pinsage_model.config import flatten, load_config

pytestmark = pytest.mark.slow  # Spark, TF Transform and two short trainings


def test_two_trials_write_the_best_config_and_nested_runs(tmp_path):
    run_dir = tmp_path / "area" / "tiny"
    out = tmp_path / "best.yaml"
    assert (
        main(
            [
                "tune",
                "--config",
                "configs/tiny.yaml",
                "--trials",
                "2",
                "--space",
                "lr,loss",
                "--run-dir",
                str(run_dir),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    trials = json.loads((run_dir / "tune" / "trials.json").read_text())["trials"]
    assert [t["trial"] for t in trials] == [0, 1]
    best = max(trials, key=lambda t: (t["hit_rate_at_10"], t["mrr"]))
    cfg = load_config(out)  # overrides of the defaults that `pinsage run` takes as they are
    resolved = flatten(cfg)
    for dotted, value in flatten(tune.apply(load_config("configs/tiny.yaml"), best["params"])).items():
        assert resolved[dotted] == (pytest.approx(value, rel=5e-3) if isinstance(value, float) else value), dotted
    assert cfg.evaluation.baselines and "baselines" not in out.read_text()  # defaults kept, not written
    # each trial evaluated on the validation split in its own folder, with no baselines
    for t in trials:
        metrics = json.loads((run_dir / "tune" / f"trial-{t['trial']:03d}" / "evaluation" / "metrics.json").read_text())
        assert set(metrics["methods"]) == {"pinsage"}
        assert metrics["methods"]["pinsage"]["validation"]["hit_rate_at_10"] == t["hit_rate_at_10"]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'area' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pinsage").experiment_id])
    parents = [r for r in runs if r.info.run_name == "tune tiny"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["trial-000", "trial-001"]
    assert all("val_hit_rate_at_10" in r.data.metrics for r in children)
