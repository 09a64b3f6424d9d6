"""``pinsage promote`` / ``pinsage rollback``: move the MLflow ``champion`` alias by hand.

``promote`` applies the promotion gate (:mod:`pinsage_model.evaluation.gate`, validation split)
to a version, ``--force`` skips it; ``rollback`` restores the previous champion. When a publish
root is known (``--index-root`` or ``index.publish_root``) its ``CURRENT`` moves with the champion
in one step, to the index version the champion serves: if the root no longer holds it (pruned),
it is restored from the copy inside the registered model first; if that fails, nothing moves and
the command exits 1.

Usage::

    pinsage promote --config configs/demo.yaml              # gate the current challenger
    pinsage promote --config configs/demo.yaml --version 3 --force
    pinsage rollback --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_RUN_AREA = "runs"


def add_arguments(parser: argparse.ArgumentParser, command: str = "promote") -> None:
    from components.orchestration.execution import add_set_argument

    parser.add_argument("--config", required=True, help="pipeline YAML config (registry name and tolerance)")
    add_set_argument(parser)
    parser.add_argument(
        "--run-area",
        default=DEFAULT_RUN_AREA,
        help="folder holding the local registry mlflow.db when no tracking URI is configured (default: %(default)s)",
    )
    parser.add_argument(
        "--index-root",
        default=None,
        help="published index root whose CURRENT should follow the new champion "
        "(default: index.publish_root of the config, if set)",
    )
    if command == "promote":
        parser.add_argument("--version", type=int, help="model version to promote (default: the 'challenger' alias)")
        parser.add_argument("--force", action="store_true", help="promote even if the gate fails")


def main(args: argparse.Namespace) -> int:
    from components.orchestration.execution import KNOWN_ERRORS, cli_config, error_line
    from components.registry import mlflow_store

    cfg = cli_config(args.config, args.sets)
    if cfg is None:
        return 2
    client = mlflow_store.client_for(cfg, args.run_area)
    name = cfg.tracking.registered_model
    index_root = args.index_root or cfg.index.publish_root
    root = Path(index_root) if index_root else None
    try:
        # the alias and CURRENT move together, under the registered model's and the root's locks
        with mlflow_store.champion_transaction(client, name, args.run_area, root, cfg.orchestration.lock_timeout_s):
            if args.command == "rollback":
                old, new = mlflow_store.rollback(client, name, root)
                print(f"{name}: {mlflow_store.CHAMPION} rolled back from version {old} to version {new}")
            else:
                decision = mlflow_store.promote(
                    client, name, args.version, cfg.tracking.promotion_tolerance, force=args.force, root=root
                )
                verdict = "promoted" if decision.promote else "not promoted"
                print(
                    f"{name}: version {decision.candidate} {verdict} (champion was {decision.champion}): "
                    f"{decision.reason}"
                )
            serving = mlflow_store.follow_champion(client, name, root)
    except (mlflow_store.RegistryError,) + KNOWN_ERRORS as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    if serving is not None:
        print(f"{index_root}/CURRENT -> {serving}")
    return 0 if args.command == "rollback" or decision.promote else 3
