"""The one spelling of every ranking-metric key: in ``metrics.json``, ``history.json``, the
promotion gate, the index manifest and MLflow.

MLflow metric names may not contain ``@``, so ``hit-rate@10`` is spelled ``hit_rate_at_10``
everywhere, not only in MLflow; a key needs no translation on its way from the evaluator to the
registry. Validation-split keys in the training history carry the ``val_`` prefix.
"""

from __future__ import annotations

MRR = "mrr"
# The trained model's method key in ``metrics.json`` (beside the baselines' keys).
PINSAGE = "pinsage"
VALIDATION_PREFIX = "val_"


def hit_rate(k: int) -> str:
    """``hit_rate_at_<k>``: the share of positives ranked within the top ``k``."""
    return f"hit_rate_at_{k}"


def recall(k: int) -> str:
    """``recall_at_<k>``: user-level recall of the top ``k`` (full ranking)."""
    return f"recall_at_{k}"


def ndcg(k: int) -> str:
    """``ndcg_at_<k>``: user-level NDCG of the top ``k`` (full ranking)."""
    return f"ndcg_at_{k}"


def validation(key: str) -> str:
    """The training history's name of a validation-split metric: ``val_<key>``."""
    return f"{VALIDATION_PREFIX}{key}"
