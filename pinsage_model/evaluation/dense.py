"""In-place inverse of a large symmetric positive definite matrix (EASE's ``(X^T X + l2 I)^-1``).

Why not ``scipy.linalg.inv``: it needs the matrix and LAPACK's workspace (about 12 N^2 bytes in
float64 with the float32 result), and scipy's bundled OpenBLAS uses 32-bit indices: its
``potrf`` crashed on a 37.6k x 37.6k matrix (1.4e9 elements). Here the work is done in blocks of
``block`` rows by numpy's matrix product (64-bit BLAS) on the one (N, N) buffer, and only
(block, block) factorisations and (block, N) triangular solves go to LAPACK:

1. Cholesky ``A = L L^T``, right-looking, lower triangle (N^3/3 flops);
2. ``W = L^-1`` in place, block row by block row (2 N^3/3 flops: W is multiplied as a full
   matrix whose upper triangle is zero);
3. ``A^-1 = W^T W``, block row by block row (N^3/3 flops); then the upper triangle is mirrored.

Peak memory is the matrix plus a few (block, N) temporaries.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def _cholesky_lower(a: np.ndarray, block: int, tick: Callable[[], object]) -> None:
    """``a``'s lower triangle becomes L (``a = L L^T``); its strict upper triangle is zeroed."""
    import scipy.linalg

    n = len(a)
    for k0, k1 in _blocks(n, block):
        lkk = np.linalg.cholesky(a[k0:k1, k0:k1])  # (b, b) lower, zeros above the diagonal
        a[k0:k1, k0:k1] = lkk
        a[k0:k1, k1:] = 0.0  # the strict upper triangle of these rows
        tick()
        if k1 == n:
            break
        panel = a[k1:, k0:k1]  # (n - k1, b): A21 -> L21 = A21 L11^-T
        panel[:] = scipy.linalg.solve_triangular(lkk, panel.T, lower=True, check_finite=False).T
        for r0, r1 in _blocks(n - k1, block):  # trailing update of the lower triangle only
            a[k1 + r0 : k1 + r1, k1 : k1 + r1] -= panel[r0:r1] @ panel[:r1].T


def _invert_lower(a: np.ndarray, block: int, tick: Callable[[], object]) -> None:
    """A lower-triangular ``a`` (zero above the diagonal) becomes its inverse W, in place.

    Block row i of W: ``W_ii = L_ii^-1`` and ``W[i, :i] = -W_ii (L[i, :i] W[:i, :i])``, where
    ``W[:i, :i]`` is the already inverted leading part (rows above are done first).
    """
    import scipy.linalg

    for k0, k1 in _blocks(len(a), block):
        wkk = scipy.linalg.solve_triangular(a[k0:k1, k0:k1], np.eye(k1 - k0), lower=True, check_finite=False)
        if k0:
            a[k0:k1, :k0] = -(wkk @ (a[k0:k1, :k0] @ a[:k0, :k0]))  # (b, k0)
        a[k0:k1, k0:k1] = wkk
        tick()


def _gram_of_lower(a: np.ndarray, block: int, tick: Callable[[], object]) -> None:
    """A lower-triangular ``a`` = W becomes ``W^T W`` (symmetric, both triangles), in place.

    Block row i of the lower triangle is ``W[i:, i]^T W[i:, :i+1]``: it reads block rows >= i
    only, which later iterations have not written yet.
    """
    n = len(a)
    for k0, k1 in _blocks(n, block):
        a[k0:k1, :k1] = a[k0:, k0:k1].T @ a[k0:, :k1]  # (b, k1)
        tick()
    for k0, k1 in _blocks(n, block):  # mirror: the strict upper triangle of each block row
        a[k0:k1, k1:] = a[k1:, k0:k1].T
        a[k0:k1, k0:k1] = np.tril(a[k0:k1, k0:k1]) + np.tril(a[k0:k1, k0:k1], -1).T


def spd_inverse_inplace(a: np.ndarray, block: int = 1024, *, progress: bool = False) -> np.ndarray:
    """Overwrite ``a`` (N, N), C-ordered float64, symmetric positive definite, with its inverse.

    ``progress`` shows a bar over the three passes' blocks (minutes at tens of thousands of rows).

    Raises:
      numpy.linalg.LinAlgError: ``a`` is not positive definite.
    """
    from pinsage_model.progress import progress_bar

    if a.ndim != 2 or a.shape[0] != a.shape[1] or not a.flags.c_contiguous or a.dtype != np.float64:
        raise ValueError(f"expected a C-ordered square float64 matrix, got {a.dtype} {a.shape}")
    steps = 3 * len(_blocks(len(a), block))
    with progress_bar(
        desc=f"inverse of a {len(a)} x {len(a)} matrix", total=steps, unit="block", disable=not progress
    ) as bar:
        tick = functools.partial(bar.update, 1)
        _cholesky_lower(a, block, tick)
        _invert_lower(a, block, tick)
        _gram_of_lower(a, block, tick)
    return a


def dense_gram(x, l2: float, block: int = 1024) -> np.ndarray:
    """``X^T X + l2 I`` (N, N) float64 for a sparse ``x`` (C, N), built block row by block row
    into one C-ordered array that owns its buffer (so :func:`to_float32_inplace` can shrink it);
    the sparse product is never held whole."""
    xt = x.T.tocsr()  # (N, C)
    n = x.shape[1]
    gram = np.empty((n, n), dtype=np.float64)
    for r0, r1 in _blocks(n, block):
        gram[r0:r1] = (xt[r0:r1] @ x).toarray()
    gram[np.diag_indices(n)] += l2
    return gram


def to_float32_inplace(a: np.ndarray, block: int = 1024) -> np.ndarray:
    """``a`` (N, M) C-ordered float64 that owns its buffer, converted to float32 in that buffer,
    which is then shrunk to half: the conversion never holds a second (N, M) array.

    Row block [r0, r1) is written over bytes [4 M r0, 4 M r1), which only held float64 rows
    < r0 (already converted) when r1 <= 2 r0; row 0 goes through a copy.
    """
    n, m = a.shape
    if not (a.flags.owndata and a.flags.c_contiguous and a.dtype == np.float64):
        return np.ascontiguousarray(a, dtype=np.float32)
    out = a.reshape(-1).view(np.float32)  # (2 N M,) over the same bytes
    out[:m] = a[0].astype(np.float32)
    r0 = 1
    while r0 < n:
        r1 = min(2 * r0, r0 + block, n)
        out[r0 * m : r1 * m] = a[r0:r1].astype(np.float32).reshape(-1)
        r0 = r1
    del out
    a.shape = (n * m,)
    a.dtype = np.dtype(np.float32)  # type: ignore[misc]  # reinterpret the owned buffer: (2 N M,)
    a.resize((n * m,), refcheck=False)  # frees the second half
    a.shape = (n, m)
    return a
