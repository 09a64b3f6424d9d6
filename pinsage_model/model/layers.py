"""PinSage network (paper 3.2): CONVOLVE (Algorithm 1) stacked K times, and the dense head.

The model never sees the whole graph. It reads the compact tensors that
:func:`pinsage_model.model.minibatch.build_minibatch` produces (Algorithm 2 re-indexing):

* ``features`` (n_0, F): input features of every node of S^(0), in local order; or, for sparse
  features, ``feature_indices`` (nnz, 2) and ``feature_values`` (nnz,): their non-zero entries;
* ``node_ids`` (n_0,): their global ids (read for learned id embeddings and n_0);
* ``index_k`` (n_k, T) int32 for k = 1..K: neighbour positions of each node of S^(k) inside
  S^(k-1), -1 for padding;
* ``weight_k`` (n_k, T) float32: the importance weights α (L1-normalised visit counts).

Each S^(k) is a prefix of S^(k-1), so a node's own previous-layer representation is row ``i`` of
the previous layer's output. The model returns L2-normalised embeddings of the n_K nodes of S^(K).

Conventions match ``weights.npz`` (contracts.py): row vectors, ``x @ Q``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

POOLINGS = ("importance", "mean", "max")
# z / max(||z||, sqrt(NORM_EPS)): the same rule as tf.math.l2_normalize; inference uses it too.
NORM_EPS = 1e-12


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """Row-wise ``x / sqrt(max(sum(x^2), NORM_EPS))``."""
    return x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True), NORM_EPS))


def _own_rows(shape: Any, dtype: Any = None) -> tf.Tensor:
    """Default identity table: item i reads table row i in every one of its H slots."""
    return tf.repeat(tf.range(shape[0], dtype=tf.int32)[:, None], shape[1], axis=1)


def _prefix(x: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """The first ``n`` rows of ``x``, as a split (its gradient is a concatenation with zeros)."""
    return tf.split(x, tf.stack([n, tf.shape(x)[0] - n]), axis=0)[0]


def sparse_product(indices: tf.Tensor, values: tf.Tensor, dense_shape: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``A @ b`` for a constant sparse A given as COO entries in row-major order, as one CSR product.

    The gradient flows to ``b`` only (``A^T @ dy``, the transpose built once per call); A holds
    constants (pooling weights, input features).

    Args:
      indices: (nnz, 2) int64 (row, column) of A's entries, row-major.
      values: (nnz,) float32 entries.
      dense_shape: (2,) int64, A's shape (r, c).
      b: (c, m).

    Returns:
      (r, m).
    """
    matrix = tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=indices, values=values, dense_shape=dense_shape)

    @tf.custom_gradient
    def product(x: tf.Tensor) -> Any:
        def grad(dy: tf.Tensor) -> tf.Tensor:
            transposed = tf.raw_ops.SparseMatrixTranspose(input=matrix, type=tf.float32)  # (c, r)
            return tf.cast(tf.raw_ops.SparseMatrixMatMul(a=transposed, b=tf.cast(dy, tf.float32)), x.dtype)

        return tf.cast(tf.raw_ops.SparseMatrixMatMul(a=matrix, b=tf.cast(x, tf.float32)), x.dtype), grad

    return product(b)


