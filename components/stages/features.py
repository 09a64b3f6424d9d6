"""Stage "features": item feature matrix with TF Transform on Beam (paper 3.1: visual/text
features plus degree), aligned with the graph's dense ``item_idx``.

Reads ``raw/items.parquet`` (optional: without it every item takes the missing-features
fallback), ``graph/item_ids.parquet`` and ``graph/graph.npz`` (full-graph degree). Writes
``features.npy`` (N, F) float32, ``feature_names.json`` (column names, the missing-features mode
and which items have content), ``transform/`` (the saved TF Transform output) and
``quarantine.parquet`` (item rows not used, with a reason).

See :mod:`pinsage_model.features.transform` for the exact columns. Missing features: with
``features.missing_features: id_embedding`` (default) the matrix carries a ``has_features``
column and the trainer adds a learned id embedding of ``features.id_embedding_dim`` for items
with ``has_features == 0`` (transductive: such items need to be in training); with ``zeros``
their content block is zero and only the log degree describes them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from components.orchestration.execution import StageError, print_table, stage_main

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    """Analyse and apply the feature transform for every graph item into ``out_dir``."""
    import shutil

    from pinsage_model.features import transform as ft

    # Only ``rows`` comes back: the item table (1M items: 0.2 GB) and the mapped graph are let go
    # before the analysis and the transform take their memory.
    rows, rejected, items_path, n_in = _item_rows(Path(inputs["raw"]), Path(inputs["graph"]), out_dir)
    transform_dir = out_dir / "transform"
    temp_dir = out_dir / "_tft_tmp"
    ft.analyze(rows, cfg.features, transform_dir, temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)
    columns = tuple(ft.feature_spec(rows))
    vector_width = rows["vector"].shape[1] if "vector" in rows else 0
    names = ft.feature_names(columns, cfg.features, vector_width, transform_dir)
    n, width = len(rows["item_idx"]), ft.feature_width(transform_dir)
    if len(names) != width:
        raise StageError(f"feature names ({len(names)}) and width ({width}) disagree (internal error)")
    _write_features(out_dir / "features.npy", transform_dir, rows, (n, width), items_path)
    has = rows["has_features"] > 0
    _write_feature_names(out_dir, cfg, names, columns, int((~has).sum()))
    reasons = [r for _, r in rejected]
    report = {
        "items": n,
        "feature_width": width,
        "input_columns": [c for c in columns if c != "item_idx"],
        "item_rows_read": n_in,
        "item_rows_clean": n_in - len(rejected),
        # a bad_vector row is quarantined but its text columns are still used
        "item_rows_quarantined": len(rejected),
        "quarantined_by_reason": {r: reasons.count(r) for r in sorted(set(reasons))},
        "items_with_features": int(has.sum()),
        "items_without_features": int((~has).sum()),
        "missing_features": cfg.features.missing_features,
        "beam_runner": cfg.features.beam_runner,
        "direct_running_mode": cfg.features.direct_running_mode if cfg.features.beam_runner == "DirectRunner" else None,
    }
    print_table("features stage", [(k, v) for k, v in report.items() if not isinstance(v, (dict, list))])
    return report


def _item_rows(raw: Path, graph_dir: Path, out_dir: Path):
    """(rows, rejected, items file, item rows read): the transform's input rows of every graph
    item; the rejected item rows are written to ``quarantine.parquet``."""
    import pyarrow as pa

    from pinsage_model.data.contracts import ITEM_IDS, ITEMS, quarantine_table, read_table
    from pinsage_model.features import transform as ft
    from pinsage_model.graph.csr import CSRGraph
    from pinsage_model.io import atomic_write_parquet

    item_ids = read_table(graph_dir / "item_ids.parquet", ITEM_IDS)
    graph = CSRGraph.load(graph_dir / "graph.npz")
    if graph.num_items != item_ids.num_rows:
        raise StageError(
            f"{graph_dir}: graph.npz has {graph.num_items} items but item_ids.parquet has {item_ids.num_rows}"
        )
    items_path = raw / "items.parquet"
    items = read_table(items_path, ITEMS) if items_path.exists() else None
    rows, rejected = ft.item_rows(items, item_ids, graph.item_degree())
    reasons = [r for _, r in rejected]
    idx = pa.array([r for r, _ in rejected], type=pa.int64())
    qcols: dict[str, pa.Array] = {}
    for name, column in zip(items.column_names, items.columns) if items is not None else ():
        taken = column.take(idx)
        # a list column has no string cast: its rows are written as Python lists
        qcols[name] = pa.array([str(v) for v in taken.to_pylist()]) if name == "features" else taken
    atomic_write_parquet(out_dir / "quarantine.parquet", quarantine_table(qcols, reasons, str(items_path), idx))
    return rows, rejected, items_path, items.num_rows if items is not None else 0


def _write_features(path: Path, transform_dir: Path, rows: dict, shape: tuple[int, int], items_path: Path) -> None:
    """The transformed (N, F) float32 features, streamed to ``path`` block by block: the matrix
    (1M x 299: 1.2 GB) is never held whole."""
    import numpy as np

    from pinsage_model.features import transform as ft
    from pinsage_model.io import atomic_npy_rows

    with atomic_npy_rows(path, shape, np.float32) as write:
        for block in ft.transform_batches(transform_dir, rows, progress=True):  # (b, F)
            if not np.all(np.isfinite(block)):
                raise StageError(f"{items_path}: the transform produced non-finite features (internal error)")
            write(block)


def _write_feature_names(out_dir: Path, cfg: "PipelineConfig", names: list, columns: tuple, without: int) -> None:
    """``feature_names.json``: the column names and where the model finds its special columns."""
    from pinsage_model.io import atomic_write_json

    atomic_write_json(
        out_dir / "feature_names.json",
        {
            "names": names,
            "input_columns": [c for c in columns if c != "item_idx"],
            "missing_features": cfg.features.missing_features,
            "has_features_column": names.index("has_features") if "has_features" in names else None,
            "log_degree_column": names.index("log_degree"),
            "id_embedding_dim": cfg.features.id_embedding_dim if cfg.features.missing_features == "id_embedding" else 0,
            "items_without_features": without,
        },
    )


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
