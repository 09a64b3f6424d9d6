"""``pinsage tune``: Optuna search of PinSage's settings on the **validation** split.

Runs the config's upstream stages once (raw .. neighbourhoods, skipped when unchanged), then each
trial trains, embeds and evaluates one sampled setting into ``<run-dir>/tune/trial-NNN/`` (new
neighbourhoods only when the trial changes the sampler), exactly as ``pinsage ablation`` runs a
variant; trial 0 is the config as given. The objective (``--objective``) is read on the validation
split only: ``item``, PinSage's related-item hit-rate@10 (MRR breaks ties); ``user``, the homefeed
user vectors' recall@K at the first of ``evaluation.user_ks`` on the users' validation events
(NDCG@K breaks ties; needs the per-user temporal split), for the ``user_head`` space. Test
metrics are computed by the evaluation stage but never read here, and trials evaluate no
baselines.

Every trial is a nested MLflow run under one parent run (its sampled params and validation
metrics); the best setting is written as a YAML config (``--output``) that ``pinsage run`` takes
as it is, holding only what differs from the defaults, floats rounded to 3 significant digits,
plus ``tune/trials.json`` and ``tune/report.md``. The search is
seeded (``--seed``, TPE), so the same command proposes the same trials.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from pinsage_model import metric_keys
from pinsage_model.config import PipelineConfig, config_diff, config_from_dict, config_to_dict, round_floats

log = logging.getLogger("pinsage")

HIT = metric_keys.hit_rate(10)


def _lr(trial) -> dict:
    return {"train.base_lr": trial.suggest_float("train.base_lr", 3e-4, 1e-2, log=True)}


def _loss(trial) -> dict:
    kind = trial.suggest_categorical("train.loss.kind", ["xent", "max_margin"])
    if kind == "xent":
        # in-batch negatives are drawn by popularity, so they come with the log-Q correction;
        # uniform shared negatives alone leave popularity in the scores
        in_batch = trial.suggest_categorical("train.loss.in_batch_negatives", [True, False])
        loss = {
            "kind": kind,
            "temperature": trial.suggest_float("train.loss.temperature", 0.03, 0.3, log=True),
            "in_batch_negatives": in_batch,
            "logq_correction": in_batch,
        }
    else:
        loss = {
            "kind": kind,
            "margin": trial.suggest_float("train.loss.margin", 0.05, 0.5, log=True),
            "reduction": trial.suggest_categorical("train.loss.reduction", ["mean", "mean_per_source"]),
        }
    return {"train.loss": loss}  # the whole loss: its parameters depend on its kind


def _walks(trial) -> dict:
    return {
        "sampler.num_walks": trial.suggest_categorical("sampler.num_walks", [200, 1000, 2000]),
        "sampler.walk_length": trial.suggest_categorical("sampler.walk_length", [3, 5, 10]),
        "sampler.top_t": trial.suggest_categorical("sampler.top_t", [10, 20, 50]),
    }


def _network(trial) -> dict:
    return {
        "model.num_layers": trial.suggest_int("model.num_layers", 1, 2),
        "model.hidden_dim": trial.suggest_categorical("model.hidden_dim", [64, 128, 256]),
        "model.id_embedding_dim": trial.suggest_categorical("model.id_embedding_dim", [0, 16, 32, 64]),
        "model.query_shift": trial.suggest_categorical("model.query_shift", [True, False]),
    }


def _band(trial) -> dict:
    lo = trial.suggest_float("sampler.hard_negative_band_lo", 0.005, 0.05, log=True)
    return {"sampler.hard_negative_band": [lo, 3 * lo]}


def _user_head(trial) -> dict:
    # the head is on in every trial: the search spends its trials on the head's settings, not on
    # the mean of item embeddings it replaces (a search over "enabled" spent 3 of 4 trials there)
    return {
        "user_head.enabled": True,
        "user_head.recency_half_life": trial.suggest_categorical(
            "user_head.recency_half_life", [0.0, 5.0, 10.0, 20.0, 40.0]
        ),
        "user_head.hidden_dim": trial.suggest_categorical("user_head.hidden_dim", [128, 256, 512]),
        "user_head.lr": trial.suggest_float("user_head.lr", 3e-4, 3e-3, log=True),
    }


# Search dimensions by name: ``--space`` picks a subset so a short search spends its trials
# where the validation numbers moved most (see docs/results.md).
SPACES: dict[str, Callable[[Any], dict]] = {
    "lr": _lr,
    "loss": _loss,
    "walks": _walks,
    "network": _network,
    "band": _band,
    "user_head": _user_head,
}
# What a trial is scored by: (primary, tie-break) metric names for a config, both on validation.
OBJECTIVES = ("item", "user")


def score_names(cfg: PipelineConfig, objective: str) -> tuple[str, str]:
    """The (primary, tie-break) validation metrics of ``objective``: hit@10 and MRR of related
    items, or recall@K and NDCG@K of homefeed users (K the first of ``evaluation.user_ks``)."""
    if objective == "item":
        return HIT, metric_keys.MRR
    k = cfg.evaluation.user_ks[0]
    return metric_keys.recall(k), metric_keys.ndcg(k)


def apply(cfg: PipelineConfig, params: dict[str, Any]) -> PipelineConfig:
    """``cfg`` with dotted ``section.key`` values replaced (validated like a config file)."""
    raw = config_to_dict(cfg)
    for dotted, value in params.items():
        *parents, key = dotted.split(".")
        node = raw
        for name in parents:
            node = node[name]
        node[key] = value
    return config_from_dict(raw, source="pinsage tune")


def sparse_yaml(cfg: PipelineConfig) -> str:
    """``cfg`` as YAML overrides: only what differs from the defaults, floats to 3 significant
    digits (tuned values are not known better than that)."""
    import yaml

    return yaml.safe_dump(round_floats(config_diff(cfg)), sort_keys=False)


def starting_point(cfg: PipelineConfig, dims: list[str]) -> dict[str, Any]:
    """The config's own values of the searched parameters: trial 0 evaluates the config as given,
    so the search's best is never worse on validation than where it started."""
    probe = _ConfigTrial(cfg)
    for d in dims:
        SPACES[d](probe)
    return probe.params


