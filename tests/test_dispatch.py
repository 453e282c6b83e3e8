"""Device dispatch without a GPU: auto runs on the CPU, explicit GPU requests fail clearly.

These run on the CI machine (CuPy may be installed, there is no driver and no
device). Tests that depend on the real machine having no GPU say so and skip
on a machine with one; the others replace ``gpu_status`` so they hold
everywhere.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import types
from typing import Any

import numpy as np
import pytest

import gpulogreg
from gpulogreg import backends
from gpulogreg.backends import (
    GPUMemoryError,
    GPUUnavailableError,
    gpu_status,
    make_backend,
    release_device_memory,
    resolve_backend,
)
from gpulogreg.backends.cupy_backend import check_device_memory, device_bytes_needed
from gpulogreg.data import array_module_name
from tests._helpers import make_classification

HAS_GPU = gpu_status()[0]
no_real_gpu = pytest.mark.skipif(HAS_GPU, reason="this machine has a usable GPU")
HAS_NUMBA_BACKEND = importlib.util.find_spec("gpulogreg.backends.numba_backend") is not None


def _run_python(code: str) -> str:
    """Run code in a fresh interpreter (nothing imported yet); return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(300, 5, seed=3)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> str:
    reason = "no CUDA device found (simulated)"
    monkeypatch.setattr(backends, "gpu_status", lambda: (False, reason))
    return reason


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "gpu_status", lambda: (True, ""))


class _FakeCupyArray:
    """Stands in for cupy.ndarray (no device is needed to test recognition)."""

    shape = (4, 2)
    dtype = np.dtype(np.float64)


def _fake_cupy_module() -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.ndarray = _FakeCupyArray  # type: ignore[attr-defined]
    return module


# -- importing touches nothing ---------------------------------------------------
def test_import_imports_no_cupy_and_touches_no_device() -> None:
    out = _run_python(
        """
        import sys
        import gpulogreg
        import gpulogreg.backends
        import gpulogreg.backends._cuda
        import gpulogreg.backends.cupy_backend   # the module itself imports CuPy lazily
        import gpulogreg.info
        try:
            import gpulogreg.estimator
        except ModuleNotFoundError:
            pass
        roots = ("cupy", "cupy_backends", "cupyx")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in roots)
        with open("/proc/self/maps") as f:
            words = f.read().split()
        names = ("libcuda", "libcudart", "libnvrtc", "libcublas")
        cuda_libs = sorted({w for w in words if any(k in w for k in names)})
        print("modules:", loaded)
        print("libraries:", cuda_libs)
        """
    )
    assert "modules: []" in out, out
    assert "libraries: []" in out, out


