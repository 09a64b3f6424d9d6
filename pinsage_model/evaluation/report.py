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
    fit = users.get("homefeed_prior")
    if fit:
        k = user_ks[0]
        lines += [
            "",
            f"pinsage-pooled adds the homefeed popularity prior, weight {fit['weight']:g} times log(1 + the item's "
            f"training engagements), chosen on the validation users (recall@{k} {max(fit['recall']):.4f}; "
            f"{fit['recall'][0]:.4f} without it).",
        ]
    return lines


def protocol_line(evaluation: Evaluation, cfg: PipelineConfig) -> str:
    """The paragraph that says how every number below was measured."""
    ev = cfg.evaluation
    return (
        f"Split protocol: {split_protocol(cfg, evaluation.event_times)}. "
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


# --- the run report's sections beside the evaluation (registration stage) ------------------------


def changes_markdown(changes: dict | None, k: int) -> list[str]:
    """Lines of "What changes if this model is promoted" (:mod:`pinsage_model.evaluation.changes`)."""
    from pinsage_model.evaluation.changes import overlap_key

    lines = ["## What changes if this model is promoted", ""]
    if changes is None:
        return lines + ["No champion to compare with: this model is the first (or tracking is off)."]
    if "note" in changes:
        return lines + [f"Compared with the champion, version {changes['champion']}: {changes['note']}."]
    lines += [
        f"Against the champion, version {changes['champion']}, on a fixed sample of queries (seed "
        f"{changes['seed']}): how many of each query's top {k} stay, how many answers change entirely, "
        f"and how many items enter some top {k} that were in none of the champion's.",
        "",
        f"| queries | n | mean overlap@{k} | top {k} changed entirely | new items in some top {k} | e.g. |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for kind, label in (("related_items", "related items"), ("homefeeds", "homefeeds")):
        c = changes.get(kind)
        if c:
            lines.append(
                f"| {label} | {c['queries']} | {c[overlap_key(k)]:.3f} | {c['share_changed_entirely']:.1%} | "
                f"{c['new_items']} | {', '.join(c['new_item_examples'])} |"
            )
    return lines


def samples_markdown(version, items: list[str], users: list[tuple[str, list[str]]], titles: dict, k: int) -> list[str]:
    """Lines of this model's answers to a few sample queries: related items of ``items`` and the
    homefeeds of ``users`` (user id, recent items oldest first), each with titles when known."""

    def table(item_ids: list[str], scores: list[float]) -> list[str]:
        rows = [
            f"| {r} | {i} | {titles.get(i, '').replace('|', '/')} | {s:.4f} |"
            for r, (i, s) in enumerate(zip(item_ids, scores), 1)
        ]
        return ["| rank | item | title | score |", "|---:|---|---|---:|", *rows, ""]

    lines = [f"## Sample recommendations of this model (index version {version.name})", ""]
    for item, nb in zip(items, version.related_items(items, k) if items else []):
        lines += [f"### Related to {item}" + (f": {titles[item]}" if titles.get(item) else ""), ""]
        lines += table(nb.item_ids, nb.scores)
    for user, recent in users:
        known = version.known(recent)
        if not known:
            continue
        nb = version.homefeed_from_recent(known, k)
        shown = ", ".join(titles.get(i) or i for i in known[-3:])
        lines += [f"### Homefeed of user {user} (latest items: {shown})", ""]
        lines += table(nb.item_ids, nb.scores)
    return lines


# --- the self-contained HTML page of a report ------------------------------------------------------

_PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:4px 8px}"
    "th{background:#eee}td.n{text-align:right}"
    "img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}"
)


def markdown_to_html(md: str, images: dict[str, bytes], title: str) -> str:
    """A self-contained HTML page of a report written in the Markdown our reports use: ``#``
    headings, pipe tables, ``![alt](file.png)`` images (inlined from ``images`` as base64; one not
    given is left out with its alt text), ``- `` list items and paragraphs. Text is escaped."""
    import html

    body: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body.append(_html_table(rows))
        elif line.startswith("![") and "](" in line and line.endswith(")"):
            alt, src = line[2:-1].split("](", 1)
            body.append(_html_image(alt, src, images.get(src)))
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{html.escape(lines[i].strip()[2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("#", "|", "![", "- ")):
                para.append(lines[i].strip())
                i += 1
            body.append(f"<p>{html.escape(' '.join(para))}</p>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_PAGE_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _html_table(rows: list[list[str]]) -> str:
    import html

    if len(rows) > 1 and all(set(c) <= set("-: ") for c in rows[1]):  # the header separator
        head, rows = rows[0], rows[2:]
    else:
        head = []
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
    out += ["<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows]
    return "".join(out) + "</table>"


def _html_cell(text: str) -> str:
    """A table cell; numbers (and percentages) right-aligned."""
    import html

    try:
        float(text.rstrip("%"))
        numeric = True
    except ValueError:
        numeric = False
    return f'<td class="n">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def _html_image(alt: str, src: str, data: bytes | None) -> str:
    import base64
    import html

    if data is None:
        return f"<p><em>{html.escape(alt)} ({html.escape(src)} not found)</em></p>"
    encoded = base64.b64encode(data).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"></figure>'
