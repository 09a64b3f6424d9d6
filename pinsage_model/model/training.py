"""PinSage training loop (paper 3.3).

* **Producer-consumer**: CPU producer threads (:class:`pinsage_model.model.batches.BatchProducer`)
  build whole minibatches ahead of the training step into a bounded window of futures that the
  training step consumes in step order.
* **Multi-device**: ``tf.distribute.MirroredStrategy``; the global batch is split into equal
  shards, one compact sub-graph per replica; every replica also embeds the minibatch's shared
  negatives; per-example losses are summed and divided by the global batch, gradients all-reduced
  (summed) and one synchronous step taken.
* **Multi-worker** (``train.strategy: multi_worker``): ``tf.distribute.MultiWorkerMirroredStrategy``
  over the workers of ``TF_CONFIG``, the same step with the all-reduce across machines. Every
  worker reads the same inputs and draws the same global batch (it depends only on the seed, the
  epoch and the step); replica r (worker r // G, G devices per worker) takes shard r, so worker w
  builds only shards w*G .. w*G + G - 1. Validation runs on every worker on identical weights and
  its hit-rate is all-reduced, so all take the same early-stopping decisions. Only the chief
  writes checkpoints and ``history.json`` into ``checkpoint_dir``; the others write theirs to a
  private temporary folder (TensorFlow's multi-worker saving guidance) that starts as a copy of
  the chief's when resuming.
* **Schedule**: :mod:`pinsage_model.model.schedule` (linear warm-up, exponential decay per epoch).
* **Curriculum**: epoch n adds ``min(n - 1, max_hard_negatives)`` hard negatives per example.
* **Early stopping** on validation hit-rate@10, ranked exactly as the evaluation stage ranks
  (:func:`pinsage_model.evaluation.metrics.ranks`: mid-rank ties, the query excluded) with the
  neighbourhoods inference uses; a checkpoint every epoch; ``resume`` continues from the last
  one; the best epoch's weights are restored at the end.

This module never imports MLflow: pass ``on_epoch_end(epoch, metrics)`` to log elsewhere.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pinsage_model import metric_keys
from pinsage_model.config import ModelConfig, SamplerConfig, TrainConfig
from pinsage_model.graph.csr import Neighbourhoods
from pinsage_model.io import atomic_write_json
from pinsage_model.model.batches import BatchProducer, HardNegativeFn, TrainData
from pinsage_model.model.minibatch import build_minibatch

log = logging.getLogger("pinsage")

HIT_K = 10
HIT = metric_keys.hit_rate(HIT_K)

__all__ = [
    "TrainData",
    "TrainResult",
    "WorkerRole",
    "configure_devices",
    "embed_nodes",
    "per_example_loss",
    "per_user_loss",
    "step_loss",
    "train",
    "validation_metrics",
    "worker_role",
]


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: Any
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    step_losses: list[float] = field(default_factory=list)  # every step run by this call
    workers: int = 1  # training processes that took each step together (train.strategy multi_worker)


@dataclass(frozen=True)
class WorkerRole:
    """This process's place among the workers of ``train.strategy: multi_worker``.

    Attributes:
      task_type: ``worker`` or ``chief`` (TF_CONFIG's ``task.type``).
      index: ``task.index``.
      workers: number of training processes in the cluster (chief and workers).
      is_chief: the one process that writes outputs: the ``chief`` task, or worker 0 when the
        cluster has no chief (TensorFlow's rule, ``multi_worker_util.is_chief``).
    """

    task_type: str
    index: int
    workers: int
    is_chief: bool


def worker_role(environ: dict | None = None) -> WorkerRole:
    """The :class:`WorkerRole` that ``TF_CONFIG`` describes, read without importing TensorFlow.

    Without ``TF_CONFIG`` the process is a cluster of one: the chief. The Kubeflow Training
    Operator sets ``TF_CONFIG`` on every pod of a TFJob.

    Raises:
      ValueError: ``TF_CONFIG`` is not JSON, names a task type other than ``chief``/``worker``,
        or a task index outside the cluster.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return WorkerRole("worker", 0, 1, True)
    try:
        conf = json.loads(raw)
        cluster, task = conf.get("cluster", {}), conf.get("task", {})
        task_type, index = str(task.get("type", "worker")), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"TF_CONFIG is not a TensorFlow cluster description ({exc}): {raw[:200]!r}") from exc
    if task_type not in ("chief", "worker"):
        raise ValueError(
            f"TF_CONFIG task type {task_type!r}: multi-worker training runs 'chief' and 'worker' tasks only"
        )
    if not 0 <= index < len(cluster.get(task_type, [])):
        raise ValueError(f"TF_CONFIG task {task_type}:{index} is not in its cluster {sorted(cluster)}")
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    chief = task_type == "chief" or (index == 0 and not cluster.get("chief"))
    return WorkerRole(task_type, index, workers, chief)


def multi_worker_strategy(num_devices: int) -> tuple[Any, range]:
    """``MultiWorkerMirroredStrategy`` over TF_CONFIG's workers, and this worker's replica ids.

    Must run before any other TensorFlow work in the process: the strategy configures the
    collective ops and starts this worker's gRPC server. Uses ``num_devices`` GPUs per worker
    when GPUs are visible, else the CPU (one replica per worker).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < num_devices:
            raise ValueError(f"train.num_devices = {num_devices} but only {len(gpus)} GPUs are visible on this worker")
        tf.config.set_visible_devices(gpus[:num_devices], "GPU")
    elif num_devices != 1:
        raise ValueError(
            f"train.num_devices = {num_devices} with train.strategy multi_worker on a worker without GPUs: "
            "a CPU worker holds one replica (set num_devices: 1 and add workers)"
        )
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # The global replica ids of this worker's devices (worker-major: worker w holds w*G .. w*G+G-1).
    ids = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(ctx.replica_id_in_sync_group))
    local = sorted(int(v) for v in strategy.experimental_local_results(ids))
    return strategy, range(local[0], local[-1] + 1)


def configure_devices(num_devices: int) -> list[str]:
    """Device names for ``num_devices`` replicas: GPUs when present, else logical CPU devices.

    Splitting the CPU into logical devices must happen before TensorFlow initialises its runtime;
    call this before any other TensorFlow work in the process.
    """
    import tensorflow as tf

    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < num_devices:
            raise ValueError(f"train.num_devices = {num_devices} but only {len(gpus)} GPUs are visible")
        return [f"/gpu:{i}" for i in range(num_devices)]
    if num_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        current = tf.config.get_logical_device_configuration(cpu)
        if current is None or len(current) < num_devices:
            try:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
                )
            except RuntimeError as exc:
                raise RuntimeError(
                    f"train.num_devices = {num_devices} needs {num_devices} logical CPU devices, but "
                    "TensorFlow was initialised before they could be configured; call "
                    "configure_devices() first in a fresh process"
                ) from exc
    return [f"/cpu:{i}" for i in range(num_devices)]


def embed_nodes(
    model: Any, nodes: np.ndarray, neighbourhoods: Neighbourhoods, features: np.ndarray, chunk: int = 2048
) -> np.ndarray:
    """(len(nodes), d) embeddings through compact minibatches (Algorithm 2), chunk by chunk."""
    fn = _embed_fn(model)
    out = np.zeros((len(nodes), model.output_dim), dtype=np.float32)
    for start in range(0, len(nodes), chunk):
        mb = build_minibatch(nodes[start : start + chunk], neighbourhoods, features, model.num_layers)
        z = fn(mb.model_inputs()).numpy()  # (n_K, d)
        out[start : start + chunk] = z[mb.positions]
    return out


def _embed_fn(model: Any):
    import tensorflow as tf

    fn = getattr(model, "_pinsage_embed_fn", None)
    if fn is None:
        # One trace for every minibatch size.
        spec = {"features": tf.TensorSpec([None, None], tf.float32), "node_ids": tf.TensorSpec([None], tf.int32)}
        for k in range(1, model.num_layers + 1):
            spec[f"index_{k}"] = tf.TensorSpec([None, None], tf.int32)
            spec[f"weight_{k}"] = tf.TensorSpec([None, None], tf.float32)

        @tf.function(input_signature=[spec])
        def fn(inputs):
            return model(inputs, training=False)

        model._pinsage_embed_fn = fn
    return fn


def validation_metrics(
    embed: Callable[[np.ndarray], np.ndarray],
    q: np.ndarray,
    pos: np.ndarray,
    num_items: int,
    *,
    max_candidates: int = 20000,
    seed: int = 0,
    query_shift: np.ndarray | None = None,
) -> dict[str, float]:
    """Hit-rate@10 and MRR of validation pairs, ranked as the evaluation stage ranks them.

    Each positive is ranked among all items (or, when N > ``max_candidates``, a seeded sample of
    that many items plus the positives) by :func:`pinsage_model.evaluation.metrics.ranks`: cosine, the
    query excluded, ties at the mean of their positions.

    Args:
      embed: maps (n,) item ids to (n, d) vectors.
      q, pos: (V,) validation pairs.
      num_items: N.
      query_shift: (d,) learned query shift added to the query embeddings, or None.

    Returns:
      ``{"hit_rate_at_10": ..., "mrr": ...}`` (:mod:`pinsage_model.metric_keys`).
    """
    from pinsage_model.evaluation.metrics import ranks, sample_candidates, summarise

    pool = sample_candidates(num_items, max_candidates, seed)
    nodes = np.union1d(np.arange(num_items) if pool is None else pool, np.concatenate([q, pos])).astype(np.int32)
    emb = embed(nodes)  # (n, d)
    full = np.zeros((num_items, emb.shape[1]), dtype=np.float32)  # rows outside ``nodes`` are never read
    full[nodes] = emb
    queries = full[q] if query_shift is None else full[q] + query_shift[None, :]  # (V, d)
    r = ranks(queries, pos, full, q, pool)
    out = summarise(r, (HIT_K,), 1.0)
    return {HIT: out[HIT], metric_keys.MRR: out[metric_keys.MRR]}


def validation_sample(data: TrainData, train_cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of at most ``validation_pairs`` validation pairs."""
    n = len(data.val_q)
    take = min(n, train_cfg.validation_pairs)
    idx = np.sort(np.random.default_rng([train_cfg.seed, 3]).choice(n, take, replace=False)) if n else np.zeros(0, int)
    return data.val_q[idx].astype(np.int32), data.val_pos[idx].astype(np.int32)


class _Ordered:
    """Bounded producer window: up to ``depth`` batches in flight on ``threads`` workers, consumed in order."""

    def __init__(self, make: Callable[[int], dict], steps: int, threads: int, depth: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="pinsage-producer"
        )
        self.make, self.steps, self.depth = make, steps, max(1, depth)
        self.pending: collections.deque = collections.deque()
        self.next = 0

    def __iter__(self):
        try:
            while self.next < self.steps or self.pending:
                while self.next < self.steps and len(self.pending) < self.depth:
                    self.pending.append(self.pool.submit(self.make, self.next))
                    self.next += 1
                yield self.pending.popleft().result()
        finally:
            for fut in self.pending:
                fut.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)


