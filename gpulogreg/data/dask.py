"""Validation of Dask training data, without bringing X to the client.

Shapes and dtypes are
checked at once; X, y and the weights are persisted (each block computed once,
kept in the workers' memory for the validation pass and for training); then
ONE pass over the row blocks reports, per block, the first NaN/inf of X, the
first bad label and the first bad weight (with their global rows), and the
block's distinct labels with their weight sums. The client merges these small
results in block order. Labels are then encoded and weights normalised lazily,
block by block, exactly as for in-memory data.
"""

from __future__ import annotations

import math
import warnings
from itertools import repeat
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, is_sparse
from gpulogreg._compat import DataConversionWarning
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg._typing import Array
from gpulogreg.data.validation import (
    FitData,
    _check_n_classes,
    _check_weight_values,
    _first_nonfinite,
    _host_values,
    _nonfinite_message,
    check_X,
    class_weights,
    encode_labels,
    shown,
)

__all__ = ["prepare_dask"]


def _known_rows(a: Any) -> Any:
    """A Dask array whose row-chunk sizes are known (computed once when they are not)."""
    if any(math.isnan(c) for c in a.chunks[0]):
        a = a.compute_chunk_sizes()
    return a


def _as_row_blocks(a: Any, row_chunks: tuple[int, ...], name: str) -> Any:
    """A 1-D ``y`` or ``sample_weight`` as a Dask array chunked like the rows of X.

    Accepts Dask arrays (rechunked when their chunks differ) and anything
    :func:`encode_labels` accepts (wrapped with ``dask.array.from_array``).
    """
    import dask.array as da

    on_dask = array_module_name(a) == "dask"
    a = _known_rows(a) if on_dask else np.asarray(_host_values(a))
    n_samples = sum(row_chunks)
    if name == "y" and a.ndim == 2 and a.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; "
            "pass y of shape (n_samples,), for example with y.ravel()",
            DataConversionWarning,
            stacklevel=4,
        )
        a = a[:, 0]
    if a.ndim != 1:
        raise InputValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] != n_samples:
        raise InputValueError(
            f"X has {n_samples} rows but y has {a.shape[0]} labels"
            if name == "y"
            else f"sample_weight has {a.shape[0]} entries but X has {n_samples} rows"
        )
    if name == "sample_weight" and a.dtype.kind not in "biuf":
        raise InputTypeError("sample_weight must be numeric")
    if not on_dask:
        return da.from_array(a, chunks=(row_chunks,))
    return a if a.chunks[0] == row_chunks else a.rechunk((row_chunks,))


def _dask_block_summary(
    X: Array, y: Any, sample_weight: Any, row_offset: int
) -> tuple[str | None, str | None, str | None, np.ndarray, np.ndarray]:
    """One row block's part of the validation pass (runs where the block lives).

    Returns
    -------
    x_error, y_error, weight_error : str or None
        Message naming the block's first bad entry by its global row.
    classes : ndarray
        Distinct labels of the block, sorted.
    weight_sums : ndarray of float64
        Sum of the sample weights (or count) of each of ``classes``.
    """
    # Sparse blocks were checked when they were made canonical (check_sparse).
    bad = None if is_sparse(X) else _first_nonfinite(X)
    x_error = None if bad is None else _nonfinite_message("X", bad[0] + row_offset, *bad[1:])
    y_error = weight_error = None
    classes, index = np.empty(0), np.empty(0, dtype=np.int32)
    try:
        classes, index = encode_labels(y, row_offset=row_offset)
    except ValueError as exc:
        y_error = str(exc)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(_host_values(sample_weight), dtype=np.float64)
        try:
            _check_weight_values(weights, row_offset)
        except ValueError as exc:
            weight_error = str(exc)
    if y_error is not None or weight_error is not None:
        return x_error, y_error, weight_error, classes, np.empty(0)
    sums = np.bincount(index, weights=weights, minlength=len(classes)).astype(np.float64)
    return x_error, y_error, weight_error, classes, sums


