"""What this machine offers gpulogreg: versions, CPU threads, BLAS, Numba, CuPy/CUDA and GPUs.

:func:`system_info` is the function behind ``gpulogreg info``. It never fails
for want of an optional component: every section that cannot be filled says
why (``"installed": False``, ``"error": ...``) instead of raising.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from typing import Any

__all__ = ["format_system_info", "system_info"]


def _section(fn: Any) -> Any:
    """Run one section's probe; an unexpected failure becomes ``{"error": ...}``."""
    try:
        return fn()
    except Exception as exc:  # an info command must never crash
        return {"error": f"{type(exc).__name__}: {exc}"}


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    return info


def _blas() -> list[dict[str, Any]]:
    import numpy  # noqa: F401  (loads NumPy's BLAS so threadpoolctl can see it)
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: entry.get(k) for k in keys if k in entry} for entry in threadpool_info()]


def _numba(init_threading: bool) -> dict[str, Any]:
    if importlib.util.find_spec("numba") is None:
        return {"installed": False}
    import numba

    info: dict[str, Any] = {
        "installed": True,
        "version": numba.__version__,
        "num_threads": int(numba.config.NUMBA_NUM_THREADS),  # type: ignore[attr-defined]
        "threading_layer_requested": str(numba.config.THREADING_LAYER),  # type: ignore[attr-defined]
    }
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:
        # Not chosen until a parallel function has run: run a tiny one.
        if init_threading:
            _run_tiny_parallel_function()
            info["threading_layer"] = numba.threading_layer()
        else:
            info["threading_layer"] = None
    return info


def _run_tiny_parallel_function() -> None:
    import numba
    import numpy as np

    @numba.njit(parallel=True, cache=False)
    def _tiny(a: Any) -> Any:
        total = 0.0
        for i in numba.prange(a.shape[0]):
            total += a[i]
        return total

    _tiny(np.ones(8))


def _cupy() -> dict[str, Any]:
    if importlib.util.find_spec("cupy") is None:
        return {
            "installed": False,
            "reason": "CuPy is not installed (pip install 'gpulogreg[gpu]')",
        }
    from gpulogreg.backends import gpu_status

    available, reason = gpu_status()
    import cupy

    info: dict[str, Any] = {
        "installed": True,
        "version": cupy.__version__,
        "gpu_available": available,
    }
    if reason:
        info["reason"] = reason
    runtime = cupy.cuda.runtime
    for key, call in (
        ("cuda_runtime", runtime.runtimeGetVersion),
        ("cuda_driver", runtime.driverGetVersion),
    ):
        try:
            info[key] = _cuda_version(int(call()))
        except Exception as exc:
            info[key] = f"unavailable ({exc})"
    if available:
        info["devices"] = [_device(i) for i in range(int(runtime.getDeviceCount()))]
    return info


def _cuda_version(code: int) -> str | None:
    """CUDA's integer version (e.g. 12040) as "12.4"; 0 (no driver) as None."""
    if code <= 0:
        return None
    return f"{code // 1000}.{(code % 1000) // 10}"


def _device(index: int) -> dict[str, Any]:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(index)
    name = props.get("name", b"")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    info: dict[str, Any] = {
        "id": index,
        "name": name,
        "compute_capability": f"{props.get('major')}.{props.get('minor')}",
        "multiprocessors": props.get("multiProcessorCount"),
        "total_memory_bytes": props.get("totalGlobalMem"),
    }
    try:
        with cupy.cuda.Device(index) as device:
            free, _ = device.mem_info
        info["free_memory_bytes"] = int(free)
    except Exception as exc:
        info["free_memory_bytes"] = f"unavailable ({exc})"
    return info


def system_info(*, init_numba: bool = True) -> dict[str, Any]:
    """Versions and hardware relevant to gpulogreg, as a plain dict (JSON-serialisable).

    Parameters
    ----------
    init_numba : bool
        Numba chooses its threading layer when the first parallel function
        runs; with True (default) a tiny one is compiled and run (well under
        a second) so the layer can be reported.

    Returns
    -------
    dict with keys ``gpulogreg``, ``python``, ``platform``, ``numpy``, ``cpu``,
    ``blas`` (threadpoolctl's view: library, version, threads), ``numba``
    (version, threads, threading layer) and ``cupy`` (version, CUDA runtime and
    driver versions, whether a GPU is usable and why not, the devices). A
    section that could not be read holds ``"error"`` or ``"installed": False``.
    """
    from gpulogreg._version import __version__

    info: dict[str, Any] = {
        "gpulogreg": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    info["numpy"] = _section(lambda: __import__("numpy").__version__)
    info["cpu"] = _section(_cpu)
    info["blas"] = _section(_blas)
    info["numba"] = _section(lambda: _numba(init_numba))
    info["cupy"] = _section(_cupy)
    return info


def format_system_info(info: dict[str, Any] | None = None) -> str:
    """Human-readable rendering of :func:`system_info` (one ``key: value`` line per fact)."""
    if info is None:
        info = system_info()
    lines: list[str] = []

    def emit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                emit(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, sub in enumerate(value):
                emit(f"{prefix}[{i}]", sub)
        else:
            lines.append(f"{prefix}: {value}")

    emit("", info)
    return "\n".join(lines)
