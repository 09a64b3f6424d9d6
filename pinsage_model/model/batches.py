"""Training minibatches (paper 3.3, CPU side of the producer-consumer scheme).

:class:`BatchProducer` builds the per-replica shards of one training step: shared negatives
(uniform over the training graph's items, paper: 500 per minibatch), hard negatives from the
PPR band (:func:`pinsage_model.graph.sampler.hard_negatives`) under the curriculum, Algorithm 2
re-indexing and the compact feature gather, plus the log-Q terms of the sampled softmax. Every
batch depends only on ``(seed, epoch, step)``, so the stream is the same for any number of
producer threads and after a resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pinsage_model.config import SamplerConfig, TrainConfig
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods, csr_subset
from pinsage_model.model.loss import hard_negatives_for_epoch
from pinsage_model.model.minibatch import build_minibatch, sparse_if_sparse
from pinsage_model.model.users import UserBatch, UserRows, sample_users, seen

HardNegativeFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class TrainData:
    """Everything training reads, in dense item ids.

    Attributes:
      features: (N, F) float32 input features.
      neighbourhoods: (N, T) importance neighbourhoods of the graph training reads.
      graph: the training graph (hard negatives walk on it; the shared-negative pool is its items).
      train_q, train_pos: (P,) int32 training pairs.
      val_q, val_pos: (V,) int32 validation pairs (early stopping).
      id_embedding_dim: width of the learned id embedding (0 = none).
      val_neighbourhoods: neighbourhoods the validation embeddings use: those of the graph that
        inference and evaluation read, so model selection sees the serving regime; None = the
        training ones.
      identity: (N, H) int32 id-embedding table rows of each item, -1 = none
        (:func:`pinsage_model.model.identity.identity_rows`); None = row i for item i.
      users: the training users' items (:class:`pinsage_model.model.users.UserRows`), read by the
        user term (``train.user_loss_weight`` > 0); None without it.
    """

    features: np.ndarray
    neighbourhoods: Neighbourhoods
    graph: CSRGraph
    train_q: np.ndarray
    train_pos: np.ndarray
    val_q: np.ndarray
    val_pos: np.ndarray
    id_embedding_dim: int = 0
    val_neighbourhoods: Neighbourhoods | None = None
    identity: np.ndarray | None = None
    users: UserRows | None = None

    @property
    def num_items(self) -> int:
        return int(self.features.shape[0])


def _positives_csr(q: np.ndarray, pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Known positives of every item from training pairs, both directions: (N+1,), (E,)."""
    src = np.concatenate([q, pos]).astype(np.int64)
    dst = np.concatenate([pos, q]).astype(np.int32)
    order = np.lexsort((dst, src))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst[order]


