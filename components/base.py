"""What every stage component shares: its declaration, atomic execution, fingerprints and CLI.

A component module defines ``STAGE = Stage(...)`` and ``run(cfg, inputs, out_dir) -> report``:

* ``inputs`` maps each upstream stage name to that stage's output directory;
* ``out_dir`` is an empty temporary directory that :func:`execute` renames onto the stage's
  output directory only when ``run`` returns, so a failing stage leaves no partial output;
* the returned report (JSON-able dict) is written to ``report.json`` beside the outputs.

The same ``execute`` serves the local runner, ``python -m components.<stage>``, the Airflow DAG
and the Kubeflow components, so all front ends produce identical outputs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pinsage_model.config import ConfigError, PipelineConfig, config_to_dict, load_config, save_resolved
from pinsage_model.io import atomic_dir, atomic_write_json, file_digest, json_digest

log = logging.getLogger("pinsage")

FINGERPRINT_FILE = "_fingerprint.json"
REPORT_FILE = "report.json"


class StageError(RuntimeError):
    """A stage could not produce its outputs; the message says what to do next."""


@dataclass(frozen=True)
class Stage:
    """A pipeline stage's declaration.

    Attributes:
      name: stage name used by ``--from``/``--to`` and as the output folder under the run dir.
      inputs: names of upstream stages whose outputs this stage reads.
      config_sections: config sections whose values change this stage's outputs (fingerprint).
      description: one line for ``--help`` and progress output.
      module: the component module that implements ``run``.
    """

    name: str
    inputs: tuple[str, ...]
    config_sections: tuple[str, ...]
    description: str
    module: str

    def load_run(self) -> Callable[[PipelineConfig, dict[str, Path], Path], dict]:
        return importlib.import_module(self.module).run


def external_inputs(cfg: PipelineConfig) -> list[str]:
    """Files outside the run dir that the ingest stage reads (their bytes enter its fingerprint)."""
    d = cfg.data
    return [p for p in (d.path, d.interactions_path, d.items_path, d.test_path, d.item_vectors_path, d.item_vector_ids_path) if p]


def fingerprint(stage: Stage, cfg: PipelineConfig, inputs: dict[str, Path]) -> str:
    """Hash of the stage, its config sections and its inputs' fingerprints (or file digests)."""
    cfg_dict = config_to_dict(cfg)
    parts: dict[str, Any] = {
        "stage": stage.name,
        "seed": cfg.seed,
        "config": {s: cfg_dict[s] for s in stage.config_sections},
        "inputs": {},
    }
    for name, path in sorted(inputs.items()):
        fp = Path(path) / FINGERPRINT_FILE
        parts["inputs"][name] = json.loads(fp.read_text())["fingerprint"] if fp.exists() else file_digest(path)
    if not stage.inputs:
        parts["external"] = {p: file_digest(p) if Path(p).exists() else "missing" for p in external_inputs(cfg)}
    return json_digest(parts)


def is_current(out: Path, fp: str) -> bool:
    f = out / FINGERPRINT_FILE
    return f.exists() and json.loads(f.read_text()).get("fingerprint") == fp


def execute(stage: Stage, cfg: PipelineConfig, inputs: dict[str, Path], out: Path, force: bool = False) -> dict:
    """Run one stage into ``out`` atomically; skip it when its fingerprint is unchanged."""
    for name in stage.inputs:
        if name not in inputs or not Path(inputs[name]).exists():
            raise StageError(
                f"stage '{stage.name}' needs the output of '{name}' at {inputs.get(name)}; "
                f"run that stage first (pinsage run --to {name})"
            )
    fp = fingerprint(stage, cfg, inputs)
    if not force and is_current(out, fp):
        log.info("stage %-15s unchanged, skipped (%s)", stage.name, out)
        report_path = out / REPORT_FILE
        return {"skipped": True, **(json.loads(report_path.read_text()) if report_path.exists() else {})}
    log.info("stage %-15s running: %s", stage.name, stage.description)
    t0 = time.perf_counter()
    run = stage.load_run()
    with atomic_dir(out) as tmp:
        report = run(cfg, {k: Path(v) for k, v in inputs.items()}, tmp) or {}
        report = {"stage": stage.name, "seconds": round(time.perf_counter() - t0, 3), **report}
        atomic_write_json(tmp / REPORT_FILE, report)
        atomic_write_json(tmp / FINGERPRINT_FILE, {"fingerprint": fp, "stage": stage.name})
    log.info("stage %-15s done in %.1f s -> %s", stage.name, time.perf_counter() - t0, out)
    return {"skipped": False, **report}


def cli_config(path: str) -> PipelineConfig | None:
    """Load a config for a command; on a schema error print it (key and file) and return None."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def execute_paths(stage_name: str, config_path: str, output: str, force: bool = False, **inputs: str) -> dict:
    """:func:`execute` by stage name over plain paths (the Kubeflow lightweight components)."""
    from components.registry import get_stage

    cfg = load_config(config_path)
    return execute(get_stage(stage_name), cfg, {k: Path(v) for k, v in inputs.items()}, Path(output), force=force)


def stage_main(module_name: str, argv: list[str] | None = None) -> int:
    """``python -m components.<stage>``: run one stage over a run dir or explicit paths."""
    from components.registry import get_stage

    if module_name == "__main__":  # run as `python -m components.<stage>`
        module_name = sys.modules["__main__"].__spec__.name
    stage = get_stage(module_name)
    mod = importlib.import_module(stage.module)
    parser = argparse.ArgumentParser(
        prog=f"python -m {stage.module}",
        description=f"{stage.description}\n\n{(mod.__doc__ or '').strip()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="pipeline YAML config (e.g. configs/demo.yaml)")
    parser.add_argument("--run-dir", help="run directory; inputs and output default to its stage folders")
    for name in stage.inputs:
        parser.add_argument(f"--{name}", dest=f"in_{name}", help=f"output directory of stage '{name}'")
    parser.add_argument("--output", help=f"output directory (default: <run-dir>/{stage.name})")
    parser.add_argument("--force", action="store_true", help="run even if inputs and config are unchanged")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.run_dir and (not args.output or any(getattr(args, f"in_{n}") is None for n in stage.inputs)):
        parser.error("give --run-dir, or --output and every input directory")
    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else None
    inputs = {n: Path(getattr(args, f"in_{n}") or run_dir / n) for n in stage.inputs}
    out = Path(args.output) if args.output else run_dir / stage.name
    if run_dir is not None:
        save_resolved(cfg, run_dir / "config.resolved.yaml")
    try:
        report = execute(stage, cfg, inputs, out, force=args.force)
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0
