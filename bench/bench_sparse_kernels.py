"""One CSR loss-and-gradient evaluation against the read floor and the scipy baseline, in one run.

For each generated problem (issue 9's benchmark set, made by
:func:`gpulogreg.sparse_problems.make_sparse_problem`) and dtype it times,
round-robin in one process (noise from other processes hits every row
alike), medians and minima over ``--repeat`` rounds:

* ``floor``: the faster of two parallel Numba passes that stream ``data``
  and ``indices`` once: :func:`gpulogreg._numba_read.read_csr_once` (sums
  the values and indices as float64) and a sum of their bytes as 64-bit
  integer words (no conversions: the pure streaming time);
* ``numba loss_grad``: :meth:`SparseNumbaBackend.loss_grad`, the fused pass;
* ``scipy loss_grad``: :meth:`SparseNumpyBackend.loss_grad`, ``X @ w``,
  ufuncs, ``X.T @ r`` (the yardstick);
* ``numba loss``, ``numba hvp``: the other one-pass kernels, for reference.

Everything runs with BLAS on one thread (:func:`gpulogreg._blas.one_blas_thread`),
as the fits do: OpenBLAS threads spinning after the baseline's vector
arithmetic made each Numba kernel timed after it about 2x slower.

Problems: ``ctr`` (300,000 x 2^20 hashed ids, 30 per row, Zipf popularity,
values 1.0) and ``text`` (200,000 x 100,000, about 100 tf-idf values per row,
rows L2-normalised). Run it alone, with the OpenBLAS variables of this
environment unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_sparse_kernels.py

Targets (issue 9): numba loss_grad <= 2x the floor, >= 3x faster than scipy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gpulogreg._blas import one_blas_thread
from gpulogreg._numba_read import read_csr_once
from gpulogreg.backends.sparse_numba import SparseNumbaBackend
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend
from gpulogreg.benchmark import round_robin
from gpulogreg.sparse_problems import make_sparse_problem

#: The issue's problems: kind -> (rows, features, ids or mean words per row).
PROBLEMS = {"ctr": (300_000, 2**20, 30), "text": (200_000, 100_000, 100)}
#: Targets of issue 9: loss_grad / floor, and scipy / loss_grad.
FLOOR_TARGET = 2.0
SPEEDUP_TARGET = 3.0
#: Parts of the word-sum floor (a fixed number; the sum is exact anyway).
WORD_PARTS = 256


@njit(cache=True, nogil=True)
def _word_sum(words: np.ndarray, start: int, stop: int) -> Any:
    total = np.uint64(0)
    for k in range(start, stop):
        total += words[k]
    return total


@njit(cache=True, nogil=True, parallel=True)
def _read_words(a: np.ndarray, b: np.ndarray) -> Any:
    part = np.zeros(WORD_PARTS, np.uint64)
    step_a = (a.shape[0] + WORD_PARTS - 1) // WORD_PARTS
    step_b = (b.shape[0] + WORD_PARTS - 1) // WORD_PARTS
    for p in prange(WORD_PARTS):
        sa = _word_sum(a, p * step_a, min((p + 1) * step_a, a.shape[0]))
        part[p] = sa + _word_sum(b, p * step_b, min((p + 1) * step_b, b.shape[0]))
    return part.sum()


def _words(a: np.ndarray) -> np.ndarray:
    """The whole 8-byte words of a contiguous array as uint64 (a view; a 4-byte tail left out)."""
    raw = a.view(np.uint8)
    return raw[: raw.shape[0] // 8 * 8].view(np.uint64)


def cpu_name() -> str:
    """The ``model name`` of /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


#: Clock of the measurements: wall time, or with ``--single-thread-cpu-time`` the
#: CPU time of the calling thread (everything then runs on that one thread, and
#: time the process spends descheduled by other jobs does not count).
CLOCK: Callable[[], float] = time.perf_counter