def candidate_log_q(
    train_pos: np.ndarray,
    pool: np.ndarray,
    num_items: int,
    num_negatives: int,
    in_batch: int,
    pos_weights: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) float32 log of the expected number of times each item is a candidate in one example.

    Shared negatives are ``num_negatives`` uniform draws from ``pool``; in-batch negatives are the
    ``in_batch`` positives of a replica's shard, drawn in proportion to how often an item is a
    training positive (weighted by ``pos_weights`` (P,) when given: the user term's target
    probabilities). The sum of both expectations is Q of the log-Q correction (Yi et al. 2019);
    items never drawn get Q = 1 / (number of training pairs) so the log stays finite.
    """
    q = np.zeros(num_items, dtype=np.float64)
    q[pool] += num_negatives / max(1, len(pool))
    if in_batch:
        total = len(train_pos) if pos_weights is None else float(np.sum(pos_weights))
        q += in_batch * np.bincount(train_pos, weights=pos_weights, minlength=num_items) / max(1, total)
    return np.log(np.maximum(q, 1.0 / max(1, len(train_pos)))).astype(np.float32)


class BatchProducer:
    """Builds the per-replica shards of one training step (CPU side of producer-consumer).

    Args:
      data: the training data.
      num_layers: K.
      train_cfg: batch size, negatives, curriculum cap, seed.
      sampler_cfg: hard-negative band and walks.
      num_replicas: shards per step (replicas in sync, over all workers); the batch size must
        divide evenly.
      hard_negative_fn: replaces :func:`pinsage_model.graph.sampler.hard_negatives` (same signature).
      local_replicas: the replicas whose shards :meth:`make` builds (default: all); a worker of
        multi-worker training builds only its own, from the same global batch.
    """

    def __init__(
        self,
        data: TrainData,
        num_layers: int,
        train_cfg: TrainConfig,
        sampler_cfg: SamplerConfig,
        num_replicas: int = 1,
        hard_negative_fn: HardNegativeFn | None = None,
        local_replicas: range | None = None,
    ):
        if len(data.train_q) == 0:
            raise ValueError("no training pairs (split 'train' with both items in the training graph)")
        if train_cfg.batch_size % num_replicas:
            raise ValueError(f"train.batch_size {train_cfg.batch_size} must be divisible by num_devices {num_replicas}")
        self.data = data
        self.features = sparse_if_sparse(data.features)  # the producer's copy: sparse rows when sparse
        self.train_q, self.train_pos = data.train_q, data.train_pos  # (P,) each
        self.num_layers = num_layers
        self.cfg = train_cfg
        self.sampler_cfg = sampler_cfg
        self.num_replicas = num_replicas
        self.local_replicas = range(num_replicas) if local_replicas is None else local_replicas
        if not (
            0 <= self.local_replicas.start and self.local_replicas.stop <= num_replicas and len(self.local_replicas)
        ):
            raise ValueError(f"local replicas {self.local_replicas} are not a part of the {num_replicas} replicas")
        if hard_negative_fn is None:
            from pinsage_model.graph.sampler import hard_negatives

            hard_negative_fn = hard_negatives
        self.hard_negative_fn: HardNegativeFn = hard_negative_fn
        n_pairs = len(self.train_q)
        self.batch_size = min(train_cfg.batch_size, n_pairs - n_pairs % num_replicas)
        if self.batch_size < num_replicas:
            raise ValueError(f"{n_pairs} training pairs cannot fill {num_replicas} replicas")
        degree = data.graph.item_degree()
        pool = np.flatnonzero(degree > 0).astype(np.int32)
        self.negative_pool = pool if len(pool) else np.arange(data.num_items, dtype=np.int32)
        self.pos_indptr, self.pos_indices = _positives_csr(data.train_q, data.train_pos, data.num_items)
        full = n_pairs // self.batch_size
        self.steps_per_epoch = train_cfg.steps_per_epoch or max(1, full)
        self.logq = candidate_log_q(
            self.train_pos,
            self.negative_pool,
            data.num_items,
            train_cfg.num_negatives,
            self.batch_size // num_replicas if in_batch_negatives(train_cfg) else 0,
        )
        self.users, self.user_logq = self._user_term(data, train_cfg)

    def _user_term(self, data: TrainData, train_cfg: TrainConfig) -> tuple[UserRows | None, np.ndarray | None]:
        """The training users the user term draws from and its candidates' log Q (the same shared
        negatives, in-batch the other users' targets); (None, None) when the term is off."""
        if not train_cfg.user_loss_weight:
            return None, None
        rows = data.users
        if rows is None or rows.num_users == 0:
            raise ValueError(
                "train.user_loss_weight > 0 (the default is 1) needs training users with two or more items "
                "(TrainData.users); set train.user_loss_weight to 0 to train the item->item loss alone"
            )
        in_batch = self.batch_size // self.num_replicas if in_batch_negatives(train_cfg) else 0
        logq = candidate_log_q(
            rows.items, self.negative_pool, data.num_items, train_cfg.num_negatives, in_batch, rows.target_weights()
        )
        return rows, logq

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Pair order of an epoch; enough permutations are chained to cover ``steps_per_epoch``."""
        need = self.steps_per_epoch * self.batch_size
        rng = np.random.default_rng([self.cfg.seed, epoch, 0])
        n_pairs = len(self.train_q)
        parts = [rng.permutation(n_pairs) for _ in range(-(-need // n_pairs))]
        return np.concatenate(parts)[:need]

    def make(self, epoch: int, step: int, order: np.ndarray) -> dict:
        """The shards of one step: ``{"shards": [dict per local replica], "seconds": producer time}``.

        The global batch, its shared and hard negatives depend only on ``(seed, epoch, step)``;
        every worker draws all of them (hard-negative rows are seeded by their position in the
        global batch) and builds the sub-graphs of its own replicas only."""
        t0 = time.perf_counter()
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch, step + 1])
        sel = order[step * self.batch_size : (step + 1) * self.batch_size]
        q = self.train_q[sel].astype(np.int32)  # (B,)
        p = self.train_pos[sel].astype(np.int32)  # (B,)
        # Shared negatives (paper: 500 per minibatch), uniform over the training graph's items.
        few = len(self.negative_pool) < cfg.num_negatives
        negatives = rng.choice(self.negative_pool, size=cfg.num_negatives, replace=few).astype(np.int32)  # (n,)
        num_hard = hard_negatives_for_epoch(epoch, cfg.max_hard_negatives, cfg.use_hard_negatives)
        if num_hard:
            ex_ptr, ex_idx = csr_subset(self.pos_indptr, self.pos_indices, q)
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
        users = None
        if self.users is not None:  # its own stream: the item batches are those of the item loss alone
            user_rng = np.random.default_rng([cfg.seed, epoch, step + 1, 1])
            ex = cfg.experimental
            users = sample_users(user_rng, self.users, self.batch_size, ex.user_neighbours, ex.user_recency_half_life)
        shards = []
        for i in self.local_replicas:
            part = slice(i * b, (i + 1) * b)
            user_part = (
                None
                if users is None
                else UserBatch(users.users[part], users.targets[part], users.index[part], users.weight[part])
            )
            shards.append(self._shard(q[part], p[part], negatives, hard[part], hard_mask[part], user_part))
        return {"shards": shards, "seconds": time.perf_counter() - t0, "num_hard": num_hard}

    def _shard(self, q, p, negatives, hard, hard_mask, users: UserBatch | None = None) -> dict[str, np.ndarray]:
        b, h = hard.shape
        nodes = np.concatenate([q, p, negatives, hard.ravel()])
        context = None
        if users is not None:  # the users' targets are embedded; their inputs feed the last layer only
            nodes = np.concatenate([nodes, users.targets])
            context = users.index[users.index >= 0]
        mb = build_minibatch(nodes, self.data.neighbourhoods, self.features, self.num_layers, context)
        pos = mb.positions
        n = len(negatives)
        out = {
            **mb.model_inputs(),
            "q_pos": pos[:b],  # (b,)
            "p_pos": pos[b : 2 * b],  # (b,)
            "n_pos": pos[2 * b : 2 * b + n],  # (n,)
            "h_pos": pos[2 * b + n : 2 * b + n + b * h].reshape(b, h),  # (b, h)
            "h_mask": hard_mask,  # (b, h)
            "p_logq": self.logq[p],  # (b,)
            "n_logq": self.logq[negatives],  # (n,)
        }
        if users is not None:
            out.update(self._user_inputs(users, pos[2 * b + n + b * h :], mb.context_positions, negatives))
        return out

    def _user_inputs(self, users: UserBatch, target_pos, context_pos, negatives) -> dict[str, np.ndarray]:
        """The user term's part of a shard: the users' neighbourhoods as rows of S^(K-1), their
        targets' rows of S^(K), log Q and which candidates are the users' own items."""
        rows, logq = self.users, self.user_logq
        if rows is None or logq is None:
            raise RuntimeError("user inputs asked of a producer without the user term")
        index = np.full(users.index.shape, -1, np.int32)
        index[users.index >= 0] = context_pos
        return {
            "user_index": index,  # (b, T_u) rows of S^(K-1)
            "user_weight": users.weight,  # (b, T_u)
            "u_pos": target_pos,  # (b,)
            "u_logq": logq[users.targets],  # (b,)
            "u_n_logq": logq[negatives],  # (n,)
            "u_drop_neg": seen(rows, users.users, negatives),  # (b, n)
            "u_drop_batch": seen(rows, users.users, users.targets),  # (b, b)
        }


def in_batch_negatives(train_cfg: TrainConfig) -> bool:
    """Whether the loss takes the other examples' positives as negatives (xent's option)."""
    return train_cfg.loss.kind == "xent" and train_cfg.loss.in_batch_negatives
