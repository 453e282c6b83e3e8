"""GPU benchmark: loss-and-gradient speed against the device's copy bandwidth; time to optimum.

Run on a machine with a CUDA device (nothing here runs without one)::

    python bench/bench_gpu.py                      # 1,000,000 x 100, float32 and float64
    python bench/bench_gpu.py --rows 200000 --features 50 --dtype float32 --json gpu.jsonl

What it measures, all in the same run on the same device:

* ``copy``: a device-to-device copy of X (cudaMemcpy), reported as bytes read
  plus written per second; half its time estimates one read of X, the floor
  of a memory-bound pass.
* ``loss_grad``: one evaluation of the CuPy backend (cuBLAS ``X @ w``, the
  fused kernel, cuBLAS ``R^T X``), its parts, the unfused NumPy baseline
  running on CuPy arrays, and the Numba CPU backend on the host copy of X.
  GB/s counts the two passes over X that cuBLAS makes (``X @ w`` and
  ``R^T X``); ``x floor`` is the time over the estimated one-read time.
* ``time to optimum``: ``LogisticRegression(tol=1e-8)`` per solver on the GPU
  and the CPU, timed from the fit's history until the objective is within
  1e-8 (relative) of a float64 Newton reference on the same values.

GPU timings use CUDA events around each call (medians); CPU timings use
``time.perf_counter``. Nothing here is a claim until it has been run on a GPU:
the README's GPU figures say which device and command produced them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

#: Relative objective gap that counts as "at the optimum".
TARGET_GAP = 1e-8


def make_data(n_rows: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-conditioned logistic data (float64; cast per run)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))
    w = rng.standard_normal(n_features) / np.sqrt(n_features)
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-(X @ w + 0.3)))).astype(np.int32)
    return X, y


def gpu_time(cp: Any, fn: Callable[[], Any], repeat: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` on the current stream, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def cpu_time(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_line(cp: Any) -> str:
    device = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    runtime = cp.cuda.runtime.runtimeGetVersion()
    return (
        f"{name}, {props['multiProcessorCount']} SMs, "
        f"{props['totalGlobalMem'] / 2**30:.0f} GiB; CuPy {cp.__version__}, "
        f"CUDA runtime {runtime // 1000}.{(runtime % 1000) // 10}"
    )


def bench_loss_grad(cp: Any, X: np.ndarray, y: np.ndarray, repeat: int) -> list[dict[str, Any]]:
    """Rows of the loss-and-gradient table for one dtype."""
    from gpulogreg.backends import make_backend
    from gpulogreg.backends.numpy_backend import NumpyBackend

    n_rows = X.shape[0]
    sw = np.full(n_rows, 1.0 / n_rows)
    Xg, yg, swg = cp.asarray(X), cp.asarray(y), cp.asarray(sw)
    nbytes = Xg.nbytes
    rows: list[dict[str, Any]] = []

    copy_dst = cp.empty_like(Xg)

    def copy() -> None:
        cp.cuda.runtime.memcpyAsync(
            copy_dst.data.ptr,
            Xg.data.ptr,
            nbytes,
            cp.cuda.runtime.memcpyDeviceToDevice,
            cp.cuda.get_current_stream().ptr,
        )

    t_copy = gpu_time(cp, copy, repeat)
    copy_dst = None  # free X's copy before the backends allocate
    t_read = t_copy / 2  # a copy reads X once and writes it once
    rows.append(
        {"what": "device-to-device copy of X", "seconds": t_copy, "gbps": 2 * nbytes / t_copy}
    )
    rows.append({"what": "one read of X (copy / 2)", "seconds": t_read, "gbps": nbytes / t_read})

    gpu = make_backend(Xg, yg, swg, backend="cupy")
    params = cp.asarray(np.random.default_rng(1).normal(size=gpu.n_params) * 0.05)

    def add(what: str, seconds: float, passes: int) -> None:
        row: dict[str, Any] = {"what": what, "seconds": seconds, "x_floor": seconds / t_read}
        if passes:
            row["gbps"] = passes * nbytes / seconds
        rows.append(row)

    add("loss_grad, cupy backend", gpu_time(cp, lambda: gpu.loss_grad(params), repeat), 2)
    # Its parts (each synchronised by the events, not by a host transfer).
    xw = gpu._xw(params, gpu.X)
    add("  X @ w (cuBLAS)", gpu_time(cp, lambda: gpu._xw(params, gpu.X), repeat), 1)
    add(
        "  fused kernel + reduction",
        gpu_time(cp, lambda: gpu._fused(params, xw, write_residual=True), repeat),
        0,
    )
    R = gpu._residual
    add("  R^T X as used (see cupy_backend)", gpu_time(cp, lambda: gpu._xt_r(R), repeat), 1)
    if X.dtype == np.float32:
        add("  R^T X, one float32 product", gpu_time(cp, lambda: R @ gpu.X, repeat), 1)

    baseline = NumpyBackend(Xg, yg, swg)
    add(
        "loss_grad, NumPy baseline on CuPy (unfused)",
        gpu_time(cp, lambda: baseline.loss_grad(params), repeat),
        2,
    )
    try:
        cpu = make_backend(X, y, sw, backend="numba", device="cpu")
    except (ImportError, KeyError, ModuleNotFoundError) as exc:
        rows.append({"what": "loss_grad, CPU numba", "skipped": str(exc)})
    else:
        params_host = cp.asnumpy(params)
        add(
            "loss_grad, CPU numba (host X)",
            cpu_time(lambda: cpu.loss_grad(params_host), max(3, repeat // 4)),
            1,
        )
    return rows


def _history(clf: Any) -> tuple[list[float], list[float]]:
    history = clf.history_
    if isinstance(history, dict):
        return list(history["objective"]), list(history["elapsed"])
    return list(history.objective), list(history.elapsed)


def bench_time_to_optimum(
    X: np.ndarray, y: np.ndarray, solvers: list[str], devices: list[str]
) -> list[dict[str, Any]]:
    """Fit per solver and device; time until the objective is within TARGET_GAP of the reference."""
    import gpulogreg

    estimator = getattr(gpulogreg, "LogisticRegression", None)
    if estimator is None:
        return [{"what": "time to optimum", "skipped": "gpulogreg.LogisticRegression missing"}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Float64 Newton on the same values defines the optimum.
        reference = estimator(solver="newton", tol=1e-10, max_iter=100, device="gpu")
        reference.fit(X.astype(np.float64), y)
        f_star = min(_history(reference)[0])
        estimator(solver="lbfgs", max_iter=3, device="gpu").fit(X[:1000], y[:1000])  # warm-up
        rows = []
        for solver in solvers:
            for device in devices:
                clf = estimator(solver=solver, tol=1e-8, max_iter=10_000, device=device)
                start = time.perf_counter()
                clf.fit(X, y)
                wall = time.perf_counter() - start
                objective, elapsed = _history(clf)
                gaps = [(f - f_star) / abs(f_star) for f in objective]
                reached = next(
                    (t for g, t in zip(gaps, elapsed, strict=True) if g <= TARGET_GAP), None
                )
                rows.append(
                    {
                        "what": f"time to optimum, {solver}, {device}",
                        "solver": solver,
                        "device": device,
                        "seconds_to_target": reached,
                        "fit_seconds": wall,
                        "iterations": int(np.max(clf.n_iter_)),
                        "final_gap": gaps[-1] if gaps else None,
                    }
                )
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if "skipped" in row:
            print(f"  {row['what']:<46} skipped: {row['skipped']}")
        elif "seconds_to_target" in row:
            target = row["seconds_to_target"]
            reached = f"{target:8.3f} s" if target is not None else "  not reached"
            print(
                f"  {row['solver']:<8} {row['device']:<4} to 1e-8: {reached}"
                f"   fit {row['fit_seconds']:7.3f} s   {row['iterations']:5d} iterations"
                f"   final gap {row['final_gap']:.1e}"
            )
        else:
            gbps = f"{row['gbps']:8.1f} GB/s" if "gbps" in row else " " * 13
            floor = f"{row['x_floor']:6.2f}x floor" if "x_floor" in row else ""
            print(f"  {row['what']:<46} {row['seconds'] * 1e3:9.3f} ms {gbps}  {floor}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument(
        "--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"]
    )
    parser.add_argument(
        "--repeat", type=int, default=20, help="timed calls per measurement (median)"
    )
    parser.add_argument("--solvers", nargs="+", default=["newton", "lbfgs", "gd"])
    parser.add_argument("--devices", nargs="+", default=["gpu", "cpu"], choices=["gpu", "cpu"])
    parser.add_argument("--no-fit", action="store_true", help="skip the time-to-optimum fits")
    parser.add_argument("--json", help="append one JSON object per measurement to this file")
    args = parser.parse_args(argv)

    from gpulogreg.backends import gpu_status

    available, reason = gpu_status()
    if not available:
        print(f"bench_gpu: no usable GPU ({reason}); nothing measured", file=sys.stderr)
        return 2
    import cupy as cp

    print(f"device: {device_line(cp)}")
    X64, y = make_data(args.rows, args.features)
    records = []
    for dtype_name in args.dtype:
        X = X64.astype(dtype_name)
        print(f"\n{args.rows:,} x {args.features} {dtype_name} (X = {X.nbytes / 1e6:.0f} MB)")
        rows = bench_loss_grad(cp, X, y, args.repeat)
        if not args.no_fit:
            rows += bench_time_to_optimum(X, y, args.solvers, args.devices)
        print_rows(rows)
        for row in rows:
            records.append(
                {"dtype": dtype_name, "rows": args.rows, "features": args.features, **row}
            )
        cp.get_default_memory_pool().free_all_blocks()
    if args.json:
        with open(args.json, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps({"device": device_line(cp), **record}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
