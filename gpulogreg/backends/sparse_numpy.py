"""The sparse baseline: the NumPy baseline's formulas on a canonical CSR ``X``.

It is the reference for correctness and the yardstick of the sparse
benchmarks, as :class:`~gpulogreg.backends.numpy_backend.NumpyBackend` is for
dense data: one sparse matrix-vector product for ``z = X @ w``, elementwise
NumPy operations for the stable loss and the residual, one transposed product
``X.T @ r`` for the gradient, all through ``scipy.sparse`` (or
``cupyx.scipy.sparse``, whose matrices support the same operations).

``X`` is never densified. The Hessian, the meat and the observed information
are ``n_params x n_params`` dense matrices built from sparse products of row
chunks (``A^T diag(h) A`` with ``A = [X, 1]`` a sparse chunk): meant for the
small ``n_features`` of a Cholesky Newton step or of inference. Wide problems
use :meth:`hvp` and :meth:`hessian_diagonal` (Newton-CG), which cost one or
two passes over the stored values.

See :mod:`gpulogreg.backends.numpy_backend` for the formulas.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from gpulogreg._array import array_module_name
from gpulogreg._typing import Array
from gpulogreg.backends.numpy_backend import NumpyBackend

__all__ = ["SparseNumpyBackend"]


def sparse_module(X: Any) -> ModuleType:
    """``scipy.sparse`` or ``cupyx.scipy.sparse``: the library of the sparse matrix ``X``."""
    if array_module_name(X) == "cupy":
        return sys.modules["cupyx.scipy.sparse"]
    return sys.modules["scipy.sparse"]


class SparseNumpyBackend(NumpyBackend):
    """Unfused sparse baseline: sparse products and elementwise array operations.

    Parameters
    ----------
    X : CSR matrix of shape (n_samples, n_features)
        Validated canonical CSR (see :func:`gpulogreg.data.sparse.check_sparse`),
        ``scipy.sparse`` or ``cupyx.scipy.sparse``; never copied or densified.
    y : array of shape (n_samples,), int32
        Class indices in ``0 .. n_classes - 1``.
    sample_weight : array of shape (n_samples,), float64
        Non-negative weights summing to one.
    n_classes : int
        2 selects the binary (sigmoid) loss, more the multinomial (softmax) loss.
    fit_intercept : bool
    """

    name = "numpy"
    format = "csr"

    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        if getattr(X, "format", None) != "csr":
            raise TypeError(
                f"the sparse backends need a CSR matrix, got {type(X).__module__}."
                f"{type(X).__name__} (validate it with gpulogreg.data.check_X, which converts "
                "it once)"
            )
        self.sparse = sparse_module(X)
        super().bind(X, y, sample_weight)

    # -- products with X --------------------------------------------------------
    def _transpose_product(self, R: Array) -> tuple[Array, Array]:
        """``(R^T X, sum_i R_i)`` for residuals ``R`` of shape (m,) or (m, K)."""
        X = self.X
        product = (X.T @ R.astype(X.dtype)).astype(self.xp.float64)
        grad_coef = product.T if R.ndim == 2 else product
        return grad_coef, R.sum(axis=0)

    def gram_matvec(self, v: Array) -> Array:
        xp = self.xp
        n = self.n_features
        z = (self.X @ v[:n].astype(self.dtype)).astype(xp.float64)
        if self.fit_intercept:
            z = z + v[n]
        r = self.sample_weight * z
        out = (self.X.T @ r.astype(self.dtype)).astype(xp.float64)
        if self.fit_intercept:
            out = xp.concatenate([out, xp.reshape(r.sum(), (1,))])
        return out

    def _design(self, Xc: Array) -> Array:
        """``A = [X, 1]`` of a chunk as a sparse CSR matrix (``X`` itself without an intercept)."""
        if not self.fit_intercept:
            return Xc
        ones = self.xp.ones((Xc.shape[0], 1), dtype=Xc.dtype)
        return self.sparse.hstack([Xc, self.sparse.csr_matrix(ones)], format="csr")

    def _weighted_gram(self, A: Array, h: Array) -> Array:
        """``A^T diag(h) A`` of a sparse chunk, as a dense float64 matrix."""
        Ah = A.astype(self.xp.float64).multiply(h[:, None]).tocsr()
        return (A.T.astype(self.xp.float64) @ Ah).toarray()

    def _residual_product(self, R: Array, A: Array) -> Array:
        """``R^T A`` in float64 for a chunk's residuals ``R`` (m, K) and sparse design ``A``."""
        return (A.T.astype(self.xp.float64) @ R).T

    # -- protocol -----------------------------------------------------------------
    def hessian_diagonal(self, params: Array) -> Array:
        """The diagonal of :meth:`hessian`: ``sum_i h_i a_ij^2`` per output, in row chunks.

        Binary ``h = s p (1 - p)``; multinomial, for class ``k``,
        ``h_k = s P_k (1 - P_k)``. The squared values are formed per chunk
        (never a copy of the whole ``X``).
        """
        xp = self.xp
        K, d, n = self.n_outputs, self.layout.n_cols, self.n_features
        out = xp.zeros((K, d), dtype=xp.float64)
        for rows in self._row_chunks():
            Xc = self.X[rows]
            z = self._linear(params, Xc)
            s = self.sample_weight[rows]
            if K == 1:
                H = self._curvature(z, s)[:, None]
            else:
                P = self._probabilities(z)
                H = s[:, None] * P * (1.0 - P)
            out[:, :n] += (Xc.astype(xp.float64).power(2).T @ H).T
            if self.fit_intercept:
                out[:, n] += H.sum(axis=0)
        return out.ravel()

    def cluster_scores(self, params: Array, groups: Array, n_groups: int) -> Array:
        """``S[c] = sum_{i: groups[i] == c} s_i g_i``, a sparse product per chunk and output.

        Per chunk and output ``k``, the ``(n_groups x chunk)`` indicator
        matrix ``G`` with entries ``s_i R_ik`` at ``(groups[i], i)`` gives
        ``S_k += G A``: a sparse product, summed in the fixed order of the
        stored values, so the result is deterministic.
        """
        xp = self.xp
        groups = self._check_groups(groups, n_groups)
        K, d = self.n_outputs, self.layout.n_cols
        S = xp.zeros((int(n_groups), K, d), dtype=xp.float64)
        for rows in self._row_chunks():
            Xc = self.X[rows]
            R = self._raw_residual(self._chunk_linear(params, Xc, exact=True), rows)
            R = xp.reshape(R, (Xc.shape[0], K)) * self.sample_weight[rows][:, None]
            A = self._design(Xc).astype(xp.float64)
            columns = xp.arange(Xc.shape[0])
            for k in range(K):
                G = self.sparse.csr_matrix(
                    (R[:, k], (groups[rows], columns)), shape=(int(n_groups), Xc.shape[0])
                )
                S[:, k, :] += (G @ A).toarray()
        return xp.reshape(S, (int(n_groups), K * d))
