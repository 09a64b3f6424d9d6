"""Local runner: executes the registered stages in order over one run directory.

``pinsage run --config X [--from STAGE] [--to STAGE]``. Stages whose inputs and config are
unchanged are skipped (fingerprints); each stage's output folder is replaced atomically.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from components.base import Stage, execute
from components.lifecycle import READS_CHAMPION
from components.registry import STAGE_NAMES, available_stages
from pinsage_model.config import PipelineConfig, save_resolved

log = logging.getLogger("pinsage")


def select_stages(start: str | None, stop: str | None) -> list[Stage]:
    """Stages from ``start`` to ``stop`` inclusive (by pipeline order), among those implemented."""
    for name in (start, stop):
        if name is not None and name not in STAGE_NAMES:
            raise ValueError(f"unknown stage '{name}'; stages are: {', '.join(STAGE_NAMES)}")
    lo = STAGE_NAMES.index(start) if start else 0
    hi = STAGE_NAMES.index(stop) if stop else len(STAGE_NAMES) - 1
    if lo > hi:
        raise ValueError(f"--from {start} comes after --to {stop}")
    wanted = set(STAGE_NAMES[lo : hi + 1])
    return [s for s in available_stages() if s.name in wanted]


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: str | Path,
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
) -> dict[str, dict]:
    """Run the selected stages; returns each stage's report keyed by stage name."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir / "config.resolved.yaml")
    reports: dict[str, dict] = {}
    stages = select_stages(start, stop)
    missing = [n for n in STAGE_NAMES if n not in {s.name for s in available_stages()}]
    if missing:
        log.warning("stages not implemented in this checkout (not run): %s", ", ".join(missing))
    t0 = time.perf_counter()
    tracked = False
    for i, stage in enumerate(stages, 1):
        if stage.name in READS_CHAMPION and not tracked:
            # The registry gate decides the champion before the index stage reads it.
            tracked = _track(cfg, run_dir, reports)
        log.info("[%d/%d] %s", i, len(stages), stage.name)
        inputs = {name: run_dir / name for name in stage.inputs}
        reports[stage.name] = execute(stage, cfg, inputs, run_dir / stage.name, force=force)
    if not tracked:
        _track(cfg, run_dir, reports)
    log.info("pipeline finished in %.1f s; outputs in %s", time.perf_counter() - t0, run_dir)
    return reports


def _track(cfg: PipelineConfig, run_dir: Path, reports: dict[str, dict]) -> bool:
    """Log this run to MLflow and gate its model, when tracking is on and a model or its
    evaluation was (re)computed in this invocation: a rerun that changed nothing logs nothing."""
    changed = any(not reports.get(s, {"skipped": True}).get("skipped", True) for s in ("model", "evaluation"))
    if not cfg.tracking.enabled or not changed or not (run_dir / "evaluation").exists():
        return False
    from components.tracking import track_pipeline_run

    result = track_pipeline_run(cfg, run_dir, reports)
    reports["tracking"] = {"skipped": False, "seconds": 0.0, **result}
    return True
