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
The report gives per-graph timings and coverage (items with at least one neighbour, items
with a full row of T, mean neighbourhood size).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.base import StageError, stage_main

if TYPE_CHECKING:
    from pinsage_model.config import PipelineConfig
    from pinsage_model.contracts import CSRGraph, Neighbourhoods

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


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path) -> dict:
    from pinsage_model.config import config_to_dict
    from pinsage_model.contracts import ContractError, CSRGraph
    from pinsage_model.sampler import compute_neighbourhoods

    s = cfg.sampler
    report: dict = {"sampler": config_to_dict(s)}
    num_items = None
    for out_name, graph_name, what in OUTPUTS:
        path = inputs["graph"] / graph_name
        try:
            graph = CSRGraph.load(path)
        except ContractError as exc:
            raise StageError(f"neighbourhoods: {exc}; rerun the graph stage") from exc
        if num_items is not None and graph.num_items != num_items:
            raise StageError(
                f"neighbourhoods: {path} has {graph.num_items} items but the other graph has {num_items}; "
                "both graphs must share the dense item id space (rerun the graph stage)"
            )
        num_items = graph.num_items
        log.info(
            "neighbourhoods on the %s: %d items, %d edges, R=%d L=%d p=%.2f T=%d",
            what, graph.num_items, graph.num_edges, s.num_walks, s.walk_length, s.restart_prob, s.top_t,
        )
        t0 = time.perf_counter()
        nb = compute_neighbourhoods(graph, s, progress=True)
        seconds = time.perf_counter() - t0
        nb.validate(f"{out_name} (computed)")
        nb.save(out_dir / out_name)
        report[out_name.removesuffix(".npz")] = {
            "graph": graph_name,
            "edges": graph.num_edges,
            "seconds": round(seconds, 3),
            "items_per_second": round(graph.num_items / seconds, 1) if seconds > 0 else None,
            **coverage(graph, nb),
        }
    return report


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
