"""The Kubeflow pipeline: compiled YAML wires every stage; kfp.local reproduces the local runner."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import kfp_pipeline
from components.stages import STAGES, get_stage
from run_fixtures import digests, make_run

REPO = Path(__file__).resolve().parents[3]
RUN_PARAMETERS = ["--config", "--run-id", "--logical-time"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """``make kfp``'s command, run as a subprocess; returns the parsed YAML package."""
    out = tmp_path_factory.mktemp("kfp") / "pinsage_pipeline.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "components.kfp_pipeline", "--output", str(out), "--config", "configs/tiny.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(out.read_text())


def test_compiled_pipeline_has_every_stage_as_container(compiled):
    from pinsage_model.config import load_config

    image = load_config(REPO / "configs" / "tiny.yaml").orchestration.image
    executors = compiled["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{s.name}" for s in STAGES}
    for s in STAGES:
        c = executors[f"exec-{s.name}"]["container"]
        assert c["image"] == image
        assert c["command"] == ["python", "-m", f"components.stages.{s.name}"]
        flags = [a for a in c["args"] if isinstance(a, str) and a.startswith("--")]
        assert flags == [*RUN_PARAMETERS, *[f"--{n}" for n in s.inputs], "--output"]
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert params["config"]["defaultValue"] == "configs/tiny.yaml"
    assert set(params) == {"config", "run_id", "logical_time"}


def test_compiled_dag_follows_stage_inputs(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {s.name for s in STAGES}
    for s in STAGES:
        arts = tasks[s.name].get("inputs", {}).get("artifacts", {})
        assert {k: v["taskOutputArtifact"]["producerTask"] for k, v in arts.items()} == {n: n for n in s.inputs}
        # only data dependencies: the index reads the gate's decision as an input like any other
        assert set(tasks[s.name].get("dependentTasks", [])) == set(s.inputs)
    assert set(tasks["index"]["dependentTasks"]) == {"graph", "embeddings", "evaluation", "registration"}


def test_lightweight_components_are_generated_from_the_stage_list():
    for s in STAGES:
        spec = kfp_pipeline.LOCAL_COMPONENTS[s.name].component_spec
        assert list(spec.inputs) == ["config", "run_id", "logical_time", *s.inputs]
        assert set(spec.outputs) == {"output"}
        assert spec.name == s.name and spec.description.lower().startswith(s.description.lower())


def test_lightweight_registration_logs_to_the_kfp_local_run_folder(tmp_path, monkeypatch):
    """The generated component's body, called as the kfp.local executor calls it: its context's run
    area is the kfp.local run folder, where the registration stage keeps the SQLite store."""
    from types import SimpleNamespace

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    conf = tmp_path / "c.yaml"
    conf.write_text("name: t\ntracking:\n  registered_model: kfp-model\n")
    run = make_run(tmp_path / "upstream", seed=3, hr10=0.3, mrr=0.1)
    run_folder = tmp_path / "pinsage-20260112"
    output = SimpleNamespace(path=str(run_folder / "registration" / "output"))
    fn = kfp_pipeline.LOCAL_COMPONENTS["registration"].python_func
    fn(config=str(conf), run_id="kfp-run", logical_time="2026-01-12T00:00:00Z", output=output,
       **{n: SimpleNamespace(path=str(run / n)) for n in ("graph", "model", "embeddings", "evaluation")})
    decision = json.loads((run_folder / "registration" / "output" / "decision.json").read_text())
    assert decision["tracking_uri"] == f"sqlite:///{run_folder.resolve() / 'mlflow.db'}"
    assert decision["model_version"] == 1 and decision["promoted"] is True
    assert len(decision["mlflow_run_id"]) == 32


def test_stop_after_truncates_the_cluster_pipeline(tmp_path):
    path = kfp_pipeline.compile_pipeline(tmp_path / "p.yaml", "img:1", stop_after="graph")
    assert set(yaml.safe_load(path.read_text())["root"]["dag"]["tasks"]) == {"raw", "pairs", "graph"}
    with pytest.raises(ValueError, match="needs"):
        kfp_pipeline.build_pipeline("cluster", "img:1", [get_stage("pairs")])


@pytest.mark.slow
def test_kfp_local_run_equals_local_runner(tmp_path, spark):
    """kfp.local (one subprocess per component) writes the same bytes as the in-process runner."""
    from components.local_runner import run_pipeline
    from pinsage_model.config import config_to_dict, load_config

    # The session fixture's master, so the in-process runner reuses that SparkSession.
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, master=spark.sparkContext.master))
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump(config_to_dict(cfg)))
    stages = [get_stage(name) for name in ("raw", "pairs", "graph", "features")]

    outputs = kfp_pipeline.run_local(conf, tmp_path / "kfp", stages)
    run_pipeline(load_config(conf), tmp_path / "local", stop="features")

    for s in stages:
        kfp_files = digests(outputs[s.name])
        local_files = digests(tmp_path / "local" / s.name)
        assert kfp_files, f"kfp.local wrote nothing for {s.name}"
        if s.name == "features":
            # The saved TF Transform graph (transform/) embeds generated function names, so only
            # the feature matrix and its description are compared byte for byte.
            kfp_files = {k: v for k, v in kfp_files.items() if not k.startswith("transform/")}
            local_files = {k: v for k, v in local_files.items() if not k.startswith("transform/")}
            assert "features.npy" in kfp_files
        assert kfp_files == local_files, s.name
    run_folder = outputs["raw"].parent.parent
    assert run_folder.parent == (tmp_path / "kfp").resolve()
