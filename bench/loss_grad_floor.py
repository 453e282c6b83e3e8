"""One loss-and-gradient evaluation against the memory-read floor, in one run.

Prints a table for one size and dtype: the parallel Numba read of ``X``
(:func:`gpulogreg._numba_read.read_once`, the floor), the fused
Numba ``loss_grad`` and the NumPy baseline, as medians (and minima) over many
repeats. The Numba rows are taken round-robin, so that noise from other
processes hits them alike; the baseline is timed after them (see
:func:`loss_grad_table`). Ratios are of medians from the same run. With ``--hessian`` it also
measures the OpenBLAS hazard: a Numba ``loss_grad`` run right after a BLAS
Hessian, and a Newton iteration (Hessian + loss_grad) per threading strategy.

Run with the OpenBLAS tuning variables of this environment unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python bench/loss_grad_floor.py --rows 1000000 --features 100 --dtype float32

Targets (issue 2, 1,000,000 x 100): numba/read <= 1.3 (float32) or 1.5
(float64), numpy/numba >= 4 in float32.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gpulogreg._numba_read import read_once
from gpulogreg.backends import _numba_kernels as nk
from gpulogreg.backends import numba_backend
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.numpy_backend import NumpyBackend
from gpulogreg.benchmark import round_robin

#: Ratio targets of issue 2 (numba loss_grad time / read_once time).
FLOOR_TARGET = {"float32": 1.3, "float64": 1.5}
#: Minimum speed-up over the NumPy baseline (float32).
SPEEDUP_TARGET = 4.0


def make_data(
    rows: int, features: int, dtype: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standard normal ``X`` (generated in float32 chunks), labels of a logistic model."""
    rng = np.random.default_rng(seed)
    X = np.empty((rows, features), dtype=dtype)
    step = 1 << 16
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        X[start:stop] = rng.standard_normal((stop - start, features), dtype=np.float32)
    w = rng.standard_normal(features) / np.sqrt(features)
    z = nk.binary_decision(X, w, 0.3)
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-z))).astype(np.int32)
    s = np.full(rows, 1.0 / rows)
    params = np.concatenate([0.5 * w, [0.1]])
    return X, y, s, params


#: Clock of the measurements: wall time, or with ``--single-core-cpu-time`` the
#: CPU time of the calling thread (everything then runs on that one thread).
CLOCK: Callable[[], float] = time.perf_counter


def loss_grad_table(
    X: np.ndarray, y: np.ndarray, s: np.ndarray, params: np.ndarray, repeats: int, numpy: bool
) -> dict[str, float]:
    """The Numba rows round-robin; then the NumPy baseline on its own.

    The baseline is not interleaved with the Numba kernels: its OpenBLAS
    threads keep spinning after each call and would slow whichever Numba
    kernel runs next (measured: the read floor went from 15 to 35 ms when it
    followed the baseline), which is the hazard the Newton solver has to
    avoid, not a property of the kernels compared here.
    """
    numba_b = NumbaBackend(X, y, s)
    fns: dict[str, Callable[[], object]] = {
        "read_once (floor)": lambda: read_once(X),
        "numba loss_grad": lambda: numba_b.loss_grad(params),
        "numba loss": lambda: numba_b.loss(params),
    }
    times = round_robin(fns, repeats, clock=CLOCK)
    if numpy:
        numpy_b = NumpyBackend(X, y, s)
        baseline = {"numpy loss_grad": lambda: numpy_b.loss_grad(params)}
        times.update(round_robin(baseline, repeats, clock=CLOCK))
    gbytes = X.nbytes / 1e9
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["read_once (floor)"]
    h = ("median ms", "min ms", "GB/s", "x floor", "numpy/this")
    print(f"{'':22s} {h[0]:>10s} {h[1]:>8s} {h[2]:>7s} {h[3]:>8s} {h[4]:>10s}")
    for k, v in times.items():
        speedup = f"{med['numpy loss_grad'] / med[k]:10.2f}" if numpy else f"{'':10s}"
        print(
            f"{k:22s} {med[k] * 1e3:10.2f} {min(v) * 1e3:8.2f} {gbytes / med[k]:7.1f} "
            f"{med[k] / floor:8.2f} {speedup}"
        )
    return med


def hessian_table(
    X: np.ndarray, y: np.ndarray, s: np.ndarray, params: np.ndarray, repeats: int
) -> None:
    """The OpenBLAS hazard: loss_grad right after a BLAS Hessian, per strategy."""
    b = NumbaBackend(X, y, s)
    print("\nNewton iteration = hessian + loss_grad (medians, ms); 'lg after' is the loss_grad")
    print("run right after the Hessian, 'lg alone' the same call after a 0.3 s pause.")
    print(f"{'strategy':12s} {'hessian':>9s} {'lg after':>9s} {'lg alone':>9s} {'iteration':>10s}")
    for strategy in numba_backend.HESSIAN_STRATEGIES:
        numba_backend.HESSIAN_STRATEGY = strategy
        b.hessian(params)
        hess, after, alone = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            b.hessian(params)
            t1 = time.perf_counter()
            b.loss_grad(params)
            t2 = time.perf_counter()
            time.sleep(0.3)
            t3 = time.perf_counter()
            b.loss_grad(params)
            t4 = time.perf_counter()
            hess.append(t1 - t0)
            after.append(t2 - t1)
            alone.append(t4 - t3)
        h, a, z = (statistics.median(v) * 1e3 for v in (hess, after, alone))
        print(f"{strategy:12s} {h:9.1f} {a:9.2f} {z:9.2f} {h + a:10.1f}")
    numba_backend.HESSIAN_STRATEGY = numba_backend.HESSIAN_STRATEGIES[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="Numba threads (default: all)")
    parser.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    parser.add_argument("--hessian", action="store_true", help="also measure the BLAS/Numba hazard")
    parser.add_argument("--hessian-repeats", type=int, default=10)
    parser.add_argument(
        "--single-core-cpu-time",
        action="store_true",
        help="run everything on one thread (Numba and BLAS) and time it in CPU time of "
        "that thread: ratios that survive other processes sharing the cores",
    )
    args = parser.parse_args(argv)

    import numba
    import threadpoolctl

    global CLOCK
    if args.threads:
        numba.set_num_threads(args.threads)
    if args.single_core_cpu_time:
        numba.set_num_threads(1)
        threadpoolctl.threadpool_limits(limits=1, user_api="blas")
        CLOCK = time.thread_time
    rows = int(args.rows)
    X, y, s, params = make_data(rows, args.features, args.dtype)
    blas = ", ".join(
        f"{info.get('internal_api')} {info.get('num_threads')} threads"
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    )
    print(
        f"{rows} x {args.features} {args.dtype} ({X.nbytes / 1e6:.0f} MB), {args.repeats} repeats; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{numba.get_num_threads()} Numba threads, BLAS: {blas}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
        f"clock: {'CPU time of one thread' if args.single_core_cpu_time else 'wall'}"
    )
    med = loss_grad_table(X, y, s, params, args.repeats, not args.no_numpy)
    ratio = med["numba loss_grad"] / med["read_once (floor)"]
    target = FLOOR_TARGET[args.dtype]
    verdict = "PASS" if ratio <= target else "FAIL"
    print(f"\nnumba loss_grad / read_once = {ratio:.2f} (target <= {target}): {verdict}")
    if not args.no_numpy:
        speedup = med["numpy loss_grad"] / med["numba loss_grad"]
        verdict = "PASS" if speedup >= SPEEDUP_TARGET else "FAIL"
        note = "" if args.dtype == "float32" else " (target applies to float32)"
        print(f"numpy / numba loss_grad = {speedup:.2f} (>= {SPEEDUP_TARGET}){note}: {verdict}")
    if args.hessian:
        hessian_table(X, y, s, params, args.hessian_repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
