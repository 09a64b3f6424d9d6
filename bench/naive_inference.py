"""Naive per-node PinSage inference (paper 3.4's baseline) and random weights: the inference
benchmark's baseline and the tests' independent reference for
:func:`pinsage_model.inference.layerwise.embed_all` (as ``numpy_walks.py`` is for the sampler).

:func:`embed_nodes_naive` is Algorithm 2 applied to one target node at a time: it recomputes the
overlapping K-hop neighbourhoods of different targets, which is what layer-wise inference avoids.
"""

from __future__ import annotations

import numpy as np

from pinsage_model.graph.csr import Neighbourhoods
from pinsage_model.inference.layerwise import check_inputs, combine, head, input_rows, project


def embed_nodes_naive(
    weights: dict[str, np.ndarray],
    config: dict,
    features: np.ndarray,
    neighbourhoods: Neighbourhoods,
    nodes: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Algorithm 2 run separately for each target node (the naive inference of paper 3.4).

    For each target u: S^(K) = {u}, S^(k-1) = S^(k) ∪ N(S^(k)); then for k = 1..K every node of
    S^(k) is convolved, projecting each of its neighbours afresh (Algorithm 1 line 1). Nothing is
    shared between targets, so overlapping neighbourhoods are recomputed: that is the baseline.

    Args:
      nodes: (B,) target item ids (a sample; the loop over targets is the point of the baseline).

    Returns:
      ((B, d) float32 embeddings, number of neighbour projections computed).
    """
    check_inputs(weights, config, features, neighbourhoods)
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    num_layers, pooling = config["num_layers"], config["pooling"]
    out = np.empty((len(nodes), config["output_dim"]), dtype=np.float32)
    projections = 0
    for i, u in enumerate(np.asarray(nodes, dtype=np.int64)):
        sets = [np.array([u])]  # sets[j] = S^(K - j)
        for _ in range(num_layers):
            nb = neighbourhoods.indices[sets[-1]]
            sets.append(np.union1d(sets[-1], nb[nb >= 0]))
        s_prev = sets[-1]  # S^(0), sorted
        h_prev = input_rows(features, weights, s_prev)
        for layer in range(1, num_layers + 1):
            s_cur = sets[num_layers - layer]
            idx = neighbourhoods.indices[s_cur]  # (s, T)
            mask = idx >= 0
            local = np.searchsorted(s_prev, np.where(mask, idx, s_prev[0]))
            # every (node, neighbour) pair gets its own projection: no reuse across nodes
            p = project(h_prev[local.reshape(-1)], weights, layer).reshape(*idx.shape, -1)  # (s, T, m)
            projections += int(mask.sum())
            p = np.where(mask[..., None], p, 0.0).astype(np.float32)
            if pooling == "importance":
                alpha = neighbourhoods.weights[s_cur] * mask
                alpha = alpha / np.maximum(alpha.sum(axis=1, keepdims=True), 1e-12)
                n = np.einsum("st,stm->sm", alpha, p)
            elif pooling == "mean":
                n = p.sum(axis=1) / np.maximum(mask.sum(axis=1), 1)[:, None]
            else:
                n = p.max(axis=1)  # padding is 0 and projections are >= 0
            h_self = h_prev[np.searchsorted(s_prev, s_cur)]
            h_prev = combine(h_self, n.astype(np.float32), weights, layer)
            s_prev = s_cur
        out[i] = head(h_prev, weights)[0]
    return out, projections


def random_weights(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Glorot-uniform weights and small biases in the contract's layout."""
    rng = np.random.default_rng(seed)
    m, d = config["hidden_dim"], config["output_dim"]

    def glorot(shape: tuple[int, int]) -> np.ndarray:
        lim = np.sqrt(6.0 / sum(shape))
        return rng.uniform(-lim, lim, size=shape).astype(np.float32)

    def bias(n: int) -> np.ndarray:
        return rng.uniform(-0.1, 0.1, size=n).astype(np.float32)

    out: dict[str, np.ndarray] = {}
    for k in range(1, config["num_layers"] + 1):
        fk = config["input_dim"] if k == 1 else d
        out.update(
            {
                f"conv{k}/Q": glorot((fk, m)),
                f"conv{k}/q": bias(m),
                f"conv{k}/W": glorot((fk + m, d)),
                f"conv{k}/w": bias(d),
            }
        )
    out.update({"head/G1": glorot((d, d)), "head/g": bias(d), "head/G2": glorot((d, d))})
    return out
