"""Atomic writers: a streamed ``.npy`` has the bytes of ``np.save``, and a failed write leaves nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pinsage_model.io import atomic_npy_rows


def test_streamed_npy_equals_np_save(tmp_path):
    a = np.arange(15, dtype=np.float32).reshape(5, 3)
    with atomic_npy_rows(tmp_path / "a.npy", a.shape, np.float32) as write:
        write(a[:2])
        write(a[2:])
    expected = io.BytesIO()
    np.save(expected, a)
    assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)


def test_streamed_npy_rejects_wrong_blocks_and_leaves_no_file(tmp_path):
    out = tmp_path / "a.npy"
    with pytest.raises(ValueError, match="2 rows written, the header says 3"):
        with atomic_npy_rows(out, (3, 2), np.float32) as write:
            write(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        with atomic_npy_rows(out, (3, 2), np.float32) as write:
            write(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        with atomic_npy_rows(out, (3, 2), np.float32) as write:
            write(np.zeros((3, 2), np.float64))
    assert list(tmp_path.iterdir()) == []
