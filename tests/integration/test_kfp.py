"""The Kubeflow pipeline: compiled YAML wires every stage; kfp.local reproduces the local runner."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import kfp_pipeline
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
    assert set(executors) == {f"exec-{s.name}" for s in STAGES}
    for s in STAGES:
        c = executors[f"exec-{s.name}"]["container"]
        assert c["image"] == image
        assert c["command"] == ["python", "-m", s.module]
        flags = [a for a in c["args"] if isinstance(a, str) and a.startswith("--")]
        assert flags == ["--config", *[f"--{n}" for n in s.inputs], "--output"]
    assert compiled["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"] == "configs/tiny.yaml"


def test_compiled_dag_follows_registry_inputs(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {s.name for s in STAGES}
    for s in STAGES:
        arts = tasks[s.name].get("inputs", {}).get("artifacts", {})
        assert {k: v["taskOutputArtifact"]["producerTask"] for k, v in arts.items()} == {n: n for n in s.inputs}
        assert set(tasks[s.name].get("dependentTasks", [])) == set(s.inputs)


def test_lightweight_components_mirror_registry():
    for s in STAGES:
        spec = kfp_pipeline.LOCAL_COMPONENTS[s.name].component_spec
        assert set(spec.inputs) == {"config", *s.inputs}
        assert set(spec.outputs) == {"output"}


def test_stop_after_truncates_the_cluster_pipeline(tmp_path):
    path = kfp_pipeline.compile_pipeline(tmp_path / "p.yaml", "img:1", stop_after="graph")
    assert set(yaml.safe_load(path.read_text())["root"]["dag"]["tasks"]) == {"raw", "pairs", "graph"}
    with pytest.raises(ValueError, match="needs"):
        kfp_pipeline.build_pipeline("cluster", "img:1", [get_stage("pairs")])


@pytest.mark.slow
def test_kfp_local_run_equals_local_runner(tmp_path, spark):
    """kfp.local (one subprocess per component) writes the same bytes as the in-process runner."""
    from components.runner import run_pipeline
    from pinsage_model.config import config_to_dict, load_config

    # The session fixture's master, so the in-process runner reuses that SparkSession.
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, master=spark.sparkContext.master))
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump(config_to_dict(cfg)))
    stages = [get_stage("raw"), get_stage("pairs")]

    outputs = kfp_pipeline.run_local(conf, tmp_path / "kfp", stages)
    run_pipeline(load_config(conf), tmp_path / "local", stop="pairs")

    for s in stages:
        kfp_files = digests(outputs[s.name])
        assert kfp_files, f"kfp.local wrote nothing for {s.name}"
        assert kfp_files == digests(tmp_path / "local" / s.name), s.name
    assert outputs["raw"].parent.parent.parent == (tmp_path / "kfp").resolve()