def weighted_pool(projected: tf.Tensor, index: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """``pooled[u] = sum_t alpha[u, t] * projected[index[u, t]]``: gather and pool in one sparse product.

    The (n_k, T, m) gathered tensor is never formed: the pooling weights become a CSR matrix
    A (n_k, n_{k-1}) with T entries per row and ``pooled = A @ projected``
    (:func:`sparse_product`). At the paper's settings (T = 50, m = 256, ~60k nodes in S^(1)) the
    gather's forward and backward moved ~6 GB per step and the backward's scatter was
    single-threaded; this is 3-4x faster on CPU (docs/benchmarks.md).

    Args:
      projected: (n_{k-1}, m) neighbour representations ReLU(h Q + q).
      index: (n_k, T) int32 rows of ``projected``, -1 = padding.
      alpha: (n_k, T) pooling weights (0 at padding).

    Returns:
      (n_k, m).
    """
    index = tf.convert_to_tensor(index, dtype=tf.int32)
    alpha = tf.cast(alpha, tf.float32)
    n_k, width = tf.shape(index, out_type=tf.int64)[0], tf.shape(index, out_type=tf.int64)[1]
    rows = tf.repeat(tf.range(n_k), width)  # (n_k * T,) row-major, the order CSR needs
    cols = tf.cast(tf.reshape(tf.maximum(index, 0), [-1]), tf.int64)  # padding reads row 0 with weight 0
    shape = tf.stack([n_k, tf.shape(projected, out_type=tf.int64)[0]])
    return sparse_product(tf.stack([rows, cols], axis=1), tf.reshape(alpha, [-1]), shape, projected)


@keras.saving.register_keras_serializable(package="pinsage")
class PinSageConv(keras.layers.Layer):
    """CONVOLVE (Algorithm 1) over a compact neighbourhood.

    ``n_u = γ({ReLU(h_v Q + q) | v ∈ N(u)}, α)``; ``z_u = ReLU(concat(h_u, n_u) W + w)``;
    output ``z_u / ‖z_u‖₂``. γ is ``importance`` (α-weighted mean), ``mean`` or ``max`` over the
    unpadded neighbours; a node without neighbours gets ``n_u = 0``.

    The neighbour transform ReLU(h Q + q) is computed once per node of the previous layer and then
    gathered, not once per (node, neighbour) edge.

    Args:
      hidden_dim: m, the pooling space width (columns of Q).
      output_dim: d, the output width (columns of W).
      pooling: ``importance``, ``mean`` or ``max``.
    """

    def __init__(self, *, hidden_dim: int, output_dim: int, pooling: str = "importance", **kwargs: Any):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.pooling = pooling

    def build(self, input_shape: Any) -> None:
        """``input_shape``: shape of the previous-layer representations, (n_{k-1}, F_k)."""
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        in_dim = int(input_shape[-1])
        self.input_dim = in_dim
        self.Q = self.add_weight(name="Q", shape=(in_dim, self.hidden_dim), initializer="glorot_uniform")
        self.q = self.add_weight(name="q", shape=(self.hidden_dim,), initializer="zeros")
        self.W = self.add_weight(
            name="W", shape=(in_dim + self.hidden_dim, self.output_dim), initializer="glorot_uniform"
        )
        self.w = self.add_weight(name="w", shape=(self.output_dim,), initializer="zeros")
        self.built = True

    def call(
        self, h_prev: tf.Tensor, index: tf.Tensor, weight: tf.Tensor, h_learned: tf.Tensor | None = None
    ) -> tf.Tensor:
        """One convolution for the n_k nodes of S^(k): :meth:`convolve` without outside nodes."""
        return self.convolve(h_prev, index, weight, h_learned)[0]

    def convolve(
        self,
        h_prev: tf.Tensor,
        index: tf.Tensor,
        weight: tf.Tensor,
        h_learned: tf.Tensor | None = None,
        outside: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """One convolution for the n_k nodes of S^(k), and optionally for nodes outside S^(k-1).

        Args:
          h_prev: (n_{k-1}, F) representations of S^(k-1); its first n_k rows are S^(k). A
            ``tf.SparseTensor`` for sparse input features (first layer only): their products
            with Q and W are then one sparse product.
          index: (n_k, T) int32 neighbour rows into ``h_prev``, -1 = padding.
          weight: (n_k, T) float32 importance weights α (0 at padding).
          h_learned: optional (n_{k-1}, e) columns that follow ``h_prev``'s (learned id
            embeddings): the layer reads ``concat([h_prev, h_learned])``. Kept apart so the
            backward pass forms input gradients for these e columns only, not for the F
            constant feature columns beside them.
          outside: optional ``(index_o, weight_o, own)``: b nodes that are not in S^(k-1) (users,
            whose neighbours are items), ``index_o`` (b, T_o) int32 rows of ``h_prev`` (-1 =
            padding), ``weight_o`` (b, T_o) their importance, ``own`` (F_k,) the representation
            they all take for ``h_self`` (they have no features). They pool from the same
            projections as S^(k).

        Returns:
          (n_k, d) L2-normalised representations, and (b, d) those of the outside nodes (None
          without them).
        """
        if not isinstance(h_prev, tf.SparseTensor):
            h_prev = tf.convert_to_tensor(h_prev, dtype=self.compute_dtype)
        index = tf.convert_to_tensor(index, dtype=tf.int32)
        weight = tf.cast(weight, self.compute_dtype)
        n_k = tf.shape(index)[0]
        f = self.input_dim - (0 if h_learned is None else int(h_learned.shape[-1]))  # static, whatever the batch's
        mask = tf.cast(index >= 0, self.compute_dtype)  # (n_k, T)
        width = self.W.shape[0] - self.hidden_dim
        pre, z = self._own_products(h_prev, n_k, f)  # (n_{k-1}, m), (n_k, d)
        if h_learned is not None:
            pre += tf.matmul(h_learned, self.Q[f:])
        projected = tf.nn.relu(pre)  # (n_{k-1}, m)
        pooled = self._pool(projected, index, weight, mask)  # (n_k, m)
        # concat([h_self, pooled]) @ W as a sum of products over W's row blocks (no concatenation).
        z += tf.matmul(pooled, self.W[width:]) + self.w
        if h_learned is not None:
            z += tf.matmul(_prefix(h_learned, n_k), self.W[f:width])
        z_out = None
        if outside is not None:
            index_o, weight_o, own = outside
            index_o = tf.convert_to_tensor(index_o, dtype=tf.int32)
            pooled_o = self._pool(projected, index_o, tf.cast(weight_o, self.compute_dtype), None)  # (b, m)
            own_z = tf.matmul(tf.cast(own, self.compute_dtype)[None, :], self.W[:width])  # (1, d): h_self = own
            z_out = l2_normalize(tf.nn.relu(own_z + tf.matmul(pooled_o, self.W[width:]) + self.w))  # (b, d)
        return l2_normalize(tf.nn.relu(z)), z_out  # (n_k, d)

    def _pool(self, projected: tf.Tensor, index: tf.Tensor, weight: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
        """γ over each row's neighbours: (n, T) ``index`` rows of (n_{k-1}, m) ``projected`` -> (n, m)."""
        if mask is None:
            mask = tf.cast(index >= 0, self.compute_dtype)  # (n, T)
        if self.pooling == "max":
            neigh = tf.gather(projected, tf.maximum(index, 0))  # (n, T, m)
            # ReLU outputs are >= 0, so zeroing padded rows leaves the max over real neighbours
            # unchanged and gives 0 when there are none.
            return tf.reduce_max(neigh * mask[:, :, None], axis=1)
        if self.pooling == "importance":
            alpha = weight * mask
        else:
            alpha = mask
        alpha = alpha / tf.maximum(tf.reduce_sum(alpha, axis=1, keepdims=True), 1e-12)  # (n, T)
        return weighted_pool(projected, index, alpha)  # (n, m)

    def _own_products(self, h_prev: Any, n_k: tf.Tensor, f: int) -> tuple[tf.Tensor, tf.Tensor]:
        """``h Q[:f] + q`` for every node of S^(k-1) and ``h_self W[:f]`` for the n_k of S^(k)."""
        if isinstance(h_prev, tf.SparseTensor):
            # [h Q | h W] in one sparse product over all of S^(k-1); the W half is read for S^(k).
            both = sparse_product(
                h_prev.indices, h_prev.values, h_prev.dense_shape, tf.concat([self.Q[:f], self.W[:f]], axis=1)
            )  # (n_{k-1}, m + d)
            # split, not sliced: a column slice's gradient is a strided scatter into zeros (7 ms of
            # a 24 ms step on ml-latest-small), a split's is a concatenation
            pre, z = tf.split(both, [self.hidden_dim, self.output_dim], axis=1)
            return pre + self.q, _prefix(z, n_k)
        # [h, 1] @ [Q; q]: the bias rides in the product, so the backward pass gets dQ and dq from
        # one product instead of a second full pass over the (n_{k-1}, m) gradient for dq.
        ones = tf.ones([tf.shape(h_prev)[0], 1], dtype=h_prev.dtype)
        pre = tf.matmul(tf.concat([h_prev, ones], axis=1), tf.concat([self.Q[:f], self.q[None, :]], axis=0))
        # S^(k) is a prefix of S^(k-1), so h_self is the first n_k rows.
        return pre, tf.matmul(_prefix(h_prev, n_k), self.W[:f])

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "output_dim": self.output_dim,
            "pooling": self.pooling,
        }


@keras.saving.register_keras_serializable(package="pinsage")
class PinSageModel(keras.Model):
    """K stacked :class:`PinSageConv` layers and the head ``G2·ReLU(G1 h + g)`` (Algorithm 2).

    Args:
      input_dim: F, width of the input features.
      num_layers: K.
      hidden_dim: m.
      output_dim: d.
      pooling: γ of every layer.
      num_items: number of items N; needed only with learned id embeddings.
      id_embedding_dim: width of a learned per-item embedding concatenated to the features
        (transductive identity, or the fallback when items have no features); 0 turns it off.
      id_table_rows: rows of the id-embedding table (default N: one per item; fewer when hashed).
      id_num_hashes: H, table rows summed per item (:mod:`pinsage_model.model.identity`).
      query_shift: learn a (d,) vector ``w`` added to query embeddings only (``shift_queries``);
        the model's output, the candidate side, is unchanged.
      user_half_life: None, or users as query nodes (:meth:`embed_with_users`) whose importance
        is ``exp(-age / user_half_life)`` (0 = uniform); adds their learned own representation
        ``user_self`` (F_K,), read by the last convolution in place of features.

    With id embeddings, :meth:`set_id_rows` loads the (N, H) row table (default: row i for item i);
    it is a non-trainable weight, saved with the model.
    """

    def __init__(
        self,
        *,
        input_dim: int,
        num_layers: int = 2,
        hidden_dim: int = 128,
        output_dim: int = 64,
        pooling: str = "importance",
        num_items: int = 0,
        id_embedding_dim: int = 0,
        id_table_rows: int = 0,
        id_num_hashes: int = 1,
        query_shift: bool = False,
        user_half_life: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if id_embedding_dim and num_items < 1:
            raise ValueError("id_embedding_dim > 0 needs num_items (the number of items)")
        self.input_dim = int(input_dim)
        self.num_layers = int(num_layers)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.pooling = pooling
        self.num_items = int(num_items)
        self.id_embedding_dim = int(id_embedding_dim)
        self.id_table_rows = int(id_table_rows or num_items) if self.id_embedding_dim else 0
        self.id_num_hashes = int(id_num_hashes) if self.id_embedding_dim else 1
        self.use_query_shift = bool(query_shift)
        self.user_half_life = None if user_half_life is None else float(user_half_life)
        self.id_embedding = (
            keras.layers.Embedding(self.id_table_rows, self.id_embedding_dim, name="id_embedding")
            if self.id_embedding_dim
            else None
        )
        self.convs = [
            PinSageConv(hidden_dim=hidden_dim, output_dim=output_dim, pooling=pooling, name=f"conv{k}")
            for k in range(1, self.num_layers + 1)
        ]
        self.G1 = keras.layers.Dense(output_dim, activation="relu", name="head_G1")
        self.G2 = keras.layers.Dense(output_dim, use_bias=False, name="head_G2")
        self._build_weights()

    def _build_weights(self) -> None:
        """Create every weight now (their shapes follow from the dimensions alone), so the model
        can be saved, reloaded and checkpointed before it has seen data."""
        if self.id_embedding is not None:
            self.id_embedding.build((None,))
            self.id_rows = self.add_weight(
                name="id_rows",
                shape=(self.num_items, self.id_num_hashes),
                dtype="int32",
                trainable=False,
                initializer=_own_rows,
            )
        width = self.input_dim + self.id_embedding_dim
        for conv in self.convs:
            conv.build((None, width))
            width = self.output_dim
        self.G1.build((None, self.output_dim))
        self.G2.build((None, self.output_dim))
        # Zero at start: a user's convolution then reads its pooled items alone.
        last_width = self.input_dim + self.id_embedding_dim if self.num_layers == 1 else self.output_dim
        self.user_self = (
            self.add_weight(name="user_self", shape=(last_width,), initializer="zeros")
            if self.user_half_life is not None
            else None
        )
        # Zero at start: training begins from the paper's plain cosine scores.
        self.query_shift = (
            self.add_weight(name="query_shift", shape=(self.output_dim,), initializer="zeros")
            if self.use_query_shift
            else None
        )
        self.built = True

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Embeddings (n_K, d), L2-normalised, of the nodes of S^(K) in local order.

        The features come dense (``features`` (n_0, F)) or as their non-zero entries
        (``feature_indices`` (nnz, 2) int64 row-major, ``feature_values`` (nnz,)), the same model."""
        return self._forward(inputs, False)[0]

    def embed_with_users(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(n_K, d) item embeddings as :meth:`call`, and (b, d) embeddings of b users.

        A user is a node outside the item graph whose neighbours are items of S^(K-1):
        ``user_index`` (b, T_u) int32 rows of S^(K-1) (-1 = padding) and ``user_weight`` (b, T_u)
        importance. Its vector is the last layer's CONVOLVE over those items' layer-(K-1)
        representations, ``user_self`` as its own, then the head: the item model's space."""
        if self.user_self is None:
            raise ValueError("the model has no user nodes (user_half_life=None)")
        z, u = self._forward(inputs, True)
        return z, u

    def _forward(self, inputs: dict[str, tf.Tensor], users: bool) -> tuple[tf.Tensor, Any]:
        """Item embeddings of S^(K) and, with ``users``, the users' (else None)."""
        h: Any
        if "feature_values" in inputs:
            n_0 = tf.shape(inputs["node_ids"], out_type=tf.int64)[0]
            shape = tf.stack([n_0, tf.constant(self.input_dim, tf.int64)])
            # the static (nnz, 2) shape, which the CSR conversion's shape function needs
            indices = tf.ensure_shape(tf.cast(inputs["feature_indices"], tf.int64), [None, 2])
            h = tf.SparseTensor(indices, tf.cast(inputs["feature_values"], tf.float32), shape)
        else:
            h = tf.convert_to_tensor(inputs["features"], dtype=self.compute_dtype)  # (n_0, F)
        ids = None
        if self.id_embedding is not None:
            rows = tf.gather(self.id_rows, inputs["node_ids"])  # (n_0, H), -1 = no identity
            ids = self.id_embedding(tf.maximum(rows, 0))  # (n_0, H, e)
            ids = tf.reduce_sum(ids * tf.cast(rows >= 0, ids.dtype)[:, :, None], axis=1)  # (n_0, e)
        u = None
        for k, conv in enumerate(self.convs, 1):
            learned = ids if k == 1 else None  # layer 1 reads [h, ids]
            if users and k == self.num_layers:
                outside = (inputs["user_index"], inputs["user_weight"], self.user_self)
                h, u = conv.convolve(h, inputs[f"index_{k}"], inputs[f"weight_{k}"], learned, outside)
                u = l2_normalize(self.G2(self.G1(u)))  # (b, d)
            elif learned is not None:
                h = conv(h, inputs[f"index_{k}"], inputs[f"weight_{k}"], learned)  # (n_k, d)
            else:
                h = conv(h, inputs[f"index_{k}"], inputs[f"weight_{k}"])  # (n_k, d)
        return l2_normalize(self.G2(self.G1(h))), u  # (n_K, d)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "output_dim": self.output_dim,
            "pooling": self.pooling,
            "num_items": self.num_items,
            "id_embedding_dim": self.id_embedding_dim,
            "id_table_rows": self.id_table_rows,
            "id_num_hashes": self.id_num_hashes,
            "query_shift": self.use_query_shift,
            # only when on, so a model without user nodes saves as it always has
            **({} if self.user_half_life is None else {"user_half_life": self.user_half_life}),
        }

    def shift_queries(self, z: tf.Tensor) -> tf.Tensor:
        """(b, d) query vectors of (b, d) embeddings: ``z + w`` with the learned shift, else ``z``."""
        return z if self.query_shift is None else z + self.query_shift[None, :]

    def set_id_rows(self, rows: Any) -> None:
        """Load the (N, H) int32 identity table (:func:`pinsage_model.model.identity.identity_rows`)."""
        self.id_rows.assign(tf.convert_to_tensor(rows, dtype=tf.int32))

    def id_vectors(self) -> Any:
        """(N, e) numpy id vector of every item (the sum of its rows; zero without identity)."""
        from pinsage_model.model.identity import item_vectors

        if self.id_embedding is None:
            raise ValueError("the model has no id embedding (id_embedding_dim=0)")
        return item_vectors(self.id_embedding.embeddings.numpy(), self.id_rows.numpy())

    @classmethod
    def from_config(cls, config: dict) -> "PinSageModel":
        return cls(**config)

    def get_build_config(self) -> dict:
        # Built in __init__: nothing to replay on load.
        return {}

    def build_from_config(self, config: dict) -> None:
        return None


def build_model(
    model_cfg: Any, input_dim: int, num_items: int = 0, id_embedding_dim: int = 0, user_half_life: float | None = None
) -> PinSageModel:
    """A :class:`PinSageModel` from a ``ModelConfig`` and the data's dimensions.

    ``user_half_life`` (not None) gives the model user nodes (training's user term).

    ``id_embedding_dim`` comes from the features stage (``feature_names.json``), which decides
    whether items lacking content need the learned id embedding. With
    ``model_cfg.id_hash_buckets`` > 0 the table has that many rows and ``id_num_hashes`` rows per
    item; load the row table with :meth:`PinSageModel.set_id_rows`.
    """
    hashed = bool(id_embedding_dim and model_cfg.id_hash_buckets)
    return PinSageModel(
        input_dim=input_dim,
        num_layers=model_cfg.num_layers,
        hidden_dim=model_cfg.hidden_dim,
        output_dim=model_cfg.output_dim,
        pooling=model_cfg.pooling,
        num_items=num_items if id_embedding_dim else 0,
        id_embedding_dim=id_embedding_dim,
        id_table_rows=model_cfg.id_hash_buckets if hashed else 0,
        id_num_hashes=model_cfg.id_num_hashes if hashed else 1,
        query_shift=model_cfg.query_shift,
        user_half_life=user_half_life,
    )
