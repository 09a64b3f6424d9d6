"""``pinsage init``: write the sparse config that ``pinsage run --data FILE`` runs, for a person to edit.

The config names the interactions table (CSV or Parquet), the optional item table and the columns
detected by name (``user_id``/``userId``/``user``..., ``item_id``/``movieId``/``product_id``...,
``timestamp``/``ts``/``time``..., optionally ``collection_id``/``board_id``/``playlist_id``...
and ``weight``/``rating``/``score``); ``--columns user=U,item=I,timestamp=T`` names them instead.
Every key left out takes the schema's default: the shipped general-purpose settings (tuned on
ml-latest-small). ``pinsage config show --config FILE`` prints everything the file resolves to.

Usage::

    pinsage init --data events.csv                 # writes events.yaml
    pinsage init --data events.parquet --items items.csv --columns user=uid,item=pin --out my.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pinsage_model.config import PipelineConfig

ROLES = ("user", "item", "timestamp", "collection", "weight")
# The settings a run prints whatever its config: what decides the model most.
HEADLINE_KEYS = (
    "train.loss.kind",
    "train.loss.in_batch_negatives",
    "train.loss.logq_correction",
    "train.base_lr",
    "train.epochs",
    "model.hidden_dim",
    "model.output_dim",
    "model.id_embedding_dim",
    "sampler.num_walks",
    "sampler.top_t",
    "user_head.enabled",
)


def add_data_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--data``, ``--items`` and ``--columns`` (``pinsage init`` and ``pinsage run --data``)."""
    parser.add_argument("--data", required=required, help="interactions table, .csv or .parquet (one engagement a row)")
    parser.add_argument("--items", default="", help="optional item table (item column, title / genres / tags)")
    parser.add_argument(
        "--columns",
        default="",
        metavar="ROLE=COLUMN,...",
        help=f"column names where detection by name does not find them; roles: {', '.join(ROLES)}",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.orchestration.execution import add_set_argument

    add_data_arguments(parser, required=True)
    add_set_argument(parser)
    parser.add_argument("--out", default=None, help="config file to write (default: <data file stem>.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite --out when it exists")


def parse_columns(text: str) -> dict[str, str]:
    """``"user=uid,item=pin"`` -> ``{"user": "uid", "item": "pin"}``; a ValueError names a bad part."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, column = part.partition("=")
        if not sep or role.strip() not in ROLES or not column.strip():
            raise ValueError(f"--columns: '{part}' is not ROLE=COLUMN with ROLE one of {', '.join(ROLES)}")
        out[role.strip()] = column.strip()
    return out


def data_config(data: str, items: str = "", columns: str = "") -> dict:
    """The raw config of ``pinsage run --data``: a name (the file's stem) and the ``data`` section
    naming the table, the item table and the detected columns.

    Raises:
      ValueError: (a LoaderError among them) naming the file, the role and the header when a
        column cannot be found.
    """
    from pinsage_model.data.reading import resolve_path
    from pinsage_model.data.table import detect_columns

    found = detect_columns(resolve_path(data, "interactions table"), parse_columns(columns))
    section: dict[str, str] = {"source": "table", "interactions_path": data}
    if items:
        resolve_path(items, "item table")  # a missing item table is named now, not stages later
        section["items_path"] = items
    section.update({f"{role}_column": column for role, column in found.items()})
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(data).stem) or "data"
    return {"name": name, "data": section}


def sparse(cfg: PipelineConfig) -> dict:
    """What ``cfg`` sets apart from the defaults, ``name`` and ``data.source`` always included."""
    from pinsage_model.config import config_diff

    diff = config_diff(cfg)
    diff["data"] = {"source": cfg.data.source, **diff.get("data", {})}
    return {"name": cfg.name, **diff}


def sparse_yaml(cfg: PipelineConfig, command: str) -> str:
    """:func:`sparse` as a YAML file that says where it came from and what the rest is."""
    import yaml

    head = (
        f"# Written by: {command}\n"
        "# Every key not written here takes its default, the shipped general-purpose settings (tuned on\n"
        "# ml-latest-small); `pinsage config show --config THIS_FILE` prints them all.\n"
    )
    return head + yaml.safe_dump(sparse(cfg), sort_keys=False)


def settings_lines(cfg: PipelineConfig, source: str) -> list[str]:
    """What a run prints about its settings: where they came from, what differs from the shipped
    defaults, and the headline values."""
    from pinsage_model.config import config_diff, flatten

    changed = flatten(config_diff(cfg))
    values = flatten(cfg)
    lines = [f"settings: the shipped defaults (tuned on ml-latest-small) plus {source}:"]
    lines += [f"  {k} = {v}" for k, v in changed.items()] or ["  (nothing changed)"]
    lines.append("  headline: " + ", ".join(f"{k}={values[k]}" for k in HEADLINE_KEYS if k in values))
    return lines


def own_data_config(args: argparse.Namespace) -> PipelineConfig | None:
    """The config of ``--data``/``--items``/``--columns``/``--set``; on bad input print one line and
    return None."""
    from components.orchestration.execution import error_line
    from pinsage_model.config import ConfigError, config_with_sets

    try:
        return config_with_sets(data_config(args.data, args.items, args.columns), "--data", args.sets)
    except (ConfigError, ValueError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return None


def data_command(command: str, args: argparse.Namespace) -> str:
    """The ``pinsage`` command line of ``--data``/``--items``/``--columns``/``--set``, shell-quoted."""
    import shlex

    parts = ["pinsage", command, "--data", args.data]
    parts += ["--items", args.items] if args.items else []
    parts += ["--columns", args.columns] if args.columns else []
    for s in args.sets:
        parts += ["--set", s]
    return " ".join(shlex.quote(p) for p in parts)


def main(args: argparse.Namespace) -> int:
    from pinsage_model.io import atomic_write_text

    cfg = own_data_config(args)
    if cfg is None:
        return 2
    out = Path(args.out or f"{cfg.name}.yaml")
    if out.exists() and not args.force:
        print(f"error: {out} exists; choose another --out or add --force", file=sys.stderr)
        return 2
    atomic_write_text(out, sparse_yaml(cfg, data_command("init", args)))
    print("\n".join(settings_lines(cfg, str(out))))
    print(f"\nwrote {out}; run it with: pinsage run --config {out}")
    return 0
