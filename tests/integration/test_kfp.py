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
from components.lifecycle import READS_CHAMPION
from components.registry import STAGES, get_stage
from test_airflow_dag import digests

REPO = Path(__file__).resolve().parents[2]


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
    assert set(executors) == {f"exec-{s.name}" for s in STAGES} | {"exec-track"}
    tracked = [s.name for s in STAGES if s.name != "index"]
    for name, module, inputs in [(s.name, s.module, s.inputs) for s in STAGES] + [("track", "components.tracking", tracked)]:
        c = executors[f"exec-{name}"]["container"]
        assert c["image"] == image
        assert c["command"] == ["python", "-m", module]
        flags = [a for a in c["args"] if isinstance(a, str) and a.startswith("--")]
        assert flags == ["--config", *[f"--{n}" for n in inputs], "--output"]
    assert compiled["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"] == "configs/tiny.yaml"


def test_compiled_dag_follows_registry_inputs(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {s.name for s in STAGES} | {"track"}
    for s in STAGES:
        arts = tasks[s.name].get("inputs", {}).get("artifacts", {})
        assert {k: v["taskOutputArtifact"]["producerTask"] for k, v in arts.items()} == {n: n for n in s.inputs}
        # index publishing reads models:/pinsage@champion, so it waits for the gate in `track`
        extra = {"track"} if s.name == "index" else set()
        assert set(tasks[s.name].get("dependentTasks", [])) == set(s.inputs) | extra
    assert set(tasks["track"]["dependentTasks"]) == {s.name for s in STAGES} - {"index"}


def test_lightweight_components_mirror_registry():
    for s in STAGES:
        spec = kfp_pipeline.LOCAL_COMPONENTS[s.name].component_spec
        assert set(spec.inputs) == {"config", *s.inputs}
        assert set(spec.outputs) == {"output"}
    track = kfp_pipeline.track.component_spec
    tracked = [s.name for s in STAGES if s.name not in READS_CHAMPION]
    assert set(track.inputs) == {"config", *tracked}
    assert all(track.inputs[n].optional for n in tracked)


def test_stop_after_truncates_the_cluster_pipeline(tmp_path):
    path = kfp_pipeline.compile_pipeline(tmp_path / "p.yaml", "img:1", stop_after="graph", track_run=False)
    assert set(yaml.safe_load(path.read_text())["root"]["dag"]["tasks"]) == {"raw", "pairs", "graph"}
    path = kfp_pipeline.compile_pipeline(tmp_path / "p.yaml", "img:1", stop_after="graph")
    tasks = yaml.safe_load(path.read_text())["root"]["dag"]["tasks"]
    assert set(tasks["track"]["dependentTasks"]) == {"raw", "pairs", "graph"}
    with pytest.raises(ValueError, match="needs"):
        kfp_pipeline.build_pipeline("cluster", "img:1", [get_stage("pairs")])


@pytest.mark.slow
def test_kfp_local_run_equals_local_runner(tmp_path, spark, monkeypatch):
    """kfp.local (one subprocess per component) writes the same bytes as the in-process runner,
    and its ``track`` step logs the run to a SQLite store in the kfp.local run folder."""
    from components.runner import run_pipeline
    from pinsage_model.config import config_to_dict, load_config

    # The session fixture's master, so the in-process runner reuses that SparkSession.
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, master=spark.sparkContext.master))
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump(config_to_dict(cfg)))
    stages = [get_stage(name) for name in ("raw", "pairs", "graph", "features")]

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
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
    tracking = json.loads((outputs["track"] / "tracking.json").read_text())
    assert tracking["tracking_uri"] == f"sqlite:///{run_folder / 'mlflow.db'}"
    assert tracking["model_version"] is None and tracking["promotion"] is None  # no model stage ran
    assert len(tracking["run_id"]) == 32
