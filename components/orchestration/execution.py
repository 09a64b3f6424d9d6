"""What every stage shares: atomic, fingerprinted execution, the stage CLI and report tables.

:func:`execute` runs one stage of :mod:`components.stages` for every front end (the local runner,
``python -m components.stages.<stage>``, the Airflow DAG and the Kubeflow components): it checks
the inputs, skips a stage whose fingerprint is unchanged, removes temporary folders that an
interrupted attempt left behind, runs the stage into a fresh temporary folder and renames it into
place only when the stage returns, so a failing stage leaves no partial output. The stage's
report (a JSON-able dict) is written to ``report.json`` beside its outputs.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import functools
import importlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.logs import setup_logging
from components.stages import Stage, StageContext, get_stage
from pinsage_model.config import ConfigError, PipelineConfig, fingerprint_dict, load_config, save_resolved
from pinsage_model.io import atomic_dir, atomic_write_json, file_digest, json_digest
from pinsage_model.locks import folder_lock

log = logging.getLogger("pinsage")

FINGERPRINT_FILE = "_fingerprint.json"
REPORT_FILE = "report.json"


class StageError(RuntimeError):
    """A stage could not produce its outputs; the message says what to do next."""


# Errors of the input or the setup, not of the code: every front end prints them as one line
# (``error_line``) and exits non-zero, never with a traceback. ``LoaderError``, ``ContractError``,
# ``ConfigError`` and pyarrow's ``ArrowInvalid`` are ``ValueError``s (as are numpy's read errors);
# file-system errors, pyarrow's ``ArrowIOError`` and a lock's ``LockTimeout`` are ``OSError``s; a
# corrupt ``.npz`` is a ``BadZipFile``. Settings a data set cannot carry end as an arithmetic error
# (a division by an empty split) or an allocation too large (``MemoryError``): one line too.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    StageError,
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    ArithmeticError,
    MemoryError,
)


def error_line(exc: BaseException) -> str:
    """The one-line message every front end prints for a known error."""
    return "error: " + " ".join(str(exc).split())


def exit_on_known_error(fn, *args, **kwargs):
    """Call ``fn``; on a known error print :func:`error_line` to stderr and exit with status 1.

    For front ends that run a stage inside a host process (the Kubeflow lightweight components,
    the Airflow tasks): ``SystemExit`` fails the task with that one line and no traceback.
    """
    try:
        return fn(*args, **kwargs)
    except KNOWN_ERRORS as exc:
        print(error_line(exc), file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def external_inputs(cfg: PipelineConfig) -> list[str]:
    """Files outside the run dir that the ingest stage reads (their bytes enter its fingerprint)."""
    d = cfg.data
    return [
        p
        for p in (d.path, d.interactions_path, d.items_path, d.test_path, d.item_vectors_path, d.item_vector_ids_path)
        if p
    ]


# Environment values that override a config section a stage reads, so they change its outputs
# (the registry the registration stage writes to). Credentials never enter: only the redacted URI.
ENV_BY_SECTION: dict[str, tuple[str, ...]] = {"tracking": ("MLFLOW_TRACKING_URI",)}
# First-party modules every stage imports that do not change what a stage writes.
_CODE_NEUTRAL = ("components.orchestration", "components.logs", "components.stages")


def _code_key(source: str) -> str:
    """The source's syntax tree without docstrings: comments, layout and docs change no output."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined,index]
    return ast.dump(tree)


@functools.lru_cache(maxsize=4096)
def _file_code(path: str, mtime_ns: int, size: int) -> tuple[str, frozenset[str]]:
    """(digest of a module's code, the first-party ``components.*`` modules it imports)."""
    source = Path(path).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module)
            imported.update(f"{node.module}.{a.name}" for a in node.names)
    first_party = frozenset(m for m in imported if m.startswith("components."))
    return json_digest(_code_key(source)), first_party


