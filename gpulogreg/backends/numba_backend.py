"""The CPU backend: fused Numba kernels that read each row of ``X`` once per evaluation.

``loss_grad``, ``loss``, ``hvp``, ``hessian_diagonal``, ``gram_matvec`` and
``decision`` are single parallel passes over ``X`` (see :mod:`gpulogreg.backends._numba_kernels` for
the formulas, the blocking and the fixed chunking that makes results
independent of the number of threads). ``X`` is used as given: float32 stays
float32 and is never copied; every sum is accumulated in float64.

The binary Hessian ``A^T diag(h) A`` (``A = [X, 1]``) is compute-bound
(``m n^2`` flops), so it goes to BLAS: one Numba pass computes the curvature
weights ``h``, ``q = sqrt(h)`` and the intercept row ``[X^T h, sum h]``; then
``X^T diag(h) X = (q X)^T (q X)`` is accumulated over fixed row chunks with
one SYRK each (no ``m x n`` temporary). See :func:`_weighted_syrk` for how
the BLAS threads are kept from fighting the Numba threads. The meat of the
sandwich covariance, ``A^T diag(s (p - y)^2) A``, is the same construction
with other weights (one flag of the same Numba pass).

The multinomial Hessian and meat reuse the chunked BLAS baseline of
:class:`~gpulogreg.backends.numpy_backend.NumpyBackend` (its ``K (K + 1) / 2``
blocks are BLAS products as well), and so do the per-group scores of both
models (``cluster_scores``); the multinomial loss, gradient and
Hessian-vector product are fused Numba kernels like the binary ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

from gpulogreg._blas import one_blas_thread
from gpulogreg._typing import Array, Information
from gpulogreg.backends import _numba_kernels as nk
from gpulogreg.backends.numpy_backend import NumpyBackend, RowWeightRule

__all__ = ["NumbaBackend"]

#: Rows per SYRK in the binary Hessian. The float64 temporary ``q X`` of one
#: chunk is ``HESSIAN_CHUNK_ROWS * n * 8`` bytes (3.3 MB at n = 100), small
#: enough to stay in cache between its product with ``q`` and the SYRK, large
#: enough for BLAS to run near its peak.
HESSIAN_CHUNK_ROWS = 4096
#: Passes over fewer rows than this run on the calling thread only. The
#: kernels split rows into fixed chunks of ``CHUNK_ROWS`` (results never depend
#: on the thread count), so below two chunks there is no parallel work, and
#: waking the thread pool costs more than the pass (measured on 2 cores,
#: 1,500 x 8 float64: 75 us per loss_grad on one thread, about 300 us on two).
SERIAL_MAX_ROWS = 2 * nk.CHUNK_ROWS


@contextlib.contextmanager
def _serial_when_small(n_rows: int, limit: int = SERIAL_MAX_ROWS) -> Iterator[None]:
    """Limit Numba to the calling thread for a pass over ``n_rows`` < ``limit`` rows.

    ``limit`` is :data:`SERIAL_MAX_ROWS` for dense rows; the CSR backend
    passes stored values and its own limit. ``numba.set_num_threads`` is
    thread-local, so concurrent callers (Dask workers, one-vs-rest threads)
    are not affected.
    """
    if n_rows >= limit:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class NumbaBackend(NumpyBackend):
    """Fused one-pass Numba kernels on NumPy arrays (the CPU backend).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Validated features; held as given (``backend.X is X``), never copied.
    y : ndarray of shape (n_samples,), int32
        Class indices in ``0 .. n_classes - 1``.
    sample_weight : ndarray of shape (n_samples,), float64
        Non-negative weights summing to one.
    n_classes : int
        2 selects the binary (sigmoid) loss, more the multinomial (softmax) loss.
    fit_intercept : bool
    """

    name = "numba"

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int = 2,
        fit_intercept: bool = True,
    ) -> None:
        if not isinstance(X, np.ndarray):
            raise TypeError(
                f"the numba backend needs a NumPy array, got {type(X).__module__}."
                f"{type(X).__name__}"
            )
        if X.ndim != 2 or X.dtype not in (np.float32, np.float64):
            raise ValueError(
                f"the numba backend needs a 2-D float32 or float64 X, got {X.ndim}-D {X.dtype}"
            )
        if not X.flags.c_contiguous:
            raise ValueError(
                "the numba backend needs a C-contiguous X (validate it with "
                "gpulogreg.data.check_X, which converts it once)"
            )
        super().__init__(X, y, sample_weight, n_classes=n_classes, fit_intercept=fit_intercept)

    def _encode_labels(self) -> None:
        """Nothing: the fused kernels read the int32 labels directly (no float or one-hot copy)."""

    # -- parameter layout -----------------------------------------------------
    def _binary_params(self, params: Array) -> tuple[np.ndarray, float]:
        """Kernel arguments ``(w (n_features,), b)`` of a binary parameter vector."""
        coef, intercept = self.layout.split(np.asarray(params, dtype=np.float64))
        return np.ascontiguousarray(coef[0]), float(intercept[0]) if self.fit_intercept else 0.0

    def _multi_params(self, params: Array) -> tuple[np.ndarray, np.ndarray]:
        """Kernel arguments ``(W (K, n_features), bias (K,))`` of a multinomial vector."""
        coef, intercept = self.layout.split(np.asarray(params, dtype=np.float64))
        bias = intercept if self.fit_intercept else np.zeros(self.n_outputs)
        return np.ascontiguousarray(coef), np.ascontiguousarray(bias)

    def _pack(self, out: np.ndarray) -> np.ndarray:
        """Kernel layout ``(K, n + 1)`` (intercepts last) to the flat parameter layout."""
        K, n = self.n_outputs, self.n_features
        full = out[: K * (n + 1)].reshape(K, n + 1)
        return np.asarray(self.layout.join(full[:, :n], full[:, n], np))

    # -- protocol -------------------------------------------------------------
    def loss_grad_lazy(self, params: Array) -> tuple[float, Array]:
        X, y, s = self.X, self.y, self.sample_weight
        with _serial_when_small(self.n_samples):
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                out = nk.binary_loss_grad(X, y, s, w, b)
            else:
                W, bias = self._multi_params(params)
                out = nk.multinomial_loss_grad(X, y, s, W, bias)
        return float(out[-1]), self._pack(out)

    def loss(self, params: Array) -> float:
        X, y, s = self.X, self.y, self.sample_weight
        with _serial_when_small(self.n_samples):
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                return float(nk.binary_loss(X, y, s, w, b))
            W, bias = self._multi_params(params)
            return float(nk.multinomial_loss(X, y, s, W, bias))

    def hvp(self, params: Array, v: Array) -> Array:
        X, s = self.X, self.sample_weight
        with _serial_when_small(self.n_samples):
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                vw, vb = self._binary_params(v)
                return self._pack(nk.binary_hvp(X, s, w, b, vw, vb))
            W, bias = self._multi_params(params)
            V, vbias = self._multi_params(v)
            return self._pack(nk.multinomial_hvp(X, s, W, bias, V, vbias))

    def hessian_diagonal(self, params: Array) -> Array:
        """The diagonal of :meth:`hessian` from one fused pass over X (float64 sums)."""
        X, s = self.X, self.sample_weight
        with _serial_when_small(self.n_samples):
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                return self._pack(nk.binary_hessian_diagonal(X, s, w, b))
            W, bias = self._multi_params(params)
            return self._pack(nk.multinomial_hessian_diagonal(X, s, W, bias))

    def gram_matvec(self, v: Array) -> Array:
        n = self.n_features
        vw = np.ascontiguousarray(v[:n], dtype=np.float64)
        vb = float(v[n]) if self.fit_intercept else 0.0
        with _serial_when_small(self.n_samples):
            out = nk.gram_matvec(self.X, self.sample_weight, vw, vb)
        return out if self.fit_intercept else out[:n].copy()

    def decision(self, params: Array, X: Array) -> Array:
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float64)
        with _serial_when_small(X.shape[0]):
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                return nk.binary_decision(X, w, b)
            W, bias = self._multi_params(params)
            return nk.multinomial_decision(X, W, bias)

    def hessian(self, params: Array) -> Array:
        """Hessian ``A^T diag(h) A`` of the weighted mean loss, ``A = [X, 1]``.

        Binary: :meth:`_binary_gram` of the curvature ``s p (1 - p)``.
        Multinomial: the chunked BLAS baseline of :class:`NumpyBackend` (not
        fused), run with single-threaded BLAS (:meth:`_gram`).
        """
        if self.n_outputs != 1:
            return super().hessian(params)
        return self._binary_gram(params, meat=False)[0]

    def information(self, params: Array) -> Information:
        """Binary: the Hessian, loss, gradient and certain rows' weight from one pass over X."""
        if self.n_outputs != 1:
            return super().information(params)
        H, stats = self._binary_gram(params, meat=False)
        gradient = stats[2:] if self.fit_intercept else stats[2 : 2 + self.n_features]
        return Information(
            hessian=H,
            loss=float(stats[0]),
            gradient=np.ascontiguousarray(gradient),
            certain=float(stats[1]),
        )

    def meat(self, params: Array) -> Array:
        """``sum_i s_i g_i g_i^T``: the Hessian's construction with the weights ``s (p - y)^2``.

        Binary: :meth:`_binary_gram`; multinomial: the baseline's blocks
        ``A^T diag(s R_k R_j) A`` with single-threaded BLAS.
        """
        if self.n_outputs != 1:
            return super().meat(params)
        return self._binary_gram(params, meat=True)[0]

    def _binary_gram(self, params: Array, *, meat: bool) -> tuple[np.ndarray, np.ndarray]:
        """``A^T diag(h) A`` with the Hessian's (or, ``meat``, the meat's) binary weights ``h``,
        and what the same pass summed besides: ``[loss, certain weight, gradient (n + 1)]``.

        One Numba pass for ``h``, ``q = sqrt(h)`` and the last row
        (:func:`~gpulogreg.backends._numba_kernels.binary_gram_weights`), then
        a SYRK per fixed chunk of :data:`HESSIAN_CHUNK_ROWS` rows, summed in
        chunk order (:func:`_weighted_syrk`).
        """
        w, b = self._binary_params(params)
        with _serial_when_small(self.n_samples):
            q, last, stats = nk.binary_gram_weights(self.X, self.y, self.sample_weight, w, b, meat)
        n = self.n_features
        p = n + int(self.fit_intercept)
        H = np.empty((p, p))
        H[:n, :n] = _weighted_syrk(self.X, q)
        if self.fit_intercept:
            H[n, :] = last
            H[:n, n] = last[:n]
        return H, stats

    def _gram(self, params: Array, weights: RowWeightRule, *, exact: bool = False) -> Array:
        """The baseline's chunked blocks with BLAS held to one thread.

        See :func:`_weighted_syrk` for the measured cost of OpenBLAS's own
        threads next to the Numba threads.
        """
        with one_blas_thread():
            return super()._gram(params, weights, exact=exact)


