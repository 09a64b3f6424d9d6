"""``make quality``: PinSage against the baselines on the TEST split, over several model seeds.

    python -m bench.quality --config configs/ml-latest-small.yaml --seeds 0,1,2

Runs the config's pipeline up to the neighbourhoods once (the data, its split and the graph are
the same for every seed), then for each seed trains, embeds and evaluates PinSage with
``sampler.seed`` and ``train.seed`` set to it (``<run-dir>/quality/seed-<s>/``, as
``pinsage ablation`` runs a variant). The baselines are deterministic given the split and are
evaluated once. Prints a table of mean ± sd over the seeds (and, where the data has held-out
user events, the user→item recall/NDCG table) and writes
``bench/results/quality_<config name>.json`` with every number, the split protocol and the
command. Test metrics are read here, once per final config; tuning never reads them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from pathlib import Path

import numpy as np

from pinsage_model import metric_keys

RESULTS = Path(__file__).parent / "results"


def seed_config(cfg, seed: int, with_baselines: bool):
    """The config with the model's seeds set; the split and the graph keep theirs."""
    if not with_baselines:
        cfg = cfg.replace(evaluation=cfg.evaluation.replace(baselines=()))
    # model_copy, not replace: validation would derive the sections' seeds from the top-level one
    return cfg.model_copy(update={s: getattr(cfg, s).replace(seed=seed) for s in ("sampler", "train", "user_head")})


def summarise(per_seed: list[dict], keys: list[str]) -> dict:
    """``{key: {"mean", "sd", "values"}}`` over seeds (sd with ddof=1; 0 for one seed)."""
    out = {}
    for key in keys:
        v = np.array([s[key] for s in per_seed], dtype=np.float64)
        out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "values": v.tolist()}
    return out


def main(argv: list[str] | None = None) -> int:
    from components.commands.ablation import run_variant
    from components.orchestration.execution import StageError, cli_config
    from components.orchestration.local_runner import run_pipeline
    from pinsage_model.io import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds")
    parser.add_argument("--run-dir", default=None, help="default: runs/<config name>")
    args = parser.parse_args(argv)
    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s]
    run_dir = Path(args.run_dir or f"runs/{Path(args.config).stem}")
    ks = tuple(cfg.evaluation.ks)
    keys = [metric_keys.hit_rate(k) for k in ks] + [metric_keys.MRR]
    try:
        run_pipeline(cfg, run_dir, stop="neighbourhoods")
        runs = {
            s: run_variant(f"seed-{s}", seed_config(cfg, s, i == 0), cfg, run_dir, force=False, folder="quality")
            for i, s in enumerate(seeds)
        }
    except (StageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    first = runs[seeds[0]]["metrics"]["methods"]
    pinsage = {
        split: summarise([runs[s]["metrics"]["methods"]["pinsage"][split] for s in seeds], keys)
        for split in ("test", "validation")
    }
    base = {
        name: {split: {k: m[split][k] for k in keys} for split in ("test", "validation") if m.get(split)}
        for name, m in first.items()
        if name != "pinsage"
    }
    best = {k: max((b["test"][k] for b in base.values()), default=float("nan")) for k in keys}
    result = {
        "command": f"python -m bench.quality --config {args.config} --seeds {args.seeds}",
        "config": args.config,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "split_protocol": runs[seeds[0]]["metrics"]["config"]["split_protocol"],
        "test_pairs": runs[seeds[0]]["metrics"]["config"]["test_pairs"],
        "seeds": seeds,
        "pinsage": pinsage,
        "baselines": base,
        "best_baseline_test": best,
        "pinsage_over_best_baseline": {k: pinsage["test"][k]["mean"] / best[k] for k in keys if best[k] > 0},
        "train_seconds": [runs[s]["train_seconds"] for s in seeds],
        "user_level": user_level(runs, seeds, cfg.evaluation.user_ks),
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / f"quality_{cfg.name}.json", result)
    print(table(result, keys))
    if result["user_level"]:
        print("\n" + user_table(result["user_level"]))
    return 0


def user_level(runs: dict, seeds: list[int], user_ks) -> dict | None:
    """User→item recall/NDCG@K on the test users (``methods``) and, where the evaluation ranked
    them, on the validation events (``validation``): PinSage's user vectors (mean ± sd over seeds)
    and the baselines' (deterministic: from the first seed's run), or None without user events."""
    first = runs[seeds[0]]["metrics"].get("user_level")
    if not first:
        return None
    keys = [f(k) for k in user_ks for f in (metric_keys.recall, metric_keys.ndcg)]
    out = {"users": first["users"], "source": first["source"]}
    for split in ("methods", "validation"):
        if not first.get(split):
            continue
        out[split] = {}
        for name, m in first[split].items():
            if name.startswith("pinsage"):
                out[split][name] = summarise([runs[s]["metrics"]["user_level"][split][name] for s in seeds], keys)
            else:
                out[split][name] = {k: {"mean": m[k], "sd": 0.0, "values": [m[k]]} for k in keys}
    return out


def user_table(users: dict) -> str:
    """Markdown: user→item recall/NDCG per user vector (PinSage: mean ± sd over seeds), test
    events then validation events."""
    keys = list(next(iter(users["methods"].values())))
    lines = []
    for split, title in (("methods", "test"), ("validation", "validation")):
        if split not in users:
            continue
        source = users["source"] if split == "methods" else "the split settings are chosen on"
        lines += [
            f"user→item, {title} events of {users['users']} users ({source}); full ranking, training items masked",
            "",
            "| user vector | "
            + " | ".join(k.replace("recall_at_", "recall@").replace("ndcg_at_", "NDCG@") for k in keys)
            + " |",
            "|---|" + "---:|" * len(keys),
        ]
        for name, m in users[split].items():
            cells = [
                f"{m[k]['mean']:.4f} ± {m[k]['sd']:.4f}" if name.startswith("pinsage") else f"{m[k]['mean']:.4f}"
                for k in keys
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def table(result: dict, keys: list[str]) -> str:
    """Markdown: PinSage (mean ± sd over seeds) and every baseline, test split, best marked."""
    head = "| method | " + " | ".join(k.replace("hit_rate_at_", "hit@").replace("mrr", "MRR") for k in keys) + " |"
    lines = [
        f"{result['config']}: {result['test_pairs']} test pairs, model seeds {result['seeds']}; split: "
        f"{result['split_protocol']}",
        "",
        head,
        "|---|" + "---:|" * len(keys),
    ]
    p = result["pinsage"]["test"]
    lines.append("| **pinsage** | " + " | ".join(f"**{p[k]['mean']:.4f} ± {p[k]['sd']:.4f}**" for k in keys) + " |")
    for name, b in result["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(f"{b['test'][k]:.4f}" for k in keys) + " |")
    ratio = result["pinsage_over_best_baseline"]
    lines.append(
        "| pinsage / best baseline | " + " | ".join(f"{ratio[k]:.2f}×" if k in ratio else "n/a" for k in keys) + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