def _encode_block(y: Any, classes: np.ndarray) -> np.ndarray:
    """Class indices of a block of labels already validated against ``classes``."""
    return np.searchsorted(classes, np.asarray(_host_values(y))).astype(np.int32)


def _weight_block(
    y_index: np.ndarray, sample_weight: Any, multipliers: np.ndarray, weight_sum: float
) -> np.ndarray:
    """Normalised weights ``s_i c_{y_i} / W`` of a block (as :func:`prepare_fit_data`)."""
    sw = multipliers[y_index]
    if sample_weight is not None:
        sw = np.asarray(_host_values(sample_weight), dtype=np.float64) * sw
    return np.asarray(sw / weight_sum)


def prepare_dask(
    X: Any,
    y: Any,
    sample_weight: Any,
    *,
    class_weight: Any,
    classes: np.ndarray | None,
    dtype: Any,
    min_classes: int,
) -> FitData:
    """`prepare_fit_data` for a Dask ``X``: one validation pass, X never leaves the workers.

    Returns
    -------
    FitData
        ``X``: Dask array, one column chunk, persisted; ``y`` (int32 class
        indices) and ``sample_weight`` (normalised): lazy Dask arrays with the
        row chunks of ``X``.
    """
    import dask
    import dask.array as da

    X, _ = check_X(_known_rows(X), dtype=dtype, lazy=True)
    rows = tuple(int(r) for r in X.chunks[0])
    y = _as_row_blocks(y, rows, "y")
    if sample_weight is not None and np.isscalar(sample_weight):
        sample_weight = da.full(sum(rows), float(sample_weight), chunks=(rows,))  # type: ignore[arg-type]
    s = None if sample_weight is None else _as_row_blocks(sample_weight, rows, "sample_weight")
    X, y, s = dask.persist(X, y, s)
    offsets = np.cumsum((0, *rows[:-1])).tolist()
    s_blocks = repeat(None) if s is None else s.to_delayed()
    summary = dask.delayed(_dask_block_summary)
    parts = dask.compute(
        *[
            summary(xb, yb, sb, offset)
            for xb, yb, sb, offset in zip(
                X.to_delayed().ravel(), y.to_delayed(), s_blocks, offsets, strict=False
            )
        ]
    )
    for kind in range(3):  # X first, then y, then the weights (as for in-memory data)
        for part in parts:
            if part[kind] is not None:
                raise InputValueError(part[kind])
    found = np.unique(np.concatenate([part[3] for part in parts]))
    if classes is None:
        classes = found
    else:
        pos = np.clip(np.searchsorted(classes, found), 0, len(classes) - 1)
        unknown = classes[pos] != found
        if unknown.any():
            raise InputValueError(
                f"y contains label {shown(found[unknown][0])} not in classes {shown(classes)}"
            )
    _check_n_classes(len(found), found[0], min_classes)
    sums = np.zeros(len(classes))
    for part in parts:  # block order: the same sums every run
        sums[np.searchsorted(classes, part[3])] += part[4]
    if s is not None and sums.sum() <= 0:
        raise InputValueError("sample_weight sums to zero")
    k = len(classes)
    multipliers = class_weights(class_weight, classes, np.arange(k, dtype=np.int32), sums)
    weight_sum = float(multipliers @ sums)
    if weight_sum <= 0:
        raise InputValueError("the sample and class weights sum to zero")
    index_meta = np.empty(0, dtype=np.int32)
    y_index = y.map_blocks(_encode_block, classes, dtype=np.int32, meta=index_meta)
    weights = da.map_blocks(
        _weight_block,
        y_index,
        s,
        multipliers,
        weight_sum,
        dtype=np.float64,
        meta=np.empty(0, dtype=np.float64),
    )
    return FitData(
        X=X,
        y=y_index,
        sample_weight=weights,
        weight_sum=weight_sum,
        classes=classes,
        feature_names=None,
    )
