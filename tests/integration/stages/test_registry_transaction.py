"""Champion and CURRENT change together (issue 26): concurrent registrations, old index tasks,
killed registrations, compare-and-swap, rollback to a pruned index.

The run directories are hand-built (``run_fixtures.make_run``) with chosen validation metrics, the
registry is a SQLite store in tmp, and every run publishes to one shared publish root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from run_fixtures import make_run

from components.orchestration.execution import execute
from components.registry import mlflow_store
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.serving.index import VERSIONS, current_version

WHEN = "2026-01-12T00:00:00Z"


def config(tmp_path: Path, name: str, **index) -> dict:
    return {
        "name": "t",
        "tracking": {"registered_model": name},
        "index": {"publish_root": str(tmp_path / "published"), **index},
    }


def run_stage(stage_name: str, raw: dict, run_dir: Path, area: Path, force: bool = False) -> dict:
    stage = get_stage(stage_name)
    ctx = StageContext.create(area, run_dir.name, WHEN)
    inputs = {n: run_dir / n for n in stage.inputs}
    return execute(stage, config_from_dict(raw), inputs, run_dir / stage_name, ctx, force=force)


def decision(run_dir: Path) -> dict:
    return json.loads((run_dir / "registration" / "decision.json").read_text())


@pytest.fixture
def area(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "runs"


def client_of(raw: dict, area: Path):
    return mlflow_store.client_for(config_from_dict(raw), area)


def test_two_registrations_at_once_leave_the_better_champion_and_current_follows(tmp_path, area):
    raw = config(tmp_path, "race-model")
    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps(raw))
    runs = [
        make_run(area / "worse", seed=1, hr10=0.30, mrr=0.10),
        make_run(area / "better", seed=2, hr10=0.40, mrr=0.20),
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "components.stages.registration", "--config", str(conf), "--run-dir", str(r)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in runs
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    client = client_of(raw, area)
    champion = mlflow_store.alias_version(client, "race-model", mlflow_store.CHAMPION)
    better = decision(runs[1])
    assert champion == better["model_version"]
    assert {decision(r)["model_version"] for r in runs} == {1, 2}  # one version each, none twice
    tags = mlflow_store.version_tags(client, "race-model", champion)
    assert current_version(tmp_path / "published") == tags[mlflow_store.INDEX_TAG] == better["index_version"]


def test_an_old_runs_index_task_never_moves_production_backwards(tmp_path, area):
    raw = config(tmp_path, "old-index-model")
    old, new = make_run(area / "old", seed=1, hr10=0.30, mrr=0.10), make_run(area / "new", seed=2, hr10=0.40, mrr=0.2)
    for r in (old, new):
        run_stage("registration", raw, r, area)
        run_stage("index", raw, r, area)
    newer = decision(new)["index_version"]
    assert current_version(tmp_path / "published") == newer
    report = run_stage("index", raw, old, area, force=True)  # the old run's task, cleared and rerun
    assert report["serving"] is False and report["champion_version"] == 2
    assert current_version(tmp_path / "published") == newer
    assert current_version(old / "index") == decision(old)["index_version"]  # the run keeps its own copy


def test_a_killed_registration_leaves_no_running_run_and_is_completed_by_the_next_attempt(tmp_path, area, monkeypatch):
    raw = config(tmp_path, "kill-model")
    run = make_run(area / "k", seed=1, hr10=0.30, mrr=0.10)
    client = client_of(raw, area)
    exp = mlflow_store.experiment_id(client, config_from_dict(raw), area)
    orphan = client.create_run(exp, tags={mlflow_store.MODEL_TAG: "kill-model"}).info.run_id  # killed in start_run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after the decision was recorded, before the alias moved")

    monkeypatch.setattr(mlflow_store, "switch_champion", killed)
    with pytest.raises(KeyboardInterrupt):
        run_stage("registration", raw, run, area)
    monkeypatch.undo()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_store.alias_version(client, "kill-model", mlflow_store.CHAMPION) is None
    d = (run_stage("registration", raw, run, area), decision(run))[1]
    assert client.get_run(orphan).info.status == "FAILED"
    assert not client.search_runs([exp], filter_string="attributes.status = 'RUNNING'")
    assert (d["model_version"], d["promoted"], d["reason"], d["champion_after"]) == (1, True, "no champion yet", 1)
    assert len(client.search_model_versions("name='kill-model'")) == 1
    assert current_version(tmp_path / "published") == d["index_version"]


def test_a_run_left_running_is_failed_even_when_the_rerun_skips_registration(tmp_path, area):
    """A killed --force attempt leaves the earlier outputs current: the rerun skips the stage, and
    still marks the killed attempt's MLflow run FAILED."""
    raw = config(tmp_path, "skip-kill-model")
    run = make_run(area / "sk", seed=1, hr10=0.30, mrr=0.10)
    run_stage("registration", raw, run, area)
    client = client_of(raw, area)
    exp = client.get_experiment_by_name("pinsage").experiment_id
    orphan = client.create_run(exp, tags={mlflow_store.MODEL_TAG: "skip-kill-model"}).info.run_id
    assert run_stage("registration", raw, run, area)["skipped"] is True
    assert client.get_run(orphan).info.status == "FAILED"


def test_the_alias_moves_only_from_the_champion_the_decision_saw(tmp_path, area):
    raw = config(tmp_path, "cas-model")
    for name, seed, hr10 in (("a", 1, 0.3), ("b", 2, 0.2)):
        run_stage("registration", raw, make_run(area / name, seed=seed, hr10=hr10, mrr=0.1), area)
    client, root = client_of(raw, area), tmp_path / "published"
    before = current_version(root)
    with pytest.raises(mlflow_store.RegistryError, match="moved from version 2 to 1 meanwhile"):
        mlflow_store.switch_champion(client, "cas-model", 2, expected=2, root=root)
    assert mlflow_store.alias_version(client, "cas-model", mlflow_store.CHAMPION) == 1
    assert current_version(root) == before and mlflow_store.history(client, "cas-model") == [1]


def test_rollback_restores_a_pruned_index_or_refuses_with_exit_1(tmp_path, area, capsys):
    import shutil

    from components.cli import main

    raw = config(tmp_path, "rb-model")
    for name, seed, hr10 in (("r1", 1, 0.3), ("r2", 2, 0.4)):
        run_stage("registration", raw, make_run(area / name, seed=seed, hr10=hr10, mrr=0.1), area)
    root, first = tmp_path / "published", decision(area / "r1")["index_version"]
    shutil.rmtree(root / VERSIONS / first)  # pruned (or never in this root)
    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps(raw))
    assert main(["rollback", "--config", str(conf), "--run-area", str(area)]) == 0
    assert f"CURRENT -> {first}" in capsys.readouterr().out
    assert current_version(root) == first and (root / VERSIONS / first / "manifest.json").exists()
    # back to version 2, then a rollback whose index can be neither found nor restored
    assert main(["promote", "--config", str(conf), "--run-area", str(area), "--version", "2"]) == 0
    client = client_of(raw, area)
    client.delete_model_version_tag("rb-model", "1", mlflow_store.INDEX_TAG)
    serving = current_version(root)
    assert main(["rollback", "--config", str(conf), "--run-area", str(area)]) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("20")]  # log lines aside
    assert errors == ["error: 'rb-model' version 1 records no index version (index_version tag); cannot serve it"]
    assert (
        mlflow_store.alias_version(client, "rb-model", mlflow_store.CHAMPION) == 2 and current_version(root) == serving
    )
