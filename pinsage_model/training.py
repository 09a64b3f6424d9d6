"""PinSage training loop (paper 3.3).

* **Producer-consumer**: CPU producer threads build whole minibatches ahead of the training step —
  shared negatives, hard negatives (PPR band, :func:`pinsage_model.sampler.hard_negatives`),
  Algorithm 2 re-indexing and the compact feature gather — into a bounded window of futures that
  the training step consumes in step order. Every batch depends only on ``(seed, epoch, step)``,
  so the batch stream is the same for any number of producer threads and after a resume.
* **Multi-device**: ``tf.distribute.MirroredStrategy``; the global batch is split into equal
  shards, one compact sub-graph per replica; every replica also embeds the minibatch's shared
  negatives; per-example losses are summed and divided by the global batch, gradients all-reduced
  (summed) and one synchronous step taken.
* **Schedule**: linear warm-up to ``base_lr * batch / 256`` (linear scaling rule) over the first
  epoch, then exponential decay by ``lr_decay`` per epoch.
* **Curriculum**: epoch n adds ``min(n - 1, max_hard_negatives)`` hard negatives per example.
* **Early stopping** on validation hit-rate@10; a checkpoint every epoch; ``resume`` continues
  from the last one; the best epoch's weights are restored at the end.

This module never imports MLflow: pass ``on_epoch_end(epoch, metrics)`` to log elsewhere.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pinsage_model.config import ModelConfig, SamplerConfig, TrainConfig
from pinsage_model.contracts import CSRGraph, Neighbourhoods
from pinsage_model.io import atomic_write_json
from pinsage_model.loss import hard_negatives_for_epoch
from pinsage_model.minibatch import build_minibatch

log = logging.getLogger("pinsage")

HIT_K = 10
HardNegativeFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class TrainData:
    """Everything training reads, in dense item ids.

    Attributes:
      features: (N, F) float32 input features.
      neighbourhoods: (N, T) importance neighbourhoods on the training graph.
      graph: the training graph (hard negatives walk on it; the shared-negative pool is its items).
      train_q, train_pos: (P,) int32 training pairs.
      val_q, val_pos: (V,) int32 validation pairs (early stopping).
      id_embedding_dim: width of the learned id embedding (0 = none; set by the features stage).
    """

    features: np.ndarray
    neighbourhoods: Neighbourhoods
    graph: CSRGraph
    train_q: np.ndarray
    train_pos: np.ndarray
    val_q: np.ndarray
    val_pos: np.ndarray
    id_embedding_dim: int = 0

    @property
    def num_items(self) -> int:
        return int(self.features.shape[0])


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: Any
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    step_losses: list[float] = field(default_factory=list)  # every step run by this call


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


def _csr_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of ``rows`` of a CSR matrix (vectorised gather)."""
    start, stop = indptr[rows], indptr[rows + 1]
    lengths = stop - start
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    flat = np.arange(out_ptr[-1], dtype=np.int64) - np.repeat(out_ptr[:-1], lengths) + np.repeat(start, lengths)
    return out_ptr, indices[flat]


