"""Rows of the learned id-embedding table for every item (transductive identity).

An item's id vector is the sum of the table rows listed for it in an (N, H) int32 table built
here once, in numpy, and handed to the Keras model as a constant; training and inference read the
same table, so there is one hash implementation. -1 marks "no row": items outside the training
graph have only -1 (their id vector is zero, the feature-only path for unseen items).

* ``num_buckets == 0``: one row per known item (H = 1, row = item index).
* ``num_buckets > 0``: H seeded hash functions of the item index into ``num_buckets`` rows (the
  hashing trick with several hash functions, as in Bloom embeddings: two items rarely share all
  H rows, so collisions blur identity less than a single hash would).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (the sampler's generator, vectorised)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def identity_rows(known: np.ndarray, num_buckets: int = 0, num_hashes: int = 2, seed: int = 0) -> np.ndarray:
    """(N, H) int32 table rows of each item's id vector, -1 where the item has none.

    Args:
      known: (N,) bool, items that get an identity (those in the training graph).
      num_buckets: table rows; 0 = one row per item.
      num_hashes: H when hashing.
      seed: hash seed.

    Returns:
      (N, 1) item indices when ``num_buckets`` is 0, else (N, H) bucket indices.
    """
    known = np.asarray(known, dtype=bool)
    n = len(known)
    if num_buckets < 0 or num_hashes < 1:
        raise ValueError(f"num_buckets must be >= 0 and num_hashes >= 1, got {num_buckets} and {num_hashes}")
    if num_buckets == 0:
        rows = np.arange(n, dtype=np.int64)[:, None]
    else:
        ids = np.arange(n, dtype=np.uint64)[:, None]
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
            salt = _mix(np.uint64(seed) * _GOLDEN + np.arange(1, num_hashes + 1, dtype=np.uint64))[None, :]
            rows = (_mix(ids * _GOLDEN ^ salt) % np.uint64(num_buckets)).astype(np.int64)
    return np.where(known[:, None], rows, -1).astype(np.int32)


def table_size(num_items: int, num_buckets: int) -> int:
    """Rows of the id-embedding table."""
    return num_buckets or num_items


def item_vectors(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(N, e) id vector of every item: the sum of its table rows (zero for items without any)."""
    valid = rows >= 0
    return np.einsum("nh,nhe->ne", valid.astype(table.dtype), table[np.where(valid, rows, 0)])
