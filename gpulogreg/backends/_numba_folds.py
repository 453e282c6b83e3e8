"""Numba kernels that evaluate several models on one read of ``X``: the CV folds.

A cross-validation fold is a weight vector (its held-out rows weigh zero), so
the models of all folds share each read of a row: per block of rows, the
decision values of every model come from one pass over the block, then each
model's pointwise loss and residual with its own weights, then the gradient
sums of every output in one more pass over the block, with the tiles and the
arithmetic of the single-model kernels
(:func:`~gpulogreg.backends._numba_kernels._block_decisions`, ``_block_gradient``):
float64 products for sigmoid models, and for softmax ones those of the
multinomial kernel (float32 products on float32 data from
``FLOAT32_PRODUCTS_MIN_CLASSES`` classes on). The conventions are those of
:mod:`gpulogreg.backends._numba_kernels` (fixed chunking, float64 sums, the
same stable formulas); a model's result is that of the single-model kernel
with the model's weights, up to the order of floating-point sums.

Model ``a`` has ``n_out`` outputs (1: binary, ``K``: multinomial), rows
``a * n_out .. (a + 1) * n_out - 1`` of ``W`` and ``bias``, and the weights
``s[i] * counts[i, f] * scale[f]`` of fold ``f = folds[a]`` (the rows' weights,
how often each row is among the fold's training rows, and the fold's
normaliser): a few bytes per row and fold instead of a float64 weight matrix.
Per block, each model's weights are gathered into a contiguous scratch first,
so that its pointwise loop vectorises as the single-model kernel's does.
``folds`` names the models still being solved, so a converged fold costs no
arithmetic.

Output layout: for each output ``k`` of ``W``, ``n`` gradient entries then the
intercept entry (``out[k * (n + 1) + j]``), then one loss per model.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpulogreg._numba_read import (
    _INLINE,
    _PARALLEL,
    _SERIAL,
    CHUNK_ROWS,
    _n_chunks_jit,
    _sum_rows,
)
from gpulogreg.backends._numba_kernels import (
    _AXPY_TILE,
    _aligned_copy,
    _aligned_zeros,
    _binary_pointwise,
    _block_decisions,
    _block_gradient,
    _multi_block_rows,
    _products_in_x_dtype,
    _softmax_block,
    _two_row_tiles,
)

__all__ = ["folds_loss_grad"]


@njit(**_INLINE)
def _fold_block_weights(sb, cb, f, scale, nb, sw):
    """``sw[r] = sb[r] * cb[r, f] * scale``: one fold's weights of the block, contiguous."""
    for r in range(nb):
        sw[r] = sb[r] * (cb[r, f] * scale)