def _positives_csr(q: np.ndarray, pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Known positives of every item from training pairs, both directions: (N+1,), (E,)."""
    src = np.concatenate([q, pos]).astype(np.int64)
    dst = np.concatenate([pos, q]).astype(np.int32)
    order = np.lexsort((dst, src))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst[order]


class BatchProducer:
    """Builds the per-replica shards of one training step (CPU side of producer-consumer).

    Args:
      data: the training data.
      num_layers: K.
      train_cfg: batch size, negatives, curriculum cap, seed.
      sampler_cfg: hard-negative band and walks.
      num_replicas: shards per step; the batch size must divide evenly.
      hard_negative_fn: replaces :func:`pinsage_model.sampler.hard_negatives` (same signature).
    """

    def __init__(
        self,
        data: TrainData,
        num_layers: int,
        train_cfg: TrainConfig,
        sampler_cfg: SamplerConfig,
        num_replicas: int = 1,
        hard_negative_fn: HardNegativeFn | None = None,
    ):
        if len(data.train_q) == 0:
            raise ValueError("no training pairs (split 'train' with both items in the training graph)")
        if train_cfg.batch_size % num_replicas:
            raise ValueError(f"train.batch_size {train_cfg.batch_size} must be divisible by num_devices {num_replicas}")
        self.data = data
        self.num_layers = num_layers
        self.cfg = train_cfg
        self.sampler_cfg = sampler_cfg
        self.num_replicas = num_replicas
        if hard_negative_fn is None:
            from pinsage_model.sampler import hard_negatives as hard_negative_fn
        self.hard_negative_fn = hard_negative_fn
        self.batch_size = min(train_cfg.batch_size, len(data.train_q) - len(data.train_q) % num_replicas)
        if self.batch_size < num_replicas:
            raise ValueError(f"{len(data.train_q)} training pairs cannot fill {num_replicas} replicas")
        degree = data.graph.item_degree()
        pool = np.flatnonzero(degree > 0).astype(np.int32)
        self.negative_pool = pool if len(pool) else np.arange(data.num_items, dtype=np.int32)
        self.pos_indptr, self.pos_indices = _positives_csr(data.train_q, data.train_pos, data.num_items)
        full = len(data.train_q) // self.batch_size
        self.steps_per_epoch = train_cfg.steps_per_epoch or max(1, full)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Pair order of an epoch; enough permutations are chained to cover ``steps_per_epoch``."""
        need = self.steps_per_epoch * self.batch_size
        rng = np.random.default_rng([self.cfg.seed, epoch, 0])
        parts = [rng.permutation(len(self.data.train_q)) for _ in range(-(-need // len(self.data.train_q)))]
        return np.concatenate(parts)[:need]

    def make(self, epoch: int, step: int, order: np.ndarray) -> dict:
        """The shards of one step: ``{"shards": [dict per replica], "seconds": producer time}``."""
        t0 = time.perf_counter()
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch, step + 1])
        sel = order[step * self.batch_size : (step + 1) * self.batch_size]
        q = self.data.train_q[sel].astype(np.int32)  # (B,)
        p = self.data.train_pos[sel].astype(np.int32)  # (B,)
        # Shared negatives (paper: 500 per minibatch), uniform over the training graph's items.
        few = len(self.negative_pool) < cfg.num_negatives
        negatives = rng.choice(self.negative_pool, size=cfg.num_negatives, replace=few).astype(np.int32)  # (n,)
        num_hard = hard_negatives_for_epoch(epoch, cfg.max_hard_negatives, cfg.use_hard_negatives)
        if num_hard:
            ex_ptr, ex_idx = _csr_rows(self.pos_indptr, self.pos_indices, q)
            hard = self.hard_negative_fn(
                self.data.graph,
                q,
                num=num_hard,
                band=tuple(self.sampler_cfg.hard_negative_band),
                exclude_indptr=ex_ptr,
                exclude_indices=ex_idx,
                num_walks=self.sampler_cfg.hard_negative_walks,
                restart_prob=self.sampler_cfg.restart_prob,
                seed=int(rng.integers(2**31 - 1)),
                num_threads=1,
            ).astype(np.int32)  # (B, h), -1 where the band ran dry
        else:
            hard = np.zeros((len(q), 0), dtype=np.int32)
        hard_mask = (hard >= 0).astype(np.float32)
        # A missing hard negative is replaced by the query (already in the batch) and masked out.
        hard = np.where(hard >= 0, hard, q[:, None])
        b = self.batch_size // self.num_replicas
        shards = []
        for i in range(self.num_replicas):
            part = slice(i * b, (i + 1) * b)
            shards.append(self._shard(q[part], p[part], negatives, hard[part], hard_mask[part]))
        return {"shards": shards, "seconds": time.perf_counter() - t0, "num_hard": num_hard}

    def _shard(self, q, p, negatives, hard, hard_mask) -> dict[str, np.ndarray]:
        b, h = hard.shape
        nodes = np.concatenate([q, p, negatives, hard.ravel()])
        mb = build_minibatch(nodes, self.data.neighbourhoods, self.data.features, self.num_layers)
        pos = mb.positions
        n = len(negatives)
        return {
            **mb.model_inputs(),
            "q_pos": pos[:b],  # (b,)
            "p_pos": pos[b : 2 * b],  # (b,)
            "n_pos": pos[2 * b : 2 * b + n],  # (n,)
            "h_pos": pos[2 * b + n :].reshape(b, h),  # (b, h)
            "h_mask": hard_mask,  # (b, h)
        }


class WarmupExponentialDecay:
    """Learning rate: linear warm-up over ``warmup_steps`` to ``peak``, then ``peak * decay^(epochs after warm-up)``."""

    def __init__(self, peak: float, warmup_steps: int, steps_per_epoch: int, decay: float):
        self.peak, self.warmup_steps, self.steps_per_epoch, self.decay = peak, warmup_steps, steps_per_epoch, decay

    def __call__(self, step):
        import tensorflow as tf

        step = tf.cast(step, tf.float32)
        warm = self.peak * tf.minimum(1.0, (step + 1.0) / float(max(1, self.warmup_steps)))
        after = tf.maximum(0.0, step - float(self.warmup_steps)) / float(self.steps_per_epoch)
        return tf.where(step < float(self.warmup_steps), warm, self.peak * tf.pow(self.decay, after))


def _make_schedule(peak: float, warmup_steps: int, steps_per_epoch: int, decay: float):
    import keras

    class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self):
            self.fn = WarmupExponentialDecay(peak, warmup_steps, steps_per_epoch, decay)

        def __call__(self, step):
            return self.fn(step)

        def get_config(self):
            return {"peak": peak, "warmup_steps": warmup_steps, "steps_per_epoch": steps_per_epoch, "decay": decay}

    return _Schedule()


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


def hit_rate_at_k(
    embed: Callable[[np.ndarray], np.ndarray],
    q: np.ndarray,
    pos: np.ndarray,
    num_items: int,
    *,
    k: int = HIT_K,
    max_candidates: int = 20000,
    seed: int = 0,
) -> dict[str, float]:
    """Exact hit-rate@k and MRR of validation pairs by cosine similarity.

    Each positive is ranked among all items (or, when N > ``max_candidates``, a seeded sample of
    that many items plus the positives), the query itself excluded.

    Args:
      embed: maps (n,) item ids to (n, d) vectors.
      q, pos: (V,) validation pairs.
      num_items: N.

    Returns:
      ``{"hit_rate@k": ..., "mrr": ...}``.
    """
    if num_items <= max_candidates:
        cands = np.arange(num_items, dtype=np.int32)
    else:
        rng = np.random.default_rng([seed, 7])
        cands = np.union1d(rng.choice(num_items, max_candidates, replace=False), pos).astype(np.int32)
    nodes = np.union1d(cands, q).astype(np.int32)
    emb = embed(nodes)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    eq, ep = emb[np.searchsorted(nodes, q)], emb[np.searchsorted(nodes, pos)]  # (V, d)
    ec = emb[np.searchsorted(nodes, cands)]  # (C, d)
    hits, rr = 0.0, 0.0
    for s in range(0, len(q), 1024):
        scores = eq[s : s + 1024] @ ec.T  # (v, C)
        target = np.sum(eq[s : s + 1024] * ep[s : s + 1024], axis=1)  # (v,)
        # The query is never its own candidate; the positive does not outrank itself.
        is_self = cands[None, :] == q[s : s + 1024, None]
        is_pos = cands[None, :] == pos[s : s + 1024, None]
        better = (scores > target[:, None]) & ~is_self & ~is_pos
        rank = 1 + better.sum(axis=1)
        hits += float(np.sum(rank <= k))
        rr += float(np.sum(1.0 / rank))
    n = max(1, len(q))
    return {f"hit_rate@{k}": hits / n, "mrr": rr / n}


def validation_sample(data: TrainData, train_cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of at most ``validation_pairs`` validation pairs."""
    n = len(data.val_q)
    take = min(n, train_cfg.validation_pairs)
    idx = np.sort(np.random.default_rng([train_cfg.seed, 3]).choice(n, take, replace=False)) if n else np.zeros(0, int)
    return data.val_q[idx].astype(np.int32), data.val_pos[idx].astype(np.int32)


class _Ordered:
    """Bounded producer window: up to ``depth`` batches in flight on ``threads`` workers, consumed in order."""

    def __init__(self, make: Callable[[int], dict], steps: int, threads: int, depth: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="pinsage-producer")
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
      hard_negative_fn: replaces :func:`pinsage_model.sampler.hard_negatives`.

    With ``train_cfg.deterministic`` TensorFlow's op determinism is switched on for the rest of
    the process (it cannot be switched off) and one producer thread is used.

    Returns:
      :class:`TrainResult` with the model holding the best validation epoch's weights.
    """
    devices = configure_devices(train_cfg.num_devices)
    import keras
    import tensorflow as tf
    from tensorflow.python.distribute import values as tf_values
    from pinsage_model.progress import progress_bar

    from pinsage_model.loss import max_margin_loss, xent_loss
    from pinsage_model.model import build_model

    if train_cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(train_cfg.seed)
    checkpoint_dir = Path(checkpoint_dir)
    if not resume:
        for sub in ("epochs", "best"):
            shutil.rmtree(checkpoint_dir / sub, ignore_errors=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    threads = 1 if train_cfg.deterministic else train_cfg.producer_threads
    producer = BatchProducer(data, model_cfg.num_layers, train_cfg, sampler_cfg, len(devices), hard_negative_fn)
    steps = producer.steps_per_epoch
    global_batch = producer.batch_size
    strategy = tf.distribute.MirroredStrategy(devices)
    peak = train_cfg.base_lr * global_batch / 256.0
    with strategy.scope():
        model = build_model(model_cfg, data.features.shape[1], data.num_items, data.id_embedding_dim)
        optimizer = keras.optimizers.Adam(learning_rate=_make_schedule(peak, steps, steps, train_cfg.lr_decay))
        optimizer.build(model.trainable_variables)
        state = {
            "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "best": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
            "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "bad_epochs": tf.Variable(0, dtype=tf.int64, trainable=False),
        }
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    manager = tf.train.CheckpointManager(ckpt, str(checkpoint_dir / "epochs"), max_to_keep=2)
    best_ckpt = tf.train.Checkpoint(model=model)
    best_manager = tf.train.CheckpointManager(best_ckpt, str(checkpoint_dir / "best"), max_to_keep=1)
    history_path = checkpoint_dir / "history.json"
    history: list[dict] = []
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        done = int(state["epoch"].numpy())
        if history_path.exists():
            history = [h for h in json.loads(history_path.read_text()) if h["epoch"] <= done]
        log.info("resumed from %s (epoch %d done)", manager.latest_checkpoint, done)

    if train_cfg.loss == "max_margin":
        def per_example(q, p, n, h, hm):
            return max_margin_loss(q, p, n, h, hm, margin=train_cfg.margin)
    else:
        def per_example(q, p, n, h, hm):
            return xent_loss(q, p, n, h, hm, temperature=train_cfg.xent_temperature)

    def replica_step(inputs):
        with tf.GradientTape() as tape:
            z = model(inputs, training=True)  # (n_K, d)
            hard = tf.gather(z, inputs["h_pos"])  # (b, h, d)
            q, pos, neg = (tf.gather(z, inputs[key]) for key in ("q_pos", "p_pos", "n_pos"))  # (b|n, d)
            losses = per_example(q, pos, neg, hard, inputs["h_mask"])  # (b,)
            loss = tf.reduce_sum(losses) / float(global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(reduce_retracing=True)
    def distributed_step(dist_inputs):
        per_replica = strategy.run(replica_step, args=(dist_inputs,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def to_device(shards: list[dict]) -> Any:
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: {k: tf.constant(v) for k, v in shards[ctx.replica_id_in_sync_group].items()}
        )

    def trace_once(dist_inputs: Any) -> None:
        # Every minibatch has different sizes (n_k, h): trace one graph with all dimensions
        # unknown instead of letting each new shape retrace.
        def relax(x: Any) -> Any:
            if isinstance(x, tf_values.PerReplica):
                return tf_values.PerReplicaSpec(*[relax(t) for t in x.values])
            return tf.TensorSpec([None] * x.shape.rank, x.dtype)

        distributed_step.get_concrete_function({k: relax(v) for k, v in dist_inputs.items()})

    val_q, val_pos = validation_sample(data, train_cfg)
    if not len(val_q):
        log.warning("no validation pairs: early stopping is off and the last epoch's weights are kept")
    result = TrainResult(model=model, history=history)
    start_epoch = int(state["epoch"].numpy()) + 1
    if start_epoch > 1 and int(state["bad_epochs"].numpy()) >= train_cfg.early_stopping_patience:
        start_epoch = train_cfg.epochs + 1  # the run had already stopped early
        result.stopped_early = True
    traced = False
    for epoch in range(start_epoch, train_cfg.epochs + 1):
        t_epoch = time.perf_counter()
        order = producer.epoch_order(epoch)
        batches = _Ordered(lambda s: producer.make(epoch, s, order), steps, threads, train_cfg.queue_size)
        losses, producer_s, compute_s, step_s = [], 0.0, 0.0, 0.0
        bar = progress_bar(total=steps, desc=f"epoch {epoch}/{train_cfg.epochs}", disable=not progress, unit="step")
        t_prev = time.perf_counter()
        num_hard = 0
        for batch in batches:
            t_c = time.perf_counter()
            dist_inputs = to_device(batch["shards"])
            if not traced:
                trace_once(dist_inputs)
                traced = True
            loss = float(distributed_step(dist_inputs))
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
        val = hit_rate_at_k(
            lambda nodes: embed_nodes(model, nodes, data.neighbourhoods, data.features),
            val_q, val_pos, data.num_items, max_candidates=train_cfg.eval_candidates, seed=train_cfg.seed,
        ) if len(val_q) else {f"hit_rate@{HIT_K}": 0.0, "mrr": 0.0}
        hit = val[f"hit_rate@{HIT_K}"]
        metrics = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "loss_first": losses[0],
            "loss_last": losses[-1],
            f"val_hit_rate@{HIT_K}": hit,
            "val_mrr": val["mrr"],
            "examples_per_s": steps * global_batch / max(step_s, 1e-9),
            "producer_s_per_step": producer_s / steps,
            "compute_s_per_step": compute_s / steps,
            "step_s": step_s / steps,
            "hard_negatives": num_hard,
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "seconds": time.perf_counter() - t_epoch,
        }
        # Without validation pairs there is nothing to select on: every epoch counts as better,
        # so training runs all epochs and keeps the last weights.
        if hit > float(state["best"].numpy()) or not len(val_q):
            state["best"].assign(hit)
            state["best_epoch"].assign(epoch)
            state["bad_epochs"].assign(0)
            best_manager.save(checkpoint_number=epoch)
        else:
            state["bad_epochs"].assign_add(1)
        state["epoch"].assign(epoch)
        history.append(metrics)
        manager.save(checkpoint_number=epoch)
        atomic_write_json(history_path, history)
        log.info("epoch %d: loss %.4f val hit@%d %.4f (%.0f ex/s)", epoch, metrics["loss"], HIT_K, hit, metrics["examples_per_s"])
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if int(state["bad_epochs"].numpy()) >= train_cfg.early_stopping_patience:
            result.stopped_early = True
            break
    if best_manager.latest_checkpoint:
        best_ckpt.restore(best_manager.latest_checkpoint).assert_existing_objects_matched()
    result.best_epoch = int(state["best_epoch"].numpy())
    result.history = history
    return result
