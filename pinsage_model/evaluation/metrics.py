"""Offline ranking metrics (paper 4.2) and user-level metrics (NGCF/LightGCN protocol).

Related-item evaluation: for each held-out pair (q, i), item i is ranked among a candidate pool
(all items, or a seeded uniform sample plus i) by cosine similarity to q, with q itself removed
from the pool. From the ranks come hit-rate@K (the fraction of pairs with rank <= K) and the
paper's scaled MRR (Eq. 2): ``mean(1 / ceil(R / scale))``.

Ties: a target tied with other candidates takes the mean of the best and worst position of its
tied block, ``R = 1 + #(score > s_i) + #(score == s_i) / 2`` (the "fractional rank" of statistics;
the expected position under uniformly random tie-breaking). Counting only strictly greater
scores would hand degenerate scorers (a constant vector, a popularity list, a random walk that
never reached the target) rank 1 for free. Scores are computed in float64 and two scores count
as equal within ``tie_atol``, so equal vectors tie regardless of BLAS summation order.

Small pools are ranked exactly with blocked matrix products; pools above ``exact_max_pool``
items go through a faiss ``IndexFlatIP`` top-k search whose ranks stop at ``max_rank`` (beyond
it the rank is ``inf``: hit-rate@K is exact for K <= max_rank, MRR loses at most
``1 / ceil(max_rank / scale)`` per pair, and faiss breaks ties arbitrarily).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from pinsage_model import metric_keys
from pinsage_model.graph.csr import csr_rows
from pinsage_model.progress import progress_bar

# A block of query rows times the pool is kept under this many bytes of float64 scores.
_BLOCK_BYTES = 64 << 20

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps a block of query positions ``(b,)`` to dense scores ``(b, N)`` over all items."""


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64; all-zero rows stay zero (cosine 0 to everything).

    The library's one numpy normalisation for scoring and pooling; inference keeps the float32
    :func:`pinsage_model.inference.layerwise.l2_normalize_f32` so its output follows the trained
    model's own (TensorFlow) rule.
    """
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _block_rows(pool_size: int) -> int:
    return max(1, _BLOCK_BYTES // (8 * max(pool_size, 1)))


def _ranks_in_block(
    scores: np.ndarray,  # (b, C) float64 scores of the pool items
    pool: np.ndarray | None,  # (C,) item ids of the pool columns; None = column j is item j
    target_scores: np.ndarray,  # (b,) float64
    target_idx: np.ndarray,  # (b,)
    query_idx: np.ndarray,  # (b,) -1 = no query item to exclude
    tie_atol: float,
) -> np.ndarray:
    """Fractional rank of each row's target among the pool minus the query and the target."""
    t = target_scores[:, None]
    greater = np.count_nonzero(scores > t + tie_atol, axis=1)  # (b,)
    equal = np.count_nonzero(scores >= t - tie_atol, axis=1) - greater
    rows = np.arange(len(scores))
    # The target is ranked against the others, not itself; the query is never a candidate.
    # Both are taken back out of the counts where their column is in the pool.
    t_col, t_in = _columns(pool, target_idx, scores.shape[1])
    equal -= t_in  # the target's own column always ties with itself
    q_col, q_in = _columns(pool, query_idx, scores.shape[1])
    q_in &= query_idx != target_idx
    qs = scores[rows, q_col]
    greater -= q_in & (qs > target_scores + tie_atol)
    equal -= q_in & (np.abs(qs - target_scores) <= tie_atol)
    return 1.0 + greater + equal / 2.0


