"""Random-walk neighbourhoods and PPR hard negatives: invariants, expectations, determinism."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

from pinsage_model.config import SamplerConfig
from pinsage_model.graph import sampler
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods


def graph_from_collections(collections: list[list[int]], num_items: int) -> CSRGraph:
    """A graph whose collection c holds the items ``collections[c]``."""
    items = [i for members in collections for i in members]
    colls = [c for c, members in enumerate(collections) for _ in members]
    return CSRGraph.from_edges(np.array(items), np.array(colls), num_items, len(collections)).validate()


@pytest.fixture(scope="module")
def components_graph() -> tuple[CSRGraph, np.ndarray]:
    """Three disconnected random components plus isolated items; returns (graph, component id).

    Items 0-39 / 40-79 / 80-119 form the components; 120 and 121 have no collection; item 122
    is alone in its own collection (it can only reach itself).
    """
    rng = np.random.default_rng(7)
    collections = []
    for base in (0, 40, 80):
        for _ in range(15):
            size = int(rng.integers(2, 9))
            collections.append(sorted(base + rng.choice(40, size, replace=False)))
        # Triplets cover every item and the hub joins the triplets: each component is connected.
        collections.extend(list(range(base + j, min(base + 40, base + j + 3))) for j in range(0, 40, 3))
        collections.append(list(range(base, base + 40, 3)))
    collections.append([122])
    component = np.repeat([0, 1, 2], 40).tolist() + [3, 4, 5]
    return graph_from_collections(collections, 123), np.array(component)


M32 = 2**32 - 1


def permute_reference(x: int, salt: int) -> int:
    """The documented tie-break permutation in plain Python ints (independent of the kernel)."""
    y = ((x ^ salt) * 0x7FEB352D) & M32
    y ^= y >> 16
    y = (y * 0x846CA68B) & M32
    return y ^ (y >> 16)


def tie_keys(items: np.ndarray, seed: int, query: int) -> np.ndarray:
    """Each item's position in query ``query``'s tie-break order under ``seed``."""
    salt = int(sampler._tie_salt(sampler._seed64(seed), query))
    return np.array([permute_reference(int(i), salt) for i in items], dtype=np.int64)


def rank_by_counts(counts_row: np.ndarray, seed: int, query: int) -> np.ndarray:
    """Item indices with count > 0 in (count desc, tie-break permutation asc) order."""
    visited = np.flatnonzero(counts_row > 0)
    return visited[np.lexsort((tie_keys(visited, seed, query), -counts_row[visited]))]


def tied_slots(counts_row: np.ndarray, top_t: int) -> int:
    """Top-T slots filled from the tie group at the threshold count when it overflows them."""
    c = np.sort(counts_row[counts_row > 0])[::-1]
    if len(c) <= top_t:
        return 0
    thresh = c[top_t - 1]
    left = top_t - int((c > thresh).sum())
    return left if int((c == thresh).sum()) > left else 0


WALKS = dict(num_walks=60, walk_length=4, restart_prob=0.4)


def test_neighbourhood_invariants_on_disconnected_components(components_graph):
    graph, component = components_graph
    seeds = np.arange(graph.num_items)
    nb = sampler.sample_neighbourhoods(graph, seeds, **WALKS, top_t=12, seed=3)
    nb.validate()
    assert nb.indices.shape == (123, 12) and nb.weights.shape == (123, 12)
    mask = nb.mask
    for row, u in enumerate(seeds):
        kept = nb.indices[row][mask[row]]
        w = nb.weights[row][mask[row]]
        # Padding only at the tail, with weight 0.
        assert mask[row].sum() == 0 or mask[row][: len(kept)].all()
        assert np.all(nb.weights[row][~mask[row]] == 0)
        assert u not in kept
        assert len(set(kept.tolist())) == len(kept)
        assert np.all(component[kept] == component[u]), f"seed {u} reached another component"
        if len(kept):
            assert w.sum() == pytest.approx(1.0, abs=1e-6)
            # Count desc, ties in the seeded permutation order of the seed item u.
            order = np.lexsort((tie_keys(kept, 3, u), -w))
            assert np.array_equal(order, np.arange(len(kept)))
    # Degree 0 and the item alone in its collection have nothing to aggregate.
    for u in (120, 121, 122):
        assert np.all(nb.indices[u] == -1) and np.all(nb.weights[u] == 0)
    # Every component item shares a collection with others, so it has neighbours.
    assert mask[:120].any(axis=1).all()
    assert mask[:120].sum(axis=1).mean() > 10


def test_top_t_is_the_top_of_the_raw_visit_counts(components_graph):
    """The kept items, their order and weights follow exactly from the same walks' counts."""
    graph, _ = components_graph
    seeds = np.array([0, 5, 41, 80, 119, 120, 122, 5])
    counts = sampler.visit_counts(graph, seeds, **WALKS, seed=11).toarray()  # (B, N)
    for top_t in (1, 3, 12, 40):
        tied = np.full(len(seeds), -1, np.int32)
        nb = sampler.sample_neighbourhoods(graph, seeds, **WALKS, top_t=top_t, seed=11, tie_slots=tied)
        for row in range(len(seeds)):
            assert tied[row] == tied_slots(counts[row], top_t)
            ranked = rank_by_counts(counts[row], 11, seeds[row])[:top_t]
            expect_idx = np.full(top_t, -1)
            expect_idx[: len(ranked)] = ranked
            expect_w = np.zeros(top_t)
            expect_w[: len(ranked)] = counts[row, ranked] / max(1, counts[row, ranked].sum())
            np.testing.assert_array_equal(nb.indices[row], expect_idx)
            np.testing.assert_allclose(nb.weights[row], expect_w, rtol=1e-6)


