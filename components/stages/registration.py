"""Stage "registration": build the index version, log the run to MLflow, register its model and
apply the promotion gate.

Reads ``model/`` (``weights.npz``, ``model_config.json``, ``model.keras``, ``history.json``,
``report.json``), ``evaluation/`` (``metrics.json``, ``report.md``, PNGs, ``report.json``),
``embeddings/``, ``graph/item_ids.parquet`` and ``raw/`` (item titles and user histories for the
report's samples). It first builds the run's index version
(:func:`pinsage_model.serving.index.publish_embeddings`: exact inner product below
``index.exact_threshold`` items, else the ``index.ann`` index, whose recall@10 against exact search
must reach ``index.recall_floor`` or the stage fails) into ``index/versions/<version>/`` of its
output; the registered model serves that version and the index stage publishes it. With
``tracking.enabled`` it then logs one MLflow run (the resolved config as params, the training curve
per epoch, the evaluation metrics, the evaluation files and the model), registers the model as a
version of ``tracking.registered_model`` (alias ``challenger``; a model with the same weights
is not registered twice) and moves ``champion`` to it only when it passes the promotion gate
(:mod:`pinsage_model.evaluation.gate`).

The gate compares PinSage's **validation**-split hit-rate@10 and MRR with the champion's, on the
same validation pairs (``validation_split`` version tag): each must be at least the champion's
minus ``tracking.promotion_tolerance``. Test-split metrics are logged and reported, never used to
choose, so the champion's test metrics are not selection-biased.

Before the gate, with a champion to compare, it answers one fixed, seeded sample of queries
(items, and users' recent items) with both index versions and reports how the top 10 would change
(:mod:`pinsage_model.evaluation.changes`: mean overlap@10, share of queries changed entirely, new
items entering some top 10), logged to MLflow (``changes.*`` metrics, ``changes.json``). It writes
``report.md`` and the self-contained ``report.html`` (the evaluation's tables and plots inlined,
those changes, sample related items and homefeeds of this model with titles), logged beside the
model (artifact folder ``report``).

Writes ``decision.json``: the model version, the champion before and after (and the weights
digest the champion after serves), whether it was promoted and why, the gate's metrics, and the
index version built (``index_version``, ``excluded_zero_embeddings``). The index stage reads it
to publish that version. Without tracking nothing is registered and every model serves.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from components.orchestration.execution import StageError, stage_main
from components.registry import mlflow_store
from components.stages import StageContext
from pinsage_model.config import PipelineConfig
from pinsage_model.data.contracts import model_digest
from pinsage_model.evaluation.gate import GATE_SPLIT, SPLIT_TAG, split_metrics
from pinsage_model.io import atomic_write_json

log = logging.getLogger("pinsage")

MODEL_FILES = ("weights.npz", "model_config.json", "model.keras", "history.json")
# The index manifest keeps the scalar evaluation metrics, at most this many.
MAX_MANIFEST_METRICS = 200


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def run(cfg: PipelineConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    """Build the index version, then log, register and gate the run's model; write ``decision.json``."""
    model_dir, eval_dir = inputs["model"], inputs["evaluation"]
    metrics = _read_json(eval_dir / "metrics.json")
    if metrics is None or not (model_dir / "weights.npz").exists():
        raise StageError(
            f"registration needs {eval_dir / 'metrics.json'} and {model_dir / 'weights.npz'}; rerun those stages"
        )
    version_dir, excluded = build_index_version(cfg, inputs, metrics, out_dir / "index", ctx)
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
        "index_version": version_dir.name,
        "excluded_zero_embeddings": excluded,
    }
    if cfg.tracking.enabled:
        decision.update(_register(cfg, inputs, metrics, ctx, digest, candidate, splits, version_dir, out_dir))
    else:
        write_report(cfg, inputs, version_dir, None, out_dir)
    atomic_write_json(out_dir / "decision.json", decision)
    log.info("registration: %s", decision["reason"])
    return {k: decision[k] for k in ("model_version", "champion_before", "champion_after", "promoted", "reason")}