def _columns(pool: np.ndarray | None, ids: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Column of each id in the pool (0 when absent) and whether it is there."""
    if pool is None:
        present = (ids >= 0) & (ids < width)
        return np.where(present, ids, 0), present
    order = np.argsort(pool, kind="stable")
    pos = np.minimum(np.searchsorted(pool[order], ids), len(pool) - 1)
    col = order[pos]
    return col, pool[col] == ids


def ranks(
    query_emb: np.ndarray,
    target_idx: np.ndarray,
    item_emb: np.ndarray,
    query_idx: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    *,
    tie_atol: float = 1e-9,
    progress: bool = False,
) -> np.ndarray:
    """Exact rank of each target among a candidate pool by cosine similarity to its query.

    Args:
      query_emb: (B, d) query vectors (need not be normalised).
      target_idx: (B,) item index of each query's held-out positive.
      item_emb: (N, d) item vectors (need not be normalised).
      query_idx: (B,) item index of each query, removed from its pool; -1 or None: none removed.
      candidates: (C,) distinct item indices forming the shared pool; None means all N items. Each target
        is ranked against the pool plus itself whether or not it was drawn.
      tie_atol: scores within this distance of the target's count as tied.
      progress: show a tqdm bar over query blocks.

    Returns:
      (B,) float64 fractional ranks, 1 = best (see the module docstring for ties).
    """
    q = l2_normalise(query_emb)  # (B, d)
    e = l2_normalise(item_emb)  # (N, d)
    target_idx = np.asarray(target_idx, dtype=np.int64)
    qidx = np.full(len(q), -1, np.int64) if query_idx is None else np.asarray(query_idx, np.int64)
    if not (len(q) == len(target_idx) == len(qidx)):
        raise ValueError(
            f"query_emb, target_idx and query_idx differ in length: {len(q)}, {len(target_idx)}, {len(qidx)}"
        )
    if len(target_idx) and (target_idx.min() < 0 or target_idx.max() >= len(e)):
        raise ValueError(f"target_idx out of range [0, {len(e)})")
    pool = None if candidates is None else np.asarray(candidates, dtype=np.int64)
    pool_emb = e if pool is None else e[pool]  # (C, d)
    target_scores = np.einsum("bd,bd->b", q, e[target_idx])  # (B,)
    out = np.empty(len(q), dtype=np.float64)
    step = _block_rows(len(pool_emb))
    for lo in progress_bar(range(0, len(q), step), desc="ranking", disable=not progress, leave=False):
        hi = min(lo + step, len(q))
        scores = q[lo:hi] @ pool_emb.T  # (b, C)
        out[lo:hi] = _ranks_in_block(scores, pool, target_scores[lo:hi], target_idx[lo:hi], qidx[lo:hi], tie_atol)
    return out


def score_ranks(
    score_fn: ScoreFn,
    query_idx: np.ndarray,
    target_idx: np.ndarray,
    num_items: int,
    candidates: np.ndarray | None = None,
    *,
    tie_atol: float = 1e-9,
    block_rows: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Like :func:`ranks`, for methods that score items directly (Pixie, popularity, ItemKNN).

    Args:
      score_fn: ``score_fn(positions)`` returns the (b, N) scores of all items for the queries at
        those positions of ``query_idx`` (positions, so a scorer may hold per-query state such as
        multi-item queries).
      query_idx: (B,) query item (excluded from its pool), or -1.
      target_idx: (B,) held-out positive item.
      num_items: N.
      candidates: (C,) shared pool, or None for all items.
      block_rows: queries scored per call (default: about 64 MB of scores).

    Returns:
      (B,) float64 fractional ranks.
    """
    query_idx = np.asarray(query_idx, dtype=np.int64)
    target_idx = np.asarray(target_idx, dtype=np.int64)
    pool = None if candidates is None else np.asarray(candidates, dtype=np.int64)
    out = np.empty(len(query_idx), dtype=np.float64)
    step = block_rows or _block_rows(num_items)
    for lo in progress_bar(range(0, len(query_idx), step), desc="ranking", disable=not progress, leave=False):
        hi = min(lo + step, len(query_idx))
        s = np.asarray(score_fn(np.arange(lo, hi)), dtype=np.float64)  # (b, N)
        if s.shape != (hi - lo, num_items):
            raise ValueError(f"score_fn returned shape {s.shape}, expected {(hi - lo, num_items)}")
        t = s[np.arange(hi - lo), target_idx[lo:hi]]
        block = s if pool is None else s[:, pool]
        out[lo:hi] = _ranks_in_block(block, pool, t, target_idx[lo:hi], query_idx[lo:hi], tie_atol)
    return out


def ranks_faiss(
    query_emb: np.ndarray,
    target_idx: np.ndarray,
    item_emb: np.ndarray,
    query_idx: np.ndarray | None = None,
    *,
    max_rank: int = 1000,
) -> np.ndarray:
    """Ranks over all items from an exact faiss inner-product top-k search (large pools).

    Returns (B,) float64 ranks; ``inf`` where the target is not within the top ``max_rank``
    (after removing the query). faiss orders tied scores arbitrarily.
    """
    import faiss

    q = l2_normalise(query_emb).astype(np.float32)
    e = np.ascontiguousarray(l2_normalise(item_emb), dtype=np.float32)
    target_idx = np.asarray(target_idx, dtype=np.int64)
    qidx = np.full(len(q), -1, np.int64) if query_idx is None else np.asarray(query_idx, np.int64)
    index = faiss.IndexFlatIP(e.shape[1])
    index.add(e)
    k = min(max_rank + 1, len(e))  # one extra slot: the query itself may come back
    _, found = index.search(np.ascontiguousarray(q), k)  # (B, k) item ids, best first
    keep = found != qidx[:, None]
    # position among the kept results = number of kept entries before the hit
    before = np.cumsum(keep, axis=1) - keep
    hit = (found == target_idx[:, None]) & keep
    pos = np.where(hit.any(axis=1), before[np.arange(len(q)), hit.argmax(axis=1)] + 1.0, np.inf)
    return np.where(pos <= max_rank, pos, np.inf)


def hit_rate(r: np.ndarray, k: int) -> float:
    """Fraction of ranks <= k (K larger than the pool gives 1.0)."""
    r = np.asarray(r, dtype=np.float64)
    return float(np.mean(r <= k)) if len(r) else float("nan")


def mrr(r: np.ndarray, scale: float = 1.0) -> float:
    """Scaled mean reciprocal rank, paper Eq. 2: ``mean(1 / ceil(R / scale))``; inf ranks add 0."""
    if scale <= 0:
        raise ValueError(f"mrr scale must be > 0, got {scale}")
    r = np.asarray(r, dtype=np.float64)
    if not len(r):
        return float("nan")
    return float(np.mean(1.0 / np.ceil(r / scale)))


def sample_candidates(num_items: int, size: int, seed: int) -> np.ndarray | None:
    """A seeded uniform sample (without replacement, sorted) of ``size`` items; None = all."""
    if size <= 0 or size >= num_items:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_items, size=size, replace=False))


