"""Random-walk importance neighbourhoods (paper 3.2) and PPR hard negatives (paper 3.3).

A walk from seed item ``u`` repeats item -> collection -> item hops over the bipartite CSR
graph, picking a uniformly random edge at each side. After each hop the walk ends (the next
walk restarts at the seed) with probability ``restart_prob``; a walk never takes more than
``walk_length`` hops, so ``restart_prob = 0`` gives walks of exactly ``walk_length`` hops.
Each seed runs ``num_walks`` walks; every item reached after a hop is counted, the seed
itself excluded. The ``top_t`` most visited items are the neighbourhood and their counts,
L1-normalised over the kept items, are the importance-pooling weights. In the limit of many
walks the counts approximate Personalized PageRank from the seed (paper footnote 2).

Kernels are compiled with numba (``parallel=True, nogil=True``). Randomness comes from a
counter-based splitmix64 stream per walk, keyed by ``(seed, item, walk number)``, never from a
shared generator, so every row depends only on the graph, the item and ``seed``: the output is
identical whatever the thread count, the batch it came in, or the position in the batch.
Within a block of seeds all walks advance in lockstep, so the dependent memory loads of
different walks overlap instead of each walk waiting on its own cache misses.

Visit-count ties (common: at R=100, L=4, T=20 most seeds have count 1 at rank T) are broken
by a seeded bijective hash of the item id, salted per query, never by the index: otherwise the
lowest-index items would fill the tie slots of every neighbourhood and every hard-negative
band. Items are ordered by the int64 key ``(maxc - count) << 32 | perm(item)``, ascending, and
the item is recovered from the key's low 32 bits by the inverse permutation.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numba
import numpy as np
from numba import njit, prange

from pinsage_model.config import SamplerConfig
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# Stream salts keep the walk and sampling streams of one (seed, item) independent.
_SALT_WALK = 0x5EED_0001
_SALT_PICK = 0x5EED_0002
_SALT_TIE = 0x5EED_0003
# Walks a block holds in flight (lockstep); bounds the per-block scratch memory too.
_WALKERS_PER_BLOCK = 2048
# Seeds per kernel call in the chunked Python drivers (progress bars, bounded output buffers).
_CHUNK = 65536


# --------------------------------------------------------------------------------------------
# Random numbers: splitmix64 (Steele et al. 2014) used as a counter-based generator.


@njit(inline="always", nogil=True, cache=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", nogil=True, cache=True)
def _stream_key(seed, salt, a, b):
    """Start state of the stream for (seed, salt, a, b); distinct tuples give unrelated streams."""
    h = _mix(np.uint64(seed) * _GOLDEN + np.uint64(salt))
    h = _mix(h ^ (np.uint64(a) * _GOLDEN))
    return _mix(h ^ (np.uint64(b) + np.uint64(0x632BE59BD9B4E019)))


# Tie-break permutation of 32-bit ids: x -> (x ^ salt) * A, xorshift 16, * B, xorshift 16.
# A and B are the odd lowbias32 multipliers (Wellons, hash-prospector), so each step is a
# bijection of [0, 2**32): the xorshift by 16 of a 32-bit value is its own inverse and an odd
# multiplier is undone by its modular inverse.
_M32 = np.uint64(0xFFFFFFFF)
_PERM_A = np.uint64(0x7FEB352D)
_PERM_B = np.uint64(0x846CA68B)
_PERM_A_INV = np.uint64(pow(int(_PERM_A), -1, 2**32))
_PERM_B_INV = np.uint64(pow(int(_PERM_B), -1, 2**32))


@njit(inline="always", nogil=True, cache=True)
def _tie_salt(seed, query):
    """32-bit salt of the tie-break permutation for one query item; a new order per query."""
    return _stream_key(seed, _SALT_TIE, query, 0) & _M32


@njit(inline="always", nogil=True, cache=True)
def _permute(x, salt):
    """Bijection of 32-bit ids under ``salt``; ranks tied items in a seeded pseudo-random order."""
    y = ((np.uint64(x) ^ salt) * _PERM_A) & _M32
    y ^= y >> np.uint64(16)
    y = (y * _PERM_B) & _M32
    return y ^ (y >> np.uint64(16))


@njit(inline="always", nogil=True, cache=True)
def _unpermute(y, salt):
    """Inverse of :func:`_permute`: the id whose image under ``salt`` is ``y``."""
    y = np.uint64(y)
    y ^= y >> np.uint64(16)
    y = (y * _PERM_B_INV) & _M32
    y ^= y >> np.uint64(16)
    y = (y * _PERM_A_INV) & _M32
    return y ^ salt


@njit(inline="always", nogil=True, cache=True)
def _rank_key(count, maxc, item, salt):
    """int64 sort key: ascending order is (count desc, permuted item asc)."""
    return (np.int64(maxc - count) << 32) | np.int64(_permute(item, salt))


@njit(inline="always", nogil=True, cache=True)
def _below(z32, n):
    """Map a 32-bit random value to [0, n) by multiply-shift (Lemire); bias < n / 2**32."""
    return np.int64((z32 * np.uint64(n)) >> np.uint64(32))


# --------------------------------------------------------------------------------------------
# Compiled building blocks (serial; the drivers below parallelise over blocks of seeds).


@njit(nogil=True, cache=True)
def _walk_block(
    ip, ii, cp, ci, items, num_walks, walk_length, restart_prob, seed, visits, cur, state, active, pos, low
):
    """Run ``num_walks`` walks from each item of ``items`` in lockstep.

    Fills ``visits[s * W + b * num_walks + r]`` (W = ``len(items) * num_walks``) with the item
    reached by hop ``s`` of walk ``r`` of seed ``b``, or -1 once that walk has ended. ``cur``,
    ``state``, ``active``, ``pos`` and ``low`` are scratch arrays of at least W entries.

    Each hop is split into four passes over the live walks, one per dependent memory load
    (item row start, collection, collection row start, item), so the loads inside a pass are
    independent and the CPU keeps many cache misses in flight: a random walk over a large
    graph is bound by memory latency, not arithmetic.
    """
    nw = items.shape[0] * num_walks
    visits[: nw * walk_length] = -1
    n_active = _start_walks(ip, items, num_walks, seed, cur, state, active)
    restart = restart_prob > 0.0
    for s in range(walk_length):
        for j in range(n_active):  # pass 1: item row -> edge position
            w = active[j]
            v = cur[w]
            st = state[w] + _GOLDEN
            state[w] = st
            z = _mix(st)
            lo = ip[v]
            pos[j] = lo + _below(z >> np.uint64(32), ip[v + 1] - lo)
            low[j] = z & np.uint64(0xFFFFFFFF)
        for j in range(n_active):  # pass 2: edge -> collection
            cur[active[j]] = ii[pos[j]]
        for j in range(n_active):  # pass 3: collection row -> edge position
            c = cur[active[j]]
            lo = cp[c]
            # A collection reached from an item always holds that item, so its degree is >= 1.
            pos[j] = lo + _below(low[j], cp[c + 1] - lo)
        row = s * nw
        n_next = 0
        for j in range(n_active):  # pass 4: edge -> item; the walk ends with prob restart_prob
            w = active[j]
            nxt = ci[pos[j]]
            visits[row + w] = nxt
            cur[w] = nxt
            if restart:
                st = state[w] + _GOLDEN
                state[w] = st
                if np.float64(_mix(st) >> np.uint64(11)) * (1.0 / 9007199254740992.0) < restart_prob:
                    continue
            active[n_next] = w
            n_next += 1
        n_active = n_next
        if n_active == 0:
            break


@njit(nogil=True, cache=True)
def _start_walks(ip, items, num_walks, seed, cur, state, active):
    """Put ``num_walks`` walks on each seed of ``items`` that has an edge; returns how many are live."""
    n_active = 0
    for b in range(items.shape[0]):
        u = items[b]
        if ip[u + 1] == ip[u]:
            continue  # isolated seed: no walk can start
        for r in range(num_walks):
            w = b * num_walks + r
            cur[w] = u
            state[w] = _stream_key(seed, _SALT_WALK, u, r)
            active[n_active] = w
            n_active += 1
    return n_active


@njit(nogil=True, cache=True)
def _count_visits(visits, nw, walk_length, first, num_walks, exclude, keys, vals, slots, out_items, out_counts):
    """Distinct items visited by walks ``first .. first + num_walks - 1`` and their counts.

    ``visits`` is laid out as ``_walk_block`` writes it (``nw`` walks per hop row); entries
    < 0 and ``exclude`` (the seed) are skipped. Uses the open-addressing table
    ``keys``/``vals`` (power-of-two size, all keys -1 on entry and on return). Returns the
    number of distinct items written to ``out_items``/``out_counts`` in first-seen order.
    """
    mask = keys.shape[0] - 1
    nd = 0
    for s in range(walk_length):
        base = s * nw + first
        for k in range(base, base + num_walks):
            v = visits[k]
            if v < 0 or v == exclude:
                continue
            h = (np.int64(v) * 2654435761) & mask
            while keys[h] != -1 and keys[h] != v:
                h = (h + 1) & mask
            if keys[h] == -1:
                keys[h] = v
                vals[h] = 0
                slots[nd] = h
                nd += 1
            vals[h] += 1
    for i in range(nd):
        h = slots[i]
        out_items[i] = keys[h]
        out_counts[i] = vals[h]
        keys[h] = -1
    return nd


@njit(nogil=True, cache=True)
def _smallest_k(a, n, k):
    """Rearrange ``a[:n]`` in place so that ``a[:k]`` holds its ``k`` smallest values (any order).

    Quickselect with a median-of-three pivot; O(n) on average and allocation-free.
    """
    lo = 0
    hi = n - 1
    target = k - 1
    while lo < hi:
        x = a[lo]
        y = a[(lo + hi) >> 1]
        z = a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        # Now a[lo..j] <= pivot <= a[i..hi], and everything strictly between j and i equals pivot.
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break


@njit(nogil=True, cache=True)
def _insertion_sort(a, n):
    """Sort ``a[:n]`` in place; for the few (<= T) keys kept per seed it beats a general sort."""
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@njit(nogil=True, cache=True)
def _top_t(items, counts, nd, top_t, salt, hist, ties, sel, out_idx, out_w):
    """Write the ``top_t`` items by (count desc, permuted item asc) and their normalised counts.

    Sort keys are :func:`_rank_key`, so ascending key order is the wanted order. A count
    histogram gives the threshold count; every item above it is kept and only the tie group at
    the threshold needs a selection, never a sort of every distinct item. ``hist``, ``ties``
    (int64) and ``sel`` are scratch buffers (no allocation per seed).

    Returns the number of slots decided by the tie-break: the slots filled from the tie group
    at the threshold count when that group held more items than slots were left, else 0.
    """
    if nd == 0:
        return 0
    maxc = 0
    for i in range(nd):
        if counts[i] > maxc:
            maxc = counts[i]
    k = min(nd, top_t)
    ns = 0
    tied = 0
    if nd <= top_t:
        for i in range(nd):
            sel[i] = _rank_key(counts[i], maxc, items[i], salt)
        ns = nd
    else:
        hist[: maxc + 1] = 0
        for i in range(nd):
            hist[counts[i]] += 1
        cum = 0
        thresh = maxc
        while cum + hist[thresh] < top_t:  # terminates: the histogram sums to nd > top_t
            cum += hist[thresh]
            thresh -= 1
        need = top_t - cum  # items taken from the tie group at ``thresh``
        nt = 0
        for i in range(nd):
            c = counts[i]
            if c > thresh:
                sel[ns] = _rank_key(c, maxc, items[i], salt)
                ns += 1
            elif c == thresh:
                ties[nt] = _rank_key(c, maxc, items[i], salt)  # same high bits: order by hash
                nt += 1
        if nt > need:
            _smallest_k(ties, nt, need)
            tied = need
        for i in range(need):
            sel[ns] = ties[i]
            ns += 1
    _insertion_sort(sel, k)
    total = 0
    for i in range(k):
        total += maxc - (sel[i] >> 32)
    for i in range(k):
        out_idx[i] = np.int32(_unpermute(sel[i] & 0xFFFFFFFF, salt))
        out_w[i] = np.float32(np.float64(maxc - (sel[i] >> 32)) / total)
    return tied


@njit(nogil=True, cache=True)
def _table_size(n):
    """Power-of-two hash-table size for up to ``n`` distinct keys (load factor <= 0.5)."""
    size = 64
    while size < 2 * n:
        size *= 2
    return size


@njit(nogil=True, cache=True)
def _block_walks(ip, ii, cp, ci, items, num_walks, walk_length, restart_prob, seed):
    """Walk from a block of seeds (:func:`_walk_block`, with the block's own walk scratch); returns
    the number of walks, the ``visits`` and the block's scratch for :func:`_count_visits`: (nw,
    visits, hash keys, hash values, slots, items, counts)."""
    nw = items.shape[0] * num_walks
    visits = np.empty(nw * walk_length, np.int32)
    cur = np.empty(nw, np.int32)
    state = np.empty(nw, np.uint64)
    active = np.empty(nw, np.int64)
    pos = np.empty(nw, np.int64)
    low = np.empty(nw, np.uint64)
    _walk_block(ip, ii, cp, ci, items, num_walks, walk_length, restart_prob, seed, visits, cur, state, active, pos, low)
    per_seed = num_walks * walk_length
    tsize = _table_size(per_seed)
    keys = np.full(tsize, -1, np.int32)
    vals = np.empty(tsize, np.int32)
    slots = np.empty(per_seed, np.int64)
    return nw, visits, keys, vals, slots, np.empty(per_seed, np.int32), np.empty(per_seed, np.int32)


# --------------------------------------------------------------------------------------------
# Parallel drivers: one prange iteration per block of seeds, each with its own scratch.


@njit(parallel=True, nogil=True, cache=True)
def _neighbourhood_kernel(
    ip, ii, cp, ci, seeds, num_walks, walk_length, restart_prob, top_t, seed, block, out_idx, out_w, out_tied
):
    n = seeds.shape[0]
    per_seed = num_walks * walk_length
    for bi in prange((n + block - 1) // block):
        start, stop = bi * block, min(n, bi * block + block)
        walks = _block_walks(ip, ii, cp, ci, seeds[start:stop], num_walks, walk_length, restart_prob, seed)
        nw, visits, keys, vals, slots, items, counts = walks
        hist = np.empty(per_seed + 1, np.int32)
        ties = np.empty(per_seed, np.int64)
        sel = np.empty(top_t, np.int64)
        for b in range(stop - start):
            u = seeds[start + b]
            nd = _count_visits(visits, nw, walk_length, b * num_walks, num_walks, u, keys, vals, slots, items, counts)
            out_tied[start + b] = _top_t(
                items, counts, nd, top_t, _tie_salt(seed, u), hist, ties, sel, out_idx[start + b], out_w[start + b]
            )


@njit(parallel=True, nogil=True, cache=True)
def _visit_count_kernel(
    ip, ii, cp, ci, seeds, num_walks, walk_length, restart_prob, seed, block, out_items, out_counts, out_nd
):
    """Per seed: distinct visited items sorted by index, with counts, into padded rows."""
    n = seeds.shape[0]
    for bi in prange((n + block - 1) // block):
        start, stop = bi * block, min(n, bi * block + block)
        walks = _block_walks(ip, ii, cp, ci, seeds[start:stop], num_walks, walk_length, restart_prob, seed)
        nw, visits, keys, vals, slots, items, counts = walks
        for b in range(stop - start):
            nd = _count_visits(
                visits, nw, walk_length, b * num_walks, num_walks, seeds[start + b], keys, vals, slots, items, counts
            )
            order = np.argsort(items[:nd], kind="mergesort")
            row = start + b
            for i in range(nd):
                out_items[row, i] = items[order[i]]
                out_counts[row, i] = counts[order[i]]
            out_nd[row] = nd


@njit(parallel=True, nogil=True, cache=True)
def _hard_negative_kernel(
    ip, ii, cp, ci, queries, num_walks, walk_length, restart_prob, seed, block, lo, hi, num, ex_ptr, ex_idx, out
):
    """Per query: rank visited items by (count desc, permuted item asc), sample ``num`` in ranks [lo, hi)."""
    n = queries.shape[0]
    for bi in prange((n + block - 1) // block):
        start, stop = bi * block, min(n, bi * block + block)
        walks = _block_walks(ip, ii, cp, ci, queries[start:stop], num_walks, walk_length, restart_prob, seed)
        nw, visits, keys, vals, slots, items, counts = walks
        band = np.empty(max(0, min(hi, num_walks * walk_length) - lo), np.int32)  # at most R * L items are ranked
        for b in range(stop - start):
            row = start + b
            q = queries[row]
            nd = _count_visits(visits, nw, walk_length, b * num_walks, num_walks, q, keys, vals, slots, items, counts)
            if nd > lo:
                excl = np.sort(ex_idx[ex_ptr[row] : ex_ptr[row + 1]])
                _sample_band(items, counts, nd, seed, row, q, lo, hi, num, excl, band, out)


@njit(nogil=True, cache=True)
def _sample_band(items, counts, nd, seed, row, q, lo, hi, num, excl, band, out):
    """Rank the ``nd`` visited ``items`` by (count desc, permuted item asc) and write a uniform
    sample of ``num`` of ranks [lo, hi), less the sorted ``excl``, into ``out[row]``."""
    maxc = 0
    for i in range(nd):
        maxc = max(maxc, counts[i])
    salt = _tie_salt(seed, q)
    key = np.empty(nd, np.int64)
    for i in range(nd):
        key[i] = _rank_key(counts[i], maxc, items[i], salt)
    # Only ranks [lo, stop) are read, in rank order: select the stop smallest keys, then the lo
    # smallest of those, and sort the band between (keys are distinct: they hold the item), which
    # is the full sort's band at a fraction of its cost (ranks below lo are most of the keys).
    stop = min(hi, nd)
    if stop < nd:
        _smallest_k(key, nd, stop)
    if lo > 0:
        _smallest_k(key, stop, lo)
    key[lo:stop].sort()
    m = 0
    for r in range(lo, stop):
        v = np.int32(_unpermute(key[r] & 0xFFFFFFFF, salt))
        p = np.searchsorted(excl, v)
        if p < excl.shape[0] and excl[p] == v:
            continue
        band[m] = v
        m += 1
    # Partial Fisher-Yates: a uniform sample without replacement of min(num, m) items.
    st = _stream_key(seed, _SALT_PICK, row, q)
    for i in range(min(num, m)):
        st = st + _GOLDEN
        j = i + _below(_mix(st) >> np.uint64(32), m - i)
        tmp = band[i]
        band[i] = band[j]
        band[j] = tmp
        out[row, i] = band[i]


# --------------------------------------------------------------------------------------------
# Public API.


@contextlib.contextmanager
def _threads(num_threads: int) -> Iterator[None]:
    """Run numba parallel regions on ``num_threads`` threads (0 = all), restoring afterwards.

    Blocks of seeds are handed out one at a time (chunk size 1) rather than split evenly up
    front, so a thread slowed by other processes on the same cores does not hold up the rest.
    """
    most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # numba.config sets it at import
    n = most if num_threads <= 0 else min(num_threads, most)
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    old_chunk = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(old_chunk)
        numba.set_num_threads(old)


def _arrays(graph: CSRGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # np.asarray drops the np.memmap subclass (numba types plain arrays) without copying.
    return (
        np.asarray(graph.item_indptr, dtype=np.int64),
        np.asarray(graph.item_indices, dtype=np.int32),
        np.asarray(graph.coll_indptr, dtype=np.int64),
        np.asarray(graph.coll_indices, dtype=np.int32),
    )


def _check_seeds(graph: CSRGraph, seeds: np.ndarray, name: str) -> np.ndarray:
    seeds = np.ascontiguousarray(seeds)
    if seeds.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of item indices, got shape {seeds.shape}")
    if seeds.size and not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices, got dtype {seeds.dtype}")
    if seeds.size and (seeds.min() < 0 or seeds.max() >= graph.num_items):
        bad = int(np.flatnonzero((seeds < 0) | (seeds >= graph.num_items))[0])
        raise ValueError(f"{name}[{bad}] = {seeds[bad]} is not an item index in [0, {graph.num_items})")
    return seeds.astype(np.int32, copy=False)


def _seed64(seed: int) -> int:
    """Any Python int as a non-negative int64 for the kernels (negative seeds are valid too)."""
    return int(seed) & 0x7FFF_FFFF_FFFF_FFFF


def _check_walks(num_walks: int, walk_length: int, restart_prob: float) -> None:
    if num_walks < 1 or walk_length < 1:
        raise ValueError(f"num_walks and walk_length must be >= 1, got {num_walks} and {walk_length}")
    if not 0.0 <= restart_prob < 1.0:
        raise ValueError(f"restart_prob must be in [0, 1), got {restart_prob}")


def _block(num_walks: int, n: int) -> int:
    """Seeds per lockstep block: ~_WALKERS_PER_BLOCK walks, and >= 4 blocks per thread when possible."""
    by_walkers = max(1, _WALKERS_PER_BLOCK // num_walks)
    by_balance = max(1, -(-n // (4 * numba.get_num_threads())))
    return max(1, min(by_walkers, by_balance, 64))


def sample_neighbourhoods(
    graph: CSRGraph,
    seeds: np.ndarray,
    *,
    num_walks: int,
    walk_length: int,
    restart_prob: float,
    top_t: int,
    seed: int,
    num_threads: int = 0,
    tie_slots: np.ndarray | None = None,
) -> Neighbourhoods:
    """Importance neighbourhoods of a batch of seed items (paper 3.2).

    Args:
      graph: bipartite item-collection graph (arrays may be memory-mapped).
      seeds: (B,) item indices; duplicates allowed.
      num_walks: walks per seed (R).
      walk_length: maximum item->collection->item hops per walk (L).
      restart_prob: probability that a walk ends after each hop (p); 0 gives exactly L hops.
      top_t: neighbourhood size (T).
      seed: random seed; a row depends only on (graph, item, seed).
      num_threads: numba threads, 0 = all.
      tie_slots: optional (B,) int32 output: per seed, how many of its T slots the tie-break
        decided (filled from the tie group at the threshold count when that group held more
        items than slots were left; 0 when counts alone decide).

    Returns:
      ``Neighbourhoods`` with (B, T) ``indices`` int32 ordered by visit count (desc; ties in a
      seeded hash order of the item id, salted per seed item), -1 padded, and (B, T)
      ``weights`` float32 summing to 1 over unpadded entries. Seeds that reach no other item
      (degree 0, or only themselves) get fully padded rows.
    """
    _check_walks(num_walks, walk_length, restart_prob)
    if top_t < 1:
        raise ValueError(f"top_t must be >= 1, got {top_t}")
    seeds = _check_seeds(graph, seeds, "seeds")
    tie_slots = _tie_slots_out(tie_slots, seeds.shape)
    out_idx = np.full((seeds.shape[0], top_t), -1, np.int32)  # (B, T)
    out_w = np.zeros((seeds.shape[0], top_t), np.float32)  # (B, T)
    if seeds.size:
        with _threads(num_threads):
            _neighbourhood_kernel(
                *_arrays(graph),
                seeds,
                num_walks,
                walk_length,
                float(restart_prob),
                top_t,
                _seed64(seed),
                _block(num_walks, seeds.size),
                out_idx,
                out_w,
                tie_slots,
            )
    return Neighbourhoods(indices=out_idx, weights=out_w)


def _tie_slots_out(tie_slots: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The caller's ``tie_slots`` output, checked, or a scratch one."""
    if tie_slots is None:
        return np.empty(shape, np.int32)
    if tie_slots.shape != shape or tie_slots.dtype != np.int32 or not tie_slots.flags.c_contiguous:
        raise ValueError(
            f"tie_slots must be a contiguous int32 array of shape {shape}, got {tie_slots.dtype} {tie_slots.shape}"
        )
    return tie_slots


