"""Identity rows of the learned id embedding: own rows, hashed rows, no identity for unknown items."""

from __future__ import annotations

import numpy as np

from pinsage_model.model.identity import identity_rows, item_vectors, table_size


def test_own_rows_and_unknown_items():
    rows = identity_rows(np.array([True, False, True]))
    assert rows.tolist() == [[0], [-1], [2]]
    assert table_size(3, 0) == 3


def test_hashed_rows_are_seeded_in_range_and_rarely_share_every_row():
    known = np.ones(5000, dtype=bool)
    rows = identity_rows(known, num_buckets=512, num_hashes=2, seed=3)
    assert rows.shape == (5000, 2) and rows.min() >= 0 and rows.max() < 512
    np.testing.assert_array_equal(rows, identity_rows(known, num_buckets=512, num_hashes=2, seed=3))
    assert not np.array_equal(rows, identity_rows(known, num_buckets=512, num_hashes=2, seed=4))
    # two independent hashes: items sharing both rows are about N^2 / (2 * B^2) pairs, not N^2 / 2B
    pairs = len(rows) - len(np.unique(rows, axis=0))
    assert pairs < 100
    # the hash functions differ from each other
    assert np.mean(rows[:, 0] == rows[:, 1]) < 0.01


def test_item_vectors_sum_rows_and_zero_without_identity():
    table = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], np.float32)
    rows = np.array([[0, 1], [2, -1], [-1, -1]], np.int32)
    np.testing.assert_allclose(item_vectors(table, rows), [[1.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
