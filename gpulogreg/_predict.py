"""Prediction from fitted coefficients: decision values, probabilities, labels.

Every function works in the namespace of its input (NumPy in, NumPy out; CuPy
in, CuPy out; a Dask array in, a lazy Dask array out) and evaluates the link
functions without overflow for any finite decision value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, is_sparse, to_host
from gpulogreg._typing import Array

__all__ = ["decision_values", "labels", "log_probabilities", "probabilities"]


def decision_values(X: Array, coef: Any, intercept: np.ndarray) -> Array:
    """``X @ coef.T + intercept`` in float64: (m,) for one output, else (m, n_outputs).

    ``X`` is a validated array (see :func:`gpulogreg.data.check_X` with ``lazy``).
    ``coef`` is an array, or a SciPy sparse matrix (a sparsified model), which
    multiplies NumPy and SciPy data as it is and other data densified.
    """
    if is_sparse(coef) and array_module_name(X) != "numpy":
        coef = coef.toarray()
    if array_module_name(X) == "dask":
        from gpulogreg.backends.dask_backend import decision_blocks

        return decision_blocks(X, coef, intercept)
    xp = array_namespace(X)
    if is_sparse(coef):  # SciPy's product: the stored nonzeros only
        product = X @ coef.T.astype(X.dtype)
        product = product.toarray() if is_sparse(product) else np.asarray(product)
    else:  # BLAS in X's dtype (X is never upcast)
        product = X @ xp.asarray(coef, dtype=X.dtype).T
    scores = product.astype(xp.float64) + xp.asarray(intercept, dtype=xp.float64)
    return scores[:, 0] if scores.shape[1] == 1 else scores


def _sigmoid(z: Array, xp: Any) -> Array:
    """Sigmoid without overflow for any finite ``z``."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0, e) / (1.0 + e)


def probabilities(scores: Array, *, ovr: bool) -> Array:
    """Class probabilities (n_samples, n_classes) from decision values.

    Binary: ``[1 - sigmoid(z), sigmoid(z)]``; one-vs-rest: the per-class
    sigmoids normalised to sum to one; multinomial: the softmax.
    """
    xp = array_namespace(scores)
    if scores.ndim == 1:
        p = _sigmoid(scores, xp)
        return xp.stack([1.0 - p, p], axis=1)
    if ovr:
        P = _sigmoid(scores, xp)
        return P / P.sum(axis=1, keepdims=True)
    E = xp.exp(scores - scores.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def log_probabilities(scores: Array, *, ovr: bool) -> Array:
    """Logarithm of :func:`probabilities`, computed stably."""
    xp = array_namespace(scores)
    if scores.ndim == 1:
        # log sigmoid(z) = -log1p(exp(-z)), evaluated without overflow.
        log_p1 = -(xp.maximum(-scores, 0.0) + xp.log1p(xp.exp(-xp.abs(scores))))
        return xp.stack([log_p1 - scores, log_p1], axis=1)
    if ovr:
        return xp.log(probabilities(scores, ovr=True))
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def labels(scores: Array, classes: np.ndarray) -> Array:
    """The class of the largest decision value (binary: ``z > 0``), shape (n_samples,).

    Numeric labels stay on the device of ``scores``; other labels come back as
    a NumPy array.
    """
    xp = array_namespace(scores)
    index = (scores > 0).astype(xp.int64) if scores.ndim == 1 else scores.argmax(axis=1)
    if array_module_name(index) == "dask":
        from gpulogreg.backends.dask_backend import take_classes

        return take_classes(index, classes)
    if xp is np:
        return classes[index]
    if classes.dtype.kind in "biuf":
        return xp.asarray(classes)[index]
    return classes[to_host(index)]