def compute_neighbourhoods(
    graph: CSRGraph,
    cfg: SamplerConfig,
    items: np.ndarray | None = None,
    progress: bool = True,
    tie_slots: np.ndarray | None = None,
) -> Neighbourhoods:
    """Neighbourhoods for every item (or the given item ids), in chunks with a progress bar.

    Rows are identical to :func:`sample_neighbourhoods` on the same items with the same
    config; items of degree 0 get fully padded rows. ``tie_slots``, when given, is an (n,)
    int32 output filled as in :func:`sample_neighbourhoods`.
    """
    from pinsage_model.progress import progress_bar

    items = np.arange(graph.num_items, dtype=np.int32) if items is None else _check_seeds(graph, items, "items")
    n = items.shape[0]
    out_idx = np.full((n, cfg.top_t), -1, np.int32)  # (N, T)
    out_w = np.zeros((n, cfg.top_t), np.float32)  # (N, T)
    with progress_bar(total=n, desc="neighbourhoods", unit="item", disable=not progress) as bar:
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            part = sample_neighbourhoods(
                graph,
                items[start:stop],
                num_walks=cfg.num_walks,
                walk_length=cfg.walk_length,
                restart_prob=cfg.restart_prob,
                top_t=cfg.top_t,
                seed=cfg.seed,
                num_threads=cfg.num_threads,
                tie_slots=None if tie_slots is None else tie_slots[start:stop],
            )
            out_idx[start:stop] = part.indices
            out_w[start:stop] = part.weights
            bar.update(stop - start)
    return Neighbourhoods(indices=out_idx, weights=out_w)


