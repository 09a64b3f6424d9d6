"""The offline evaluation protocol: which pairs and users are ranked, by which methods, and how.

Every method (PinSage and the configured baselines of :mod:`pinsage_model.evaluation.baselines`)
is ranked by the same evaluator (:mod:`pinsage_model.evaluation.metrics`) over the same
candidate pool:

* item to item, on the held-out (query, positive) pairs of the test split, and of the
  validation split for tuning; test pairs are also split by whether the query is in the
  training subgraph (the inductive case);
* user to item (:func:`user_level`), with full ranking and each user's training items masked,
  when the data has held-out user events;
* the similarity spread of random item pairs (paper Figure 4), beside that of random vectors.

:func:`evaluate` runs it all over the folders of :class:`EvaluationInputs`;
:func:`metrics_document` is what the evaluation stage writes as ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from pinsage_model import metric_keys
from pinsage_model.config import PipelineConfig

if TYPE_CHECKING:
    from pinsage_model.graph.csr import CSRGraph

log = logging.getLogger("pinsage")

PINSAGE = metric_keys.PINSAGE
# User-level set scores hold one (N,) float64 row per history item before the max: the block of
# users scored at once is kept under this many bytes.
USER_BLOCK_BYTES = 64 << 20


class EvaluationError(ValueError):
    """The inputs cannot be evaluated (no test pairs, inconsistent item counts, unknown baseline)."""


@dataclass(frozen=True)
class EvaluationInputs:
    """The upstream outputs the protocol reads, one folder per stage that wrote them.

    Attributes:
      raw: ``test_interactions.parquet`` when the data has its own test file.
      pairs: the cleaned ``interactions.parquet`` with each event's split.
      graph: ``pairs_indexed.parquet``, ``item_ids.parquet``, ``collection_ids.parquet`` and the graphs.
      features: ``features.npy`` and ``feature_names.json`` (content baseline).
      embeddings: ``items.npy``, ``collections.npy``, the query and user shifts.
    """

    raw: Path
    pairs: Path
    graph: Path
    features: Path
    embeddings: Path


@dataclass
class Evaluation:
    """Everything one evaluation measured.

    Attributes:
      results: per method: ``test`` and ``validation`` summaries, ``inductive`` breakdown, ``similarity``.
      test_ranks: per method, (P,) ranks of the test positives (for the hit-rate curve).
      spreads: per method with a similarity, the (S,) random-pair similarities.
      timings: seconds each method took (reported, never compared).
      skipped: ``{baseline: why}`` for the baselines not evaluated.
      users: :func:`user_level`'s result, or None.
      reference_kurtosis: :func:`random_kurtosis` for PinSage's width.
      num_items: items ranked.
      test_pairs, validation_pairs: the pairs ranked (``q``, ``pos``, ``query_in_train_graph``).
      split_digests: :func:`split_digest` of the test and validation pairs.
      event_times: False when the data has no event times (held-out events are random, not latest).
      homefeed_prior: ``(prior (N,), weight)`` chosen on the validation users, or None
        (:func:`with_homefeed_prior`; the stage writes it for the index).
    """

    results: dict[str, dict] = field(default_factory=dict)
    test_ranks: dict[str, np.ndarray] = field(default_factory=dict)
    spreads: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    users: dict | None = None
    reference_kurtosis: float = float("nan")
    num_items: int = 0
    test_pairs: dict[str, np.ndarray] = field(default_factory=dict)
    validation_pairs: dict[str, np.ndarray] = field(default_factory=dict)
    split_digests: dict[str, str] = field(default_factory=dict)
    event_times: bool = True
    homefeed_prior: tuple[np.ndarray, float] | None = None


def content_columns(features_dir: Path) -> list[int]:
    """Feature columns that describe an item's content: all but the degree and ``has_features``.

    The content baseline is what the item's own features say; the log degree (popularity) and
    the constant-for-most ``has_features`` flag would make it part popularity ranking.
    """
    names = json.loads((features_dir / "feature_names.json").read_text())["names"]
    keep = [i for i, name in enumerate(names) if name not in ("log_degree", "has_features")]
    return keep or list(range(len(names)))


def split_digest(item_ids: np.ndarray, pairs: dict[str, np.ndarray]) -> str:
    """Digest of the sorted (query id, positive id) pairs evaluated: two models' metrics are
    comparable (the promotion gate) only when they come from the same pairs."""
    lines = sorted(f"{item_ids[q]}\t{item_ids[p]}\n" for q, p in zip(pairs["q"], pairs["pos"]))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def load_pairs(graph_dir: Path, split: str, max_pairs: int, seed: int) -> dict[str, np.ndarray]:
    """Pairs of one split (``q``, ``pos``, ``query_in_train_graph``), subsampled to ``max_pairs``."""
    import pyarrow.compute as pc

    from pinsage_model.data.contracts import ITEM_IDS, PAIRS_INDEXED, read_table

    table = read_table(graph_dir / "pairs_indexed.parquet", PAIRS_INDEXED)
    table = table.filter(pc.equal(table.column("split"), split))
    items = read_table(graph_dir / "item_ids.parquet", ITEM_IDS)
    in_train = np.zeros(len(items), dtype=bool)  # (N,) item is in the training subgraph
    in_train[items.column("item_idx").to_numpy()] = items.column("in_train_graph").to_numpy(zero_copy_only=False)
    q = table.column("q_idx").to_numpy().astype(np.int64)
    out = {"q": q, "pos": table.column("pos_idx").to_numpy().astype(np.int64), "query_in_train_graph": in_train[q]}
    if max_pairs and len(out["q"]) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(out["q"]), size=max_pairs, replace=False))
        out = {k: v[keep] for k, v in out.items()}
    return out


def item_id_strings(graph_dir: Path) -> np.ndarray:
    """(N,) item id strings by dense ``item_idx``."""
    from pinsage_model.data.contracts import ITEM_IDS, read_table

    items = read_table(graph_dir / "item_ids.parquet", ITEM_IDS)
    ids = np.empty(items.num_rows, dtype=object)
    ids[items.column("item_idx").to_numpy()] = items.column("item_id").to_pylist()
    return ids


def pinsage_method(embeddings_dir: Path):
    """PinSage's item embeddings (``items.npy``) and learned query shift, as a ranking method."""
    from pinsage_model.data.contracts import read_query_shift
    from pinsage_model.evaluation import baselines

    emb = np.load(embeddings_dir / "items.npy")
    shift = read_query_shift(embeddings_dir, emb.shape[1])
    return baselines.Method(PINSAGE, embeddings=emb, query_shift=shift if np.any(shift) else None)


