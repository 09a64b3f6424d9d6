"""Collection (user, board) vectors of their own, folded in against fixed item embeddings.

The mean of a user's item embeddings sits between the user's interests and, on a unit sphere,
drifts towards the dense middle where popular items live; ranking all items by it scores about a
third of ItemKNN on user→item benchmarks. Folding in instead fits each collection's vector ``u``
to its items under the same softmax the item model is trained with:

    maximise  (1 / |c|) Σ_{j ∈ c} log softmax_j(u · Z^T / τ)        (Z: (N, d) unit item vectors)

a concave problem per collection (a multinomial logit with fixed features), solved by a few
Adam steps from the mean, in blocks of collections (numpy, vectorised). New users are folded in
the same way, without retraining the item model. Above ``max_candidates`` items the softmax runs
over a seeded uniform sample of that many items plus the collection's own (sampled softmax).
"""

from __future__ import annotations

import numpy as np

from pinsage_model.contracts import CSRGraph
from pinsage_model.metrics import l2_normalise


def fold_in(
    item_emb: np.ndarray,
    graph: CSRGraph,
    *,
    temperature: float = 0.1,
    steps: int = 50,
    lr: float = 0.05,
    block: int = 256,
    max_candidates: int = 50_000,
    seed: int = 0,
) -> np.ndarray:
    """(C, d) float32 unit vectors, one per collection of ``graph`` (zeros for empty ones).

    Args:
      item_emb: (N, d) item embeddings (normalised here).
      graph: membership: collection c holds items ``coll_indices[coll_indptr[c]:coll_indptr[c+1]]``.
      temperature: τ of the softmax (the training loss's, for the same geometry).
      steps, lr: Adam iterations and step size.
      block: collections per vectorised block.
      max_candidates: softmax over all items up to this many, else over a seeded sample.
      seed: seed of the candidate sample.
    """
    z = l2_normalise(item_emb).astype(np.float32)  # (N, d)
    n, d = z.shape
    indptr, indices = np.asarray(graph.coll_indptr), np.asarray(graph.coll_indices)
    n_coll = len(indptr) - 1
    out = np.zeros((n_coll, d), dtype=np.float32)
    pool = None if n <= max_candidates else np.sort(np.random.default_rng([seed, 11]).choice(n, max_candidates, replace=False))
    for lo in range(0, n_coll, block):
        hi = min(n_coll, lo + block)
        out[lo:hi] = _fold_block(z, indptr[lo : hi + 1] - indptr[lo], indices[indptr[lo] : indptr[hi]], pool,
                                 temperature, steps, lr)
    return out


def _fold_block(z, ptr, members, pool, temperature, steps, lr) -> np.ndarray:
    """Fold in one block of collections given as CSR (``ptr`` (b+1,), ``members``)."""
    b, d = len(ptr) - 1, z.shape[1]
    sizes = np.diff(ptr)
    rows = np.repeat(np.arange(b), sizes)
    # (b, d) mean of each collection's items: the target of the gradient and the start point
    target = np.zeros((b, d), dtype=np.float64)
    np.add.at(target, rows, z[members])
    target /= np.maximum(sizes, 1)[:, None]
    cand = z if pool is None else z[np.union1d(pool, members)]  # (M, d)
    u = l2_normalise(target) / temperature  # (b, d): logits of the mean's cosines / τ
    m = np.zeros_like(u)
    v = np.zeros_like(u)
    for t in range(1, steps + 1):
        logits = u @ cand.T.astype(np.float64)  # (b, M)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = target - p @ cand  # (b, d): gradient of the mean log-likelihood w.r.t. u
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        u += lr / temperature * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    u[sizes == 0] = 0.0
    return l2_normalise(u).astype(np.float32)
