"""``pinsage ablation``: train and evaluate the variants of paper Table 1 and the T sweep of Table 4.

Reuses the run's upstream stages (raw .. neighbourhoods, skipped when unchanged), then for each
variant trains the "model" stage with a config override into ``<run-dir>/ablation/<variant>/``
(the variant equal to the configured model uses the run's own model/embeddings/evaluation),
runs inference and evaluation there, and prints one table (also ``ablation/ablation.md`` and
``ablation/ablation.json``). Baselines are evaluated once, with the full PinSage variant.

Variants (paper 4.1):

* ``max-pooling``: element-wise max aggregation, no hard negatives;
* ``mean-pooling``: element-wise mean, no hard negatives;
* ``mean-pooling-xent``: mean pooling with the cross-entropy loss;
* ``mean-pooling-hard``: mean pooling with hard negatives;
* ``pinsage``: importance pooling and hard negatives;
* ``pinsage-T<n>``: ``pinsage`` with neighbourhoods of the top n items (Table 4).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pinsage_model import metric_keys
from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")

# name -> (pooling, use_hard_negatives, loss)
VARIANTS: dict[str, tuple[str, bool, str]] = {
    "max-pooling": ("max", False, "max_margin"),
    "mean-pooling": ("mean", False, "max_margin"),
    "mean-pooling-xent": ("mean", False, "xent"),
    "mean-pooling-hard": ("mean", True, "max_margin"),
    "pinsage": ("importance", True, "max_margin"),
}
T_VALUES = (10, 20, 50)
FULL = "pinsage"


def variant_config(cfg: PipelineConfig, name: str, top_t: int | None = None) -> PipelineConfig:
    """The run's config with one variant's model, training and sampler overrides.

    Only the full PinSage variant (at the configured T) keeps the configured baselines.
    """
    pooling, hard, loss = VARIANTS[name]
    # the configured loss's own parameters when the variant keeps its kind, else that kind's defaults
    loss_cfg = cfg.train.loss if cfg.train.loss.kind == loss else {"kind": loss}
    out = cfg.replace(
        model=cfg.model.replace(pooling=pooling),
        train=cfg.train.replace(use_hard_negatives=hard, loss=loss_cfg),
    )
    if top_t is not None and top_t != cfg.sampler.top_t:
        out = out.replace(sampler=cfg.sampler.replace(top_t=top_t))
    if name != FULL or (top_t is not None and top_t != cfg.sampler.top_t):
        out = out.replace(evaluation=cfg.evaluation.replace(baselines=()))
    return out


def plan(cfg: PipelineConfig, variants: list[str], t_values: list[int]) -> dict[str, PipelineConfig]:
    """Variant label -> config; a T equal to the configured one reuses the ``pinsage`` run."""
    out = {name: variant_config(cfg, name) for name in variants}
    for t in t_values:
        if t == cfg.sampler.top_t and FULL in out:
            continue
        out[f"{FULL}-T{t}"] = variant_config(cfg, FULL, top_t=t)
    return out


def run_variant(
    label: str, vcfg: PipelineConfig, base_cfg: PipelineConfig, run_dir: Path, force: bool, folder: str = "ablation"
) -> dict:
    """Neighbourhoods (if the sampler differs), training, inference and evaluation of one variant.

    The variant's stage folders go to ``<run_dir>/<folder>/<label>/`` (``pinsage tune`` uses
    ``folder="tune"``); returns ``{"metrics": evaluation metrics.json, "train_seconds", "dir"}``.
    """
    from components.orchestration.execution import execute, start_time
    from components.stages import StageContext, get_stage

    # The variant that is the configured model itself reuses the run's own stage folders, so an
    # ablation after `pinsage run` does not train it again (fingerprints skip unchanged stages).
    sub = run_dir if vcfg == base_cfg else run_dir / folder / label
    ctx = StageContext.for_run_dir(run_dir, start_time())
    nbhd = run_dir / "neighbourhoods"
    if vcfg.sampler != base_cfg.sampler:
        nbhd = sub / "neighbourhoods"
        execute(get_stage("neighbourhoods"), vcfg, {"graph": run_dir / "graph"}, nbhd, ctx, force=force)
    dirs = {
        "raw": run_dir / "raw",
        "pairs": run_dir / "pairs",
        "graph": run_dir / "graph",
        "features": run_dir / "features",
        "neighbourhoods": nbhd,
        "model": sub / "model",
        "embeddings": sub / "embeddings",
    }
    reports = {}
    for stage_name in ("model", "embeddings", "evaluation"):
        stage = get_stage(stage_name)
        reports[stage_name] = execute(
            stage, vcfg, {n: dirs[n] for n in stage.inputs}, sub / stage_name, ctx, force=force
        )
    metrics = json.loads((sub / "evaluation" / "metrics.json").read_text())
    model_report = reports["model"]
    seconds = model_report.get("train_seconds", model_report.get("seconds"))
    return {"metrics": metrics, "train_seconds": seconds, "dir": str(sub)}


def table(results: dict[str, dict], ks: tuple[int, ...], baselines: tuple[str, ...] = ()) -> tuple[str, list[dict]]:
    """Markdown table: the variants in run order, then the baselines evaluated with the full variant."""

    def row(label: str, m: dict, seconds: float | None) -> dict:
        return {
            "method": label,
            **{metric_keys.hit_rate(k): m["test"][metric_keys.hit_rate(k)] for k in ks},
            metric_keys.MRR: m["test"][metric_keys.MRR],
            "kurtosis": (m.get("similarity") or {}).get("kurtosis"),
            metric_keys.validation(metric_keys.MRR): (m.get("validation") or {}).get(metric_keys.MRR),
            "train_seconds": seconds,
        }

    rows = [
        row(label, res["metrics"]["methods"][metric_keys.PINSAGE], res["train_seconds"])
        for label, res in results.items()
    ]
    if FULL in results:
        methods = results[FULL]["metrics"]["methods"]
        order = [b for b in baselines if b in methods] + sorted(set(methods) - set(baselines) - {metric_keys.PINSAGE})
        rows += [row(name, methods[name], None) for name in order]
    fmt = lambda v, p: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
    lines = [
        "| method | " + " | ".join(f"hit@{k}" for k in ks) + " | MRR | kurtosis | val MRR | train s |",
        "|---|" + "---:|" * (len(ks) + 4),
    ]
    for r in rows:
        cells = [fmt(r[metric_keys.hit_rate(k)], 4) for k in ks] + [
            fmt(r[metric_keys.MRR], 4),
            fmt(r["kurtosis"], 2),
            fmt(r[metric_keys.validation(metric_keys.MRR)], 4),
            fmt(r["train_seconds"], 1),
        ]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.orchestration.execution import add_set_argument

    parser.add_argument("--config", required=True, help="pipeline YAML config, e.g. configs/demo.yaml")
    add_set_argument(parser)
    parser.add_argument(
        "--run-dir",
        default=None,
        help="run directory (default: runs/<config name>); variants go to <run-dir>/ablation/",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated Table 1 variants (default: all: {','.join(VARIANTS)})",
    )
    parser.add_argument(
        "--t-values",
        default=",".join(map(str, T_VALUES)),
        help="comma-separated neighbourhood sizes T for the Table 4 sweep ('' for none)",
    )
    parser.add_argument("--force", action="store_true", help="retrain variants even when unchanged")


def main(args: argparse.Namespace) -> int:
    from components.orchestration.execution import StageError, cli_config, cli_names
    from components.orchestration.local_runner import run_pipeline
    from pinsage_model.io import atomic_write_json, atomic_write_text

    cfg = cli_config(args.config, args.sets)
    if cfg is None:
        return 2
    variants = cli_names("variant", args.variants, VARIANTS)
    if variants is None:
        return 2
    try:
        t_values = [int(t) for t in args.t_values.split(",") if t]
    except ValueError:
        print(f"error: --t-values must be comma-separated integers, got {args.t_values!r}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or f"runs/{Path(args.config).stem}")
    try:
        run_pipeline(cfg, run_dir, stop="neighbourhoods")
        results = {}
        for label, vcfg in plan(cfg, variants, t_values).items():
            log.info("ablation variant %s", label)
            results[label] = run_variant(label, vcfg, cfg, run_dir, args.force)
    except (StageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ks = tuple(cfg.evaluation.ks)
    md, rows = table(results, ks, tuple(cfg.evaluation.baselines))
    header = (
        f"# Ablation (paper Tables 1 and 4)\n\nconfig: {args.config}; test split; "
        f"MRR scale {cfg.evaluation.mrr_scale}; T of the base variants: {cfg.sampler.top_t}\n\n"
    )
    atomic_write_text(run_dir / "ablation" / "ablation.md", header + md + "\n")
    atomic_write_json(
        run_dir / "ablation" / "ablation.json", {"rows": rows, "variants": {k: v["dir"] for k, v in results.items()}}
    )
    print("\n" + md + f"\n\nwritten: {run_dir / 'ablation' / 'ablation.md'}")
    return 0
