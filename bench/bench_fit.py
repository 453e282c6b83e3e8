"""pytest-benchmark suite: loss and gradient, and time to the optimum, per backend and solver.

Not part of the test run (``testpaths = ["tests"]``); run it explicitly::

    pip install -e ".[bench]"
    python -m pytest bench/bench_fit.py -q --benchmark-columns=min,median,max,rounds
    GPULOGREG_BENCH_ROWS=20000 GPULOGREG_BENCH_COLS=20 python -m pytest bench/bench_fit.py -q

Size from the environment: ``GPULOGREG_BENCH_ROWS`` (default 1,000,000),
``GPULOGREG_BENCH_COLS`` (100), ``GPULOGREG_BENCH_DTYPE`` (float32),
``GPULOGREG_BENCH_ROUNDS`` (3). The problems, the float64 Newton reference
and the gap are those of ``gpulogreg bench`` (:mod:`gpulogreg.benchmark`):
each fit's ``extra_info`` records its final relative objective gap, whether it
reached ``1e-8`` and its iterations; the read floor (one parallel read of X)
is benchmarked beside the loss-and-gradient evaluations so that they can be
compared within one run. Nothing here asserts on time.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from gpulogreg import LogisticRegression
from gpulogreg.benchmark import (
    DEFAULT_SOLVERS,
    SKLEARN_SOLVERS,
    TARGET_GAP,
    Reference,
    available_backends,
    make_loss_grad,
    make_problem,
)

ROWS = int(os.environ.get("GPULOGREG_BENCH_ROWS", "1000000"))
COLS = int(os.environ.get("GPULOGREG_BENCH_COLS", "100"))
DTYPE = os.environ.get("GPULOGREG_BENCH_DTYPE", "float32")
ROUNDS = int(os.environ.get("GPULOGREG_BENCH_ROUNDS", "3"))
C = 1.0

BACKENDS, SKIPPED = available_backends()
ALL_OURS = ["numpy", "numba", "cupy"]


def _skip_unavailable(backend: str) -> None:
    if backend not in BACKENDS:
        pytest.skip(f"{backend}: {SKIPPED.get(backend, 'unavailable')}")


@pytest.fixture(scope="module", params=["well", "ill"])
def problem(request):  # type: ignore[no-untyped-def]
    """(name, X, y, reference) for the well- and the ill-conditioned problem."""
    X, y = make_problem(ROWS, COLS, dtype=DTYPE, conditioning=request.param, seed=0)
    reference = Reference(X, y, C, "numba" if "numba" in BACKENDS else "numpy")
    return request.param, X, y, reference


@pytest.fixture(scope="module")
def well_problem():  # type: ignore[no-untyped-def]
    return make_problem(ROWS, COLS, dtype=DTYPE, conditioning="well", seed=0)


def test_read_floor(benchmark, well_problem):  # type: ignore[no-untyped-def]
    """One parallel read of X: the floor of a memory-bound evaluation."""
    pytest.importorskip("gpulogreg.backends._numba_kernels")
    from gpulogreg._numba_read import read_once

    X, _ = well_problem
    read_once(X)
    benchmark.extra_info["bytes"] = int(X.nbytes)
    benchmark.pedantic(read_once, args=(X,), rounds=5 * ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("backend", ALL_OURS)
def test_loss_and_gradient(benchmark, well_problem, backend):  # type: ignore[no-untyped-def]
    _skip_unavailable(backend)
    X, y = well_problem
    evaluate = make_loss_grad(backend, X, y)  # the loss is a host float: synchronises a GPU
    benchmark.extra_info["bytes"] = int(X.nbytes)
    benchmark.pedantic(evaluate, rounds=5 * ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("solver", DEFAULT_SOLVERS)
@pytest.mark.parametrize("backend", ALL_OURS)
def test_time_to_optimum(benchmark, problem, backend, solver):  # type: ignore[no-untyped-def]
    _skip_unavailable(backend)
    name, X, y, reference = problem

    def fit() -> LogisticRegression:
        model = LogisticRegression(
            C=C,
            solver=solver,
            tol=1e-8,
            backend=backend,
            device="gpu" if backend == "cupy" else "cpu",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converging shows as a gap
            return model.fit(X, y)

    model = benchmark.pedantic(fit, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    gap = reference.gap(model.coef_, model.intercept_)
    benchmark.extra_info.update(
        problem=name,
        gap=gap,
        reached=bool(gap <= TARGET_GAP),
        n_iter=int(np.sum(model.n_iter_)),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("solver", SKLEARN_SOLVERS)
def test_sklearn_time_to_optimum(benchmark, problem, solver, dtype):  # type: ignore[no-untyped-def]
    _skip_unavailable("sklearn")
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    name, X, y, reference = problem
    data = reference.X64 if dtype == "float64" else X.astype(np.float32, copy=False)

    def fit():  # type: ignore[no-untyped-def]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SkLogisticRegression(C=C, solver=solver, tol=1e-10, max_iter=1000).fit(data, y)

    model = benchmark.pedantic(fit, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    gap = reference.gap(model.coef_, model.intercept_)
    benchmark.extra_info.update(
        problem=name, gap=gap, reached=bool(gap <= TARGET_GAP), n_iter=int(np.max(model.n_iter_))
    )