def _chunk_syrk(X: np.ndarray, q: np.ndarray, start: int, stop: int) -> Any:
    B = X[start:stop] * q[start:stop, None]  # float64 (q is float64)
    return B.T @ B  # NumPy recognises the transpose pair and calls SYRK


#: How the BLAS part of the binary Hessian is threaded (see :func:`_weighted_syrk`):
#: "threads" (the default) runs single-threaded BLAS calls on the chunks from a
#: pool of Python threads, one per Numba thread; "blas1" runs them one after
#: the other with BLAS limited to one thread; "blas" lets OpenBLAS use its own
#: threads. Kept selectable for bench/loss_grad_floor.py --hessian.
HESSIAN_STRATEGIES = ("threads", "blas1", "blas")
HESSIAN_STRATEGY = "threads"


def _weighted_syrk(X: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``X^T diag(q^2) X`` in float64, summed over fixed row chunks in order.

    The hazard: OpenBLAS worker threads keep spinning for a while after a
    call, and Numba's OpenMP workers after a parallel region; on a machine
    with as many cores as threads each side then slows the other. Newton
    alternates the two (Hessian, then loss_grad in the line search), so this
    was measured here (2-core Xeon, 1,000,000 x 100 float32, medians of 5,
    ``python bench/loss_grad_floor.py --hessian --no-numpy``; loss_grad
    "alone" runs after a 0.3 s pause):

    =========  =========  =====================  ===============  ==============
    strategy   Hessian    loss_grad right after  loss_grad alone  Newton iter.
    =========  =========  =====================  ===============  ==============
    threads     373 ms     21 ms                  27 ms            394 ms
    blas1       490 ms     45 ms                  47 ms            535 ms
    blas        489 ms     45 ms                  20 ms            533 ms
    =========  =========  =====================  ===============  ==============

    (a run with other jobs on the cores: threads 421 ms, blas1 591 ms, blas
    10537 ms for the Hessian, loss_grad after it 53 / 47 / 122 ms. On the
    2-core AMD EPYC, medians of 5: Hessian 266 / 433 / 351 ms, loss_grad
    after it 19.2 / 22.7 / 35.6 ms, alone 22.7 / 23.2 / 25.1 ms.)

    With OpenBLAS's own threads ("blas") the loss_grad that follows the
    Hessian is slowed 2.3x by the spinning BLAS workers, and under load every
    one of the 245 small SYRK calls waits for workers that compete with the
    spinning Numba workers. Limiting BLAS to one thread (threadpoolctl)
    removes both effects; running the chunks from a pool of Python threads
    (NumPy and BLAS release the GIL) gets the second core back. Each chunk is
    computed by single-threaded BLAS and the partial products are summed in
    chunk order, so the result does not depend on the number of threads.
    """
    m, n = X.shape
    bounds = [(a, min(a + HESSIAN_CHUNK_ROWS, m)) for a in range(0, m, HESSIAN_CHUNK_ROWS)]
    H = np.zeros((n, n))
    if HESSIAN_STRATEGY == "blas":
        for a, b in bounds:
            H += _chunk_syrk(X, q, a, b)
        return H
    with one_blas_thread():
        if HESSIAN_STRATEGY == "blas1" or len(bounds) == 1:
            for a, b in bounds:
                H += _chunk_syrk(X, q, a, b)
            return H
        workers = min(numba.get_num_threads(), len(bounds))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # map yields in chunk order whatever finishes first: a fixed-order sum.
            for part in pool.map(lambda ab: _chunk_syrk(X, q, ab[0], ab[1]), bounds):
                H += part
    return H