def build_methods(cfg: PipelineConfig, inputs: EvaluationInputs) -> tuple[list, dict[str, str]]:
    """PinSage plus the configured baselines, as :class:`pinsage_model.evaluation.baselines.Method`, and
    ``{name: why}`` of the baselines skipped (EASE above ``evaluation.ease_max_items`` items).

    Raises:
      EvaluationError: an unknown baseline, or item counts that differ between the inputs.
    """
    from pinsage_model.evaluation import baselines
    from pinsage_model.graph.csr import CSRGraph

    ev = cfg.evaluation
    unknown = [b for b in ev.baselines if b not in baselines.BASELINES]
    if unknown:
        raise EvaluationError(f"evaluation.baselines: unknown '{unknown[0]}'; known: {', '.join(baselines.BASELINES)}")
    methods = [pinsage_method(inputs.embeddings)]
    num_items = methods[0].embeddings.shape[0]
    skipped: dict[str, str] = {}
    if not ev.baselines:
        return methods, skipped
    graph_file = "train_graph.npz" if ev.baseline_graph == "train" else "graph.npz"
    graph = CSRGraph.load(inputs.graph / graph_file, mmap=False)
    features = np.load(inputs.features / "features.npy", mmap_mode="r")
    if features.shape[0] != num_items or graph.num_items != num_items:
        raise EvaluationError(
            f"item counts differ: embeddings {num_items}, features {features.shape[0]}, "
            f"{graph_file} {graph.num_items}; rerun the upstream stages"
        )
    content_features = np.asarray(features)[:, content_columns(inputs.features)]
    for name in ev.baselines:
        try:
            methods.append(_baseline(name, graph, content_features, cfg))
        except baselines.BaselineSkipped as exc:
            log.warning("%s", exc)
            skipped[name] = str(exc)
    return methods, skipped


def _baseline(name: str, graph, content_features: np.ndarray, cfg: PipelineConfig):
    """Baseline ``name`` with its configured settings (raises ``BaselineSkipped``)."""
    from pinsage_model.evaluation import baselines

    ev = cfg.evaluation
    return baselines.build(
        name,
        graph=graph,
        features=content_features,
        svd_dim=ev.svd_dim,
        pixie_walks=ev.pixie_walks,
        walk_length=cfg.sampler.walk_length,
        restart_prob=cfg.sampler.restart_prob,
        seed=ev.seed,
        ease_lambda=ev.ease_lambda,
        ease_max_items=ev.ease_max_items,
        num_threads=cfg.sampler.num_threads,
    )


def method_ranks(method, pairs: dict[str, np.ndarray], num_items: int, cfg: PipelineConfig) -> dict:
    """Ranks and summary of one method on one split of pairs."""
    from pinsage_model.evaluation import metrics

    ev = cfg.evaluation
    if method.embeddings is not None:
        return metrics.evaluate_embeddings(
            method.embeddings,
            pairs["q"],
            pairs["pos"],
            ev.ks,
            ev.mrr_scale,
            ev.candidate_pool,
            ev.seed,
            exact_max_pool=ev.exact_max_pool,
            query_shift=method.query_shift,
        )
    q = pairs["q"]
    return metrics.evaluate_scores(
        lambda pos: method.item_scores(q[pos]),
        num_items,
        q,
        pairs["pos"],
        ev.ks,
        ev.mrr_scale,
        ev.candidate_pool,
        ev.seed,
    )


def spread(method, num_items: int, cfg: PipelineConfig) -> dict | None:
    """Random-pair cosine similarity for methods with a similarity (None for pure scorers)."""
    from pinsage_model.evaluation import metrics

    ev = cfg.evaluation
    if method.embeddings is not None:
        return metrics.similarity_spread(method.embeddings, ev.similarity_pairs, ev.seed)
    if method.pair_similarity is None:
        return None
    a, b = metrics.random_pairs(num_items, ev.similarity_pairs, ev.seed)
    return metrics.spread_summary(method.pair_similarity(a, b))


def evaluate_method(
    method, test: dict, val: dict, n: int, cfg: PipelineConfig
) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Test and validation metrics, the inductive breakdown and the similarity spread of one method.

    Returns:
      (result dict, (P,) test ranks, random-pair similarities or None).
    """
    from pinsage_model.evaluation.metrics import summarise

    ev = cfg.evaluation
    res_test = method_ranks(method, test, n, cfg)
    ranks = res_test.pop("ranks")
    in_train = test["query_in_train_graph"]
    inductive = {
        "query_in_train_graph": summarise(ranks[in_train], ev.ks, ev.mrr_scale),
        "query_not_in_train_graph": summarise(ranks[~in_train], ev.ks, ev.mrr_scale),
    }
    res_val = method_ranks(method, val, n, cfg) if len(val["q"]) else {}
    res_val.pop("ranks", None)
    sp = spread(method, n, cfg)
    sims = None if sp is None else sp.pop("similarities")
    return {"test": res_test, "validation": res_val, "inductive": inductive, "similarity": sp}, ranks, sims


def user_events(cfg: PipelineConfig, inputs: EvaluationInputs):
    """``(held-out events per split, training events, source)`` for user-level evaluation, or None.

    Test events come from the data's own test file (adjacency format), else, under the temporal
    split when every collection is a user (MovieLens, user-item logs), from the users' test-split
    events. Validation events (for choosing settings; never the test) are the users' validation
    split under the temporal protocol. Training events are the cleaned ``train`` rows: exactly
    the graph's edges.
    """
    import pandas as pd

    from pinsage_model.data.contracts import INTERACTIONS, has_event_times, read_table

    test_path = inputs.raw / "test_interactions.parquet"
    if not test_path.exists() and cfg.pairs.split != "temporal":
        return None  # no held-out user events to rank (and no need to read the interactions)
    clean = pd.read_parquet(
        inputs.pairs / "interactions.parquet", columns=["user_id", "item_id", "timestamp", "collection_id", "split"]
    )
    train = clean[clean["split"] == "train"]
    per_user = len(clean) and (clean["collection_id"] == clean["user_id"]).all()
    held = {"validation": clean[clean["split"] == "validation"]} if per_user and cfg.pairs.split == "temporal" else {}
    if test_path.exists():
        return {"test": read_table(test_path, INTERACTIONS).to_pandas(), **held}, train, f"test file {test_path.name}"
    if per_user:
        share = f"{cfg.pairs.fractions[2]:.0%} of events"
        if has_event_times(inputs.pairs / "interactions.parquet"):
            source = f"temporal split: each user's last {share}"
        else:
            source = f"random per-user hold-out (seeded): {share} of each user; the input has no timestamps"
        return {"test": clean[clean["split"] == "test"], **held}, train, source
    return None


def known_rows(frame, coll_of: dict, item_of: dict):
    """The frame's rows whose user and item the graph knows, with dense ``u``/``i``; and how many it did not."""
    u = frame["user_id"].map(coll_of)
    i = frame["item_id"].map(item_of)
    known = u.notna() & i.notna()
    rows = frame.assign(u=u, i=i)[known].astype({"u": np.int64, "i": np.int64})
    return rows, int((~known).sum())


@dataclass(frozen=True)
class UserSpace:
    """The graph's users and items as user-level evaluation sees them.

    Attributes:
      item_of, coll_of: item and collection (user) id -> dense index.
      graph: the full graph (each user's training items, masked from the ranking).
      recent_indptr, recent_indices: CSR of each user's recent training items, the query sets
        of the ``<method>-recent`` user vectors.
    """

    item_of: dict
    coll_of: dict
    graph: CSRGraph
    recent_indptr: np.ndarray
    recent_indices: np.ndarray


def user_space(graph_dir: Path, train_frame, recent_items: int) -> UserSpace:
    """Id maps, the graph and each user's ``recent_items`` latest training items (0 = all)."""
    import pyarrow.parquet as pq

    from pinsage_model.graph.csr import CSRGraph

    item_ids = pq.read_table(graph_dir / "item_ids.parquet", columns=["item_idx", "item_id"]).to_pandas()
    coll_ids = pq.read_table(
        graph_dir / "collection_ids.parquet", columns=["collection_idx", "collection_id"]
    ).to_pandas()
    item_of = dict(zip(item_ids["item_id"], item_ids["item_idx"]))
    coll_of = dict(zip(coll_ids["collection_id"], coll_ids["collection_idx"]))
    graph = CSRGraph.load(graph_dir / "graph.npz", mmap=False)
    train, _ = known_rows(train_frame, coll_of, item_of)
    recent = train.sort_values(["u", "timestamp", "i"], kind="stable").drop_duplicates(["u", "i"], keep="last")
    if recent_items:
        recent = recent.groupby("u").tail(recent_items)
    recent = recent.sort_values(["u"], kind="stable")
    indptr = np.zeros(graph.num_collections + 1, dtype=np.int64)
    np.cumsum(np.bincount(recent["u"].to_numpy(), minlength=graph.num_collections), out=indptr[1:])
    return UserSpace(item_of, coll_of, graph, indptr, recent["i"].to_numpy())


def pooled_user_vectors(embeddings_dir: Path, item_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(user queries (C, d), unit item vectors (N, d))`` of the ``pinsage-pooled`` user vector, or
    None without ``collections.npy``: the collection vectors as written (unit means, or the user
    head's unnormalised output) plus the user shift."""
    from pinsage_model.data.contracts import read_user_shift
    from pinsage_model.evaluation.metrics import l2_normalise

    coll_path = embeddings_dir / "collections.npy"
    if not coll_path.exists():
        return None
    items = l2_normalise(item_emb)
    shift = read_user_shift(embeddings_dir, items.shape[1])
    return np.load(coll_path).astype(np.float32) + shift[None, :], items


def held_csr(frame, space: UserSpace) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """CSR ``(indptr (C+1,), item indices)`` of each user's distinct held-out items in ``frame``,
    and how many events named a user or item the graph does not know."""
    rows, dropped = known_rows(frame, space.coll_of, space.item_of)
    rows = rows.drop_duplicates(["u", "i"]).sort_values(["u", "i"])
    num_users = space.graph.num_collections
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows["u"].to_numpy(), minlength=num_users), out=indptr[1:])
    return (indptr, rows["i"].to_numpy()), dropped


def with_homefeed_prior(pooled: tuple[np.ndarray, np.ndarray], space: UserSpace, validation, k: int):
    """The ``pinsage-pooled`` queries and items with the homefeed popularity prior as one more
    coordinate (``[u + w_u, beta] . [z_c, log(1 + n_c)]``), its weight chosen on the validation
    users (:func:`pinsage_model.model.prior.fit_weight`); and the fit ``{"prior", "weight",
    "grid", "recall"}`` (validation recall@``k`` of each weight)."""
    from pinsage_model.model.prior import BETA_GRID, fit_weight, item_prior

    queries, items = pooled
    prior = item_prior(space.graph)
    held, _ = held_csr(validation, space)
    users = np.flatnonzero(np.diff(held[0]) > 0)
    train = (np.asarray(space.graph.coll_indptr), np.asarray(space.graph.coll_indices))
    weight, recall = fit_weight(queries, items, prior, users, train, held, k)
    log.info(
        "homefeed popularity prior: weight %.2f (validation recall@%d %.4f, %.4f without)",
        weight,
        k,
        max(recall),
        recall[0],
    )
    queries = np.hstack([queries, np.full((len(queries), 1), weight, queries.dtype)])
    items = np.hstack([items, prior[:, None].astype(items.dtype)])
    return (queries, items), {"prior": prior, "weight": weight, "grid": list(BETA_GRID), "recall": recall}


def rank_users(
    frame,
    space: UserSpace,
    methods: list,
    pooled: tuple[np.ndarray, np.ndarray] | None,
    user_ks,
    split: str = "test",
) -> tuple[dict, int, int]:
    """Recall/NDCG@K of every user vector on one split's held-out events (``split`` names it in
    the progress bar).

    Returns:
      (``{user vector name: metrics}``, events dropped for an unknown user or item, users ranked).
    """
    from pinsage_model.evaluation import metrics
    from pinsage_model.graph.csr import csr_subset
    from pinsage_model.progress import progress_bar

    graph = space.graph
    (held_indptr, held_indices), dropped = held_csr(frame, space)
    num_users, n = graph.num_collections, graph.num_items
    users = np.flatnonzero(np.diff(held_indptr) > 0)
    longest = int(np.diff(space.recent_indptr).max()) if num_users else 1
    common = dict(
        users=users,
        train_indptr=np.asarray(graph.coll_indptr),
        train_indices=np.asarray(graph.coll_indices),
        test_indptr=held_indptr,
        test_indices=held_indices,
        num_items=n,
        ks=user_ks,
        block_rows=max(1, USER_BLOCK_BYTES // (8 * n * max(1, longest))),
    )
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if pooled is not None:
        queries, items = pooled
        scorers[f"{PINSAGE}-pooled"] = lambda pos: queries[users[pos]] @ items.T
    for m in methods:

        def score(pos, m=m):
            ptr, idx = csr_subset(space.recent_indptr, space.recent_indices, users[pos])
            return m.set_scores(ptr, idx)

        scorers[f"{m.name}-recent"] = score
    # minutes per method at tens of thousands of users and items: say where it is
    bar = progress_bar(scorers.items(), desc=f"ranking {split} users", total=len(scorers), unit="method")
    out = {name: metrics.user_topk_metrics(fn, **common) for name, fn in bar}
    return out, dropped, len(users)


def user_level(cfg: PipelineConfig, inputs: EvaluationInputs, methods: list) -> dict | None:
    """Recall/NDCG@K per method with full ranking and the user's training items masked, or None.

    Ranked on the test events and, under the temporal protocol, on the validation events (the
    split settings are chosen on). User vectors: (a) ``pinsage-pooled``: the user's collection
    vector (``embeddings/collections.npy`` + ``user_shift.npy``: the user head, else the mean);
    (b) every method from the user's training items (``evaluation.recent_items`` latest ones, 0 =
    all): its own user score where it has one (ItemKNN's sum of cosines, PureSVD's projection,
    EASE's ``x_u B``, Pixie's multi-hit boosting), else the best cosine over the items.
    """
    events = user_events(cfg, inputs)
    if events is None:
        return None
    held, train_frame, source = events
    ev = cfg.evaluation
    space = user_space(inputs.graph, train_frame, ev.recent_items)
    pooled = pooled_user_vectors(inputs.embeddings, methods[0].embeddings)
    prior = None
    if pooled is not None and "validation" in held:
        pooled, prior = with_homefeed_prior(pooled, space, held["validation"], ev.user_ks[0])
    test, dropped, n_users = rank_users(held["test"], space, methods, pooled, ev.user_ks)
    result = {"methods": test, "test_interactions_dropped_unknown": dropped, "users": int(n_users), "source": source}
    if prior is not None:
        result["homefeed_prior"] = prior
    if "validation" in held:
        result["validation"] = rank_users(held["validation"], space, methods, pooled, ev.user_ks, "validation")[0]
    return result


def split_protocol(cfg: PipelineConfig, event_times: bool = True) -> str:
    """How the held-out pairs were chosen, in words, for every report that quotes a number."""
    p = cfg.pairs
    if p.split == "hash":
        return f"hash of the unordered pair (train/validation/test {p.fractions}); the graph holds every event"
    if not event_times:
        return (
            f"random per-user hold-out (seeded; train/validation/test {p.fractions}, the test share replaced by "
            "the data's own test file where it has one): the input has no timestamps; pairs are co-engagements "
            "within a collection; validation and test engagements are not in the graph any method reads"
        )
    where = "each user's latest events" if p.temporal_scope == "user" else "events after a global time cut"
    return (
        f"temporal ({where}: train/validation/test {p.fractions}); validation and test engagements "
        "are not in the graph any method reads"
    )


def random_kurtosis(num_items: int, dim: int, cfg: PipelineConfig) -> float:
    """Similarity kurtosis of random unit vectors of PinSage's width, by the same pair sample.

    The reference beside every kurtosis: for d = 64 it is about -0.09, so a kurtosis near 0 alone
    is not the paper's Figure 4 effect; what matters is the spread compared with the baselines'.
    """
    from pinsage_model.evaluation import metrics

    vectors = np.random.default_rng([cfg.evaluation.seed, 5]).normal(size=(num_items, dim))
    return float(metrics.similarity_spread(vectors, cfg.evaluation.similarity_pairs, cfg.evaluation.seed)["kurtosis"])


def evaluate(cfg: PipelineConfig, inputs: EvaluationInputs) -> Evaluation:
    """Rank every method on the test and validation pairs, then the users; see the module docstring.

    Raises:
      EvaluationError: no test pairs, or inputs that do not fit together.
    """
    from pinsage_model.progress import progress_bar

    ev = cfg.evaluation
    from pinsage_model.data.contracts import has_event_times

    out = Evaluation(
        test_pairs=load_pairs(inputs.graph, "test", ev.max_pairs, ev.seed),
        validation_pairs=load_pairs(inputs.graph, "validation", ev.max_pairs, ev.seed + 1),
        event_times=has_event_times(inputs.pairs / "interactions.parquet"),
    )
    if not len(out.test_pairs["q"]):
        raise EvaluationError(f"{inputs.graph / 'pairs_indexed.parquet'}: no test pairs to evaluate")
    methods, out.skipped = build_methods(cfg, inputs)
    out.num_items = n = methods[0].embeddings.shape[0]
    ids = item_id_strings(inputs.graph)
    out.split_digests = {
        "test": split_digest(ids, out.test_pairs),
        "validation": split_digest(ids, out.validation_pairs),
    }
    for m in progress_bar(methods, desc="evaluating methods"):
        t0 = time.perf_counter()
        out.results[m.name], out.test_ranks[m.name], sims = evaluate_method(
            m, out.test_pairs, out.validation_pairs, n, cfg
        )
        if sims is not None:
            out.spreads[m.name] = sims
        out.timings[m.name] = round(time.perf_counter() - t0, 3)
        summary = {k: round(v, 4) for k, v in out.results[m.name]["test"].items() if k.startswith(("hit", "mrr"))}
        log.info("evaluated %-10s in %.1f s: %s", m.name, out.timings[m.name], summary)
    out.users = user_level(cfg, inputs, methods)
    if out.users is not None and "homefeed_prior" in out.users:
        fit = out.users["homefeed_prior"]
        out.homefeed_prior = (fit.pop("prior"), fit["weight"])
    out.reference_kurtosis = random_kurtosis(n, methods[0].embeddings.shape[1], cfg)
    return out


def headline_metrics(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    """Each method's test hit-rates and MRR (the stage's report and the log line)."""
    return {
        name: {k: v for k, v in res["test"].items() if k.startswith(("hit", "mrr"))}
        for name, res in evaluation.results.items()
    }


def metrics_document(evaluation: Evaluation, cfg: PipelineConfig) -> dict:
    """``metrics.json``: per-method results, skipped baselines, user level and the protocol's settings
    (keys spelled as in :mod:`pinsage_model.metric_keys`); NaN and infinities become None."""
    ev = cfg.evaluation
    doc = {
        "methods": evaluation.results,
        "skipped_baselines": evaluation.skipped,
        "user_level": evaluation.users,
        "config": {
            "ks": list(ev.ks),
            "candidate_pool": ev.candidate_pool,
            "mrr_scale": ev.mrr_scale,
            "baseline_graph": ev.baseline_graph,
            "test_pairs": int(len(evaluation.test_pairs["q"])),
            "validation_pairs": int(len(evaluation.validation_pairs["q"])),
            "split_digests": evaluation.split_digests,
            "kurtosis_of_random_unit_vectors": evaluation.reference_kurtosis,
            "split_protocol": split_protocol(cfg, evaluation.event_times),
        },
    }
    return finite(doc)


def finite(obj):
    """NaN/inf floats -> None, so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj
