"""``pinsage config show``: the resolved config, every value that differs from the default marked.

A config file states only what it changes; this prints the whole tree it resolves to, as YAML,
with ``# * default: <value>`` after each value the file (or a default of another loss or index
kind) sets to something other than the schema's default.

Usage::

    pinsage config show --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pinsage_model.config import PipelineConfig, config_diff, config_to_dict, flatten

MARK = "# *"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print the resolved config, non-default values marked")
    from components.orchestration.execution import add_set_argument

    show.add_argument("--config", required=True, help="pipeline YAML config, e.g. configs/demo.yaml")
    add_set_argument(show)


def render(cfg: PipelineConfig) -> str:
    """``cfg`` as YAML, one key a line, :data:`MARK` and the default after each non-default value."""
    changed = set(flatten(config_diff(cfg)))
    defaults = flatten(PipelineConfig())
    lines: list[str] = []

    def walk(tree: dict, prefix: str, indent: int) -> None:
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                lines.append(f"{'  ' * indent}{key}:")
                walk(value, f"{dotted}.", indent + 1)
                continue
            line = f"{'  ' * indent}{key}: {_scalar(value)}"
            if dotted in changed:
                line += f"  {MARK}"
                if dotted in defaults:
                    line += f" default: {_scalar(defaults[dotted])}"
            lines.append(line)

    walk(config_to_dict(cfg), "", 0)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    """A leaf in YAML flow style (JSON is valid YAML for these: strings quoted, lists inline)."""
    return json.dumps(value)


def main(args: argparse.Namespace) -> int:
    from components.orchestration.execution import cli_config

    cfg = cli_config(args.config, args.sets)
    if cfg is None:
        return 2
    print(render(cfg), end="")
    return 0
