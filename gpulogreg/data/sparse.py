"""Sparse features: validation and the one conversion to canonical CSR.

A validated sparse ``X`` is a **canonical CSR matrix** of the input's library
(``scipy.sparse`` on the host, ``cupyx.scipy.sparse`` on the GPU) and kind
(``csr_matrix`` or ``csr_array``):

* CSC, COO and the other formats are converted to CSR here, once (the one
  place where sparse data may be copied);
* ``data`` stays float32 or float64 as given (other dtypes become float64,
  as dense input does) and holds only finite values (explicit zeros are
  allowed);
* each row's ``indices`` are strictly increasing (unsorted rows are sorted
  and duplicated entries summed, as ``scipy.sparse``'s ``sum_duplicates``
  does, once, on a copy: the caller's matrix is never modified);
* ``indices`` and ``indptr`` are both int32 when the number of stored values
  and ``n_features`` fit in int32, both int64 otherwise
  (:func:`index_dtype`).

The structure is checked before it is used: ``indptr`` starts at zero, never
decreases and ends at the number of stored values; every index lies in
``[0, n_features)``. A problem is reported with its row (and column).
Nothing here ever builds a dense ``n_samples x n_features`` array: the checks
are vectorised over the stored values (a few temporaries of ``nnz`` booleans).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, device_of
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg._typing import Array

__all__ = ["INT32_MAX", "check_sparse", "index_dtype"]

#: The largest value an int32 index or row pointer can hold.
INT32_MAX = int(np.iinfo(np.int32).max)


def index_dtype(nnz: int, n_features: int) -> np.dtype[Any]:
    """The index type of a validated CSR matrix: int32 when it fits, int64 otherwise.

    Parameters
    ----------
    nnz : int
        Stored values (the largest row pointer).
    n_features : int
        Columns (the largest column index is ``n_features - 1``).

    Returns
    -------
    numpy.dtype
        int32 when both ``nnz`` and ``n_features`` are at most 2**31 - 1,
        else int64 (for ``indices`` and ``indptr`` alike).
    """
    if nnz <= INT32_MAX and n_features <= INT32_MAX:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def check_sparse(
    X: Any,
    *,
    dtype: Any = None,
    name: str = "X",
    n_features: int | None = None,
    owner: str = "the model",
    row_offset: int = 0,
) -> Array:
    """Validate a sparse feature matrix and convert it to canonical CSR once.

    Parameters
    ----------
    X : scipy.sparse or cupyx.scipy.sparse matrix or array of shape (n_samples, n_features)
    dtype : {None, numpy.float32, numpy.float64}
        Target dtype of ``data``; None keeps float32 and float64 and converts
        everything else to float64.
    name : str
        Named in error messages.
    n_features : int, optional
        Expected number of columns (prediction on a fitted model).
    owner : str
        Who expects ``n_features``.
    row_offset : int
        Added to the rows that messages name (a block of larger data).

    Returns
    -------
    CSR matrix of the input's library and kind
        Canonical (see the module docstring); the input itself when it already
        qualifies (no copy).

    Raises
    ------
    TypeError
        Non-numeric or complex values.
    ValueError
        Wrong dimensions, no rows or columns, the wrong number of features, a
        malformed structure (with its row), NaN or infinity (with its row and
        column).
    """
    if getattr(X, "ndim", 2) != 2:
        raise InputValueError(f"{name} must be 2-D, got a {X.ndim}-D sparse array")
    if X.format != "csr":
        X = X.tocsr()  # the one conversion (CSC, COO, LIL, DOK, BSR, DIA)
    m, n = (int(d) for d in X.shape)
    for size, what in ((m, "sample(s)"), (n, "feature(s)")):
        if size == 0:
            raise InputValueError(
                f"{name} is empty: 0 {what} (shape={X.shape}) while a minimum of 1 is required."
            )
    if n_features is not None and n != n_features:
        raise InputValueError(
            f"{name} has {n} features, but {owner} is expecting {n_features} features as input"
        )
    target = _target_dtype(X.data.dtype, dtype, name)
    with device_of(X.data):
        xp = array_namespace(X.data)
        nnz = _check_structure(xp, X.indptr, X.indices, m, n, name, row_offset)
        trimmed = X.data.shape[0] != nnz or X.indices.shape[0] != nnz  # spare storage at the end
        data = X.data[:nnz] if trimmed else X.data
        indices = X.indices[:nnz] if trimmed else X.indices
        order = _row_order(xp, X.indptr, indices, nnz)
        if data.dtype != target:
            data = data.astype(target)
        elif order != "canonical":
            data = data.copy()  # sorting below works in place: never on the caller's values
        _check_finite_values(xp, data, indices, X.indptr, name, row_offset)
        idx = index_dtype(nnz, n)
        same = (
            order == "canonical"
            and data is X.data
            and X.indices.dtype == idx
            and X.indptr.dtype == idx
            and not trimmed
        )
        if same:
            return X
        out = _rebuild(X, data, indices.astype(idx), X.indptr.astype(idx))
        if order != "canonical":
            out.sum_duplicates()  # sorts each row and sums its repeated indices (on our copy)
            _check_finite_values(xp, out.data, out.indices, out.indptr, name, row_offset)
    return out


def _target_dtype(found: np.dtype[Any], dtype: Any, name: str) -> np.dtype[Any]:
    """``data``'s dtype after validation (the rules of dense input)."""
    if found.kind == "c":
        raise InputValueError(f"{name} is complex: Complex data not supported")
    if found.kind not in "biuf":
        raise InputTypeError(f"{name} must be numeric, got sparse values of dtype {found}")
    target = np.dtype(dtype) if dtype is not None else None
    if target is None:
        target = found if found in (np.float32, np.float64) else np.dtype(np.float64)
    if target not in (np.float32, np.float64):
        raise InputValueError(f"dtype must be float32 or float64, got {target}")
    return target


