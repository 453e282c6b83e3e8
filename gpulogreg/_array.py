"""Array-module detection and host transfer, without importing CuPy or Dask.

The one home of "which array library owns this array" for the whole package.
CuPy and Dask are recognised as array-api-compat does: an object can only be
one of their arrays if their module is already in ``sys.modules``, so asking
never imports them. This module imports nothing from the project.
"""

from __future__ import annotations

import contextlib
import sys
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "array_module_name",
    "array_namespace",
    "device_of",
    "host_float64",
    "host_scalars",
    "is_sparse",
    "to_host",
]


def array_module_name(a: Any) -> str:
    """Name of the array library that owns ``a``: ``"cupy"``, ``"dask"`` or ``"numpy"``.

    Anything that is neither a CuPy nor a Dask array (NumPy arrays, lists,
    DataFrames, scalars) counts as ``"numpy"``; a ``cupyx.scipy.sparse``
    matrix counts as ``"cupy"`` (its arrays live on the GPU) and a
    ``scipy.sparse`` one as ``"numpy"``.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(a, cupy.ndarray):
        return "cupy"
    if _is_cupyx_sparse(a):
        return "cupy"
    dask_array = sys.modules.get("dask.array")
    if dask_array is not None and isinstance(a, dask_array.Array):
        return "dask"
    return "numpy"


def is_sparse(a: Any) -> bool:
    """Whether ``a`` is a ``scipy.sparse`` or ``cupyx.scipy.sparse`` matrix or array.

    Neither library is imported: an object can only be one of their sparse
    types if the module is loaded already.
    """
    scipy_sparse = sys.modules.get("scipy.sparse")
    if scipy_sparse is not None and scipy_sparse.issparse(a):
        return True
    return _is_cupyx_sparse(a)


def _is_cupyx_sparse(a: Any) -> bool:
    cupyx_sparse = sys.modules.get("cupyx.scipy.sparse")
    return cupyx_sparse is not None and bool(cupyx_sparse.issparse(a))


def array_namespace(a: Any) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) that computes with ``a``."""
    if array_module_name(a) == "cupy":
        return sys.modules["cupy"]
    return np


def to_host(a: Any) -> Any:
    """``a`` in host memory: a CuPy array is copied to NumPy, anything else returned as is."""
    return a.get() if array_module_name(a) == "cupy" else a


def host_float64(a: Any) -> np.ndarray:
    """``a`` as a host float64 NumPy array (one device-to-host copy for CuPy input)."""
    return np.asarray(to_host(a), dtype=np.float64)


def host_scalars(*values: Any) -> tuple[float, ...]:
    """Python floats of scalars that may live on a device, in one device-to-host copy.

    ``values`` are Python floats or 0-d arrays; the CuPy ones are stacked on
    the device and fetched together (one synchronising transfer instead of one
    per value), the others converted where they are (no host-to-device copy).
    """
    where = [i for i, v in enumerate(values) if array_module_name(v) == "cupy"]
    out = [float(v) if i not in where else 0.0 for i, v in enumerate(values)]
    if where:
        xp = array_namespace(values[where[0]])
        stacked = xp.stack([values[i].astype(xp.float64).reshape(()) for i in where])
        for i, value in zip(where, stacked.get().tolist(), strict=True):
            out[i] = float(value)
    return tuple(out)


def device_of(a: Any) -> AbstractContextManager[Any]:
    """``with`` it to run CuPy work on the device holding ``a``; a no-op for host arrays.

    CuPy runs every operation (cuBLAS products, elementwise kernels,
    allocations) on the *current* device, whatever device its arrays are on;
    ``a.device`` (a ``cupy.cuda.Device``) makes ``a``'s device current.
    """
    if array_module_name(a) == "cupy":
        device: AbstractContextManager[Any] = a.device
        return device
    return contextlib.nullcontext()
