"""Stage "evaluation": hit-rate@K, scaled MRR and similarity spread of PinSage vs baselines.

Reads ``embeddings/items.npy`` (PinSage), ``graph/pairs_indexed.parquet`` (held-out pairs),
``features/features.npy`` (content baseline) and the graphs (graph baselines). Every method is
ranked by the same evaluator (:mod:`pinsage_model.evaluation.metrics`) over the same candidate pool.

Outputs: ``metrics.json`` (test metrics per method, validation metrics reported separately for
tuning, the inductive split of test pairs by whether the query is in the training subgraph, and
for adjacency-format data the user-level recall/NDCG; keys spelled as in
:mod:`pinsage_model.metric_keys`, e.g. ``hit_rate_at_10``; ``config.split_digests`` names the
validation and test pairs evaluated, so the registration stage only compares models evaluated on
the same pairs), ``report.md`` (the table), PNGs (one similarity histogram per method, their
overlay, the hit-rate@K curve).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from components.orchestration.execution import StageError, stage_main
from components.stages import StageContext
from pinsage_model import metric_keys
from pinsage_model.config import PipelineConfig
from pinsage_model.graph.csr import csr_subset

log = logging.getLogger("pinsage")

PINSAGE = metric_keys.PINSAGE


def content_columns(features_dir: Path) -> list[int]:
    """Feature columns that describe an item's content: all but the degree and ``has_features``.

    The content baseline is what the item's own features say; the log degree (popularity) and
    the constant-for-most ``has_features`` flag would make it part popularity ranking.
    """
    import json

    names = json.loads((features_dir / "feature_names.json").read_text())["names"]
    keep = [i for i, name in enumerate(names) if name not in ("log_degree", "has_features")]
    return keep or list(range(len(names)))


def split_digest(item_ids: np.ndarray, pairs: dict[str, np.ndarray]) -> str:
    """Digest of the sorted (query id, positive id) pairs evaluated: two models' metrics are
    comparable (the promotion gate) only when they come from the same pairs."""
    import hashlib

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


def build_methods(cfg: PipelineConfig, inputs: dict[str, Path]) -> tuple[list, dict[str, str]]:
    """PinSage plus the configured baselines, as :class:`pinsage_model.evaluation.baselines.Method`, and
    ``{name: why}`` of the baselines skipped (EASE above ``evaluation.ease_max_items`` items)."""
    from pinsage_model.evaluation import baselines
    from pinsage_model.graph.csr import CSRGraph

    ev = cfg.evaluation
    unknown = [b for b in ev.baselines if b not in baselines.BASELINES]
    if unknown:
        raise StageError(f"evaluation.baselines: unknown '{unknown[0]}'; known: {', '.join(baselines.BASELINES)}")
    from pinsage_model.data.contracts import read_query_shift

    emb = np.load(inputs["embeddings"] / "items.npy")
    shift = read_query_shift(inputs["embeddings"], emb.shape[1])
    methods = [baselines.Method(PINSAGE, embeddings=emb, query_shift=shift if np.any(shift) else None)]
    skipped: dict[str, str] = {}
    if not ev.baselines:
        return methods, skipped
    graph_file = "train_graph.npz" if ev.baseline_graph == "train" else "graph.npz"
    graph = CSRGraph.load(inputs["graph"] / graph_file, mmap=False)
    features = np.load(inputs["features"] / "features.npy", mmap_mode="r")
    if features.shape[0] != emb.shape[0] or graph.num_items != emb.shape[0]:
        raise StageError(
            f"item counts differ: embeddings {emb.shape[0]}, features {features.shape[0]}, "
            f"{graph_file} {graph.num_items}; rerun the upstream stages"
        )
    content_features = np.asarray(features)[:, content_columns(inputs["features"])]
    for name in ev.baselines:
        try:
            method = baselines.build(
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
        except baselines.BaselineSkipped as exc:
            log.warning("%s", exc)
            skipped[name] = str(exc)
            continue
        methods.append(method)
    return methods, skipped


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
    sims = method.pair_similarity(a, b)
    return metrics.spread_summary(sims)


def user_events(cfg: PipelineConfig, inputs: dict[str, Path]):
    """``(held-out events per split, training events, source)`` for user-level evaluation, or None.

    Test events come from the data's own test file (adjacency format), else, under the temporal
    split when every collection is a user (MovieLens, user-item logs), from the users' test-split
    events. Validation events (for choosing settings; never the test) are the users' validation
    split under the temporal protocol. Training events are the cleaned ``train`` rows: exactly
    the graph's edges.
    """
    import pandas as pd

    from pinsage_model.data.contracts import INTERACTIONS, read_table

    test_path = inputs["raw"] / "test_interactions.parquet"
    if not test_path.exists() and cfg.pairs.split != "temporal":
        return None  # no held-out user events to rank (and no need to read the interactions)
    clean = pd.read_parquet(
        inputs["pairs"] / "interactions.parquet", columns=["user_id", "item_id", "timestamp", "collection_id", "split"]
    )
    train = clean[clean["split"] == "train"]
    per_user = len(clean) and (clean["collection_id"] == clean["user_id"]).all()
    held = {"validation": clean[clean["split"] == "validation"]} if per_user and cfg.pairs.split == "temporal" else {}
    if test_path.exists():
        return {"test": read_table(test_path, INTERACTIONS).to_pandas(), **held}, train, f"test file {test_path.name}"
    if per_user:
        return (
            {"test": clean[clean["split"] == "test"], **held},
            train,
            f"temporal split: each user's last {cfg.pairs.fractions[2]:.0%} of events",
        )
    return None


def _known_rows(frame, coll_of: dict, item_of: dict):
    """The frame's rows whose user and item the graph knows, with dense ``u``/``i``; and how many it did not."""
    u = frame["user_id"].map(coll_of)
    i = frame["item_id"].map(item_of)
    known = u.notna() & i.notna()
    rows = frame.assign(u=u, i=i)[known].astype({"u": np.int64, "i": np.int64})
    return rows, int((~known).sum())


