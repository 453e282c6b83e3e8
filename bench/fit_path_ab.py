"""Wall time of whole fits through the public API: the A/B check of a change to the fit path.

Run it once per checkout, alternating, in fresh processes (two code versions
cannot share one), e.g. ``PYTHONPATH=/path/to/other/checkout python bench/fit_path_ab.py``.
Each case fits 1,000,000 x 100 float32 generated data (``gpulogreg.benchmark.make_problem``)
``--repeats`` times after one warm-up fit and prints the minimum and the median
in seconds: validation, the fit plan, the solver and the fitted attributes,
everything ``fit`` does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import gpulogreg
from gpulogreg import Dataset, LogisticRegression
from gpulogreg.benchmark import make_problem

#: The fits timed: name -> (estimator parameters, whether X goes in a Dataset).
CASES = {
    "lbfgs well": ({"tol": 1e-8}, False),
    "lbfgs ill": ({"tol": 1e-8}, True),
    "newton well": ({"solver": "newton", "tol": 1e-8}, False),
    "gd l1": ({"solver": "gd", "penalty": "l1", "C": 0.01, "tol": 1e-6, "max_iter": 50}, False),
    "ovr 3 classes": ({"multi_class": "ovr", "tol": 1e-6}, False),
    "minibatch 2 epochs": (
        {"solver": "minibatch", "batch_size": 4096, "max_iter": 2, "random_state": 0},
        False,
    ),
    "Dataset lbfgs": ({"tol": 1e-8}, "dataset"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    rows = int(args.rows)
    well = make_problem(rows, 100, conditioning="well", seed=0)
    ill = make_problem(rows, 100, conditioning="ill", seed=1)
    y3 = (well[0][:, 0] > 0.5).astype(int) + (well[0][:, 1] > 0.5)
    out = {"gpulogreg": gpulogreg.__file__}
    for name in args.cases.split(","):
        params, kind = CASES[name]
        X, y = ill if kind is True else well
        if name.startswith("ovr"):
            y = y3
        data = (Dataset.from_arrays(X, y, chunk_rows=131072),) if kind == "dataset" else (X, y)
        times = []
        for i in range(args.repeats + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # capped fits do not converge: not timed for it
                start = time.perf_counter()
                LogisticRegression(**params).fit(*data)
                elapsed = time.perf_counter() - start
            if i:  # the first fit compiles and warms caches
                times.append(elapsed)
        out[name] = {"min": min(times), "median": statistics.median(times)}
        print(f"{name:20s} min {min(times):7.3f} s  median {statistics.median(times):7.3f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
