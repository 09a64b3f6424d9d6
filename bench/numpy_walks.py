"""Plain vectorised-numpy reference of the sampler's walks (benchmark baseline only).

The same walk definition as :mod:`pinsage_model.graph.sampler` (R walks per seed, up to L
item->collection->item hops, the walk ends after each hop with probability p, the seed
excluded, top T by count, weights normalised over the kept T), written the way one would
without a compiler: every walk of the batch advances one hop per numpy call, then ``np.unique``
counts (seed, item) pairs and a lexsort ranks them. It uses numpy's generator, so its samples
differ from the compiled kernels' (same distribution), and it breaks count ties by index where
the sampler uses a seeded hash: the tie order changes which tied items are kept, not the cost.
"""

from __future__ import annotations

import numpy as np

from pinsage_model.graph.csr import CSRGraph


def numpy_neighbourhoods(
    graph: CSRGraph,
    seeds: np.ndarray,
    *,
    num_walks: int,
    walk_length: int,
    restart_prob: float,
    top_t: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) int32 indices (-1 padded) and (B, T) float32 weights for a batch of seeds."""
    ip, ii = graph.item_indptr, graph.item_indices
    cp, ci = graph.coll_indptr, graph.coll_indices
    n_items = graph.num_items
    b = seeds.shape[0]
    walker_seed = np.repeat(np.arange(b), num_walks)  # (B*R,) row of each walk
    cur = np.repeat(seeds.astype(np.int64), num_walks)  # (B*R,) current item
    alive = ip[cur + 1] > ip[cur]  # isolated seeds never start
    cur, walker_seed = cur[alive], walker_seed[alive]
    vis_rows, vis_items = [], []
    for _ in range(walk_length):
        if cur.size == 0:
            break
        lo = ip[cur]
        coll = ii[lo + (rng.random(cur.size) * (ip[cur + 1] - lo)).astype(np.int64)]
        lo = cp[coll]
        nxt = ci[lo + (rng.random(cur.size) * (cp[coll + 1] - lo)).astype(np.int64)].astype(np.int64)
        vis_rows.append(walker_seed)
        vis_items.append(nxt)
        if restart_prob > 0:
            keep = rng.random(cur.size) >= restart_prob
            cur, walker_seed = nxt[keep], walker_seed[keep]
        else:
            cur = nxt
    rows = np.concatenate(vis_rows) if vis_rows else np.zeros(0, np.int64)
    items = np.concatenate(vis_items) if vis_items else np.zeros(0, np.int64)
    not_seed = items != seeds[rows]
    key, counts = np.unique(rows[not_seed] * n_items + items[not_seed], return_counts=True)
    row, item = key // n_items, key % n_items
    order = np.lexsort((item, -counts, row))  # by row, then count desc, then index asc
    row, item, counts = row[order], item[order], counts[order]
    starts = np.searchsorted(row, np.arange(b))
    rank = np.arange(row.size) - starts[row]
    top = rank < top_t
    indices = np.full((b, top_t), -1, np.int32)
    weights = np.zeros((b, top_t), np.float32)
    indices[row[top], rank[top]] = item[top]
    c = np.zeros((b, top_t), np.float64)
    c[row[top], rank[top]] = counts[top]
    total = c.sum(axis=1, keepdims=True)
    np.divide(c, total, out=c, where=total > 0)
    weights[:] = c
    return indices, weights
