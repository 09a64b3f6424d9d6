"""Deterministic synthetic data with planted structure: the embedded default data set.

The generative story (every step vectorised numpy; one seed gives byte-identical files):

1. **Topics and items.** ``K`` latent topics. Each item gets a topic uniformly at random and a
   popularity rank from a random permutation; popularity follows the Zipf-like law
   ``p(rank r) ∝ (r + 10) ** -0.85`` (``r`` 1-based).
2. **Collections** (boards/playlists). Each has a topic mixture: a main topic (weight 0.7), a second
   topic (0.2) and global noise (0.1); both topics are drawn in proportion to their popularity
   mass, so the marginal item popularity is exactly the Zipf law before de-duplication.
   Collection sizes (distinct items) are Pareto with shape ``tail_exponent`` (2.1: ``P(S > s) ∝
   s ** -2.1``), capped at ``size_cap`` and rescaled so they sum exactly to ``num_edges``.
3. **Edges.** Each collection draws ``size`` items from its mixture; draws that repeat an edge are
   redrawn (three rounds from the mixture, then from global popularity, finally uniformly, for
   collections whose topic is exhausted), so the graph has exactly ``num_edges`` distinct
   item-collection edges.
4. **Users and engagement sequences.** Every user owns about ``collections_per_user`` collections
   and fills them one at a time. Within a collection the items of the main topic come first, then
   those of the second topic, with off-topic items scattered at random positions, so a user's
   consecutive items mostly share a topic (the engagement pairs of paper section 4.1 are
   topically related). Consecutive saves are 1 s + Exp(240 s) apart; between two collections
   of a user there are 2-7 days, longer than the pairs stage's default one-day gap.
5. **Item content**: ``features`` = unit topic centroid + Gaussian noise (norm about
   ``feature_noise``), so content alone recovers an item's topic only part of the time and the
   graph adds signal; ``title`` = three words, each from the item's topic's vocabulary with
   probability 0.6 and otherwise from a random topic; ``genres`` = the topic's two genres, the
   first replaced by a random genre with probability 0.25.

Ids are zero-padded strings whose lexicographic order equals their numeric order:
``i0000123`` (items, 7 digits), ``c000045`` (collections, 6 digits), ``u000007`` (users, 6
digits). Item ``i0000123`` is dense index 123 of :func:`generate_graph`'s CSR graph, collection
``c000045`` is index 45.

Each interaction is one saved (item, collection) edge by the collection's owner, so interactions
are exactly the distinct edges; ``weight`` = 1 + Poisson(0.3) is an engagement strength (e.g.
clicks on the saved item).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pinsage_model.graph.csr import CSRGraph

BASE_TIME = 1_577_836_800  # 2020-01-01T00:00:00Z: user timelines start within a year of it.
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_SYLLABLES = ("ka", "lo", "mi", "ra", "ten", "vo", "shi", "dar", "nel", "quo", "bri", "zu", "fen", "gal", "pon", "rix")
WORDS_PER_TOPIC = 6
TITLE_WORDS = 3
MIXTURE = (0.7, 0.2)  # main topic, second topic; the rest (0.1) is global noise
MIXTURE_ROUNDS = 3
POPULARITY_ROUNDS = 12


@dataclass(frozen=True)
class Preset:
    """Sizes and shape parameters of one synthetic data set."""

    num_items: int
    num_collections: int
    num_edges: int
    num_topics: int
    size_cap: int
    tail_exponent: float = 2.1
    popularity_exponent: float = 0.85
    popularity_offset: float = 10.0
    collections_per_user: int = 3
    feature_dim: int = 32
    feature_noise: float = 2.5


PRESETS: dict[str, Preset] = {
    "tiny": Preset(num_items=300, num_collections=60, num_edges=3_000, num_topics=6, size_cap=150),
    "demo": Preset(num_items=5_000, num_collections=1_000, num_edges=100_000, num_topics=40, size_cap=1_000),
    "bench": Preset(
        num_items=1_000_000, num_collections=200_000, num_edges=10_000_000, num_topics=1_000, size_cap=20_000
    ),
}


@dataclass(frozen=True)
class SyntheticData:
    """Generated tables plus the planted latent structure (for tests and diagnostics).

    Attributes:
      interactions: interactions contract table, sorted by (user_id, timestamp).
      items: items contract table (``item_id``, ``features``, ``title``, ``genres``), by item_id.
      item_topic: (N,) int32 latent topic of item index i (``i{i:07d}``).
      collection_topics: (C, 2) int32 main and second topic of each collection.
    """

    interactions: pa.Table
    items: pa.Table
    item_topic: np.ndarray
    collection_topics: np.ndarray


@dataclass(frozen=True)
class _Edges:
    item: np.ndarray  # (E,) int64, sorted by (collection, position in the fill sequence)
    coll: np.ndarray  # (E,) int64
    item_topic: np.ndarray  # (N,) int32
    coll_topics: np.ndarray  # (C, 2) int32


def get_preset(preset: str | Preset) -> Preset:
    """The :class:`Preset` of a name (``tiny``, ``demo``, ``bench``); a Preset passes through."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset '{preset}'; presets are: {', '.join(PRESETS)}")
    return PRESETS[preset]