def _check_structure(
    xp: Any, indptr: Array, indices: Array, m: int, n: int, name: str, row_offset: int
) -> int:
    """Check the row pointers and the index range; return the number of stored values."""
    if indptr.shape != (m + 1,):
        raise InputValueError(
            f"{name} is a malformed CSR matrix: indptr has {indptr.shape[0]} entries for {m} rows"
        )
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise InputTypeError(f"{name} is a malformed CSR matrix: its indices are not integers")
    nnz = int(indptr[-1])
    if int(indptr[0]) != 0 or nnz > indices.shape[0]:
        raise InputValueError(
            f"{name} is a malformed CSR matrix: indptr must run from 0 to at most "
            f"{indices.shape[0]} (the stored indices), got {int(indptr[0])} .. {nnz}"
        )
    steps = xp.diff(indptr.astype(xp.int64))
    if m and bool((steps < 0).any()):
        row = int(xp.flatnonzero(steps < 0)[0]) + row_offset
        raise InputValueError(f"{name} is a malformed CSR matrix: indptr decreases at row {row}")
    if nnz:
        used = indices[:nnz]
        low, high = int(used.min()), int(used.max())
        if low < 0 or high >= n:
            bad = xp.flatnonzero((used < 0) | (used >= n))[0]
            row = _row_of(xp, indptr, int(bad)) + row_offset
            value = int(used[int(bad)])
            raise InputValueError(
                f"{name} has the column index {value} at row {row}, outside [0, {n}) "
                f"for {n} features"
            )
    return nnz


def _row_order(xp: Any, indptr: Array, indices: Array, nnz: int) -> str:
    """``"canonical"`` (strictly increasing in every row) or ``"unsorted"`` (sort and sum once)."""
    if nnz < 2:
        return "canonical"
    ascending = indices[1:] > indices[:-1]
    if bool(ascending.all()):
        return "canonical"
    # A row may start below the end of the previous one: mark the row starts.
    starts = xp.zeros(nnz, dtype=bool)
    inner = indptr[1:-1]
    starts[inner[inner < nnz]] = True
    return "canonical" if bool((ascending | starts[1:]).all()) else "unsorted"


def _check_finite_values(
    xp: Any, data: Array, indices: Array, indptr: Array, name: str, row_offset: int
) -> None:
    """Raise naming the row and column of the first NaN or infinity among the stored values."""
    if data.shape[0] == 0 or np.isfinite(float(data.sum(dtype=xp.float64))):
        return
    finite = xp.isfinite(data)
    if bool(finite.all()):
        return  # the sum overflowed, the values are finite
    k = int(xp.flatnonzero(~finite)[0])
    value = float(data[k])
    text = "NaN" if np.isnan(value) else str(value)
    raise InputValueError(
        f"{name} contains {text} at row {_row_of(xp, indptr, k) + row_offset}, "
        f"column {int(indices[k])}; "
        "remove or impute it"
    )


def _row_of(xp: Any, indptr: Array, k: int) -> int:
    """The row holding stored value number ``k``."""
    return int(xp.searchsorted(indptr, k, side="right")) - 1


def _rebuild(X: Any, data: Array, indices: Array, indptr: Array) -> Any:
    """A CSR matrix of ``X``'s library and kind on the given arrays (no copy of them).

    scipy's constructor would pick its own index dtype; the arrays are
    assigned after construction so that :func:`index_dtype`'s rule holds.
    """
    out = type(X)((data, indices, indptr), shape=X.shape, copy=False)
    if array_module_name(X) == "numpy":
        out.indices, out.indptr = indices, indptr
    return out
