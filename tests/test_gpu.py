"""GPU equivalence suite: the CuPy backend against the CPU path, on a real device.

Every test here is marked ``gpu``; ``conftest.py`` skips them, with the reason
(CuPy missing, no device, driver too old), where no CUDA device is usable.
On a GPU machine run::

    python -m pytest -m gpu tests/test_gpu.py -v

Parity tolerances (relative, against the Numba backend -- or the NumPy
baseline where the Numba backend is absent): 1e-6 in float64, 1e-3 in float32.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import numpy as np
import pytest

import gpulogreg
from gpulogreg.backends import GPUMemoryError, make_backend
from tests._cuda_emulator import flush_to_zero
from tests._helpers import make_classification

pytestmark = pytest.mark.gpu

REFERENCE = (
    "numba" if importlib.util.find_spec("gpulogreg.backends.numba_backend") is not None else "numpy"
)
RTOL = {np.float64: 1e-6, np.float32: 1e-3}
DTYPES = [np.float64, np.float32]


@pytest.fixture(scope="module")
def cp() -> Any:
    return pytest.importorskip("cupy")


def _estimator() -> Any:
    estimator = getattr(gpulogreg, "LogisticRegression", None)
    if estimator is None:
        pytest.skip("gpulogreg.LogisticRegression is not in this checkout yet")
    return estimator


def _data(
    dtype: Any, n_classes: int = 2, n_samples: int = 20_000, n_features: int = 12, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples, n_features, dtype=dtype, n_classes=n_classes, seed=seed)
    sw = np.random.default_rng(seed).uniform(0.2, 3.0, size=n_samples)
    return X, y.astype(np.int32), sw / sw.sum()


def _assert_close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """Relative to the largest entry of ``expected`` (gradients have entries near zero)."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    scale = max(float(np.abs(expected).max()), np.finfo(np.float64).tiny)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


# -- the kernels on this device --------------------------------------------------
def test_kernels_compile_without_spills(cp: Any) -> None:
    from gpulogreg.backends import _cuda

    kernels = _cuda.get_kernels()
    runtime = cp.cuda.runtime
    count = runtime.deviceGetAttribute(runtime.cudaDevAttrMultiProcessorCount, kernels.device_id)
    assert kernels.limits.multiprocessors == count
    for name, spec in _cuda.KERNELS.items():
        for suffix in spec.suffixes:
            function = kernels.function(f"gpulogreg_{name}_{suffix}")
            assert function.num_regs > 0
            assert function.local_size_bytes == 0, f"{name}_{suffix} uses local memory (spills)"
    assert _cuda.get_kernels() is kernels  # cached per device


