"""The plain, unfused baseline backend, written against an array namespace ``xp``.

It is the reference for correctness and the yardstick of every benchmark: one
BLAS matrix-vector product for ``z = X @ w``, elementwise NumPy operations for
the stable loss and the residual, a second BLAS product for ``X.T @ r``. The
same code runs on CuPy arrays (the CuPy backend subclasses it and replaces the
elementwise middle by its fused kernel).

Formulas (binary, ``y`` in {0, 1}, normalised weights ``s`` summing to one)::

    z_i    = x_i . w + b
    loss   = sum_i s_i [max(z_i, 0) - y_i z_i + log1p(exp(-|z_i|))]
    p_i    = sigmoid(z_i) = where(z_i >= 0, 1, e_i) / (1 + e_i),  e_i = exp(-|z_i|)
    grad_w = X^T r,  grad_b = sum_i r_i,   r_i = s_i (p_i - y_i)
    H      = A^T diag(s_i p_i (1 - p_i)) A,   A = [X, 1]

Multinomial (``K`` classes, ``Y`` one-hot)::

    Z      = X W^T + b                       (m, K)
    loss   = sum_i s_i [logsumexp(Z_i) - Z_{i, y_i}]
    R      = diag(s) (softmax(Z) - Y);  grad_W = R^T X,  grad_b = sum_i R_i
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from gpulogreg._array import array_namespace
from gpulogreg._layout import HasLayout, ParamLayout
from gpulogreg._typing import Array

__all__ = ["NumpyBackend"]

#: Rows per chunk when building the Hessian: bounds the temporary to
#: ``HESSIAN_CHUNK_ROWS * n_features`` floats whatever ``n_samples`` is.
HESSIAN_CHUNK_ROWS = 65536


class NumpyBackend(HasLayout):
    """Unfused baseline: BLAS products and elementwise array operations.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), float32 or float64, C-contiguous
        Validated features (see :func:`gpulogreg.data.check_X`); never copied.
    y : array of shape (n_samples,), int32
        Class indices in ``0 .. n_classes - 1``.
    sample_weight : array of shape (n_samples,), float64
        Non-negative weights summing to one.
    n_classes : int
        2 selects the binary (sigmoid) loss, more the multinomial (softmax) loss.
    fit_intercept : bool
    """

    name = "numpy"

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int = 2,
        fit_intercept: bool = True,
    ) -> None:
        self.n_classes = int(n_classes)
        self.layout = ParamLayout.for_classes(int(X.shape[1]), self.n_classes, fit_intercept)
        self.bind(X, y, sample_weight)

    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        """Compute on other rows from now on (the next mini-batch), keeping everything else.

        ``X`` must have the same number of features, dtype and namespace; the
        backend holds ``X`` itself, never a copy.
        """
        xp: ModuleType = array_namespace(X)
        n_samples, n_features = (int(d) for d in X.shape)
        if n_features != self.layout.n_features:
            raise ValueError(f"X has {n_features} features, expected {self.layout.n_features}")
        self.xp = xp
        self.X = X
        self.dtype = np.dtype(X.dtype)
        self.n_samples, self.n_features = n_samples, n_features
        self.y = xp.ascontiguousarray(y, dtype=xp.int32)
        self.sample_weight = xp.ascontiguousarray(sample_weight, dtype=xp.float64)
        if self.y.shape != (self.n_samples,) or self.sample_weight.shape != (self.n_samples,):
            raise ValueError(
                f"y and sample_weight must have shape ({self.n_samples},), got "
                f"{self.y.shape} and {self.sample_weight.shape}"
            )
        self._encode_labels()

    def _encode_labels(self) -> None:
        """The baseline's float labels (binary) or one-hot matrix (multinomial)."""
        xp = self.xp
        if self.n_outputs == 1:
            self.y_float = self.y.astype(xp.float64)
        else:
            self.y_onehot = xp.zeros((self.n_samples, self.n_outputs), dtype=xp.float64)
            self.y_onehot[xp.arange(self.n_samples), self.y] = 1.0

    # -- parameter layout ---------------------------------------------------
    def split(self, params: Array) -> tuple[Array, Array | float]:
        """Split ``params`` into coef ``(n_outputs, n_features)`` and intercept(s)."""
        return self.layout.split(params)

    def join(self, grad_coef: Array, grad_intercept: Array) -> Array:
        """Inverse of :meth:`split` for gradients (float64, flat)."""
        return self.layout.join(grad_coef, grad_intercept, self.xp)

    # -- linear part ----------------------------------------------------------
    def _linear(self, params: Array, X: Array) -> Array:
        """``X @ coef.T + intercept`` in float64: (m,) binary, (m, K) multinomial."""
        coef, intercept = self.split(params)
        # BLAS in X's dtype (no upcast copy of X); the product is then widened.
        z = (X @ coef.T.astype(X.dtype, copy=False)).astype(self.xp.float64)
        z = z + intercept
        return z[:, 0] if self.n_outputs == 1 else z

    def _transpose_product(self, R: Array) -> tuple[Array, Array]:
        """``(R^T X, sum_i R_i)`` for residuals ``R`` of shape (m,) or (m, K)."""
        X = self.X
        if R.ndim == 1:
            grad_coef = (R.astype(X.dtype) @ X).astype(self.xp.float64)
        else:
            grad_coef = (R.T.astype(X.dtype) @ X).astype(self.xp.float64)
        return grad_coef, R.sum(axis=0)

    def decision(self, params: Array, X: Array) -> Array:
        return self._linear(params, X)

    # -- pointwise loss -------------------------------------------------------
    def _pointwise(self, z: Array) -> tuple[Array, Array]:
        """Per-sample loss and residual (``p - y``), unweighted."""
        xp = self.xp
        if self.n_outputs == 1:
            e = xp.exp(-xp.abs(z))
            loss = xp.maximum(z, 0.0) - self.y_float * z + xp.log1p(e)
            p = xp.where(z >= 0, 1.0, e) / (1.0 + e)
            return loss, p - self.y_float
        zmax = z.max(axis=1, keepdims=True)
        ez = xp.exp(z - zmax)
        sum_ez = ez.sum(axis=1, keepdims=True)
        logsumexp = (zmax + xp.log(sum_ez))[:, 0]
        loss = logsumexp - (z * self.y_onehot).sum(axis=1)
        return loss, ez / sum_ez - self.y_onehot

    def _curvature(self, z: Array, s: Array) -> Array:
        """Binary Newton weights ``s_i p_i (1 - p_i)``, stable for any finite ``z``."""
        xp = self.xp
        e = xp.exp(-xp.abs(z))
        return s * e / (1.0 + e) ** 2

    # -- protocol -------------------------------------------------------------
    def loss(self, params: Array) -> float:
        z = self._linear(params, self.X)
        loss, _ = self._pointwise(z)
        return float(self.sample_weight @ loss)

    def loss_grad(self, params: Array) -> tuple[float, Array]:
        loss, grad = self.loss_grad_lazy(params)
        return float(loss), grad

    def loss_grad_lazy(self, params: Array) -> tuple[Any, Array]:
        """:meth:`loss_grad` with the loss left where it was computed (0-d, in ``xp``)."""
        z = self._linear(params, self.X)
        loss, residual = self._pointwise(z)
        s = self.sample_weight
        R = residual * (s if residual.ndim == 1 else s[:, None])
        grad_coef, grad_intercept = self._transpose_product(R)
        return s @ loss, self.join(grad_coef, grad_intercept)

    def hvp(self, params: Array, v: Array) -> Array:
        xp = self.xp
        z = self._linear(params, self.X)
        zv = self._linear(v, self.X)
        if self.n_outputs == 1:
            R = self._curvature(z, self.sample_weight) * zv
        else:
            zmax = z.max(axis=1, keepdims=True)
            ez = xp.exp(z - zmax)
            P = ez / ez.sum(axis=1, keepdims=True)
            R = P * (zv - (P * zv).sum(axis=1, keepdims=True)) * self.sample_weight[:, None]
        grad_coef, grad_intercept = self._transpose_product(R)
        return self.join(grad_coef, grad_intercept)

    def gram_matvec(self, v: Array) -> Array:
        xp = self.xp
        n = self.n_features
        w = v[:n]
        z = (self.X @ w.astype(self.dtype)).astype(xp.float64)
        if self.fit_intercept:
            z = z + v[n]
        r = self.sample_weight * z
        out = (r.astype(self.dtype) @ self.X).astype(xp.float64)
        if self.fit_intercept:
            out = xp.concatenate([out, xp.reshape(r.sum(), (1,))])
        return out

    def hessian(self, params: Array) -> Array:
        """Hessian built in row chunks: the temporary is ``chunk x n_features``."""
        xp = self.xp
        p = self.n_params
        H = xp.zeros((p, p), dtype=xp.float64)
        for start in range(0, self.n_samples, HESSIAN_CHUNK_ROWS):
            rows = slice(start, min(start + HESSIAN_CHUNK_ROWS, self.n_samples))
            self._add_hessian_chunk(H, params, rows)
        return H

    def _add_hessian_chunk(self, H: Array, params: Array, rows: slice) -> None:
        xp = self.xp
        Xc = self.X[rows]
        if self.fit_intercept:
            Ac = xp.concatenate([Xc, xp.ones((Xc.shape[0], 1), dtype=Xc.dtype)], axis=1)
        else:
            Ac = Xc
        z = self._linear(params, Xc)
        s = self.sample_weight[rows]
        if self.n_outputs == 1:
            h = self._curvature(z, s)
            H += _weighted_gram(Ac, h)
            return
        zmax = z.max(axis=1, keepdims=True)
        ez = xp.exp(z - zmax)
        P = ez / ez.sum(axis=1, keepdims=True)
        d = Ac.shape[1]
        for k in range(self.n_outputs):
            for j in range(k, self.n_outputs):
                h = s * P[:, k] * ((1.0 if j == k else 0.0) - P[:, j])
                block = _weighted_gram(Ac, h)
                H[k * d : (k + 1) * d, j * d : (j + 1) * d] += block
                if j != k:
                    H[j * d : (j + 1) * d, k * d : (k + 1) * d] += block.T


def _weighted_gram(A: Array, h: Array) -> Any:
    """``A^T diag(h) A`` in float64 through one BLAS call on a chunk."""
    Ah = A * h[:, None]
    return Ah.T @ A.astype(Ah.dtype, copy=False)
