"""The data layer: validation and conversion (the one place ``X`` may be copied).

Everything downstream (fit plan, backends, objective, solvers) trusts what
leaves this package: ``X`` is a 2-D, C-contiguous, finite float32 or float64
array in its own array namespace (NumPy or CuPy), or a Dask array of such row
blocks; labels are encoded as int32 class indices; sample weights are finite,
non-negative float64 with a positive sum. Out-of-core sources
(:class:`~gpulogreg.data.dataset.Dataset`) validate in their scan and prepare
their chunks here too (:mod:`gpulogreg.data.chunks`); mini-batch sources live
in :mod:`gpulogreg.data.batches`. Nothing here imports a backend.

Modules: ``validation`` (arrays), ``dask`` (Dask arrays), ``fit_data``
(the entry point for both), ``dataset`` and ``sources`` (out of core), ``chunks`` (chunk
preparation), ``batches`` (mini-batch sources).
"""

from __future__ import annotations

from gpulogreg._array import array_module_name, array_namespace, to_host
from gpulogreg.data.fit_data import prepare_fit_data
from gpulogreg.data.validation import (
    FitData,
    check_feature_names,
    check_labels,
    check_sample_weight,
    check_X,
    class_weights,
    encode_labels,
)

__all__ = [
    "FitData",
    "array_module_name",
    "array_namespace",
    "check_X",
    "check_feature_names",
    "check_labels",
    "check_sample_weight",
    "class_weights",
    "encode_labels",
    "prepare_fit_data",
    "to_host",
]
