"""Stage "embeddings": layer-wise inference of every item, then collection embeddings (paper 3.4).

Reads ``graph/graph.npz`` and ``graph/item_ids.parquet``, ``features/features.npy``,
``neighbourhoods/full.npz`` (neighbourhoods on the FULL graph) and ``model/weights.npz`` +
``model_config.json``. Writes ``items.npy`` (N, d) L2-normalised, ``collections.npy`` (C, d)
(unit means, or the user head's unnormalised vectors), ``query_shift.npy`` (d,): the model's
learned query shift, zero without one (related-item queries are ``items[q] + shift``),
``user_shift.npy`` (d,): added to a collection vector for homefeed (the user head's shift, else
the query shift), ``user_head.npz`` (a copy of the model's, when it has one: the index bundles
it), ``item_flags.parquet`` (``item_idx``, ``in_train_graph``, ``neighbourhood_size``) and
``model.json`` (which model made these embeddings).

Inductive by construction: the model was trained on the training subgraph, but every item of the
full graph is embedded from its features (the saved feature transform) and its full-graph
neighbourhood, so items held out of training, and items added after training, get embeddings
too. To embed new items with an older model, rerun graph/features/neighbourhoods on the new data
and point this stage at the old model: ``python -m components.stages.embeddings --config C
--run-dir R --model OLD_RUN/model``.

Backend (``inference.backend``): ``numpy`` (in process, row blocks of ``inference.batch_size``)
or ``spark`` (the same plan as Spark jobs, master from ``spark.master``, join strategy from
``inference.spark_strategy``). Collections: with a user head in the model folder
(``user_head.npz``), the head over the collection's items in recency order
(``graph/collection_recency.npy``); without one, the uniform mean of their items' embeddings.
A model trained with the user term (``user_half_life`` in ``model_config.json``) has its own
user vectors: the last layer's convolution of the collection over all of its items (importance by
recency) and the head (:func:`pinsage_model.inference.layerwise.user_embeddings`), unit vectors
that ``user_shift.npy`` (the query shift) completes into a homefeed query; when the model folder
also has a user head, collection vectors and shift are the mean of the two users' vectors and
shifts (two views of the user: one trained with the items, one fitted on them).
Such a model also gets ``user_nodes.npz`` (the last layer's projections and the weights that
convolve a user, :mod:`pinsage_model.model.users`): the index bundles it, so a homefeed query
over a user's recent items is built the same way.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.orchestration.execution import StageError, stage_main

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    from pinsage_model.inference.layerwise import InferenceStats, query_shift
    from pinsage_model.io import atomic_save_npy

    graph, item_ids, features, nbhd, weights, mcfg = _read_inputs(inputs)
    stats = InferenceStats()
    # a model with user nodes: the last layer's projections, which users pool, are kept
    proj = np.empty((graph.num_items, mcfg["hidden_dim"]), np.float32) if "user_half_life" in mcfg else None
    emb = _embed_items(cfg, weights, mcfg, features, nbhd, out_dir, stats, proj)
    shift = query_shift(weights, mcfg)
    colls, user_shift, head = _collections(emb, graph, shift, inputs, (weights, mcfg, proj))
    atomic_save_npy(out_dir / "items.npy", emb)
    atomic_save_npy(out_dir / "collections.npy", colls)
    atomic_save_npy(out_dir / "query_shift.npy", shift)
    atomic_save_npy(out_dir / "user_shift.npy", user_shift)
    if head is not None:
        from pinsage_model.model.user_head import save_head

        save_head(head, out_dir)  # with the embeddings: the index bundles it for homefeed queries
    if proj is not None:  # likewise what convolving a user over its recent items needs
        from pinsage_model.model.users import save_user_nodes, user_nodes_arrays

        save_user_nodes(user_nodes_arrays(proj, weights, mcfg), out_dir)
    in_train_by_idx, nb_size = _write_item_flags(out_dir, item_ids, nbhd, graph.num_items)
    version = _write_model_json(out_dir, inputs["model"], mcfg)
    backend = cfg.inference.backend
    held_out = ~in_train_by_idx
    return {
        "backend": backend,
        "model_version": version,
        "num_items": int(graph.num_items),
        "num_collections": int(graph.num_collections),
        "dim": int(emb.shape[1]),
        "items_in_train_graph": int(in_train_by_idx.sum()),
        "items_held_out": int(held_out.sum()),
        "held_out_with_neighbourhood": int((held_out & (nb_size > 0)).sum()),
        "items_without_neighbourhood": int((nb_size == 0).sum()),
        "zero_embeddings": int((np.linalg.norm(emb, axis=1) < 0.5).sum()),
        "query_shift_norm": round(float(np.linalg.norm(shift)), 4),
        "empty_collections": int((graph.collection_degree() == 0).sum()),
        "projections_per_layer": stats.projections if backend == "numpy" else None,
        "dense_gflops": round(stats.dense_gflops, 2) if backend == "numpy" else None,
    }


def _read_inputs(inputs: dict[str, Path]):
    """(graph, item_ids, features, neighbourhoods, weights, model config), checked against each other."""
    from pinsage_model.data.contracts import ITEM_IDS, ContractError, read_table
    from pinsage_model.graph.csr import CSRGraph, Neighbourhoods
    from pinsage_model.inference.layerwise import check_inputs
    from pinsage_model.model.export import load_weights_npz

    try:
        graph = CSRGraph.load(inputs["graph"] / "graph.npz")
        item_ids = read_table(inputs["graph"] / "item_ids.parquet", ITEM_IDS)
        features = np.load(inputs["features"] / "features.npy", mmap_mode="r")
        nbhd = Neighbourhoods.load(inputs["neighbourhoods"] / "full.npz")
        weights, mcfg = load_weights_npz(inputs["model"])
        check_inputs(weights, mcfg, features, nbhd)
    except (ContractError, FileNotFoundError, KeyError) as exc:
        raise StageError(f"embeddings: {exc}") from exc
    n_items = graph.num_items
    if features.shape[0] != n_items or item_ids.num_rows != n_items:
        raise StageError(
            f"embeddings: graph has {n_items} items, features.npy {features.shape[0]} rows, "
            f"item_ids.parquet {item_ids.num_rows} rows; rerun the graph and features stages"
        )
    return graph, item_ids, features, nbhd, weights, mcfg


def _embed_items(cfg: "PipelineConfig", weights, mcfg, features, nbhd, out_dir: Path, stats, proj) -> np.ndarray:
    """(N, d) item embeddings on the configured backend (``stats`` filled by the numpy one); the
    last layer's projections into ``proj`` unless it is None (the Spark backend keeps none, so
    they come from an in-process pass)."""
    from pinsage_model.inference.layerwise import embed_all

    if cfg.inference.backend == "numpy":
        emb = embed_all(
            weights,
            mcfg,
            features,
            nbhd,
            batch_size=cfg.inference.batch_size,
            progress=True,
            stats=stats,
            last_projections=proj,
        )
    else:
        if proj is not None:
            log.info("embeddings: the user vectors' projections come from an in-process pass (numpy)")
            embed_all(weights, mcfg, features, nbhd, batch_size=cfg.inference.batch_size, last_projections=proj)
        from pinsage_model.spark.inference import embed_all_spark
        from pinsage_model.spark.session import get_spark

        scratch = out_dir / "_scratch"
        try:
            emb = embed_all_spark(
                get_spark(cfg.spark, writable=[out_dir]),  # the plan's files: all in the scratch folder
                weights,
                mcfg,
                features,
                nbhd,
                scratch_dir=scratch,
                strategy=cfg.inference.spark_strategy,
                broadcast_max_bytes=cfg.inference.spark_broadcast_max_mb << 20,
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if not np.all(np.isfinite(emb)):
        raise StageError("embeddings: inference produced NaN/inf values; check the model weights")
    return emb


def _collections(emb: np.ndarray, graph, shift: np.ndarray, inputs: dict[str, Path], model: tuple):
    """(collection vectors, user shift, user head or None): the model's user convolution and the
    query shift for a model with user nodes (averaged with the head's vectors and shift when the
    model also has a user head: two views of the user, one trained with the items, one fitted
    on them); the head's vectors and shift when the model has only a user head; else the
    uniform mean of the items and the query shift. ``model`` is (weights, model config, the last
    layer's projections or None)."""
    from pinsage_model.data.contracts import ContractError
    from pinsage_model.graph.csr import read_collection_recency
    from pinsage_model.inference.layerwise import collection_embeddings, user_embeddings
    from pinsage_model.model.user_head import load_head, user_vectors

    weights, mcfg, proj = model
    try:
        head = load_head(inputs["model"])
        if proj is None and head is None:
            return collection_embeddings(emb, graph), shift, None
        recency = read_collection_recency(inputs["graph"], graph)
        views = []  # (C, d) user vectors and (d,) shift of each view the model has
        if proj is not None:
            views.append((user_embeddings(proj, graph.coll_indptr, graph.coll_indices, recency, weights, mcfg), shift))
        if head is not None:
            views.append((user_vectors(emb, graph, recency, head), head["shift"]))
        colls = np.mean([v for v, _ in views], axis=0).astype(np.float32)
        return colls, np.mean([s for _, s in views], axis=0).astype(np.float32), head
    except ContractError as exc:
        raise StageError(f"embeddings: {exc}") from exc


def _write_item_flags(out_dir: Path, item_ids, nbhd, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Write ``item_flags.parquet``; returns (N,) in the training graph and (N,) neighbourhood sizes."""
    import pyarrow as pa

    from pinsage_model.io import atomic_write_parquet

    in_train = item_ids.column("in_train_graph").to_numpy(zero_copy_only=False)
    order = item_ids.column("item_idx").to_numpy()
    in_train_by_idx = np.zeros(n_items, dtype=bool)
    in_train_by_idx[order] = in_train
    nb_size = (np.asarray(nbhd.indices) >= 0).sum(axis=1).astype(np.int32)
    atomic_write_parquet(
        out_dir / "item_flags.parquet",
        pa.table(
            {
                "item_idx": pa.array(np.arange(n_items, dtype=np.int32)),
                "in_train_graph": pa.array(in_train_by_idx),
                "neighbourhood_size": pa.array(nb_size),
            }
        ),
    )
    return in_train_by_idx, nb_size


def _write_model_json(out_dir: Path, model_dir: Path, mcfg: dict) -> str:
    """Write ``model.json``; returns the model version ``sha-<digest prefix>``."""
    from pinsage_model.data.contracts import model_digest
    from pinsage_model.io import atomic_write_json

    # The registry identifies a model version by this digest; index publishing compares it with
    # the champion's, and its prefix names the embeddings' model.
    digest = model_digest(model_dir)
    version = f"sha-{digest[:12]}"
    atomic_write_json(
        out_dir / "model.json", {"model_version": version, "weights_digest": digest, "model_config": mcfg}
    )
    return version


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
