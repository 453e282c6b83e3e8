"""The cross-validation plan: folds as weights, the C paths in lock step, held-out scores.

A fold is a weight vector over the rows (held-out rows weigh zero), so the data
are validated and placed once and never copied for training::

    data (validated, placed once)   ->  fold weights S (n_samples, n_folds)
    per (one-vs-rest class, fold, l1_ratio): a solver run walking the C path from
        strong to weak penalty, each C warm started from the last; all runs in
        lock step (:mod:`gpulogreg._lockstep`): one pass over X per round serves
        every fold model still running
    per fold: the held-out rows' decision values of every path point (one product)
        ->  scores (n_folds, n_l1_ratios, n_Cs)
    the best (C, l1_ratio) over the folds' summed scores  ->  the refit on all
        rows, started from the mean of the folds' solutions (scikit-learn's rule)

Each fold model minimises the objective of :mod:`gpulogreg.loss` over the
fold's training rows (its weights normalised by their own sum, the penalty by
the same sum), so its solution is that of ``LogisticRegression(C=C)`` fitted
on those rows with the same settings.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import numpy as np

from gpulogreg import backends
from gpulogreg._array import array_namespace, device_of, host_float64, is_sparse, to_host
from gpulogreg._errors import InputValueError
from gpulogreg._fit import (
    ArraySource,
    FitOutcome,
    FitSpec,
    PreviousFit,
    fit_source,
    open_source,
    plan_tasks,
    release_device_memory,
    solver_blas,
)
from gpulogreg._layout import ParamLayout
from gpulogreg._lockstep import BackendShape, EvaluationBroker
from gpulogreg._predict import decision_values, probabilities
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Backend
from gpulogreg.backends.folds import FoldEvaluator, FoldWeights, make_fold_evaluator
from gpulogreg.loss import LogisticObjective
from gpulogreg.solvers import auto_solver, get_solver, solver_entry

__all__ = [
    "CVOutcome",
    "CVSpec",
    "HeldOut",
    "HeldOutScorer",
    "builtin_scorer",
    "run_cv",
    "stratified_folds",
]


@dataclass(frozen=True)
class HeldOut:
    """The held-out rows of one fold, as a scorer sees them.

    Attributes
    ----------
    rows : ndarray of int64
        Row indices into the training data (repeated when the split repeats them).
    X : array
        Those rows of the validated ``X`` (on its device; a Dask array stays lazy).
    y : ndarray of int
        Their class indices into ``classes``.
    sample_weight : ndarray of float64 or None
        Their sample weights as given to ``fit`` (class weights not folded in).
    classes : ndarray
    """

    rows: np.ndarray
    X: Array
    y: np.ndarray
    sample_weight: np.ndarray | None
    classes: np.ndarray


class HeldOutScorer(Protocol):
    """The score of one model on a fold's held-out rows (higher is better)."""

    def __call__(
        self, held_out: HeldOut, decision: np.ndarray, coef: np.ndarray, intercept: np.ndarray
    ) -> float:
        """``decision``: the rows' decision values (n_rows,) or (n_rows, n_outputs), float64;
        ``coef`` and ``intercept``: the model's (estimator layout, float64)."""
        ...


@dataclass(frozen=True)
class CVSpec:
    """The settings of a cross-validation (``fit``'s ``C`` and ``l1_ratio`` are unused)."""

    fit: FitSpec
    #: The grid of C values, in the order given (the paths walk it in increasing order).
    Cs: np.ndarray
    l1_ratios: tuple[float, ...]
    scorer: HeldOutScorer
    refit: bool


@dataclass
class CVOutcome:
    """The paths, the scores and the final model of a cross-validation (host arrays).

    Shapes use ``F`` folds, ``L`` l1_ratios, ``N`` Cs, ``R`` coefficient rows
    (1 for two classes, else one per class) and ``T`` tasks (one-vs-rest: one
    per class, else 1).
    """

    classes: np.ndarray
    n_features: int
    feature_names: np.ndarray | None
    #: (F, L, N, R, n_features) and (F, L, N, R): each path point's coefficients.
    coefs: np.ndarray
    intercepts: np.ndarray
    #: (F, L, N): held-out scores.
    scores: np.ndarray
    #: (T, F, L, N): solver iterations, and whether the stopping rule was met.
    n_iter: np.ndarray
    converged: np.ndarray
    #: Rounds of the lock-step evaluation: passes over ``X`` shared by the fold models.
    n_passes: int
    C: float
    l1_ratio: float
    #: The chosen model: the refit's outcome, or (refit=False) the folds' mean.
    refit: FitOutcome | None
    coef: np.ndarray
    intercept: np.ndarray
    backend: str
    device: str
    solver: str
    #: The training data's dtype (``coef_`` is rounded to it).
    dtype: Any


