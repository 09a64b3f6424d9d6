"""Stage "index": faiss index over the item embeddings, recall-checked and published (paper 3.5).

Reads ``embeddings/items.npy`` and ``embeddings/model.json``, ``graph/item_ids.parquet``,
``evaluation/metrics.json`` and ``registration/decision.json``. Builds the index (exact inner
product below ``index.exact_threshold`` items, else ``index.ann`` HNSW or IVF), checks its
recall@10 against exact search (``index.recall_floor``; below it the stage fails and nothing is
published), then:

1. publishes the version into the persistent publish root (``index.publish_root``, default
   ``<run area>/published/<run id>``) and, when the registration stage left this run's model as
   the champion (or registered nothing), switches that root's ``CURRENT`` atomically: this is
   what live readers (``IndexReader``) follow across runs;
2. copies that version into this stage's output (``index/versions/<version>/`` + ``CURRENT``),
   so the run directory holds the index it published (``pinsage recommend --run-dir``).

The stage output is replaced atomically by the runner, which is why the version history lives
outside it. The manifest's ``created_at`` is the run's logical time (``ctx.logical_time``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.orchestration.execution import StageError, stage_main

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")

# The manifest keeps the scalar evaluation metrics, at most this many.
MAX_MANIFEST_METRICS = 200


def publish_root(cfg: "PipelineConfig", ctx: "StageContext") -> Path:
    """``index.publish_root``, or ``published/<run id>`` in the run area."""
    if cfg.index.publish_root:
        return Path(cfg.index.publish_root)
    return ctx.run_area / "published" / ctx.run_id


def scalar_metrics(metrics: dict) -> dict:
    """Numeric leaves of a nested metrics dict as ``{"a.b": x}``, sorted, at most
    :data:`MAX_MANIFEST_METRICS` (histograms and lists dropped)."""
    from components.registry.mlflow_store import numeric_leaves

    return dict(sorted(numeric_leaves(metrics).items())[:MAX_MANIFEST_METRICS])


def publish_embeddings(
    cfg: "PipelineConfig", inputs: dict[str, Path], root: Path, ctx: "StageContext", make_current: bool
) -> tuple[Path, dict, int]:
    """Build, check and publish the index of ``inputs["embeddings"]`` (ids from ``inputs["graph"]``,
    metrics from ``inputs["evaluation"]`` when given) under ``root``.

    Returns the version directory, the embeddings' ``model.json`` and how many all-zero rows were
    left out. The version name is a digest of the content, so the registration stage (which bundles
    the index into the registered model) and this stage publish the same version.
    """
    from pinsage_model.data.contracts import ITEM_IDS, ContractError, read_query_shift, read_table
    from pinsage_model.model.user_head import load_head
    from pinsage_model.serving.index import IndexRecallError, publish

    emb_dir = inputs["embeddings"]
    try:
        emb = np.load(emb_dir / "items.npy", mmap_mode="r")
        ids = read_table(inputs["graph"] / "item_ids.parquet", ITEM_IDS)
        model = json.loads((emb_dir / "model.json").read_text())
    except (ContractError, FileNotFoundError) as exc:
        raise StageError(f"index: {exc}") from exc
    metrics_path = inputs["evaluation"] / "metrics.json" if "evaluation" in inputs else None
    metrics = scalar_metrics(json.loads(metrics_path.read_text())) if metrics_path and metrics_path.exists() else {}
    order = np.argsort(ids.column("item_idx").to_numpy())
    item_ids = np.asarray(ids.column("item_id").to_pylist(), dtype=object)[order]
    if len(item_ids) != emb.shape[0]:
        raise StageError(f"index: {emb.shape[0]} embeddings but {len(item_ids)} item ids; rerun the embeddings stage")
    # rows whose embedding is all zero (a dead ReLU head) cannot be ranked: keep them out of the index
    keep = np.linalg.norm(emb, axis=1) > 0.5
    try:
        vdir = publish(
            np.asarray(emb[keep]),
            item_ids[keep].tolist(),
            root,
            model["model_version"],
            metrics,
            created_at=ctx.timestamp(),
            cfg=cfg.index,
            item_idx=np.flatnonzero(keep).astype(np.int32),
            seed=cfg.seed_for("index"),
            make_current=make_current,
            weights_digest=model.get("weights_digest", ""),
            query_shift=read_query_shift(emb_dir, emb.shape[1]),
            user_head=load_head(emb_dir),
        )
    except (IndexRecallError, ContractError) as exc:
        raise StageError(f"index: {exc}") from exc
    return vdir, model, int((~keep).sum())


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    from pinsage_model.serving.index import mirror_version, prune_versions, set_current

    decision_path = inputs["registration"] / "decision.json"
    if not decision_path.exists():
        raise StageError(f"index: {decision_path} not found; rerun the registration stage")
    decision = json.loads(decision_path.read_text())
    root = publish_root(cfg, ctx)
    now = ctx.timestamp()
    vdir, model, excluded = publish_embeddings(cfg, inputs, root, ctx, make_current=False)
    # Serve this model only if the registry made it champion (or nothing was registered).
    serve = not decision["tracking"] or decision["champion_weights_digest"] == model.get("weights_digest", "")
    if serve:
        set_current(root, vdir.name)
    mirror_version(vdir, out_dir)
    pruned = (
        prune_versions(root, cfg.index.keep_versions, now=now, grace_s=cfg.index.prune_grace_s)
        if cfg.index.keep_versions
        else []
    )
    if pruned:
        log.info("index: pruned %d old version(s) from %s: %s", len(pruned), root, ", ".join(pruned))
    manifest = json.loads((vdir / "manifest.json").read_text())
    if not serve:
        log.warning(
            "index: this run's model is not the registry's champion (version %s); published %s "
            "without switching %s/CURRENT",
            decision["champion_after"],
            vdir.name,
            root,
        )
    return {
        "version": vdir.name,
        "serving": serve,
        "champion_version": decision["champion_after"],
        "publish_root": str(root),
        "model_version": model["model_version"],
        "index": manifest["index"],
        "recall_at_10": manifest["recall_at_10"],
        "num_items": manifest["num_items"],
        "excluded_zero_embeddings": excluded,
        "pruned_versions": pruned,
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
