"""The evaluation's ``report.md``: Markdown tables of an :class:`pinsage_model.evaluation.protocol.Evaluation`."""

from __future__ import annotations

import numpy as np

from pinsage_model import metric_keys
from pinsage_model.config import PipelineConfig
from pinsage_model.evaluation.protocol import PINSAGE, Evaluation, split_protocol


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


def results_table(evaluation: Evaluation, ks: tuple[int, ...]) -> str:
    """The test split's table, with each method's similarity kurtosis (printed by the stage too)."""
    return format_table(
        {
            name: {**res["test"], "kurtosis": (res["similarity"] or {}).get("kurtosis")}
            for name, res in evaluation.results.items()
        },
        ks,
    )


def inductive_table(results: dict[str, dict], k: int) -> list[str]:
    """Lines of the table of test pairs by whether the query is in the training subgraph."""

    def cell(s: dict) -> str:
        return f"{s['n']}, {s[metric_keys.hit_rate(k)]:.4f}, {s[metric_keys.MRR]:.4f}" if s["n"] else "0, -, -"

    lines = [
        f"| method | query in train graph: n, hit@{k}, MRR | not in train graph: n, hit@{k}, MRR |",
        "|---|---|---|",
    ]
    for name, res in results.items():
        split = res["inductive"]
        lines.append(f"| {name} | {cell(split['query_in_train_graph'])} | {cell(split['query_not_in_train_graph'])} |")
    return lines


def user_tables(users: dict, user_ks: tuple[int, ...]) -> list[str]:
    """Lines of the user-level tables (test, then validation when ranked)."""
    lines: list[str] = []
    for title, rows in (("test", users["methods"]), ("validation, for tuning", users.get("validation"))):
        if not rows:
            continue
        lines += [
            "",
            f"## User-level, {title} (full ranking, training items masked; {users['users']} test users)",
            "",
            "| user vector | " + " | ".join(f"recall@{k} | ndcg@{k}" for k in user_ks) + " |",
            "|---|" + "---:|" * (2 * len(user_ks)),
        ]
        for name, r in rows.items():
            cells = " | ".join(f"{r[metric_keys.recall(k)]:.4f} | {r[metric_keys.ndcg(k)]:.4f}" for k in user_ks)
            lines.append(f"| {name} | {cells} |")
    return lines


def protocol_line(evaluation: Evaluation, cfg: PipelineConfig) -> str:
    """The paragraph that says how every number below was measured."""
    ev = cfg.evaluation
    return (
        f"Split protocol: {split_protocol(cfg)}. "
        f"Test pairs: {len(evaluation.test_pairs['q'])}; "
        f"candidate pool: {evaluation.results[PINSAGE]['test']['pool']} items; "
        f"MRR scale {ev.mrr_scale}; ties take the mean of their positions; graph baselines on the "
        f"{ev.baseline_graph} graph. Kurtosis reference: random unit vectors of the same width give "
        f"{evaluation.reference_kurtosis:.2f}."
    )


def render_report(evaluation: Evaluation, cfg: PipelineConfig) -> str:
    """``report.md``: the protocol, the test and validation tables, the inductive breakdown, the
    user-level tables and the plots (the similarity overlay only when a method has a spread)."""
    ks = tuple(cfg.evaluation.ks)
    results = evaluation.results
    skipped = evaluation.skipped
    val_table = format_table({k: v["validation"] for k, v in results.items() if v["validation"]}, ks, kurtosis=False)
    md = [
        "# Offline evaluation",
        "",
        protocol_line(evaluation, cfg),
        "",
        "## Test split",
        "",
        results_table(evaluation, ks),
        *(["", *(f"Not evaluated: {why}" for why in skipped.values())] if skipped else []),
        "",
        "## Validation split (for tuning)",
        "",
        val_table,
        "",
        "## Test pairs by whether the query is in the training subgraph",
        "",
        *inductive_table(results, ks[0]),
    ]
    if evaluation.users is not None:
        md += user_tables(evaluation.users, tuple(cfg.evaluation.user_ks))
    md += ["", "![hit-rate@K](hit_rate_curve.png)", ""]
    if evaluation.spreads:
        md += ["![similarity of random item pairs](similarity_all.png)", ""]
    return "\n".join(md)