def run_cv(
    X: Any,
    y: Any,
    sample_weight: Any,
    splits: Sequence[tuple[Any, Any]],
    spec: CVSpec,
) -> CVOutcome:
    """Cross-validate the C (and l1_ratio) grid of ``spec`` over ``splits``, then refit.

    Parameters
    ----------
    X : array-like or Dask array
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,) or None
    splits : sequence of (train, test)
        Row indices (or boolean masks) of each fold.
    spec : CVSpec
    """
    if spec.fit.solver != "auto" and solver_entry(spec.fit.solver).stochastic:
        raise InputValueError(
            f"solver={spec.fit.solver!r} is stochastic: LogisticRegressionCV takes "
            "the full-batch solvers (lbfgs, newton, newton-cg, gd)"
        )
    source = open_source(X, y, sample_weight, spec.fit)
    if not isinstance(source, ArraySource):
        raise InputValueError("LogisticRegressionCV takes in-memory or Dask arrays, not a Dataset")
    raw_weight = None if sample_weight is None else host_float64(to_host(sample_weight))
    folds = _check_splits(splits, source.n_samples)
    outcome = _cross_validate(source, folds, raw_weight, spec)
    on_data_device = source.device_context()
    del source
    release_device_memory(outcome.device, on_data_device)
    return outcome


