"""The Kubeflow pipeline: compiled YAML wires every stage; kfp.local reproduces the local runner."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from run_fixtures import digests, make_run

from components.orchestration import kfp_pipeline
from components.stages import STAGES, get_stage

REPO = Path(__file__).resolve().parents[4]
RUN_PARAMETERS = ["--config", "--run-id", "--logical-time"]
WHEN = dt.datetime(2026, 1, 12, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """``make kfp``'s command, run as a subprocess; returns the parsed YAML package."""
    out = tmp_path_factory.mktemp("kfp") / "pinsage_pipeline.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.orchestration.kfp_pipeline",
            "--output",
            str(out),
            "--config",
            "configs/tiny.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
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
    assert set(tasks["index"]["dependentTasks"]) == {"registration"}


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
    fn(
        config=str(conf),
        run_id="kfp-run",
        logical_time="2026-01-12T00:00:00Z",
        output=output,
        **{n: SimpleNamespace(path=str(run / n)) for n in ("raw", "graph", "model", "embeddings", "evaluation")},
    )
    decision = json.loads((run_folder / "registration" / "output" / "decision.json").read_text())
    assert decision["tracking_uri"] == f"sqlite:///{run_folder.resolve() / 'mlflow.db'}"
    assert decision["model_version"] == 1 and decision["promoted"] is True
    assert len(decision["mlflow_run_id"]) == 32


def test_stop_after_truncates_the_cluster_pipeline(tmp_path):
    path = kfp_pipeline.compile_pipeline(tmp_path / "p.yaml", "img:1", stop_after="graph")
    assert set(yaml.safe_load(path.read_text())["root"]["dag"]["tasks"]) == {"raw", "pairs", "graph"}
    with pytest.raises(ValueError, match="needs"):
        kfp_pipeline.build_pipeline("cluster", "img:1", [get_stage("pairs")])


def test_compiled_yaml_loads_back_with_kfps_own_loader(compiled, tmp_path):
    from kfp import components

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(compiled))
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "pinsage"
    assert set(loaded.component_spec.inputs) == {"config", "run_id", "logical_time"}
    spec = loaded.component_spec.implementation.graph  # the PipelineSpec protobuf kfp parsed
    assert set(spec.root.dag.tasks) == {s.name for s in STAGES}
    for s in STAGES:
        task = spec.root.dag.tasks[s.name]
        assert set(task.dependent_tasks) == set(s.inputs)
        assert set(task.inputs.artifacts) == set(s.inputs)


def test_tfjob_workers_make_the_model_task_a_launcher_on_the_run_volume(tmp_path):
    """orchestration.tfjob_workers > 0: the compiled model task runs components.orchestration.tfjob with the
    stage's flags (which the launcher parses), mounts the TFJob template's run volume, and the
    package loads back with kfp's loader, platform spec included."""
    from kfp import components

    from components.orchestration import tfjob
    from pinsage_model.config import load_config

    conf = tmp_path / "mw.yaml"
    conf.write_text("name: mw\ntrain:\n  strategy: multi_worker\norchestration:\n  tfjob_workers: 2\n")
    cfg = load_config(conf)
    path = kfp_pipeline.compile_pipeline(
        tmp_path / "p.yaml", "img:1", "configs/mw.yaml", "", kfp_pipeline.tfjob_template_of(cfg)
    )
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    model = executors["exec-model"]["container"]
    assert model["command"] == ["python", "-m", "components.orchestration.tfjob"] and model["image"] == "img:1"
    flags = [a for a in model["args"] if a.startswith("--")]
    assert flags == [*RUN_PARAMETERS, "--graph", "--features", "--neighbourhoods", "--output"]
    args = tfjob.build_parser().parse_args([a if a.startswith("--") else "x" for a in model["args"]])
    assert args.in_graph == args.output == "x"
    for s in STAGES:  # every other task is unchanged
        if s.name != "model":
            assert executors[f"exec-{s.name}"]["container"]["command"] == ["python", "-m", s.module]
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(mounts) == {"exec-model"}
    (mount,) = mounts["exec-model"]["pvcMount"]
    assert (mount["constant"], mount["mountPath"]) == tfjob.run_volume(
        tfjob.load_template(cfg.orchestration.tfjob_template)
    )
    loaded = components.load_component_from_file(str(path))
    assert set(loaded.component_spec.implementation.graph.root.dag.tasks) == {s.name for s in STAGES}
    assert "exec-model" in loaded.platform_spec.platforms["kubernetes"].deployment_spec.executors
    # without workers the model trains inside its task, as before
    plain = kfp_pipeline.compile_pipeline(tmp_path / "q.yaml", "img:1", stop_after="model")
    assert yaml.safe_load(plain.read_text())["deploymentSpec"]["executors"]["exec-model"]["container"]["command"] == [
        "python",
        "-m",
        "components.stages.model",
    ]


