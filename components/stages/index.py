"""Stage "index": publish the run's index version where live readers follow it (paper 3.5).

The registration stage built the version (``registration/index/versions/<version>/``: the faiss
index over the item embeddings, recall-checked against exact search, with its manifest),
registered it inside the model and, with tracking, already installed it in the publish root and
switched ``CURRENT`` if the gate made it champion. Holding the registered model's lock and the
publish root's (``index.publish_root``, default ``<run area>/published/<run id>``), this stage:

1. removes what killed publishers left in the root and installs the run's version, unchanged (a
   no-op when registration did);
2. points ``CURRENT`` at the index of the registry's champion as it is *now* (read from the
   registry, never from the frozen ``decision.json``), so rerunning an old run's index task never
   moves production back to an older model; without tracking, at this run's version;
3. prunes the root down to ``index.keep_versions`` newest versions (0: keep every version), never
   the champion's index, those of the ``keep_versions`` champions before it (rollback targets)
   nor one installed or serving within the last ``index.prune_grace_s`` seconds (wall clock);
4. copies the run's version into this stage's output (``index/versions/<version>/`` +
   ``CURRENT``), so the run directory holds the index it published (``pinsage recommend --run-dir``).

The stage output is replaced atomically by the runner, which is why the version history lives
outside it. The manifest's ``created_at`` is the run's logical time (``ctx.logical_time``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from components.orchestration.execution import StageError, stage_main

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")


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


def prune(cfg: "PipelineConfig", root: Path, protect: set[str]) -> list[str]:
    """Prune ``root`` to ``index.keep_versions`` (none when 0); returns the versions deleted."""
    from pinsage_model.serving.index import prune_versions

    if not cfg.index.keep_versions:
        return []
    pruned = prune_versions(
        root, cfg.index.keep_versions, protect=protect, now_s=time.time(), grace_s=cfg.index.prune_grace_s
    )
    if pruned:
        log.info("index: pruned %d old version(s) from %s: %s", len(pruned), root, ", ".join(pruned))
    return pruned


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    """Install the run's index version, point ``CURRENT`` at the champion's, prune and mirror."""
    from components.registry import mlflow_store
    from pinsage_model.serving.index import (
        default_publish_root,
        install_version,
        mirror_version,
        publish_lock,
        remove_unfinished,
        set_current,
    )

    decision, built = read_decision(inputs["registration"])
    manifest = json.loads((built / "manifest.json").read_text())
    root = default_publish_root(cfg.index, ctx.run_area, ctx.run_id)
    timeout = cfg.orchestration.lock_timeout_s
    client = mlflow_store.client_for(cfg, ctx.run_area) if decision["tracking"] else None
    name = cfg.tracking.registered_model
    champion: int | None = None
    serving: str | None
    with (
        mlflow_store.champion_transaction(client, name, ctx.run_area, root, timeout)
        if client is not None
        else publish_lock(root, timeout)
    ):
        remove_unfinished(root)
        vdir = install_version(built, root)
        if client is None:
            set_current(root, vdir.name)
            serving, protect = vdir.name, set()
        else:
            champion = mlflow_store.alias_version(client, name, mlflow_store.CHAMPION)
            serving = mlflow_store.follow_champion(client, name, root)
            protect = mlflow_store.protected_indexes(client, name, cfg.index.keep_versions)
        pruned = prune(cfg, root, protect)
    if serving != vdir.name:
        log.warning(
            "index: this run's model is not the registry's champion (version %s); published %s, %s/CURRENT names %s",
            champion,
            vdir.name,
            root,
            serving,
        )
    mirror_version(vdir, out_dir)
    return {
        "version": vdir.name,
        "serving": serving == vdir.name,
        "champion_version": champion,
        "publish_root": str(root),
        "model_version": manifest["model_version"],
        "index": manifest["index"],
        "recall_at_10": manifest["recall_at_10"],
        "num_items": manifest["num_items"],
        "excluded_zero_embeddings": decision["excluded_zero_embeddings"],
        "pruned_versions": pruned,
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