def test_visit_counts_exclude_the_seed_and_stay_in_component(components_graph):
    graph, component = components_graph
    seeds = np.array([3, 50, 99, 121])
    vc = sampler.visit_counts(graph, seeds, **WALKS, seed=0)
    assert isinstance(vc, sp.csr_matrix) and vc.shape == (4, 123)
    assert vc.has_sorted_indices
    dense = vc.toarray()
    for row, u in enumerate(seeds):
        assert dense[row, u] == 0
        assert np.all(component[np.flatnonzero(dense[row])] == component[u])
    assert dense[3].sum() == 0  # isolated item 121
    # With walk_length 4 at most 60 * 4 hops happen.
    assert dense.sum(axis=1).max() <= 240


def test_star_collection_hand_computed_expectation():
    """Seed 0 in one collection {0, 1, 2, 3}; item 3 is also in {3, 4}.

    One hop from item 0 must go through collection 0 and lands on 0, 1, 2 or 3 with
    probability 1/4 each; with p = 0 and L = 1, items 1-3 are each ~Binomial(R, 1/4) and item
    4 is unreachable.
    """
    graph = graph_from_collections([[0, 1, 2, 3], [3, 4]], 5)
    r = 40000
    counts = sampler.visit_counts(graph, np.array([0]), num_walks=r, walk_length=1, restart_prob=0.0, seed=5).toarray()[
        0
    ]
    sd = np.sqrt(r * 0.25 * 0.75)
    assert counts[0] == 0 and counts[4] == 0
    assert np.all(np.abs(counts[1:4] - r / 4) < 5 * sd)
    nb = sampler.sample_neighbourhoods(
        graph, np.array([0]), num_walks=r, walk_length=1, restart_prob=0.0, top_t=4, seed=5
    )
    assert set(nb.indices[0, :3].tolist()) == {1, 2, 3} and nb.indices[0, 3] == -1
    np.testing.assert_allclose(nb.weights[0, :3], 1 / 3, atol=0.02)


def test_restart_probability_sets_the_expected_walk_length():
    """Two items in one collection: every hop lands on the other item with probability 1/2.

    A walk takes hop k + 1 only if it survived k restart draws, so the expected hops per walk
    are sum_{k<L} (1 - p)^k; with p = 0.5 and L = 3 that is 1.75, and the other item is
    expected 0.875 R times. With p = 0 it is exactly L hops: 1.5 R visits.
    """
    graph = graph_from_collections([[0, 1]], 2)
    r = 40000
    seeds = np.array([0])
    c = sampler.visit_counts(graph, seeds, num_walks=r, walk_length=3, restart_prob=0.5, seed=1).toarray()[0, 1]
    assert abs(c - 0.875 * r) < 0.02 * r
    c0 = sampler.visit_counts(graph, seeds, num_walks=r, walk_length=3, restart_prob=0.0, seed=1).toarray()[0, 1]
    assert abs(c0 - 1.5 * r) < 5 * np.sqrt(3 * r * 0.25)