def producer_threads(train_cfg: TrainConfig) -> int:
    """Minibatch producer threads: ``train.producer_threads``, or half the cores (at least one) for 0."""
    return train_cfg.producer_threads or max(1, (os.cpu_count() or 2) // 2)


def per_example_loss(train_cfg: TrainConfig, shift_queries: Callable[[Any], Any]) -> Callable[..., Any]:
    """Per-example loss of one replica's shard: ``fn(z, inputs) -> (b,)``; ``shift_queries`` maps
    query embeddings to query vectors (:meth:`PinSageModel.shift_queries`)."""
    import tensorflow as tf

    from pinsage_model.model.loss import max_margin_loss, xent_loss

    def fn(z, inputs):
        hard = tf.gather(z, inputs["h_pos"])  # (b, h, d)
        q, pos, neg = (tf.gather(z, inputs[key]) for key in ("q_pos", "p_pos", "n_pos"))  # (b|n, d)
        q = shift_queries(q)  # (b, d)
        loss = train_cfg.loss
        if loss.kind == "max_margin":
            return max_margin_loss(q, pos, neg, hard, inputs["h_mask"], margin=loss.margin, reduction=loss.reduction)
        ids = {key: tf.gather(inputs["node_ids"], inputs[f"{key[0]}_pos"]) for key in ("q_ids", "pos_ids", "neg_ids")}
        logq = {"pos_logq": inputs["p_logq"], "neg_logq": inputs["n_logq"]} if loss.logq_correction else {}
        return xent_loss(
            q,
            pos,
            neg,
            hard,
            inputs["h_mask"],
            temperature=loss.temperature,
            in_batch=loss.in_batch_negatives,
            **ids,
            **logq,
        )

    return fn


def per_user_loss(train_cfg: TrainConfig, shift_queries: Callable[[Any], Any]) -> Callable[..., Any]:
    """Per-user loss of one replica's shard: ``fn(z, u, inputs) -> (b,)``, ``u`` (b, d) the users'
    vectors; their targets are scored as item queries' positives are, against the same shared
    negatives (and in-batch the other users' targets) with the user term's log Q; the user's own
    training items are not negatives. No hard negatives: they are drawn for item queries."""
    import tensorflow as tf

    from pinsage_model.model.loss import max_margin_loss, xent_loss

    def fn(z, u, inputs):
        q = shift_queries(u)  # (b, d)
        pos, neg = tf.gather(z, inputs["u_pos"]), tf.gather(z, inputs["n_pos"])  # (b, d), (n, d)
        loss = train_cfg.loss
        if loss.kind == "max_margin":
            return max_margin_loss(q, pos, neg, margin=loss.margin, reduction=loss.reduction)
        logq = {"pos_logq": inputs["u_logq"], "neg_logq": inputs["u_n_logq"]} if loss.logq_correction else {}
        return xent_loss(
            q,
            pos,
            neg,
            temperature=loss.temperature,
            in_batch=loss.in_batch_negatives,
            drop_neg=inputs["u_drop_neg"],
            drop_batch=inputs["u_drop_batch"],
            **logq,
        )

    return fn


def step_loss(model: Any, train_cfg: TrainConfig, global_batch: int) -> Callable[[dict], Any]:
    """``fn(inputs) -> loss`` of one replica's shard: its examples' item losses summed and divided
    by the global batch; with ``train.user_loss_weight`` w > 0 plus w times its users' losses,
    likewise (a step draws as many users as examples)."""
    import tensorflow as tf

    per_example = per_example_loss(train_cfg, model.shift_queries)
    per_user = per_user_loss(train_cfg, model.shift_queries)
    w_user = train_cfg.user_loss_weight

    def fn(inputs):
        if not w_user:
            z = model(inputs, training=True)  # (n_K, d)
            return tf.reduce_sum(per_example(z, inputs)) / float(global_batch)
        z, u = model.embed_with_users(inputs)  # (n_K, d), (b, d)
        item = tf.reduce_sum(per_example(z, inputs)) / float(global_batch)
        return item + w_user * (tf.reduce_sum(per_user(z, u, inputs)) / float(global_batch))

    return fn


def user_half_life(train_cfg: TrainConfig) -> float | None:
    """The model's user-node importance half-life: None when the user term is off."""
    return train_cfg.experimental.user_recency_half_life if train_cfg.user_loss_weight > 0 else None


def _build(data: TrainData, model_cfg: ModelConfig, train_cfg: TrainConfig, strategy: Any, peak: float, steps: int):
    """Model, optimizer and the early-stopping state, created under ``strategy``."""
    import keras
    import tensorflow as tf

    from pinsage_model.model.layers import build_model
    from pinsage_model.model.schedule import EPOCH_DECAY, make_schedule

    with strategy.scope():
        model = build_model(
            model_cfg, data.features.shape[1], data.num_items, data.id_embedding_dim, user_half_life(train_cfg)
        )
        if model.id_embedding is not None and data.identity is not None:
            model.set_id_rows(data.identity)
        optimizer = keras.optimizers.Adam(learning_rate=make_schedule(peak, steps, steps, EPOCH_DECAY))
        optimizer.build(model.trainable_variables)
        state = {
            "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "best": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
            "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "bad_epochs": tf.Variable(0, dtype=tf.int64, trainable=False),
        }
    return model, optimizer, state


def _step_fn(
    model: Any, optimizer: Any, strategy: Any, train_cfg: TrainConfig, global_batch: int, first_replica: int = 0
):
    """``step(shards) -> loss``: one synchronous step over the replicas, traced once.

    ``shards`` are this process's replicas' shards, the first being replica ``first_replica``
    (0 unless a multi-worker worker holds later ones); the loss returned is the global one."""
    import tensorflow as tf
    from tensorflow.python.distribute import values as tf_values

    shard_loss = step_loss(model, train_cfg, global_batch)

    def replica_step(inputs):
        with tf.GradientTape() as tape:
            loss = shard_loss(inputs)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(reduce_retracing=True)
    def distributed_step(dist_inputs):
        per_replica = strategy.run(replica_step, args=(dist_inputs,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def relax(x: Any) -> Any:
        # Every minibatch has different sizes (n_k, h): trace one graph with all dimensions
        # unknown instead of letting each new shape retrace.
        if isinstance(x, tf_values.PerReplica):
            return tf_values.PerReplicaSpec(*[relax(t) for t in x.values])
        return tf.TensorSpec([None] * x.shape.rank, x.dtype)

    traced: list[bool] = []

    def step(shards: list[dict]) -> float:
        dist_inputs = strategy.experimental_distribute_values_from_function(
            lambda ctx: {k: tf.constant(v) for k, v in shards[ctx.replica_id_in_sync_group - first_replica].items()}
        )
        if not traced:
            distributed_step.get_concrete_function({k: relax(v) for k, v in dist_inputs.items()})
            traced.append(True)
        return float(distributed_step(dist_inputs))

    return step


def _agree(strategy: Any, value: float) -> float:
    """``value`` averaged over the workers: every worker computes it on identical weights, and the
    all-reduce makes the early-stopping decision one decision even where kernels are not
    bit-reproducible (a worker that stopped alone would leave the others waiting in a step)."""
    import tensorflow as tf

    local = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(value, tf.float64))
    return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None))


