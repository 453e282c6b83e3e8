"""Backend registry and selection from the array module and ``device``.

``backend="auto"`` picks ``"cupy"`` for CuPy arrays, ``"numba"`` for NumPy
arrays and ``"dask"`` for Dask arrays (whose blocks run the numba or cupy
backend of their chunk type, on the workers). ``device`` decides where host
data goes: ``"cpu"`` keeps it, ``"gpu"`` moves it to the GPU once (and raises
a clear error when there is no usable GPU), ``"auto"`` moves it only when
CuPy imports and a device is present. Importing this module imports neither
CuPy nor a backend.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, device_of, is_sparse
from gpulogreg._errors import InputValueError
from gpulogreg._typing import Array, Backend
from gpulogreg.backends._registry import BACKENDS, SPARSE_BACKENDS, get_backend_class
from gpulogreg.backends.errors import GPUMemoryError, GPUUnavailableError

__all__ = [
    "BACKENDS",
    "SPARSE_BACKENDS",
    "GPUMemoryError",
    "GPUUnavailableError",
    "get_backend_class",
    "gpu_status",
    "make_backend",
    "place_data",
    "release_device_memory",
    "resolve_backend",
    "to_device",
]

DEVICES = ("auto", "cpu", "gpu")


@lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """Whether a CUDA device is usable through CuPy, and why not.

    Returns
    -------
    available : bool
    reason : str
        Empty when available; otherwise what is missing (CuPy, a device, a
        recent enough driver).
    """
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed (pip install 'gpulogreg[gpu]')"
    except Exception as exc:  # a broken CUDA install raises all sorts of errors
        return False, f"CuPy failed to import: {exc}"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        text = str(exc)
        if "InsufficientDriver" in text:
            return False, f"the CUDA driver is missing or too old for this CuPy build ({text})"
        if "NoDevice" in text:
            return False, f"no CUDA device found ({text})"
        return False, f"CUDA runtime error: {text}"
    except Exception as exc:  # e.g. a CUDA library that fails to load
        return False, f"CUDA could not be initialised: {exc}"
    if count == 0:
        return False, "no CUDA device found"
    return True, ""


def resolve_backend(X: Array, backend: str = "auto", device: str = "auto") -> tuple[str, str]:
    """Choose the backend name and the target device for data ``X``.

    Returns
    -------
    backend : str
        A key of :data:`BACKENDS`.
    device : {"cpu", "gpu"}
    """
    if device not in DEVICES:
        raise InputValueError(f"device must be one of {DEVICES}, got {device!r}")
    if backend != "auto" and backend not in BACKENDS:
        raise InputValueError(
            f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}"
        )
    if backend == "dask" or array_module_name(X) == "dask":
        return _resolve_dask(X, backend, device)
    on_gpu = array_module_name(X) == "cupy"
    if device == "gpu" or backend == "cupy":
        if not on_gpu:  # data already on a GPU prove one is usable: no query
            available, reason = gpu_status()
            if not available:
                raise GPUUnavailableError(f"a GPU was requested but none is usable: {reason}")
        target = "gpu"
    elif device == "cpu":
        target = "cpu"
    elif backend in ("numba", "numpy") and not on_gpu:
        target = "cpu"  # an explicit CPU backend keeps host data on the host
    else:
        target = "gpu" if on_gpu or gpu_status()[0] else "cpu"
    if backend == "auto":
        backend = "cupy" if target == "gpu" else "numba"
    elif backend == "cupy" and target != "gpu":
        raise InputValueError("backend='cupy' cannot run with device='cpu'")
    elif backend != "cupy" and target == "gpu" and backend != "numpy":
        raise InputValueError(
            f"backend={backend!r} runs on the CPU; use device='cpu' or backend='cupy'"
        )
    return backend, target


def _resolve_dask(X: Array, backend: str, device: str) -> tuple[str, str]:
    """Dask arrays: blocks compute where their chunks are (CuPy: GPU) unless ``device`` says.

    ``device="gpu"`` moves NumPy blocks to the workers' GPUs once and
    ``"cpu"`` moves CuPy blocks to host memory once (see :func:`place_data`);
    ``"auto"`` keeps them where they are.
    """
    if array_module_name(X) != "dask":
        raise InputValueError("backend='dask' needs a Dask array X")
    if backend not in ("auto", "dask"):
        raise InputValueError(
            "Dask arrays train with backend='dask' (each block runs the numba or cupy "
            f"backend of its chunk type), got backend={backend!r}"
        )
    on_gpu = array_module_name(X._meta) == "cupy"  # the type of the chunks
    if device == "gpu" and not on_gpu:
        available, reason = gpu_status()
        if not available:
            raise GPUUnavailableError(f"a GPU was requested but none is usable: {reason}")
    target = "gpu" if device == "gpu" or (device == "auto" and on_gpu) else "cpu"
    return "dask", target


def to_device(a: Any, device: str) -> Any:
    """Move an array to ``device`` ("cpu" or "gpu") once; no-op when already there.

    A sparse matrix moves as CSR (see :func:`_sparse_to_device`).
    """
    on_gpu = array_module_name(a) == "cupy"
    if is_sparse(a):
        return _sparse_to_device(a, device, on_gpu)
    if device == "gpu" and not on_gpu:
        import cupy

        try:
            return cupy.asarray(a)
        except cupy.cuda.memory.OutOfMemoryError as exc:
            raise GPUMemoryError(
                f"an array of {getattr(a, 'nbytes', 0) / 1e9:.2f} GB does not fit in free GPU "
                f"memory ({exc}). Train out of core instead: pass a gpulogreg.Dataset (or use "
                "solver='minibatch'), which streams chunks to the GPU; or use device='cpu'."
            ) from None
    if device == "cpu" and on_gpu:
        return a.get()
    return a


def _sparse_to_device(a: Any, device: str, on_gpu: bool) -> Any:
    """A validated scipy CSR matrix to ``cupyx.scipy.sparse`` (or back) in one copy per array.

    ``data``, ``indices`` and ``indptr`` move as they are (dtype and index
    type kept: CuPy's constructor picks int32 only when the values fit, as
    the data layer's rule does), a ``csr_array`` stays an array, and the
    canonical-format flag comes along, so CuPy never re-checks or re-sorts.
    """
    if device == "gpu" and not on_gpu:
        import cupy
        import cupyx.scipy.sparse as cupyx_sparse

        if a.format != "csr":
            raise TypeError(f"sparse data move to the GPU as CSR, got format {a.format!r}")
        scipy_sparse = sys.modules["scipy.sparse"]
        as_array = isinstance(a, scipy_sparse.sparray)
        kind = cupyx_sparse.csr_array if as_array else cupyx_sparse.csr_matrix
        canonical = bool(a.has_canonical_format)
        try:
            arrays = (cupy.asarray(a.data), cupy.asarray(a.indices), cupy.asarray(a.indptr))
            out = kind(arrays, shape=a.shape)
        except cupy.cuda.memory.OutOfMemoryError as exc:
            nbytes = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
            raise GPUMemoryError(
                f"a sparse matrix of {nbytes / 1e9:.2f} GB does not fit in free GPU memory "
                f"({exc}). Train out of core instead: pass a gpulogreg.Dataset of CSR chunks "
                "(or use solver='minibatch'); or use device='cpu'."
            ) from None
        _check_index_type_kept(a, out)
        if canonical:
            out.has_canonical_format = True
        return out
    if device == "cpu" and on_gpu:
        return a.get()
    return a


def _check_index_type_kept(host: Any, placed: Any) -> None:
    """Raise when the GPU copy narrowed indices that need int64 (an old CuPy does).

    CuPy 14 keeps int64 indices; older ``cupyx.scipy.sparse`` matrices hold
    int32 only, which cannot address more than 2^31 - 1 stored values or
    columns: refused with the reason rather than computed wrong.
    """
    from gpulogreg.data.sparse import index_dtype

    nnz, n_features = int(host.data.shape[0]), int(host.shape[1])
    if index_dtype(nnz, n_features) != np.int64 or placed.indices.dtype == np.int64:
        return
    import cupy

    raise GPUUnavailableError(
        f"this CSR matrix ({nnz} stored values, {n_features} columns) needs int64 indices, "
        f"but CuPy {cupy.__version__} keeps only int32 ones on the GPU; use CuPy 14 or newer, "
        "or device='cpu'"
    )


def make_backend(
    X: Array,
    y: Array,
    sample_weight: Array,
    *,
    n_classes: int = 2,
    fit_intercept: bool = True,
    backend: str = "auto",
    device: str = "auto",
) -> Backend:
    """Build the backend for validated data, moving it to the chosen device once.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), validated
    y : array of shape (n_samples,), int32 class indices
    sample_weight : array of shape (n_samples,), float64, summing to one
    n_classes : int
    fit_intercept : bool
    backend : {"auto", "numpy", "numba", "cupy", "dask"}
    device : {"auto", "cpu", "gpu"}
    """
    name, target = resolve_backend(X, backend, device)
    X, y, sample_weight = place_data(X, y, sample_weight, n_classes=n_classes, device=target)
    cls = get_backend_class(name, sparse=is_sparse(X))
    instance: Backend = cls(X, y, sample_weight, n_classes=n_classes, fit_intercept=fit_intercept)
    return instance


def place_data(
    X: Array,
    y: Array,
    sample_weight: Array,
    *,
    n_classes: int,
    device: str,
    check_resident: bool = False,
) -> tuple[Array, Array, Array]:
    """Move validated training arrays to ``device`` ("cpu" or "gpu") once.

    Moving host data to the GPU first checks that it fits in free device
    memory (:class:`GPUMemoryError` otherwise, pointing to the streaming path;
    a CSR ``X`` by its stored values, with the CSC copy the GPU backend keeps);
    with ``check_resident`` (the fit plan, once per fit) data already on the
    GPU are checked too, for the working buffers a fit adds to them. Arrays
    already on ``device`` are returned as they are. Dask arrays have their
    blocks moved where they live (:func:`~gpulogreg.backends.dask_backend.place_blocks`).
    """
    if array_module_name(X) == "dask":
        from gpulogreg.backends.dask_backend import place_blocks

        return place_blocks(X, y, sample_weight, device, move=to_device)
    resident = array_module_name(X) == "cupy"
    if device == "gpu" and (check_resident or not resident):
        n_outputs = 1 if n_classes == 2 else n_classes
        with device_of(X):  # the device that will hold the fit
            if is_sparse(X):
                from gpulogreg.backends.sparse_cupy import check_sparse_device_memory

                check_sparse_device_memory(X, n_outputs, x_resident=resident)
            else:
                from gpulogreg.backends.cupy_backend import check_device_memory

                check_device_memory(X.shape[0], X.shape[1], X.dtype, n_outputs, x_resident=resident)
    X, y, sample_weight = (to_device(a, device) for a in (X, y, sample_weight))
    return X, y, sample_weight


def release_device_memory() -> None:
    """Return the blocks CuPy's memory pools cache to the driver (call after a GPU fit).

    A no-op when CuPy was never imported; never raises (it is a clean-up step).
    """
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return
    try:
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:  # no usable device: nothing was allocated
        return