def collection_sizes(p: Preset, rng: np.random.Generator) -> np.ndarray:
    """(C,) int64 Pareto(shape ``tail_exponent``) sizes in [1, cap] summing to ``num_edges``."""
    cap = min(p.size_cap, p.num_items)
    if not p.num_collections <= p.num_edges <= p.num_collections * cap:
        raise ValueError(f"num_edges {p.num_edges} cannot be split into {p.num_collections} collections of 1..{cap}")
    raw = 1.0 + rng.pareto(p.tail_exponent, p.num_collections)  # Pareto with x_m = 1

    def sizes_at(scale: float) -> np.ndarray:
        return np.clip(np.floor(raw * scale), 1, cap).astype(np.int64)

    # The total is monotone in the scale: bisect for the largest scale whose total fits.
    lo, hi = 0.0, float(cap)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sizes_at(mid).sum() <= p.num_edges else (lo, mid)
    sizes = sizes_at(lo)
    short = p.num_edges - int(sizes.sum())
    if short:
        # Hand the remainder out one by one to random collections below the cap.
        room = np.flatnonzero(sizes < cap)
        sizes[rng.choice(room, size=short, replace=False)] += 1
    return sizes


class _Popularity:
    """Draw items by Zipf popularity, globally or within one topic (inverse-CDF sampling)."""

    def __init__(self, p: Preset, item_topic: np.ndarray, rank: np.ndarray):
        weight = (rank + 1.0 + p.popularity_offset) ** -p.popularity_exponent  # (N,)
        self.order = np.lexsort((rank, item_topic))  # items grouped by topic
        self.cdf = np.cumsum(weight[self.order])  # (N,) float64
        bounds = np.searchsorted(item_topic[self.order], np.arange(p.num_topics + 1))
        self.start, self.end = bounds[:-1], bounds[1:]  # (K,) topic segments of ``order``
        self.lo = np.where(self.start > 0, self.cdf[np.maximum(self.start - 1, 0)], 0.0)  # (K,)
        self.mass = np.where(self.end > self.start, self.cdf[np.maximum(self.end - 1, 0)] - self.lo, 0.0)  # (K,)

    def topic_mass(self) -> np.ndarray:
        """(K,) share of the total popularity in each topic."""
        return self.mass / self.mass.sum()

    def in_topic(self, topic: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = self.lo[topic] + rng.random(len(topic)) * self.mass[topic]
        pos = np.searchsorted(self.cdf, u, side="right")
        return self.order[np.clip(pos, self.start[topic], self.end[topic] - 1)]

    def anywhere(self, n: int, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.cdf, rng.random(n) * self.cdf[-1], side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    # np.unique takes a hash-table path for integers in numpy 2.4 that is several times slower.
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a


def _sample_edges(p: Preset, seed: int, progress: bool = False) -> _Edges:
    """Exactly ``num_edges`` distinct edges from the topic mixtures, in fill-sequence order."""
    from pinsage_model.progress import progress_bar

    rng = np.random.default_rng([seed, 0])
    n, c_count, k = p.num_items, p.num_collections, p.num_topics
    item_topic = rng.integers(0, k, n).astype(np.int32)
    pop = _Popularity(p, item_topic, rng.permutation(n))
    coll_topics = rng.choice(k, size=(c_count, 2), p=pop.topic_mass()).astype(np.int32)
    sizes = collection_sizes(p, rng)

    # Keys c * N + i of accepted edges, kept as sorted chunks (one per round) for membership tests.
    chunks: list[np.ndarray] = []
    deficit = sizes.copy()
    rounds = 0
    bar = progress_bar(total=p.num_edges, desc="edges", unit="edge", disable=not progress, leave=False)
    while deficit.any():
        coll = np.repeat(np.arange(c_count, dtype=np.int64), deficit)  # one draw per missing edge
        if rounds < MIXTURE_ROUNDS:
            r = rng.random(len(coll))
            topic = np.where(r < MIXTURE[0], coll_topics[coll, 0], coll_topics[coll, 1])
            topical = r < MIXTURE[0] + MIXTURE[1]
            item = np.empty(len(coll), dtype=np.int64)
            item[topical] = pop.in_topic(topic[topical], rng)
            item[~topical] = pop.anywhere(int((~topical).sum()), rng)
        elif rounds < POPULARITY_ROUNDS:
            item = pop.anywhere(len(coll), rng)
        else:
            item = rng.integers(0, n, len(coll))
        key = _sorted_unique(coll * n + item)
        for old in chunks:
            pos = np.minimum(np.searchsorted(old, key), len(old) - 1)
            key = key[old[pos] != key]
        if len(key):
            chunks.append(key)
        deficit -= np.bincount(key // n, minlength=c_count)
        bar.update(len(key))
        rounds += 1
    bar.close()
    key = np.sort(np.concatenate(chunks))
    coll, item = key // n, key % n

    # Fill order inside each collection: main-topic block, then second-topic block; off-topic
    # items at uniformly random positions across the whole sequence.
    t = item_topic[item]
    group = np.where(t == coll_topics[coll, 0], 0, np.where(t == coll_topics[coll, 1], 1, 2))
    counts = np.bincount(coll * 3 + group, minlength=3 * c_count).reshape(c_count, 3)
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (C, 3)
    u = rng.random(len(key))
    position = np.where(group == 0, u * frac[coll, 0], np.where(group == 1, frac[coll, 0] + u * frac[coll, 1], u))
    order = np.lexsort((position, coll))
    return _Edges(item=item[order], coll=coll[order], item_topic=item_topic, coll_topics=coll_topics)


def generate_graph(preset: str | Preset, seed: int, progress: bool = False) -> CSRGraph:
    """The item-collection graph of :func:`generate` (same edges), without building tables.

    Args:
      preset: ``tiny``, ``demo``, ``bench`` or a :class:`Preset`.
      seed: random seed; the same seed gives the same graph.
      progress: show a tqdm bar while edges are drawn.

    Returns:
      The CSR graph; item index i is ``i{i:07d}``, collection index c is ``c{c:06d}``.
    """
    p = get_preset(preset)
    e = _sample_edges(p, seed, progress)
    return CSRGraph.from_edges(e.item, e.coll, p.num_items, p.num_collections)


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _group_cumsum(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at each True of ``group_start`` (sorted groups)."""
    total = np.cumsum(values)
    base = np.maximum.accumulate(np.where(group_start, total - values, 0))
    return total - base


def _timestamps(p: Preset, e: _Edges, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(E,) owner user index and (E,) int64 Unix-second timestamps of each edge."""
    c_count = p.num_collections
    n_users = max(1, c_count // p.collections_per_user)
    # Every user owns at least one collection; the rest are assigned at random.
    owner = np.concatenate([np.arange(n_users), rng.integers(0, n_users, c_count - n_users)])
    owner = owner[rng.permutation(c_count)]
    gaps = 1 + rng.exponential(240.0, len(e.item)).astype(np.int64)  # (E,) seconds between saves
    first = np.r_[True, e.coll[1:] != e.coll[:-1]]
    offset_in_coll = _group_cumsum(gaps, first)  # (E,) time since the collection's start
    last = np.r_[first[1:], True]
    duration = np.zeros(c_count, dtype=np.int64)
    duration[e.coll[last]] = offset_in_coll[last]  # (C,) time of each collection's last save
    # A user fills their collections one after another with a 2-7 day break before each.
    by_user = np.lexsort((np.arange(c_count), owner))
    span = duration[by_user] + rng.integers(2 * 86400, 7 * 86400, c_count)
    user_first = np.r_[True, owner[by_user][1:] != owner[by_user][:-1]]
    coll_start = np.empty(c_count, dtype=np.int64)
    coll_start[by_user] = _group_cumsum(span, user_first) - duration[by_user]
    user_start = BASE_TIME + rng.integers(0, 365 * 86400, n_users)
    ts = user_start[owner[e.coll]] + coll_start[e.coll] + offset_in_coll
    return owner[e.coll], ts


def _features(p: Preset, item_topic: np.ndarray, rng: np.random.Generator) -> pa.Array:
    centroids = rng.normal(size=(p.num_topics, p.feature_dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    noise = rng.normal(scale=p.feature_noise / np.sqrt(p.feature_dim), size=(p.num_items, p.feature_dim))
    feats = (centroids[item_topic] + noise).astype(np.float32)  # (N, F)
    offsets = pa.array(np.arange(0, feats.size + 1, p.feature_dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(feats.ravel()))


def _vocabulary(k: int) -> pa.Array:
    """(K * WORDS_PER_TOPIC,) pseudo-words; words of topic t are at t*W .. t*W+W-1."""
    s = len(_SYLLABLES)
    idx = np.arange(k * WORDS_PER_TOPIC)
    parts = [idx % s, (idx // s) % s, (idx // (s * s)) % s]
    syl = pa.array(_SYLLABLES)
    return pc.binary_join_element_wise(*(pc.take(syl, pa.array(a)) for a in parts), "")


def _titles(p: Preset, item_topic: np.ndarray, rng: np.random.Generator) -> pa.Array:
    vocab = _vocabulary(p.num_topics)
    words = []
    for _ in range(TITLE_WORDS):
        own = rng.random(p.num_items) < 0.6
        topic = np.where(own, item_topic, rng.integers(0, p.num_topics, p.num_items))
        words.append(pc.take(vocab, pa.array(topic * WORDS_PER_TOPIC + rng.integers(0, WORDS_PER_TOPIC, p.num_items))))
    return pc.binary_join_element_wise(*words, " ")


def _genres(p: Preset, item_topic: np.ndarray, rng: np.random.Generator) -> pa.Array:
    g = len(GENRES)
    first = item_topic % g
    second = (item_topic * 7 + 3) % g
    first = np.where(rng.random(p.num_items) < 0.25, rng.integers(0, g, p.num_items), first)
    names = pa.array(GENRES)
    a, b = pc.take(names, pa.array(first)), pc.take(names, pa.array(second))
    return pc.if_else(pa.array(first == second), a, pc.binary_join_element_wise(a, b, "|"))


def generate(preset: str | Preset, seed: int, progress: bool = False) -> SyntheticData:
    """Generate the synthetic interactions and items of a preset.

    Args:
      preset: ``tiny`` (~300 items, for tests), ``demo`` (~5k items), ``bench`` (1M items, 10M
        edges) or a :class:`Preset`.
      seed: random seed; the same seed gives identical tables (and byte-identical files when
        written with :func:`write`).
      progress: show tqdm bars on the long steps.

    Returns:
      :class:`SyntheticData`.
    """
    p = get_preset(preset)
    e = _sample_edges(p, seed, progress)
    rng = np.random.default_rng([seed, 1])
    user, ts = _timestamps(p, e, rng)
    weight = 1.0 + rng.poisson(0.3, len(e.item)).astype(np.float64)
    order = np.lexsort((e.item, ts, user))
    item_ids = _ids("i", p.num_items, 7)
    interactions = pa.table(
        {
            "user_id": pc.take(_ids("u", int(user.max()) + 1, 6), pa.array(user[order])),
            "item_id": pc.take(item_ids, pa.array(e.item[order])),
            "timestamp": pa.array(ts[order], pa.int64()),
            "collection_id": pc.take(_ids("c", p.num_collections, 6), pa.array(e.coll[order])),
            "weight": pa.array(weight[order], pa.float64()),
        }
    )
    items = pa.table(
        {
            "item_id": item_ids,
            "features": _features(p, e.item_topic, np.random.default_rng([seed, 2])),
            "title": _titles(p, e.item_topic, np.random.default_rng([seed, 3])),
            "genres": _genres(p, e.item_topic, np.random.default_rng([seed, 4])),
        }
    )
    return SyntheticData(interactions, items, e.item_topic, e.coll_topics)


def degree_stats(graph: CSRGraph) -> dict:
    """Edge count and item/collection degree quantiles (JSON-able)."""

    def stats(deg: np.ndarray) -> dict:
        q = np.quantile(deg, [0.5, 0.9, 0.99, 0.999]) if len(deg) else np.zeros(4)
        return {
            "count": int(len(deg)),
            "zero": int((deg == 0).sum()),
            "mean": round(float(deg.mean()), 3) if len(deg) else 0.0,
            "min": int(deg.min()) if len(deg) else 0,
            "p50": float(q[0]),
            "p90": float(q[1]),
            "p99": float(q[2]),
            "p99.9": float(q[3]),
            "max": int(deg.max()) if len(deg) else 0,
        }

    return {
        "edges": int(graph.num_edges),
        "item_degree": stats(graph.item_degree()),
        "collection_degree": stats(graph.collection_degree()),
    }


def graph_of(data: SyntheticData) -> CSRGraph:
    """The CSR graph of generated tables (item/collection index parsed from the ids)."""
    item = pc.cast(pc.utf8_slice_codeunits(data.interactions["item_id"], 1), pa.int64()).to_numpy()
    coll = pc.cast(pc.utf8_slice_codeunits(data.interactions["collection_id"], 1), pa.int64()).to_numpy()
    return CSRGraph.from_edges(item, coll, len(data.items), len(data.collection_topics))


def write(data: SyntheticData, out_dir: str | Path) -> dict[str, Path]:
    """Write ``interactions.parquet`` and ``items.parquet`` atomically; returns their paths."""
    from pinsage_model.io import atomic_write_parquet

    out_dir = Path(out_dir)
    paths = {"interactions": out_dir / "interactions.parquet", "items": out_dir / "items.parquet"}
    atomic_write_parquet(paths["interactions"], data.interactions)
    atomic_write_parquet(paths["items"], data.items)
    return paths
