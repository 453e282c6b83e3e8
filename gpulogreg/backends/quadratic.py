"""The quadratic form ``a_i^T Sigma a_i`` of every row: the variance of the linear predictor.

Prediction intervals use the delta method on the linear predictor (DESIGN.md,
"Uncertainty"): for each row ``x_i`` of new data the standard error of
``z_i = x_i . w + b`` is ``sqrt(a_i^T Sigma a_i)``, with ``a_i = [x_i, 1]``
(the intercept last, as in the parameter layout) or ``a_i = x_i`` without an
intercept, and ``Sigma`` the ``d x d`` covariance of the parameters
(``d = n_features + fit_intercept``). :func:`row_quadratic_forms` computes
every ``q_i = a_i^T Sigma a_i`` in one pass over the rows, in the namespace of
``X``, never forming an ``n_samples x d`` temporary:

* NumPy: a Numba kernel (:func:`_quadratic_rows`) in the conventions of
  :mod:`gpulogreg.backends._numba_kernels`: fixed row chunks of
  :data:`~gpulogreg._numba_read.CHUNK_ROWS` over ``prange``, float64
  accumulation, one small scratch per chunk and none per row, so results are
  bitwise identical for any number of threads. It uses the symmetry of
  ``Sigma``: with ``T`` the lower triangle of ``Sigma`` with its off-diagonal
  entries doubled (``T_jj = Sigma_jj``, ``T_jk = 2 Sigma_jk`` for ``k < j``)::

      q_i = sum_{j<n} x_ij (sum_{k<=j} T_jk x_ik + c_j) + Sigma_bb,
      c_j = 2 Sigma_bj,   Sigma_bb = Sigma_nn   (both 0 without an intercept)

  which is ``d^2 / 2`` multiply-adds per row instead of the ``d^2`` of
  ``x^T (Sigma x)``. Above :data:`NUMBA_MAX_PARAMS` parameters, where the
  kernel no longer leads (``T`` comes from the last-level cache), blocks of
  :data:`HOST_BLOCK_ROWS` rows go to BLAS instead (:func:`_blocked_rows`).
* CuPy: blocks of rows through cuBLAS, ``B = A_block @ Sigma[:n]`` into a
  bounded float64 buffer of at most :data:`DEVICE_BLOCK_BYTES`, then the
  row-wise products ``q = sum_j B_ij A_ij + 2 B_in + Sigma_bb``
  (:func:`_blocked_rows`, shared with the host's BLAS path).
* Dask: the same per block on the workers (:func:`_forms_of_block`),
  returned as a lazy Dask array, as the package's predictions are
  (:func:`gpulogreg._predict.decision_values`).

``Sigma`` is replaced by its symmetric part ``(Sigma + Sigma^T) / 2`` first,
which has the same quadratic forms, so every path computes exactly
``a_i^T Sigma a_i`` for any square ``Sigma``. ``q_i >= 0`` up to rounding when
``Sigma`` is positive semi-definite; the caller takes the square root.

Measured on the 2-core AMD EPYC of this project (``lscpu``: "AMD EPYC",
family 25 model 17: Zen 4, AVX-512; 1 MB L2 per core, 32 MB L3), with other
jobs on the machine, so minima of 9 round-robin runs; OpenBLAS 0.3.31, float32
``X`` with an intercept, ns per row (``bench/quadratic_crossover.py``, OpenBLAS
tuning variables unset). One thread (Numba and BLAS)::

    d             8   32   64  128   256   384   512   768  1024  1280   1536   2048
    kernel       12   69  217  691  2103  4632  7727 17805 34997 68070 102047 180491
    BLAS, 256    64  137  339  939  3096  6639 11641 25677 45307 68580 101046 184159
    BLAS, 1024   44  132  308  945  3126  6852 11662 24853 43632 66427  97376 175469

Two threads::

    d            64   256   512   768  1024  1280  1536   2048   3072
    kernel      286  2667  4705 10515 21139 36663 52390 103057 228008
    BLAS, 256   390  3201  6607 14349 25958 39105 52478 101809 221141

(BLAS, r: the blocked path with blocks of r rows. float64 ``X``, one thread:
kernel 10 / 314 / 8108 / 36364 / 99610, BLAS 58 / 406 / 12111 / 45869 / 98861
at d = 8 / 64 / 512 / 1024 / 1536.) The kernel does half the arithmetic of
the product; it leads by 1.2-1.5x up to d = 1024 and is level with BLAS from
1280 on, where ``T`` (``4 d^2`` bytes read per tile of four rows) comes from
the last-level cache and BLAS's cache blocking makes up for its twice as many
multiply-adds. Not kept (one thread, float32): tiles of four rows with one
row of ``T`` at a time (16 ns a row faster at d = 32, level up to 128, 8-22 %
slower from 256 to 1024), tiles of eight rows (up to 6 % faster at d = 96 to
128, 10-43 % slower at 512 and 1024), rows transposed so that the vectors
run over rows (2-3x slower: Numba's scalar accumulators were not packed into
vectors), 512-bit vectors preferred as in the loss kernels (no difference).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from gpulogreg._array import array_module_name, array_namespace, device_of, is_sparse
from gpulogreg._blas import one_blas_thread
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg._numba_read import _PARALLEL, _SERIAL, CHUNK_ROWS, _n_chunks_jit
from gpulogreg._typing import Array
from gpulogreg.data.validation import _first_nonfinite, _nonfinite_message

__all__ = [
    "DEVICE_BLOCK_BYTES",
    "HOST_BLOCK_ROWS",
    "NUMBA_MAX_PARAMS",
    "row_quadratic_forms",
]

#: Parameters ``d`` up to which NumPy data go to the Numba kernel; above, to
#: blocked BLAS. The largest measured ``d`` at which the kernel is clearly
#: ahead (module docstring); from 1280 on the two are level on that EPYC, and
#: BLAS's cache blocking does not depend on the cache sizes, which differ
#: between the project's machines, where the kernel's speed does.
NUMBA_MAX_PARAMS = 1024
#: Rows per BLAS block on the host: two float64 buffers of ``256 x d`` per
#: worker thread (4 MiB each at d = 2048); 1024-row blocks were within 5 % of
#: these above the crossover (module docstring).
HOST_BLOCK_ROWS = 256
#: Bytes of the float64 product buffer per block on the GPU (32 MiB, bounded
#: whatever the number of rows; for float32 ``X`` a widened copy of the block,
#: at most as large, is alive with it).
DEVICE_BLOCK_BYTES = 32 * 2**20

#: Rows per tile of the kernel: four rows share each load of ``T``.
_TILE_ROWS = 4


# -----------------------------------------------------------------------------
# The Numba kernel (NumPy data, d <= NUMBA_MAX_PARAMS).
# -----------------------------------------------------------------------------
@njit(**_SERIAL)
def _quadratic_chunk(X, T, c, s_bb, start, stop, out):
    """``out[i] = sum_j x_ij (sum_{k<=j} T_jk x_ik + c_j) + s_bb`` for rows ``[start, stop)``.

    Rows go in tiles of four, widened once to a float64 scratch (the chunk's
    only allocation); each tile walks the rows of ``T`` two at a time, so that
    every load of a row of the tile serves two rows of ``T`` and every load of
    ``T`` four rows of ``X`` (eight independent accumulators). A last tile of
    fewer than four rows repeats its last row; the repeats are not stored.
    """
    n = X.shape[1]
    A = np.empty((_TILE_ROWS, n))
    a0 = A[0]
    a1 = A[1]
    a2 = A[2]
    a3 = A[3]
    for i0 in range(start, stop, _TILE_ROWS):
        nb = min(_TILE_ROWS, stop - i0)
        for r in range(_TILE_ROWS):
            row = X[i0 + min(r, nb - 1)]
            for k in range(n):
                A[r, k] = row[k]
        q0 = 0.0
        q1 = 0.0
        q2 = 0.0
        q3 = 0.0
        j = 0
        while j + 2 <= n:
            tj = T[j]
            tk = T[j + 1]
            t0 = 0.0
            t1 = 0.0
            t2 = 0.0
            t3 = 0.0
            u0 = 0.0
            u1 = 0.0
            u2 = 0.0
            u3 = 0.0
            for k in range(j + 1):
                s = tj[k]
                v = tk[k]
                b0 = a0[k]
                b1 = a1[k]
                b2 = a2[k]
                b3 = a3[k]
                t0 += s * b0
                t1 += s * b1
                t2 += s * b2
                t3 += s * b3
                u0 += v * b0
                u1 += v * b1
                u2 += v * b2
                u3 += v * b3
            v = tk[j + 1]  # the diagonal entry of row j + 1
            cj = c[j]
            ck = c[j + 1]
            q0 += a0[j] * (t0 + cj) + a0[j + 1] * (u0 + v * a0[j + 1] + ck)
            q1 += a1[j] * (t1 + cj) + a1[j + 1] * (u1 + v * a1[j + 1] + ck)
            q2 += a2[j] * (t2 + cj) + a2[j + 1] * (u2 + v * a2[j + 1] + ck)
            q3 += a3[j] * (t3 + cj) + a3[j + 1] * (u3 + v * a3[j + 1] + ck)
            j += 2
        if j < n:  # odd n: the last row of T alone
            tj = T[j]
            t0 = 0.0
            t1 = 0.0
            t2 = 0.0
            t3 = 0.0
            for k in range(j + 1):
                s = tj[k]
                t0 += s * a0[k]
                t1 += s * a1[k]
                t2 += s * a2[k]
                t3 += s * a3[k]
            cj = c[j]
            q0 += a0[j] * (t0 + cj)
            q1 += a1[j] * (t1 + cj)
            q2 += a2[j] * (t2 + cj)
            q3 += a3[j] * (t3 + cj)
        out[i0] = q0 + s_bb
        if nb > 1:
            out[i0 + 1] = q1 + s_bb
        if nb > 2:
            out[i0 + 2] = q2 + s_bb
        if nb > 3:
            out[i0 + 3] = q3 + s_bb


@njit(**_PARALLEL)
def _quadratic_rows(X, T, c, s_bb, out):
    """``out[i] = x_i^T T x_i + c . x_i + s_bb`` with ``T`` lower triangular, in float64.

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous
    T : ndarray of shape (n, n), float64, C-contiguous
        Lower triangle used (the entries above the diagonal are not read).
    c : ndarray of shape (n,), float64
    s_bb : float
    out : ndarray of shape (m,), float64
        Written in place (allocated by the caller, where memory tracing sees it).
    """
    m = X.shape[0]
    nc = _n_chunks_jit(m)
    for ch in prange(nc):
        _quadratic_chunk(X, T, c, s_bb, ch * CHUNK_ROWS, min((ch + 1) * CHUNK_ROWS, m), out)


# -----------------------------------------------------------------------------
# Blocked products (GPU; host above NUMBA_MAX_PARAMS).
# -----------------------------------------------------------------------------
def _blocked_rows(
    X: Array, P: Array, s_bb: float, rows: int, starts: list[int], out: Array
) -> None:
    """``out`` for the blocks of ``rows`` rows starting at ``starts``, through BLAS.

    ``P = Sigma[:n]`` with its intercept column doubled, ``(n, d)``: for a
    float64 block ``A``, ``B = A @ P`` holds ``A Sigma_xx`` and ``2 A Sigma_xb``,
    and ``q = sum_j B_ij A_ij + B_in + Sigma_bb``. Two buffers of at most
    ``rows`` rows, reused by every block: ``B``, and the float64 copy of a
    float32 block (float64 blocks are used in place).
    """
    xp = array_namespace(X)
    m, n = X.shape
    size = min(rows, m)
    wide = None if X.dtype == xp.float64 else xp.empty((size, n), dtype=xp.float64)
    B = xp.empty((size, P.shape[1]), dtype=xp.float64)
    for start in starts:
        stop = min(start + rows, m)
        Ab = X[start:stop]
        if wide is not None:
            wide[: stop - start] = Ab
            Ab = wide[: stop - start]
        Bb = B[: stop - start]
        xp.matmul(Ab, P, out=Bb)
        Bx = Bb[:, :n]
        Bx *= Ab
        ob = out[start:stop]
        Bx.sum(axis=1, out=ob)
        if P.shape[1] > n:
            ob += Bb[:, n]
            ob += s_bb


def _host_blocked(X: np.ndarray, P: np.ndarray, s_bb: float, out: np.ndarray) -> None:
    """:func:`_blocked_rows` on a pool of Python threads, one per Numba thread.

    Each block is computed by single-threaded BLAS (threadpoolctl), the way
    :func:`gpulogreg.backends.numba_backend._weighted_syrk` runs its chunks:
    OpenBLAS's own threads would keep spinning against the Numba kernels that
    follow. The blocks are fixed, so the result does not depend on the threads.
    """
    starts = list(range(0, X.shape[0], HOST_BLOCK_ROWS))
    workers = max(1, min(numba.get_num_threads(), len(starts)))
    groups = [starts[w::workers] for w in range(workers)]
    with one_blas_thread():
        if workers == 1:
            _blocked_rows(X, P, s_bb, HOST_BLOCK_ROWS, starts, out)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list(): wait for every group and raise what any of them raised.
            list(pool.map(lambda g: _blocked_rows(X, P, s_bb, HOST_BLOCK_ROWS, g, out), groups))


# -----------------------------------------------------------------------------
# Dispatch.
# -----------------------------------------------------------------------------
def _check_rows(X: Any, name: str) -> int:
    """Number of features of a validated ``X`` (what :func:`gpulogreg.data.check_X` returns)."""
    shape = getattr(X, "shape", None)
    dtype = getattr(X, "dtype", None)
    if shape is None or dtype is None:
        raise InputTypeError(f"{name} must be an array, got {type(X).__name__}")
    if len(shape) != 2:
        raise InputValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}")
    if dtype not in (np.float32, np.float64):
        raise InputTypeError(f"{name} must be float32 or float64 (see check_X), got {dtype}")
    if array_module_name(X) == "dask":
        if len(X.chunks[1]) != 1:
            raise InputValueError(f"{name} must have one column chunk (see check_X with lazy=True)")
    elif is_sparse(X):
        if X.format != "csr":
            raise InputValueError(f"{name} must be a CSR matrix (see check_X)")
    elif not X.flags.c_contiguous:
        raise InputValueError(f"{name} must be C-contiguous (see check_X)")
    return int(shape[1])


def _checked_sigma(Sigma: Any, n_features: int, fit_intercept: bool) -> np.ndarray:
    """The symmetric part of ``Sigma`` as a host float64 array, after checking it."""
    d = n_features + int(fit_intercept)
    if array_module_name(Sigma) == "cupy":
        Sigma = Sigma.get()
    S = np.asarray(Sigma)
    if S.dtype.kind not in "biuf":
        raise InputTypeError(f"Sigma must be a real numeric matrix, got dtype {S.dtype}")
    if S.shape != (d, d):
        parts = f"{n_features} features" + (" + intercept" if fit_intercept else "")
        raise InputValueError(f"Sigma has shape {S.shape}; expected ({d}, {d}) for {parts}")
    S = S.astype(np.float64)
    if not np.isfinite(S).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(S))[0])
        raise InputValueError(f"Sigma contains {S[row, col]} at row {row}, column {col}")
    return (S + S.T) * 0.5


def _forms(X: Array, S: np.ndarray, fit_intercept: bool) -> Array:
    """``q`` of validated NumPy or CuPy ``X`` (shape (m,), float64, X's namespace)."""
    xp: ModuleType = array_namespace(X)
    n = X.shape[1]
    s_bb = float(S[n, n]) if fit_intercept else 0.0
    if is_sparse(X):
        return _sparse_forms(X, S, s_bb, fit_intercept)
    if xp is np and n + int(fit_intercept) <= NUMBA_MAX_PARAMS:
        T = np.tril(S[:n, :n] * 2.0)
        T[np.diag_indices(n)] *= 0.5  # the diagonal once, the off-diagonal pairs doubled
        c = 2.0 * S[n, :n] if fit_intercept else np.zeros(n)
        out = np.empty(X.shape[0])
        _quadratic_rows(X, T, c, s_bb, out)
        return out
    P = np.array(S[:n])  # (n, d), C-contiguous
    if fit_intercept:
        P[:, n] *= 2.0
    if xp is np:
        out = np.empty(X.shape[0])
        _host_blocked(X, P, s_bb, out)
        return out
    with device_of(X):
        out = xp.empty(X.shape[0], dtype=xp.float64)
        rows = max(1, DEVICE_BLOCK_BYTES // (8 * P.shape[1]))
        starts = list(range(0, X.shape[0], rows))
        _blocked_rows(X, xp.asarray(P), s_bb, rows, starts, out)
        return out


def _sparse_forms(X: Array, S: np.ndarray, s_bb: float, fit_intercept: bool) -> Array:
    """``q`` of a CSR ``X`` by blocks of rows: ``B = X_block @ P``, then the stored values.

    ``P = Sigma[:n]`` with its intercept column doubled (as in
    :func:`_blocked_rows`); per block ``q = sum_j x_ij B_ij + B_in + Sigma_bb``,
    where the sum runs over the row's stored values only. ``B`` is a dense
    float64 block of at most :data:`DEVICE_BLOCK_BYTES`; ``X`` is never densified.
    """
    xp = array_namespace(X)
    n = X.shape[1]
    with device_of(X):
        P = xp.asarray(S[:n])
        if fit_intercept:
            P[:, n] *= 2.0
        out = xp.empty(X.shape[0], dtype=xp.float64)
        rows = max(1, DEVICE_BLOCK_BYTES // (8 * P.shape[1]))
        for start in range(0, X.shape[0], rows):
            Xb = X[start : start + rows].astype(xp.float64)
            B = Xb @ P
            rows_of_values = Xb.tocoo().row  # canonical CSR: the stored values in row order
            values = Xb.data * B[rows_of_values, Xb.indices]
            # Row sums of the products by a sparse product (fixed order, no atomics).
            products = type(Xb)((values, Xb.indices, Xb.indptr), shape=Xb.shape)
            q = products @ xp.ones(n, dtype=xp.float64)
            if fit_intercept:
                q += B[:, n] + s_bb
            out[start : start + Xb.shape[0]] = q
        return out


def _forms_of_block(
    X: Array,
    S: np.ndarray,
    fit_intercept: bool,
    name: str = "X",
    block_info: dict[Any, Any] | None = None,
) -> Array:
    """:func:`_forms` of one block of a Dask ``X``, naming the global row of bad input."""
    _check_rows(X, name)
    q = _forms(X, S, fit_intercept)
    xp = array_namespace(q)
    if not bool(xp.isfinite(q).all()):
        bad = _first_nonfinite(X)  # else q overflowed on finite data: not an input error
        if bad is not None:
            offset = 0 if block_info is None else int(block_info[0]["array-location"][0][0])
            raise InputValueError(_nonfinite_message(name, bad[0] + offset, *bad[1:]))
    return q


def row_quadratic_forms(X: Array, Sigma: Any, *, fit_intercept: bool, name: str = "X") -> Array:
    """``q_i = a_i^T Sigma a_i`` for every row, ``a_i = [x_i, 1]`` (or ``x_i``), in float64.

    The variance of the linear predictor ``x_i . w + b`` for a parameter
    covariance ``Sigma`` (delta method): its standard error is ``sqrt(q_i)``.
    One pass over the rows of ``X``, accumulated in float64 also for float32
    data, without an ``n_samples x d`` temporary (see the module docstring).

    Parameters
    ----------
    X : array of shape (n_samples, n_features), float32 or float64
        Validated rows (see :func:`gpulogreg.data.check_X`): a C-contiguous
        NumPy or CuPy array, or a Dask array of such blocks in one column
        chunk (``check_X(..., lazy=True)``).
    Sigma : array-like of shape (d, d)
        Covariance of the parameters in the parameter layout, the intercept
        last: ``d = n_features + fit_intercept``. Only its symmetric part
        counts (as for any quadratic form).
    fit_intercept : bool
        Whether ``a_i`` ends with the intercept's 1.
    name : str
        Name of ``X`` in error messages.

    Returns
    -------
    q : array of shape (n_samples,), float64
        In the namespace of ``X``: NumPy, CuPy, or a lazy Dask array whose
        blocks are in the namespace of ``X``'s blocks.

    Raises
    ------
    TypeError
        ``X`` is not a float32/float64 array, or ``Sigma`` is not numeric.
    ValueError
        ``X`` is not 2-D or not C-contiguous (Dask: more than one column
        chunk); ``Sigma`` has the wrong shape or holds NaN or infinity; a
        block of a Dask ``X`` holds NaN or infinity (when it is computed,
        naming its global row).
    """
    n = _check_rows(X, name)
    S = _checked_sigma(Sigma, n, fit_intercept)
    if array_module_name(X) != "dask":
        return _forms(X, S, fit_intercept)
    meta = X._meta.astype(np.float64).sum(axis=1)
    return X.map_blocks(_forms_of_block, S, fit_intercept, name, drop_axis=1, meta=meta)