class _ConfigTrial:
    """Answers a search dimension's ``suggest_*`` calls with the config's current values."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.params: dict[str, Any] = {}

    def _take(self, name: str, *_: Any, **__: Any) -> Any:
        self.params[name] = _current(self.cfg, name)
        return self.params[name]

    suggest_float = suggest_int = suggest_categorical = _take


def _current(cfg: PipelineConfig, name: str) -> Any:
    if name == "sampler.hard_negative_band_lo":
        return cfg.sampler.hard_negative_band[0]
    value: Any = cfg
    for attr in name.split("."):
        value = getattr(value, attr)
    return value


def trial_config(cfg: PipelineConfig, params: dict[str, Any]) -> PipelineConfig:
    """A trial's config: ``params`` applied, baselines off (they do not depend on the trial)."""
    out = apply(cfg, params)
    return out.replace(evaluation=out.evaluation.replace(baselines=()))


def validation_score(metrics: dict, names: tuple[str, str] = (HIT, metric_keys.MRR)) -> tuple[float, float]:
    """The validation-split values of ``names`` (see :func:`score_names`) from
    ``evaluation/metrics.json``: PinSage's related-item metrics, or for recall/NDCG its homefeed
    user vectors' (``user_level.validation.pinsage-pooled``)."""
    if names[0] == HIT:
        val = metrics["methods"][metric_keys.PINSAGE]["validation"]
    else:
        val = (metrics.get("user_level") or {}).get("validation", {}).get(f"{metric_keys.PINSAGE}-pooled")
        if val is None:
            raise ValueError("evaluation/metrics.json has no user-level validation metrics of pinsage-pooled")
    return float(val[names[0]]), float(val[names[1]])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.orchestration.execution import add_set_argument

    parser.add_argument("--config", required=True, help="pipeline YAML config to start from, e.g. configs/demo.yaml")
    add_set_argument(parser)
    parser.add_argument("--trials", type=int, required=True, help="number of Optuna trials")
    parser.add_argument(
        "--run-dir", default=None, help="run directory (default: runs/<config name>); trials go to <run-dir>/tune/"
    )
    parser.add_argument(
        "--space",
        default=",".join(SPACES),
        help=f"comma-separated search dimensions (default: all: {','.join(SPACES)})",
    )
    parser.add_argument("--output", default=None, help="best config as YAML (default: <run-dir>/tune/best.yaml)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="item",
        help="validation score of a trial: item = related-item hit@10 (MRR breaks ties); "
        "user = homefeed recall@K (NDCG@K breaks ties), for --space user_head",
    )


