"""MLflow tracking of a finished pipeline run, and registration of its model.

:func:`track_pipeline_run` is called once a run directory holds the stage outputs (by the local
runner, the Airflow DAG's ``track`` task, or by hand). It logs, in one MLflow run:

* params: the resolved config, flattened (``train.batch_size`` ...);
* tags: each stage's fingerprint and content digests of the data (``data.*``), the run dir;
* metrics: per-epoch training history (``step`` = epoch), evaluation metrics, stage seconds;
* artifacts: the resolved config, stage reports, evaluation ``report.md``/``metrics.json``/PNGs;
* the model (``weights.npz``, ``model_config.json``, ``model.keras``) under ``model/``, registered
  as a new version of ``tracking.registered_model`` with alias ``challenger``; then the promotion
  gate (:mod:`components.lifecycle`) decides whether it becomes ``champion``.

Where: ``MLFLOW_TRACKING_URI`` if set, else ``tracking.tracking_uri``, else a SQLite store
``<run area>/mlflow.db`` with artifacts in ``<run area>/mlartifacts`` (the run area is the parent of
the run directory, so successive runs share one registry).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from pinsage_model.config import PipelineConfig, flatten

log = logging.getLogger("pinsage")

GATE_METRICS = ("hit_rate_at_10", "mrr")
MODEL_FILES = ("weights.npz", "model_config.json", "model.keras")
_MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value
_INVALID_METRIC_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")


def tracking_uri(cfg: PipelineConfig, run_area: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` > ``tracking.tracking_uri`` > ``sqlite:///<run area>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env:
        return env
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    area = Path(run_area).resolve()
    area.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{area / 'mlflow.db'}"


def client_for(cfg: PipelineConfig, run_area: str | Path):
    """An ``MlflowClient`` on the resolved tracking URI (also set as the fluent API's URI)."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(cfg, run_area)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; left there, this run's store would pose as
    # the user's override and capture every later run of the process (another run area, another
    # registry). Only the fluent API's module state should change.
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
    return MlflowClient(tracking_uri=uri)


def experiment_id(client, cfg: PipelineConfig, run_area: str | Path) -> str:
    """The experiment's id, created on first use; local stores get an explicit artifact location."""
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:") or client.tracking_uri.startswith("file:"):
        # Without this MLflow writes artifacts to ./mlruns of whatever the current folder is.
        location = (Path(run_area).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(cfg.tracking.experiment, artifact_location=location)


def metric_name(key: str) -> str:
    """An MLflow-safe metric name: ``hit_rate@10`` -> ``hit_rate_at_10``."""
    return _INVALID_METRIC_CHARS.sub("_", key.replace("@", "_at_"))


def numeric_leaves(obj: Any, prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts to ``a.b.c`` keys, keeping int/float leaves (bools dropped)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(numeric_leaves(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def gate_metrics(metrics: dict) -> dict[str, float]:
    """PinSage's test-split hit-rate@10 and MRR from an evaluation ``metrics.json``.

    Accepts ``hit@10`` / ``hit_rate@10`` / ``hr@10`` and ``mrr`` keys at any depth, e.g.
    ``{"methods": {"pinsage": {"test": {"hit@10": .., "mrr": ..}, "validation": {..}}, "pixie": ..}}``.
    Among several entries, those under a ``pinsage`` key win, then those under a ``test`` key
    (the gate compares test-split metrics), then the shallowest.

    Raises:
      KeyError: a metric is missing, or ambiguous between equally ranked entries.
    """
    flat = {metric_name(k).lower(): v for k, v in numeric_leaves(metrics).items()}
    aliases = {
        "hit_rate_at_10": ("hit_at_10", "hit_rate_at_10", "hitrate_at_10", "hr_at_10"),
        "mrr": ("mrr",),
    }
    out: dict[str, float] = {}
    for name, names in aliases.items():
        pool = {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] in names}
        if not pool:
            raise KeyError(f"evaluation metrics have no '{name}' (keys: {', '.join(sorted(flat)) or 'none'})")
        for prefer in ("pinsage", "test"):
            preferred = {k: v for k, v in pool.items() if prefer in k.split(".")[:-1]}
            pool = preferred or pool
        depth = min(k.count(".") for k in pool)
        best = {k: v for k, v in pool.items() if k.count(".") == depth}
        if len(best) > 1:
            raise KeyError(f"ambiguous '{name}' in evaluation metrics: {sorted(best)}")
        out[name] = next(iter(best.values()))
    return out


def epoch_history(history: Any) -> dict[str, list[float]]:
    """Per-epoch series from ``history.json``: Keras ``{name: [..]}`` or a list of epoch dicts."""
    if isinstance(history, dict) and isinstance(history.get("epochs"), list):
        history = history["epochs"]
    if isinstance(history, list):
        series: dict[str, list[float]] = {}
        for epoch in history:
            for k, v in numeric_leaves(epoch).items():
                if k != "epoch":
                    series.setdefault(k, []).append(v)
        return series
    if isinstance(history, dict):
        return {
            k: [float(x) for x in v]
            for k, v in history.items()
            if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        }
    return {}


def _digest_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def data_fingerprints(run_dir: str | Path) -> dict[str, str]:
    """Tags identifying the data: stage fingerprints and content digests of the data files.

    ``report.json`` (which holds timings) is left out, so the same data gives the same tags.
    """
    run_dir = Path(run_dir)
    tags: dict[str, str] = {}
    for stage_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        fp = stage_dir / "_fingerprint.json"
        if fp.exists():
            tags[f"fingerprint.{stage_dir.name}"] = json.loads(fp.read_text())["fingerprint"]
    for stage in ("raw", "pairs"):
        files = sorted((run_dir / stage).glob("*.parquet"))
        if files:
            tags[f"data.{stage}"] = _digest_files(files)
    split = test_split_fingerprint(run_dir)
    if split:
        tags["data.test_split"] = split
    return tags


def test_split_fingerprint(run_dir: str | Path) -> str:
    """Digest of the sorted (query, positive) test pairs; '' when the pairs stage has not run.

    Two models are comparable only when their metrics come from the same test split.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(run_dir) / "pairs" / "pairs.parquet"
    if not path.exists():
        return ""
    table = pq.read_table(path, columns=["q_item", "pos_item", "split"])
    test = table.filter(pc.equal(table["split"], "test")).select(["q_item", "pos_item"])
    test = test.sort_by([("q_item", "ascending"), ("pos_item", "ascending")])
    h = hashlib.sha256()
    for q, p in zip(test["q_item"].to_pylist(), test["pos_item"].to_pylist()):
        h.update(f"{q}\t{p}\n".encode())
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _log_params(mlflow, cfg: PipelineConfig) -> None:
    params = {k: str(v)[:_MAX_PARAM_CHARS] for k, v in flatten(cfg).items()}
    items = sorted(params.items())
    for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        mlflow.log_params(dict(items[i : i + 100]))


def _stage_reports(run_dir: Path, reports: dict[str, dict] | None) -> dict[str, dict]:
    if reports:
        return reports
    out = {}
    for rep in sorted(run_dir.glob("*/report.json")):
        out[rep.parent.name] = json.loads(rep.read_text())
    return out


def model_fingerprint(model_dir: Path) -> str:
    """Digest of the weights and model config: the identity of a registered version."""
    return _digest_files([model_dir / f for f in ("weights.npz", "model_config.json") if (model_dir / f).exists()])


def register_model(client, cfg: PipelineConfig, run_id: str, model_dir: Path, tags: dict[str, str]):
    """Register the logged ``model/`` artifacts as a version (reusing one with the same weights).

    Returns:
      The ``ModelVersion``; alias ``challenger`` points at it.
    """
    from mlflow.exceptions import MlflowException

    from components.lifecycle import CHALLENGER

    name = cfg.tracking.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="PinSage item embedding model (weights.npz contract)")
    fp = tags["model_fingerprint"]
    existing = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("model_fingerprint") == fp]
    if existing:
        mv = min(existing, key=lambda v: int(v.version))
        log.info("model %s already registered as version %s; not registering again", fp[:12], mv.version)
    else:
        source = f"{client.get_run(run_id).info.artifact_uri}/model"
        mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return mv


def track_pipeline_run(
    cfg: PipelineConfig,
    run_dir: str | Path,
    reports: dict[str, dict] | None = None,
    promote: bool = True,
    run_area: str | Path | None = None,
    extra_tags: dict[str, str] | None = None,
) -> dict:
    """Log a finished run directory to MLflow; register and gate its model when there is one.

    Args:
      cfg: the resolved config the run used.
      run_dir: the run directory (stage folders as in ``pinsage_model.contracts``).
      reports: stage reports from the runner; read from ``<stage>/report.json`` when omitted.
      promote: apply the promotion gate to the new version.
      run_area: folder of the local SQLite store when no tracking URI is set (default: the
        parent of ``run_dir``).
      extra_tags: more MLflow run tags (e.g. the orchestrator's run id).

    Returns:
      ``{"run_id", "tracking_uri", "model_version" (or None), "promotion" (gate decision dict or None)}``.
    """
    import mlflow

    from components import lifecycle

    run_dir = Path(run_dir).resolve()
    run_area = Path(run_area) if run_area is not None else run_dir.parent
    client = client_for(cfg, run_area)
    exp_id = experiment_id(client, cfg, run_area)
    reports = _stage_reports(run_dir, reports)
    tags = {"pinsage.run_dir": str(run_dir), "pinsage.config_name": cfg.name, **data_fingerprints(run_dir), **(extra_tags or {})}
    result: dict[str, Any] = {"tracking_uri": client.tracking_uri, "model_version": None, "promotion": None}
    with mlflow.start_run(experiment_id=exp_id, run_name=run_dir.name, tags=tags) as run:
        result["run_id"] = run.info.run_id
        _log_params(mlflow, cfg)
        for stage, rep in reports.items():
            if isinstance(rep.get("seconds"), (int, float)):
                mlflow.log_metric(f"stage_seconds.{stage}", float(rep["seconds"]))
        mlflow.log_dict(reports, "reports.json")
        resolved = run_dir / "config.resolved.yaml"
        if resolved.exists():
            mlflow.log_artifact(str(resolved))

        for key, series in epoch_history(_read_json(run_dir / "model" / "history.json")).items():
            for epoch, value in enumerate(series):
                mlflow.log_metric(f"train.{metric_name(key)}", value, step=epoch)

        eval_dir = run_dir / "evaluation"
        metrics = _read_json(eval_dir / "metrics.json")
        if metrics is not None:
            mlflow.log_metrics({f"eval.{metric_name(k)}": v for k, v in numeric_leaves(metrics).items()})
            for f in sorted(eval_dir.glob("*.png")) + [eval_dir / "report.md", eval_dir / "metrics.json"]:
                if f.exists():
                    mlflow.log_artifact(str(f), artifact_path="evaluation")

        model_dir = run_dir / "model"
        if all((model_dir / f).exists() for f in MODEL_FILES[:2]):
            for f in MODEL_FILES + ("history.json",):
                if (model_dir / f).exists():
                    mlflow.log_artifact(str(model_dir / f), artifact_path="model")
            version_tags = {"model_fingerprint": model_fingerprint(model_dir), "test_split": tags.get("data.test_split", "")}
            if metrics is not None:
                gm = gate_metrics(metrics)
                mlflow.log_metrics({f"gate.{k}": v for k, v in gm.items()})
                version_tags.update({k: repr(v) for k, v in gm.items()})
            mv = register_model(client, cfg, run.info.run_id, model_dir, version_tags)
            result["model_version"] = int(mv.version)
    if promote and result["model_version"] is not None and metrics is not None:
        decision = lifecycle.promote(client, cfg.tracking.registered_model, result["model_version"], cfg.tracking.promotion_tolerance)
        result["promotion"] = decision.as_dict()
    log.info("tracked run %s in %s (model version %s)", result["run_id"], result["tracking_uri"], result["model_version"])
    return result


def track_stage_dirs(
    cfg: PipelineConfig, stage_dirs: dict[str, Path], out_dir: str | Path, run_area: str | Path, tags: dict[str, str] | None = None
) -> dict:
    """Track stage outputs that live in separate folders (Kubeflow artifacts).

    The folders are linked into a temporary run directory (links, not copies: the data is not
    duplicated), tracked, and the result is written to ``<out_dir>/tracking.json``.
    """
    from pinsage_model.io import atomic_write_json

    with tempfile.TemporaryDirectory(prefix="pinsage-track-") as tmp:
        for name, path in stage_dirs.items():
            (Path(tmp) / name).symlink_to(Path(path).resolve(), target_is_directory=True)
        result = track_pipeline_run(cfg, tmp, run_area=run_area, extra_tags={"pinsage.output": str(out_dir), **(tags or {})})
    atomic_write_json(Path(out_dir) / "tracking.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m components.tracking``: track a run directory or separate stage folders."""
    from components.base import cli_config
    from components.registry import STAGE_NAMES

    parser = argparse.ArgumentParser(prog="python -m components.tracking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline YAML config the run used")
    parser.add_argument("--run-dir", help="run directory holding one folder per stage")
    for name in STAGE_NAMES:
        parser.add_argument(f"--{name}", dest=f"in_{name}", metavar="DIR", help=f"output folder of stage '{name}'")
    parser.add_argument("--output", metavar="DIR", help="folder for tracking.json (with per-stage folders)")
    parser.add_argument("--run-area", help="folder of the local SQLite store when no tracking URI is set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    dirs = {n: Path(getattr(args, f"in_{n}")) for n in STAGE_NAMES if getattr(args, f"in_{n}")}
    if args.run_dir and not dirs:
        result = track_pipeline_run(cfg, args.run_dir, run_area=args.run_area)
    elif dirs and args.output and not args.run_dir:
        out = Path(args.output)
        result = track_stage_dirs(cfg, dirs, out, args.run_area or out.parent)
    else:
        parser.error("give --run-dir, or --output and stage folders (--raw DIR --pairs DIR ...)")
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
