"""Read speed of svmlight files: gpulogreg's CSR reader against scikit-learn's.

Writes two generated files of about ``--mb`` MB each to a temporary
directory with ``sklearn.datasets.dump_svmlight_file`` (its ``%.16g`` values):

* ``ctr``: hashed click logs (:func:`gpulogreg.sparse_problems.make_sparse_problem`),
  2^20 feature ids, 30 per row, values ``1``: short pairs, many per byte;
* ``text``: tf-idf rows over 100,000 words, about 100 per row: 16-digit values.

and a ``.gz`` copy of each (gzip level 6). Then, per file, times

* ``gpulogreg_fresh``: ``gpulogreg.io.read_svmlight`` in a fresh interpreter,
  its imports excluded, its first call included (the Numba kernels are
  loaded from their cache then, and pyarrow's casts set up);
* ``gpulogreg_warm``: the median of ``--repeat`` calls in this process;
* ``sklearn``: ``sklearn.datasets.load_svmlight_file`` (one call; it has no
  first-call cost);

as MB/s of the file's text (uncompressed bytes, also for ``.gz``), checks
that both readers return the same matrix, and prints one JSON object with
the CPU. Nothing here asserts. Run it alone on the machine::

    python bench/bench_svmlight_read.py               # about 100 MB per file
    python bench/bench_svmlight_read.py --mb 10       # a quick look
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

#: Bytes of text per stored value, roughly, of each kind (sizes the generated files).
BYTES_PER_VALUE = {"ctr": 9, "text": 25}
#: Feature ids and values per row of each kind (issue 9's benchmark shapes).
SHAPES = {"ctr": (2**20, 30), "text": (100_000, 100)}
#: Timed in a fresh interpreter: the first call of the reader, imports excluded.
_FRESH = """
import sys, time
from gpulogreg.io import read_svmlight
import pyarrow, scipy.sparse
t = time.perf_counter()
read_svmlight(sys.argv[1])
print(time.perf_counter() - t)
"""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_file(path: str, kind: str, megabytes: float) -> None:
    from sklearn.datasets import dump_svmlight_file

    from gpulogreg.sparse_problems import make_sparse_problem

    n_features, per_row = SHAPES[kind]
    rows = max(1000, int(megabytes * 1e6 / (per_row * BYTES_PER_VALUE[kind])))
    X, y = make_sparse_problem(kind, rows, n_features, per_row=per_row, seed=0)
    dump_svmlight_file(X, y, path, zero_based=False)


def text_bytes(path: str) -> int:
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            total += len(chunk)
    return total


def measure(path: str, repeat: int) -> dict[str, Any]:
    from sklearn.datasets import load_svmlight_file

    from gpulogreg.io import read_svmlight

    mb = text_bytes(path) / 1e6
    fresh = subprocess.run(
        [sys.executable, "-c", _FRESH, path], capture_output=True, text=True, check=True
    )
    fresh_s = float(fresh.stdout.strip().splitlines()[-1])
    warm = []
    for _ in range(repeat):
        start = time.perf_counter()
        table = read_svmlight(path)
        warm.append(time.perf_counter() - start)
    start = time.perf_counter()
    X_ref, y_ref = load_svmlight_file(path, n_features=table.X.shape[1])
    sklearn_s = time.perf_counter() - start
    same = bool((X_ref != table.X).nnz == 0 and np.array_equal(y_ref, table.y))
    warm_s = statistics.median(warm)
    return {
        "file": os.path.basename(path),
        "text_mb": round(mb, 1),
        "rows": int(table.X.shape[0]),
        "nnz": int(table.X.nnz),
        "gpulogreg_fresh_s": round(fresh_s, 3),
        "gpulogreg_fresh_mb_s": round(mb / fresh_s, 1),
        "gpulogreg_warm_s": round(warm_s, 3),
        "gpulogreg_warm_mb_s": round(mb / warm_s, 1),
        "sklearn_s": round(sklearn_s, 3),
        "sklearn_mb_s": round(mb / sklearn_s, 1),
        "speedup_warm": round(sklearn_s / warm_s, 1),
        "same_matrix": same,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="MB of text per file")
    parser.add_argument("--repeat", type=int, default=3, help="warm reads (median)")
    parser.add_argument("--kinds", default="ctr,text", help="comma-separated: ctr, text")
    args = parser.parse_args(argv)
    results = []
    directory = tempfile.mkdtemp(prefix="bench_svmlight_")
    try:
        for kind in args.kinds.split(","):
            path = os.path.join(directory, f"{kind}.svm")
            write_file(path, kind, args.mb)
            with open(path, "rb") as src, gzip.open(path + ".gz", "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            for name in (path, path + ".gz"):
                results.append(measure(name, args.repeat))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
