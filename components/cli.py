"""``pinsage``: the command line. Each subcommand lives in the module that owns it."""

from __future__ import annotations

import argparse
import importlib
import sys

from components.logs import DEFAULT_LOG_FILE, setup_logging

# subcommand -> (module, one-line help). Modules expose ``add_arguments(parser)`` and ``main(args)``.
COMMANDS = {
    "run": ("components.cli", "run the pipeline stages in order over a run directory"),
    "generate": ("components.commands.generate", "write the synthetic demo/bench data set"),
    "recommend": ("components.commands.recommend", "related items for an item, or homefeed for a user"),
    "ablation": ("components.commands.ablation", "train and evaluate the paper's Table 1/4 variants"),
    "tune": ("components.commands.tune", "Optuna search of PinSage's settings on the validation split"),
    "promote": ("components.commands.champion", "move the MLflow 'champion' alias to a model version"),
    "rollback": ("components.commands.champion", "restore the previous 'champion' model version"),
    "config": ("components.commands.config", "show the resolved config, non-default values marked"),
    "init": ("components.commands.init", "write the sparse config `pinsage run --data FILE` uses, to edit"),
}


def add_arguments(parser: argparse.ArgumentParser, command: str = "run") -> None:
    from components.commands.init import add_data_arguments
    from components.orchestration.execution import add_set_argument
    from components.stages import STAGE_NAMES

    parser.add_argument("--config", help="pipeline YAML config, e.g. configs/demo.yaml (or give --data)")
    add_data_arguments(parser, required=False)
    add_set_argument(parser)
    parser.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>)")
    parser.add_argument("--from", dest="start", choices=STAGE_NAMES, help="first stage to run")
    parser.add_argument("--to", dest="stop", choices=STAGE_NAMES, help="last stage to run")
    parser.add_argument("--force", action="store_true", help="rerun stages even when unchanged")


def main_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from components.commands.init import data_command, own_data_config, settings_lines
    from components.orchestration.execution import KNOWN_ERRORS, cli_config, error_line
    from components.orchestration.local_runner import run_pipeline

    if bool(args.config) == bool(args.data) or ((args.items or args.columns) and not args.data):
        print("error: give --config FILE or --data FILE (--items and --columns go with --data)", file=sys.stderr)
        return 2
    cfg = cli_config(args.config, args.sets) if args.config else own_data_config(args)
    if cfg is None:
        return 2
    source = args.config or f"the data flags (`{data_command('init', args)}` writes them as a config)"
    run_dir = Path(args.run_dir or f"runs/{Path(args.config).stem if args.config else cfg.name}")
    print("\n".join(settings_lines(cfg, source)) + "\n", flush=True)
    try:
        reports = run_pipeline(cfg, run_dir, args.start, args.stop, force=args.force)
    except KNOWN_ERRORS as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    print(f"\n{'stage':<16}{'status':<10}{'seconds':>9}")
    for name, rep in reports.items():
        print(f"{name:<16}{'skipped' if rep.get('skipped') else 'ran':<10}{rep.get('seconds', 0):>9.1f}")
    print(f"\nrun directory: {run_dir}")
    print("\n".join(where_lines(run_dir)))
    return 0


def where_lines(run_dir) -> list[str]:
    """Where a finished run's results, report and recommendations are (what exists of them)."""
    from components.commands.recommend import example_ids

    lines = []
    for what, rel in (
        ("settings", "config.resolved.yaml"),
        ("results", "evaluation/metrics.json"),
        ("report", "registration/report.html"),
        ("decision", "registration/decision.json"),
        ("index", "index"),
    ):
        if (run_dir / rel).exists():
            lines.append(f"{what + ':':<17}{run_dir / rel}")
    item, user = example_ids(run_dir)
    if item and (run_dir / "index").exists():
        lines.append(f"{'recommendations:':<17}pinsage recommend --run-dir {run_dir} --item {item}")
        if user:
            lines.append(f"{'':<17}pinsage recommend --run-dir {run_dir} --user {user}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pinsage",
        description="PinSage item embeddings and recommendations as a pipeline (see README.md).",
    )
    parser.add_argument("--verbose", action="store_true", help="every library's log lines on the console, at DEBUG")
    parser.add_argument(
        "--log-file", default=DEFAULT_LOG_FILE, help="where library log lines go (default: %(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = sys.modules[__name__] if module == __name__ else importlib.import_module(module)
        doc = (mod.__doc__ or "").strip() if mod is not sys.modules[__name__] else ""
        p = sub.add_parser(
            name,
            help=help_text,
            description=f"{help_text}\n\n{doc}" if doc else help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        adder = getattr(mod, "add_arguments")
        adder(p, name) if name in ("run", "promote", "rollback") else adder(p)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_file)
    if args.command == "run":
        return main_run(args)
    command = importlib.import_module(COMMANDS[args.command][0])
    return command.main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
