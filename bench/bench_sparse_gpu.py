"""GPU benchmark of the CSR path: ``X^T R`` three ways and the fused kernels, against the floor.

Run on a machine with a CUDA device (nothing here runs without one)::

    python bench/bench_sparse_gpu.py                           # ctr and text, float32 and float64
    python bench/bench_sparse_gpu.py --kinds ctr --dtype float32 --scale 0.1 --json out.jsonl
    python bench/bench_sparse_gpu.py --fit                     # and the time to the optimum

Data: :func:`gpulogreg.sparse_problems.make_sparse_problem`, issue 9's set:
``ctr`` 300,000 x 2^20 hashed ids, 30 per row with Zipf popularity (a few
columns hold a good part of the values), binary values, C = 0.1; ``text``
200,000 x 100,000, about 100 tf-idf values per row (C = 1; the issue names
none). ``--scale`` multiplies the rows.

Measured for each data set and dtype on one device in one run (CUDA events
around each call, medians of ``--repeat``):

* ``floor``: a device-to-device copy (``cupy.copyto``) of ``data``,
  ``indices`` and ``indptr``; half its time estimates one read of the arrays
  every pass must stream.
* ``loss_grad`` for each :data:`~gpulogreg.backends.sparse_cupy.TRANSPOSES`
  setting (``csc``: gather on a CSC copy, the default; ``atomic``: scatter
  with double atomicAdd; ``cusparse``: CuPy's transposed SpMV), and its parts:
  the fused loss/residual kernel with its reduction, and ``X^T R`` alone;
  ``x floor`` is the time over the one-read estimate.
* whether each setting's gradient repeats bit for bit over
  :data:`REPEATS_FOR_BITS` evaluations, and how far it is from the ``csc``
  one (relative to the largest entry);
* the CSC copy: seconds to make it, its bytes against the CSR's;
* the scipy-like baseline (:class:`~gpulogreg.backends.sparse_numpy.SparseNumpyBackend`
  on the same cupyx matrix: cuSPARSE ``X @ w``, CuPy ufuncs, cuSPARSE ``X^T r``);
* ``hvp`` and ``hessian_diagonal`` with the default setting;
* ``lanes``: the fused kernel and the gather for each group width (the
  heuristic's choice, :func:`~gpulogreg.backends.sparse_cupy.lanes_for`,
  marked), to check the rule;
* with ``--fit``: the seconds to a 1e-8 relative objective gap of
  ``lbfgs`` and ``newton-cg`` on the GPU (the reference optimum is the
  lowest objective any run reaches).

Each (data set, dtype) block prints and appends its JSON lines as soon as it
is measured, so a run cut short keeps what it measured. Nothing here is a
claim until it has run on a GPU: the README's figures name the device and
the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_gpu import device_line, gpu_time

#: The data sets: rows, features, ids (or words) per row, C of the fits.
KINDS: dict[str, dict[str, Any]] = {
    "ctr": {"n_rows": 300_000, "n_features": 2**20, "per_row": 30, "C": 0.1},
    "text": {"n_rows": 200_000, "n_features": 100_000, "per_row": 100, "C": 1.0},
}
#: Gradients compared bit for bit per setting.
REPEATS_FOR_BITS = 5
#: Group widths of the lanes sweep.
LANES = (2, 4, 8, 16, 32)
#: Relative objective gap that counts as "at the optimum".
TARGET_GAP = 1e-8


def _sync(cp: Any) -> None:
    cp.cuda.Device().synchronize()


def _wall(cp: Any, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of one call including host work and transfers (e.g. building a backend)."""
    _sync(cp)
    start = time.perf_counter()
    out = fn()
    _sync(cp)
    return time.perf_counter() - start, out


def floor_seconds(cp: Any, Xd: Any, repeat: int) -> tuple[float, int]:
    """(seconds of one read, bytes) of data + indices + indptr: a device copy, halved."""
    arrays = (Xd.data, Xd.indices, Xd.indptr)
    copies = [cp.empty_like(a) for a in arrays]
    nbytes = sum(int(a.nbytes) for a in arrays)

    def copy() -> None:
        for src, dst in zip(arrays, copies, strict=True):
            cp.copyto(dst, src)

    return gpu_time(cp, copy, repeat) / 2, nbytes


def _relative(a: Any, b: Any) -> float:
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a - b).max()) / scale