# --------------------------------------------------------------------------- splits
def _check_splits(
    splits: Sequence[tuple[Any, Any]], n_samples: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The splits as int64 row indices, checked (in range, non-empty)."""
    out = []
    for f, (train, test) in enumerate(splits):
        pair = []
        for name, rows in (("training", train), ("test", test)):
            rows = np.asarray(to_host(rows))
            if rows.dtype == bool:
                if rows.shape != (n_samples,):
                    raise InputValueError(
                        f"fold {f}: the {name} mask has shape {rows.shape}, expected ({n_samples},)"
                    )
                rows = np.flatnonzero(rows)
            if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
                raise InputValueError(f"fold {f}: the {name} rows must be a 1-D array of indices")
            rows = rows.astype(np.int64)
            if rows.size == 0:
                raise InputValueError(f"fold {f} has no {name} rows")
            bad = (rows < 0) | (rows >= n_samples)
            if bad.any():
                raise InputValueError(
                    f"fold {f}: {name} row index {int(rows[bad][0])} is out of range for "
                    f"{n_samples} rows"
                )
            pair.append(rows)
        out.append((pair[0], pair[1]))
    if not out:
        raise InputValueError("the cross-validation has no folds")
    return out


def stratified_folds(y_index: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` stratified folds without shuffling, as scikit-learn's ``StratifiedKFold``.

    The rows sorted by class are dealt to the folds in turn, which fixes how
    many rows of each class each fold holds; each class's rows then fill the
    folds in order of appearance (the first rows of a class test in fold 0).

    Raises
    ------
    ValueError
        ``n_splits`` below 2 or above the number of rows of every class.
    """
    y_index = np.asarray(y_index, dtype=np.int64)
    n_classes = int(y_index.max()) + 1
    counts = np.bincount(y_index, minlength=n_classes)
    if n_splits < 2:
        raise InputValueError(f"cv must be at least 2 folds, got {n_splits}")
    if n_splits > counts.max():
        raise InputValueError(
            f"n_splits={n_splits} cannot be greater than the number of members in each class"
        )
    by_class = np.sort(y_index)
    per_fold = np.stack(
        [np.bincount(by_class[i::n_splits], minlength=n_classes) for i in range(n_splits)]
    )
    test_fold = np.empty(y_index.shape[0], dtype=np.int64)
    for k in range(n_classes):
        test_fold[y_index == k] = np.repeat(np.arange(n_splits), per_fold[:, k])
    rows = np.arange(y_index.shape[0])
    return [(rows[test_fold != f], rows[test_fold == f]) for f in range(n_splits)]


# --------------------------------------------------------------------------- the paths
@dataclass(frozen=True)
class _PathRun:
    """One solver run along the C path: a task (class or None), a fold, an l1_ratio."""

    positive: int | None
    fold: int
    l1_ratio: float


@dataclass
class _PathPoint:
    params: np.ndarray
    n_iter: int
    converged: bool


def _cross_validate(
    source: ArraySource,
    folds: list[tuple[np.ndarray, np.ndarray]],
    raw_weight: np.ndarray | None,
    spec: CVSpec,
) -> CVOutcome:
    fit = spec.fit
    positives, n_model_classes = plan_tasks(
        len(source.classes), fit.multi_class, binary_only=fit.intercept_scaling is not None
    )
    layout = ParamLayout.for_classes(source.n_features, n_model_classes, fit.fit_intercept)
    xp = array_namespace(source.y)
    weights, fold_sums = _fold_weights(source, [train for train, _ in folds])
    evaluators: dict[Hashable, FoldEvaluator | None] = {
        positive: make_fold_evaluator(
            source.X, source.target(positive), weights, layout, source.backend_name
        )
        for positive in positives
    }

    def fold_backend(positive: Hashable, fold: int) -> Backend:
        return backends.make_backend(
            source.X,
            source.target(positive),  # type: ignore[arg-type]
            weights.column(fold, xp),
            n_classes=2 if layout.n_outputs == 1 else layout.n_outputs,
            fit_intercept=fit.fit_intercept,
            backend=source.backend_name,
            device=source.device,
        )

    broker = EvaluationBroker(evaluators, fold_backend)
    shape = BackendShape(
        name=source.backend_name,
        format="csr" if is_sparse(source.X) else "dense",
        xp=xp,
        dtype=source.dtype,
        n_samples=source.n_samples,
        n_features=source.n_features,
        layout=layout,
    )
    runs = [
        _PathRun(positive, f, l1)
        for positive in positives
        for f in range(len(folds))
        for l1 in spec.l1_ratios
    ]
    order = np.argsort(spec.Cs, kind="stable")  # strong to weak penalty
    solvers = {l1: _solver_name(fit.solver, l1, shape) for l1 in spec.l1_ratios}

    def job(run: _PathRun) -> list[_PathPoint]:
        backend = broker.backend(run.positive, run.fold, shape)
        solver = get_solver(solvers[run.l1_ratio])
        params = layout.zeros(xp)
        points: list[_PathPoint] = []
        for c in order:
            objective = LogisticObjective(
                backend,  # type: ignore[arg-type]
                C=float(spec.Cs[c]),
                l1_ratio=run.l1_ratio,
                weight_sum=float(fold_sums[run.fold]),
                intercept_scaling=fit.intercept_scaling,
            )
            result = solver(
                objective,
                params,
                tol=fit.tol,
                max_iter=fit.max_iter,
                callback=None,
                progress=Reporter(),
            )
            params = result.params
            points.append(_PathPoint(host_float64(params), result.n_iter, result.converged))
        return points

    with source.device_context(), solver_blas(source):
        paths = broker.run([partial(job, run) for run in runs], source.device_context)
    by_run = dict(zip(runs, paths, strict=True))
    n_folds, n_l1, n_cs = len(folds), len(spec.l1_ratios), len(spec.Cs)
    n_rows = layout.n_outputs * len(positives)
    coefs = np.empty((n_folds, n_l1, n_cs, n_rows, source.n_features))
    intercepts = np.empty((n_folds, n_l1, n_cs, n_rows))
    n_iter = np.empty((len(positives), n_folds, n_l1, n_cs), dtype=np.int32)
    converged = np.empty(n_iter.shape, dtype=bool)
    for f in range(n_folds):
        for li, l1 in enumerate(spec.l1_ratios):
            for step, c in enumerate(order):
                points = [by_run[_PathRun(p, f, l1)][step] for p in positives]
                coef, intercept = layout.estimator_coefficients(
                    [point.params for point in points], centre=l1 == 0.0
                )
                coefs[f, li, c], intercepts[f, li, c] = coef, intercept
                for t, point in enumerate(points):
                    n_iter[t, f, li, c], converged[t, f, li, c] = point.n_iter, point.converged
    scores = _scores(source, folds, raw_weight, coefs, intercepts, spec.scorer)
    outcome = CVOutcome(
        classes=source.classes,
        n_features=source.n_features,
        feature_names=source.feature_names,
        coefs=coefs,
        intercepts=intercepts,
        scores=scores,
        n_iter=n_iter,
        converged=converged,
        n_passes=broker.rounds,
        C=math.nan,
        l1_ratio=math.nan,
        refit=None,
        coef=coefs[0, 0, 0],
        intercept=intercepts[0, 0, 0],
        backend=source.ran,
        device=source.device,
        solver=",".join(dict.fromkeys(solvers.values())),
        dtype=source.dtype,
    )
    _choose(outcome, source, spec)
    return outcome


def _fold_weights(source: ArraySource, trains: list[np.ndarray]) -> tuple[FoldWeights, np.ndarray]:
    """The folds' weights on the data's device, and each fold's total (sample x class) weight.

    A row repeated in a training set counts as often as it appears (as the
    rows of ``X[train]`` would).

    Raises
    ------
    ValueError
        A fold whose training rows weigh nothing.
    """
    n = source.n_samples
    counts = np.stack([np.bincount(train, minlength=n) for train in trains], axis=1)
    counts = counts.astype(np.uint8 if counts.max() <= np.iinfo(np.uint8).max else np.int32)
    s = host_float64(source.sample_weight)
    shares = s @ counts  # each fold's share of the normalised weights
    for f, share in enumerate(shares):
        if not share > 0:
            raise InputValueError(f"fold {f}: the training rows' sample and class weights sum to 0")
    xp = array_namespace(source.y)
    with device_of(source.X):
        counts_placed = counts if xp is np else xp.asarray(counts)
    weights = FoldWeights(s=source.sample_weight, counts=counts_placed, scale=1.0 / shares)
    return weights, shares * source.weight_sum


def _solver_name(solver: str, l1_ratio: float, shape: BackendShape) -> str:
    """The registry solver of one l1_ratio's paths (``"auto"`` resolved from the data)."""
    if solver != "auto":
        return solver
    return auto_solver(l1_ratio=l1_ratio, data_format=shape.format, n_params=shape.layout.n_params)


# --------------------------------------------------------------------------- scores
def _scores(
    source: ArraySource,
    folds: list[tuple[np.ndarray, np.ndarray]],
    raw_weight: np.ndarray | None,
    coefs: np.ndarray,
    intercepts: np.ndarray,
    scorer: HeldOutScorer,
) -> np.ndarray:
    """(F, L, N) held-out scores: per fold, one product of its rows with every path point."""
    n_folds, n_l1, n_cs, n_rows, n_features = coefs.shape
    y_host = np.asarray(to_host(source.y), dtype=np.int64)
    xp = array_namespace(source.y)
    scores = np.empty((n_folds, n_l1, n_cs))
    for f, (_, test) in enumerate(folds):
        with device_of(source.X):
            rows = xp.asarray(test) if xp is not np else test
            X_test = source.X[rows]
        held_out = HeldOut(
            rows=test,
            X=X_test,
            y=y_host[test],
            sample_weight=None if raw_weight is None else raw_weight[test],
            classes=source.classes,
        )
        stacked = coefs[f].reshape(-1, n_features)
        Z = np.asarray(to_host(decision_values(X_test, stacked, intercepts[f].reshape(-1))))
        Z = Z.reshape(Z.shape[0], n_l1, n_cs, n_rows)
        for li in range(n_l1):
            for c in range(n_cs):
                decision = Z[:, li, c, 0] if n_rows == 1 else Z[:, li, c]
                scores[f, li, c] = scorer(held_out, decision, coefs[f, li, c], intercepts[f, li, c])
    return scores


def builtin_scorer(name: str | None, *, ovr: bool) -> HeldOutScorer | None:
    """The scorer of ``name`` computed from decision values (None: not one of ours).

    ``None`` and ``"accuracy"``: the weighted share of correct labels;
    ``"neg_log_loss"``: minus the weighted mean log-loss of the predicted
    probabilities clipped to ``[eps, 1 - eps]`` (scikit-learn's rule);
    ``"roc_auc"``: the weighted area under the ROC curve (two classes).
    """
    if name in (None, "accuracy"):
        return _accuracy
    if name == "neg_log_loss":
        return lambda held_out, decision, coef, intercept: -_log_loss(held_out, decision, ovr)
    if name == "roc_auc":
        return _roc_auc
    return None


def _mean(values: np.ndarray, weight: np.ndarray | None) -> float:
    return float(np.average(values, weights=weight))


def _accuracy(
    held_out: HeldOut, decision: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> float:
    predicted = (decision > 0).astype(np.int64) if decision.ndim == 1 else decision.argmax(axis=1)
    return _mean(predicted == held_out.y, held_out.sample_weight)


def _log_loss(held_out: HeldOut, decision: np.ndarray, ovr: bool) -> float:
    P = probabilities(decision, ovr=ovr)
    eps = np.finfo(np.float64).eps
    own = np.clip(P[np.arange(P.shape[0]), held_out.y], eps, 1.0 - eps)
    return _mean(-np.log(own), held_out.sample_weight)


def _roc_auc(
    held_out: HeldOut, decision: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> float:
    """Weighted ROC AUC: the trapezoids between the curve's points at distinct scores."""
    positive = held_out.y == 1
    weight = held_out.sample_weight
    if weight is None:
        weight = np.ones(positive.shape[0])
    order = np.argsort(-decision, kind="mergesort")
    score, positive, weight = decision[order], positive[order], weight[order]
    true_pos = np.cumsum(weight * positive)
    false_pos = np.cumsum(weight * ~positive)
    ends = np.r_[np.flatnonzero(np.diff(score)), score.shape[0] - 1]  # last row of each tie
    tp, fp = np.r_[0.0, true_pos[ends]], np.r_[0.0, false_pos[ends]]
    if tp[-1] <= 0 or fp[-1] <= 0:
        raise InputValueError(
            "Only one class present in y_true of a test fold. ROC AUC score is not defined "
            "in that case."
        )
    return float(np.trapezoid(tp / tp[-1], fp / fp[-1]))


# --------------------------------------------------------------------------- the choice
def _choose(outcome: CVOutcome, source: ArraySource, spec: CVSpec) -> None:
    """The best (C, l1_ratio), and the final model: refitted, or the folds' mean."""
    scores = outcome.scores  # (F, L, N)
    n_folds, n_l1, n_cs = scores.shape
    # scikit-learn's tie rule: the first maximum with C the slower index of (N, L).
    flat = np.swapaxes(scores, 1, 2).reshape(n_folds, n_cs * n_l1)
    if spec.refit:
        c, li = divmod(int(np.argmax(flat.sum(axis=0))), n_l1)
        outcome.C, outcome.l1_ratio = float(spec.Cs[c]), float(spec.l1_ratios[li])
        coef = outcome.coefs[:, li, c].mean(axis=0)
        intercept = outcome.intercepts[:, li, c].mean(axis=0)
        fit = replace(spec.fit, C=outcome.C, l1_ratio=outcome.l1_ratio)
        previous = PreviousFit(
            classes=source.classes,
            coef=coef,
            intercept=intercept,
            n_features=source.n_features,
            feature_names=source.feature_names,
        )
        refit = fit_source(source, fit, previous)
        outcome.refit = refit
        outcome.coef, outcome.intercept = refit.coef_intercept()
        outcome.solver = refit.solver
        return
    best = [divmod(int(i), n_l1) for i in np.argmax(flat, axis=1)]
    outcome.coef = np.mean([outcome.coefs[f, li, c] for f, (c, li) in enumerate(best)], axis=0)
    outcome.intercept = np.mean(
        [outcome.intercepts[f, li, c] for f, (c, li) in enumerate(best)], axis=0
    )
    outcome.C = float(np.mean([spec.Cs[c] for c, _ in best]))
    outcome.l1_ratio = float(np.mean([spec.l1_ratios[li] for _, li in best]))
