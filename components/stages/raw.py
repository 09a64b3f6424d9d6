"""Stage ``raw``: load or generate the interactions and items into the data contracts.

``data.source`` picks the input: ``synthetic`` (the ``data.preset`` generator, seeded by
``data.seed``), ``movielens`` (the folder ``data.path``), ``adjacency`` ("user item item ..."
train/test files) or ``table`` (generic CSV/Parquet interactions, item table, item vectors).
Relative paths resolve against the working directory, then the repository root.

Writes ``interactions.parquet``, ``items.parquet`` (for sources without an item file: the
distinct item ids), ``test_interactions.parquet`` (adjacency test file only) and
``quarantine.parquet`` (unusable rows with ``reason``, ``source``, ``row``). The report counts
rows in / kept / quarantined by file and reason; a source with no usable interaction fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from components.base import stage_main
from components.stages import StageContext
from pinsage_model.config import DataConfig, PipelineConfig
from pinsage_model.contracts import INTERACTIONS, ITEMS
from pinsage_model.io import atomic_write_parquet
from pinsage_model.loaders import (
    ColumnMap,
    LoaderError,
    LoadResult,
    empty_quarantine,
    load_adjacency,
    load_movielens,
    load_table,
    resolve_path,
)


def _setting(value: str, key: str, source: str) -> str:
    if not value:
        raise LoaderError(f"config key 'data.{key}' must be set for data.source '{source}'")
    return value


def _load_synthetic(d: DataConfig) -> tuple[LoadResult, dict]:
    from pinsage_model import synthetic

    data = synthetic.generate(d.preset, d.seed, progress=True)
    source = f"synthetic:{d.preset}:seed={d.seed}"
    n = data.interactions.num_rows
    counts = {source: {"in": n, "kept": n, "quarantined": 0, "reasons": {}}}
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
    if d.test_path:
        test = resolve_path(d.test_path, "data.test_path")
    else:
        test = folder / "test.txt" if folder is not None and (folder / "test.txt").exists() else None
    return train, test


def load(d: DataConfig) -> tuple[LoadResult, dict]:
    """Load the configured source; returns the tables and extra report fields."""
    if d.source == "synthetic":
        return _load_synthetic(d)
    if d.source == "movielens":
        return load_movielens(resolve_path(_setting(d.path, "path", d.source), "data.path")), {}
    if d.source == "adjacency":
        return load_adjacency(*_adjacency_files(d)), {}
    columns = ColumnMap(
        user=d.user_column, item=d.item_column, timestamp=d.timestamp_column,
        collection=d.collection_column, weight=d.weight_column, vector=d.vector_column,
    )
    optional = {
        key: resolve_path(value, f"data.{key}") if value else None
        for key, value in (("items_path", d.items_path), ("item_vectors_path", d.item_vectors_path),
                           ("item_vector_ids_path", d.item_vector_ids_path))
    }
    path = resolve_path(_setting(d.interactions_path, "interactions_path", d.source), "data.interactions_path")
    return load_table(path, columns=columns, **optional), {}


def _ids_table(*tables: pa.Table | None) -> pa.Table:
    """Items table of the distinct item ids of the given interaction tables, sorted."""
    ids = pa.chunked_array([t["item_id"] for t in tables if t is not None], pa.string())
    return pa.table({"item_id": pc.unique(ids).sort()})


def run(cfg: PipelineConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    result, extra = load(cfg.data)
    kept = result.interactions.num_rows
    if kept == 0:
        reasons = {r: n for c in result.counts.values() for r, n in c["reasons"].items()}
        raise LoaderError(
            f"no usable interactions from data.source '{cfg.data.source}' "
            f"({sum(reasons.values())} rows quarantined: {reasons or 'input is empty'})"
        )
    interactions = INTERACTIONS.validate(result.interactions, "raw/interactions")
    items = ITEMS.validate(
        result.items if result.items is not None else _ids_table(interactions, result.test_interactions),
        "raw/items",
    )
    atomic_write_parquet(out_dir / "interactions.parquet", interactions)
    atomic_write_parquet(out_dir / "items.parquet", items)
    if result.test_interactions is not None:
        test = INTERACTIONS.validate(result.test_interactions, "raw/test_interactions")
        atomic_write_parquet(out_dir / "test_interactions.parquet", test)
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
        "interactions": kept,
        "test_interactions": result.test_interactions.num_rows if result.test_interactions is not None else 0,
        "items": items.num_rows,
        "items_with_features": int(items.num_rows - items["features"].null_count) if "features" in items.column_names else 0,
        "users": pc.count_distinct(interactions["user_id"]).as_py(),
        "collections": pc.count_distinct(
            interactions["collection_id"] if "collection_id" in interactions.column_names else interactions["user_id"]
        ).as_py(),
        **extra,
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
