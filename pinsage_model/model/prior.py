"""The homefeed popularity prior: a user's score of item ``c`` is

    score(u, c) = (u + w_u) . z_c + beta * log(1 + n_c)

with ``n_c`` the item's engagements in the training graph (its degree). Unit item embeddings
compare items by direction only; how often an item is engaged at all is a separate signal for what
a user engages next, which a query of length about one does not carry by itself.

``beta`` is a setting chosen on the validation events, as every setting is (``pinsage tune``,
early stopping): the evaluation stage ranks the validation users with each value of
:data:`BETA_GRID` and keeps the best recall@K (:func:`fit_weight`); test events never take part.
It cannot be chosen on the training users' own items: the model has fitted exactly those
(held-out training items score recall@20 0.32 on yelp2018-subset, against 0.06 for validation
events), which hides what popularity adds for unseen engagements (beta 0 there, 0.08 on validation).

Serving adds the prior exactly over the inner-product index
(:meth:`pinsage_model.serving.query.LoadedVersion.homefeed_search`). Arrays live in
``homefeed_prior.npz``: ``prior`` (N,) float32 by item index, ``weight`` () float32 (beta), and
from the fit ``grid`` and ``recall`` (validation recall@K of each value).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pinsage_model.graph.csr import CSRGraph

PRIOR_FILE = "homefeed_prior.npz"
# Candidate weights, on the scale of inner products of near-unit vectors; 0 first, so a prior that
# does not help is not used (ties keep the smaller weight).
BETA_GRID = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35)


def item_prior(graph: CSRGraph) -> np.ndarray:
    """(N,) float32 ``log(1 + n_c)``, ``n_c`` item c's collections in ``graph`` (its training engagements)."""
    return np.log1p(np.asarray(graph.item_degree(), np.float64)).astype(np.float32)


def fit_weight(
    queries: np.ndarray,
    items: np.ndarray,
    prior: np.ndarray,
    users: np.ndarray,
    masked: tuple[np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray],
    k: int,
    grid: tuple[float, ...] = BETA_GRID,
) -> tuple[float, list[float]]:
    """The weight of ``grid`` with the best recall@``k`` of the held-out items (ties: the first).

    Args:
      queries: (C, d) float32 homefeed queries (user vector plus shift), rows by user id.
      items: (N, d) the item vectors they score.
      prior: (N,) :func:`item_prior`.
      users: (U,) the user ids to rank.
      masked: CSR ``(indptr (C+1,), indices)`` of each user's items left out of the ranking.
      held: CSR ``(indptr (C+1,), indices)`` of each user's held-out (validation) items.

    Returns:
      (beta, recall@k for every value of ``grid``).
    """
    from pinsage_model.evaluation.metrics import user_topk_metrics

    items32 = np.asarray(items, np.float32)
    recalls = []
    for beta in grid:

        def score(pos: np.ndarray, b: np.float32 = np.float32(beta)) -> np.ndarray:
            return queries[users[pos]] @ items32.T + b * prior[None, :]  # (b, N)

        m = user_topk_metrics(score, users, *masked, *held, len(prior), (k,))
        recalls.append(float(m[f"recall_at_{k}"]))
    return float(grid[int(np.argmax(recalls))]), recalls


def save_prior(folder: str | Path, prior: np.ndarray, weight: float, fit: dict[str, list[float]] | None = None) -> None:
    """Write ``homefeed_prior.npz`` atomically (arrays only); ``fit`` adds the ``grid`` and its ``recall``."""
    from pinsage_model.io import atomic_save_npz

    extra = {k: np.asarray(v, np.float32) for k, v in (fit or {}).items()}
    arrays = {"prior": np.asarray(prior, np.float32), "weight": np.array(weight, np.float32), **extra}
    atomic_save_npz(Path(folder) / PRIOR_FILE, **arrays)


def load_prior(folder: str | Path) -> tuple[np.ndarray, float] | None:
    """``(prior (N,), weight)`` of a folder's ``homefeed_prior.npz``, or None when it has none."""
    path = Path(folder) / PRIOR_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return np.asarray(z["prior"], np.float32), float(z["weight"])