def ppr_power_iteration(graph: CSRGraph, u: int, restart: float, iters: int = 300) -> np.ndarray:
    """Exact PPR of the item->collection->item walk from u (restart before each hop)."""
    n, c = graph.num_items, graph.num_collections
    items = np.repeat(np.arange(n), graph.item_degree())
    a = sp.csr_matrix((np.ones(graph.num_edges), (items, graph.item_indices)), shape=(n, c))
    # P[u, v] = sum_c 1/deg(u) * 1/|c| * [v in c]: the item-to-item transition of one hop.
    p = sp.diags(1.0 / np.maximum(graph.item_degree(), 1)) @ a @ sp.diags(1.0 / graph.collection_degree()) @ a.T
    e = np.zeros(n)
    e[u] = 1.0
    pi = e.copy()
    for _ in range(iters):
        pi = restart * e + (1 - restart) * (p.T @ pi)
    return pi


def test_top_t_order_agrees_with_exact_ppr(components_graph):
    graph, _ = components_graph
    for u in (0, 45, 97):
        pi = ppr_power_iteration(graph, u, restart=0.3)
        nb = sampler.sample_neighbourhoods(
            graph, np.array([u]), num_walks=100000, walk_length=40, restart_prob=0.3, top_t=10, seed=2
        )
        top = nb.indices[0]
        exact_top = np.argsort(-np.where(np.arange(graph.num_items) == u, -1, pi), kind="stable")[:10]
        rho = spearmanr(nb.weights[0], pi[top]).statistic
        assert rho >= 0.9, f"seed {u}: rank correlation {rho:.3f}"
        assert len(set(top.tolist()) & set(exact_top.tolist())) >= 8


def test_same_seed_same_output_on_one_and_two_threads(components_graph):
    graph, _ = components_graph
    seeds = np.arange(graph.num_items)
    tied = [np.zeros(graph.num_items, np.int32) for _ in range(2)]
    runs = [
        sampler.sample_neighbourhoods(graph, seeds, **WALKS, top_t=8, seed=9, num_threads=t, tie_slots=tied[t - 1])
        for t in (1, 2)
    ]
    np.testing.assert_array_equal(runs[0].indices, runs[1].indices)
    np.testing.assert_array_equal(runs[0].weights, runs[1].weights)
    np.testing.assert_array_equal(tied[0], tied[1])
    assert tied[0].sum() > 0  # ties happen here, so the thread check covers the tie-break too
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # restored afterwards
    other = sampler.sample_neighbourhoods(graph, seeds, **WALKS, top_t=8, seed=10)
    assert not np.array_equal(other.weights, runs[0].weights)
    # A row depends only on (item, seed): a shuffled batch gives the same rows.
    perm = np.random.default_rng(0).permutation(graph.num_items)
    shuffled = sampler.sample_neighbourhoods(graph, seeds[perm], **WALKS, top_t=8, seed=9, num_threads=2)
    np.testing.assert_array_equal(shuffled.indices, runs[0].indices[perm])
    vc = [sampler.visit_counts(graph, seeds, **WALKS, seed=4, num_threads=t) for t in (1, 2)]
    assert (vc[0] != vc[1]).nnz == 0


def test_compute_neighbourhoods_matches_batches(components_graph):
    graph, _ = components_graph
    cfg = SamplerConfig(num_walks=60, walk_length=4, restart_prob=0.4, top_t=6, seed=13)
    full = sampler.compute_neighbourhoods(graph, cfg, progress=False)
    some = sampler.compute_neighbourhoods(graph, cfg, items=np.array([7, 121, 100]), progress=False)
    batch = sampler.sample_neighbourhoods(graph, np.arange(123), **WALKS, top_t=6, seed=13)
    np.testing.assert_array_equal(full.indices, batch.indices)
    np.testing.assert_array_equal(full.weights, batch.weights)
    np.testing.assert_array_equal(some.indices, full.indices[[7, 121, 100]])