@njit(**_INLINE)
def _folds_chunk(
    X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, two_row_tiles, out
):
    """Rows ``[start, stop)`` of every model (see the module docstring for the layout).

    ``Wx`` holds the coefficients in the dtype of the products, and
    ``two_row_tiles`` picks their tiles, as the single-model kernels do; one
    compiled kernel per tiling (:func:`_folds_pairs`, :func:`_folds_two_rows`),
    as :func:`~gpulogreg.backends._numba_kernels._multi_loss_grad_chunk`.
    """
    KA = Wx.shape[0]
    n = X.shape[1]
    A = folds.shape[0]
    block = _multi_block_rows(two_row_tiles)
    zero = np.zeros(1, Wx.dtype)[0]
    G = np.zeros((KA, n))
    Gb = _aligned_zeros(0 if two_row_tiles else KA, n, Wx)
    gb = np.zeros(KA)
    loss = np.zeros(A)
    Z = np.empty((KA, block))  # decision values
    R = np.zeros((KA, block + _AXPY_TILE), Wx.dtype)  # weighted residuals
    E = np.empty((n_out, block))
    lse = np.empty(block)
    tot = np.empty(block)
    sw = np.empty(block)
    for i0 in range(start, stop, block):
        nb = min(block, stop - i0)
        Xb = X[i0 : i0 + nb]
        yb = y[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        cb = counts[i0 : i0 + nb]
        _block_decisions(Xb, Wx, bias, Z, zero, X, i0, two_row_tiles, True)
        for a in range(A):
            f = folds[a]
            _fold_block_weights(sb, cb, f, scale[f], nb, sw)
            if n_out == 1:
                za = Z[a]
                ra = R[a]
                la = 0.0
                ga = 0.0
                for r in range(nb):
                    li, ri = _binary_pointwise(za[r], np.float64(yb[r]), sw[r])
                    la += li
                    ga += ri
                    ra[r] = ri
                loss[a] += la
                gb[a] += ga
                continue
            Za = Z[a * n_out : (a + 1) * n_out]
            _softmax_block(Za, nb, E, lse, tot)
            la = 0.0
            for r in range(nb):
                la += sw[r] * (lse[r] - Za[yb[r], r])
            loss[a] += la
            for k in range(n_out):
                Ek = E[k]
                Rk = R[a * n_out + k]
                total = 0.0
                for r in range(nb):
                    rk = sw[r] * (Ek[r] - (1.0 if yb[r] == k else 0.0))
                    Rk[r] = rk
                    total += rk
                gb[a * n_out + k] += total
        if with_grad:
            for k in range(KA):
                for r in range(nb, block + _AXPY_TILE):
                    R[k, r] = 0
            _block_gradient(Xb, R, Gb, G, two_row_tiles)
    if with_grad:
        for k in range(KA):
            for j in range(n):
                out[k * (n + 1) + j] = G[k, j]
            out[k * (n + 1) + n] = gb[k]
    for a in range(A):
        out[KA * (n + 1) + a] = loss[a]


@njit(**_SERIAL)
def _folds_pairs(X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, out):
    """:func:`_folds_chunk` with the row-pair tiles of the multinomial kernels."""
    _folds_chunk(X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, False, out)


@njit(**_SERIAL)
def _folds_two_rows(X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, out):
    """:func:`_folds_chunk` with the two-row tiles of the multinomial kernels."""
    _folds_chunk(X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, True, out)


@njit(**_SERIAL)
def folds_loss_grad(X, y, s, counts, scale, folds, W, bias, n_out, with_grad):
    """Weighted mean losses (and gradients) of several models in one pass over ``X``.

    Softmax models of ``FLOAT32_PRODUCTS_MIN_CLASSES`` classes or more take
    their products in ``X``'s arithmetic, as the single-model multinomial
    kernel does (with its float64 retry of a result that is not finite); the
    others float64 products.

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous
    y : ndarray of shape (m,), int32 class indices (0/1 for binary models)
    s : ndarray of shape (m,), float64
        The rows' (sample x class) weights.
    counts : ndarray of shape (m, n_folds), uint8 or int32, C-contiguous
        How often each row is among each fold's training rows.
    scale : ndarray of shape (n_folds,), float64
        Each fold's normaliser: row ``i`` weighs ``s[i] * counts[i, f] * scale[f]``
        in fold ``f`` (the weights of a fold sum to one).
    folds : ndarray of shape (A,), int64
        The fold of each model.
    W : ndarray of shape (A * n_out, n), float64, C-contiguous
    bias : ndarray of shape (A * n_out,), float64
    n_out : int
        Outputs per model: 1 (sigmoid) or the number of classes (softmax).
    with_grad : bool
        False: the losses only (the gradient entries are zero).

    Returns
    -------
    out : ndarray of shape (A * n_out * (n + 1) + A,), float64
    """
    if n_out > 1 and _products_in_x_dtype(n_out):
        Wx = _aligned_copy(W, X)
        if np.isfinite(Wx).all():
            out = _folds_rows(X, y, s, counts, scale, folds, Wx, bias, n_out, with_grad, False)
            if np.isfinite(out).all():
                return out
        # Past float32's range: float64 products, as the multinomial kernel does.
    two_row_tiles = n_out == 1 or _two_row_tiles(X)
    Wx = _aligned_copy(W, W)
    return _folds_rows(X, y, s, counts, scale, folds, Wx, bias, n_out, with_grad, two_row_tiles)


@njit(**_PARALLEL)
def _folds_rows(X, y, s, counts, scale, folds, Wx, bias, n_out, with_grad, two_row_tiles):
    m, n = X.shape
    KA = Wx.shape[0]
    A = folds.shape[0]
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, KA * (n + 1) + A))
    for c in prange(nc):
        start = c * CHUNK_ROWS
        stop = min(start + CHUNK_ROWS, m)
        if two_row_tiles:
            _folds_two_rows(
                X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, part[c]
            )
        else:
            _folds_pairs(
                X, y, s, counts, scale, folds, Wx, bias, n_out, start, stop, with_grad, part[c]
            )
    return _sum_rows(part)
