"""The promotion gate: may a candidate model replace the champion? (Pure logic, no registry calls.)

The gate compares PinSage's **validation**-split hit-rate@10 and MRR with the champion's, on the
same validation pairs (the ``validation_split`` tag, the digest the evaluation wrote): each must
be at least the champion's minus a tolerance. Test-split metrics are reported, never used to
choose, so the champion's test metrics are not selection-biased.

The registry (``components/registry/mlflow_store.py``) reads the versions' tags, calls
:func:`decide`, and moves the ``champion`` alias when the decision says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pinsage_model import metric_keys

GATE_METRICS = (metric_keys.hit_rate(10), metric_keys.MRR)
GATE_SPLIT = "validation"
# The version tag naming the validation pairs a version was evaluated on.
SPLIT_TAG = "validation_split"
# A metric exactly at the boundary passes despite float rounding of champion - tolerance.
_EPS = 1e-12


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate for one candidate version.

    Attributes:
      promote: move ``champion`` to the candidate.
      reason: why, in words (the failing metrics when it does not pass).
      candidate: the candidate's version number.
      champion: the champion's version before the decision, None when there was none.
    """

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
    worse = [
        f"{m} {cand[m]:.4f} < {champ[m]:.4f} - {tolerance:g}"
        for m in GATE_METRICS
        if cand[m] < champ[m] - tolerance - _EPS
    ]
    if worse:
        return False, "worse than champion: " + "; ".join(worse)
    return True, "; ".join(f"{m} {cand[m]:.4f} >= {champ[m]:.4f} - {tolerance:g}" for m in GATE_METRICS)


def decide(
    candidate: int,
    candidate_tags: dict[str, str],
    champion: int | None,
    champion_tags: dict[str, str] | None,
    tolerance: float,
    force: bool = False,
) -> GateDecision:
    """Whether version ``candidate`` replaces version ``champion`` (None: there is none).

    A candidate that already is the champion is not promoted again. ``force`` promotes a
    candidate that fails :func:`gate`; the reason still says why it failed.
    """
    if champion == candidate:
        return GateDecision(False, f"version {candidate} is already champion", candidate, champion)
    passes, reason = gate(candidate_tags, champion_tags, tolerance)
    if not passes and force:
        reason = f"forced ({reason})"
    return GateDecision(passes or force, reason, candidate, champion)


def split_metrics(metrics: dict, split: str) -> dict[str, float]:
    """PinSage's gate metrics on one split of an evaluation ``metrics.json`` ({} when absent)."""
    values = metrics.get("methods", {}).get(metric_keys.PINSAGE, {}).get(split) or {}
    return {m: float(values[m]) for m in GATE_METRICS if values.get(m) is not None}
