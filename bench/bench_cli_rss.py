"""Peak memory of the ``gpulogreg`` commands on a 1 GB Parquet file (issue 13's targets).

Writes a generated ``rows x cols`` float32 problem (default 5,000,000 x 50:
1 GB of features) to a Parquet file in a temporary directory, block by block
(row groups of 250,000 rows, no dictionary encoding, which only makes random
floats larger), then runs each command as a fresh child process and reads
its peak resident set size from ``os.wait4`` (the ``ru_maxrss`` of that
child alone):

* ``fit --memory-budget 1G``: over the budget, so it streams (the target:
  under 700 MB);
* ``fit --memory-budget 100G``: the same fit with the file read whole, for
  the memory it takes and for the check that both fits give the same model
  (coefficients, objective);
* ``predict --proba`` to Parquet (always streamed; the target: under 700 MB);
* ``evaluate`` (streamed; keeps one float per row for ROC AUC).

Prints one JSON object: the CPU, the file, and per command its peak RSS,
wall time and exit status, then the relative difference of the two models'
coefficients. Nothing here asserts. Run it alone on the machine (RSS does not
mind a busy CPU, the times do), with the OpenBLAS variables of this
environment unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_cli_rss.py
    python bench/bench_cli_rss.py --rows 200000 --cols 20 --budget 16M   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

#: Rows generated and written per row group (50 MB of float32 at 50 columns).
BLOCK_ROWS = 250_000
#: What the issue asks of fit and predict on this file.
TARGET_MB = 700


def write_problem(path: str, rows: int, cols: int, seed: int = 0) -> None:
    """Write features ``f0..`` (float32) and a ``label`` (int8) by row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.normal(size=cols).astype(np.float32) / np.sqrt(cols)
    names = [f"f{j}" for j in range(cols)]
    schema = pa.schema([(n, pa.float32()) for n in names] + [("label", pa.int8())])
    with pq.ParquetWriter(path, schema, use_dictionary=False) as writer:
        for start in range(0, rows, BLOCK_ROWS):
            m = min(BLOCK_ROWS, rows - start)
            X = rng.standard_normal((m, cols), dtype=np.float32)
            y = (rng.random(m) < 1.0 / (1.0 + np.exp(-(X @ w + 0.3)))).astype(np.int8)
            columns = {n: X[:, j] for j, n in enumerate(names)}
            writer.write_table(pa.table({**columns, "label": y}, schema=schema))


def run(name: str, args: list[str], directory: str) -> dict[str, Any]:
    """Run ``gpulogreg ARGS`` in a fresh child; its peak RSS, wall time, status, stdout."""
    command = [sys.executable, "-m", "gpulogreg.cli", *args]
    out_path = os.path.join(directory, f"{name}.out")
    err_path = os.path.join(directory, f"{name}.err")
    start = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    with open(out_path) as f:
        stdout = f.read()
    with open(err_path) as f:
        stderr = f.read()
    return {
        "command": "gpulogreg " + " ".join(os.path.basename(a) for a in args),
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
        "seconds": seconds,
        "exit_status": proc.returncode,
        "summary": json.loads(stdout.splitlines()[-1]) if proc.returncode == 0 else None,
        "stderr": stderr.strip().splitlines()[-3:],
    }


def cpu() -> dict[str, Any]:
    """The CPU's model name, family and model (from /proc/cpuinfo where there is one)."""
    facts: dict[str, Any] = {"machine": platform.machine(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in facts:
                    facts[key] = value.strip()
    except OSError:
        pass
    return facts


def coefficient_difference(a_path: str, b_path: str) -> float:
    """``|a - b| / |a|`` over the coefficients and intercepts of two model files."""
    import gpulogreg

    a, b = gpulogreg.load(a_path), gpulogreg.load(b_path)
    pa_ = np.concatenate([a.coef_.ravel(), a.intercept_.ravel()])
    pb_ = np.concatenate([b.coef_.ravel(), b.intercept_.ravel()])
    return float(np.linalg.norm(pb_ - pa_) / np.linalg.norm(pa_))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: int(float(s)), default=5_000_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--dir", default=None, help="where to write the files (default: TMPDIR)")
    parser.add_argument("--budget", default="1G", help="--memory-budget of the streamed fit")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="gpulogreg-cli-rss-", dir=args.dir)
    try:
        data = os.path.join(directory, "train.parquet")
        start = time.perf_counter()
        write_problem(data, args.rows, args.cols)
        write_s = time.perf_counter() - start
        streamed, whole = (os.path.join(directory, n) for n in ("streamed.glr", "whole.glr"))
        fit = ["fit", data, "--target", "label", "--no-progress", "--json"]
        jobs = {
            "fit_streamed": [*fit, "--model", streamed, "--memory-budget", args.budget],
            "fit_in_memory": [*fit, "--model", whole, "--memory-budget", "100G"],
            "predict": ["predict", "--model", streamed, data, "--proba", "--json",
                        "--output", os.path.join(directory, "predictions.parquet")],
            "evaluate": ["evaluate", "--model", streamed, data, "--json"],
        }  # fmt: skip
        results = {name: run(name, job, directory) for name, job in jobs.items()}
        fitted = all(results[n]["exit_status"] == 0 for n in ("fit_streamed", "fit_in_memory"))
        report = {
            "cpu": cpu(),
            "python": platform.python_version(),
            "rows": args.rows,
            "cols": args.cols,
            "file_mb": os.path.getsize(data) / 1e6,
            "features_mb": args.rows * args.cols * 4 / 1e6,
            "write_seconds": write_s,
            "target_mb": TARGET_MB,
            "results": results,
            "coef_rel_diff_streamed_vs_in_memory": (
                coefficient_difference(whole, streamed) if fitted else None
            ),
        }
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
