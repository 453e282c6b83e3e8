"""Out-of-core benchmark: a fit from a ``.npy`` file larger than the memory budget.

Writes a generated ``rows x cols`` float32 problem to ``X.npy`` / ``y.npy``
(default 5,000,000 x 100: X is 2 GB) in chunks, then runs, each in a fresh
child process so that peak resident memory is measured per job:

* **out-of-core**: ``LogisticRegression(solver=...).fit(Dataset.from_npy(...))``;
  reports the peak resident set size (``ru_maxrss``) of the whole process,
  the time of the validating scan, the time per pass over the data (median
  over the passes of the fit: every loss-and-gradient evaluation is one
  pass) and the fit's total time;
* **in-memory**: the same X loaded whole (``np.load``), the same solver on it,
  and the time per pass measured the same way (median of timed
  loss-and-gradient evaluations of the fit's backend).

Nothing here asserts on time. The file is read through the page cache: right
after it is written the cache is warm, so the out-of-core figure is the cost
of mapping and reading cached pages, not of a disk. Run it with the OpenBLAS
variables of this environment unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_out_of_core.py
    python bench/bench_out_of_core.py --rows 200000 --cols 20   # a quick look

The data files are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

#: Rows generated and written per block (64 MB of float32 at 100 columns).
WRITE_BLOCK_ROWS = 163_840


def write_problem(directory: str, rows: int, cols: int, seed: int = 0) -> tuple[str, str]:
    """Write X.npy (float32) and y.npy (int8) block by block; memory stays at one block."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=cols).astype(np.float32) / np.sqrt(cols)
    x_path = os.path.join(directory, "X.npy")
    y_path = os.path.join(directory, "y.npy")
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": (rows, cols),
    }
    ys = []
    with open(x_path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, rows, WRITE_BLOCK_ROWS):
            m = min(WRITE_BLOCK_ROWS, rows - start)
            X = rng.standard_normal((m, cols), dtype=np.float32)
            z = X @ w + 0.3
            ys.append((rng.random(m) < 1.0 / (1.0 + np.exp(-z))).astype(np.int8))
            f.write(X.tobytes())
    np.save(y_path, np.concatenate(ys))
    return x_path, y_path


def _backend_name() -> str:
    try:
        import gpulogreg.backends.numba_backend  # noqa: F401
    except ImportError:
        return "numpy"
    return "auto"


def child_out_of_core(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    from gpulogreg import Dataset, LogisticRegression

    ds = Dataset.from_npy(args.x, args.y, chunk_rows=args.chunk_rows)
    t0 = time.perf_counter()
    info = ds.scan()
    scan_s = time.perf_counter() - t0
    model = LogisticRegression(
        solver=args.solver, tol=args.tol, max_iter=args.max_iter, backend=_backend_name()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(ds)
        fit_s = time.perf_counter() - t0
    return {
        "job": "out-of-core",
        "backend": model.backend_,
        "chunks": info.n_chunks,
        "chunk_rows": info.chunk_rows[0],
        "scan_s": scan_s,
        "fit_s": fit_s,
        "passes": int(model.n_passes_),
        "iterations": int(model.n_iter_[0]),
        "objective": float(model.objective_),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "_model": None,
    }


def child_in_memory(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    from gpulogreg import LogisticRegression

    t0 = time.perf_counter()
    X = np.load(args.x)
    y = np.load(args.y)
    load_s = time.perf_counter() - t0
    model = LogisticRegression(
        solver=args.solver, tol=args.tol, max_iter=args.max_iter, backend=_backend_name()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(X, y)
        fit_s = time.perf_counter() - t0
    return {
        "job": "in-memory",
        "backend": model.backend_,
        "load_s": load_s,
        "fit_s": fit_s,
        "iterations": int(model.n_iter_[0]),
        "objective": float(model.objective_),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _timed_passes(kind: str, args: argparse.Namespace) -> list[float]:
    """Seconds of ``args.passes`` loss-and-gradient passes over the data, in this process."""
    from gpulogreg.backends import make_backend
    from gpulogreg.backends.chunked import ChunkedBackend
    from gpulogreg.data.dataset import Dataset

    name = _backend_name()
    if kind == "out-of-core":
        backend: Any = ChunkedBackend(
            Dataset.from_npy(args.x, args.y, chunk_rows=args.chunk_rows), backend=name
        )
    else:
        X = np.load(args.x)
        y = np.load(args.y).astype(np.int32)
        backend = make_backend(X, y, np.full(len(y), 1.0 / len(y)), backend=name)
    params = np.zeros(backend.n_params)
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        backend.loss_grad(params)
        times.append(time.perf_counter() - t0)
    return times


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        kind,
        "--x",
        args.x,
        "--y",
        args.y,
        "--solver",
        args.solver,
        "--tol",
        str(args.tol),
        "--max-iter",
        str(args.max_iter),
        "--passes",
        str(args.passes),
    ]
    if args.chunk_rows:
        cmd += ["--chunk-rows", str(args.chunk_rows)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--dir", default=None, help="where to write the files (default /tmp)")
    parser.add_argument("--solver", default="lbfgs")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--passes", type=int, default=5, help="timed passes per job")
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data files")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--x", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--y", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        job = child_out_of_core if args.child == "out-of-core" else child_in_memory
        result = job(args)
        result.pop("_model", None)
        passes = _timed_passes(args.child, args)
        result["pass_s"] = float(np.median(passes))
        result["pass_s_all"] = passes
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    directory = tempfile.mkdtemp(prefix="gpulogreg-ooc-", dir=args.dir or "/tmp")
    try:
        t0 = time.perf_counter()
        args.x, args.y = write_problem(directory, args.rows, args.cols)
        gb = os.path.getsize(args.x) / 1e9
        print(
            f"wrote {args.rows:,} x {args.cols} float32 ({gb:.2f} GB) in "
            f"{time.perf_counter() - t0:.1f}s to {directory}",
            flush=True,
        )
        results = [run_child("out-of-core", args), run_child("in-memory", args)]
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    ooc, mem = results
    print()
    print(
        f"{'job':<12} {'backend':<16} {'peak RSS':>10} {'per pass':>10} {'fit':>9} "
        f"{'iter':>5} {'passes':>6}  objective"
    )
    for r in results:
        print(
            f"{r['job']:<12} {r['backend']:<16} {r['peak_rss_mb']:>7.0f} MB "
            f"{r['pass_s'] * 1e3:>7.0f} ms {r['fit_s']:>8.2f}s {r['iterations']:>5} "
            f"{r.get('passes', '-'):>6}  {r['objective']:.10g}"
        )
    print(
        f"\nout-of-core: scan {ooc['scan_s']:.2f}s, {ooc['chunks']} chunks of "
        f"{ooc['chunk_rows']:,} rows; per pass {ooc['pass_s'] / mem['pass_s']:.2f}x the "
        f"in-memory time; X read at {gb / ooc['pass_s']:.1f} GB/s (in memory "
        f"{gb / mem['pass_s']:.1f} GB/s)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "cols": args.cols, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
