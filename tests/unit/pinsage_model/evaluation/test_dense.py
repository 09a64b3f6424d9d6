"""The blocked in-place SPD inverse and float32 shrink behind EASE, against numpy's inverse."""

import numpy as np
import pytest
import scipy.sparse as sp

from pinsage_model.evaluation.dense import dense_gram, spd_inverse_inplace, to_float32_inplace


def test_two_by_two_hand_computed():
    a = np.array([[2.0, 1.0], [1.0, 2.0]])  # inverse: [[2, -1], [-1, 2]] / 3
    spd_inverse_inplace(a, block=1)
    np.testing.assert_allclose(a, np.array([[2.0, -1.0], [-1.0, 2.0]]) / 3.0, atol=1e-15)


@pytest.mark.parametrize(("n", "block"), [(1, 4), (7, 3), (50, 16), (64, 64), (129, 32)])
def test_matches_numpy_inverse_for_any_block_size(n, block):
    rng = np.random.default_rng(n)
    x = (rng.random((2 * n, n)) < 0.2).astype(np.float64)
    gram = x.T @ x + 3.0 * np.eye(n)
    want = np.linalg.inv(gram)
    got = spd_inverse_inplace(gram.copy(), block=block)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    assert np.array_equal(got, got.T)


def test_progress_bar_counts_every_block_of_the_three_passes(capsys):
    a = np.diag([2.0, 4.0, 8.0, 16.0, 32.0])
    spd_inverse_inplace(a, block=2, progress=True)
    np.testing.assert_allclose(np.diag(a), [0.5, 0.25, 0.125, 0.0625, 0.03125])
    assert "9/9" in capsys.readouterr().err  # 3 blocks x (Cholesky, triangle inverse, W^T W)


def test_not_positive_definite_raises():
    with pytest.raises(np.linalg.LinAlgError):
        spd_inverse_inplace(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_rejects_fortran_order():
    with pytest.raises(ValueError, match="C-ordered square float64"):
        spd_inverse_inplace(np.asfortranarray(np.eye(3) + 0.0))


def test_dense_gram_blocks_equal_the_whole_product():
    x = sp.random(40, 23, density=0.2, random_state=1, format="csr")
    want = (x.T @ x).toarray() + 2.5 * np.eye(23)
    got = dense_gram(x, 2.5, block=5)
    np.testing.assert_array_equal(got, want)
    assert got.flags.owndata and got.flags.c_contiguous


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (9, 9), (37, 5)])
def test_float32_in_place_keeps_every_value_and_halves_the_buffer(shape):
    a = np.empty(shape)
    a[:] = np.random.default_rng(0).normal(size=shape)
    want = a.astype(np.float32)
    got = to_float32_inplace(a, block=4)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and got.flags.owndata and got.nbytes == want.nbytes


def test_float32_of_a_view_is_a_copy():
    base = np.arange(12, dtype=np.float64).reshape(3, 4)  # a view of arange's buffer
    got = to_float32_inplace(base)
    np.testing.assert_array_equal(got, base.astype(np.float32))
    assert base.dtype == np.float64