def _run_epoch(
    epoch: int,
    producer: BatchProducer,
    step: Callable,
    train_cfg: TrainConfig,
    progress: bool,
    result: "TrainResult",
) -> dict:
    """Train one epoch; returns the loss and timing part of the epoch's metrics."""
    from pinsage_model.progress import progress_bar

    steps, global_batch = producer.steps_per_epoch, producer.batch_size
    order = producer.epoch_order(epoch)
    threads = 1 if train_cfg.deterministic else producer_threads(train_cfg)
    batches = _Ordered(lambda s: producer.make(epoch, s, order), steps, threads, train_cfg.queue_size)
    losses, producer_s, compute_s, step_s = [], 0.0, 0.0, 0.0
    bar = progress_bar(total=steps, desc=f"epoch {epoch}/{train_cfg.epochs}", disable=not progress, unit="step")
    t_prev = time.perf_counter()
    num_hard = 0
    for batch in batches:
        t_c = time.perf_counter()
        loss = step(batch["shards"])
        t_done = time.perf_counter()
        compute_s += t_done - t_c
        step_s += t_done - t_prev
        producer_s += batch["seconds"]
        num_hard = batch["num_hard"]
        t_prev = t_done
        losses.append(loss)
        result.step_losses.append(loss)
        # the postfix shows at the bar's next redraw: refreshing here would redraw every step
        bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{(bar.n + 1) * global_batch / max(step_s, 1e-9):.0f}", refresh=False)
        bar.update(1)
    bar.close()
    return {
        "epoch": epoch,
        "loss": float(np.mean(losses)),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "examples_per_s": steps * global_batch / max(step_s, 1e-9),
        "producer_s_per_step": producer_s / steps,
        "compute_s_per_step": compute_s / steps,
        "step_s": step_s / steps,
        "hard_negatives": num_hard,
    }