def recover(cfg: PipelineConfig, ctx: StageContext) -> None:
    """Mark FAILED the registration runs a killed attempt left RUNNING, whether this attempt runs
    the stage or finds it current (a killed ``--force`` attempt leaves the earlier outputs)."""
    if not cfg.tracking.enabled:
        return
    client = mlflow_store.client_for(cfg, ctx.run_area)
    name = cfg.tracking.registered_model
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return
    with mlflow_store.registry_lock(client, name, ctx.run_area, cfg.orchestration.lock_timeout_s):
        mlflow_store.fail_orphan_runs(client, exp.experiment_id, name)


def build_index_version(
    cfg: PipelineConfig, inputs: dict[str, Path], metrics: dict, root: Path, ctx: StageContext
) -> tuple[Path, int]:
    """The run's index version, built and recall-checked under ``root`` (``CURRENT`` not set), and
    how many all-zero embeddings were left out of it."""
    from pinsage_model.data.contracts import ContractError
    from pinsage_model.serving.index import IndexRecallError, publish_embeddings

    try:
        return publish_embeddings(
            inputs["embeddings"],
            inputs["graph"] / "item_ids.parquet",
            root,
            dict(sorted(mlflow_store.numeric_leaves(metrics).items())[:MAX_MANIFEST_METRICS]),
            created_at=ctx.timestamp(),
            cfg=cfg.index,
            seed=cfg.seed_for("index"),
            make_current=False,
            prior_dir=inputs["evaluation"],
        )
    except (IndexRecallError, ContractError, FileNotFoundError, ValueError) as exc:
        raise StageError(f"index: {exc}") from exc


