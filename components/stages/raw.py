"""Stage ``raw``: load or generate the interactions and items into the data contracts.

``data.source`` picks the input: ``synthetic`` (the ``data.preset`` generator, seeded by
the top-level ``seed``), ``movielens`` (the folder ``data.path``), ``adjacency`` ("user item item ..."
train/test files) or ``table`` (generic CSV/Parquet interactions, item table, item vectors).
Relative paths resolve against the working directory, then the repository root.

Writes ``interactions.parquet``, ``items.parquet`` (for sources without an item file: the
distinct item ids), ``test_interactions.parquet`` (adjacency test file only) and
``quarantine.parquet`` (unusable rows with ``reason``, ``source``, ``row``, ``line``). A source
without event times (adjacency files, a table without a time column) is recorded in the
interactions files' Parquet metadata (:func:`pinsage_model.data.contracts.has_event_times`) and
the report's ``event_times``: later stages then hold out random events instead of the latest. The report
lists per input file ``in`` (counted from the file itself), ``kept``, ``quarantined`` by reason
and ``notes`` (conversions: latin-1 lines, timestamp units), and the cross-file ``findings``
(items missing from the item table, cold test users and items, leaks, a missing movies file).
A source with no usable interaction fails naming its file, and so do test pairs that also occur
in train unless ``data.allow_leaks``. The table in docs/bad-input.md lists every rule.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from components.orchestration.execution import stage_main
from components.stages import StageContext
from pinsage_model.config import DataConfig, PipelineConfig
from pinsage_model.data.adjacency import load_adjacency
from pinsage_model.data.checks import InputRules
from pinsage_model.data.contracts import INTERACTIONS, ITEMS, times_metadata
from pinsage_model.data.inputs import LoaderError
from pinsage_model.data.movielens import load_movielens
from pinsage_model.data.quarantine import empty_quarantine
from pinsage_model.data.reading import LoadResult, resolve_path
from pinsage_model.data.table import ColumnMap, load_table
from pinsage_model.io import atomic_write_parquet


def _setting(value: str, key: str, source: str) -> str:
    if not value:
        raise LoaderError(f"config key 'data.{key}' must be set for data.source '{source}'")
    return value


def _load_synthetic(d: DataConfig) -> tuple[LoadResult, dict]:
    from pinsage_model.data import synthetic

    data = synthetic.generate(d.preset, d.seed, progress=True)
    source = f"synthetic:{d.preset}:seed={d.seed}"
    n = data.interactions.num_rows
    counts = {source: {"in": n, "kept": n, "quarantined": 0, "reasons": {}, "notes": []}}
    result = LoadResult(data.interactions, data.items, None, empty_quarantine(), counts)
    return result, {"degree_stats": synthetic.degree_stats(synthetic.graph_of(data))}


def _adjacency_files(d: DataConfig) -> tuple[Path, Path | None]:
    folder = resolve_path(d.path, "data.path") if d.path else None
    if d.interactions_path:
        train = resolve_path(d.interactions_path, "data.interactions_path")
    elif folder is not None:
        train = folder / "train.txt"
    else:
        raise LoaderError(
            "config key 'data.path' (a folder with train.txt) or 'data.interactions_path' "
            "must be set for data.source 'adjacency'"
        )
    test: Path | None
    if d.test_path:
        test = resolve_path(d.test_path, "data.test_path")
    else:
        test = folder / "test.txt" if folder is not None and (folder / "test.txt").exists() else None
    return train, test


def load(d: DataConfig, now: int | None = None) -> tuple[LoadResult, dict]:
    """Load the configured source; returns the tables and extra report fields.

    Args:
      d: the data config.
      now: the run's logical time (Unix seconds) for the future-timestamp rule; None: no check.
    """
    if d.source == "synthetic":
        return _load_synthetic(d)
    rules = InputRules.of(d, now)
    if d.source == "movielens":
        return load_movielens(resolve_path(_setting(d.path, "path", d.source), "data.path"), rules), {}
    if d.source == "adjacency":
        return load_adjacency(*_adjacency_files(d), rules=rules), {}
    columns = ColumnMap.of(d)
    optional = {
        key: resolve_path(value, f"data.{key}") if value else None
        for key, value in (
            ("items_path", d.items_path),
            ("item_vectors_path", d.item_vectors_path),
            ("item_vector_ids_path", d.item_vector_ids_path),
        )
    }
    path = resolve_path(_setting(d.interactions_path, "interactions_path", d.source), "data.interactions_path")
    return load_table(path, columns=columns, rules=rules, **optional), {}


def _ids_table(*tables: pa.Table | None) -> pa.Table:
    """Items table of the distinct item ids of the given interaction tables, sorted."""
    ids = pa.chunked_array([t["item_id"] for t in tables if t is not None], pa.string())
    return pa.table({"item_id": pc.unique(ids).sort()})


def _no_usable(result: LoadResult, source: str) -> LoaderError:
    """The error for a source without one usable interaction: its file, counts and first bad line."""
    src = result.sources.get("interactions", f"data.source '{source}'")
    c = result.counts.get(src, {"in": 0, "reasons": {}})
    if not c["in"]:
        return LoaderError(
            f"{src}: no records (only a header or blank lines), expected interactions; "
            "check data.path / data.interactions_path"
        )
    q = result.quarantine.filter(pc.equal(result.quarantine["source"], src)).slice(0, 1).to_pylist()
    first = ""
    if q:
        where = f"line {q[0]['line']}" if q[0].get("line") else f"row {q[0]['row']}"
        first = f"; first at {where}: {q[0]['reason']}"
    reasons = ", ".join(f"{r}: {n}" for r, n in c["reasons"].items())
    return LoaderError(f"{src}: no usable interactions: all {c['in']} records quarantined ({reasons}){first}")


def run(cfg: PipelineConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    # The future-timestamp rule reads the run's logical time; a run at the Unix epoch (the Kubeflow
    # pipeline's default parameter, i.e. none given) has no "now" to compare with.
    now = int(ctx.logical_time.timestamp())
    result, extra = load(cfg.data, now=now if now > 0 else None)
    kept = result.interactions.num_rows
    if kept == 0:
        raise _no_usable(result, cfg.data.source)
    interactions = INTERACTIONS.validate(result.interactions, "raw/interactions")
    items = ITEMS.validate(
        result.items if result.items is not None else _ids_table(interactions, result.test_interactions),
        "raw/items",
    )
    times = times_metadata(result.event_times)
    atomic_write_parquet(out_dir / "interactions.parquet", interactions, metadata=times)
    atomic_write_parquet(out_dir / "items.parquet", items)
    if result.test_interactions is not None:
        test = INTERACTIONS.validate(result.test_interactions, "raw/test_interactions")
        atomic_write_parquet(out_dir / "test_interactions.parquet", test, metadata=times)
    atomic_write_parquet(out_dir / "quarantine.parquet", result.quarantine)
    total = {k: sum(c[k] for c in result.counts.values()) for k in ("in", "kept", "quarantined")}
    reasons: dict[str, int] = {}
    for c in result.counts.values():
        for r, n in c["reasons"].items():
            reasons[r] = reasons.get(r, 0) + n
    return {
        "source": cfg.data.source,
        "rows": total,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "files": result.counts,
        "findings": result.findings,
        "event_times": result.event_times,
        "future_timestamps_after": (ctx.timestamp() if now > 0 and cfg.data.source != "synthetic" else None),
        "interactions": kept,
        "test_interactions": result.test_interactions.num_rows if result.test_interactions is not None else 0,
        "items": items.num_rows,
        "items_with_features": int(items.num_rows - items["features"].null_count)
        if "features" in items.column_names
        else 0,
        "users": pc.count_distinct(interactions["user_id"]).as_py(),
        "collections": pc.count_distinct(
            interactions["collection_id"] if "collection_id" in interactions.column_names else interactions["user_id"]
        ).as_py(),
        **extra,
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
