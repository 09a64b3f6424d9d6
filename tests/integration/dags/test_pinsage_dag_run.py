"""``dag.test()`` of the Airflow DAG on the tiny synthetic data, with a SQLite metadata DB.

The DAG runs twice for the same logical date (a rerun of every task of that interval): both runs
succeed, write the same run directory, and the second leaves byte-identical outputs. Airflow runs
in a subprocess with its own AIRFLOW_HOME, since it configures itself and logging on import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]

DRIVE = """
import importlib.util, json, sys
from datetime import datetime, timezone
from pathlib import Path
from airflow.dag_processing.dagbag import DagBag

# run_fixtures by its file: tests/integration on sys.path would shadow the components package
# with the test folder tests/integration/components (a namespace package of the same name).
spec = importlib.util.spec_from_file_location("run_fixtures", Path(sys.argv[2]) / "run_fixtures.py")
run_fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_fixtures)
digests = run_fixtures.digests

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["pinsage"]
when = datetime(2026, 1, 12, tzinfo=timezone.utc)
result = {"tasks": sorted(t.task_id for t in dag.tasks), "runs": []}
for _ in range(2):
    run = dag.test(logical_date=when)
    tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    run_dirs = sorted(str(p) for p in Path(sys.argv[3]).iterdir() if p.is_dir())  # lock files sit beside them
    digest = digests(Path(run_dirs[0]))
    result["runs"].append({"state": str(run.state), "tis": tis, "dirs": run_dirs, "digests": digest})
print("RESULT" + json.dumps(result))
"""


@pytest.mark.slow
def test_dag_runs_on_tiny_data_and_reruns_identically(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    # Data stages only: the Airflow wiring is what is under test; each stage has its own tests.
    cfg["orchestration"] = {"run_root": str(tmp_path / "runs"), "stop_after": "pairs", "retries": 0}
    cfg["tracking"] = {"enabled": False}
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "PINSAGE_CONFIG": str(conf),
    }
    airflow = Path(sys.executable).parent / "airflow"
    migrate = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    proc = subprocess.run(
        [sys.executable, "-c", DRIVE, str(REPO / "dags"), str(Path(__file__).parents[1]), str(tmp_path / "runs")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])

    assert result["tasks"] == ["pairs", "prepare", "raw"]
    first, second = result["runs"]
    for run in (first, second):
        assert run["state"] == "success"
        assert run["tis"] == {"prepare": "success", "raw": "success", "pairs": "success"}
    # one partition for the interval (manual runs: start == end == logical date), reused by the rerun
    assert first["dirs"] == second["dirs"] == [str(tmp_path / "runs" / "20260112T000000Z")]
    assert {"raw/interactions.parquet", "raw/items.parquet", "pairs/pairs.parquet", "config.resolved.yaml"} <= set(
        first["digests"]
    )
    assert first["digests"] == second["digests"]
