"""Local runner: executes the pipeline's stages in order over one run directory.

``pinsage run --config X [--from STAGE] [--to STAGE]``. Stages whose inputs and config are
unchanged are skipped (fingerprints); each stage's output folder is replaced atomically. The run
directory's name is the run id, its parent the run area shared with other runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from components.base import execute, start_time
from components.stages import StageContext, select_stages
from pinsage_model.config import PipelineConfig, save_resolved

log = logging.getLogger("pinsage")


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
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir / "config.resolved.yaml")
    ctx = StageContext.for_run_dir(run_dir, logical_time or start_time())
    stages = select_stages(start, stop)
    reports: dict[str, dict] = {}
    t0 = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        log.info("[%d/%d] %s", i, len(stages), stage.name)
        inputs = {name: run_dir / name for name in stage.inputs}
        reports[stage.name] = execute(stage, cfg, inputs, run_dir / stage.name, ctx, force=force)
    log.info("pipeline finished in %.1f s; outputs in %s", time.perf_counter() - t0, run_dir)
    return reports