def test_bad_arguments_are_named():
    graph = graph_from_collections([[0, 1]], 2)
    with pytest.raises(ValueError, match=r"seeds\[1\] = 5"):
        sampler.sample_neighbourhoods(graph, np.array([0, 5]), **WALKS, top_t=2, seed=0)
    with pytest.raises(ValueError, match=r"seeds\[1\] = 8589934592"):  # checked before the int32 cast
        sampler.sample_neighbourhoods(graph, np.array([0, 2**33]), **WALKS, top_t=2, seed=0)
    with pytest.raises(ValueError, match="restart_prob"):
        sampler.sample_neighbourhoods(
            graph, np.array([0]), num_walks=2, walk_length=2, restart_prob=1.0, top_t=2, seed=0
        )
    with pytest.raises(ValueError, match="band"):
        sampler.band_ranks((0.5, 0.2), 100)
    assert sampler.band_ranks((0.02, 0.05), 5000) == (100, 250)
    assert sampler.band_ranks((0.002, 0.005), 10**6) == (2000, 5000)  # the paper's ranks as fractions


def test_tie_permutation_is_a_bijection_inverted_by_unpermute():
    rng = np.random.default_rng(0)
    values = np.r_[[0, 1, 2, 2**16 - 1, 2**16, 2**31 - 2, 2**31 - 1, 2**31, 2**32 - 1], rng.integers(0, 2**32, 3000)]
    for salt in (0, 1, 0xDEADBEEF, M32, int(sampler._tie_salt(5, 17))):
        images = [int(sampler._permute(int(x), np.uint64(salt))) for x in values]
        assert images == [permute_reference(int(x), salt) for x in values]
        assert all(0 <= y <= M32 for y in images)
        assert [int(sampler._unpermute(y, np.uint64(salt))) for y in images] == values.tolist()
        # Injective on the sample (an inverse on all of [0, 2**32) makes it a bijection there).
        assert len(set(images)) == len(set(values.tolist()))
    # Odd multipliers: the modular inverses exist and are what the kernel uses.
    assert (0x7FEB352D * int(sampler._PERM_A_INV)) % 2**32 == 1
    assert (0x846CA68B * int(sampler._PERM_B_INV)) % 2**32 == 1
    # A different salt per query item: the ten tied items come out in different orders.
    orders = {tuple(np.argsort(tie_keys(np.arange(10), 0, q))) for q in range(20)}
    assert len(orders) == 20


