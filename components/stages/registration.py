"""Stage "registration": log the run to MLflow, register its model and apply the promotion gate.

Reads ``model/`` (``weights.npz``, ``model_config.json``, ``model.keras``, ``history.json``,
``report.json``) and ``evaluation/`` (``metrics.json``, ``report.md``, PNGs, ``report.json``). With
``tracking.enabled`` it logs one MLflow run (the resolved config as params, the training curve
per epoch, the evaluation metrics, the evaluation files and the model), registers the model as a
version of ``tracking.registered_model`` (alias ``challenger``; a model with the same weights
is not registered twice) and moves ``champion`` to it only when it passes :func:`gate`.

The gate compares PinSage's **validation**-split hit-rate@10 and MRR with the champion's, on the
same validation pairs (``validation_split`` version tag): each must be at least the champion's
minus ``tracking.promotion_tolerance``. Test-split metrics are logged and reported, never used to
choose, so the champion's test metrics are not selection-biased.

Writes ``decision.json``: the model version, the champion before and after (and the weights
digest the champion after serves), whether it was promoted and why, and the gate's metrics. The
index stage reads it to decide whether its index serves. Without tracking nothing is registered
and every model serves.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from components.orchestration.execution import StageError, stage_main
from components.registry import mlflow_store
from components.stages import StageContext
from pinsage_model import metric_keys
from pinsage_model.config import PipelineConfig
from pinsage_model.data.contracts import model_digest
from pinsage_model.io import atomic_write_json

log = logging.getLogger("pinsage")

GATE_METRICS = (metric_keys.hit_rate(10), metric_keys.MRR)
GATE_SPLIT = "validation"
SPLIT_TAG = "validation_split"
METHOD = metric_keys.PINSAGE
MODEL_FILES = ("weights.npz", "model_config.json", "model.keras", "history.json")
_EPS = 1e-12


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate for one candidate version."""

    promote: bool
    reason: str
    candidate: int
    champion: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def gate(candidate: dict[str, str], champion: dict[str, str] | None, tolerance: float) -> tuple[bool, str]:
    """Compare two versions' tags (``hit_rate_at_10``, ``mrr`` on the validation split, ``validation_split``).

    Args:
      candidate: the candidate version's tags.
      champion: the current champion's tags, or None when there is no champion.
      tolerance: how far below the champion a metric may be and still pass.

    Returns:
      ``(passes, reason)``.
    """
    try:
        cand = {m: float(candidate[m]) for m in GATE_METRICS}
    except (KeyError, ValueError):
        return False, f"candidate has no validation metrics {GATE_METRICS} (tags: {sorted(candidate)})"
    if any(math.isnan(v) for v in cand.values()):
        return False, f"candidate metrics are NaN: {cand}"
    if champion is None:
        return True, "no champion yet"
    if candidate.get(SPLIT_TAG, "") != champion.get(SPLIT_TAG, "") or not candidate.get(SPLIT_TAG):
        return False, "candidate and champion were evaluated on different validation splits; re-evaluate first"
    champ = {m: float(champion[m]) for m in GATE_METRICS}
    # _EPS: a metric exactly at the boundary passes despite float rounding of champ - tolerance.
    worse = [
        f"{m} {cand[m]:.4f} < {champ[m]:.4f} - {tolerance:g}"
        for m in GATE_METRICS
        if cand[m] < champ[m] - tolerance - _EPS
    ]
    if worse:
        return False, "worse than champion: " + "; ".join(worse)
    return True, "; ".join(f"{m} {cand[m]:.4f} >= {champ[m]:.4f} - {tolerance:g}" for m in GATE_METRICS)


def promote(client, name: str, version: int | None = None, tolerance: float = 0.0, force: bool = False) -> GateDecision:
    """Move ``champion`` to ``version`` (default: the ``challenger``) if it passes the gate.

    Args:
      client: an ``MlflowClient``.
      name: registered model name.
      version: candidate version; the ``challenger`` alias when None.
      tolerance: allowed drop of each gate metric below the champion's.
      force: promote even if the gate fails (the decision still records why it failed).
    """
    if version is None:
        version = mlflow_store.alias_version(client, name, mlflow_store.CHALLENGER)
        if version is None:
            raise mlflow_store.RegistryError(
                f"registered model '{name}' has no '{mlflow_store.CHALLENGER}' version; run the pipeline first"
            )
    current = mlflow_store.alias_version(client, name, mlflow_store.CHAMPION)
    if current == int(version):
        return GateDecision(False, f"version {version} is already {mlflow_store.CHAMPION}", int(version), current)
    champ_tags = mlflow_store.version_tags(client, name, current) if current is not None else None
    passes, reason = gate(mlflow_store.version_tags(client, name, int(version)), champ_tags, tolerance)
    if passes or force:
        mlflow_store.set_champion(client, name, int(version))
        reason = reason if passes else f"forced ({reason})"
        log.info("%s: version %s is now %s (%s)", name, version, mlflow_store.CHAMPION, reason)
    else:
        log.info(
            "%s: version %s stays out; %s remains version %s (%s)",
            name,
            version,
            mlflow_store.CHAMPION,
            current,
            reason,
        )
    return GateDecision(passes or force, reason, int(version), current)


