"""``prepare_fit_data``: validated training data from in-memory or Dask arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpulogreg._array import array_module_name
from gpulogreg.data.validation import FitData, prepare_arrays

__all__ = ["prepare_fit_data"]


def prepare_fit_data(
    X: Any,
    y: Any,
    sample_weight: Any = None,
    *,
    class_weight: Any = None,
    classes: np.ndarray | None = None,
    dtype: Any = None,
    min_classes: int = 2,
) -> FitData:
    """Validate and convert everything ``fit`` needs, once.

    In-memory input (NumPy, CuPy, DataFrames) goes through
    :func:`~gpulogreg.data.validation.prepare_arrays`; a Dask ``X`` stays a
    Dask array, validated by one pass over its blocks
    (:func:`~gpulogreg.data.dask.prepare_dask`).

    Raises
    ------
    ValueError, TypeError
        Naming the problem and where it is (row, column, block).
    """
    options: dict[str, Any] = {
        "class_weight": class_weight,
        "classes": classes,
        "dtype": dtype,
        "min_classes": min_classes,
    }
    if array_module_name(X) == "dask":
        from gpulogreg.data.dask import prepare_dask

        return prepare_dask(X, y, sample_weight, **options)
    return prepare_arrays(X, y, sample_weight, **options)