def train(
    data: TrainData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    sampler_cfg: SamplerConfig,
    *,
    checkpoint_dir: str | Path,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    hard_negative_fn: HardNegativeFn | None = None,
) -> TrainResult:
    """Train PinSage; checkpoints every epoch into ``checkpoint_dir``.

    Args:
      data: features, neighbourhoods, training graph and pairs.
      model_cfg, train_cfg, sampler_cfg: configuration sections.
      checkpoint_dir: checkpoints (``epochs/``, ``best/``) and ``history.json``.
      resume: continue from the last epoch checkpoint in ``checkpoint_dir`` if there is one.
      on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch (MLflow logging).
      progress: tqdm bars with loss and examples/s.
      hard_negative_fn: replaces :func:`pinsage_model.graph.sampler.hard_negatives`.

    With ``train_cfg.deterministic`` TensorFlow's op determinism is switched on for the rest of
    the process (it cannot be switched off) and one producer thread is used.

    With ``train_cfg.strategy == "multi_worker"`` every worker of ``TF_CONFIG`` calls this with
    the same arguments (call it before any other TensorFlow work in the process); only the chief
    writes into ``checkpoint_dir``, and ``on_epoch_end`` runs on every worker (gate logging on
    :func:`worker_role`).

    Returns:
      :class:`TrainResult` with the model holding the best validation epoch's weights.
    """
    checkpoint_dir = Path(checkpoint_dir)
    run = functools.partial(
        _train,
        data,
        model_cfg,
        train_cfg,
        sampler_cfg,
        resume=resume,
        on_epoch_end=on_epoch_end,
        progress=progress,
        hard_negative_fn=hard_negative_fn,
    )
    if train_cfg.strategy == "multi_worker":
        return _train_multi_worker(run, train_cfg.num_devices, checkpoint_dir, resume)
    devices = configure_devices(train_cfg.num_devices)
    import tensorflow as tf

    # One device needs no replication: the default strategy runs the step as a plain tf.function,
    # without MirroredStrategy's per-step distribution of the inputs (a third of a small step).
    strategy = tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.get_strategy()
    return run(strategy, range(len(devices)), checkpoint_dir, workers=1)