def summarise(r: np.ndarray, ks: Iterable[int], mrr_scale: float) -> dict:
    """``{"hit_rate_at_10": ..., "mrr": ..., "median_rank": ..., "n": ...}`` from ranks
    (:mod:`metric_keys` spelling)."""
    r = np.asarray(r, dtype=np.float64)
    out = {metric_keys.hit_rate(k): hit_rate(r, k) for k in ks}
    out["mrr"] = mrr(r, mrr_scale)
    out["median_rank"] = float(np.median(r)) if len(r) else float("nan")
    out["n"] = int(len(r))
    return out


def evaluate_embeddings(
    item_emb: np.ndarray,
    pairs_q: np.ndarray,
    pairs_pos: np.ndarray,
    ks: Iterable[int] = (10, 50, 100),
    mrr_scale: float = 1.0,
    candidate_pool: int = 0,
    seed: int = 0,
    *,
    exact_max_pool: int = 200_000,
    progress: bool = False,
    query_shift: np.ndarray | None = None,
) -> dict:
    """Hit-rate@K and scaled MRR of (q, pos) pairs ranked by item-embedding cosine similarity.

    Args:
      item_emb: (N, d) item embeddings.
      pairs_q, pairs_pos: (P,) query and positive item indices.
      ks: cut-offs for hit-rate.
      mrr_scale: Eq. 2 scale (paper: 100 for billions of candidates; 1 for small pools).
      candidate_pool: 0 = rank against all items; n > 0 = against a seeded uniform sample of n.
      seed: seed of the candidate sample.
      exact_max_pool: pools larger than this use faiss top-k (ranks beyond max(ks) and the MRR
        horizon become inf).
      query_shift: (d,) added to each query's unit embedding (the candidates stay unit vectors),
        so the ranking is by ``(e_q + shift)·e_c``; None = plain cosine.

    Returns:
      dict from :func:`summarise` plus ``pool`` (the pool size) and ``ranks`` (np.ndarray).
    """
    ks = tuple(int(k) for k in ks)
    pool = sample_candidates(len(item_emb), candidate_pool, seed)
    pool_size = len(item_emb) if pool is None else len(pool)
    q_idx = np.asarray(pairs_q, dtype=np.int64)
    queries = l2_normalise(item_emb[q_idx])  # (P, d)
    if query_shift is not None:
        queries = queries + query_shift[None, :]
    if pool is None and pool_size > exact_max_pool:
        horizon = max(max(ks), int(np.ceil(mrr_scale)) * 100)
        r = ranks_faiss(queries, pairs_pos, item_emb, q_idx, max_rank=horizon)
    else:
        r = ranks(queries, pairs_pos, item_emb, q_idx, pool, progress=progress)
    return {**summarise(r, ks, mrr_scale), "pool": pool_size, "ranks": r}


def evaluate_scores(
    score_fn: ScoreFn,
    num_items: int,
    pairs_q: np.ndarray,
    pairs_pos: np.ndarray,
    ks: Iterable[int] = (10, 50, 100),
    mrr_scale: float = 1.0,
    candidate_pool: int = 0,
    seed: int = 0,
    *,
    progress: bool = False,
) -> dict:
    """:func:`evaluate_embeddings` for a score function (same pool, same ranks semantics)."""
    ks = tuple(int(k) for k in ks)
    pool = sample_candidates(num_items, candidate_pool, seed)
    r = score_ranks(score_fn, pairs_q, pairs_pos, num_items, pool, progress=progress)
    return {**summarise(r, ks, mrr_scale), "pool": num_items if pool is None else len(pool), "ranks": r}