def measure(cp: Any, X: Any, y: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every row of one (data set, dtype) block."""
    from gpulogreg.backends import to_device
    from gpulogreg.backends.sparse_cupy import (
        TRANSPOSES,
        SparseCupyBackend,
        lanes_for,
    )
    from gpulogreg.backends.sparse_numpy import SparseNumpyBackend

    m, n = X.shape
    Xd = to_device(X, "gpu")
    yd = cp.asarray(y, dtype=cp.int32)
    sd = cp.full(m, 1.0 / m)
    t_read, nbytes = floor_seconds(cp, Xd, args.repeat)
    rows: list[dict[str, Any]] = [
        {"what": "one read of data+indices+indptr (copy / 2)", "seconds": t_read,
         "gbps": nbytes / t_read, "bytes": nbytes},
    ]  # fmt: skip

    def add(what: str, seconds: float, **extra: Any) -> None:
        rows.append({"what": what, "seconds": seconds, "x_floor": seconds / t_read, **extra})

    params = cp.asarray(np.random.default_rng(1).normal(size=n + 1) * 0.05)
    backends: dict[str, Any] = {}
    gradients: dict[str, np.ndarray] = {}
    for transpose in TRANSPOSES:
        built, backend = _wall(cp, lambda t=transpose: SparseCupyBackend(Xd, yd, sd, transpose=t))
        backends[transpose] = backend
        if transpose == "csc":
            copy = backend._transposed
            rows.append(
                {
                    "what": "CSC copy: made in (once per fit)",
                    "seconds": built,
                    "copy_bytes": copy.nbytes,
                    "copy_vs_csr": copy.nbytes / nbytes,
                    "pieces": copy.n_pieces,
                    "lanes": copy.lanes,
                }
            )
        grads = [cp.asnumpy(backend.loss_grad(params)[1]) for _ in range(REPEATS_FOR_BITS)]
        gradients[transpose] = grads[0]
        add(
            f"loss_grad, transpose={transpose}",
            gpu_time(cp, lambda b=backend: b.loss_grad(params), args.repeat),
            bitwise_repeatable=all(np.array_equal(g, grads[0]) for g in grads[1:]),
            rel_diff_from_csc=_relative(grads[0], gradients["csc"]),
        )
        add(
            f"  fused kernel + reduction ({backend._lanes} lanes)",
            gpu_time(cp, lambda b=backend: b._fused(params), args.repeat),
        )
        out = cp.empty(n + 1)
        residual = backend._residual[:, 0]
        add(
            f"  X^T R alone, transpose={transpose}",
            gpu_time(cp, lambda b=backend, r=residual, o=out: b._transpose_into(r, o), args.repeat),
        )
    baseline = SparseNumpyBackend(Xd, yd, sd)
    add(
        "loss_grad, scipy-like baseline on cupyx",
        gpu_time(cp, lambda: baseline.loss_grad(params), args.repeat),
        rel_diff_from_csc=_relative(cp.asnumpy(baseline.loss_grad(params)[1]), gradients["csc"]),
    )
    default = backends["csc"]
    for name in ("atomic", "cusparse"):
        backends.pop(name)
    add("hvp, default", gpu_time(cp, lambda: default.hvp(params, params), args.repeat))
    add(
        "hessian_diagonal, default",
        gpu_time(cp, lambda: default.hessian_diagonal(params), args.repeat),
    )
    if not args.no_lanes:
        rows += lanes_sweep(cp, Xd, yd, sd, params, t_read, args.repeat, lanes_for)
    return rows


def lanes_sweep(
    cp: Any, Xd: Any, yd: Any, sd: Any, params: Any, t_read: float, repeat: int, rule: Any
) -> list[dict[str, Any]]:
    """The fused kernel and the CSC gather at each group width."""
    from gpulogreg.backends.sparse_cupy import SparseCupyBackend

    m, n = Xd.shape
    row_choice = rule(Xd.nnz / m)
    column_choice = rule(Xd.nnz / n)
    out_rows = []
    for lanes in LANES:

        class Sweep(SparseCupyBackend):
            row_lanes = lanes
            column_lanes = lanes

        backend = Sweep(Xd, yd, sd)
        fused = gpu_time(cp, lambda b=backend: b._fused(params), repeat)
        out = cp.empty(n + 1)
        residual = backend._residual[:, 0]
        gather = gpu_time(cp, lambda b=backend, r=residual, o=out: b._transpose_into(r, o), repeat)
        marks = ("rows" if lanes == row_choice else "") + (
            " columns" if lanes == column_choice else ""
        )
        rule_note = f" (rule: {marks.strip()})" if marks else ""
        out_rows.append(
            {
                "what": f"lanes {lanes:2d}: fused + gather{rule_note}",
                "lanes": lanes,
                "fused_seconds": fused,
                "gather_seconds": gather,
                "seconds": fused + gather,
                "x_floor": (fused + gather) / t_read,
            }
        )
        del backend
    return out_rows


def fit_rows(cp: Any, X: Any, y: np.ndarray, C: float) -> list[dict[str, Any]]:
    """Seconds to a TARGET_GAP relative objective gap, lbfgs and newton-cg on the GPU."""
    from gpulogreg import LogisticRegression

    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LogisticRegression(solver="lbfgs", max_iter=3, device="gpu").fit(X[:2000], y[:2000])
        for solver in ("lbfgs", "newton-cg"):
            clf = LogisticRegression(solver=solver, C=C, tol=1e-10, max_iter=5000, device="gpu")
            wall, _ = _wall(cp, lambda c=clf: c.fit(X, y))
            history = clf.history_
            objective = history["objective"] if isinstance(history, dict) else history.objective
            elapsed = history["elapsed"] if isinstance(history, dict) else history.elapsed
            runs[solver] = (list(objective), list(elapsed), wall, clf.n_iter_)
    f_star = min(min(objective) for objective, *_ in runs.values())
    out = []
    for solver, (objective, elapsed, wall, n_iter) in runs.items():
        gaps = [(f - f_star) / abs(f_star) for f in objective]
        reached = next((t for g, t in zip(gaps, elapsed, strict=True) if g <= TARGET_GAP), None)
        out.append(
            {
                "what": f"time to 1e-8 gap, {solver}, gpu",
                "solver": solver,
                "seconds_to_target": reached,
                "fit_seconds": wall,
                "iterations": int(np.max(n_iter)),
                "final_gap": gaps[-1],
            }
        )
    return out


def print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if "seconds_to_target" in row:
            target = row["seconds_to_target"]
            reached = f"{target:8.3f} s" if target is not None else "  not reached"
            print(
                f"  {row['what']:<52} {reached}   fit {row['fit_seconds']:7.3f} s"
                f"   {row['iterations']:5d} iterations   final gap {row['final_gap']:.1e}"
            )
            continue
        gbps = f"{row['gbps']:8.1f} GB/s" if "gbps" in row else " " * 13
        floor = f"{row['x_floor']:7.2f}x floor" if "x_floor" in row else ""
        extra = ""
        if "bitwise_repeatable" in row:
            extra = f"  bitwise repeatable: {row['bitwise_repeatable']}"
        if "rel_diff_from_csc" in row:
            extra += f"  vs csc {row['rel_diff_from_csc']:.1e}"
        if "copy_bytes" in row:
            extra = f"  {row['copy_bytes'] / 1e6:.0f} MB ({row['copy_vs_csr']:.2f}x CSR)"
            extra += f", {row['pieces']} pieces, {row['lanes']} lanes"
        if "fused_seconds" in row:
            extra = f"  ({row['fused_seconds'] * 1e3:.3f} + {row['gather_seconds'] * 1e3:.3f} ms)"
        print(f"  {row['what']:<52} {row['seconds'] * 1e3:9.3f} ms {gbps} {floor}{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument(
        "--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"]
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the rows")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per figure (median)")
    parser.add_argument("--no-lanes", action="store_true", help="skip the lanes sweep")
    parser.add_argument("--fit", action="store_true", help="also time lbfgs and newton-cg fits")
    parser.add_argument("--json", help="append one JSON object per measurement to this file")
    args = parser.parse_args(argv)

    from gpulogreg.backends import gpu_status

    available, reason = gpu_status()
    if not available:
        print(f"bench_sparse_gpu: no usable GPU ({reason}); nothing measured", file=sys.stderr)
        return 2
    import cupy as cp

    from gpulogreg.data.sparse import check_sparse
    from gpulogreg.sparse_problems import make_sparse_problem

    device = device_line(cp)
    print(f"device: {device}")
    for kind in args.kinds:
        spec = KINDS[kind]
        n_rows = max(2, int(spec["n_rows"] * args.scale))
        made, (X64, y) = _wall(
            cp,
            lambda s=spec, r=n_rows, k=kind: make_sparse_problem(
                k, r, s["n_features"], per_row=s["per_row"], dtype="float64", seed=0
            ),
        )
        print(f"\n{kind}: {n_rows:,} x {spec['n_features']:,}, {X64.nnz:,} stored values "
              f"(generated in {made:.1f} s)")  # fmt: skip
        for dtype in args.dtype:
            X = check_sparse(X64.astype(dtype))
            csr_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
            print(f" {dtype}: {csr_bytes / 1e6:.0f} MB of CSR")
            rows = measure(cp, X, y, args)
            if args.fit:
                rows += fit_rows(cp, X, y, spec["C"])
            print_rows(rows)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as handle:
                    for row in rows:
                        record = {"device": device, "bench": "sparse", "kind": kind}
                        record.update(dtype=dtype, rows=n_rows, features=spec["n_features"])
                        record.update(nnz=int(X.nnz), **row)
                        handle.write(json.dumps(record) + "\n")
            sys.stdout.flush()
            cp.get_default_memory_pool().free_all_blocks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