def _train_multi_worker(run: Callable[..., TrainResult], num_devices: int, checkpoint_dir: Path, resume: bool):
    """``run(strategy, replicas, checkpoint_dir, workers=...)`` as this worker of ``TF_CONFIG``."""
    role = worker_role()
    strategy, replicas = multi_worker_strategy(num_devices)  # before any other TensorFlow work
    log.info(
        "multi-worker training: %s %d of %d workers (chief: %s), replicas %d-%d of %d",
        role.task_type,
        role.index,
        role.workers,
        role.is_chief,
        replicas.start,
        replicas.stop - 1,
        strategy.num_replicas_in_sync,
    )
    if role.is_chief:
        return run(strategy, replicas, checkpoint_dir, workers=role.workers)
    # Checkpoints hold MirroredVariables every worker must save (TensorFlow's multi-worker
    # guidance); a non-chief saves into its own folder, which starts as the chief's state.
    with tempfile.TemporaryDirectory(prefix=f"pinsage-{role.task_type}{role.index}-") as tmp:
        if resume and checkpoint_dir.is_dir():
            shutil.copytree(checkpoint_dir, tmp, dirs_exist_ok=True)
        return run(strategy, replicas, Path(tmp), workers=role.workers)


def _train(
    data: TrainData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    sampler_cfg: SamplerConfig,
    strategy: Any,
    replicas: range,
    checkpoint_dir: Path,
    *,
    resume: bool,
    on_epoch_end: Callable[[int, dict], None] | None,
    progress: bool,
    hard_negative_fn: HardNegativeFn | None,
    workers: int,
) -> TrainResult:
    """:func:`train` under ``strategy``, this process holding ``replicas`` of its replicas in sync,
    with checkpoints and history in ``checkpoint_dir`` (a non-chief worker's private copy)."""
    import keras

    _seed(train_cfg)
    n_sync = strategy.num_replicas_in_sync
    producer = BatchProducer(
        data, model_cfg.num_layers, train_cfg, sampler_cfg, n_sync, hard_negative_fn, local_replicas=replicas
    )
    peak = train_cfg.base_lr * producer.batch_size / 256.0
    model, optimizer, state = _build(data, model_cfg, train_cfg, strategy, peak, producer.steps_per_epoch)
    ckpts = _Checkpoints(model, optimizer, state, checkpoint_dir, resume)
    step = _step_fn(model, optimizer, strategy, train_cfg, producer.batch_size, replicas.start)
    validate, has_pairs = _validation(model, data, train_cfg, strategy, workers)
    result = TrainResult(model=model, history=ckpts.history, workers=workers)
    start_epoch = int(state["epoch"].numpy()) + 1
    if start_epoch > 1 and int(state["bad_epochs"].numpy()) >= train_cfg.early_stopping_patience:
        start_epoch = train_cfg.epochs + 1  # the run had already stopped early
        result.stopped_early = True
    for epoch in range(start_epoch, train_cfg.epochs + 1):
        t_epoch = time.perf_counter()
        metrics = _run_epoch(epoch, producer, step, train_cfg, progress, result)
        metrics.update(validate())
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        metrics["seconds"] = time.perf_counter() - t_epoch
        hit = metrics[metric_keys.validation(HIT)]
        # Without validation pairs there is nothing to select on: every epoch counts as better,
        # so training runs all epochs and keeps the last weights.
        ckpts.end_epoch(epoch, metrics, hit, better=hit > float(state["best"].numpy()) or not has_pairs)
        log.info(
            "epoch %d: loss %.4f val hit@%d %.4f (%.0f ex/s)",
            epoch,
            metrics["loss"],
            HIT_K,
            hit,
            metrics["examples_per_s"],
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if int(state["bad_epochs"].numpy()) >= train_cfg.early_stopping_patience:
            result.stopped_early = True
            break
    ckpts.restore_best()
    result.best_epoch = int(state["best_epoch"].numpy())  # result.history is ckpts.history, appended to
    return result


class _Checkpoints:
    """The epoch checkpoints (``epochs/``, the last two), the best epoch's weights (``best/``) and
    ``history.json`` of one training run; restored from ``checkpoint_dir`` when resuming."""

    def __init__(self, model: Any, optimizer: Any, state: dict, checkpoint_dir: Path, resume: bool) -> None:
        import tensorflow as tf

        if not resume:
            for sub in ("epochs", "best"):
                shutil.rmtree(checkpoint_dir / sub, ignore_errors=True)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(checkpoint_dir / "epochs"), max_to_keep=2)
        self.best_ckpt = tf.train.Checkpoint(model=model)
        self.best_manager = tf.train.CheckpointManager(self.best_ckpt, str(checkpoint_dir / "best"), max_to_keep=1)
        self.history_path = checkpoint_dir / "history.json"
        self.history: list[dict] = []
        if resume and self.manager.latest_checkpoint:
            self.ckpt.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            done = int(state["epoch"].numpy())
            if self.history_path.exists():
                self.history = [h for h in json.loads(self.history_path.read_text()) if h["epoch"] <= done]
            log.info("resumed from %s (epoch %d done)", self.manager.latest_checkpoint, done)

    def end_epoch(self, epoch: int, metrics: dict, hit: float, better: bool) -> None:
        """Keep the weights if ``better``, count a bad epoch otherwise; checkpoint and write the history."""
        state = self.state
        if better:
            state["best"].assign(hit)
            state["best_epoch"].assign(epoch)
            state["bad_epochs"].assign(0)
            self.best_manager.save(checkpoint_number=epoch)
        else:
            state["bad_epochs"].assign_add(1)
        state["epoch"].assign(epoch)
        self.history.append(metrics)
        self.manager.save(checkpoint_number=epoch)
        atomic_write_json(self.history_path, self.history)

    def restore_best(self) -> None:
        if self.best_manager.latest_checkpoint:
            self.best_ckpt.restore(self.best_manager.latest_checkpoint).assert_existing_objects_matched()


