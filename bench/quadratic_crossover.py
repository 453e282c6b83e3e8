"""Row quadratic forms on the CPU: the Numba kernel against blocked BLAS, per number of parameters.

:func:`gpulogreg.backends.quadratic.row_quadratic_forms` sends NumPy data to
its Numba kernel up to ``NUMBA_MAX_PARAMS`` parameters and to blocked BLAS
above; this prints both paths' time per row for each ``d`` (and each BLAS
block size asked for), taken round-robin so that noise from other processes
hits them alike, as minima and medians. Rows are chosen per ``d`` for about
the same arithmetic (and at least two row chunks, so that two threads have
work). Run with the OpenBLAS tuning variables of this environment unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python bench/quadratic_crossover.py --params 64,256,1024,2048 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable

import numba
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gpulogreg._numba_read import CHUNK_ROWS
from gpulogreg.backends import quadratic
from gpulogreg.benchmark import round_robin
from gpulogreg.info import system_info


def _cpu_name() -> str:
    """The CPU's model name (``lscpu``'s), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _paths(X: np.ndarray, S: np.ndarray, block_rows: list[int]) -> dict[str, Callable[[], None]]:
    """The kernel and the blocked path per block size, all through the public function."""

    def kernel() -> None:
        quadratic.row_quadratic_forms(X, S, fit_intercept=True)

    def blocked(rows: int) -> Callable[[], None]:
        def run() -> None:
            saved = quadratic.NUMBA_MAX_PARAMS, quadratic.HOST_BLOCK_ROWS
            quadratic.NUMBA_MAX_PARAMS, quadratic.HOST_BLOCK_ROWS = 0, rows
            try:
                quadratic.row_quadratic_forms(X, S, fit_intercept=True)
            finally:
                quadratic.NUMBA_MAX_PARAMS, quadratic.HOST_BLOCK_ROWS = saved

        return run

    return {"kernel": kernel, **{f"BLAS {rows}": blocked(rows) for rows in block_rows}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="8,32,64,128,256,384,512,768,1024,1280,1536,2048")
    parser.add_argument("--block-rows", default="256,1024", help="BLAS block sizes to time")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=numba.get_num_threads())
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--flops", type=float, default=2e9, help="multiply-adds per call")
    args = parser.parse_args(argv)
    numba.set_num_threads(args.threads)
    block_rows = [int(v) for v in args.block_rows.split(",")]
    info = system_info(init_numba=False)
    blas = [(e.get("internal_api"), e.get("version"), e.get("architecture")) for e in info["blas"]]
    print(f"CPU: {_cpu_name()}; threads: {args.threads}; BLAS: {blas}; {args.dtype}")
    print("ns per row, min / median of", args.repeat, "round-robin runs")
    rng = np.random.default_rng(0)
    with threadpool_limits(args.threads, user_api="blas"):
        for d in (int(v) for v in args.params.split(",")):
            n = d - 1  # with the intercept
            m = max(2 * CHUNK_ROWS, min(400_000, int(args.flops // d**2)))
            X = rng.standard_normal((m, n), dtype=np.float32).astype(args.dtype)
            G = rng.standard_normal((d, d))
            S = G @ G.T / d
            times = round_robin(_paths(X, S, block_rows), args.repeat)
            cells = [
                f"{name} {1e9 * min(t) / m:9.0f} / {1e9 * statistics.median(t) / m:9.0f}"
                for name, t in times.items()
            ]
            print(f"d={d:5d} m={m:7d}: " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
