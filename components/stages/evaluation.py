"""Stage "evaluation": hit-rate@K, scaled MRR and similarity spread of PinSage vs baselines.

Reads ``embeddings/items.npy`` (PinSage), ``graph/pairs_indexed.parquet`` (held-out pairs),
``features/features.npy`` (content baseline) and the graphs (graph baselines). The protocol is
the library's (:mod:`pinsage_model.evaluation.protocol`): every method is ranked by the same
evaluator over the same candidate pool.

Outputs: ``metrics.json`` (test metrics per method, validation metrics reported separately for
tuning, the inductive split of test pairs by whether the query is in the training subgraph, and
for adjacency-format data the user-level recall/NDCG; keys spelled as in
:mod:`pinsage_model.metric_keys`, e.g. ``hit_rate_at_10``; ``config.split_digests`` names the
validation and test pairs evaluated, so the registration stage only compares models evaluated on
the same pairs), ``report.md`` (the table), PNGs (one similarity histogram per method, their
overlay, the hit-rate@K curve).
"""

from __future__ import annotations

import sys
from pathlib import Path

from components.orchestration.execution import StageError, stage_main
from components.stages import StageContext
from pinsage_model.config import PipelineConfig


def run(cfg: PipelineConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    """Evaluate PinSage and the baselines; write ``metrics.json``, ``report.md`` and the plots."""
    from pinsage_model.evaluation import protocol
    from pinsage_model.evaluation.report import render_report, results_table
    from pinsage_model.io import atomic_write_json, atomic_write_text

    folders = protocol.EvaluationInputs(
        **{name: inputs[name] for name in ("raw", "pairs", "graph", "features", "embeddings")}
    )
    try:
        evaluation = protocol.evaluate(cfg, folders)
    except protocol.EvaluationError as exc:
        raise StageError(str(exc)) from exc
    if evaluation.homefeed_prior is not None:  # the index adds it to homefeed scores, as evaluation did
        from pinsage_model.model.prior import save_prior

        fit = (evaluation.users or {})["homefeed_prior"]
        save_prior(out_dir, *evaluation.homefeed_prior, {"grid": fit["grid"], "recall": fit["recall"]})
    atomic_write_text(out_dir / "report.md", render_report(evaluation, cfg))
    atomic_write_json(out_dir / "metrics.json", protocol.metrics_document(evaluation, cfg))
    write_plots(evaluation, cfg, out_dir)
    print(
        "\nOffline evaluation (test split)\n" + results_table(evaluation, tuple(cfg.evaluation.ks)) + "\n", flush=True
    )
    return {
        "test_pairs": int(len(evaluation.test_pairs["q"])),
        "validation_pairs": int(len(evaluation.validation_pairs["q"])),
        "skipped_baselines": evaluation.skipped,
        "metrics": protocol.headline_metrics(evaluation),
        "eval_seconds": evaluation.timings,
    }


def write_plots(evaluation, cfg: PipelineConfig, out_dir: Path) -> None:
    """One similarity histogram per method with a spread, their overlay, and the hit-rate@K curve."""
    from pinsage_model.evaluation import plots

    for name, sims in evaluation.spreads.items():
        kurtosis = evaluation.results[name]["similarity"]["kurtosis"]
        plots.similarity_histogram(sims, name, kurtosis, out_dir / f"similarity_{name}.png")
    if evaluation.spreads:
        plots.similarity_overlay(evaluation.spreads, out_dir / "similarity_all.png")
    ev = cfg.evaluation
    pool = evaluation.num_items if not ev.candidate_pool else ev.candidate_pool
    plots.hit_rate_curve(evaluation.test_ranks, min(pool, 10 * max(ev.ks)), out_dir / "hit_rate_curve.png")


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
