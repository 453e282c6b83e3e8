"""GPU equivalence suite for CSR data: SparseCupyBackend against the scipy baseline, on a device.

Every test here is marked ``gpu``; ``conftest.py`` skips them, with the reason,
where no CUDA device is usable. On a GPU machine::

    python -m pytest -m gpu --require-gpu tests/test_sparse_gpu.py -v

The reference is the scipy baseline (:class:`SparseNumpyBackend`) on the same
values in float64 (no JIT compilation, so the suite stays quick): the kernels
accumulate in double from float32 or float64 values, so they agree with it to
double rounding, except ``transpose="cusparse"`` on float32 data, whose
products accumulate in float32.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from gpulogreg.backends import GPUMemoryError, make_backend, to_device
from gpulogreg.backends.sparse_cupy import TRANSPOSES, SparseCupyBackend, TransposedCopy
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend

pytestmark = pytest.mark.gpu

#: Relative agreement with the float64 baseline (double accumulation in another order).
RTOL = 1e-10
#: cuSPARSE's float32 products (``transpose="cusparse"`` on float32 data).
RTOL_CUSPARSE_FLOAT32 = 1e-4


@pytest.fixture(scope="module")
def cp() -> Any:
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def cpsp(cp: Any) -> Any:
    return pytest.importorskip("cupyx.scipy.sparse")


def _csr(n_rows: int, n_features: int, *, dtype: Any = np.float64, seed: int = 0) -> Any:
    """Canonical scipy CSR with empty rows, full rows and a column in every row."""
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_features, density=0.05, random_state=seed, format="lil")
    X[rng.integers(0, n_rows, size=n_rows // 10), :] = 0.0
    X[:3, :] = rng.normal(size=(3, n_features))
    X[:, 1] = rng.normal(size=(n_rows, 1))
    X = sp.csr_matrix(X)
    X.data = (3 * X.data).astype(dtype)
    X.sort_indices()
    return X


def _on_device(cp: Any, cpsp: Any, X: Any, index: Any) -> Any:
    """``X`` as cupyx CSR with ``index`` indices (assigned: CuPy's constructor may narrow them)."""
    M = cpsp.csr_matrix((cp.asarray(X.data), cp.asarray(X.indices), cp.asarray(X.indptr)), X.shape)
    M.indices = M.indices.astype(index)
    M.indptr = M.indptr.astype(index)
    M.has_canonical_format = True
    return M


def _problem(n_rows: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_rows).astype(np.int32)
    s = rng.uniform(0.2, 2.0, n_rows)
    return y, s / s.sum()


def _close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """Relative to the largest entry of ``expected``; ``actual`` may be on the device."""
    actual = np.asarray(actual.get() if hasattr(actual, "get") else actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.abs(expected).max()), np.finfo(np.float64).tiny)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("transpose", TRANSPOSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_method_matches_the_scipy_baseline(
    cp: Any, cpsp: Any, transpose: str, dtype: Any, index: Any, n_classes: int
) -> None:
    X = _csr(5000, 300, dtype=dtype, seed=n_classes)
    y, s = _problem(X.shape[0], n_classes, seed=1)
    kw = {"n_classes": n_classes, "fit_intercept": True}
    Xd = _on_device(cp, cpsp, X, index)
    gpu = SparseCupyBackend(Xd, cp.asarray(y), cp.asarray(s), transpose=transpose, **kw)
    ref = SparseNumpyBackend(X.astype(np.float64), y, s, **kw)
    assert gpu.X.indices.dtype == np.dtype(index)
    rng = np.random.default_rng(2)
    params = rng.normal(size=gpu.n_params) * 0.5
    v = rng.normal(size=gpu.n_params)
    p, vd = cp.asarray(params), cp.asarray(v)
    rtol = RTOL_CUSPARSE_FLOAT32 if transpose == "cusparse" and dtype == np.float32 else RTOL

    loss, grad = gpu.loss_grad(p)
    loss_ref, grad_ref = ref.loss_grad(params)
    np.testing.assert_allclose(loss, loss_ref, rtol=RTOL)
    _close(grad, grad_ref, rtol, "gradient")
    assert gpu.loss(p) == loss
    _close(gpu.hvp(p, vd), ref.hvp(params, v), rtol, "hvp")
    w = v[: gpu.layout.n_cols]
    _close(gpu.gram_matvec(cp.asarray(w)), ref.gram_matvec(w), rtol, "gram_matvec")
    _close(gpu.hessian_diagonal(p), ref.hessian_diagonal(params), rtol, "hessian diagonal")
    _close(gpu.decision(p, Xd), ref.decision(params, ref.X), RTOL, "decision")
    _close(gpu.hessian(p), ref.hessian(params), RTOL, "hessian")
    _close(gpu.meat(p), ref.meat(params), RTOL, "meat")
    info, info_ref = gpu.information(p), ref.information(params)
    _close(info.hessian, info_ref.hessian, RTOL, "information")
    np.testing.assert_allclose(info.loss, info_ref.loss, rtol=RTOL)
    groups = np.arange(X.shape[0]) % 11
    _close(
        gpu.cluster_scores(p, cp.asarray(groups), 11),
        ref.cluster_scores(params, groups, 11),
        RTOL,
        "cluster scores",
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_default_gradient_repeats_bit_for_bit(cp: Any, cpsp: Any, dtype: Any) -> None:
    """The CSC gather (the default) is deterministic; the atomics agree with it to rounding."""
    X = _csr(20_000, 500, dtype=dtype, seed=3)
    y, s = _problem(X.shape[0], 2, seed=4)
    Xd, yd, sd = _on_device(cp, cpsp, X, np.int32), cp.asarray(y), cp.asarray(s)
    p = cp.asarray(np.random.default_rng(5).normal(size=501) * 0.3)
    default = SparseCupyBackend(Xd, yd, sd)
    assert default.transpose == "csc"
    first = default.loss_grad(p)[1].get()
    for _ in range(3):
        assert np.array_equal(default.loss_grad(p)[1].get(), first)
    atomic = SparseCupyBackend(Xd, yd, sd, transpose="atomic")
    _close(atomic.loss_grad(p)[1], first, RTOL, "atomic gradient")


def test_the_csc_copy_on_the_device_equals_the_host_one(cp: Any, cpsp: Any) -> None:
    X = _csr(3000, 200, seed=6)
    host = TransposedCopy.of(X, lanes=4)
    device = TransposedCopy.of(_on_device(cp, cpsp, X, np.int64), lanes=4)
    assert device.rows.dtype == np.int64
    assert device.n_pieces == host.n_pieces
    for name in ("data", "rows", "pieces", "segments"):
        assert np.array_equal(getattr(device, name).get(), getattr(host, name)), name


@pytest.mark.parametrize("kind", ["csr_matrix", "csr_array"])
def test_host_csr_moves_to_the_gpu_once_as_cupyx_csr(cp: Any, cpsp: Any, kind: str) -> None:
    X = getattr(sp, kind)(_csr(400, 50, dtype=np.float32, seed=7))
    Xd = to_device(X, "gpu")
    assert type(Xd).__module__.startswith("cupyx.scipy.sparse")
    assert Xd.format == "csr"
    assert (kind == "csr_array") == isinstance(Xd, cpsp.csr_array)
    assert Xd.dtype == np.float32
    assert Xd.indices.dtype == Xd.indptr.dtype == np.int32  # the rule: int32 when it fits
    assert Xd.has_canonical_format
    assert np.array_equal(Xd.data.get(), X.data)
    assert np.array_equal(Xd.indices.get(), X.indices)
    back = to_device(Xd, "cpu")
    assert (back != X).nnz == 0


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton", "gd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_gpu_fit_on_scipy_csr_matches_the_cpu(solver: str, dtype: Any) -> None:
    from gpulogreg import LogisticRegression

    X = _csr(20_000, 200, dtype=dtype, seed=8)
    y = (X @ np.linspace(-1, 1, 200) > 0).astype(np.int64)
    y[::7] = 1 - y[::7]
    kw: dict[str, Any] = {"solver": solver, "tol": 1e-8, "max_iter": 2000, "C": 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = LogisticRegression(device="cpu", backend="numpy", **kw).fit(X, y)
        gpu = LogisticRegression(device="gpu", **kw).fit(X, y)
    assert gpu.backend_ == "cupy"
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    _close(gpu.coef_, cpu.coef_, rtol, "coef")
    _close(gpu.predict_proba(X), cpu.predict_proba(X), rtol, "probabilities")


def test_cupyx_input_trains_on_the_gpu_and_predicts_there(cp: Any, cpsp: Any) -> None:
    from gpulogreg import LogisticRegression

    X = _csr(8000, 120, seed=9)
    y = np.random.default_rng(10).integers(0, 3, X.shape[0])
    Xd = _on_device(cp, cpsp, X, np.int32)
    gpu = LogisticRegression(tol=1e-9).fit(Xd, cp.asarray(y))
    cpu = LogisticRegression(tol=1e-9, device="cpu", backend="numpy").fit(X, y)
    assert gpu.backend_ == "cupy"
    _close(gpu.coef_, cpu.coef_, 1e-6, "multinomial coef")
    proba = gpu.predict_proba(Xd)
    assert isinstance(proba, cp.ndarray)
    _close(proba, cpu.predict_proba(X), 1e-6, "probabilities on cupyx rows")


def test_data_too_large_for_the_device_get_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpulogreg.backends import cupy_backend

    X = _csr(2000, 100, seed=11)
    y, s = _problem(X.shape[0], 2, seed=12)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (10**6, 10**9, "the test GPU")
    )
    with pytest.raises(GPUMemoryError, match=r"sparse X .* the test GPU"):
        make_backend(X, y, s, device="gpu")