def test_cupy_arrays_recognised_without_importing_cupy() -> None:
    out = _run_python(
        """
        import sys, types
        import numpy as np
        from gpulogreg.data import array_module_name
        assert array_module_name(np.zeros(3)) == "numpy"
        assert "cupy" not in sys.modules, "array_module_name imported cupy"
        fake = types.ModuleType("cupy")
        class ndarray: pass
        fake.ndarray = ndarray
        sys.modules["cupy"] = fake
        assert array_module_name(ndarray()) == "cupy"
        assert array_module_name(np.zeros(3)) == "numpy"
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_cupy_input_selects_the_gpu_without_querying_a_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy_module())

    def fail() -> tuple[bool, str]:
        raise AssertionError("gpu_status must not be called for data already on the GPU")

    monkeypatch.setattr(backends, "gpu_status", fail)
    X = _FakeCupyArray()
    assert array_module_name(X) == "cupy"
    assert resolve_backend(X) == ("cupy", "gpu")
    assert resolve_backend(X, device="gpu") == ("cupy", "gpu")
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend(X, backend="numba")


# -- device="auto" -------------------------------------------------------------------
def test_auto_uses_the_cpu_without_a_gpu(data: Any, no_gpu: str) -> None:
    X, _ = data
    assert resolve_backend(X) == ("numba", "cpu")
    assert resolve_backend(X, device="cpu") == ("numba", "cpu")
    assert resolve_backend(X, backend="numpy") == ("numpy", "cpu")


@no_real_gpu
def test_auto_uses_the_cpu_on_this_machine(data: Any) -> None:
    X, y = data
    assert resolve_backend(X) == ("numba", "cpu")
    if not HAS_NUMBA_BACKEND:
        pytest.skip("the numba backend is not in this checkout yet")
    loss, grad, _ = gpulogreg.loss_and_gradient(X, y, np.zeros(X.shape[1]))
    assert isinstance(grad, np.ndarray)
    assert np.isfinite(loss)
    assert "cupy" not in str(type(grad))


def test_explicit_cpu_backend_keeps_host_data_on_the_host(data: Any, fake_gpu: None) -> None:
    X, _ = data
    assert resolve_backend(X, backend="numba") == ("numba", "cpu")
    assert resolve_backend(X, backend="numpy") == ("numpy", "cpu")
    assert resolve_backend(X) == ("cupy", "gpu")  # auto + a GPU: the GPU
    assert resolve_backend(X, device="cpu") == ("numba", "cpu")


# -- explicit GPU requests without a GPU ----------------------------------------------
@pytest.mark.parametrize(
    ("backend", "device"), [("auto", "gpu"), ("cupy", "auto"), ("numpy", "gpu")]
)
def test_gpu_request_without_gpu_raises_with_reason(
    data: Any, no_gpu: str, backend: str, device: str
) -> None:
    X, _ = data
    with pytest.raises(GPUUnavailableError, match="a GPU was requested") as info:
        resolve_backend(X, backend=backend, device=device)
    assert no_gpu in str(info.value)


@no_real_gpu
def test_gpu_request_on_this_machine_says_why(data: Any) -> None:
    X, y = data
    reason = gpu_status()[1]
    assert reason
    with pytest.raises(GPUUnavailableError) as info:
        make_backend(X, y.astype(np.int32), np.full(len(y), 1 / len(y)), device="gpu")
    assert reason in str(info.value)
    with pytest.raises(GPUUnavailableError, match="a GPU was requested"):
        gpulogreg.loss_and_gradient(X, y, np.zeros(X.shape[1]), backend="cupy")


@no_real_gpu
def test_estimator_device_gpu_raises_on_this_machine(data: Any) -> None:
    estimator = getattr(gpulogreg, "LogisticRegression", None)
    if estimator is None:
        pytest.skip("the estimator is not in this checkout yet")
    X, y = data
    with pytest.raises(GPUUnavailableError, match="a GPU was requested"):
        estimator(device="gpu").fit(X, y)


def test_invalid_device_and_backend(data: Any) -> None:
    X, _ = data
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_backend(X, device="tpu")
    with pytest.raises(ValueError, match="backend must be"):
        resolve_backend(X, backend="torch")


# -- gpu_status's reasons -----------------------------------------------------------------
class _FakeCudaRuntimeError(RuntimeError):
    pass


def _fake_cupy_with_runtime(get_device_count: Any) -> types.ModuleType:
    module = _fake_cupy_module()
    runtime = types.SimpleNamespace(
        CUDARuntimeError=_FakeCudaRuntimeError, getDeviceCount=get_device_count
    )
    module.cuda = types.SimpleNamespace(runtime=runtime)  # type: ignore[attr-defined]
    return module


def _raiser(message: str) -> Any:
    def raise_() -> int:
        raise _FakeCudaRuntimeError(message)

    return raise_


@pytest.mark.parametrize(
    ("cupy_module", "available", "expected"),
    [
        (None, False, "CuPy is not installed"),
        (
            _fake_cupy_with_runtime(_raiser("cudaErrorInsufficientDriver: driver too old")),
            False,
            "driver is missing or too old",
        ),
        (
            _fake_cupy_with_runtime(_raiser("cudaErrorNoDevice: no CUDA-capable device")),
            False,
            "no CUDA device found",
        ),
        (_fake_cupy_with_runtime(lambda: 0), False, "no CUDA device found"),
        (_fake_cupy_with_runtime(lambda: 1), True, ""),
    ],
)
def test_gpu_status_reasons(
    monkeypatch: pytest.MonkeyPatch, cupy_module: Any, available: bool, expected: str
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", cupy_module)  # None: "import cupy" fails
    gpu_status.cache_clear()
    try:
        ok, reason = gpu_status()
    finally:
        gpu_status.cache_clear()
    assert ok is available
    assert expected in reason


def test_gpu_status_survives_a_broken_cuda_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise OSError("libcudart.so: cannot open shared object file")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy_with_runtime(broken))
    gpu_status.cache_clear()
    try:
        ok, reason = gpu_status()
    finally:
        gpu_status.cache_clear()
    assert not ok
    assert "libcudart" in reason


# -- device memory -------------------------------------------------------------------------
def test_device_memory_check_message() -> None:
    need = device_bytes_needed(10_000_000, 100, np.float32)
    assert need > 10_000_000 * 100 * 4
    check_device_memory(10_000_000, 100, np.float32, free_bytes=need, total_bytes=2 * need)
    with pytest.raises(GPUMemoryError) as info:
        check_device_memory(
            10_000_000, 100, np.float32, free_bytes=need - 1, total_bytes=need,
            device_label="GPU 0 (Test)",
        )  # fmt: skip
    message = str(info.value)
    assert "GPU 0 (Test)" in message
    assert "4.00 GB" in message
    assert "gpulogreg.Dataset" in message
    assert "device='cpu'" in message
    assert isinstance(info.value, MemoryError)


@pytest.mark.parametrize(("n_outputs", "hvp_per_row"), [(1, 24), (3, 40 * 3)])
def test_data_near_capacity_are_refused_up_front(n_outputs: int, hvp_per_row: int) -> None:
    """Free memory for X, labels, weights, residual and X @ w is not enough: Newton-CG's
    Hessian-vector products (and, multinomial, the copy of R) need more, counted per row."""
    from gpulogreg.backends.cupy_backend import DEVICE_HEADROOM_BYTES, device_memory_terms

    m, n = 10_000_000, 100
    k = n_outputs
    # X, y, the weights, the label copy, X @ w, the residual and one float64
    # decision vector per output (float32): what the check used to count.
    without_hvp = m * (n * 4 + 4 + 8 + 8 * k + 2 * k * 4 + 8 * k) + DEVICE_HEADROOM_BYTES
    with pytest.raises(GPUMemoryError):
        check_device_memory(m, n, np.float32, n_outputs, free_bytes=without_hvp)
    terms = device_memory_terms(m, n, np.float32, n_outputs)
    assert terms["hvp"] == m * hvp_per_row
    need = device_bytes_needed(m, n, np.float32, n_outputs)
    assert need == terms["data"] + terms["held"] + terms["hvp"] + DEVICE_HEADROOM_BYTES
    check_device_memory(m, n, np.float32, n_outputs, free_bytes=need)


def test_data_already_on_the_gpu_are_checked_for_the_rest() -> None:
    """CuPy input: X is resident, so only what a fit adds to it must fit in free memory."""
    m, n = 1_000_000, 100
    need = device_bytes_needed(m, n, np.float32)
    x_bytes = m * n * 4
    check_device_memory(m, n, np.float32, free_bytes=need - x_bytes, x_resident=True)
    with pytest.raises(GPUMemoryError, match="on top of X"):
        check_device_memory(m, n, np.float32, free_bytes=need - x_bytes - 1, x_resident=True)
    with pytest.raises(GPUMemoryError, match="with X"):
        check_device_memory(m, n, np.float32, free_bytes=need - x_bytes)


def test_the_fit_plan_checks_resident_gpu_data_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """place_data checks CuPy data only when the fit plan asks (not for every backend)."""
    from gpulogreg.backends import cupy_backend
    from tests import _fake_cupy

    _fake_cupy.install(monkeypatch)
    calls: list[bool] = []
    monkeypatch.setattr(
        cupy_backend, "check_device_memory", lambda *a, x_resident=False: calls.append(x_resident)
    )
    X = _fake_cupy.on_device(np.ones((10, 3)), 0)
    y, s = _fake_cupy.on_device(np.zeros(10, np.int32), 0), _fake_cupy.on_device(np.ones(10), 0)
    backends.place_data(X, y, s, n_classes=2, device="gpu")
    assert calls == []
    backends.place_data(X, y, s, n_classes=2, device="gpu", check_resident=True)
    assert calls == [True]


def test_dense_hessian_limit_is_the_newton_solvers() -> None:
    from gpulogreg.backends.cupy_backend import DENSE_HESSIAN_MAX_PARAMS, device_memory_terms
    from gpulogreg.solvers.newton import CG_THRESHOLD

    assert DENSE_HESSIAN_MAX_PARAMS == CG_THRESHOLD
    # Wide data: Newton uses Hessian-vector products, the dense Hessian is not counted.
    assert device_memory_terms(1000, 5000, np.float32)["hessian"] == 0
    assert device_memory_terms(1000, 500, np.float32)["hessian"] >= 8 * 501**2


def test_make_backend_checks_memory_before_moving_data(
    data: Any, fake_gpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpulogreg.backends import cupy_backend

    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (1000, 10_000, "GPU 0 (simulated)")
    )

    def no_transfer(*_: Any) -> Any:
        raise AssertionError("data were moved before the memory check")

    monkeypatch.setattr(backends, "to_device", no_transfer)
    X, y = data
    with pytest.raises(GPUMemoryError, match="GPU 0 \\(simulated\\)"):
        make_backend(X, y.astype(np.int32), np.full(len(y), 1 / len(y)), device="gpu")


def test_release_device_memory_never_raises() -> None:
    release_device_memory()  # CuPy imported or not, with or without a device
    out = _run_python(
        """
        import sys
        from gpulogreg.backends import release_device_memory
        release_device_memory()
        print("cupy" in sys.modules)
        """
    )
    assert out.strip() == "False"  # a no-op that does not import CuPy
