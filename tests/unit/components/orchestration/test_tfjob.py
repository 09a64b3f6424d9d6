"""The TFJob launcher's pure parts: the job made from infra/training/tfjob.yaml, its name, the
operator's status, and the staging of inputs on the run area (no cluster is contacted)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from components.orchestration import tfjob

REPO = Path(__file__).resolve().parents[4]
TEMPLATE = REPO / "infra" / "training" / "tfjob.yaml"


def make(template: dict, **kw) -> dict:
    args = dict(
        name="pinsage-model-r1",
        image="img:2",
        config="configs/cluster.yaml",
        run_dir="/data/runs/r1",
        logical_time="2026-01-12T00:00:00Z",
        workers=3,
        gpus_per_worker=2,
    )
    return tfjob.tfjob_manifest(template, **{**args, **kw})


def test_manifest_sets_workers_gpus_and_the_stage_command_on_the_template():
    template = tfjob.load_template(TEMPLATE)
    before = copy.deepcopy(template)
    body = make(template)
    assert template == before  # the template is not modified
    worker = body["spec"]["tfReplicaSpecs"]["Worker"]
    (container,) = worker["template"]["spec"]["containers"]
    assert body["metadata"] == {"name": "pinsage-model-r1", "namespace": "pinsage"}
    assert worker["replicas"] == 3 and container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["name"] == "tensorflow" and container["image"] == "img:2"
    assert container["args"] == [
        "components.stages.model",
        "--config=configs/cluster.yaml",
        "--run-dir=/data/runs/r1",
        "--logical-time=2026-01-12T00:00:00Z",
    ]
    assert tfjob.run_volume(body) == ("pinsage-runs", "/data")
    assert body["spec"]["runPolicy"] == template["spec"]["runPolicy"]  # deadline, restarts: the template's


def test_cpu_workers_get_no_gpus_and_the_run_dir_must_be_on_the_shared_volume():
    template = tfjob.load_template(TEMPLATE)
    (container,) = template["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    del container["resources"]["limits"]["nvidia.com/gpu"]
    (made,) = make(template, gpus_per_worker=1)["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in made["resources"]["limits"]
    with pytest.raises(ValueError, match="outside /data, the run area the TFJob workers mount"):
        make(template, run_dir="/scratch/r1")
    container["name"] = "main"
    with pytest.raises(ValueError, match="no container named 'tensorflow'"):
        make(template)


def test_job_names_are_dns_labels_fixed_by_the_run_and_the_work():
    interval = "20260105T000000Z_20260112T000000Z"
    names = {}
    for run_id in ("r1", interval, "scheduled-" + "x" * 80, "Manual Run"):
        name = tfjob.job_name(run_id, "fp1")
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) and len(name) <= 52, name
        assert name == tfjob.job_name(run_id, "fp1")  # a retried task finds the job it started
        names[run_id] = name
    assert names["r1"].startswith("pinsage-model-r1-")
    assert tfjob.job_name("r1", "fp2") != names["r1"]  # changed config or inputs: a new job
    assert tfjob.job_name(interval.lower(), "fp1") != names[interval]


def test_job_state_reads_the_operators_last_terminal_condition():
    def job(*conditions):
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}

    assert tfjob.job_state({}) is None
    assert tfjob.job_state(job(("Created", "True"), ("Running", "True"))) is None
    assert tfjob.job_state(job(("Created", "True"), ("Running", "False"), ("Succeeded", "True"))) == "Succeeded"
    assert tfjob.job_state(job(("Running", "True"), ("Failed", "True"))) == "Failed"
    assert tfjob.job_state(job(("Restarting", "True"), ("Failed", "False"))) is None


def test_inputs_are_staged_once_per_fingerprint(tmp_path):
    src = tmp_path / "artifacts" / "graph"
    src.mkdir(parents=True)
    (src / "graph.npz").write_bytes(b"v1")
    (src / "_fingerprint.json").write_text(json.dumps({"fingerprint": "a"}))
    run_dir = tmp_path / "runs" / "r1"
    assert tfjob.stage_inputs({"graph": src}, run_dir) == ["graph"]
    assert (run_dir / "graph" / "graph.npz").read_bytes() == b"v1"
    assert tfjob.stage_inputs({"graph": src}, run_dir) == []  # same fingerprint: not copied again
    (src / "graph.npz").write_bytes(b"v2")
    (src / "_fingerprint.json").write_text(json.dumps({"fingerprint": "b"}))
    assert tfjob.stage_inputs({"graph": src}, run_dir) == ["graph"]
    assert (run_dir / "graph" / "graph.npz").read_bytes() == b"v2"
    assert tfjob.stage_inputs({"graph": run_dir / "graph"}, run_dir) == []  # already in the run area


def test_a_config_without_workers_has_nothing_to_launch(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("name: t\n")
    flags = [
        "--config",
        str(conf),
        "--run-id",
        "r1",
        "--graph",
        "g",
        "--features",
        "f",
        "--neighbourhoods",
        "n",
        "--output",
        str(tmp_path / "out"),
    ]
    assert tfjob.main(flags) == 1
    assert "orchestration.tfjob_workers is 0: nothing to launch" in capsys.readouterr().err
