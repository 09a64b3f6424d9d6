"""Stage "neighbourhoods": random-walk importance neighbourhoods of every item (paper 3.2).

Reads ``graph/train_graph.npz`` and ``graph/graph.npz``. Writes

* ``train.npz``: neighbourhoods on the TRAINING subgraph (used by training, so the model never
  aggregates over edges of collections held out of training);
* ``full.npz``: neighbourhoods on the FULL graph (used by inference and evaluation, so every
  item, seen in training or not, is embedded from its whole neighbourhood).

Both hold ``indices`` int32 (N, T) padded with -1 and ``weights`` float32 (N, T), the visit
counts L1-normalised over the kept T items. Parameters come from the ``sampler`` config
section (``num_walks`` R, ``walk_length`` L, ``restart_prob`` p, ``top_t`` T, ``num_threads``,
``seed``); the same config and graph give byte-identical files whatever the thread count.
``sampler.backend`` picks where the walks run: ``numba`` in this process, or ``spark`` as one
Spark job (master from ``spark.master``) whose tasks are seed ranges over the graph
memory-mapped from this run's ``graph`` folder, their rows gathered in shared files under this
stage's output folder (``_scratch``, removed before the output is published); both backends
write byte-identical files.
The report gives per-graph timings and coverage (items with at least one neighbour, items
with a full row of T, mean neighbourhood size), the share of top-T slots decided by a tie
(visit counts did not separate the kept items from the next ones; the sampler's seeded hash
chose) and the coverage of positives: the share of training pairs (q, pos) of
``graph/pairs_indexed.parquet`` whose pos is in N(q). A small budget (R, L) shows as a large
tie share and a low coverage: ties, not counts, then decide the neighbourhoods.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.orchestration.execution import StageError, stage_main

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig
    from pinsage_model.graph.csr import CSRGraph, Neighbourhoods

log = logging.getLogger("pinsage")

# (output file, input graph file, what it is for)
OUTPUTS = (
    ("train.npz", "train_graph.npz", "training subgraph"),
    ("full.npz", "graph.npz", "full graph"),
)


def coverage(graph: "CSRGraph", nb: "Neighbourhoods") -> dict:
    """How much of the graph the neighbourhoods cover, for the stage report."""
    size = nb.mask.sum(axis=1)  # (N,) kept neighbours per item
    connected = graph.item_degree() > 0
    n = max(1, graph.num_items)
    return {
        "items": graph.num_items,
        "items_with_edges": int(connected.sum()),
        "items_with_neighbours": int((size > 0).sum()),
        "items_with_full_neighbourhood": int((size == nb.indices.shape[1]).sum()),
        "fraction_with_neighbours": round(float((size > 0).sum()) / n, 6),
        "mean_neighbourhood_size": round(float(size.mean()) if size.size else 0.0, 4),
        "mean_neighbourhood_size_connected": round(float(size[connected].mean()) if connected.any() else 0.0, 4),
        "mean_top_weight": round(float(nb.weights[size > 0, 0].mean()) if (size > 0).any() else 0.0, 6),
    }


def positive_coverage(nb: "Neighbourhoods", q: np.ndarray, pos: np.ndarray, chunk: int = 1 << 20) -> float | None:
    """Share of pairs whose ``pos`` is in the neighbourhood of ``q`` (None without pairs).

    Args:
      nb: (N, T) neighbourhoods.
      q, pos: (P,) item indices of the pairs; compared ``chunk`` pairs at a time, (chunk, T).
    """
    if not len(q):
        return None
    hits = 0
    for start in range(0, len(q), chunk):
        rows = nb.indices[q[start : start + chunk]]  # (chunk, T)
        hits += int((rows == pos[start : start + chunk, None]).any(axis=1).sum())
    return round(hits / len(q), 6)


def _train_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(q, pos) int64 of the training pairs of ``pairs_indexed.parquet``."""
    import pyarrow.compute as pc

    from pinsage_model.data.contracts import PAIRS_INDEXED, ContractError, read_table

    try:
        table = read_table(path, PAIRS_INDEXED)
    except ContractError as exc:
        raise StageError(f"neighbourhoods: {exc}; rerun the graph stage") from exc
    table = table.filter(pc.equal(table.column("split"), "train"))
    return table.column("q_idx").to_numpy().astype(np.int64), table.column("pos_idx").to_numpy().astype(np.int64)


