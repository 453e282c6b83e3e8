"""BLAS held to one thread while the solvers drive Numba kernels (gpulogreg._blas)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info

from gpulogreg import Dataset, LogisticRegression
from gpulogreg._blas import one_blas_thread


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def problem(sparse: bool) -> tuple[object, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5))
    y = (X[:, 0] + 0.5 * rng.standard_normal(400) > 0).astype(int)
    return (sp.csr_matrix(X) if sparse else X), y


def threads_seen_by_the_solver(model: LogisticRegression, X: object, y: object) -> set[int]:
    seen: set[int] = set()
    model.set_params(callback=lambda record: seen.update(blas_threads()))
    model.fit(X, y)
    assert seen, "the callback was never called"
    return seen


def test_one_blas_thread_limits_and_restores():
    before = blas_threads()
    assert before, "numpy links a BLAS that threadpoolctl sees"
    with one_blas_thread():
        assert set(blas_threads()) == {1}
        with one_blas_thread():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs"])
def test_numba_fits_run_their_solver_with_one_blas_thread(sparse, solver):
    X, y = problem(sparse)
    before = blas_threads()
    model = LogisticRegression(backend="numba", solver=solver)
    assert threads_seen_by_the_solver(model, X, y) == {1}
    assert blas_threads() == before


def test_out_of_core_numba_fits_run_with_one_blas_thread():
    X, y = problem(False)
    data = Dataset.from_arrays(X, y, chunk_rows=100)
    seen: set[int] = set()
    LogisticRegression(backend="numba", callback=lambda r: seen.update(blas_threads())).fit(data)
    assert seen == {1}


def test_the_numpy_baseline_keeps_its_blas_threads():
    # The yardstick runs as NumPy and BLAS run by default.
    X, y = problem(False)
    before = blas_threads()
    assert threads_seen_by_the_solver(LogisticRegression(backend="numpy"), X, y) == set(before)


def test_dask_fits_on_host_blocks_run_with_one_blas_thread():
    da = pytest.importorskip("dask.array")
    X, y = problem(False)
    seen: set[int] = set()
    LogisticRegression(callback=lambda r: seen.update(blas_threads())).fit(
        da.from_array(X, chunks=(100, 5)), da.from_array(y, chunks=100)
    )
    assert seen == {1}