def measure(kind: str, dtype: str, repeat: int, scale: float) -> dict[str, Any]:
    """Times (ms) of the floor, the fused kernels and the scipy baseline on one problem."""
    rows, features, per_row = PROBLEMS[kind]
    rows = max(int(rows * scale), 1000)
    X, y = make_sparse_problem(kind, rows, features, per_row=per_row, dtype=dtype, seed=0)
    y = y.astype(np.int32)
    s = np.full(rows, 1.0 / rows)
    fast = SparseNumbaBackend(X, y, s)
    base = SparseNumpyBackend(X, y, s)
    rng = np.random.default_rng(1)
    params = np.concatenate([0.1 * rng.standard_normal(features), [-1.0]])
    v = rng.standard_normal(features + 1)
    words = (_words(X.data), _words(X.indices))
    fns: dict[str, Callable[[], Any]] = {
        "floor (read_csr_once)": lambda: read_csr_once(X.data, X.indices),
        "floor (word sum)": lambda: _read_words(*words),
        "numba loss_grad": lambda: fast.loss_grad(params),
        "numba loss": lambda: fast.loss(params),
        "numba hvp": lambda: fast.hvp(params, v),
        "scipy loss_grad": lambda: base.loss_grad(params),
    }
    with one_blas_thread():
        times = round_robin(fns, repeat, clock=CLOCK)
    med = {k: 1e3 * statistics.median(t) for k, t in times.items()}
    low = {k: 1e3 * min(t) for k, t in times.items()}
    floor = min(med["floor (read_csr_once)"], med["floor (word sum)"])
    ours, scipy_time = med["numba loss_grad"], med["scipy loss_grad"]
    nbytes = X.data.nbytes + X.indices.nbytes
    return {
        "kind": kind,
        "dtype": dtype,
        "shape": [rows, features],
        "nnz": int(X.nnz),
        "data_indices_MB": nbytes / 1e6,
        "lanes": int(fast.lanes.shape[0] - 1),
        "median_ms": med,
        "min_ms": low,
        "floor_ms": floor,
        "floor_GBps": nbytes / floor / 1e6,
        "loss_grad_over_floor": ours / floor,
        "scipy_over_loss_grad": scipy_time / ours,
    }


def report(result: dict[str, Any]) -> str:
    """A table of one problem's times and the two ratios against the targets."""
    r = result
    lines = [
        f"{r['kind']} {r['dtype']} {r['shape'][0]:,} x {r['shape'][1]:,}, {r['nnz']:,} values "
        f"({r['data_indices_MB']:.0f} MB of data + indices), {r['lanes']} lanes",
        f"  {'':24s} {'median ms':>10s} {'min ms':>10s}",
    ]
    for name, t in r["median_ms"].items():
        lines.append(f"  {name:24s} {t:10.2f} {r['min_ms'][name]:10.2f}")
    lines.append(
        f"  floor {r['floor_ms']:.2f} ms ({r['floor_GBps']:.1f} GB/s); "
        f"loss_grad / floor = {r['loss_grad_over_floor']:.2f} (target <= {FLOOR_TARGET}); "
        f"scipy / loss_grad = {r['scipy_over_loss_grad']:.2f} (target >= {SPEEDUP_TARGET})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=[*PROBLEMS, "all"], default="all")
    parser.add_argument("--dtype", choices=["float32", "float64", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=15, help="round-robin rounds (default 15)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the issue's rows (quick runs)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--single-thread-cpu-time",
        action="store_true",
        help="one Numba thread, timed by the thread's CPU time (robust to other jobs)",
    )
    args = parser.parse_args(argv)
    if args.single_thread_cpu_time:
        global CLOCK
        numba.set_num_threads(1)
        CLOCK = time.thread_time
    kinds = list(PROBLEMS) if args.kind == "all" else [args.kind]
    dtypes = ["float32", "float64"] if args.dtype == "all" else [args.dtype]
    header = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "clock": "thread CPU time" if args.single_thread_cpu_time else "wall",
        "numba": numba.__version__,
        "numpy": np.__version__,
    }
    print(", ".join(f"{k}: {v}" for k, v in header.items()))
    results = []
    for kind in kinds:
        for dtype in dtypes:
            result = measure(kind, dtype, args.repeat, args.scale)
            results.append(result)
            print(report(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": header, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
