"""Model lifecycle in the MLflow registry: the promotion gate, ``pinsage promote``/``rollback``.

Aliases, not stages (stages are deprecated since MLflow 2.9):

* ``challenger``: the newest registered version (set by :mod:`components.tracking`);
* ``champion``: the version serving traffic; index publishing reads ``models:/<name>@champion``.

The gate moves ``champion`` to a version only when its hit-rate@10 and MRR, measured on the same
test split (``test_split`` version tag), are each at least the champion's minus
``tracking.promotion_tolerance``. Every move is appended to the registered model's
``champion_history`` tag, so ``rollback`` can restore the previous champion.

Usage::

    pinsage promote --config configs/demo.yaml              # gate the current challenger
    pinsage promote --config configs/demo.yaml --version 3 --force
    pinsage rollback --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("pinsage")

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
GATE_METRICS = ("hit_rate_at_10", "mrr")
DEFAULT_RUN_AREA = "runs"
# Stages that read models:/<name>@champion: orchestrators run tracking (and the gate) before them.
READS_CHAMPION = ("index",)
_EPS = 1e-12


class LifecycleError(RuntimeError):
    """A registry operation cannot be done; the message says why."""


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
    """Compare two versions' tags (``hit_rate_at_10``, ``mrr``, ``test_split``).

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
        return False, f"candidate has no evaluation metrics {GATE_METRICS} (tags: {sorted(candidate)})"
    if any(math.isnan(v) for v in cand.values()):
        return False, f"candidate metrics are NaN: {cand}"
    if champion is None:
        return True, "no champion yet"
    if candidate.get("test_split", "") != champion.get("test_split", "") or not candidate.get("test_split"):
        return False, "candidate and champion were evaluated on different test splits; re-evaluate first"
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


def _alias_version(client, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def history(client, name: str) -> list[int]:
    """Champion versions in the order they were promoted (last = current)."""
    return [int(v) for v in json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))]


def _set_champion(client, name: str, version: int, hist: list[int]) -> None:
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(hist))


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
        version = _alias_version(client, name, CHALLENGER)
        if version is None:
            raise LifecycleError(f"registered model '{name}' has no '{CHALLENGER}' version; run the pipeline first")
    candidate = client.get_model_version(name, str(version))
    current = _alias_version(client, name, CHAMPION)
    if current == int(version):
        return GateDecision(False, f"version {version} is already {CHAMPION}", int(version), current)
    champ_tags = client.get_model_version(name, str(current)).tags if current is not None else None
    passes, reason = gate(candidate.tags, champ_tags, tolerance)
    if passes or force:
        hist = history(client, name)
        _set_champion(client, name, int(version), hist + [int(version)])
        reason = reason if passes else f"forced ({reason})"
        log.info("%s: version %s is now %s (%s)", name, version, CHAMPION, reason)
    else:
        log.info("%s: version %s stays out; %s remains version %s (%s)", name, version, CHAMPION, current, reason)
    return GateDecision(passes or force, reason, int(version), current)


def rollback(client, name: str) -> tuple[int, int]:
    """Point ``champion`` back at the previous champion; returns ``(from, to)`` versions."""
    hist = history(client, name)
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        raise LifecycleError(f"registered model '{name}' has no {CHAMPION}; nothing to roll back")
    if hist and hist[-1] == current:
        hist = hist[:-1]
    if not hist:
        raise LifecycleError(f"'{name}' version {current} is the first {CHAMPION}; there is no previous one")
    _set_champion(client, name, hist[-1], hist)
    log.info("%s: %s rolled back from version %s to %s", name, CHAMPION, current, hist[-1])
    return current, hist[-1]


def champion_uri(name: str) -> str:
    """The registry URI index publishing reads: ``models:/<name>@champion``."""
    return f"models:/{name}@{CHAMPION}"


def champion_version(cfg, run_area: str | Path = DEFAULT_RUN_AREA) -> dict | None:
    """The current champion, or None when there is none (or no registered model).

    Returns:
      ``{"version": int, "run_id", "source", "uri": "models:/<name>@champion", "tags": {...}}``.
      Download its files with ``download_champion``.
    """
    from mlflow.exceptions import MlflowException

    from components.tracking import client_for

    client = client_for(cfg, run_area)
    name = cfg.tracking.registered_model
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return {"version": int(mv.version), "run_id": mv.run_id, "source": mv.source, "uri": champion_uri(name), "tags": dict(mv.tags)}


def download_champion(cfg, dst: str | Path, run_area: str | Path = DEFAULT_RUN_AREA) -> Path:
    """Download the champion's model files (``weights.npz``, ``model_config.json`` ...) into ``dst``."""
    import mlflow

    from components.tracking import client_for

    client_for(cfg, run_area)
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=champion_uri(cfg.tracking.registered_model), dst_path=str(dst)))


def add_arguments(parser: argparse.ArgumentParser, command: str = "promote") -> None:
    parser.add_argument("--config", required=True, help="pipeline YAML config (registry name and tolerance)")
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
        parser.add_argument("--version", type=int, help=f"model version to promote (default: the '{CHALLENGER}' alias)")
        parser.add_argument("--force", action="store_true", help="promote even if the gate fails")


def main(args: argparse.Namespace) -> int:
    from components.base import cli_config
    from components.tracking import client_for

    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    client = client_for(cfg, args.run_area)
    name = cfg.tracking.registered_model
    try:
        if args.command == "rollback":
            old, new = rollback(client, name)
            print(f"{name}: {CHAMPION} rolled back from version {old} to version {new}")
        else:
            decision = promote(client, name, args.version, cfg.tracking.promotion_tolerance, force=args.force)
            verdict = "promoted" if decision.promote else "not promoted"
            print(f"{name}: version {decision.candidate} {verdict} (champion was {decision.champion}): {decision.reason}")
            if not decision.promote:
                return 3
    except LifecycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    index_root = args.index_root or cfg.index.publish_root
    if index_root:
        from components.publish_index import follow_champion

        version = follow_champion(cfg, Path(index_root), Path(args.run_area))
        if version is None:
            print(f"warning: no index under {index_root} was built from the champion's weights; CURRENT unchanged")
        else:
            print(f"{index_root}/CURRENT -> {version}")
    return 0
