"""Airflow 3 DAG ``pinsage``: one task per pipeline stage, on the schedule from the config.

The DAG file is configuration only: parsing it reads one small YAML file and imports no
TensorFlow, Spark, Beam or MLflow (tests/unit/dags/test_pinsage_dag.py checks). It wires the stages of
:data:`components.stages.STAGES` and nothing else: each task calls the same
:func:`components.orchestration.execution.execute` as the local runner and the Kubeflow components, over the run
directory of its data interval, ``<orchestration.run_root>/<interval start>_<interval end>``
(never "latest"), so a retried or cleared task rewrites exactly its own partition. Tasks pass
directory paths through XCom, never data. A stage's context carries the interval key as run id
and the logical date as logical time.

With ``orchestration.submit_to_kfp`` the DAG instead has one task that compiles the Kubeflow
pipeline and submits a run to ``orchestration.kfp_host``.

The config comes from ``$PINSAGE_CONFIG`` (default: ``configs/demo.yaml`` beside this repo). An
empty ``orchestration.schedule`` gives a DAG without a schedule: it runs only when triggered.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task

from components.stages import pipeline_stages
from pinsage_model.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = os.environ.get("PINSAGE_CONFIG", str(REPO / "configs" / "demo.yaml"))
CFG = load_config(CONFIG_PATH)


def interval_key(start: datetime | None, end: datetime | None, logical_date: datetime | None, run_id: str) -> str:
    """The run directory name for a DAG run: its data interval, else logical date, else run id.

    Manually triggered Airflow 3 runs may have no logical date; their run id is unique per run.
    """
    start, end, logical_date = (
        d.astimezone(timezone.utc) if d is not None else None for d in (start, end, logical_date)
    )
    if start is not None and end is not None:
        # Manual runs have an empty interval (start == end): one timestamp names it.
        return f"{start:%Y%m%dT%H%M%SZ}" if start == end else f"{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"
    if logical_date is not None:
        return f"{logical_date:%Y%m%dT%H%M%SZ}"
    return re.sub(r"[^0-9A-Za-z_.-]", "_", run_id)


def run_dir_for(context) -> Path:
    """``<run_root>/<interval key>`` for the task's DAG run (from the Airflow task context)."""
    key = interval_key(
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        context.get("logical_date"),
        context["run_id"],
    )
    return Path(CFG.orchestration.run_root).resolve() / key


def logical_time_for(context) -> datetime:
    """The instant the DAG run stands for: its logical date, else (manual runs) when it was due."""
    return context.get("logical_date") or context.get("data_interval_start") or context["dag_run"].run_after


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
    from airflow.sdk import get_current_context

    from components.orchestration.execution import execute, exit_on_known_error
    from components.stages import StageContext, get_stage

    ctx = StageContext.for_run_dir(run_dir, logical_time_for(get_current_context()))
    out = Path(run_dir) / stage_name
    # A known error (bad input, config) fails the task with the same one line as `pinsage run`.
    exit_on_known_error(
        execute, get_stage(stage_name), CFG, {k: Path(v) for k, v in inputs.items()}, out, ctx, force=True
    )
    return str(out)


@task
def submit_kfp() -> str:
    """Compile the Kubeflow pipeline and start a run for this interval; returns the KFP run id."""
    from airflow.sdk import get_current_context

    from components.orchestration.kfp_pipeline import submit

    ctx = get_current_context()
    path = Path(CONFIG_PATH).resolve()
    # Inside the pipeline image the repo is the working directory: pass the repo-relative path.
    config = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    return submit(CFG, config, f"pinsage-{run_dir_for(ctx).name}", logical_time_for(ctx))


@dag(
    dag_id="pinsage",
    description="PinSage: pairs, graph, features, neighbourhoods, training, inference, evaluation, index",
    schedule=CFG.orchestration.schedule or None,  # empty: triggered runs only
    start_date=datetime.fromisoformat(CFG.orchestration.start_date).replace(tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": CFG.orchestration.retries,
        "retry_delay": timedelta(seconds=CFG.orchestration.retry_delay_s),
    },
    tags=["pinsage", "kfp" if CFG.orchestration.submit_to_kfp else "local"],
    doc_md=__doc__,
)
def pinsage():
    if CFG.orchestration.submit_to_kfp:
        submit_kfp()
        return
    run_dir = prepare()
    outputs: dict = {}
    for stage in pipeline_stages(CFG.orchestration.stop_after):
        outputs[stage.name] = run_stage.override(task_id=stage.name, doc=stage.description)(
            stage.name, run_dir, {n: outputs[n] for n in stage.inputs}
        )


pinsage()