def user_level(cfg: PipelineConfig, inputs: dict[str, Path], methods: list) -> dict | None:
    """Recall/NDCG@K per method with full ranking and the user's training items masked, or None.

    Ranked on the test events and, under the temporal protocol, on the validation events (the
    split settings are chosen on). User vectors: (a) ``pinsage-pooled``: the user's collection
    vector (``embeddings/collections.npy`` + ``user_shift.npy``: the user head, else the mean);
    (b) every method from the user's training items (``evaluation.recent_items`` latest ones, 0 =
    all): its own user score where it has one (ItemKNN's sum of cosines, PureSVD's projection,
    EASE's ``x_u B``, Pixie's multi-hit boosting), else the best cosine over the items.
    """
    import pyarrow.parquet as pq

    from pinsage_model.data.contracts import read_user_shift
    from pinsage_model.evaluation import metrics
    from pinsage_model.graph.csr import CSRGraph

    events = user_events(cfg, inputs)
    if events is None:
        return None
    held, train_frame, source = events
    ev = cfg.evaluation
    item_ids = pq.read_table(inputs["graph"] / "item_ids.parquet", columns=["item_idx", "item_id"]).to_pandas()
    coll_ids = pq.read_table(
        inputs["graph"] / "collection_ids.parquet", columns=["collection_idx", "collection_id"]
    ).to_pandas()
    item_of = dict(zip(item_ids["item_id"], item_ids["item_idx"]))
    coll_of = dict(zip(coll_ids["collection_id"], coll_ids["collection_idx"]))
    graph = CSRGraph.load(inputs["graph"] / "graph.npz", mmap=False)
    num_users, n = graph.num_collections, graph.num_items

    train, _ = _known_rows(train_frame, coll_of, item_of)
    recent = train.sort_values(["u", "timestamp", "i"], kind="stable").drop_duplicates(["u", "i"], keep="last")
    if ev.recent_items:
        recent = recent.groupby("u").tail(ev.recent_items)
    recent = recent.sort_values(["u"], kind="stable")
    rec_indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(recent["u"].to_numpy(), minlength=num_users), out=rec_indptr[1:])
    rec_indices = recent["i"].to_numpy()
    longest = int(np.diff(rec_indptr).max()) if num_users else 1

    coll_path = inputs["embeddings"] / "collections.npy"
    ue = None
    if coll_path.exists():
        ie = metrics.l2_normalise(methods[0].embeddings)
        # collection vectors as written: unit means, or the user head's (unnormalised) output
        ue = np.load(coll_path).astype(np.float32) + read_user_shift(inputs["embeddings"], ie.shape[1])[None, :]

    def rank_split(frame) -> tuple[dict, int, int]:
        rows, dropped = _known_rows(frame, coll_of, item_of)
        rows = rows.drop_duplicates(["u", "i"]).sort_values(["u", "i"])
        held_indptr = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows["u"].to_numpy(), minlength=num_users), out=held_indptr[1:])
        users = np.flatnonzero(np.diff(held_indptr) > 0)
        common = dict(
            users=users,
            train_indptr=np.asarray(graph.coll_indptr),
            train_indices=np.asarray(graph.coll_indices),
            test_indptr=held_indptr,
            test_indices=rows["i"].to_numpy(),
            num_items=n,
            ks=ev.user_ks,
            # set scores hold one (N,) row per history item before the max: keep the block small
            block_rows=max(1, (64 << 20) // (8 * n * max(1, longest))),
        )
        out: dict[str, dict] = {}
        if ue is not None:
            out[f"{PINSAGE}-pooled"] = metrics.user_topk_metrics(lambda pos: ue[users[pos]] @ ie.T, **common)
        for m in methods:

            def score(pos, m=m):
                ptr, idx = csr_subset(rec_indptr, rec_indices, users[pos])
                return m.set_scores(ptr, idx)

            out[f"{m.name}-recent"] = metrics.user_topk_metrics(score, **common)
        return out, dropped, len(users)

    test, dropped, n_users = rank_split(held["test"])
    result = {"methods": test, "test_interactions_dropped_unknown": dropped, "users": int(n_users), "source": source}
    if "validation" in held:
        result["validation"] = rank_split(held["validation"])[0]
    return result


def format_table(rows: dict[str, dict], ks: tuple[int, ...], kurtosis: bool = True) -> str:
    """Markdown table: method, hit@K..., MRR[, kurtosis] ("n/a": the method has no similarity)."""
    head = "| method | " + " | ".join(f"hit@{k}" for k in ks) + " | MRR |" + (" kurtosis |" if kurtosis else "")
    sep = "|---|" + "---:|" * (len(ks) + 1 + kurtosis)
    lines = [head, sep]
    for name, r in rows.items():
        cells = [f"{r[metric_keys.hit_rate(k)]:.4f}" for k in ks] + [f"{r[metric_keys.MRR]:.4f}"]
        if kurtosis:
            kurt = r.get("kurtosis")
            cells.append("n/a" if kurt is None or not np.isfinite(kurt) else f"{kurt:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finite(obj):
    """NaN/inf floats -> None, so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj


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


def split_protocol(cfg: PipelineConfig) -> str:
    """How the held-out pairs were chosen, in words, for every report that quotes a number."""
    p = cfg.pairs
    if p.split == "hash":
        return f"hash of the unordered pair (train/validation/test {p.fractions}); the graph holds every event"
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


def render_report(
    results: dict,
    users: dict | None,
    cfg: PipelineConfig,
    num_test: int,
    with_spread: bool,
    skipped: dict[str, str],
    reference_kurtosis: float,
) -> tuple[str, str]:
    """(report.md text, the test table alone); ``skipped``: {baseline: why it was not evaluated};
    ``reference_kurtosis``: :func:`random_kurtosis`."""
    ev = cfg.evaluation
    ks = tuple(ev.ks)
    table = format_table(
        {name: {**res["test"], "kurtosis": (res["similarity"] or {}).get("kurtosis")} for name, res in results.items()},
        ks,
    )
    val_table = format_table({k: v["validation"] for k, v in results.items() if v["validation"]}, ks, kurtosis=False)
    md = [
        "# Offline evaluation",
        "",
        f"Split protocol: {split_protocol(cfg)}. "
        f"Test pairs: {num_test}; candidate pool: {results[PINSAGE]['test']['pool']} items; "
        f"MRR scale {ev.mrr_scale}; ties take the mean of their positions; graph baselines on the "
        f"{ev.baseline_graph} graph. Kurtosis reference: random unit vectors of the same width give "
        f"{reference_kurtosis:.2f}.",
        "",
        "## Test split",
        "",
        table,
        *(["", *(f"Not evaluated: {why}" for why in skipped.values())] if skipped else []),
        "",
        "## Validation split (for tuning)",
        "",
        val_table,
        "",
        "## Test pairs by whether the query is in the training subgraph",
        "",
        f"| method | query in train graph: n, hit@{ks[0]}, MRR | not in train graph: n, hit@{ks[0]}, MRR |",
        "|---|---|---|",
    ]

    def cell(s: dict) -> str:
        return f"{s['n']}, {s[metric_keys.hit_rate(ks[0])]:.4f}, {s[metric_keys.MRR]:.4f}" if s["n"] else "0, -, -"

    for name, res in results.items():
        md.append(
            f"| {name} | {cell(res['inductive']['query_in_train_graph'])} | {cell(res['inductive']['query_not_in_train_graph'])} |"
        )
    if users is not None:
        uk = tuple(ev.user_ks)
        for title, rows in (("test", users["methods"]), ("validation, for tuning", users.get("validation"))):
            if not rows:
                continue
            md += [
                "",
                f"## User-level, {title} (full ranking, training items masked; {users['users']} test users)",
                "",
                "| user vector | " + " | ".join(f"recall@{k} | ndcg@{k}" for k in uk) + " |",
                "|---|" + "---:|" * (2 * len(uk)),
            ]
            for name, r in rows.items():
                md.append(
                    f"| {name} | "
                    + " | ".join(f"{r[metric_keys.recall(k)]:.4f} | {r[metric_keys.ndcg(k)]:.4f}" for k in uk)
                    + " |"
                )
    md += ["", "![hit-rate@K](hit_rate_curve.png)", ""]
    if with_spread:
        md += ["![similarity of random item pairs](similarity_all.png)", ""]
    return "\n".join(md), table


def run(cfg: PipelineConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from pinsage_model.evaluation import plots
    from pinsage_model.io import atomic_write_json, atomic_write_text
    from pinsage_model.progress import progress_bar

    ev = cfg.evaluation
    ks = tuple(ev.ks)
    test = load_pairs(inputs["graph"], "test", ev.max_pairs, ev.seed)
    val = load_pairs(inputs["graph"], "validation", ev.max_pairs, ev.seed + 1)
    if not len(test["q"]):
        raise StageError(f"{inputs['graph'] / 'pairs_indexed.parquet'}: no test pairs to evaluate")
    methods, skipped = build_methods(cfg, inputs)
    n = methods[0].embeddings.shape[0]
    ids = item_id_strings(inputs["graph"])

    results: dict[str, dict] = {}
    test_ranks: dict[str, np.ndarray] = {}
    spreads: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    for m in progress_bar(methods, desc="evaluating methods"):
        t0 = time.perf_counter()
        results[m.name], test_ranks[m.name], sims = evaluate_method(m, test, val, n, cfg)
        if sims is not None:
            spreads[m.name] = sims
        timings[m.name] = round(time.perf_counter() - t0, 3)
        summary = {k: round(v, 4) for k, v in results[m.name]["test"].items() if k.startswith(("hit", "mrr"))}
        log.info("evaluated %-10s in %.1f s: %s", m.name, timings[m.name], summary)
    users = user_level(cfg, inputs, methods)
    reference = random_kurtosis(n, methods[0].embeddings.shape[1], cfg)

    md, table = render_report(results, users, cfg, len(test["q"]), bool(spreads), skipped, reference)
    atomic_write_text(out_dir / "report.md", md)
    metrics_json = {
        "methods": results,
        "skipped_baselines": skipped,
        "user_level": users,
        "config": {
            "ks": list(ks),
            "candidate_pool": ev.candidate_pool,
            "mrr_scale": ev.mrr_scale,
            "baseline_graph": ev.baseline_graph,
            "test_pairs": int(len(test["q"])),
            "validation_pairs": int(len(val["q"])),
            "split_digests": {"test": split_digest(ids, test), "validation": split_digest(ids, val)},
            "kurtosis_of_random_unit_vectors": reference,
            "split_protocol": split_protocol(cfg),
        },
    }
    atomic_write_json(out_dir / "metrics.json", _finite(metrics_json))
    for name, sims in spreads.items():
        plots.similarity_histogram(
            sims, name, results[name]["similarity"]["kurtosis"], out_dir / f"similarity_{name}.png"
        )
    if spreads:
        plots.similarity_overlay(spreads, out_dir / "similarity_all.png")
    plots.hit_rate_curve(
        test_ranks, min(n if not ev.candidate_pool else ev.candidate_pool, 10 * max(ks)), out_dir / "hit_rate_curve.png"
    )

    print("\nOffline evaluation (test split)\n" + table + "\n", flush=True)
    return {
        "test_pairs": int(len(test["q"])),
        "validation_pairs": int(len(val["q"])),
        "skipped_baselines": skipped,
        "metrics": {
            name: {k: v for k, v in res["test"].items() if k.startswith(("hit", "mrr"))}
            for name, res in results.items()
        },
        "eval_seconds": timings,
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