def format_table(report: dict) -> str:
    """Markdown table of the per-graph report entries (the rows of :data:`OUTPUTS`)."""
    lines = [
        "| neighbourhoods | items with neighbours | mean size | top-T slots decided by ties "
        "| training positives in N(q) | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for out_name, _, what in OUTPUTS:
        r = report[out_name.removesuffix(".npz")]
        cov = "n/a" if r["positive_coverage"] is None else f"{r['positive_coverage']:.4f}"
        lines.append(
            f"| {what} | {r['items_with_neighbours']} | {r['mean_neighbourhood_size']:.2f} | "
            f"{r['tie_slot_share']:.4f} | {cov} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    from pinsage_model.config import config_to_dict

    s = cfg.sampler
    report: dict = {"sampler": config_to_dict(s)}
    spark = None
    if s.backend == "spark":
        from pinsage_model.spark.session import get_spark

        graphs = [inputs["graph"] / graph_name for _, graph_name, _ in OUTPUTS]
        spark = get_spark(cfg.spark, visible=graphs, writable=[out_dir])
    train_q, train_pos = _train_pairs(inputs["graph"] / "pairs_indexed.parquet")
    try:
        _sample_graphs(cfg, inputs, out_dir, spark, report, train_q, train_pos)
    finally:
        shutil.rmtree(out_dir / "_scratch", ignore_errors=True)  # the Spark backend's shared files
    print(
        f"\nNeighbourhoods (R={s.num_walks}, L={s.walk_length}, p={s.restart_prob}, T={s.top_t}; "
        f"{len(train_q)} training pairs; backend {s.backend})\n{format_table(report)}\n",
        flush=True,
    )
    return report


def _sample_graphs(
    cfg: "PipelineConfig",
    inputs: dict[str, Path],
    out_dir: Path,
    spark,
    report: dict,
    train_q: np.ndarray,
    train_pos: np.ndarray,
) -> None:
    """Neighbourhoods of both graphs of :data:`OUTPUTS` into ``out_dir``, their entries into ``report``.

    ``spark`` None runs the in-process backend; with a session, each graph is one Spark job
    whose shared output files live in ``out_dir/_scratch/<graph>`` until the graph's entry is
    written (the caller removes what a failure leaves).
    """
    from pinsage_model.graph.sampler import compute_neighbourhoods

    s = cfg.sampler
    num_items = None
    for out_name, graph_name, what in OUTPUTS:
        path = inputs["graph"] / graph_name
        graph = _load_graph(path, num_items)
        if num_items is None:
            _check_settings(cfg, graph.num_items)
        num_items = graph.num_items
        log.info(
            "neighbourhoods on the %s: %d items, %d edges, R=%d L=%d p=%.2f T=%d",
            what,
            graph.num_items,
            graph.num_edges,
            s.num_walks,
            s.walk_length,
            s.restart_prob,
            s.top_t,
        )
        tie_slots = np.zeros(graph.num_items, np.int32)  # (N,) top-T slots decided by a tie
        t0 = time.perf_counter()
        if spark is None:
            nb = compute_neighbourhoods(graph, s, progress=True, tie_slots=tie_slots)
        else:
            from pinsage_model.spark.sampler import compute_neighbourhoods_spark

            scratch = out_dir / "_scratch" / out_name.removesuffix(".npz")
            nb = compute_neighbourhoods_spark(spark, path, graph.num_items, s, scratch, tie_slots=tie_slots)
        seconds = time.perf_counter() - t0
        nb.validate(f"{out_name} (computed)")
        nb.save(out_dir / out_name)
        report[out_name.removesuffix(".npz")] = {
            "graph": graph_name,
            "edges": graph.num_edges,
            "seconds": round(seconds, 3),
            "items_per_second": round(graph.num_items / seconds, 1) if seconds > 0 else None,
            **coverage(graph, nb),
            "tie_slot_share": round(float(tie_slots.sum()) / max(1, int(nb.mask.sum())), 6),
            "positive_coverage": positive_coverage(nb, train_q, train_pos),
        }
        if spark is not None:
            del nb  # the memory maps of the shared files, before they go
            shutil.rmtree(scratch)


def _check_settings(cfg: "PipelineConfig", num_items: int) -> None:
    """``sampler.top_t`` and the hard-negative band against the graph's item count, as one line."""
    from pinsage_model.config import check_sampler

    try:
        check_sampler(cfg.sampler, num_items, hard_negatives=cfg.train.use_hard_negatives)
    except ValueError as exc:
        raise StageError(f"neighbourhoods: key '{getattr(exc, 'key', 'sampler')}' {exc}") from None


def _load_graph(path: Path, num_items: int | None):
    """The graph at ``path``, checked to have ``num_items`` items when the other graph set it."""
    from pinsage_model.data.contracts import ContractError
    from pinsage_model.graph.csr import CSRGraph

    try:
        graph = CSRGraph.load(path)
    except ContractError as exc:
        raise StageError(f"neighbourhoods: {exc}; rerun the graph stage") from exc
    if num_items is not None and graph.num_items != num_items:
        raise StageError(
            f"neighbourhoods: {path} has {graph.num_items} items but the other graph has {num_items}; "
            "both graphs must share the dense item id space (rerun the graph stage)"
        )
    return graph


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
