"""Row quadratic forms ``a_i^T Sigma a_i`` (the variance of the linear predictor) on every path."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numba
import numpy as np
import pytest

from gpulogreg.backends import quadratic
from gpulogreg.backends.quadratic import row_quadratic_forms

#: Rows: more than two of the kernel's 4096-row chunks, and not a multiple of
#: its 4-row tiles, so that chunk boundaries and a short last tile are covered.
ROWS = 8197


def _problem(
    n_samples: int, n_features: int, dtype: Any, fit_intercept: bool, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``X`` and a positive definite ``Sigma`` with correlated entries."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(dtype)
    d = n_features + int(fit_intercept)
    G = rng.standard_normal((d, d))
    return X, G @ G.T / d + np.eye(d)


def _rows(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    A = X.astype(np.float64)
    return np.hstack([A, np.ones((A.shape[0], 1))]) if fit_intercept else A


def _assert_forms(q: np.ndarray, X: np.ndarray, Sigma: np.ndarray, fit_intercept: bool) -> None:
    """``q`` against NumPy's ``einsum``, to rounding of the sum of |terms|."""
    A = _rows(X, fit_intercept)
    ref = np.einsum("ij,jk,ik->i", A, Sigma, A)
    scale = np.einsum("ij,jk,ik->i", np.abs(A), np.abs(Sigma), np.abs(A))
    assert q.dtype == np.float64
    assert q.shape == (X.shape[0],)
    assert np.all(np.abs(q - ref) <= 1e-13 * scale)