def _servable_bundle(version_dir: Path, model_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """The files of the registered pyfunc model (the index version and the weights with their
    config) and the item ids of its input example (the first few of the index)."""
    import pyarrow.parquet as pq

    bundle = {"index": version_dir}
    for f in MODEL_FILES[:2]:  # the weights and their config; model.keras stays a run artifact
        if (model_dir / f).exists():
            bundle[f.split(".")[0]] = model_dir / f
    ids = pq.read_table(version_dir / "ids.parquet", columns=["item_id"]).column("item_id").to_pylist()
    return bundle, ids[:4]


def _log_run(cfg: PipelineConfig, inputs: dict[str, Path], metrics: dict, candidate: dict[str, float]) -> None:
    """Into the active MLflow run: the config, stage times, training curve, metrics and files."""
    import mlflow

    model_dir, eval_dir = inputs["model"], inputs["evaluation"]
    mlflow_store.log_params(cfg)
    reports = {s: _read_json(d / "report.json") for s, d in (("model", model_dir), ("evaluation", eval_dir))}
    for stage, rep in reports.items():
        if rep and isinstance(rep.get("seconds"), (int, float)):
            mlflow.log_metric(f"stage_seconds.{stage}", float(rep["seconds"]))
    mlflow.log_dict({s: r for s, r in reports.items() if r}, "reports.json")
    mlflow_store.log_history(_read_json(model_dir / "history.json") or [], "train.")
    mlflow.log_metrics({f"eval.{k}": v for k, v in mlflow_store.numeric_leaves(metrics).items()})
    mlflow.log_metrics({f"gate.{k}": v for k, v in candidate.items()})
    for path in sorted(eval_dir.glob("*.png")) + [eval_dir / "report.md", eval_dir / "metrics.json"]:
        if path.exists():
            mlflow.log_artifact(str(path), artifact_path="evaluation")
    for name in MODEL_FILES:
        if (model_dir / name).exists():
            mlflow.log_artifact(str(model_dir / name), artifact_path="model")


def _register(
    cfg: PipelineConfig,
    inputs: dict[str, Path],
    metrics: dict,
    ctx: StageContext,
    digest: str,
    candidate: dict[str, float],
    splits: dict[str, str],
    version_dir: Path,
    out_dir: Path,
) -> dict:
    """The MLflow part of :func:`run`, under the registered model's and the publish root's locks:
    the index version installed in the publish root, one run logged, one servable version
    registered (or found by its fingerprint), gated once, and champion and ``CURRENT`` switched
    together when it passes (:func:`components.registry.mlflow_store.promote`)."""
    from pinsage_model.serving.index import default_publish_root, install_version

    client = mlflow_store.client_for(cfg, ctx.run_area)
    name = cfg.tracking.registered_model
    root = default_publish_root(cfg.index, ctx.run_area, ctx.run_id)
    timeout = cfg.orchestration.lock_timeout_s
    with mlflow_store.champion_transaction(client, name, ctx.run_area, root, timeout):
        exp_id = mlflow_store.experiment_id(client, cfg, ctx.run_area)
        mlflow_store.fail_orphan_runs(client, exp_id, name)
        install_version(version_dir, root)  # in the root before any alias can name it
        changes = promotion_changes(cfg, client, root, version_dir, inputs["raw"], digest)
        reports = write_report(cfg, inputs, version_dir, changes, out_dir)
        run_id, version = _log_and_register(
            cfg, inputs, metrics, ctx, client, exp_id, digest, candidate, splits, version_dir, changes, reports
        )
        decided = mlflow_store.promote(client, name, version, cfg.tracking.promotion_tolerance, root=root, record=True)
        after = mlflow_store.alias_version(client, name, mlflow_store.CHAMPION)
        after_digest = mlflow_store.version_tags(client, name, after).get("model_fingerprint") if after else None
    log.info("tracked run %s in %s (model version %s)", run_id, mlflow_store.redacted(client.tracking_uri), version)
    return {
        "mlflow_run_id": run_id,
        # a URI may carry user:password@; what lands in the run folder never does
        "tracking_uri": mlflow_store.redacted(client.tracking_uri),
        "model_version": version,
        "model_uri": f"models:/{name}/{version}",
        "champion_before": decided.champion,
        "champion_after": after,
        "champion_weights_digest": after_digest,
        "promoted": decided.promote,
        "reason": decided.reason,
        "changes": changes,
    }


def _log_and_register(
    cfg: PipelineConfig,
    inputs: dict[str, Path],
    metrics: dict,
    ctx: StageContext,
    client,
    exp_id: str,
    digest: str,
    candidate: dict[str, float],
    splits: dict[str, str],
    version_dir: Path,
    changes: dict | None,
    reports: list[Path],
) -> tuple[str, int]:
    """One MLflow run of this attempt (config, curves, metrics, files, the servable model) and the
    registered version of its model (one per model fingerprint); returns ``(run id, version)``."""
    import mlflow

    name = cfg.tracking.registered_model
    tags = {
        "pinsage.run_id": ctx.run_id,
        "pinsage.logical_time": ctx.timestamp(),
        "pinsage.config_name": cfg.name,
        mlflow_store.MODEL_TAG: name,
        **{f"data.{split}_split": d for split, d in sorted(splits.items())},
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=ctx.run_id, tags=tags) as active:
        run_id = active.info.run_id
        _log_run(cfg, inputs, metrics, candidate)
        _log_changes(changes)
        for path in reports:
            mlflow.log_artifact(str(path), artifact_path="report")
        bundle, example = _servable_bundle(version_dir, inputs["model"])
        model_info = mlflow_store.log_servable(bundle, example[0], example[1:], _serving_limits(cfg))
        version_tags = {
            "model_fingerprint": digest,
            SPLIT_TAG: splits.get(GATE_SPLIT, ""),
            mlflow_store.INDEX_TAG: version_dir.name,
        }
        version_tags.update({k: repr(v) for k, v in candidate.items()})
        version = mlflow_store.register_model(client, name, run_id, version_tags, model_info.model_id)
    return run_id, version


# The report's samples of this model's answers, and the fixed sample the promotion changes are
# measured on (each drawn with the index seed, so every run of a config asks the same queries).
SAMPLE_ITEMS, SAMPLE_USERS, CHANGE_QUERIES, RECENT_ITEMS, TOP_K = 5, 3, 200, 10, 10


def promotion_changes(
    cfg: PipelineConfig, client, root: Path, version_dir: Path, raw_dir: Path, digest: str
) -> dict | None:
    """How the champion's top 10 would change on the fixed query sample if this version replaced
    it (:func:`pinsage_model.evaluation.changes.compare_versions`), with the champion's version;
    None without a champion, a ``note`` when its index cannot be read.

    A model registered before (same fingerprint ``digest``) is compared with the champion its
    recorded gate decision faced, not with today's, which may be itself: a rerun or a resumed
    attempt then reports what the first attempt reported (rule 4: a rerun, the same outputs)."""
    from pinsage_model.evaluation.changes import compare_versions, sample_items, sample_users
    from pinsage_model.serving.index import VERSIONS
    from pinsage_model.serving.query import load_version

    name = cfg.tracking.registered_model
    champion = mlflow_store.alias_version(client, name, mlflow_store.CHAMPION)
    known = mlflow_store.version_with_fingerprint(client, name, digest)
    if known is not None:
        recorded = mlflow_store.recorded_decision(client, name, int(known.version))
        if recorded is not None:
            champion = recorded.champion
        elif champion == int(known.version):
            champion = None  # itself: nothing would change
    if champion is None:
        return None
    try:
        before = load_version(root / VERSIONS / mlflow_store.ensure_index(client, name, champion, root))
    except (mlflow_store.RegistryError, OSError, ValueError) as exc:
        return {"champion": champion, "note": f"the champion's index could not be read: {exc}"}
    after = load_version(version_dir)
    seed = cfg.seed_for("index")
    items = sample_items(before.item_ids.tolist(), after.item_ids.tolist(), CHANGE_QUERIES, seed)
    users = [recent for _, recent in sample_users(raw_dir / "interactions.parquet", CHANGE_QUERIES, seed, RECENT_ITEMS)]
    return {"champion": champion, "seed": seed, **compare_versions(before, after, items, users, TOP_K)}


def _log_changes(changes: dict | None) -> None:
    """``changes.<kind>.<number>`` metrics and ``changes.json`` into the active MLflow run."""
    import mlflow

    if not changes:
        return
    mlflow.log_dict(changes, "changes.json")
    mlflow.log_metrics(
        {
            f"changes.{kind}.{key}": float(value)
            for kind, numbers in changes.items()
            if isinstance(numbers, dict)
            for key, value in numbers.items()
            if isinstance(value, (int, float))
        }
    )


def write_report(
    cfg: PipelineConfig, inputs: dict[str, Path], version_dir: Path, changes: dict | None, out_dir: Path
) -> list[Path]:
    """``report.md`` and the self-contained ``report.html`` into ``out_dir``: the evaluation's
    report, the promotion changes and samples of this version's answers with titles."""
    from components.commands.recommend import titles_of
    from pinsage_model.evaluation.changes import sample_items, sample_users
    from pinsage_model.evaluation.report import changes_markdown, markdown_to_html, samples_markdown
    from pinsage_model.io import atomic_write_text
    from pinsage_model.serving.query import load_version

    eval_dir, raw_dir = inputs["evaluation"], inputs["raw"]
    version = load_version(version_dir)
    seed = cfg.seed_for("index")
    ids = version.item_ids.tolist()
    items = sample_items(ids, ids, SAMPLE_ITEMS, seed)
    users = sample_users(raw_dir / "interactions.parquet", SAMPLE_USERS, seed, RECENT_ITEMS)
    evaluation = (eval_dir / "report.md").read_text() if (eval_dir / "report.md").exists() else ""
    md = "\n".join(
        [
            evaluation.rstrip(),
            "",
            *changes_markdown(changes, TOP_K),
            "",
            *samples_markdown(version, items, users, titles_of(raw_dir), TOP_K),
        ]
    )
    images = {p.name: p.read_bytes() for p in sorted(eval_dir.glob("*.png"))}
    atomic_write_text(out_dir / "report.md", md + "\n")
    atomic_write_text(out_dir / "report.html", markdown_to_html(md, images, f"pinsage run report: {cfg.name}"))
    return [out_dir / "report.md", out_dir / "report.html"]


def _serving_limits(cfg: PipelineConfig) -> dict[str, int]:
    """The request limits the registered pyfunc enforces (:mod:`components.registry.servable`)."""
    return {"max_ids_per_row": cfg.index.max_ids_per_row, "max_rows": cfg.index.max_rows_per_request}


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
