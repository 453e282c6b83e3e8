"""Cost of ``model.inference``: against one Hessian pass, and against statsmodels' ``Logit``.

The issue's yardstick: on 1,000,000 x 100 float32, ``inference`` (nonrobust)
costs at most 1.5 Hessian passes and is at least 20x faster than
``sm.Logit(y, sm.add_constant(X)).fit()``. statsmodels works in float64 on the
whole design matrix; it is timed on ``--sm-rows`` rows and scaled linearly to
the full size (its Newton iterations are linear in the rows), and the scaling
is reported with the figures. Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
unset, one benchmark at a time::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_inference.py

Prints one JSON object: medians in seconds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from gpulogreg import LogisticRegression
from gpulogreg.benchmark import make_problem


def _median_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up: compilation, first touch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--sm-rows", type=float, default=1e5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = int(args.rows)
    X, y = make_problem(rows, args.cols, conditioning="well", seed=0)
    model = LogisticRegression(penalty=None, solver="newton", tol=1e-8).fit(X, y)

    from gpulogreg._fit import ArraySource
    from gpulogreg.data import prepare_fit_data

    source = ArraySource(prepare_fit_data(X, y), model._spec())
    backend = source.backend(None, 2)
    params = backend.xp.asarray(np.r_[model.coef_.ravel(), model.intercept_])
    out: dict[str, Any] = {
        "cpu": _cpu(),
        "rows": rows,
        "cols": args.cols,
        "dtype": str(X.dtype),
        "backend": backend.name,
    }
    out["hessian_s"] = _median_seconds(lambda: backend.hessian(params), args.repeats)
    for cov_type in ("nonrobust", "HC0"):
        out[f"inference_{cov_type}_s"] = _median_seconds(
            lambda c=cov_type: model.inference(X, y, cov_type=c), args.repeats
        )
        out[f"inference_{cov_type}_hessian_passes"] = (
            out[f"inference_{cov_type}_s"] / out["hessian_s"]
        )
    try:
        import statsmodels.api as sm
    except ImportError:
        print(json.dumps(out, indent=2))
        return
    sm_rows = min(rows, int(args.sm_rows))
    design = sm.add_constant(X[:sm_rows].astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_s = _median_seconds(
            lambda: sm.Logit(y[:sm_rows], design).fit(disp=0), max(1, args.repeats // 2)
        )
    out["statsmodels_rows_timed"] = sm_rows
    out["statsmodels_logit_fit_s_timed"] = sm_s
    out["statsmodels_logit_fit_s_scaled"] = sm_s * rows / sm_rows
    out["speedup_inference_vs_statsmodels"] = (
        out["statsmodels_logit_fit_s_scaled"] / out["inference_nonrobust_s"]
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
