"""The registration stage (MLflow run, model version, validation-split gate) on a SQLite store in tmp,
the champion commands, and index publishing following the champion.

The run directories are hand-built (model files, history and evaluation metrics with chosen
numbers), so every expectation below is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_fixtures import make_run

from components.orchestration.execution import execute, stage_main
from components.registry import mlflow_store
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.data.contracts import model_digest

WHEN = "2026-01-12T00:00:00Z"


def cfg_for(name: str, tolerance: float = 0.0, **sections):
    return config_from_dict(
        {"name": "t", "tracking": {"registered_model": name, "promotion_tolerance": tolerance}, **sections}
    )


def register(cfg, run_dir: Path, area: Path, force: bool = False, when: str = WHEN) -> dict:
    """Run the registration stage over ``run_dir`` (run area ``area``, logical time ``when``);
    returns decision.json."""
    stage = get_stage("registration")
    ctx = StageContext.create(area, run_dir.name, when)
    execute(stage, cfg, {n: run_dir / n for n in stage.inputs}, run_dir / "registration", ctx, force=force)
    return json.loads((run_dir / "registration" / "decision.json").read_text())


# --- against a real MLflow SQLite store


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield tmp_path_factory.mktemp("runs")


def test_registration_gate_promote_and_rollback(area):
    cfg = cfg_for("gate-model")
    d1 = register(cfg, make_run(area / "run1", seed=1, hr10=0.30, mrr=0.10), area)
    assert d1["tracking_uri"] == f"sqlite:///{area.resolve() / 'mlflow.db'}"
    assert (d1["model_version"], d1["promoted"], d1["reason"]) == (1, True, "no champion yet")
    assert (d1["champion_before"], d1["champion_after"]) == (None, 1)
    assert d1["champion_weights_digest"] == d1["weights_digest"] == model_digest(area / "run1" / "model")

    # worse on MRR: registered as challenger, champion stays at version 1
    d2 = register(cfg, make_run(area / "run2", seed=2, hr10=0.35, mrr=0.05), area)
    assert d2["model_version"] == 2 and d2["promoted"] is False and d2["champion_after"] == 1
    assert d2["champion_weights_digest"] == d1["weights_digest"]
    assert mlflow_store.champion_version(cfg, area)["version"] == 1
    client = mlflow_store.client_for(cfg, area)
    assert int(client.get_model_version_by_alias("gate-model", "challenger").version) == 2

    # better on both: champion moves to version 3
    d3 = register(cfg, make_run(area / "run3", seed=3, hr10=0.40, mrr=0.12), area)
    assert d3["promoted"] is True and (d3["champion_before"], d3["champion_after"]) == (1, 3)
    assert d3["gate_split"] == "validation" and d3["gate_metrics"] == {"hit_rate_at_10": 0.40, "mrr": 0.12}
    champ = mlflow_store.champion_version(cfg, area)
    assert champ["version"] == 3 and champ["uri"] == "models:/gate-model@champion"
    assert champ["tags"]["hit_rate_at_10"] == "0.4" and champ["tags"]["validation_split"] == "v1"

    # what serving reads follows the champion alias
    dl = mlflow_store.download_champion(cfg, area / "dl3", area)
    assert (dl / "weights.npz").read_bytes() == (area / "run3/model/weights.npz").read_bytes()

    assert mlflow_store.rollback(client, "gate-model") == (3, 1)
    dl = mlflow_store.download_champion(cfg, area / "dl1", area)
    assert (dl / "weights.npz").read_bytes() == (area / "run1/model/weights.npz").read_bytes()
    with pytest.raises(mlflow_store.RegistryError, match="no previous one"):
        mlflow_store.rollback(client, "gate-model")

    # what the run logged: one metric name per key, the same as in metrics.json and history.json
    run = client.get_run(d3["mlflow_run_id"])
    assert run.data.params["train.batch_size"] == "256"
    assert run.data.params["evaluation.ks"] == "[10, 50, 100]"
    assert run.data.tags["pinsage.run_id"] == "run3" and run.data.tags["pinsage.logical_time"] == WHEN
    assert run.data.tags["data.validation_split"] == champ["tags"]["validation_split"] == "v1"
    assert run.data.metrics["eval.methods.pinsage.test.hit_rate_at_10"] == 0.40
    assert run.data.metrics["eval.methods.pinsage.validation.mrr"] == 0.12
    assert run.data.metrics["gate.mrr"] == 0.12 and run.data.metrics["stage_seconds.model"] == 1.5
    history = sorted(client.get_metric_history(d3["mlflow_run_id"], "train.loss"), key=lambda m: m.step)
    assert [m.value for m in history] == [0.9, 0.5, 0.25]
    assert client.get_metric_history(d3["mlflow_run_id"], "train.val_hit_rate_at_10")[-1].value == 0.40
    logged = {f.path for d in ("model", "evaluation") for f in client.list_artifacts(d3["mlflow_run_id"], d)}
    assert {
        "model/weights.npz",
        "model/model_config.json",
        "model/model.keras",
        "model/history.json",
        "evaluation/report.md",
        "evaluation/hit_rate.png",
        "evaluation/metrics.json",
    } <= logged
    assert (area / "mlartifacts").is_dir() and not Path("mlruns").exists()


def test_gate_ignores_the_test_split(area):
    """A challenger better on test but worse on validation is not promoted."""
    cfg = cfg_for("val-model")
    register(cfg, make_run(area / "v1", seed=1, hr10=0.30, mrr=0.10, test=(0.30, 0.10)), area)
    d = register(cfg, make_run(area / "v2", seed=2, hr10=0.25, mrr=0.08, test=(0.60, 0.30)), area)
    assert d["promoted"] is False and d["champion_after"] == 1
    assert d["reason"].startswith("worse than champion: hit_rate_at_10 0.2500 < 0.3000")
    assert d["test_metrics"] == {"hit_rate_at_10": 0.60, "mrr": 0.30}  # reported, not used
    # and the other way round: worse on test, better on validation, is promoted
    d = register(cfg, make_run(area / "v3", seed=3, hr10=0.35, mrr=0.12, test=(0.05, 0.01)), area)
    assert d["promoted"] is True and d["champion_after"] == 3


def test_same_model_is_not_registered_twice(area):
    cfg = cfg_for("idem-model")
    run = make_run(area / "idem", seed=7, hr10=0.2, mrr=0.1)
    first = register(cfg, run, area)
    again = register(cfg, run, area, force=True)
    assert first["mlflow_run_id"] != again["mlflow_run_id"]
    assert first["model_version"] == again["model_version"] == 1
    # gated once: registering the same model again reports the decision recorded then
    assert (again["promoted"], again["reason"], again["champion_after"]) == (True, "no champion yet", 1)


def test_rerun_with_unchanged_inputs_logs_nothing(area):
    cfg = cfg_for("skip-model")
    run = make_run(area / "skip", seed=8, hr10=0.2, mrr=0.1)
    first = register(cfg, run, area)
    client = mlflow_store.client_for(cfg, area)
    exp = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    n_runs = len(client.search_runs([exp]))
    assert register(cfg, run, area) == first  # skipped by its fingerprint
    assert len(client.search_runs([exp])) == n_runs


def test_different_split_is_not_promoted(area):
    cfg = cfg_for("split-model")
    register(cfg, make_run(area / "s1", seed=1, hr10=0.2, mrr=0.1), area)
    d = register(cfg, make_run(area / "s2", seed=2, hr10=0.9, mrr=0.9, split="v2"), area)
    assert d["promoted"] is False and "different validation splits" in d["reason"]
    assert mlflow_store.champion_version(cfg, area)["version"] == 1


def test_without_tracking_nothing_is_registered_and_the_model_serves(tmp_path):
    cfg = config_from_dict({"name": "t", "tracking": {"enabled": False}})
    d = register(cfg, make_run(tmp_path / "off", seed=1, hr10=0.2, mrr=0.1), tmp_path)
    assert (d["tracking"], d["model_version"], d["champion_after"], d["promoted"]) == (False, None, None, False)
    assert d["gate_metrics"] == {"hit_rate_at_10": 0.2, "mrr": 0.1}
    assert not (tmp_path / "mlflow.db").exists()


def test_promote_and_rollback_commands(area, tmp_path, capsys):
    from components.cli import main

    cfg = cfg_for("cli-model", tolerance=0.05)
    register(cfg, make_run(area / "c1", seed=1, hr10=0.30, mrr=0.10), area)
    assert register(cfg, make_run(area / "c2", seed=2, hr10=0.20, mrr=0.10), area)["promoted"] is False
    conf = tmp_path / "c.yaml"
    conf.write_text("name: t\ntracking:\n  registered_model: cli-model\n  promotion_tolerance: 0.05\n")
    base = ["--config", str(conf), "--run-area", str(area)]

    assert main(["promote", *base]) == 3  # 0.20 < 0.30 - 0.05
    assert "version 2 not promoted" in capsys.readouterr().out
    assert main(["promote", *base, "--version", "2", "--force"]) == 0
    assert "version 2 promoted (champion was 1): forced" in capsys.readouterr().out
    assert mlflow_store.champion_version(cfg, area)["version"] == 2
    assert main(["rollback", *base]) == 0
    assert "rolled back from version 2 to version 1" in capsys.readouterr().out
    assert main(["rollback", *base]) == 1


def test_stage_cli_with_separate_stage_folders(area, tmp_path):
    """What a Kubeflow container runs: input folders apart, an explicit run id and run area."""
    run = make_run(area / "kfp-like", seed=11, hr10=0.5, mrr=0.2)
    conf = tmp_path / "c.yaml"
    conf.write_text("name: t\ntracking:\n  registered_model: cli-track-model\n")
    out = tmp_path / "registration-out"
    args = [
        "--config",
        str(conf),
        "--output",
        str(out),
        "--run-area",
        str(area),
        "--run-id",
        "kfp-1",
        "--logical-time",
        WHEN,
    ]
    ins = [f"--{n}={run / n}" for n in ("raw", "graph", "model", "embeddings", "evaluation")]
    assert stage_main("components.stages.registration", [*args, *ins]) == 0
    decision = json.loads((out / "decision.json").read_text())
    assert decision["model_version"] == 1 and decision["promoted"] is True
    assert mlflow_store.champion_version(cfg_for("cli-track-model"), area)["tags"]["mrr"] == "0.2"


def test_published_index_follows_champion(area, tmp_path, capsys):
    from components.cli import main
    from pinsage_model.serving.index import current_version

    root = tmp_path / "published"
    raw = {"name": "t", "tracking": {"registered_model": "serve-model"}, "index": {"publish_root": str(root)}}
    cfg = config_from_dict(raw)
    stage = get_stage("index")

    def publish(run_dir: Path, cfg, when: str = WHEN) -> dict:
        register(cfg, run_dir, area, when=when)  # one run, one logical time
        ctx = StageContext.create(area, run_dir.name, when)
        return execute(stage, cfg, {n: run_dir / n for n in stage.inputs}, run_dir / "index", ctx)

    versions = {}
    for name, seed, hr10, mrr in (("p1", 11, 0.30, 0.10), ("p2", 12, 0.20, 0.05), ("p3", 13, 0.40, 0.12)):
        versions[name] = publish(make_run(area / name, seed=seed, hr10=hr10, mrr=mrr), cfg)

    v1, v2, v3 = versions["p1"], versions["p2"], versions["p3"]
    assert (v1["serving"], v2["serving"], v3["serving"]) == (True, False, True)
    assert v2["champion_version"] == 1  # the worse model was published but not served
    assert current_version(root) == v3["version"]
    manifest = json.loads((root / "versions" / v3["version"] / "manifest.json").read_text())
    assert manifest["created_at"] == WHEN  # the run's logical time, not the clock

    conf = tmp_path / "c.yaml"
    conf.write_text(f"name: t\ntracking:\n  registered_model: serve-model\nindex:\n  publish_root: {root}\n")
    assert main(["rollback", "--config", str(conf), "--run-area", str(area)]) == 0
    assert f"CURRENT -> {v1['version']}" in capsys.readouterr().out
    assert current_version(root) == v1["version"]

    # pruning down to one version keeps the newest and the serving (rolled-back) one
    cfg = config_from_dict({**raw, "index": {"publish_root": str(root), "keep_versions": 1, "prune_grace_s": 0}})
    p4 = make_run(area / "p4", seed=14, hr10=0.10, mrr=0.01)
    v4 = publish(p4, cfg, when="2100-01-01T00:00:00Z")  # p4 is the newest by far
    assert not v4["serving"] and sorted(v4["pruned_versions"]) == sorted([v2["version"], v3["version"]])
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted([v1["version"], v4["version"]])
    assert current_version(root) == v1["version"]


def test_tracking_does_not_leak_its_store_into_the_environment(area, tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = cfg_for("leak-model")
    mlflow_store.client_for(cfg, tmp_path / "a")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow_store.tracking_uri(cfg, tmp_path / "b") == f"sqlite:///{(tmp_path / 'b').resolve() / 'mlflow.db'}"
    user_choice = f"sqlite:///{tmp_path / 'user-choice.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_choice)
    mlflow_store.client_for(cfg, tmp_path / "a")
    assert os.environ["MLFLOW_TRACKING_URI"] == user_choice
