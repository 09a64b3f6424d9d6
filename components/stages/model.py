"""Stage "model": PinSage training (paper 3.2-3.3).

Reads ``graph/train_graph.npz`` (hard negatives walk on it), ``graph/pairs_indexed.parquet``
(split ``train`` with ``in_train_graph`` for training, split ``validation`` with
``in_train_graph`` for early stopping; test rows are dropped on reading), ``features/features.npy``
and ``features/feature_names.json`` (whether a learned id embedding is needed), and
``neighbourhoods/train.npz`` (neighbourhoods on the training subgraph).

With ``user_head.enabled`` it then reads ``graph/graph.npz`` + ``collection_recency.npy``, embeds
every item with the trained weights and fits the user head (:mod:`pinsage_model.model.user_head`) on the
training collections, written as ``user_head.npz``. With ``train.user_loss_weight`` > 0 training
reads those two files itself (the training collections' items are the user term's users,
:mod:`pinsage_model.model.users`); the head, when enabled, is fitted as well, and the homefeed
user vector is the mean of the model's user convolution and the head's vector.

Writes ``model.keras``, ``weights.npz`` + ``model_config.json`` (read without TensorFlow by
inference), ``history.json`` (the learning curve, one dict per epoch: loss, validation
hit-rate@10 and MRR, hard negatives, learning rate) and ``quarantine.parquet`` (pair rows with
ids outside the graph or q == pos, with a reason). The report adds per-epoch examples/s and
producer/compute/step seconds, the pair counts (in = kept + quarantined) and the time.

Checkpoints live outside the stage output, in the stage's scratch folder (``ctx.scratch_dir``,
keyed by the stage's fingerprint; locally ``<run-dir>/checkpoints/model/<fingerprint>/``), one per
epoch: if training is interrupted, running the stage again with the same config and inputs
resumes from the last finished epoch. The executor removes them once the stage succeeds.
With ``train.num_devices`` > 1 on a CPU-only machine the CPU is split into logical devices,
which must happen before TensorFlow initialises. When an earlier stage of the same process (the
features stage of ``pinsage run``) has already initialised it, the stage trains in a fresh
``spawn``-ed process and returns that process's report.

With ``train.strategy: multi_worker`` every worker that ``TF_CONFIG`` names runs this stage with
the same arguments on the same inputs (a Kubeflow TFJob: ``infra/training/tfjob.yaml``); they
train as one (:func:`pinsage_model.model.training.train`), and only the chief writes the outputs
(``writes_outputs``): the other workers' copies go to a discarded folder and they skip the user
head. The strategy must be created before TensorFlow initialises, so when TensorFlow is already
imported here the stage trains in a fresh process, as above.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from components.orchestration.execution import StageError, stage_main
from pinsage_model import metric_keys

if TYPE_CHECKING:
    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")

VAL_HIT = metric_keys.validation(metric_keys.hit_rate(10))
VAL_MRR = metric_keys.validation(metric_keys.MRR)
CURVE_KEYS = ("epoch", "loss", "loss_first", "loss_last", VAL_HIT, VAL_MRR, "hard_negatives", "learning_rate")
REPORT_KEYS = (
    "epoch",
    "loss",
    VAL_HIT,
    VAL_MRR,
    "examples_per_s",
    "step_s",
    "producer_s_per_step",
    "compute_s_per_step",
    "hard_negatives",
    "seconds",
)


def _pairs(path: Path, num_items: int, out_dir: Path):
    """Train and validation pairs; invalid rows go to ``quarantine.parquet``."""
    import numpy as np
    import pyarrow as pa

    from pinsage_model.data.contracts import PAIRS_INDEXED, quarantine_table, read_table
    from pinsage_model.io import atomic_write_parquet

    table = read_table(path, PAIRS_INDEXED)
    q = table.column("q_idx").to_numpy().astype(np.int64)
    p = table.column("pos_idx").to_numpy().astype(np.int64)
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    in_train = table.column("in_train_graph").to_numpy(zero_copy_only=False)
    out_of_range = (q < 0) | (q >= num_items) | (p < 0) | (p >= num_items)
    self_pair = ~out_of_range & (q == p)
    bad = out_of_range | self_pair
    rows = np.flatnonzero(bad)
    reason = np.where(out_of_range[rows], f"q_idx or pos_idx outside [0, {num_items})", "q_idx equals pos_idx")
    quarantine = quarantine_table(
        {c: table.column(c).take(pa.array(rows)) for c in table.column_names}, reason.tolist(), str(path), rows
    )
    atomic_write_parquet(out_dir / "quarantine.parquet", quarantine)
    train = ~bad & (split == "train") & in_train
    val = ~bad & (split == "validation") & in_train
    counts = {
        "pairs_in": int(len(q)),
        "pairs_quarantined": int(bad.sum()),
        "pairs_kept": int((~bad).sum()),
        "train_pairs": int(train.sum()),
        "validation_pairs": int(val.sum()),
        "train_pairs_outside_train_graph": int((~bad & (split == "train") & ~in_train).sum()),
    }
    return (
        (q[train].astype(np.int32), p[train].astype(np.int32)),
        (q[val].astype(np.int32), p[val].astype(np.int32)),
        counts,
    )


def writes_outputs(cfg: "PipelineConfig") -> bool:
    """False in a multi-worker training worker other than the chief (its outputs are the chief's)."""
    from pinsage_model.model.training import worker_role

    return cfg.train.strategy != "multi_worker" or worker_role().is_chief


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    """Train PinSage on the run's training subgraph and export the model into ``out_dir``."""
    from pinsage_model.model.training import worker_role

    workers = worker_role().workers
    if workers > 1 and cfg.train.strategy != "multi_worker":
        raise StageError(
            f"model: TF_CONFIG names {workers} workers but train.strategy is {cfg.train.strategy!r}: each would "
            "train alone and all would write the outputs; set train.strategy: multi_worker"
        )
    if cfg.train.strategy == "multi_worker":
        # MultiWorkerMirroredStrategy configures the collectives at TensorFlow's start-up.
        if "tensorflow" in sys.modules:
            return _run_in_fresh_process(cfg, inputs, out_dir, ctx.scratch_dir)
    elif cfg.train.num_devices > 1 and _tensorflow_too_late(cfg.train.num_devices):
        return _run_in_fresh_process(cfg, inputs, out_dir, ctx.scratch_dir)
    return _train(cfg, inputs, out_dir, ctx.scratch_dir)


def _tensorflow_too_late(num_devices: int) -> bool:
    """True when TensorFlow already runs here and can no longer split the CPU into devices."""
    if "tensorflow" not in sys.modules:
        return False  # train() configures the devices before TensorFlow initialises
    from pinsage_model.model.training import configure_devices

    try:
        configure_devices(num_devices)
    except RuntimeError:
        return True
    return False


def _run_in_fresh_process(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ckpt_dir: Path) -> dict:
    """Run :func:`_train` in a ``spawn``-ed interpreter (TensorFlow not yet initialised there)."""
    import multiprocessing
    import tempfile

    from pinsage_model.config import config_to_dict

    log.info(
        "model: TensorFlow is already initialised here; training (%s strategy, %d devices) in a fresh process",
        cfg.train.strategy,
        cfg.train.num_devices,
    )
    with tempfile.TemporaryDirectory(prefix="pinsage-train-") as tmp:
        report_path = Path(tmp) / "report.json"
        child = multiprocessing.get_context("spawn").Process(
            target=_child_main,
            name="pinsage-train",
            args=(
                config_to_dict(cfg),
                {k: str(v) for k, v in inputs.items()},
                str(out_dir),
                str(ckpt_dir),
                str(report_path),
            ),
        )
        child.start()
        child.join()
        if child.exitcode != 0 or not report_path.exists():
            raise StageError(
                f"model: training in a fresh process (train.strategy {cfg.train.strategy}, train.num_devices = "
                f"{cfg.train.num_devices}) failed with exit code {child.exitcode}; its error is in the log above"
            )
        return {**json.loads(report_path.read_text()), "fresh_process": True}


def _child_main(cfg_dict: dict, inputs: dict[str, str], out_dir: str, ckpt_dir: str, report_path: str) -> None:
    """Entry point of the fresh training process: train, then hand the report back as JSON."""
    from pinsage_model.config import config_from_dict

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = _train(config_from_dict(cfg_dict), {k: Path(v) for k, v in inputs.items()}, Path(out_dir), Path(ckpt_dir))
    Path(report_path).write_text(json.dumps(report))


def load_train_data(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path):
    """What training reads, from the graph, features and neighbourhoods stages' outputs.

    Returns (TrainData, training graph, (N, F) features, inference neighbourhoods, pair counts);
    unusable pairs go to ``out_dir/quarantine.parquet``. The training benchmark loads a run's
    data through this too.
    """
    import numpy as np

    from pinsage_model.model.identity import identity_rows
    from pinsage_model.model.training import TrainData

    graph_dir = inputs["graph"]
    graph, features, nb, val_nb = _load_inputs(graph_dir, inputs["features"], inputs["neighbourhoods"])
    n = graph.num_items
    id_dim = cfg.model.id_embedding_dim or _fallback_id_dim(inputs["features"] / "feature_names.json")
    (tq, tp), (vq, vp), counts = _pairs(graph_dir / "pairs_indexed.parquet", n, out_dir)
    if counts["train_pairs"] == 0:
        raise StageError(f"{graph_dir / 'pairs_indexed.parquet'}: no train pairs inside the training graph")
    m = cfg.model
    identity = identity_rows(graph.item_degree() > 0, m.id_hash_buckets, m.id_num_hashes, cfg.seed_for("model"))
    data = TrainData(
        np.asarray(features, dtype=np.float32),
        nb,
        graph,
        tq,
        tp,
        vq,
        vp,
        id_embedding_dim=id_dim,
        val_neighbourhoods=val_nb,
        identity=identity,
        users=_training_users(graph_dir, graph) if cfg.train.user_loss_weight > 0 else None,
    )
    return data, graph, features, val_nb, counts


def _training_users(graph_dir: Path, train_graph):
    """The user term's users: the training graph's collections, their rows of ``graph.npz`` (train
    events only: validation and test engagements never reach the graph) in recency order."""
    import numpy as np

    from pinsage_model.data.contracts import ContractError
    from pinsage_model.graph.csr import CSRGraph, read_collection_recency
    from pinsage_model.model.users import UserRows

    try:
        graph = CSRGraph.load(graph_dir / "graph.npz")
        recency = read_collection_recency(graph_dir, graph)
    except ContractError as exc:
        raise StageError(f"model: {exc}") from exc
    # collections of the training subgraph keep all their items, so their rows equal the full graph's
    rows = UserRows.from_graph(graph, recency, np.flatnonzero(train_graph.collection_degree() > 0))
    if rows.num_users == 0:
        raise StageError(
            f"{graph_dir / 'train_graph.npz'}: no collection with two or more items for the user term; "
            "set train.user_loss_weight: 0 to train without it"
        )
    return rows


def _train(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ckpt_dir: Path) -> dict:
    """The stage's work in this process: load the inputs, train (checkpoints in ``ckpt_dir``), export."""
    from pinsage_model.model.export import save_history, save_keras, save_weights_npz
    from pinsage_model.model.training import train

    t0 = time.perf_counter()
    graph_dir = inputs["graph"]
    data, graph, features, val_nb, counts = load_train_data(cfg, inputs, out_dir)
    n, id_dim = graph.num_items, data.id_embedding_dim
    resumed = (ckpt_dir / "epochs" / "checkpoint").exists()
    result = train(data, cfg.model, cfg.train, cfg.sampler, checkpoint_dir=ckpt_dir, resume=True)

    save_keras(result.model, out_dir)
    save_weights_npz(result.model, out_dir)
    # the head trains after the item model, without collectives: the chief alone fits it. With
    # the user term too, the homefeed user vector is the mean of the head's and the model's own
    # user convolution (components.stages.embeddings).
    fit_head = cfg.user_head.enabled and writes_outputs(cfg)
    head_report = _fit_user_head(cfg, graph_dir, features, val_nb, out_dir, graph) if fit_head else None
    # history.json keeps the learning curve only (reproducible in deterministic mode); the
    # timings, which vary run to run, go to the report.
    save_history([{k: h[k] for k in CURVE_KEYS} for h in result.history], out_dir)
    epochs = [{k: round(float(h[k]), 6) for k in REPORT_KEYS} for h in result.history]
    return {
        **counts,
        "items": n,
        "feature_dim": int(features.shape[1]),
        "id_embedding_dim": id_dim,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        f"best_{VAL_HIT}": max((h[VAL_HIT] for h in result.history), default=0.0),
        "stopped_early": result.stopped_early,
        "resumed": resumed,
        "strategy": cfg.train.strategy,
        "num_devices": cfg.train.num_devices,
        "workers": result.workers,
        "user_head": head_report,
        **({} if data.users is None else {"user_term_users": data.users.num_users}),
        "epochs": epochs,
        "train_seconds": round(time.perf_counter() - t0, 3),
    }


def _load_inputs(graph_dir: Path, feat_dir: Path, nb_dir: Path):
    """(training graph, (N, F) memory-mapped features, training neighbourhoods, full-graph
    neighbourhoods), checked to cover the same items."""
    import numpy as np

    from pinsage_model.data.contracts import ContractError
    from pinsage_model.graph.csr import CSRGraph, Neighbourhoods

    features_path = feat_dir / "features.npy"
    try:
        graph = CSRGraph.load(graph_dir / "train_graph.npz")
        if not features_path.exists():
            raise ContractError(f"{features_path}: not found (run the features stage)")
        features = np.load(features_path, mmap_mode="r")
        nb = Neighbourhoods.load(nb_dir / "train.npz")
        # model selection embeds validation items as inference will: full-graph neighbourhoods
        val_nb = Neighbourhoods.load(nb_dir / "full.npz")
    except ContractError as exc:
        raise StageError(str(exc)) from exc
    n = graph.num_items
    if features.ndim != 2 or features.shape[0] != n or nb.indices.shape[0] != n:
        raise StageError(
            f"item counts disagree: {graph_dir / 'train_graph.npz'} has {n} items, "
            f"{features_path} {features.shape}, {nb_dir / 'train.npz'} {nb.indices.shape}"
        )
    return graph, features, nb, val_nb


def _fallback_id_dim(names_path: Path) -> int:
    """The id-embedding width the features stage asks for when items lack features (else 0)."""
    if not names_path.exists():
        raise StageError(f"{names_path}: not found; rerun the features stage")
    info = json.loads(names_path.read_text())
    return int(info.get("id_embedding_dim", 0)) if info.get("items_without_features", 0) else 0


def _fit_user_head(cfg: "PipelineConfig", graph_dir: Path, features, nb, out_dir: Path, train_graph) -> dict:
    """Embed every item with the trained model (as the embeddings stage will) and fit the user
    head on the training collections' item sequences; writes ``user_head.npz`` into ``out_dir``."""
    import numpy as np

    from pinsage_model.data.contracts import ContractError
    from pinsage_model.graph.csr import CSRGraph, read_collection_recency
    from pinsage_model.inference.layerwise import embed_all, query_shift
    from pinsage_model.model.export import load_weights_npz
    from pinsage_model.model.user_head import save_head, train_head

    t0 = time.perf_counter()
    graph = CSRGraph.load(graph_dir / "graph.npz")
    try:
        recency = read_collection_recency(graph_dir, graph)
    except ContractError as exc:
        raise StageError(f"model: {exc}") from exc
    weights, mcfg = load_weights_npz(out_dir)
    emb = embed_all(weights, mcfg, features, nb, batch_size=cfg.inference.batch_size)
    # collections of the training subgraph keep all their items, so their rows equal the full graph's
    users = np.flatnonzero(train_graph.collection_degree() > 0)
    head, report = train_head(emb, graph, recency, users, cfg.user_head, init_shift=query_shift(weights, mcfg))
    save_head(head, out_dir)
    return {**report, "seconds": round(time.perf_counter() - t0, 3)}


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