@pytest.fixture(scope="module")
def whole_graph(tmp_path_factory, tiny_run):
    """kfp.local (one subprocess per component, every stage, registration and index included) over
    the session's tiny run config; yields (kfp outputs by stage, the local runner's run dir, the
    kfp root). One kfp.local run for both comparisons below."""
    import time

    from pinsage_model.config import config_to_dict

    cfg, local, _ = tiny_run
    tmp = tmp_path_factory.mktemp("kfp-whole")
    conf = tmp / "tiny.yaml"
    conf.write_text(yaml.safe_dump(config_to_dict(cfg)))
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        t0 = time.perf_counter()
        outputs = kfp_pipeline.run_local(conf, tmp / "kfp", list(STAGES), logical_time=WHEN)
    print(f"kfp.local {time.perf_counter() - t0:.0f} s")
    return outputs, local, tmp / "kfp"


@pytest.mark.slow
def test_kfp_local_runs_the_whole_graph_like_the_local_runner(whole_graph):
    """kfp.local produces the local runner's embeddings, metrics and promotion decision."""
    import numpy as np

    outputs, local, _ = whole_graph
    assert set(outputs) == {s.name for s in STAGES}

    for name in ("items.npy", "collections.npy", "query_shift.npy"):
        if (local / "embeddings" / name).exists():
            np.testing.assert_array_equal(
                np.load(outputs["embeddings"] / name), np.load(local / "embeddings" / name), err_msg=name
            )
    kfp_metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    assert kfp_metrics == json.loads((local / "evaluation" / "metrics.json").read_text())
    kfp_decision = json.loads((outputs["registration"] / "decision.json").read_text())
    local_decision = json.loads((local / "registration" / "decision.json").read_text())
    # each run has its own registry (the kfp.local run folder, the local run area): the MLflow
    # run ids and store paths differ, the decision does not
    for d in (kfp_decision, local_decision):
        d.pop("mlflow_run_id"), d.pop("tracking_uri")
    assert kfp_decision == local_decision and kfp_decision["promoted"] is True
    kfp_index, local_index = (json.loads((p / "report.json").read_text()) for p in (outputs["index"], local / "index"))
    assert kfp_index["version"] == local_index["version"] and kfp_index["serving"] is local_index["serving"] is True


@pytest.mark.slow
def test_kfp_local_run_equals_local_runner(whole_graph):
    """kfp.local (one subprocess per component) writes the same bytes as the in-process runner."""
    outputs, local, kfp_root = whole_graph
    stages = [get_stage(name) for name in ("raw", "pairs", "graph", "features")]

    for s in stages:
        kfp_files = digests(outputs[s.name])
        local_files = digests(local / s.name)
        assert kfp_files, f"kfp.local wrote nothing for {s.name}"
        if s.name == "features":
            # The saved TF Transform graph (transform/) embeds generated function names, so only
            # the feature matrix and its description are compared byte for byte.
            kfp_files = {k: v for k, v in kfp_files.items() if not k.startswith("transform/")}
            local_files = {k: v for k, v in local_files.items() if not k.startswith("transform/")}
            assert "features.npy" in kfp_files
        assert kfp_files == local_files, s.name
    run_folder = outputs["raw"].parent.parent
    assert run_folder.parent == kfp_root.resolve()
