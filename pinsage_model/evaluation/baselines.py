"""Baselines scored by the same evaluator as PinSage (paper 4.1, plus what practitioners try first).

Every baseline is a :class:`Method`: either item embeddings (ranked by cosine similarity) or a
function scoring all items for a block of query items. Graph baselines read the bipartite
item-collection graph; each collection is a column of the user-item (collection-item) matrix
``X`` (C, N), binary.

* ``content``: the transformed input features, L2-normalised (the paper's Visual/Annotation rows).
* ``pixie``: random-walk visit counts from the query (Pixie, Eksombatchai et al. 2018); several
  query items are combined by Pixie's multi-hit boosting ``(sum_q sqrt(count_q))**2``.
* ``popularity``: item degree, the same ranking for every query.
* ``itemknn``: cosine between items' columns of ``X``; a user's score is the sum of the cosines
  to the user's items.
* ``svd``: truncated SVD ``X ~ U S V^T``; item factors ``V S``, ranked by cosine; a user's score
  is PureSVD's ``x_u V V^T``.
* ``ease``: the closed-form item-item regression of EASE (Steck, WWW 2019); an (N, N) inverse,
  so it is skipped (:class:`BaselineSkipped`) above a configured item count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from pinsage_model.evaluation.metrics import l2_normalise
from pinsage_model.graph.csr import CSRGraph

ItemScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps query item ids ``(b,)`` to dense scores ``(b, N)``."""
SetScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Maps item sets in CSR form (``indptr`` (G+1,), ``indices``) to dense scores ``(G, N)``."""


@dataclass(frozen=True)
class Method:
    """A ranking method: item embeddings, or score functions over all items.

    Attributes:
      name: label in tables and plots.
      embeddings: (N, d) vectors ranked by cosine similarity, or None.
      score_items: scores of all items for single query items (when no embeddings).
      score_sets: scores of all items for sets of query items (user-level evaluation); when
        None, an item's score is its best score over the set.
      pair_similarity: cosine of item pairs ``(a, b) -> (P,)`` for the similarity spread, when
        there are no dense embeddings (ItemKNN); None: the method has no similarity spread.
      query_shift: (d,) vector added to a query item's unit embedding before the inner product
        with the candidates' unit embeddings (PinSage's learned shift), or None.
    """

    name: str
    embeddings: np.ndarray | None = None
    score_items: ItemScoreFn | None = None
    score_sets: SetScoreFn | None = None
    pair_similarity: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    query_shift: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.embeddings is None) == (self.score_items is None):
            raise ValueError(f"method '{self.name}' needs exactly one of embeddings or score_items")

    def item_scores(self, items: np.ndarray) -> np.ndarray:
        """(b, N) scores of all items for query items ``items`` (cosine for embeddings, plus
        the shift's inner product with each candidate)."""
        if self.embeddings is not None:
            e = l2_normalise(self.embeddings)
            q = e[np.asarray(items)]
            return (q if self.query_shift is None else q + self.query_shift[None, :]) @ e.T
        if self.score_items is None:  # unreachable: __post_init__ requires embeddings or score_items
            raise ValueError(f"method '{self.name}' has neither embeddings nor score_items")
        return self.score_items(np.asarray(items))

    def set_scores(self, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """(G, N) scores for item sets; the per-item maximum unless the method defines its own."""
        if self.score_sets is not None:
            return self.score_sets(indptr, indices)
        per_item = self.item_scores(indices)  # (nnz, N)
        out = np.full((len(indptr) - 1, per_item.shape[1]), -np.inf)
        lengths = np.diff(indptr)
        nonempty = lengths > 0
        out[nonempty] = np.maximum.reduceat(per_item, np.asarray(indptr[:-1])[nonempty], axis=0)
        return out


def set_matrix(indptr: np.ndarray, indices: np.ndarray, num_items: int) -> sp.csr_matrix:
    """Binary (G, N) rows x_u of item sets given in CSR form; an item held twice counts once."""
    sets = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(indptr) - 1, num_items))
    sets.sum_duplicates()
    sets.data[:] = 1.0
    return sets


def collection_item_matrix(graph: CSRGraph) -> sp.csr_matrix:
    """Binary ``X`` (C, N): X[c, i] = 1 when item i is in collection c."""
    data = np.ones(graph.num_edges, dtype=np.float64)
    return sp.csr_matrix(
        (data, np.asarray(graph.coll_indices), np.asarray(graph.coll_indptr)),
        shape=(graph.num_collections, graph.num_items),
    )