def split_metrics(metrics: dict, split: str) -> dict[str, float]:
    """PinSage's gate metrics on one split of an evaluation ``metrics.json`` ({} when absent)."""
    values = metrics.get("methods", {}).get(METHOD, {}).get(split) or {}
    return {m: float(values[m]) for m in GATE_METRICS if values.get(m) is not None}


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def run(cfg: PipelineConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    """Log, register and gate the run's model; write ``decision.json``."""
    model_dir, eval_dir = inputs["model"], inputs["evaluation"]
    metrics = _read_json(eval_dir / "metrics.json")
    if metrics is None or not (model_dir / "weights.npz").exists():
        raise StageError(
            f"registration needs {eval_dir / 'metrics.json'} and {model_dir / 'weights.npz'}; rerun those stages"
        )
    digest = model_digest(model_dir)
    splits = metrics.get("config", {}).get("split_digests", {})
    candidate = split_metrics(metrics, GATE_SPLIT)
    decision = {
        "tracking": cfg.tracking.enabled,
        "registered_model": cfg.tracking.registered_model,
        "weights_digest": digest,
        "gate_split": GATE_SPLIT,
        "gate_metrics": candidate,
        "test_metrics": split_metrics(metrics, "test"),
        "model_version": None,
        "champion_before": None,
        "champion_after": None,
        "champion_weights_digest": None,
        "promoted": False,
        "reason": "tracking.enabled is false: nothing registered, the model serves",
    }
    if cfg.tracking.enabled:
        decision.update(_register(cfg, inputs, metrics, ctx, digest, candidate, splits))
    atomic_write_json(out_dir / "decision.json", decision)
    log.info("registration: %s", decision["reason"])
    return {k: decision[k] for k in ("model_version", "champion_before", "champion_after", "promoted", "reason")}


def _servable_bundle(
    cfg: PipelineConfig, inputs: dict[str, Path], ctx: StageContext
) -> tuple[dict[str, Path], list[str]]:
    """The files of the registered pyfunc model, built in the stage's scratch folder, and the item
    ids of its input example (the first few of the index).

    The index is published exactly as the index stage publishes it (same content, same version
    name), so the registered model answers what the published index of its weights answers.
    """
    import pyarrow.parquet as pq

    from components.stages.index import publish_embeddings

    root = ctx.scratch_dir / "servable"
    vdir, _, _ = publish_embeddings(cfg, inputs, root, ctx, make_current=False)
    bundle = {"index": vdir}
    shift = inputs["embeddings"] / "query_shift.npy"
    if shift.exists():
        bundle["query_shift"] = shift
    for f in MODEL_FILES[:2]:  # the weights and their config; model.keras stays a run artifact
        if (inputs["model"] / f).exists():
            bundle[f.split(".")[0]] = inputs["model"] / f
    ids = pq.read_table(vdir / "ids.parquet", columns=["item_id"]).column("item_id").to_pylist()
    return bundle, ids[:4]


def _register(
    cfg: PipelineConfig,
    inputs: dict[str, Path],
    metrics: dict,
    ctx: StageContext,
    digest: str,
    candidate: dict[str, float],
    splits: dict[str, str],
) -> dict:
    """The MLflow part of :func:`run`: one run logged, one servable version registered and gated."""
    import mlflow

    model_dir, eval_dir = inputs["model"], inputs["evaluation"]
    client = mlflow_store.client_for(cfg, ctx.run_area)
    exp_id = mlflow_store.experiment_id(client, cfg, ctx.run_area)
    name = cfg.tracking.registered_model
    tags = {
        "pinsage.run_id": ctx.run_id,
        "pinsage.logical_time": ctx.timestamp(),
        "pinsage.config_name": cfg.name,
        **{f"data.{split}_split": d for split, d in sorted(splits.items())},
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=ctx.run_id, tags=tags) as active:
        run_id = active.info.run_id
        mlflow_store.log_params(cfg)
        reports = {s: _read_json(d / "report.json") for s, d in (("model", model_dir), ("evaluation", eval_dir))}
        for stage, rep in reports.items():
            if rep and isinstance(rep.get("seconds"), (int, float)):
                mlflow.log_metric(f"stage_seconds.{stage}", float(rep["seconds"]))
        mlflow.log_dict({s: r for s, r in reports.items() if r}, "reports.json")
        mlflow_store.log_history(_read_json(model_dir / "history.json") or [], "train.")
        mlflow.log_metrics({f"eval.{k}": v for k, v in mlflow_store.numeric_leaves(metrics).items()})
        mlflow.log_metrics({f"gate.{k}": v for k, v in candidate.items()})
        for f in sorted(eval_dir.glob("*.png")) + [eval_dir / "report.md", eval_dir / "metrics.json"]:
            if f.exists():
                mlflow.log_artifact(str(f), artifact_path="evaluation")
        for f in MODEL_FILES:
            if (model_dir / f).exists():
                mlflow.log_artifact(str(model_dir / f), artifact_path="model")
        bundle, example = _servable_bundle(cfg, inputs, ctx)
        model_info = mlflow_store.log_servable(bundle, example[0], example[1:])
        version_tags = {
            "model_fingerprint": digest,
            SPLIT_TAG: splits.get(GATE_SPLIT, ""),
            "index_version": bundle["index"].name,
        }
        version_tags.update({k: repr(v) for k, v in candidate.items()})
        version = mlflow_store.register_model(client, name, run_id, version_tags, model_info.model_id)
    decided = promote(client, name, version, cfg.tracking.promotion_tolerance)
    after = mlflow_store.alias_version(client, name, mlflow_store.CHAMPION)
    log.info("tracked run %s in %s (model version %s)", run_id, client.tracking_uri, version)
    return {
        "mlflow_run_id": run_id,
        # a URI may carry user:password@; what lands in the run folder never does
        "tracking_uri": mlflow_store.redacted(client.tracking_uri),
        "model_version": version,
        "model_uri": f"models:/{name}/{version}",
        "champion_before": decided.champion,
        "champion_after": after,
        "champion_weights_digest": mlflow_store.version_tags(client, name, after).get("model_fingerprint")
        if after
        else None,
        "promoted": decided.promote,
        "reason": decided.reason,
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
