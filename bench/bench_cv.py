"""Choosing C by cross-validation: gpulogreg's LogisticRegressionCV against scikit-learn's.

Run it by hand (not collected by the tests; OpenBLAS variables unset for a fair BLAS)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_cv.py \\
        --rows 500000 --cols 50 --folds 5 --Cs 10 --tol 1e-6

Both estimators get the same data (float32, ``gpulogreg.benchmark.make_problem``),
the same stratified folds, the same ``Cs`` grid, ``tol`` and
``scoring="neg_log_loss"``; scikit-learn's runs with ``n_jobs=-1`` (its folds in
parallel processes) and its lbfgs. Reported: wall time of each fit (median of
``--repeat``), the speed-up, gpulogreg's passes over ``X`` (rounds of its
shared fold evaluations), the chosen C of both, and the largest difference of
the refitted coefficients. ``--unbatched`` also times gpulogreg with each fold
model evaluated on its own (one pass over ``X`` per fold model and round), the
design the shared passes replace.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import numpy as np


def _timed(fit: Any, repeat: int) -> tuple[float, Any]:
    times, model = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return statistics.median(times), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--Cs", type=int, default=10)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--unbatched", action="store_true")
    args = parser.parse_args()

    from gpulogreg import LogisticRegressionCV
    from gpulogreg._cv import stratified_folds
    from gpulogreg.benchmark import make_problem
    from gpulogreg.info import system_info

    X, y = make_problem(args.rows, args.cols, dtype="float32", n_classes=args.classes, seed=0)
    folds = stratified_folds(y, args.folds)
    settings = {"Cs": args.Cs, "cv": folds, "tol": args.tol, "scoring": "neg_log_loss"}
    report: dict[str, Any] = {
        "rows": args.rows,
        "cols": args.cols,
        "classes": args.classes,
        "folds": args.folds,
        "Cs": args.Cs,
        "tol": args.tol,
        "cpu": system_info().get("cpu"),
    }

    def ours() -> Any:
        return LogisticRegressionCV(**settings, max_iter=1000).fit(X, y)

    LogisticRegressionCV(Cs=1, cv=3, max_iter=2).fit(X[:5000], y[:5000])  # compile
    seconds, model = _timed(ours, args.repeat)
    report["gpulogreg_s"] = seconds
    report["gpulogreg_passes"] = model.n_cv_passes_
    report["gpulogreg_C"] = model.C_
    report["gpulogreg_solver"] = model.solver_
    if args.unbatched:
        from gpulogreg import _cv

        batched = _cv.make_fold_evaluator
        _cv.make_fold_evaluator = lambda *a, **k: None  # type: ignore[assignment]
        try:
            report["gpulogreg_unbatched_s"], _ = _timed(ours, args.repeat)
        finally:
            _cv.make_fold_evaluator = batched
    if not args.no_sklearn:
        from sklearn.linear_model import LogisticRegressionCV as SklearnCV

        def theirs() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SklearnCV(
                    **settings,
                    max_iter=1000,
                    n_jobs=-1,
                    l1_ratios=(0.0,),
                    use_legacy_attributes=False,
                ).fit(X, y)

        report["sklearn_s"], reference = _timed(theirs, args.repeat)
        report["sklearn_C"] = reference.C_
        report["speedup"] = report["sklearn_s"] / report["gpulogreg_s"]
        report["coef_max_diff"] = float(np.abs(reference.coef_ - model.coef_).max())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