def main(args: argparse.Namespace) -> int:
    import optuna

    from components.commands.ablation import run_variant
    from components.orchestration.execution import StageError, cli_config, cli_names
    from components.orchestration.local_runner import run_pipeline

    cfg = cli_config(args.config, args.sets)
    if cfg is None:
        return 2
    dims = cli_names("search dimension (--space)", args.space, SPACES)
    if dims is None or not _arguments_fit(cfg, args):
        return 2
    run_dir = Path(args.run_dir or f"runs/{Path(args.config).stem}")
    tune_dir = run_dir / "tune"
    output = Path(args.output or tune_dir / "best.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = score_names(cfg, args.objective)
    tracker = _Tracker(cfg, run_dir, args, names)
    results: list[dict] = []

    def objective(trial) -> float:
        params: dict[str, Any] = {}
        for d in dims:
            params.update(SPACES[d](trial))
        tcfg = trial_config(cfg, params)
        label = f"trial-{trial.number:03d}"
        res = run_variant(label, tcfg, cfg, run_dir, force=False, folder="tune")
        primary, tie = validation_score(res["metrics"], names)
        results.append(
            {
                "trial": trial.number,
                "params": params,
                names[0]: primary,
                names[1]: tie,
                "train_seconds": res["train_seconds"],
            }
        )
        tracker.trial(label, params, primary, tie)
        log.info("tune %s: validation %s %.4f %s %.4f %s", label, names[0], primary, names[1], tie, params)
        return primary + 1e-3 * tie  # the second metric only separates equal first ones

    try:
        run_pipeline(cfg, run_dir, stop="neighbourhoods")
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
        study.enqueue_trial(starting_point(cfg, dims))
        with tracker:
            study.optimize(objective, n_trials=args.trials)
    except (StageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _write_results(cfg, args, dims, names, results, output, tune_dir)
    return 0


def _arguments_fit(cfg: PipelineConfig, args: argparse.Namespace) -> bool:
    """Whether the objective suits the config and the trial count is positive (else says why)."""
    if args.objective == "user" and not (
        cfg.pairs.split == "temporal" and cfg.pairs.temporal_scope == "user" and cfg.evaluation.user_ks
    ):
        print(
            "error: --objective user ranks the users' validation events: set pairs.split: temporal, "
            "pairs.temporal_scope: user and evaluation.user_ks",
            file=sys.stderr,
        )
        return False
    if args.trials < 1:
        print(f"error: --trials must be >= 1, got {args.trials}", file=sys.stderr)
        return False
    return True


def _write_results(
    cfg: PipelineConfig,
    args: argparse.Namespace,
    dims: list[str],
    names: tuple[str, str],
    results: list[dict],
    output: Path,
    tune_dir: Path,
) -> None:
    """The best trial's config at ``output``, ``trials.json`` and ``report.md`` (also printed)."""
    from pinsage_model.io import atomic_write_json, atomic_write_text

    best = max(results, key=lambda r: (r[names[0]], r[names[1]]))
    best_cfg = apply(cfg, best["params"])
    sets = "".join(f" --set {s}" for s in args.sets)
    header = (
        f"# Output of: pinsage tune --config {args.config} --trials {args.trials} --space {','.join(dims)} "
        f"--objective {args.objective} --seed {args.seed}{sets}\n# best trial {best['trial']}: validation "
        f"{names[0]} {best[names[0]]:.4f}, {names[1]} {best[names[1]]:.4f}\n"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, header + sparse_yaml(best_cfg))
    atomic_write_json(
        tune_dir / "trials.json",
        {"config": args.config, "space": dims, "objective": args.objective, "seed": args.seed, "trials": results},
    )
    atomic_write_text(tune_dir / "report.md", _report(results, args.config, names))
    print(_report(results, args.config, names))
    print(f"best config: {output}")


def _report(results: list[dict], config: str, names: tuple[str, str]) -> str:
    lines = [
        f"# Tuning on the validation split ({config})",
        "",
        f"| trial | val {names[0]} | val {names[1]} | train s | params |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (-r[names[0]], -r[names[1]])):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        lines.append(
            f"| {r['trial']} | {r[names[0]]:.4f} | {r[names[1]]:.4f} | {r['train_seconds'] or 0:.0f} | {params} |"
        )
    return "\n".join(lines) + "\n"


class _Tracker:
    """One parent MLflow run for the search and a nested run per trial (off with tracking.enabled: false)."""

    def __init__(self, cfg: PipelineConfig, run_dir: Path, args: argparse.Namespace, names: tuple[str, str]):
        self.cfg, self.run_dir, self.args, self.names = cfg, run_dir, args, names
        self.enabled = cfg.tracking.enabled

    def __enter__(self) -> "_Tracker":
        if self.enabled:
            import mlflow

            from components.registry import mlflow_store

            client = mlflow_store.client_for(self.cfg, self.run_dir.resolve().parent)
            self.experiment = mlflow_store.experiment_id(client, self.cfg, self.run_dir.resolve().parent)
            mlflow.start_run(experiment_id=self.experiment, run_name=f"tune {self.cfg.name}")
            mlflow.log_params(
                {
                    "tune.config": self.args.config,
                    "tune.trials": self.args.trials,
                    "tune.space": self.args.space,
                    "tune.objective": self.args.objective,
                    "tune.seed": self.args.seed,
                }
            )
        return self

    def trial(self, label: str, params: dict, primary: float, tie: float) -> None:
        if not self.enabled:
            return
        import mlflow

        with mlflow.start_run(experiment_id=self.experiment, run_name=label, nested=True):
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(
                {metric_keys.validation(self.names[0]): primary, metric_keys.validation(self.names[1]): tie}
            )

    def __exit__(self, *exc) -> None:
        if self.enabled:
            import mlflow

            mlflow.end_run("FAILED" if exc[0] else "FINISHED")