def random_pairs(
    num_items: int, num_pairs: int, seed: int, items: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` seeded uniform pairs (a, b) of distinct items (from ``items`` if given)."""
    pool = np.arange(num_items) if items is None else np.asarray(items)
    if len(pool) < 2:
        raise ValueError("need at least two items to sample pairs")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(pool), size=num_pairs)
    # b uniform over the other len(pool) - 1 items
    b = rng.integers(0, len(pool) - 1, size=num_pairs)
    b = b + (b >= a)
    return pool[a], pool[b]


def pair_cosine(item_emb: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) cosine similarity of item pairs (a[p], b[p])."""
    e = l2_normalise(item_emb)
    return np.einsum("pd,pd->p", e[a], e[b])


def similarity_spread(item_emb: np.ndarray, num_pairs: int, seed: int) -> dict:
    """Cosine similarity of random item pairs (paper Figure 4): kurtosis, moments and the sample.

    Items whose vector is all zeros (no information) are left out of the sample.
    """
    nonzero = np.flatnonzero(np.any(np.asarray(item_emb) != 0, axis=1))
    a, b = random_pairs(len(item_emb), num_pairs, seed, items=nonzero)
    return spread_summary(pair_cosine(item_emb, a, b))


def spread_summary(sims: np.ndarray) -> dict:
    """Excess kurtosis (Fisher, population form: normal -> 0; NaN for a constant sample), mean,
    standard deviation and the sample of (P,) pair similarities."""
    import scipy.stats

    sims = np.asarray(sims)
    # a constant sample has no kurtosis: NaN, without scipy's precision-loss warning
    kurtosis = float(scipy.stats.kurtosis(sims, fisher=True, bias=True)) if np.ptp(sims) > 0 else float("nan")
    return {"kurtosis": kurtosis, "mean": float(sims.mean()), "std": float(sims.std()), "similarities": sims}


def user_topk_metrics(
    score_fn: ScoreFn,
    users: np.ndarray,
    train_indptr: np.ndarray,
    train_indices: np.ndarray,
    test_indptr: np.ndarray,
    test_indices: np.ndarray,
    num_items: int,
    ks: Iterable[int] = (20,),
    *,
    block_rows: int | None = None,
    progress: bool = False,
) -> dict:
    """Recall@K and NDCG@K under full ranking, training items masked (NGCF/LightGCN protocol).

    Args:
      score_fn: ``score_fn(positions)`` -> (b, N) scores for the users at those positions of
        ``users``.
      users: (U,) user ids, rows of the two CSR matrices; users without test items are skipped.
      train_indptr, train_indices: CSR of each user's training items (masked from the ranking).
      test_indptr, test_indices: CSR of each user's held-out test items.
      num_items: N.
      ks: cut-offs.
      block_rows: users scored per call (default: about 64 MB of scores).

    Returns:
      ``{"recall_at_K": ..., "ndcg_at_K": ..., "users": evaluated user count}``; recall@K is
      ``|top-K ∩ test| / |test|`` and NDCG@K divides DCG by the ideal DCG of
      ``min(|test|, K)`` hits, both averaged over users.
    """
    ks = tuple(int(k) for k in ks)
    kmax = max(ks)
    users = np.asarray(users, dtype=np.int64)
    has_test = np.diff(test_indptr)[users] > 0
    positions = np.flatnonzero(has_test)
    sums = {metric_keys.recall(k): 0.0 for k in ks} | {metric_keys.ndcg(k): 0.0 for k in ks}
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))  # (kmax,)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[n] = IDCG with n hits
    step = block_rows or _block_rows(num_items)
    for lo in progress_bar(range(0, len(positions), step), desc="user ranking", disable=not progress, leave=False):
        pos = positions[lo : lo + step]
        s = np.array(score_fn(pos), dtype=np.float64)  # (b, N)
        test = np.zeros_like(s, dtype=bool)
        s[csr_rows(train_indptr, train_indices, users[pos])] = -np.inf
        test[csr_rows(test_indptr, test_indices, users[pos])] = True
        k_eff = min(kmax, num_items)
        top = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]  # (b, k) unordered
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)  # (b, k) best first
        rel = np.take_along_axis(test, top, axis=1).astype(np.float64)  # (b, k)
        n_test = test.sum(axis=1)
        for k in ks:
            kk = min(k, k_eff)
            sums[metric_keys.recall(k)] += float(np.sum(rel[:, :kk].sum(axis=1) / n_test))
            dcg = rel[:, :kk] @ discount[:kk]
            sums[metric_keys.ndcg(k)] += float(np.sum(dcg / ideal[np.minimum(n_test, k)]))
    n = len(positions)
    return {key: (val / n if n else float("nan")) for key, val in sums.items()} | {"users": int(n)}
