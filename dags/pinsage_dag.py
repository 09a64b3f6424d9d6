"""Airflow 3 DAG ``pinsage``: one task per pipeline stage, on the schedule from the config.

The DAG file is configuration only: parsing it reads one small YAML file and imports no
TensorFlow, Spark, Beam or MLflow (tests/unit/test_dag_parse.py checks). Each task calls the same
:func:`components.base.execute` as the local runner and the Kubeflow components, over the run
directory of its data interval, ``<orchestration.run_root>/<interval start>_<interval end>``
(never "latest"), so a retried or cleared task rewrites exactly its own partition. Tasks pass
directory paths through XCom, never data.

With ``orchestration.submit_to_kfp`` the DAG instead has one task that compiles the Kubeflow
pipeline and submits a run to ``orchestration.kfp_host``.

The config comes from ``$PINSAGE_CONFIG`` (default: ``configs/demo.yaml`` beside this repo).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task

from components.lifecycle import READS_CHAMPION
from components.runner import select_stages
from pinsage_model.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = os.environ.get("PINSAGE_CONFIG", str(REPO / "configs" / "demo.yaml"))
CFG = load_config(CONFIG_PATH)


def interval_key(start: datetime | None, end: datetime | None, logical_date: datetime | None, run_id: str) -> str:
    """The run directory name for a DAG run: its data interval, else logical date, else run id.

    Manually triggered Airflow 3 runs may have no logical date; their run id is unique per run.
    """
    start, end, logical_date = (d.astimezone(timezone.utc) if d is not None else None for d in (start, end, logical_date))
    if start is not None and end is not None:
        # Manual runs have an empty interval (start == end): one timestamp names it.
        return f"{start:%Y%m%dT%H%M%SZ}" if start == end else f"{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"
    if logical_date is not None:
        return f"{logical_date:%Y%m%dT%H%M%SZ}"
    return re.sub(r"[^0-9A-Za-z_.-]", "_", run_id)


def run_dir_for(context) -> Path:
    """``<run_root>/<interval key>`` for the task's DAG run (from the Airflow task context)."""
    key = interval_key(
        context.get("data_interval_start"), context.get("data_interval_end"), context.get("logical_date"), context["run_id"]
    )
    return Path(CFG.orchestration.run_root).resolve() / key


@task
def prepare() -> str:
    """Create the interval's run directory and save the resolved config there."""
    from airflow.sdk import get_current_context

    from pinsage_model.config import save_resolved

    run_dir = run_dir_for(get_current_context())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(CFG, run_dir / "config.resolved.yaml")
    return str(run_dir)


@task
def run_stage(stage_name: str, run_dir: str, inputs: dict[str, str]) -> str:
    """Run one stage into ``<run_dir>/<stage>``; returns that directory for downstream tasks.

    ``force=True``: Airflow decides when a task runs (a cleared task means "do it again"); the
    output folder is replaced atomically and identical inputs give identical bytes.
    """
    from components.base import execute
    from components.registry import get_stage

    out = Path(run_dir) / stage_name
    execute(get_stage(stage_name), CFG, {k: Path(v) for k, v in inputs.items()}, out, force=True)
    return str(out)


@task
def track(run_dir: str, outputs: dict[str, str]) -> dict:
    """Log the run to MLflow, register the model and apply the promotion gate.

    ``outputs`` (stage -> folder, from XCom) makes this task wait for those stages: every stage
    but the ones that read the champion (index publishing), which wait for this task.
    """
    from components.tracking import track_pipeline_run

    return track_pipeline_run(CFG, run_dir)


@task
def submit_kfp() -> str:
    """Compile the Kubeflow pipeline and start a run for this interval; returns the KFP run id."""
    from airflow.sdk import get_current_context

    from components.kfp_pipeline import submit

    ctx = get_current_context()
    path = Path(CONFIG_PATH).resolve()
    # Inside the pipeline image the repo is the working directory: pass the repo-relative path.
    config = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    return submit(CFG, config, f"pinsage-{run_dir_for(ctx).name}")


@dag(
    dag_id="pinsage",
    description="PinSage: pairs, graph, features, neighbourhoods, training, inference, evaluation, index",
    schedule=CFG.orchestration.schedule,
    start_date=datetime.fromisoformat(CFG.orchestration.start_date).replace(tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": CFG.orchestration.retries, "retry_delay": timedelta(seconds=CFG.orchestration.retry_delay_s)},
    tags=["pinsage", "kfp" if CFG.orchestration.submit_to_kfp else "local"],
    doc_md=__doc__,
)
def pinsage():
    if CFG.orchestration.submit_to_kfp:
        submit_kfp()
        return
    run_dir = prepare()
    outputs: dict = {}
    tracked = None
    # Implemented stages up to stop_after; a stage whose inputs are not all there is left out.
    for stage in select_stages(None, CFG.orchestration.stop_after or None):
        if not all(n in outputs for n in stage.inputs):
            continue
        if CFG.tracking.enabled and stage.name in READS_CHAMPION and tracked is None:
            tracked = track(run_dir, dict(outputs))
        outputs[stage.name] = run_stage.override(task_id=stage.name, doc=stage.description)(
            stage.name, run_dir, {n: outputs[n] for n in stage.inputs}
        )
        if tracked is not None:
            tracked >> outputs[stage.name]  # index publishing reads the champion the gate chose
    if CFG.tracking.enabled and tracked is None and outputs:
        track(run_dir, outputs)


pinsage()