def _seed(train_cfg: TrainConfig) -> None:
    """Seed Keras, TensorFlow, numpy and Python's random (and TensorFlow's op determinism if asked)."""
    import keras
    import tensorflow as tf

    if train_cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(train_cfg.seed)


def _validation(model: Any, data: TrainData, train_cfg: TrainConfig, strategy: Any, workers: int):
    """(validate, has pairs): ``validate()`` is this epoch's ``{val_hit_rate_at_K, val_mrr}`` on the
    sampled validation pairs (zeros without pairs), hit@K agreed between the workers."""
    val_q, val_pos = validation_sample(data, train_cfg)
    if not len(val_q):
        log.warning("no validation pairs: early stopping is off and the last epoch's weights are kept")
    val_nb = data.val_neighbourhoods if data.val_neighbourhoods is not None else data.neighbourhoods

    def validate() -> dict[str, float]:
        val = (
            validation_metrics(
                lambda nodes: embed_nodes(model, nodes, val_nb, data.features),
                val_q,
                val_pos,
                data.num_items,
                max_candidates=train_cfg.eval_candidates,
                seed=train_cfg.seed,
                query_shift=None if model.query_shift is None else model.query_shift.numpy(),
            )
            if len(val_q)
            else {HIT: 0.0, metric_keys.MRR: 0.0}
        )
        hit = val[HIT] if workers == 1 else _agree(strategy, val[HIT])
        return {metric_keys.validation(HIT): hit, metric_keys.validation(metric_keys.MRR): val[metric_keys.MRR]}

    return validate, bool(len(val_q))