def visit_counts(
    graph: CSRGraph,
    seeds: np.ndarray,
    *,
    num_walks: int,
    walk_length: int,
    restart_prob: float,
    seed: int,
    num_threads: int = 0,
):
    """Raw visit counts of the same walks (Pixie-style scores), the seed excluded.

    Returns:
      ``scipy.sparse.csr_matrix`` (len(seeds), N) int64 with sorted column indices; row b
      holds how often each item was reached from ``seeds[b]``.
    """
    import scipy.sparse as sp

    _check_walks(num_walks, walk_length, restart_prob)
    seeds = _check_seeds(graph, seeds, "seeds")
    per_seed = num_walks * walk_length
    # Bound the padded per-chunk buffers to ~64 MB whatever R * L is.
    chunk = max(1, min(_CHUNK, (64 << 20) // (8 * per_seed)))
    rows_items, rows_counts, nds = [], [], []
    with _threads(num_threads):
        for start in range(0, seeds.shape[0], chunk):
            part = seeds[start : start + chunk]
            items = np.empty((part.size, per_seed), np.int32)
            counts = np.empty((part.size, per_seed), np.int32)
            nd = np.zeros(part.size, np.int64)
            _visit_count_kernel(
                *_arrays(graph),
                part,
                num_walks,
                walk_length,
                float(restart_prob),
                _seed64(seed),
                _block(num_walks, part.size),
                items,
                counts,
                nd,
            )
            keep = np.arange(per_seed)[None, :] < nd[:, None]
            rows_items.append(items[keep])
            rows_counts.append(counts[keep].astype(np.int64))
            nds.append(nd)
    nd = np.concatenate(nds) if nds else np.zeros(0, np.int64)
    indptr = np.zeros(seeds.shape[0] + 1, np.int64)
    np.cumsum(nd, out=indptr[1:])
    data = np.concatenate(rows_counts) if rows_counts else np.zeros(0, np.int64)
    indices = np.concatenate(rows_items) if rows_items else np.zeros(0, np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(seeds.shape[0], graph.num_items))


def band_ranks(band: tuple[float, float], num_items: int) -> tuple[int, int]:
    """Half-open rank range [floor(lo N), floor(hi N)) of a band given as fractions of N."""
    lo, hi = (int(math.floor(b * num_items)) for b in band)
    hi = min(hi, num_items)  # no item can rank at N or beyond
    if not 0 <= lo < hi:
        raise ValueError(f"hard-negative band {band} gives the empty rank range [{lo}, {hi}) for N = {num_items}")
    return lo, hi


def hard_negatives(
    graph: CSRGraph,
    queries: np.ndarray,
    *,
    num: int,
    band: tuple[float, float],
    exclude_indptr: np.ndarray | None,
    exclude_indices: np.ndarray | None,
    num_walks: int,
    restart_prob: float,
    seed: int,
    walk_length: int | None = None,
    num_threads: int = 0,
) -> np.ndarray:
    """Hard negatives from a band of Monte Carlo Personalized PageRank ranks (paper 3.3).

    PPR from each query is estimated by the visit counts of ``num_walks`` walks with restart
    (the query excluded). Visited items are ranked by count (ties in a seeded hash order of
    the item id, salted per query, as in :func:`sample_neighbourhoods`); items never
    visited have no PPR estimate and are never ranked, so a band beyond the visited items
    yields fewer candidates. From ranks [lo, hi) the known positives are removed, and ``num``
    items are drawn uniformly without replacement; slots the band cannot fill are -1.

    Args:
      graph: the (training) graph.
      queries: (B,) query item indices.
      num: hard negatives per query.
      band: (lo, hi), fractions of N: ranks [floor(lo N), floor(hi N)) (0-based).
      exclude_indptr: (B + 1,) CSR row pointers of each query's known positives, or None.
      exclude_indices: item indices of those positives, or None.
      num_walks: walks per query.
      restart_prob: restart probability, > 0 unless ``walk_length`` is given.
      seed: random seed; row b depends only on (graph, queries[b], b, seed).
      walk_length: cap on hops per walk; None picks the length whose survival
        probability (1 - p)**L drops below 1e-3.
      num_threads: numba threads, 0 = all.

    Returns:
      (B, num) int32 item indices, -1 where the band is exhausted.
    """
    if walk_length is None:
        walk_length = _survival_length(restart_prob)
    _check_walks(num_walks, walk_length, restart_prob)
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    queries = _check_seeds(graph, queries, "queries")
    lo, hi = band_ranks(band, graph.num_items)
    exclusions = _exclusions(exclude_indptr, exclude_indices, queries.shape[0])  # (indptr, indices)
    out = np.full((queries.shape[0], num), -1, np.int32)  # (B, num)
    if queries.size and num:
        walks = (num_walks, walk_length, float(restart_prob), _seed64(seed), _block(num_walks, queries.size))
        with _threads(num_threads):
            _hard_negative_kernel(*_arrays(graph), queries, *walks, lo, hi, num, *exclusions, out)
    return out


def _survival_length(restart_prob: float) -> int:
    """The walk length whose survival probability (1 - p)**L drops below 1e-3."""
    if restart_prob <= 0:
        raise ValueError("hard_negatives needs restart_prob > 0 or an explicit walk_length")
    return max(1, math.ceil(math.log(1e-3) / math.log(1.0 - restart_prob)))


def _exclusions(
    indptr: np.ndarray | None, indices: np.ndarray | None, num_queries: int
) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous (int64 indptr, int32 indices) of each query's excluded items (none if None), checked."""
    if indptr is None:
        indptr = np.zeros(num_queries + 1, np.int64)
        indices = np.zeros(0, np.int32)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    if indptr.shape != (num_queries + 1,) or indptr[-1] != indices.shape[0]:
        raise ValueError(
            f"exclude_indptr must have len(queries) + 1 = {num_queries + 1} entries ending at "
            f"len(exclude_indices) = {indices.shape[0]}, got shape {indptr.shape}"
        )
    return indptr, indices
