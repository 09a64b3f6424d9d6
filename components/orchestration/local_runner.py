"""Local runner: executes the pipeline's stages in order over one run directory.

``pinsage run --config X [--from STAGE] [--to STAGE]``. Stages whose inputs and config are
unchanged are skipped (fingerprints); each stage's output folder is replaced atomically. The run
directory's name is the run id, its parent the run area shared with other runs.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from components.orchestration.execution import execute, run_dir_lock, start_time
from components.stages import Stage, StageContext, select_stages
from pinsage_model.config import PipelineConfig, save_resolved

log = logging.getLogger("pinsage")


# Imported by the main thread before the background imports start: modules both threads import
# (TensorFlow and Beam pull them in, and so do the Spark stages) are complete before they race.
_SHARED_DEPENDENCIES = ("numpy", "pandas", "pyarrow", "pyarrow.parquet")


def _import_ahead(stages: Sequence[Stage]) -> threading.Thread | None:
    """Import the later stages' slow libraries in a daemon thread while the first stages run.

    In one process the stages run one after another, and the first TensorFlow stage would pay
    TensorFlow's import (~5 s, with TF Transform and Beam ~7 s on 2 cores) inside its own time;
    the stages before it (pairs and graph) mostly wait on Spark's JVM. A failed import is left to
    the stage itself, which then raises it with its own message.
    """
    names = [m for s in stages[1:] for m in s.libraries if m not in sys.modules]
    if not names:
        return None
    for m in _SHARED_DEPENDENCIES:
        importlib.import_module(m)

    def work() -> None:
        for m in dict.fromkeys(names):
            try:
                importlib.import_module(m)
            except Exception as exc:  # the stage that needs it reports it
                log.debug("importing %s ahead failed: %s", m, exc)

    thread = threading.Thread(target=work, name="pinsage-import-ahead", daemon=True)
    thread.start()
    return thread


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: str | Path,
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
    logical_time: dt.datetime | None = None,
) -> dict[str, dict]:
    """Run the selected stages; returns each stage's report keyed by stage name.

    Args:
      cfg: the resolved config.
      run_dir: the run directory (one folder per stage).
      start, stop: first and last stage to run (default: all).
      force: rerun stages even when unchanged.
      logical_time: the instant the run stands for (default: ``SOURCE_DATE_EPOCH``, else now).
    """
    run_dir = Path(run_dir)
    stages = select_stages(start, stop)
    _import_ahead(stages)
    reports: dict[str, dict] = {}
    # One attempt at a time in a run directory: a second `pinsage run` waits for the first, then
    # finds its stages current (the stages take the same lock again, re-entrantly).
    with run_dir_lock(run_dir, cfg):
        save_resolved(cfg, run_dir / "config.resolved.yaml")
        ctx = StageContext.for_run_dir(run_dir, logical_time or start_time())
        t0 = time.perf_counter()
        for i, stage in enumerate(stages, 1):
            log.info("[%d/%d] %s", i, len(stages), stage.name)
            inputs = {name: run_dir / name for name in stage.inputs}
            reports[stage.name] = execute(stage, cfg, inputs, run_dir / stage.name, ctx, force=force)
    log.info("pipeline finished in %.1f s; outputs in %s", time.perf_counter() - t0, run_dir)
    return reports