def _module_file(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _digest_of(path: Path) -> str:
    st = path.stat()
    return _file_code(str(path), st.st_mtime_ns, st.st_size)[0]


def code_version(stage: Stage) -> dict[str, Any]:
    """What "the same code" means for a stage's outputs: the package version, a digest of the
    library (every module of ``pinsage_model``) and of the stage's module with the first-party
    ``components`` modules it imports (the registry's, for registration), comments and docstrings
    aside. Cheap: each file is parsed once per process and size/mtime."""
    from importlib.metadata import PackageNotFoundError, version

    import pinsage_model

    try:
        package = version("pinsage")
    except PackageNotFoundError:  # run from a source tree that is not installed
        package = "source"
    library = Path(pinsage_model.__file__).parent
    lib = {str(p.relative_to(library)): _digest_of(p) for p in sorted(library.rglob("*.py"))}
    modules: dict[str, str] = {}
    todo = [stage.module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in modules or path is None:
            continue
        st = Path(path).stat()
        modules[name], imported = _file_code(path, st.st_mtime_ns, st.st_size)
        todo.extend(m for m in imported if not m.startswith(_CODE_NEUTRAL))
    return {"package": package, "library": json_digest(lib), "modules": modules}


def env_values(stage: Stage) -> dict[str, str]:
    """The environment values that change the stage's outputs (:data:`ENV_BY_SECTION`), redacted."""
    from components.registry.mlflow_store import redacted

    names = sorted({n for s in stage.config_sections for n in ENV_BY_SECTION.get(s, ())})
    return {n: redacted(os.environ.get(n, "")) for n in names}


def fingerprint(stage: Stage, cfg: PipelineConfig, inputs: dict[str, Path]) -> str:
    """Hash of the stage, its config sections, its inputs' fingerprints (or file digests), the
    environment values that change its outputs and its code (:func:`code_version`).

    The sections hold their derived seeds and leave out the output-neutral keys
    (``pinsage_model.config.OUTPUT_NEUTRAL``: memory, threads, queue sizes, the sampler's
    backend), so changing those reruns nothing.
    """
    cfg_dict = fingerprint_dict(cfg)
    parts: dict[str, Any] = {
        "stage": stage.name,
        "seed": cfg.seed,
        "config": {s: cfg_dict[s] for s in stage.config_sections},
        "env": env_values(stage),
        "code": code_version(stage),
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


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temporary folders an interrupted attempt left beside ``out``.

    ``atomic_dir`` removes its ``.<stage>.*.tmp`` folder when a stage fails, but not when the
    process is killed (nor the ``.<stage>.old-*`` folder of a kill during the final swap); at 1M
    items one such folder holds gigabytes. Called each time a front end gets to the stage, when
    no other attempt of it is writing there (front ends run one attempt of a stage at a time).
    """
    if not out.parent.exists():
        return []
    stale = sorted(
        p for pattern in (f".{out.name}.*.tmp", f".{out.name}.old-*") for p in out.parent.glob(pattern) if p.is_dir()
    )
    for path in stale:
        log.info("removing %s left by an interrupted run of stage %s", path, out.name)
        shutil.rmtree(path, ignore_errors=True)
    return stale


def execute(
    stage: Stage, cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext, force: bool = False
) -> dict:
    """Run one stage into ``out`` atomically; skip it when its fingerprint is unchanged.

    Args:
      stage: the stage to run.
      cfg: the resolved config.
      inputs: upstream stage name -> that stage's output directory.
      out: this stage's output directory.
      ctx: the run's context; the stage sees it with its own scratch folder.
      force: run even when the fingerprint is unchanged.
    """
    for name in stage.inputs:
        if name not in inputs or not Path(inputs[name]).exists():
            raise StageError(
                f"stage '{stage.name}' needs the output of '{name}' at {inputs.get(name)}; "
                f"run that stage first (pinsage run --to {name})"
            )
    run = stage.load_run()
    if not writes_outputs(run, cfg):
        return _run_helper(stage, run, cfg, inputs, out, ctx)
    with run_dir_lock(out.parent, cfg):
        remove_stale_temps(out)
        recover = getattr(sys.modules.get(run.__module__), "recover", None)
        if recover is not None:  # what a killed attempt left outside the output folder
            recover(cfg, ctx)
        fp = fingerprint(stage, cfg, inputs)
        if not force and is_current(out, fp):
            log.info("stage %-15s unchanged, skipped (%s)", stage.name, out)
            report_path = out / REPORT_FILE
            return {"skipped": True, **(json.loads(report_path.read_text()) if report_path.exists() else {})}
        return _run_writer(stage, run, cfg, inputs, out, ctx.for_stage(stage, fp), fp, force)


def run_dir_lock(run_dir: Path, cfg: PipelineConfig):
    """The lock of a run directory (every attempt that writes into it holds it); a second attempt
    waits up to ``orchestration.lock_timeout_s`` with progress lines naming the holder."""
    return folder_lock(run_dir, "run directory", cfg.orchestration.lock_timeout_s)


def _run_helper(stage: Stage, run, cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext) -> dict:
    """One of several processes running the stage together (e.g. a non-chief training worker):
    same inputs and scratch folder, outputs discarded, no lock (the writer holds it); the writer
    keeps and finally removes the scratch folder."""
    fp = fingerprint(stage, cfg, inputs)
    log.info("stage %-15s running: %s", stage.name, stage.description)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"pinsage-{stage.name}-helper-") as tmp:
        report = run(cfg, {k: Path(v) for k, v in inputs.items()}, Path(tmp), ctx.for_stage(stage, fp)) or {}
    log.info(
        "stage %-15s done in %.1f s; its outputs are the writer's, in %s", stage.name, time.perf_counter() - t0, out
    )
    return {
        "skipped": False,
        "wrote_outputs": False,
        "stage": stage.name,
        "seconds": round(time.perf_counter() - t0, 3),
        **report,
    }


def _run_writer(
    stage: Stage,
    run,
    cfg: PipelineConfig,
    inputs: dict[str, Path],
    out: Path,
    stage_ctx: StageContext,
    fp: str,
    force: bool,
) -> dict:
    """Run the stage into a temporary folder renamed onto ``out``; ``force`` also drops the
    checkpoints of an earlier failed attempt, so it starts from scratch."""
    log.info("stage %-15s running: %s", stage.name, stage.description)
    t0 = time.perf_counter()
    if force and stage_ctx.scratch_dir.exists():
        log.info("stage %-15s --force: removing the checkpoints in %s", stage.name, stage_ctx.scratch_dir)
        shutil.rmtree(stage_ctx.scratch_dir)
    with atomic_dir(out) as tmp:
        report = run(cfg, {k: Path(v) for k, v in inputs.items()}, tmp, stage_ctx) or {}
        report = {"stage": stage.name, "seconds": round(time.perf_counter() - t0, 3), **report}
        atomic_write_json(tmp / REPORT_FILE, report)
        atomic_write_json(tmp / FINGERPRINT_FILE, {"fingerprint": fp, "stage": stage.name})
    shutil.rmtree(stage_ctx.scratch_dir, ignore_errors=True)
    log.info("stage %-15s done in %.1f s -> %s", stage.name, time.perf_counter() - t0, out)
    return {"skipped": False, **report}


def writes_outputs(run, cfg: PipelineConfig) -> bool:
    """Whether this process writes the outputs of the stage whose ``run`` is given: the answer of
    ``writes_outputs(cfg)`` in the module defining ``run`` (:mod:`components.stages`), else True."""
    decide = getattr(sys.modules.get(run.__module__), "writes_outputs", None)
    return True if decide is None else bool(decide(cfg))


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` (repeatable) of a command that takes ``--config``."""
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key, typed by the schema (repeatable), e.g. --set train.epochs=3",
    )


def cli_config(path: str, sets: Sequence[str] = ()) -> PipelineConfig | None:
    """Load a config for a command, with its ``--set`` overrides; on a schema error print it (key
    and file, or ``--set``) and return None."""
    try:
        return load_config(path, sets=sets)
    except ConfigError as exc:
        print(error_line(exc), file=sys.stderr)
        return None


def cli_names(what: str, text: str, known) -> list[str] | None:
    """The names in a comma-separated command option; on an unknown ``what`` print it and the
    known names and return None."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: unknown {what} '{unknown[0]}'; known: {', '.join(known)}", file=sys.stderr)
        return None
    return names


def execute_paths(
    stage_name: str, config_path: str, output: str, ctx: StageContext, force: bool = False, **inputs: str
) -> dict:
    """:func:`execute` by stage name over plain paths (the Kubeflow lightweight components); a known
    error prints its one line and exits with status 1 (:func:`exit_on_known_error`)."""

    def go() -> dict:
        cfg = load_config(config_path)
        return execute(
            get_stage(stage_name), cfg, {k: Path(v) for k, v in inputs.items()}, Path(output), ctx, force=force
        )

    return exit_on_known_error(go)


def print_table(title: str, rows: list[tuple[str, object]]) -> str:
    """Format a two-column stage report table, print it to stderr and return it."""
    width = max([len(k) for k, _ in rows] + [10])
    lines = [title, "-" * (width + 16)] + [f"{k:<{width}}  {v:>14}" for k, v in rows]
    text = "\n".join(lines)
    print(text, file=sys.stderr)
    return text


def stage_main(module_name: str, argv: list[str] | None = None) -> int:
    """``python -m components.stages.<stage>``: run one stage over a run dir or explicit paths."""
    if module_name == "__main__":  # run as `python -m components.stages.<stage>`
        spec = sys.modules["__main__"].__spec__
        if spec is None:
            raise SystemExit("run a stage as a module: python -m components.stages.<stage>")
        module_name = spec.name
    stage = get_stage(module_name)
    doc = importlib.import_module(stage.module).__doc__ or ""
    parser = argparse.ArgumentParser(
        prog=f"python -m {stage.module}",
        description=f"{stage.description}\n\n{doc.strip()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="pipeline YAML config (e.g. configs/demo.yaml)")
    add_set_argument(parser)
    parser.add_argument("--run-dir", help="run directory; inputs and output default to its stage folders")
    for name in stage.inputs:
        parser.add_argument(f"--{name}", dest=f"in_{name}", help=f"output directory of stage '{name}'")
    parser.add_argument("--output", help=f"output directory (default: <run-dir>/{stage.name})")
    parser.add_argument("--run-id", help="run id without --run-dir (default: the run directory's name)")
    parser.add_argument("--run-area", help="folder runs share without --run-dir (default: orchestration.run_root)")
    parser.add_argument(
        "--logical-time", help="ISO 8601 instant the run stands for (default: SOURCE_DATE_EPOCH, else now)"
    )
    parser.add_argument("--force", action="store_true", help="run even if inputs and config are unchanged")
    parser.add_argument("--verbose", action="store_true", help="every library's log lines on the console, at DEBUG")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not args.run_dir and (not args.output or any(getattr(args, f"in_{n}") is None for n in stage.inputs)):
        parser.error("give --run-dir, or --output and every input directory")
    if not args.run_dir and not args.run_id:
        parser.error("give --run-dir, or --run-id with --output")
    cfg = cli_config(args.config, args.sets)
    if cfg is None:
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is not None:
        inputs = {n: Path(getattr(args, f"in_{n}") or run_dir / n) for n in stage.inputs}
        out = Path(args.output) if args.output else run_dir / stage.name
    else:  # the checks above made every path explicit
        inputs = {n: Path(getattr(args, f"in_{n}")) for n in stage.inputs}
        out = Path(args.output)
    when = args.logical_time or start_time()
    try:
        if run_dir is not None:
            ctx = StageContext.for_run_dir(run_dir, when)
            if writes_outputs(stage.load_run(), cfg):  # a helper process writes nothing in the run dir
                save_resolved(cfg, run_dir / "config.resolved.yaml")
        else:
            ctx = StageContext.create(args.run_area or cfg.orchestration.run_root, args.run_id, when)
        report = execute(stage, cfg, inputs, out, ctx, force=args.force)
    except KNOWN_ERRORS as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0


def start_time() -> dt.datetime:
    """A local run's logical time: ``SOURCE_DATE_EPOCH`` when set (reproducible manifests), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
