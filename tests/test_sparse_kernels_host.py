"""The GPU path for CSR data, checked without a GPU.

* The CSR kernels of ``kernels/gpulogreg_kernels.cu`` run on the host under
  the emulation of CUDA blocks and warps (``cuda_host_emulation.hpp``: real
  barriers, warp shuffles, atomicAdd) and are compared with NumPy/SciPy, for
  float32 and float64 values, int32 and int64 indices, and every group width
  (``lanes``) on rows that are empty, short and longer than a group.
* :class:`~gpulogreg.backends.sparse_cupy.SparseCupyBackend`'s own code runs
  on scipy matrices through the emulated kernels, with each way of computing
  ``X^T R``, against the scipy baseline on float64 values; the estimator with
  ``device="gpu"`` runs every solver through it.
* The CSC copy, the lanes rule and the device-memory model (against what the
  methods allocate, traced).

Everything skips only when no C++ compiler exists.
"""

from __future__ import annotations

import itertools
import re
import tracemalloc
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from gpulogreg.backends import GPUMemoryError, place_data
from gpulogreg.backends.sparse_cupy import (
    PIECE_ITERATIONS,
    TRANSPOSES,
    WORKING_TERMS,
    SparseCupyBackend,
    TransposedCopy,
    check_sparse_device_memory,
    lanes_for,
    sparse_device_memory_terms,
)
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend
from tests._cuda_emulator import EmulatedKernels

VALUE_TYPES = [np.float64, np.float32]
INDEX_TYPES = [np.int32, np.int64]
#: Relative agreement of double accumulations in another order (the kernels
#: against scipy's products of the same float64 values).
RTOL = 1e-12