@pytest.fixture(params=["kernel", "blas"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both host paths: the Numba kernel, and blocked BLAS (forced, in small blocks)."""
    if request.param == "blas":
        monkeypatch.setattr(quadratic, "NUMBA_MAX_PARAMS", 0)
        monkeypatch.setattr(quadratic, "HOST_BLOCK_ROWS", 1000)  # several blocks, a short last
    return str(request.param)


@pytest.mark.parametrize("n_features", [1, 3, 50, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_forms_equal_the_reference(
    path: str, n_features: int, dtype: Any, fit_intercept: bool
) -> None:
    rows = ROWS if n_features < 300 else 4099  # two chunks; einsum's reference is slow
    X, Sigma = _problem(rows, n_features, dtype, fit_intercept)
    q = row_quadratic_forms(X, Sigma, fit_intercept=fit_intercept)
    _assert_forms(q, X, Sigma, fit_intercept)


def test_only_the_symmetric_part_counts(path: str) -> None:
    """A non-symmetric Sigma gives its own quadratic forms (those of its symmetric part)."""
    X, _ = _problem(1001, 7, np.float64, True)
    Sigma = np.random.default_rng(1).standard_normal((8, 8))
    q = row_quadratic_forms(X, Sigma, fit_intercept=True)
    _assert_forms(q, X, Sigma, True)
    assert not np.array_equal(Sigma, Sigma.T)


def test_the_kernel_serves_up_to_the_crossover(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    kernel, blocked = quadratic._quadratic_rows, quadratic._host_blocked

    def spy_kernel(*args: Any) -> None:
        calls.append("kernel")
        kernel(*args)

    def spy_blocked(*args: Any) -> None:
        calls.append("blas")
        blocked(*args)

    monkeypatch.setattr(quadratic, "_quadratic_rows", spy_kernel)
    monkeypatch.setattr(quadratic, "_host_blocked", spy_blocked)
    monkeypatch.setattr(quadratic, "NUMBA_MAX_PARAMS", 5)
    for n_features, fit_intercept in [(4, True), (5, False), (5, True), (6, False)]:
        X, Sigma = _problem(50, n_features, np.float32, fit_intercept)
        _assert_forms(
            row_quadratic_forms(X, Sigma, fit_intercept=fit_intercept), X, Sigma, fit_intercept
        )
    assert calls == ["kernel", "kernel", "blas", "blas"]


def test_independent_of_the_number_of_threads(path: str) -> None:
    X, Sigma = _problem(3 * 4096 + 3, 20, np.float32, True)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = row_quadratic_forms(X, Sigma, fit_intercept=True)
        numba.set_num_threads(2)
        two = row_quadratic_forms(X, Sigma, fit_intercept=True)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(one, two)


def test_memory_stays_far_below_a_rows_by_params_temporary(path: str) -> None:
    """tracemalloc's peak during a call on 200,000 x 50: the output, not ``n x d`` floats.

    NumPy's buffers (the output; per BLAS worker thread, a product block and a
    widened block) are traced; the kernel's only allocation of its own, which
    tracemalloc does not see, is a 4 x n_features scratch per 4096-row chunk.
    """
    X, Sigma = _problem(200_000, 50, np.float32, True)
    row_quadratic_forms(X[:10], Sigma, fit_intercept=True)  # compile outside the trace
    temporary = X.shape[0] * Sigma.shape[0] * 8  # an n_samples x d float64 array: 81.6 MB
    tracemalloc.start()
    try:
        q = row_quadratic_forms(X, Sigma, fit_intercept=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    blocks = 0 if path == "kernel" else 2 * quadratic.HOST_BLOCK_ROWS * Sigma.shape[0] * 8
    assert peak < q.nbytes + numba.get_num_threads() * blocks + 512 * 1024
    assert peak < temporary / 20


# -- refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("Sigma", "error", "match"),
    [
        (np.eye(3), ValueError, r"shape \(3, 3\); expected \(4, 4\) for 3 features \+ intercept"),
        (np.eye(4)[:, :3], ValueError, "expected"),
        (np.ones(4), ValueError, "expected"),
        (np.where(np.eye(4) > 0, np.nan, 0.0), ValueError, "Sigma contains nan at row 0, column 0"),
        (np.diag([1.0, 1.0, np.inf, 1.0]), ValueError, "inf at row 2, column 2"),
        (np.array([["a"] * 4] * 4), TypeError, "numeric"),
        (np.eye(4) * 1j, TypeError, "numeric"),
    ],
)
def test_bad_sigma_is_refused(Sigma: Any, error: type[Exception], match: str) -> None:
    X, _ = _problem(10, 3, np.float64, True)
    with pytest.raises(error, match=match):
        row_quadratic_forms(X, Sigma, fit_intercept=True)


def test_the_shape_of_sigma_follows_fit_intercept() -> None:
    X, _ = _problem(10, 3, np.float64, True)
    row_quadratic_forms(X, np.eye(3), fit_intercept=False)
    with pytest.raises(ValueError, match=r"expected \(3, 3\) for 3 features$"):
        row_quadratic_forms(X, np.eye(4), fit_intercept=False)


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        (np.ones(5), ValueError, "2-D"),
        (np.ones((5, 3), dtype=np.int64), TypeError, "float32 or float64"),
        (np.asfortranarray(np.ones((5, 3))), ValueError, "C-contiguous"),
        (np.ones((5, 6))[:, ::2], ValueError, "C-contiguous"),
        ([[1.0, 2.0, 3.0]], TypeError, "must be an array"),
    ],
)
def test_unvalidated_x_is_refused(X: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        row_quadratic_forms(X, np.eye(4), fit_intercept=True)


# -- CuPy (a stand-in on NumPy memory) ---------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_cupy_path_in_bounded_blocks_on_the_device_holding_x(
    monkeypatch: pytest.MonkeyPatch, dtype: Any, fit_intercept: bool
) -> None:
    """X on fake GPU 1 while GPU 0 is current: every operation on GPU 1, memory bounded."""
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    block = 64 * 1024
    monkeypatch.setattr(quadratic, "DEVICE_BLOCK_BYTES", block)
    X, Sigma = _problem(20_000, 50, dtype, fit_intercept)
    Xg = _fake_cupy.on_device(X, 1)
    Sg = _fake_cupy.on_device(Sigma, 1)  # a covariance on the device is fetched, checked
    before = state.reset_peak()
    q = row_quadratic_forms(Xg, Sg, fit_intercept=fit_intercept)
    peak = state.peak - before
    assert isinstance(q, _fake_cupy.DeviceArray)
    assert q.device_id == 1
    assert state.violations == [], f"ran on the current device, not X's: {state.violations[:5]}"
    assert state.current == 0  # restored
    _assert_forms(q.get(), X, Sigma, fit_intercept)
    d = Sigma.shape[0]
    buffers = 2 * block + 8 * 50 * d  # the product block, the widened block, Sigma[:n]
    assert peak <= q.nbytes + buffers + 4096
    assert peak < X.shape[0] * d * 8 / 10


# -- Dask --------------------------------------------------------------------------


def test_dask_blocks_give_a_lazy_array_equal_to_the_in_memory_forms() -> None:
    da = pytest.importorskip("dask.array")
    X, Sigma = _problem(ROWS, 6, np.float32, True)
    Xd = da.from_array(X, chunks=((700, 4096, 3400, 1), 6))
    q = row_quadratic_forms(Xd, Sigma, fit_intercept=True)
    assert isinstance(q, da.Array)
    assert q.chunks == ((700, 4096, 3400, 1),)
    computed = q.compute()
    assert isinstance(computed, np.ndarray)
    # Each row's sums do not depend on where it falls in a chunk or a tile.
    np.testing.assert_array_equal(computed, row_quadratic_forms(X, Sigma, fit_intercept=True))


def test_dask_block_with_nan_names_its_global_row() -> None:
    da = pytest.importorskip("dask.array")
    X, Sigma = _problem(3000, 4, np.float64, False)
    X[2100, 3] = np.nan
    q = row_quadratic_forms(da.from_array(X, chunks=(1000, 4)), Sigma, fit_intercept=False)
    with pytest.raises(ValueError, match="X contains NaN at row 2100, column 3"):
        q.compute()


def test_dask_x_in_column_chunks_is_refused() -> None:
    da = pytest.importorskip("dask.array")
    X, Sigma = _problem(100, 4, np.float64, True)
    with pytest.raises(ValueError, match="one column chunk"):
        row_quadratic_forms(da.from_array(X, chunks=(50, 2)), Sigma, fit_intercept=True)


# -- a real GPU --------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_forms_on_the_gpu(dtype: Any) -> None:
    cupy = pytest.importorskip("cupy")
    da = pytest.importorskip("dask.array")
    X, Sigma = _problem(ROWS, 50, dtype, True)
    q = row_quadratic_forms(cupy.asarray(X), Sigma, fit_intercept=True)
    assert isinstance(q, cupy.ndarray)
    _assert_forms(q.get(), X, Sigma, True)
    Xd = da.from_array(X, chunks=(3000, 50)).map_blocks(cupy.asarray)
    _assert_forms(
        cupy.asnumpy(row_quadratic_forms(Xd, Sigma, fit_intercept=True).compute()), X, Sigma, True
    )