def _assert_matches_ftz_model(actual: Any, exact: np.ndarray, dtype: Any, rtol: float) -> None:
    """``actual`` (in ``dtype``) against the device's model of the exact values ``exact``.

    CuPy compiles our kernels with ``-ftz=true`` (see ``gpulogreg.backends._cuda``):
    a float32 result below 2^-126 is stored as 0, so the model is the exact
    value rounded to ``dtype`` with float32 subnormals flushed
    (:func:`tests._cuda_emulator.flush_to_zero`), compared with no absolute
    tolerance (an ``atol`` of 1e-30 would hide a subnormal). float64 keeps
    IEEE subnormals; values within ``rtol`` of the smallest normal may round
    to either side of it and are left out.
    """
    tiny = float(np.finfo(dtype).tiny)
    keep = np.abs(np.abs(exact) - tiny) > 4 * rtol * tiny
    expected = flush_to_zero(exact.astype(dtype))
    atol = (
        0.0 if np.dtype(dtype) == np.float32 else 8 * float(np.finfo(np.float64).smallest_subnormal)
    )
    np.testing.assert_allclose(np.asarray(actual)[keep], expected[keep], rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prediction_kernels_on_device(cp: Any, dtype: Any) -> None:
    from gpulogreg.backends.cupy_backend import sigmoid, softmax

    rng = np.random.default_rng(0)
    specials = [0, 1e4, -1e4, 88, -88, 95, -95, 103, -103, 710, -710]
    z = np.concatenate([rng.normal(size=10_000) * 30, specials]).astype(dtype)
    p = sigmoid(cp.asarray(z))
    assert isinstance(p, cp.ndarray)
    assert p.dtype == dtype
    e = np.exp(-np.abs(z.astype(np.float64)))
    ref = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    _assert_matches_ftz_model(cp.asnumpy(p), ref, dtype, rtol=8 * np.finfo(dtype).eps)
    Z = (rng.normal(size=(5000, 4)) * 20).astype(dtype)
    P = cp.asnumpy(softmax(cp.asarray(Z)))
    Z64 = Z.astype(np.float64)
    ref = np.exp(Z64 - Z64.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    _assert_matches_ftz_model(P, ref, dtype, rtol=1e-4 if dtype == np.float32 else 1e-12)


def test_float32_kernels_flush_subnormals_on_device(cp: Any) -> None:
    """sigmoid_f32 is exactly 0 for z in about (-103.9, -87.3), where IEEE float32 has
    subnormals; float32 residuals below 2^-126 are stored as 0, while the double
    partial sums keep them; float64 is not flushed."""
    from gpulogreg.backends import _cuda
    from gpulogreg.backends.cupy_backend import sigmoid

    z = np.linspace(-103.5, -87.5, 1001)
    p32 = cp.asnumpy(sigmoid(cp.asarray(z.astype(np.float32))))
    assert (p32 == 0).all(), "float32 subnormals were not flushed: the FTZ model is wrong"
    assert (cp.asnumpy(sigmoid(cp.asarray(z))) > 0).all()
    kernels = _cuda.get_kernels()
    n = z.size
    z32 = z.astype(np.float32)
    grid = kernels.grid("logistic_loss_grad", np.float32, n)
    r = cp.empty(n, dtype=cp.float32)
    partials = cp.empty(2 * grid, dtype=cp.float64)
    args = (cp.asarray(z32), cp.zeros(1), 0, cp.zeros(n, dtype=cp.int32), cp.ones(n), r, 1)
    kernels.launch("logistic_loss_grad", np.float32, grid, (*args, partials, n))
    assert (cp.asnumpy(r) == 0).all()
    exact = np.exp(z32.astype(np.float64)) / (1 + np.exp(z32.astype(np.float64)))
    np.testing.assert_allclose(float(partials[grid:].sum()), exact.sum(), rtol=1e-9)


# -- backend parity ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_backend_parity_with_the_cpu(
    cp: Any, dtype: Any, n_classes: int, fit_intercept: bool
) -> None:
    X, y, sw = _data(dtype, n_classes)
    kw = {"n_classes": n_classes, "fit_intercept": fit_intercept}
    cpu = make_backend(X, y, sw, backend=REFERENCE, device="cpu", **kw)
    gpu = make_backend(X, y, sw, backend="cupy", device="gpu", **kw)
    assert gpu.name == "cupy"
    assert gpu.xp is cp
    assert isinstance(gpu.X, cp.ndarray)
    rng = np.random.default_rng(3)
    params = rng.normal(size=cpu.n_params) * 0.3
    v = rng.normal(size=cpu.n_params)
    params_gpu, v_gpu = cp.asarray(params), cp.asarray(v)
    rtol = RTOL[dtype]

    loss_cpu, grad_cpu = cpu.loss_grad(params)
    loss_gpu, grad_gpu = gpu.loss_grad(params_gpu)
    assert isinstance(loss_gpu, float)
    assert isinstance(grad_gpu, cp.ndarray)
    assert grad_gpu.dtype == cp.float64
    np.testing.assert_allclose(loss_gpu, loss_cpu, rtol=rtol)
    _assert_close(cp.asnumpy(grad_gpu), grad_cpu, rtol, "gradient")
    np.testing.assert_allclose(gpu.loss(params_gpu), loss_cpu, rtol=rtol)
    _assert_close(cp.asnumpy(gpu.hessian(params_gpu)), cpu.hessian(params), rtol, "Hessian")
    _assert_close(cp.asnumpy(gpu.hvp(params_gpu, v_gpu)), cpu.hvp(params, v), rtol, "HVP")
    _assert_close(
        cp.asnumpy(gpu.decision(params_gpu, gpu.X)), cpu.decision(params, X), rtol, "decision"
    )
    n_cols = X.shape[1] + int(fit_intercept)
    _assert_close(
        cp.asnumpy(gpu.gram_matvec(cp.asarray(v[:n_cols]))),
        cpu.gram_matvec(v[:n_cols]),
        rtol,
        "gram_matvec",
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_decisions_are_finite(cp: Any, dtype: Any) -> None:
    X, y, sw = _data(dtype, n_samples=5000)
    gpu = make_backend(X, y, sw, backend="cupy", device="gpu")
    cpu = make_backend(X, y, sw, backend=REFERENCE, device="cpu")
    for scale in (1e2, 1e3, 3e3):  # |z| up to about 1e4
        params = np.full(cpu.n_params, scale)
        loss, grad = gpu.loss_grad(cp.asarray(params))
        assert np.isfinite(loss)
        assert bool(cp.isfinite(grad).all())
        loss_cpu, grad_cpu = cpu.loss_grad(params)
        np.testing.assert_allclose(loss, loss_cpu, rtol=RTOL[dtype])
        _assert_close(cp.asnumpy(grad), grad_cpu, RTOL[dtype], "extreme gradient")
        H = gpu.hessian(cp.asarray(params))
        assert bool(cp.isfinite(H).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_are_reproducible(cp: Any, dtype: Any) -> None:
    X, y, sw = _data(dtype, n_samples=50_000)
    gpu = make_backend(X, y, sw, backend="cupy", device="gpu")
    params = cp.asarray(np.random.default_rng(0).normal(size=gpu.n_params))
    loss_a, grad_a = gpu.loss_grad(params)
    loss_b, grad_b = gpu.loss_grad(params)
    assert loss_a == loss_b
    assert bool(cp.array_equal(grad_a, grad_b))


def test_cupy_input_selects_the_cupy_backend(cp: Any) -> None:
    X, y, sw = _data(np.float32, n_samples=2000)
    backend = make_backend(cp.asarray(X), cp.asarray(y), cp.asarray(sw))
    assert backend.name == "cupy"
    backend = make_backend(X, y, sw, device="gpu")  # host data moved once
    assert backend.name == "cupy"
    assert isinstance(backend.X, cp.ndarray)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_gradient_with_backend_cupy(cp: Any, dtype: Any) -> None:
    X, y, sw = _data(dtype, n_samples=5000)
    coef = np.random.default_rng(5).normal(size=X.shape[1])
    kw = {"sample_weight": sw * 7.0, "C": 0.5}
    loss_gpu, grad_gpu, b_gpu = gpulogreg.loss_and_gradient(X, y, coef, 0.2, backend="cupy", **kw)
    loss_cpu, grad_cpu, b_cpu = gpulogreg.loss_and_gradient(
        X, y, coef, 0.2, backend=REFERENCE, **kw
    )
    grad_gpu = cp.asnumpy(grad_gpu) if isinstance(grad_gpu, cp.ndarray) else grad_gpu
    np.testing.assert_allclose(loss_gpu, loss_cpu, rtol=RTOL[dtype])
    _assert_close(grad_gpu, grad_cpu, RTOL[dtype], "gradient")
    np.testing.assert_allclose(b_gpu, b_cpu, rtol=RTOL[dtype], atol=RTOL[dtype] * abs(b_cpu))
    # CuPy input works the same.
    loss_dev, _, _ = gpulogreg.loss_and_gradient(
        cp.asarray(X), cp.asarray(y), cp.asarray(coef), 0.2, backend="cupy", **kw
    )
    np.testing.assert_allclose(loss_dev, loss_cpu, rtol=RTOL[dtype])


def test_too_large_data_gets_a_clear_error(cp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpulogreg.backends import cupy_backend

    monkeypatch.setattr(cupy_backend, "_current_device_memory", lambda: (10**6, 10**9, "GPU 0"))
    X, y, sw = _data(np.float32, n_samples=20_000)
    with pytest.raises(GPUMemoryError, match=r"gpulogreg\.Dataset"):
        make_backend(X, y, sw, backend="cupy", device="gpu")


# -- the estimator on the GPU ------------------------------------------------------------
def _full_batch_solvers() -> list[str]:
    from gpulogreg.solvers import SOLVERS

    # minibatch samples batches at random: its GPU and CPU runs need not coincide.
    return [name for name in SOLVERS if name != "minibatch"]


def _fit_pair(estimator: Any, X: Any, y: Any, **kw: Any) -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on the slow solvers is fine here
        cpu = estimator(device="cpu", **kw).fit(X, y)
        gpu = estimator(device="gpu", **kw).fit(X, y)
    return cpu, gpu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", _full_batch_solvers())
def test_every_solver_matches_the_cpu(cp: Any, dtype: Any, solver: str) -> None:
    estimator = _estimator()
    X, y, _ = _data(dtype, n_samples=8000, n_features=10, seed=4)
    kw = {"solver": solver, "C": 1.0, "tol": 1e-8 if dtype == np.float64 else 1e-5}
    kw["max_iter"] = 20_000 if solver == "gd" else 500
    cpu, gpu = _fit_pair(estimator, X, y, **kw)
    for name in ("coef_", "intercept_"):
        value = getattr(gpu, name)
        assert type(value) is np.ndarray, f"{name} must be a NumPy array, got {type(value)}"
    rtol = RTOL[dtype]
    _assert_close(gpu.coef_, cpu.coef_, rtol, f"{solver} coef_")
    _assert_close(gpu.intercept_, cpu.intercept_, rtol, f"{solver} intercept_")
    np.testing.assert_array_equal(gpu.classes_, cpu.classes_)


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_multinomial_matches_the_cpu(cp: Any, solver: str) -> None:
    estimator = _estimator()
    X, y, _ = _data(np.float64, n_classes=3, n_samples=6000, n_features=8, seed=6)
    cpu, gpu = _fit_pair(estimator, X, y, solver=solver, C=1.0, tol=1e-8, max_iter=500)
    assert gpu.coef_.shape == (3, 8)
    _assert_close(gpu.coef_, cpu.coef_, RTOL[np.float64], f"{solver} multinomial coef_")


def test_predictions_on_cupy_input_are_cupy_arrays(cp: Any) -> None:
    estimator = _estimator()
    X, y, _ = _data(np.float32, n_samples=5000)
    clf = estimator(device="gpu").fit(X, y)
    assert type(clf.coef_) is np.ndarray
    assert type(clf.intercept_) is np.ndarray
    X_gpu = cp.asarray(X)
    for method in ("decision_function", "predict_proba", "predict_log_proba", "predict"):
        on_gpu = getattr(clf, method)(X_gpu)
        assert isinstance(on_gpu, cp.ndarray), f"{method} on CuPy input returned {type(on_gpu)}"
        on_host = getattr(clf, method)(X)
        assert isinstance(on_host, np.ndarray), f"{method} on NumPy input returned {type(on_host)}"
        np.testing.assert_allclose(cp.asnumpy(on_gpu), on_host, rtol=1e-5, atol=1e-6)
    accuracy = float((clf.predict(X_gpu) == cp.asarray(y)).mean())
    assert accuracy > 0.5


def test_fit_on_cupy_input(cp: Any) -> None:
    estimator = _estimator()
    X, y, _ = _data(np.float64, n_samples=5000)
    on_device = estimator(tol=1e-10).fit(cp.asarray(X), cp.asarray(y))  # device="auto"
    on_host = estimator(device="cpu", tol=1e-10).fit(X, y)
    assert type(on_device.coef_) is np.ndarray
    _assert_close(on_device.coef_, on_host.coef_, 1e-6, "coef_ from CuPy input")


def test_fit_releases_device_memory(cp: Any) -> None:
    estimator = _estimator()
    X, y, _ = _data(np.float32, n_samples=200_000, n_features=20)
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    used_before = pool.used_bytes()
    clf = estimator(device="gpu").fit(X, y)
    assert pool.used_bytes() == used_before, "the fitted estimator still holds device arrays"
    assert pool.free_bytes() == 0, "CuPy's memory pool was not released after fit"
    assert type(clf.coef_) is np.ndarray


def test_estimator_reports_a_memory_error(cp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpulogreg.backends import cupy_backend

    estimator = _estimator()
    monkeypatch.setattr(cupy_backend, "_current_device_memory", lambda: (10**6, 10**9, "GPU 0"))
    X, y, _ = _data(np.float32, n_samples=20_000)
    with pytest.raises(GPUMemoryError, match=r"gpulogreg\.Dataset"):
        estimator(device="gpu").fit(X, y)


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "cluster"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_inference_on_cupy_input_equals_the_cpu(cp: Any, cov_type: str, n_classes: int) -> None:
    # The information, meat and cluster scores are summed on the device; the
    # result is host NumPy and equals the CPU's.
    X, y, sw = _data(np.float64, n_classes=n_classes)
    groups = np.arange(len(y)) % 37
    model = _estimator()(penalty=None, solver="newton", tol=1e-10).fit(X, y, sample_weight=sw)
    kwargs: dict[str, Any] = {"cov_type": cov_type}
    if cov_type == "cluster":
        kwargs["groups"] = groups
    expected = model.inference(X, y, sample_weight=sw, **kwargs)
    result = model.inference(cp.asarray(X), cp.asarray(y), sample_weight=cp.asarray(sw), **kwargs)
    assert isinstance(result.bse, np.ndarray)
    _assert_close(result.bse, expected.bse, 1e-8, f"bse ({cov_type})")
    assert result.llf == pytest.approx(expected.llf, rel=1e-10)


def test_prediction_intervals_on_cupy_input(cp: Any) -> None:
    X, y, _ = _data(np.float32)
    model = _estimator()(penalty=None, solver="newton", tol=1e-8).fit(X, y)
    result = model.inference(X, y)
    expected = result.predict_interval(X[:1000])
    on_device = result.predict_interval(cp.asarray(X[:1000]))
    for ours, theirs in zip(on_device, expected, strict=True):
        _assert_close(cp.asnumpy(ours), theirs, 1e-5, "predict_interval")
