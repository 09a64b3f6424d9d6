"""Stage "index": faiss index over the item embeddings, recall-checked and published (paper 3.5).

Reads ``embeddings/items.npy`` and ``embeddings/model.json``, ``graph/item_ids.parquet`` and
``evaluation/metrics.json``. Builds the index (exact inner product below
``index.exact_threshold`` items, else ``index.kind`` HNSW or IVF), checks its recall@10 against
exact search (``index.recall_floor``; below it the stage fails and nothing is published), then:

1. publishes the version into the persistent publish root (``index.publish_root``, default
   ``<run dir>/../published/<run dir name>``) and switches that root's ``CURRENT`` atomically:
   this is what live readers (``IndexReader``) follow across runs;
2. copies that version into this stage's output (``index/versions/<version>/`` + ``CURRENT``),
   so the run directory holds the index it published (``pinsage recommend --run-dir``).

The stage output is replaced atomically by the runner, which is why the version history lives
outside it. Set ``SOURCE_DATE_EPOCH`` for a reproducible ``created_at`` in the manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.base import StageError

if TYPE_CHECKING:
    from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")


def publish_root(cfg: "PipelineConfig", out_dir: Path) -> Path:
    """``index.publish_root``, or ``published/<run dir name>`` beside the run directory."""
    if cfg.index.publish_root:
        return Path(cfg.index.publish_root)
    # out_dir is the runner's temporary sibling of <run dir>/index: its parent is the run dir
    run_dir = out_dir.resolve().parent
    return run_dir.parent / "published" / run_dir.name


def serving_champion(cfg: "PipelineConfig", out_dir: Path) -> dict | None:
    """The registry's champion (``models:/<name>@champion``) when tracking is on, else None."""
    if not cfg.tracking.enabled:
        return None
    from components.lifecycle import champion_version

    # Same run area as the runner's tracking: the folder holding the run directory.
    return champion_version(cfg, run_area=out_dir.resolve().parent.parent)


def follow_champion(cfg: "PipelineConfig", root: Path, run_area: Path) -> str | None:
    """Point ``<root>/CURRENT`` at the index built from the champion's weights (after a
    promotion or a rollback); returns the version, or None when no published index matches."""
    from components.lifecycle import champion_version
    from pinsage_model.index import find_version, set_current

    champion = champion_version(cfg, run_area=run_area)
    version = find_version(root, champion["tags"].get("model_fingerprint", "")) if champion else None
    if version is not None:
        set_current(root, version)
    return version


def created_at() -> str:
    """Creation time for the manifest: ``SOURCE_DATE_EPOCH`` when set, else now (UTC, ISO 8601)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def scalar_metrics(metrics: dict, prefix: str = "", limit: int = 200) -> dict:
    """Numeric leaves of a nested metrics dict as ``{"a.b": x}`` (histograms and lists dropped)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalar_metrics(value, f"{name}.", limit))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
        if len(out) >= limit:
            break
    return dict(sorted(out.items())[:limit])


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path) -> dict:
    from pinsage_model.contracts import ITEM_IDS, ContractError, read_table
    from pinsage_model.index import IndexRecallError, mirror_version, prune_versions, publish

    emb_dir = inputs["embeddings"]
    try:
        emb = np.load(emb_dir / "items.npy", mmap_mode="r")
        ids = read_table(inputs["graph"] / "item_ids.parquet", ITEM_IDS)
        model = json.loads((emb_dir / "model.json").read_text())
    except (ContractError, FileNotFoundError) as exc:
        raise StageError(f"index: {exc}") from exc
    metrics_path = inputs["evaluation"] / "metrics.json"
    metrics = scalar_metrics(json.loads(metrics_path.read_text())) if metrics_path.exists() else {}
    order = np.argsort(ids.column("item_idx").to_numpy())
    item_ids = np.asarray(ids.column("item_id").to_pylist(), dtype=object)[order]
    if len(item_ids) != emb.shape[0]:
        raise StageError(f"index: {emb.shape[0]} embeddings but {len(item_ids)} item ids; rerun the embeddings stage")
    # rows whose embedding is all zero (a dead ReLU head) cannot be ranked: keep them out of the index
    keep = np.linalg.norm(emb, axis=1) > 0.5
    root = publish_root(cfg, out_dir)
    champion = serving_champion(cfg, out_dir)
    digest = model.get("weights_digest", "")
    # Serve this model only if the registry made it champion (or there is no registry).
    serve = champion is None or champion["tags"].get("model_fingerprint") == digest
    now = created_at()
    try:
        vdir = publish(
            np.asarray(emb[keep]),
            item_ids[keep].tolist(),
            root,
            model["model_version"],
            metrics,
            created_at=now,
            cfg=cfg.index,
            item_idx=np.flatnonzero(keep).astype(np.int32),
            seed=cfg.seed,
            make_current=serve,
            weights_digest=digest,
        )
    except IndexRecallError as exc:
        raise StageError(f"index: {exc}") from exc
    mirror_version(vdir, out_dir)
    pruned = prune_versions(root, cfg.index.keep_versions, now=now, grace_s=cfg.index.prune_grace_s) if cfg.index.keep_versions else []
    if pruned:
        log.info("index: pruned %d old version(s) from %s: %s", len(pruned), root, ", ".join(pruned))
    manifest = json.loads((vdir / "manifest.json").read_text())
    if not serve:
        log.warning(
            "index: this run's model is not the registry's champion (version %s); published %s "
            "without switching %s/CURRENT", champion["version"], vdir.name, root,
        )
    return {
        "version": vdir.name,
        "serving": serve,
        "champion_version": None if champion is None else champion["version"],
        "publish_root": str(root),
        "model_version": model["model_version"],
        "index": manifest["index"],
        "recall_at_10": manifest["recall_at_10"],
        "num_items": manifest["num_items"],
        "excluded_zero_embeddings": int((~keep).sum()),
        "pruned_versions": pruned,
    }


if __name__ == "__main__":
    from components.base import stage_main

    sys.exit(stage_main(__name__))
