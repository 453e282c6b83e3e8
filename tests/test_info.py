"""``gpulogreg.info.system_info``: complete, JSON-ready, and never failing."""

from __future__ import annotations

import json
import sys

import pytest

from gpulogreg.backends import gpu_status
from gpulogreg.info import format_system_info, system_info


def test_system_info_reports_every_section() -> None:
    info = system_info()
    json.dumps(info)  # plain data
    for key in ("gpulogreg", "python", "platform", "numpy", "cpu", "blas", "numba", "cupy"):
        assert key in info
    assert info["cpu"]["logical_cpus"] >= 1
    assert isinstance(info["blas"], list)
    numba = info["numba"]
    assert numba["installed"]
    assert numba["version"]
    assert numba["threading_layer"] in {"tbb", "omp", "workqueue"}
    cupy = info["cupy"]
    if cupy["installed"]:
        available, reason = gpu_status()
        assert cupy["gpu_available"] is available
        if not available:
            assert cupy["reason"] == reason
            assert "devices" not in cupy
        else:
            assert cupy["devices"]
            assert cupy["devices"][0]["name"]
    else:
        assert "not installed" in cupy["reason"]
    text = format_system_info(info)
    assert "numba.threading_layer:" in text
    assert "cupy.installed:" in text


def test_system_info_without_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing or broken CuPy is reported, not raised."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    gpu_status.cache_clear()
    try:
        info = system_info(init_numba=False)
    finally:
        gpu_status.cache_clear()
    cupy = info["cupy"]
    assert cupy.get("installed") is False or "error" in cupy