def content(features: np.ndarray) -> Method:
    """Content-only: the transformed input features, L2-normalised (N, F)."""
    return Method("content", embeddings=l2_normalise(features).astype(np.float32))


def popularity(graph: CSRGraph) -> Method:
    """Item degree (number of collections), identical for every query."""
    degree = graph.item_degree().astype(np.float64)  # (N,)

    def score(items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(degree, (len(items), len(degree)))

    return Method("popularity", score_items=score)


# Below this many N x C entries ItemKNN scores with a dense matrix (BLAS) instead of sparse products.
_DENSE_ITEMKNN_ENTRIES = 20_000_000


def itemknn(graph: CSRGraph) -> Method:
    """Item co-occurrence: cosine between items' columns of the collection-item matrix."""
    x = collection_item_matrix(graph).T.tocsr()  # (N, C): row i = collections of item i
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    xn = sp.diags(inv) @ x  # (N, C) unit rows; items without collections stay zero
    xn = xn.tocsr()
    if xn.shape[0] * xn.shape[1] <= _DENSE_ITEMKNN_ENTRIES:
        # few collections (e.g. users of a small data set): item rows are dense enough for BLAS
        dense = xn.toarray()  # (N, C)

        def score(items: np.ndarray) -> np.ndarray:
            return dense[items] @ dense.T  # (b, N)

    else:
        xnt = xn.T.tocsr()  # (C, N)

        def score(items: np.ndarray) -> np.ndarray:
            return (xn[items] @ xnt).toarray()  # (b, N)

    def pair_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(xn[a].multiply(xn[b]).sum(axis=1)).ravel()

    def score_sets(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        # item-based CF's user score: the sum of the cosines to the user's items, x_u Xn Xn^T,
        # without forming the N x N similarity matrix (a held item's own 1 is masked by the evaluator)
        return np.asarray(((set_matrix(indptr, indices, xn.shape[0]) @ xn) @ xn.T).todense())  # (G, N)

    return Method("itemknn", score_items=score, score_sets=score_sets, pair_similarity=pair_similarity)


def svd(graph: CSRGraph, dim: int, seed: int = 0) -> Method:
    """Matrix factorisation: item factors ``V S`` of the rank-``dim`` truncated SVD of ``X``."""
    from scipy.sparse.linalg import svds

    x = collection_item_matrix(graph)  # (C, N)
    k = max(1, min(dim, min(x.shape) - 1))
    # svds needs k < min(C, N); ARPACK's start vector is seeded so reruns are identical.
    _, s, vt = svds(x, k=k, random_state=np.random.default_rng(seed))
    order = np.argsort(-s)
    factors = (vt[order].T * s[order]).astype(np.float32)  # (N, k)
    v = vt[order].T  # (N, k) unit right singular vectors

    def score_sets(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        # PureSVD's user score: x_u projected on the top-k item space, x_u V V^T
        return np.asarray(set_matrix(indptr, indices, len(v)) @ v) @ v.T  # (G, N)

    return Method("svd", embeddings=factors, score_sets=score_sets)


def ease(graph: CSRGraph, l2: float) -> Method:
    """EASE (Steck, WWW 2019): ``B = I - P diag(1 / diag(P))``, ``P = (X^T X + l2 I)^-1``.

    ``X`` is the binary collection-item matrix (C, N). ``B`` is the ridge regression of every
    item's column of ``X`` on all other columns (the constraint ``diag(B) = 0`` rules out the
    trivial self-prediction), so a user ``x_u`` (N,) scores the items ``x_u B`` and ``B[i, j]``
    is what holding item i adds to item j. The item->item scores of query i are therefore
    row i, ``B[i, :]`` (a user holding i alone); a set scores ``x_u B``, the sum of its rows.

    The Gram matrix is inverted in float64, in place (the division by ``diag(P)`` amplifies
    rounding when ``l2`` is small against item degrees), by blocked products on numpy's 64-bit
    BLAS (:mod:`pinsage_model.evaluation.dense`); ``B`` is then converted to float32 in the same
    buffer: 8 N^2 bytes at the peak of the build and 4 N^2 bytes kept (11 GiB and 5.3 GiB at
    37.6k items).

    Args:
      graph: bipartite item-collection graph.
      l2: the L2 weight lambda (> 0); Steck used 500 on ML-20M (136k users).
    """
    from pinsage_model.evaluation.dense import dense_gram, spd_inverse_inplace, to_float32_inplace

    if not l2 > 0:
        raise ValueError(f"EASE needs an L2 weight > 0 (X^T X alone may be singular), got {l2}")
    # X^T X + l2 I is symmetric positive definite, so the inverse exists and is symmetric.
    # (N, N) float64, C order; a bar when the build takes more than seconds
    p = spd_inverse_inplace(dense_gram(collection_item_matrix(graph), l2), progress=graph.num_items > 10000)
    p /= -p.diagonal().copy()  # (N, N): column j divided by -P[j, j], so B[i, j] = -P[i, j] / P[j, j]
    np.fill_diagonal(p, 0.0)
    # C order: the row gathers and sparse products below would copy a Fortran B on every x_u B
    b = to_float32_inplace(p)  # (N, N) float32, p's buffer
    n = graph.num_items

    def score(items: np.ndarray) -> np.ndarray:
        return b[items]  # (b, N)

    def score_sets(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return set_matrix(indptr, indices, n) @ b  # (G, N)

    return Method("ease", score_items=score, score_sets=score_sets)


class BaselineSkipped(Exception):
    """A configured baseline was not built; the message says why (for the evaluation report)."""


def pixie_boost(counts: sp.csr_matrix, indptr: np.ndarray) -> sp.csr_matrix:
    """Pixie multi-hit boosting: rows of ``counts`` grouped by ``indptr`` -> ``(sum sqrt(c))**2``.

    Args:
      counts: (S, N) visit counts, one row per query item.
      indptr: (G+1,) group boundaries over those rows.

    Returns:
      (G, N) boosted scores; items reached from several query items rank above items reached
      as often from one.
    """
    groups = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))  # (S,)
    pool = sp.csr_matrix(
        (np.ones(len(groups)), (groups, np.arange(len(groups)))), shape=(len(indptr) - 1, counts.shape[0])
    )
    summed = (pool @ counts.sqrt()).tocsr()  # (G, N) sum of sqrt counts
    return summed.multiply(summed).tocsr()


def pixie(
    graph: CSRGraph,
    *,
    num_walks: int,
    walk_length: int,
    restart_prob: float,
    seed: int = 0,
    num_threads: int = 0,
) -> Method:
    """Pixie-style ranking: visit counts of random walks from the query item(s)."""
    from pinsage_model.graph.sampler import visit_counts

    def walk(items: np.ndarray) -> sp.csr_matrix:
        return visit_counts(
            graph,
            np.asarray(items, dtype=np.int32),
            num_walks=num_walks,
            walk_length=walk_length,
            restart_prob=restart_prob,
            seed=seed,
            num_threads=num_threads,
        )

    def score(items: np.ndarray) -> np.ndarray:
        return walk(items).toarray().astype(np.float64)  # (b, N)

    def score_sets(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return pixie_boost(walk(indices), indptr).toarray()

    return Method("pixie", score_items=score, score_sets=score_sets)


BASELINES = ("content", "pixie", "popularity", "itemknn", "svd", "ease")


def build(
    name: str,
    *,
    graph: CSRGraph,
    features: np.ndarray,
    svd_dim: int,
    pixie_walks: int,
    walk_length: int,
    restart_prob: float,
    seed: int,
    ease_lambda: float,
    ease_max_items: int,
    num_threads: int = 0,
) -> Method:
    """One baseline by name (see :data:`BASELINES`).

    Raises:
      BaselineSkipped: ``ease`` on a graph of more than ``ease_max_items`` items.
    """
    if name == "content":
        return content(features)
    if name == "popularity":
        return popularity(graph)
    if name == "itemknn":
        return itemknn(graph)
    if name == "svd":
        return svd(graph, svd_dim, seed)
    if name == "ease":
        if graph.num_items > ease_max_items:
            raise BaselineSkipped(
                f"ease skipped: {graph.num_items} items > evaluation.ease_max_items = {ease_max_items} "
                f"(its dense {graph.num_items} x {graph.num_items} inverse "
                f"needs ~{8 * graph.num_items**2 / 2**30:.1f} GiB)"
            )
        return ease(graph, ease_lambda)
    if name == "pixie":
        return pixie(
            graph,
            num_walks=pixie_walks,
            walk_length=walk_length,
            restart_prob=restart_prob,
            seed=seed,
            num_threads=num_threads,
        )
    raise ValueError(f"unknown baseline '{name}'; known: {', '.join(BASELINES)}")
