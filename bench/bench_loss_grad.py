"""pytest-benchmark suite: the read floor, the Numba and the NumPy loss-and-gradient.

Not collected by the test run (``testpaths = ["tests"]``). Run it with::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python -m pytest bench/bench_loss_grad.py --benchmark-only

Size and dtype come from the environment (default 1,000,000 x 100 float32)::

    GPULOGREG_BENCH_ROWS=200000 GPULOGREG_BENCH_FEATURES=50 GPULOGREG_BENCH_DTYPE=float64

Compare the groups' means within one run only (bandwidth varies between runs);
``bench/loss_grad_floor.py`` prints the ratios directly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from gpulogreg._numba_read import read_once
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.numpy_backend import NumpyBackend

ROWS = int(float(os.environ.get("GPULOGREG_BENCH_ROWS", "1e6")))
FEATURES = int(os.environ.get("GPULOGREG_BENCH_FEATURES", "100"))
DTYPE = os.environ.get("GPULOGREG_BENCH_DTYPE", "float32")


@pytest.fixture(scope="module")
def data():
    from loss_grad_floor import make_data

    return make_data(ROWS, FEATURES, DTYPE)


@pytest.fixture(scope="module")
def backends(data):
    X, y, s, _ = data
    return NumbaBackend(X, y, s), NumpyBackend(X, y, s)


def _pedantic(benchmark, fn, rounds=30):
    fn()  # compile / warm up outside the timing
    return benchmark.pedantic(fn, rounds=rounds, iterations=1)


@pytest.mark.benchmark(group=f"loss_grad {ROWS}x{FEATURES} {DTYPE}")
def test_read_once(benchmark, data):
    X = data[0]
    benchmark.extra_info["GB"] = X.nbytes / 1e9
    _pedantic(benchmark, lambda: read_once(X))


@pytest.mark.benchmark(group=f"loss_grad {ROWS}x{FEATURES} {DTYPE}")
def test_numba_loss_grad(benchmark, data, backends):
    params = data[3]
    benchmark.extra_info["GB"] = data[0].nbytes / 1e9
    loss, grad = _pedantic(benchmark, lambda: backends[0].loss_grad(params))
    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))


@pytest.mark.benchmark(group=f"loss_grad {ROWS}x{FEATURES} {DTYPE}")
def test_numpy_loss_grad(benchmark, data, backends):
    params = data[3]
    benchmark.extra_info["GB"] = data[0].nbytes / 1e9
    _pedantic(benchmark, lambda: backends[1].loss_grad(params), rounds=10)