def _csr(
    n_rows: int,
    n_features: int,
    *,
    dtype: Any = np.float64,
    index: Any = np.int32,
    seed: int = 0,
    density: float = 0.1,
) -> sp.csr_matrix:
    """Random CSR with empty rows, rows longer than a warp, and one long column."""
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_features, density=density, random_state=seed, format="lil")
    X[rng.integers(0, n_rows, size=max(1, n_rows // 10)), :] = 0.0  # empty rows
    X[:3, :] = rng.normal(size=(3, n_features))  # rows of n_features values
    X[:, 1] = rng.normal(size=(n_rows, 1))  # a column in every row
    X = sp.csr_matrix(X)
    X.data = (X.data * 3).astype(dtype)
    X.sort_indices()
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    return X


def _labels(n_rows: int, n_classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_classes, n_rows).astype(np.int32)


def _weights(n_rows: int, seed: int = 2) -> np.ndarray:
    s = np.random.default_rng(seed).uniform(0.2, 2.0, n_rows)
    return s / s.sum()


def _rows_of(X: sp.csr_matrix, index: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return X.data, X.indices.astype(index), X.indptr.astype(index)


# ================================================================================
# The kernels
# ================================================================================
@pytest.mark.parametrize("dtype", VALUE_TYPES)
@pytest.mark.parametrize("index", INDEX_TYPES)
@pytest.mark.parametrize("lanes", [1, 4, 32])
@pytest.mark.parametrize("square", [0, 1])
def test_csr_matvecs_kernel(
    emulated_kernels: EmulatedKernels, dtype: Any, index: Any, lanes: int, square: int
) -> None:
    """Rows times dense vectors in the parameter layout, with intercepts, into strided output."""
    X = _csr(300, 45, dtype=dtype, index=index, seed=lanes)
    n_rows, n = X.shape
    K, d = 3, n + 1
    rng = np.random.default_rng(3)
    params = rng.normal(size=K * d)
    out = np.full(n_rows * (K + 2), np.nan)  # rows of K + 2: two entries left alone
    grid = emulated_kernels.grid("csr_matvecs", dtype, n_rows * lanes, index)
    args = (*_rows_of(X, index), params, d, 1, params[n:], 1, square, out, K + 2, 1)
    emulated_kernels.launch("csr_matvecs", dtype, grid, (*args, n_rows, K, lanes), index)
    V = X.astype(np.float64)
    if square:
        V = V.multiply(V).tocsr()
    W = params.reshape(K, d)
    ref = V @ W[:, :n].T + W[:, n]
    got = out.reshape(n_rows, K + 2)
    np.testing.assert_allclose(got[:, :K], ref, rtol=RTOL, atol=1e-13)
    assert np.isnan(got[:, K:]).all(), "the kernel wrote outside its outputs"


@pytest.mark.parametrize("dtype", VALUE_TYPES)
@pytest.mark.parametrize("index", INDEX_TYPES)
@pytest.mark.parametrize("lanes", [2, 8, 32])
def test_csr_logistic_loss_grad_kernel(
    emulated_kernels: EmulatedKernels, dtype: Any, index: Any, lanes: int
) -> None:
    X = _csr(700, 30, dtype=dtype, index=index, seed=lanes)
    n_rows, n = X.shape
    y, s = _labels(n_rows, 2), _weights(n_rows)
    params = np.random.default_rng(4).normal(size=n + 1) * 2
    params[0] = 400.0  # |z| in the hundreds for the rows holding feature 0
    grid = emulated_kernels.grid("csr_logistic_loss_grad", dtype, n_rows * lanes, index)
    residual = np.full(n_rows, np.nan)
    partials = np.full(2 * grid, np.nan)
    args = (*_rows_of(X, index), params, params[n:], 1, y, s, residual, partials, n_rows, lanes)
    emulated_kernels.launch("csr_logistic_loss_grad", dtype, grid, args, index)
    z = X.astype(np.float64) @ params[:n] + params[n]
    # Stable references by label, without the kernel's formulas: -log p(y | z) and p - y.
    loss = s * np.where(y == 1, np.logaddexp(0.0, -z), np.logaddexp(0.0, z))
    r = s * np.where(y == 1, -expit(-z), expit(z))
    np.testing.assert_allclose(residual, r, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(partials[:grid].sum(), loss.sum(), rtol=RTOL)
    np.testing.assert_allclose(partials[grid:].sum(), r.sum(), rtol=1e-10, atol=1e-17)
    again = np.empty_like(partials)
    args = (*args[:8], np.empty(n_rows), again, n_rows, lanes)
    emulated_kernels.launch("csr_logistic_loss_grad", dtype, grid, args, index)
    assert np.array_equal(again, partials), "the same launch gave other bits"


@pytest.mark.parametrize("dtype", VALUE_TYPES)
@pytest.mark.parametrize("index", INDEX_TYPES)
@pytest.mark.parametrize(("n_classes", "lanes"), [(3, 4), (5, 32), (2, 1)])
def test_csr_softmax_loss_grad_kernel(
    emulated_kernels: EmulatedKernels, dtype: Any, index: Any, n_classes: int, lanes: int
) -> None:
    X = _csr(500, 25, dtype=dtype, index=index, seed=n_classes)
    n_rows, n = X.shape
    d = n + 1
    y, s = _labels(n_rows, n_classes), _weights(n_rows)
    params = np.random.default_rng(5).normal(size=n_classes * d) * 3
    grid = emulated_kernels.grid("csr_softmax_loss_grad", dtype, n_rows * lanes, index)
    R = np.full((n_rows, n_classes), np.nan)
    partials = np.full(grid, np.nan)
    args = (*_rows_of(X, index), params, d, params[n:], 1, y, s, R, partials, n_rows, n_classes)
    emulated_kernels.launch("csr_softmax_loss_grad", dtype, grid, (*args, lanes), index)
    W = params.reshape(n_classes, d)
    Z = X.astype(np.float64) @ W[:, :n].T + W[:, n]
    lse = np.logaddexp.reduce(Z, axis=1)
    rows = np.arange(n_rows)
    np.testing.assert_allclose(partials.sum(), (s * (lse - Z[rows, y])).sum(), rtol=RTOL)
    # p_y - 1 = -sum_{k != y} p_k, in extended precision (no cancellation).
    ZL = Z.astype(np.longdouble)
    P = np.exp(ZL - ZL.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[rows, y] = 0
    P[rows, y] = -P.sum(axis=1)
    np.testing.assert_allclose(R, (s[:, None] * P).astype(np.float64), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype", VALUE_TYPES)
@pytest.mark.parametrize("index", INDEX_TYPES)
@pytest.mark.parametrize("square", [0, 1])
def test_csr_scatter_add_kernel(
    emulated_kernels: EmulatedKernels, dtype: Any, index: Any, square: int
) -> None:
    """X^T R by atomics, into a strided output that already holds values (they are added to)."""
    X = _csr(400, 35, dtype=dtype, index=index, seed=7)
    n_rows, n = X.shape
    K, lanes = 2, 8
    R = np.random.default_rng(6).normal(size=(n_rows, K))
    out = np.full((K, n + 1), 0.5)
    grid = emulated_kernels.grid("csr_scatter_add", dtype, n_rows * lanes, index)
    args = (*_rows_of(X, index), R, square, out.ravel(), n + 1, n_rows, K, lanes)
    emulated_kernels.launch("csr_scatter_add", dtype, grid, args, index)
    V = X.astype(np.float64)
    if square:
        V = V.multiply(V).tocsr()
    np.testing.assert_allclose(out[:, :n], 0.5 + (V.T @ R).T, rtol=RTOL, atol=1e-13)
    assert (out[:, n] == 0.5).all()


@pytest.mark.parametrize("index", INDEX_TYPES)
def test_segment_sums_kernel(emulated_kernels: EmulatedKernels, index: Any) -> None:
    rng = np.random.default_rng(8)
    lengths = np.array([0, 1, 5, 0, 300, 2, 0])  # empty segments too
    segments = np.concatenate([[0], np.cumsum(lengths)]).astype(index)
    K = 3
    values = rng.normal(size=(int(segments[-1]), K))
    out = np.full((K, lengths.size + 1), np.nan)
    grid = emulated_kernels.grid("segment_sums", np.float64, lengths.size, index)
    args = (values, segments, out.ravel(), lengths.size + 1, lengths.size, K)
    emulated_kernels.launch("segment_sums", np.float64, grid, args, index)
    ref = np.stack([values[a:b].sum(axis=0) for a, b in itertools.pairwise(segments)]).T
    np.testing.assert_allclose(out[:, :-1], ref, rtol=1e-14, atol=1e-300)
    assert np.isnan(out[:, -1]).all()


def test_group_sums_depend_on_the_lanes_only_through_rounding(
    emulated_kernels: EmulatedKernels,
) -> None:
    """Every width gives the same products to rounding; one width gives the same bits each time."""
    X = _csr(200, 400, seed=9, density=0.3)
    n_rows, n = X.shape
    w = np.random.default_rng(10).normal(size=n + 1)
    results = {}
    for lanes in (1, 2, 4, 8, 16, 32, 32):
        out = np.empty(n_rows)
        grid = emulated_kernels.grid("csr_matvecs", np.float64, n_rows * lanes, np.int32)
        args = (X.data, X.indices, X.indptr, w, n + 1, 1, w[n:], 1, 0, out, 1, 1, n_rows, 1, lanes)
        emulated_kernels.launch("csr_matvecs", np.float64, grid, args, np.int32)
        if lanes in results:
            assert np.array_equal(out, results[lanes])
        results[lanes] = out
    ref = X @ w[:n] + w[n]
    for out in results.values():
        np.testing.assert_allclose(out, ref, rtol=RTOL)
    assert len({r.tobytes() for r in results.values()}) > 1, "the widths should round differently"


def test_float32_subnormal_values_read_as_zero_like_the_device(
    emulated_kernels: EmulatedKernels,
) -> None:
    """-ftz=true: a subnormal float32 value converts to a double zero (cvt.ftz.f64.f32)."""
    X = _csr(50, 10, dtype=np.float32, seed=11)
    X.data[::3] = np.float32(1e-40)  # subnormal in float32
    zeroed = X.copy()
    zeroed.data[::3] = 0.0
    w = np.random.default_rng(12).normal(size=11) * 1e30

    def run(M: sp.csr_matrix) -> np.ndarray:
        out = np.empty(50)
        args = (M.data, M.indices, M.indptr, w, 11, 1, w[10:], 1, 0, out, 1, 1, 50, 1, 4)
        emulated_kernels.launch("csr_matvecs", np.float32, 4, args, np.int32)
        return out

    assert np.array_equal(run(X), run(zeroed))
    assert X.data[0] == np.float32(1e-40), "the caller's values were changed"


# ================================================================================
# The CSC copy and the lanes rule
# ================================================================================
def test_lanes_rule() -> None:
    assert [lanes_for(x) for x in (0, 0.5, 1, 1.5, 3, 8, 9, 30, 100, 1e6)] == [
        1, 1, 1, 2, 4, 8, 16, 32, 32, 32,
    ]  # fmt: skip


@pytest.mark.parametrize("index", INDEX_TYPES)
@pytest.mark.parametrize("lanes", [1, 4])
def test_transposed_copy_is_the_csc_form_cut_into_pieces(index: Any, lanes: int) -> None:
    X = _csr(900, 40, index=index, seed=13).tolil()
    X[:, 7] = 0.0  # an empty column
    X = sp.csr_matrix(X)
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    t = TransposedCopy.of(X, lanes=lanes)
    C = X.tocsc()
    C.sort_indices()
    assert t.data.dtype == X.data.dtype
    assert t.rows.dtype == t.pieces.dtype == t.segments.dtype == np.dtype(index)
    assert np.array_equal(t.data, C.data)
    assert np.array_equal(t.rows, C.indices)
    assert t.piece_length == PIECE_ITERATIONS * lanes
    lengths = np.diff(t.pieces)
    assert lengths.min() >= 1
    assert lengths.max() <= t.piece_length
    # Column j's pieces cover its values exactly, in order.
    assert np.array_equal(t.pieces[t.segments], C.indptr)
    assert t.segments[8] == t.segments[7]  # the empty column has no piece
    assert t.n_pieces == t.pieces.size - 1 > X.shape[1]  # the long column is cut
    assert t.nbytes == t.data.nbytes + t.rows.nbytes + t.pieces.nbytes + t.segments.nbytes


# ================================================================================
# SparseCupyBackend's code, on scipy matrices through the emulated kernels
# ================================================================================
def _backends(
    kernels: EmulatedKernels,
    *,
    dtype: Any,
    index: Any,
    n_classes: int,
    fit_intercept: bool,
    transpose: str,
) -> tuple[SparseCupyBackend, SparseNumpyBackend]:
    X = _csr(600, 30, dtype=dtype, index=index, seed=n_classes)
    y, s = _labels(X.shape[0], n_classes), _weights(X.shape[0])
    kw = {"n_classes": n_classes, "fit_intercept": fit_intercept}
    gpu = SparseCupyBackend(X, y, s, kernels=kernels, transpose=transpose, **kw)
    exact = SparseNumpyBackend(X.astype(np.float64), y, s, **kw)  # same values, float64
    return gpu, exact


def _close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """Relative to the largest entry of ``expected`` (gradients have entries near zero)."""
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("transpose", TRANSPOSES)
@pytest.mark.parametrize("dtype", VALUE_TYPES)
@pytest.mark.parametrize("index", INDEX_TYPES)
@pytest.mark.parametrize(("n_classes", "fit_intercept"), [(2, True), (3, True), (2, False)])
def test_backend_methods_equal_the_scipy_baseline(
    emulated_kernels: EmulatedKernels,
    transpose: str,
    dtype: Any,
    index: Any,
    n_classes: int,
    fit_intercept: bool,
) -> None:
    gpu, exact = _backends(
        emulated_kernels,
        dtype=dtype,
        index=index,
        n_classes=n_classes,
        fit_intercept=fit_intercept,
        transpose=transpose,
    )
    assert gpu.format == "csr"
    assert gpu.X.indices.dtype == np.dtype(index)
    rng = np.random.default_rng(14)
    params = rng.normal(size=gpu.n_params) * 0.7
    v = rng.normal(size=gpu.n_params)
    # The kernels accumulate in double; cuSPARSE's products are in X's dtype.
    rtol = 2e-6 if transpose == "cusparse" and dtype == np.float32 else RTOL
    emulated_kernels.calls.clear()
    loss, grad = gpu.loss_grad(params)
    launched = [re.sub(r"_f(32|64)(_i(32|64))?$", "", e) for e, _ in emulated_kernels.calls]
    fused = (
        "gpulogreg_csr_logistic_loss_grad" if n_classes == 2 else "gpulogreg_csr_softmax_loss_grad"
    )
    assert launched[:2] == [fused, "gpulogreg_sum_partials"]
    expected = {
        "csc": ["gpulogreg_csr_matvecs", "gpulogreg_segment_sums"],
        "atomic": ["gpulogreg_csr_scatter_add"],
        "cusparse": [],
    }[transpose]
    assert launched[2:] == expected
    loss_ref, grad_ref = exact.loss_grad(params)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, loss_ref, rtol=RTOL)
    _close(grad, grad_ref, rtol, "gradient")
    assert gpu.loss(params) == loss
    _close(gpu.hvp(params, v), exact.hvp(params, v), rtol, "hvp")
    w = v[: gpu.layout.n_cols]
    _close(gpu.gram_matvec(w), exact.gram_matvec(w), rtol, "gram_matvec")
    _close(gpu.hessian_diagonal(params), exact.hessian_diagonal(params), rtol, "diagonal")
    _close(gpu.decision(params, gpu.X), exact.decision(params, exact.X), RTOL, "decision")
    _close(gpu.hessian(params), exact.hessian(params), RTOL, "hessian")
    _close(gpu.meat(params), exact.meat(params), RTOL, "meat")
    info, info_ref = gpu.information(params), exact.information(params)
    _close(info.hessian, info_ref.hessian, RTOL, "information")
    _close(info.gradient, info_ref.gradient, RTOL, "information gradient")
    groups = np.arange(gpu.n_samples) % 7
    _close(
        gpu.cluster_scores(params, groups, 7),
        exact.cluster_scores(params, groups, 7),
        RTOL,
        "cluster scores",
    )
    loss2, grad2 = gpu.loss_grad(params)
    assert loss2 == loss
    assert np.array_equal(grad2, grad)  # emulated atomics run in a fixed order too


def test_decision_takes_any_csr_and_dense_rows(emulated_kernels: EmulatedKernels) -> None:
    gpu, exact = _backends(
        emulated_kernels,
        dtype=np.float32,
        index=np.int32,
        n_classes=3,
        fit_intercept=True,
        transpose="csc",
    )
    params = np.random.default_rng(15).normal(size=gpu.n_params)
    other = _csr(77, 30, index=np.int64, seed=16)  # other rows, other index type, float64
    unsorted = other.copy()
    unsorted.indices[:2], unsorted.indptr = unsorted.indices[:2][::-1].copy(), unsorted.indptr
    unsorted.data[:2] = unsorted.data[:2][::-1].copy()
    expected = exact.decision(params, other)
    _close(gpu.decision(params, other), expected, RTOL, "int64 rows")
    _close(gpu.decision(params, unsorted), expected, RTOL, "unsorted rows")
    _close(gpu.decision(params, other.toarray()), expected, 1e-12, "dense rows")


def test_bind_moves_to_other_rows_and_remakes_the_copy(emulated_kernels: EmulatedKernels) -> None:
    X = _csr(600, 30, seed=17)
    y, s = _labels(600, 2), _weights(600)
    gpu = SparseCupyBackend(X, y, s, kernels=emulated_kernels)
    params = np.random.default_rng(18).normal(size=31)
    part = X[:250]
    gpu.bind(part, y[:250], s[:250] / s[:250].sum())
    assert gpu._transposed is not None
    assert gpu._transposed.data.size == part.nnz
    ref = SparseNumpyBackend(part, y[:250], s[:250] / s[:250].sum())
    _close(gpu.loss_grad(params)[1], ref.loss_grad(params)[1], RTOL, "rebound gradient")
    with pytest.raises(TypeError, match="keeps the dtype"):
        gpu.bind(part.astype(np.float32), y[:250], s[:250])


def test_backend_refuses_what_the_kernels_cannot_take(emulated_kernels: EmulatedKernels) -> None:
    X = _csr(100, 10)
    y, s = _labels(100, 2), _weights(100)
    with pytest.raises(TypeError, match="needs a CSR matrix"):
        SparseCupyBackend(X.tocsc(), y, s, kernels=emulated_kernels)
    mixed = X.copy()
    mixed.indptr = mixed.indptr.astype(np.int64)
    with pytest.raises(TypeError, match="both int32 or both int64"):
        SparseCupyBackend(mixed, y, s, kernels=emulated_kernels)
    with pytest.raises(ValueError, match="transpose must be one of"):
        SparseCupyBackend(X, y, s, kernels=emulated_kernels, transpose="csr")

    class Wide(SparseCupyBackend):
        row_lanes = 3

    with pytest.raises(ValueError, match="power of two"):
        Wide(X, y, s, kernels=emulated_kernels)
    gpu = SparseCupyBackend(X, y, s, kernels=emulated_kernels)
    with pytest.raises(ValueError, match="params must have shape"):
        gpu.loss(np.zeros(3))


# ================================================================================
# The estimator with device="gpu" on scipy input, through the emulated kernels
# ================================================================================
@pytest.fixture
def emulated_gpu(emulated_kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``device="gpu"`` runs SparseCupyBackend's code on scipy matrices and the emulated kernels."""
    from gpulogreg import backends
    from gpulogreg.backends import cupy_backend

    monkeypatch.setattr(backends, "gpu_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "to_device", lambda a, device: a)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: emulated_kernels)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2**40, 2**40, "emulated GPU")
    )
    emulated_kernels.calls.clear()
    return emulated_kernels


def _fit_both(X: Any, y: np.ndarray, **kw: Any) -> tuple[Any, Any]:
    from gpulogreg import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is not the point here
        cpu = LogisticRegression(device="cpu", **kw).fit(X, y)
        gpu = LogisticRegression(device="gpu", **kw).fit(X, y)
    return cpu, gpu


@pytest.mark.parametrize("solver", ["lbfgs", "newton", "newton-cg", "gd"])
@pytest.mark.parametrize("dtype", VALUE_TYPES)
def test_every_solver_runs_through_the_sparse_gpu_backend(
    emulated_gpu: EmulatedKernels, solver: str, dtype: Any
) -> None:
    X = _csr(800, 20, dtype=dtype, seed=19, density=0.3)
    y = (X @ np.linspace(-1, 1, 20) > 0).astype(np.int64)
    y[::9] = 1 - y[::9]
    tol = 1e-8 if dtype == np.float64 else 1e-6
    cpu, gpu = _fit_both(X, y, solver=solver, tol=tol, max_iter=3000, C=0.5)
    assert gpu.backend_ == "cupy"
    assert any("csr" in entry for entry, _ in emulated_gpu.calls)
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    scale = np.abs(cpu.coef_).max()
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(gpu.intercept_, cpu.intercept_, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-5)


def test_multinomial_and_minibatch_run_through_the_sparse_gpu_backend(
    emulated_gpu: EmulatedKernels,
) -> None:
    X = _csr(900, 15, seed=20, density=0.4)
    y = _labels(900, 3, seed=21)
    cpu, gpu = _fit_both(X, y, solver="lbfgs", tol=1e-9, max_iter=2000)
    assert gpu.backend_ == "cupy"
    assert gpu.coef_.shape == (3, 15)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=1e-6 * np.abs(cpu.coef_).max())
    cpu, gpu = _fit_both(X, y, solver="minibatch", random_state=0, max_iter=3)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=1e-6 * np.abs(cpu.coef_).max())


# ================================================================================
# Device memory
# ================================================================================
#: Bytes of Python objects a traced call may add on the host (argument tuples,
#: the emulator's log of launches), which no device allocation matches.
PYTHON_OBJECTS = 16 * 1024


def _traced_peak(fn: Any) -> int:
    """Peak bytes traced while ``fn`` runs, above what was live before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("transpose", TRANSPOSES)
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("index", INDEX_TYPES)
def test_memory_terms_bound_what_the_methods_allocate(
    emulated_kernels: EmulatedKernels,
    monkeypatch: pytest.MonkeyPatch,
    transpose: str,
    n_classes: int,
    index: Any,
) -> None:
    """Each method's traced peak (NumPy arrays on the host, as CuPy's on the device) <= its term.

    The host run allocates the backend's own arrays exactly as the device run
    does (the kernels allocate nothing); scipy stands in for cupyx in the
    inherited chunked methods and in ``"cusparse"``. The emulator's own model
    of flush to zero (a scan of the float32 inputs) is turned off: it is no
    device allocation.
    """
    monkeypatch.setattr(emulated_kernels, "flush_float32", False)
    X = _csr(8000, 400, dtype=np.float32, index=index, seed=22, density=0.005)
    m, n = X.shape
    y, s = _labels(m, n_classes), _weights(m)
    k = 1 if n_classes == 2 else n_classes
    terms = sparse_device_memory_terms(m, n, X.nnz, X.dtype, index, k, transpose=transpose)
    backend: list[SparseCupyBackend] = []
    built = _traced_peak(
        lambda: backend.append(
            SparseCupyBackend(
                X, y, s, n_classes=n_classes, kernels=emulated_kernels, transpose=transpose
            )
        )
    )
    # Held buffers (and, "csc", the copy being made); y and s are taken as given.
    assert built <= terms["held"] + terms["transpose"] + PYTHON_OBJECTS, (built, terms)
    gpu = backend[0]
    params = np.random.default_rng(23).normal(size=gpu.n_params) * 0.1
    calls = {
        "loss_grad": lambda: gpu.loss_grad(params),
        "hvp": lambda: gpu.hvp(params, params),
        "gram_matvec": lambda: gpu.gram_matvec(params[: gpu.layout.n_cols]),
        "hessian_diagonal": lambda: gpu.hessian_diagonal(params),
    }
    for name, call in calls.items():
        call()  # warm: lazily built caches are not the method's working memory
        peak = _traced_peak(call)
        assert peak <= terms[name] + PYTHON_OBJECTS, (name, peak, terms[name])
    assert set(calls) | {"hessian", "transpose"} == set(WORKING_TERMS)


def test_the_memory_check_counts_the_csc_copy() -> None:
    X = _csr(2000, 100, seed=24)
    csc = sparse_device_memory_terms(2000, 100, X.nnz, X.dtype, X.indices.dtype)
    atomic = sparse_device_memory_terms(
        2000, 100, X.nnz, X.dtype, X.indices.dtype, transpose="atomic"
    )
    assert csc["held"] - atomic["held"] >= X.nnz * (8 + 4)
    assert csc["data"] == atomic["data"] == X.nnz * 12 + 2001 * 4 + 2000 * 12
    with pytest.raises(GPUMemoryError, match="CSC copy") as info:
        check_sparse_device_memory(X, free_bytes=10**6, total_bytes=10**9, device_label="GPU 3")
    assert "GPU 3" in str(info.value)
    assert "Dataset" in str(info.value)
    check_sparse_device_memory(X, free_bytes=10**10)  # fits: no error
    with pytest.raises(ValueError, match="transpose must be one of"):
        sparse_device_memory_terms(10, 10, 10, np.float32, np.int32, transpose="nope")


def test_placing_csr_on_the_gpu_checks_its_stored_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """place_data sizes a CSR X by its stored values and features (densely: 134 GB)."""
    from gpulogreg import backends
    from gpulogreg.backends import cupy_backend

    rng = np.random.default_rng(25)
    columns = np.sort(rng.choice(2**24, size=(1000, 3), replace=False, shuffle=False), axis=1)
    wide = sp.csr_matrix(
        (rng.random(3000), columns.ravel(), np.arange(0, 3001, 3)), shape=(1000, 2**24)
    )
    seen = []
    monkeypatch.setattr(backends, "to_device", lambda a, device: seen.append(device) or a)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2 * 2**30, 2**31, "emulated GPU")
    )
    y, s = _labels(1000, 2), _weights(1000)
    place_data(wide, y, s, n_classes=2, device="gpu")  # 2^24 features, a few values: fits
    assert seen == ["gpu"] * 3
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2**20, 2**31, "emulated GPU")
    )
    with pytest.raises(GPUMemoryError, match="sparse X"):
        place_data(wide, y, s, n_classes=2, device="gpu")


def test_placement_refuses_a_cupy_that_narrows_needed_int64_indices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An old cupyx keeps int32 indices only: data needing int64 are refused, not wrapped."""
    import sys
    import types

    from gpulogreg import backends
    from gpulogreg.backends import GPUUnavailableError
    from gpulogreg.data.sparse import INT32_MAX

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(__version__="13.6.0"))
    wide = types.SimpleNamespace(data=np.zeros(3), shape=(3, INT32_MAX + 1))
    narrowed = types.SimpleNamespace(indices=np.zeros(3, dtype=np.int32))
    with pytest.raises(GPUUnavailableError, match=r"needs int64 indices, but CuPy 13\.6\.0"):
        backends._check_index_type_kept(wide, narrowed)
    kept = types.SimpleNamespace(indices=np.zeros(3, dtype=np.int64))
    backends._check_index_type_kept(wide, kept)
    small = types.SimpleNamespace(data=np.zeros(3), shape=(3, 10))
    backends._check_index_type_kept(small, narrowed)  # int32 is the rule there