def top_t_direct(items, counts, top_t: int, salt: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``_top_t`` on hand-written visit counts: (indices, weights, tie-decided slots)."""
    items = np.asarray(items, np.int32)
    counts = np.asarray(counts, np.int32)
    nd = len(items)
    out_idx = np.full(top_t, -1, np.int32)
    out_w = np.zeros(top_t, np.float32)
    tied = sampler._top_t(
        items,
        counts,
        nd,
        top_t,
        np.uint64(salt),
        np.empty(counts.max() + 1, np.int32),
        np.empty(nd, np.int64),
        np.empty(top_t, np.int64),
        out_idx,
        out_w,
    )
    return out_idx, out_w, tied


def test_top_t_tie_slots_hand_computed():
    # Counts 5, 5, 3, 3, 3, 1 with T = 3: items 10 and 11 are above the threshold count 3; one
    # slot is left for the three items at count 3, so exactly one slot is decided by a tie.
    items, counts = [10, 11, 12, 13, 14, 15], [5, 5, 3, 3, 3, 1]
    for salt in (0, 7, 0xABCDEF):
        idx, w, tied = top_t_direct(items, counts, 3, salt)
        assert tied == 1
        assert set(idx[:2].tolist()) == {10, 11}
        assert idx[2] == min((12, 13, 14), key=lambda i: permute_reference(i, salt))
        np.testing.assert_allclose(w, [5 / 13, 5 / 13, 3 / 13], rtol=1e-6)
    # The tie group exactly fills the slots left: counts decide, no tie slot.
    idx, _, tied = top_t_direct(items, counts, 5, 0)
    assert tied == 0 and set(idx.tolist()) == {10, 11, 12, 13, 14}
    # Fewer distinct items than slots: every visited item is kept, nothing tied.
    idx, w, tied = top_t_direct(items[:2], counts[:2], 4, 0)
    assert tied == 0 and set(idx[:2].tolist()) == {10, 11} and np.all(idx[2:] == -1)
    # All ten items visited once and T = 4: all four slots are ties.
    assert top_t_direct(range(10), [1] * 10, 4, 3)[2] == 4


def test_ties_are_not_decided_by_index():
    """One collection of 10 items, 3 one-hop walks, T = 1: the top slot is often a tie."""
    graph = graph_from_collections([list(range(10))], 10)
    walks = dict(num_walks=3, walk_length=1, restart_prob=0.0, top_t=1)
    chose_lowest, ties = 0, 0
    for s in range(300):
        seeds = np.array([0, 5])
        tied = np.zeros(2, np.int32)
        nb = sampler.sample_neighbourhoods(graph, seeds, **walks, seed=s, tie_slots=tied)
        counts = sampler.visit_counts(graph, seeds, num_walks=3, walk_length=1, restart_prob=0.0, seed=s).toarray()
        for row in range(2):
            best = np.flatnonzero((counts[row] == counts[row].max()) & (counts[row] > 0))
            if len(best) > 1:
                ties += 1
                assert tied[row] == 1 and nb.indices[row, 0] in best
                chose_lowest += int(nb.indices[row, 0] == best.min())
        again = sampler.sample_neighbourhoods(graph, seeds, **walks, seed=s)
        np.testing.assert_array_equal(nb.indices, again.indices)  # deterministic for a fixed seed
    assert ties > 200
    # Index order would pick the lowest tied item every time; a hash picks it ~40% (2-3 tied).
    assert chose_lowest < 0.6 * ties


@pytest.mark.parametrize("n", [1, 2, 5, 33, 200])
def test_smallest_k_selects_the_k_smallest(n):
    rng = np.random.default_rng(n)
    for k in range(1, n + 1, max(1, n // 7)):
        a = rng.permutation(1000)[:n].astype(np.int32)
        expect = np.sort(a)[:k]
        sampler._smallest_k(a, n, k)
        np.testing.assert_array_equal(np.sort(a[:k]), expect)


# ----------------------------------------------------------------------------------------------
# Hard negatives.

HN = dict(num_walks=300, restart_prob=0.3, walk_length=8)


@pytest.fixture(scope="module")
def hn_graph() -> CSRGraph:
    """One connected random graph of 300 items, dense enough for a few hundred PPR ranks."""
    rng = np.random.default_rng(1)
    collections = [sorted(rng.choice(300, int(rng.integers(3, 15)), replace=False)) for _ in range(90)]
    collections.append(list(range(0, 300, 2)))
    collections.append(list(range(1, 300, 2)) + [0])
    return graph_from_collections(collections, 300)


def test_hard_negatives_lie_in_the_band_and_skip_query_and_positives(hn_graph):
    queries = np.array([0, 10, 20, 150, 299])
    positives = [[1, 2], [], [21, 22, 23, 24], [151], [0]]
    ex_ptr = np.r_[0, np.cumsum([len(p) for p in positives])]
    ex_idx = np.array([i for p in positives for i in p], dtype=np.int32)
    band = (0.1, 0.3)  # ranks [30, 90)
    out = sampler.hard_negatives(
        hn_graph, queries, num=12, band=band, exclude_indptr=ex_ptr, exclude_indices=ex_idx, seed=4, **HN
    )
    assert out.shape == (5, 12) and out.dtype == np.int32
    counts = sampler.visit_counts(hn_graph, queries, seed=4, **HN).toarray()
    for row, q in enumerate(queries):
        # Positives inside the band too, so exclusion is exercised, not vacuous.
        ranked = rank_by_counts(counts[row], 4, q)
        in_band = set(ranked[30:90].tolist())
        picked = out[row][out[row] >= 0]
        assert len(picked) == 12 and len(set(picked.tolist())) == 12
        assert set(picked.tolist()) <= in_band - {q} - set(positives[row])
    # Same draws whatever the thread count.
    again = sampler.hard_negatives(
        hn_graph,
        queries,
        num=12,
        band=band,
        exclude_indptr=ex_ptr,
        exclude_indices=ex_idx,
        seed=4,
        num_threads=1,
        **HN,
    )
    np.testing.assert_array_equal(out, again)


def test_hard_negatives_pad_when_the_band_is_exhausted(hn_graph):
    queries = np.array([5, 6])
    counts = sampler.visit_counts(hn_graph, queries, seed=1, **HN).toarray()
    ranked = rank_by_counts(counts[0], 1, 5)
    # A band of 4 ranks holding query 5's first positive: only 3 candidates for 6 slots.
    pos = int(ranked[41])
    out = sampler.hard_negatives(
        hn_graph,
        queries,
        num=6,
        band=(0.134, 0.147),  # ranks [40, 44)
        exclude_indptr=np.array([0, 1, 1]),
        exclude_indices=np.array([pos]),
        seed=1,
        **HN,
    )
    assert set(out[0, :3].tolist()) == {int(ranked[40]), int(ranked[42]), int(ranked[43])}
    assert np.all(out[0, 3:] == -1)
    assert np.all(out[1, :4] >= 0) and np.all(out[1, 4:] == -1)
    # Beyond the visited items there is no PPR estimate: nothing to sample.
    # (at most 299 other items can be ranked, so rank 299 never exists).
    far = sampler.hard_negatives(
        hn_graph,
        queries,
        num=3,
        band=(0.997, 1.0),  # ranks [299, 300)
        exclude_indptr=None,
        exclude_indices=None,
        seed=1,
        **HN,
    )
    assert np.all(far == -1)


def test_hard_negatives_are_uniform_over_the_band(hn_graph):
    """The same query repeated: identical walks, independent picks per row."""
    reps = 4000
    queries = np.full(reps, 17)
    out = sampler.hard_negatives(
        hn_graph,
        queries,
        num=2,
        band=(0.034, 0.067),  # ranks [10, 20)
        exclude_indptr=None,
        exclude_indices=None,
        seed=8,
        **HN,
    )
    assert np.all(out >= 0) and np.all(out[:, 0] != out[:, 1])
    values, freq = np.unique(out, return_counts=True)
    assert len(values) == 10
    expect = reps * 2 / 10
    assert np.all(np.abs(freq - expect) < 5 * np.sqrt(expect))


# ----------------------------------------------------------------------------------------------
# The stage component.


def test_neighbourhoods_stage_writes_train_and_full(tmp_path, components_graph):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict
    from pinsage_model.io import file_digest

    graph, _ = components_graph
    # Training subgraph: the first 20 collections only, same item id space.
    keep = np.flatnonzero(np.repeat(np.arange(graph.num_collections), graph.collection_degree()) < 20)
    train = CSRGraph.from_edges(
        graph.coll_indices[keep],
        np.repeat(np.arange(graph.num_collections), graph.collection_degree())[keep],
        graph.num_items,
        graph.num_collections,
    )
    (tmp_path / "graph").mkdir()
    graph.save(tmp_path / "graph" / "graph.npz")
    train.save(tmp_path / "graph" / "train_graph.npz")
    # Training pairs: every item with its next index inside its component, plus a test pair
    # (ignored by the coverage) and a pair whose query has no edges (never covered).
    q = np.r_[np.arange(39), np.arange(40, 79), 0, 120]
    pos = np.r_[np.arange(1, 40), np.arange(41, 80), 1, 5]
    split = ["train"] * 78 + ["test", "train"]
    pq.write_table(
        pa.table(
            {
                "q_idx": pa.array(q, pa.int32()),
                "pos_idx": pa.array(pos, pa.int32()),
                "count": pa.array([1] * 80, pa.int64()),
                "split": split,
                "in_train_graph": [True] * 80,
            }
        ),
        tmp_path / "graph" / "pairs_indexed.parquet",
    )
    cfg = config_from_dict({"seed": 1, "sampler": {"num_walks": 30, "walk_length": 3, "top_t": 5}})
    stage = get_stage("neighbourhoods")
    ctx = StageContext.create(tmp_path, "test", "2026-01-12T00:00:00Z")
    report = execute(stage, cfg, {"graph": tmp_path / "graph"}, tmp_path / "nb", ctx)
    full = Neighbourhoods.load(tmp_path / "nb" / "full.npz")
    part = Neighbourhoods.load(tmp_path / "nb" / "train.npz")
    expect = sampler.compute_neighbourhoods(graph, cfg.sampler, progress=False)
    np.testing.assert_array_equal(full.indices, expect.indices)
    # train.npz walks the training subgraph only: items outside it have empty rows.
    np.testing.assert_array_equal(
        part.indices, sampler.compute_neighbourhoods(train, cfg.sampler, progress=False).indices
    )
    train_deg = train.item_degree()
    assert np.all(part.indices[train_deg == 0] == -1) and (train_deg == 0).sum() > 20
    assert report["full"]["items_with_edges"] == 121 and report["train"]["items_with_edges"] == int(
        (train_deg > 0).sum()
    )
    assert report["full"]["items_with_neighbours"] == int(full.mask.any(axis=1).sum())
    train_rows = np.array([s == "train" for s in split])
    for name, nb, g in (("full", full, graph), ("train", part, train)):
        covered = [p in nb.indices[u] for u, p in zip(q[train_rows], pos[train_rows])]
        assert report[name]["positive_coverage"] == pytest.approx(np.mean(covered), abs=1e-6)
        tied = np.zeros(g.num_items, np.int32)
        sampler.compute_neighbourhoods(g, cfg.sampler, progress=False, tie_slots=tied)
        assert report[name]["tie_slot_share"] == pytest.approx(tied.sum() / nb.mask.sum(), abs=1e-6)
    assert 0 < report["full"]["positive_coverage"] < 1 and report["full"]["tie_slot_share"] > 0
    digest = file_digest(tmp_path / "nb" / "full.npz")
    execute(stage, cfg, {"graph": tmp_path / "graph"}, tmp_path / "nb", ctx, force=True)
    assert file_digest(tmp_path / "nb" / "full.npz") == digest


def test_numpy_benchmark_reference_follows_the_same_walk_definition(components_graph):
    """The benchmark's numpy baseline must compute the same thing (other random numbers)."""
    from bench.numpy_walks import numpy_neighbourhoods

    graph, component = components_graph
    seeds = np.arange(graph.num_items)
    idx, w = numpy_neighbourhoods(graph, seeds, **WALKS, top_t=12, rng=np.random.default_rng(0))
    nb = sampler.sample_neighbourhoods(graph, seeds, **WALKS, top_t=12, seed=0)
    Neighbourhoods(indices=idx, weights=w).validate()
    mask = idx >= 0
    for u in seeds:
        kept = idx[u][mask[u]]
        assert u not in kept and np.all(component[kept] == component[u])
        assert np.array_equal(np.lexsort((kept, -w[u][mask[u]])), np.arange(len(kept)))
    np.testing.assert_array_equal(mask[120:], nb.mask[120:])  # isolated rows padded in both
    # Same distribution: mean top weight agrees within Monte Carlo noise.
    assert abs(w[:120, 0].mean() - nb.weights[:120, 0].mean()) < 0.02


def test_concurrent_calls_from_python_threads(hn_graph):
    """Training's producer threads call the kernels concurrently (GIL released, omp layer)."""
    from concurrent.futures import ThreadPoolExecutor

    queries = np.arange(0, 300, 3)

    def job(s: int) -> np.ndarray:
        return sampler.hard_negatives(
            hn_graph,
            queries,
            num=3,
            band=(0.034, 0.2),  # ranks [10, 60)
            exclude_indptr=None,
            exclude_indices=None,
            seed=s,
            num_threads=1,
            **HN,
        )

    expect = [job(s) for s in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(job, range(6)))
    for e, g in zip(expect, got):
        np.testing.assert_array_equal(e, g)
