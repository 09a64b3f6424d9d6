"""The Airflow DAG parses without import errors, imports nothing heavy, and follows the config.

Parsing runs in a subprocess with its own AIRFLOW_HOME: Airflow configures itself (and logging)
on import, and ``sys.modules`` there shows exactly what parsing the DAG file imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("tensorflow", "pyspark", "apache_beam", "tensorflow_transform", "mlflow", "faiss", "keras", "kfp")

PARSE = """
import json, sys
from datetime import datetime, timedelta, timezone
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
dag = bag.dags.get("pinsage")
key = None
if dag is not None:
    from dags.pinsage_dag import interval_key
    utc = timezone.utc
    t0, t1 = datetime(2026, 1, 5, tzinfo=utc), datetime(2026, 1, 12, tzinfo=utc)
    key = [
        interval_key(t0, t1, t0, "scheduled__x"),
        interval_key(t0, t0, t0, "manual__x"),
        interval_key(None, None, None, "manual__2026-01-05T00:00:00+00:00"),
        interval_key(t0.astimezone(timezone(timedelta(hours=2))), t1, None, "r"),
    ]
print("RESULT" + json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "heavy": heavy,
    "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else None,
    "order": [t.task_id for t in dag.tasks] if dag else None,
    "retries": sorted({t.retries for t in dag.tasks}) if dag else None,
    "schedule": str(dag.schedule) if dag else None,
    "keys": key,
}))
"""


def parse_dag(tmp_path: Path, config_text: str) -> dict:
    conf = tmp_path / "dag.yaml"
    conf.write_text(config_text)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "PINSAGE_CONFIG": str(conf),
    }
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(REPO / "dags"), ",".join(HEAVY)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.fixture(scope="module")
def local_dag(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dagparse")
    return parse_dag(
        tmp,
        "name: t\norchestration:\n  schedule: '@daily'\n  retries: 4\n  stop_after: graph\n"
        f"  run_root: {tmp / 'runs'}\ntracking:\n  enabled: true\n",
    )


def test_dag_has_no_import_errors_and_no_heavy_imports(local_dag):
    assert local_dag["errors"] == {}
    assert local_dag["heavy"] == []


def test_dag_wires_the_stage_list_and_the_config(local_dag):
    from components.stages import pipeline_stages

    expected = {"prepare": []}
    for s in pipeline_stages("graph"):
        expected[s.name] = sorted({"prepare", *s.inputs})
    # each stage waits for its inputs (through their XCom paths) and the run dir, nothing else
    assert local_dag["tasks"] == expected
    assert local_dag["retries"] == [4]
    assert local_dag["schedule"] == "@daily"


def test_run_directory_is_keyed_by_interval(local_dag):
    assert local_dag["keys"] == [
        "20260105T000000Z_20260112T000000Z",
        "20260105T000000Z",
        "manual__2026-01-05T00_00_00_00_00",
        "20260105T000000Z_20260112T000000Z",  # same instant given in UTC+2: same key
    ]


def test_dag_runs_every_stage_registration_before_index(tmp_path):
    from components.stages import STAGES

    out = parse_dag(tmp_path, f"name: t\norchestration:\n  run_root: {tmp_path / 'runs'}\n  schedule: ''\n")
    assert out["errors"] == {}
    assert out["schedule"] == "None"  # an empty schedule: triggered runs only
    tasks = out["tasks"]
    assert set(tasks) == {"prepare", *(s.name for s in STAGES)}
    assert set(tasks["registration"]) == {"prepare", "raw", "graph", "model", "embeddings", "evaluation"}
    assert set(tasks["index"]) == {"prepare", "registration"}


def test_dag_kfp_graph_and_pinsage_run_list_the_same_stages_in_the_same_order(tmp_path, monkeypatch):
    """One stage list, three front ends: the DAG's tasks in creation order, the compiled KFP
    graph (tasks, their dependencies, and no task before its inputs) and ``pinsage run``."""
    import yaml

    from components.orchestration import kfp_pipeline
    from components.orchestration.local_runner import run_pipeline
    from components.stages import STAGE_NAMES, STAGES, Stage
    from pinsage_model.config import config_from_dict

    dag = parse_dag(tmp_path, f"name: t\norchestration:\n  run_root: {tmp_path / 'runs'}\n")
    assert dag["order"] == ["prepare", *STAGE_NAMES]

    package = kfp_pipeline.compile_pipeline(tmp_path / "p.yaml", "img:1")
    kfp_tasks = yaml.safe_load(package.read_text())["root"]["dag"]["tasks"]
    assert set(kfp_tasks) == set(STAGE_NAMES)
    for s in STAGES:
        deps = kfp_tasks[s.name].get("dependentTasks", [])
        assert set(deps) == set(s.inputs), s.name
        assert all(STAGE_NAMES.index(d) < STAGE_NAMES.index(s.name) for d in deps)
        assert kfp_tasks[s.name]["taskInfo"]["name"] == s.name

    ran: list[str] = []

    def fake_run(self):
        def run(cfg, inputs, out_dir, ctx):
            ran.append(self.name)
            return {}

        return run

    monkeypatch.setattr(Stage, "load_run", fake_run)
    reports = run_pipeline(config_from_dict({"name": "t"}), tmp_path / "run")
    assert ran == list(reports) == list(STAGE_NAMES)


def test_submit_to_kfp_makes_a_single_task(tmp_path):
    out = parse_dag(tmp_path, "name: t\norchestration:\n  submit_to_kfp: true\n  kfp_host: http://kfp:8888\n")
    assert out["errors"] == {} and out["heavy"] == []
    assert out["tasks"] == {"submit_kfp": []}
    assert out["schedule"] == "@weekly"
