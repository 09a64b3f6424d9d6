"""Stage "index": publish the run's index version where live readers follow it (paper 3.5).

The registration stage built the version (``registration/index/versions/<version>/``: the faiss
index over the item embeddings, recall-checked against exact search, with its manifest) and
registered it inside the model; ``registration/decision.json`` names it and says whether this
run's model is the registry's champion. This stage:

1. installs that version, unchanged, into the persistent publish root (``index.publish_root``,
   default ``<run area>/published/<run id>``) and, when the registration stage left this run's
   model as the champion (or registered nothing), switches that root's ``CURRENT`` atomically:
   this is what live readers (:class:`pinsage_model.serving.query.IndexReader`) follow across runs;
2. copies that version into this stage's output (``index/versions/<version>/`` + ``CURRENT``),
   so the run directory holds the index it published (``pinsage recommend --run-dir``);
3. prunes the publish root down to ``index.keep_versions`` (0: keep every version).

The stage output is replaced atomically by the runner, which is why the version history lives
outside it. The manifest's ``created_at`` is the run's logical time (``ctx.logical_time``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from components.orchestration.execution import StageError, stage_main

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")


def publish_root(cfg: "PipelineConfig", ctx: "StageContext") -> Path:
    """``index.publish_root``, or ``published/<run id>`` in the run area."""
    if cfg.index.publish_root:
        return Path(cfg.index.publish_root)
    return ctx.run_area / "published" / ctx.run_id


def read_decision(registration_dir: Path) -> tuple[dict, Path]:
    """The registration stage's ``decision.json`` and the index version it built."""
    decision_path = registration_dir / "decision.json"
    if not decision_path.exists():
        raise StageError(f"index: {decision_path} not found; rerun the registration stage")
    decision = json.loads(decision_path.read_text())
    version = registration_dir / "index" / "versions" / str(decision.get("index_version"))
    if not (version / "manifest.json").exists():
        raise StageError(f"index: {version} is not a complete index version; rerun the registration stage")
    return decision, version


def prune(cfg: "PipelineConfig", root: Path, now: str) -> list[str]:
    """Prune ``root`` to ``index.keep_versions`` (none when 0); returns the versions deleted."""
    from pinsage_model.serving.index import prune_versions

    if not cfg.index.keep_versions:
        return []
    pruned = prune_versions(root, cfg.index.keep_versions, now=now, grace_s=cfg.index.prune_grace_s)
    if pruned:
        log.info("index: pruned %d old version(s) from %s: %s", len(pruned), root, ", ".join(pruned))
    return pruned


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    """Install the registered index version, serve it if its model is champion, mirror and prune."""
    from pinsage_model.serving.index import install_version, mirror_version, set_current

    decision, built = read_decision(inputs["registration"])
    manifest = json.loads((built / "manifest.json").read_text())
    root = publish_root(cfg, ctx)
    vdir = install_version(built, root)
    # Serve this model only if the registry made it champion (or nothing was registered).
    serve = not decision["tracking"] or decision["champion_weights_digest"] == manifest["weights_digest"]
    if serve:
        set_current(root, vdir.name)
    else:
        log.warning(
            "index: this run's model is not the registry's champion (version %s); published %s "
            "without switching %s/CURRENT",
            decision["champion_after"],
            vdir.name,
            root,
        )
    mirror_version(vdir, out_dir)
    return {
        "version": vdir.name,
        "serving": serve,
        "champion_version": decision["champion_after"],
        "publish_root": str(root),
        "model_version": manifest["model_version"],
        "index": manifest["index"],
        "recall_at_10": manifest["recall_at_10"],
        "num_items": manifest["num_items"],
        "excluded_zero_embeddings": decision["excluded_zero_embeddings"],
        "pruned_versions": prune(cfg, root, ctx.timestamp()),
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
