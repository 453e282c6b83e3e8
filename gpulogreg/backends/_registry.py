"""The backend registry: names to classes, imported on first use.

Kept apart from :mod:`gpulogreg.backends` (selection and placement) so that
backends that build inner backends (the Dask blocks) can look classes up
without importing the package that imports them.
"""

from __future__ import annotations

import importlib

from gpulogreg._errors import InputValueError

__all__ = ["BACKENDS", "SPARSE_BACKENDS", "get_backend_class"]

#: name -> "module:class", imported on first use.
BACKENDS: dict[str, str] = {
    "numpy": "gpulogreg.backends.numpy_backend:NumpyBackend",
    "numba": "gpulogreg.backends.numba_backend:NumbaBackend",
    "cupy": "gpulogreg.backends.cupy_backend:CupyBackend",
    "dask": "gpulogreg.backends.dask_backend:DaskBackend",
}
#: The same names for a canonical CSR ``X`` (see :mod:`gpulogreg.data.sparse`).
SPARSE_BACKENDS: dict[str, str] = {
    "numpy": "gpulogreg.backends.sparse_numpy:SparseNumpyBackend",
    "numba": "gpulogreg.backends.sparse_numba:SparseNumbaBackend",
    "cupy": "gpulogreg.backends.sparse_cupy:SparseCupyBackend",
}


def get_backend_class(name: str, *, sparse: bool = False) -> type:
    """Import and return the backend class registered under ``name`` (CSR: ``sparse``)."""
    registry = SPARSE_BACKENDS if sparse else BACKENDS
    if name not in registry:
        raise InputValueError(f"backend={name!r} does not take sparse data")
    module_name, _, class_name = registry[name].partition(":")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls
