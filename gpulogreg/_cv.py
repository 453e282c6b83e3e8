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
import numbers
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, cast

import numpy as np

from gpulogreg import backends
from gpulogreg._array import (
    array_module_name,
    array_namespace,
    device_of,
    host_float64,
    is_sparse,
    to_host,
)
from gpulogreg._errors import InputValueError
from gpulogreg._fit import (
    ArraySource,
    DatasetSource,
    FitOutcome,
    FitSpec,
    PreviousFit,
    Source,
    fit_source,
    open_source,
    plan_tasks,
    release_device_memory,
    solver_blas,
)
from gpulogreg._layout import ParamLayout
from gpulogreg._lockstep import BackendShape, EvaluationBroker
from gpulogreg._predict import decision_values
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Backend
from gpulogreg.backends.folds import (
    ChunkedFolds,
    DatasetFolds,
    FoldEvaluator,
    FoldOfChunks,
    FoldWeights,
    RowFolds,
    make_fold_evaluator,
)
from gpulogreg.data.dataset import Dataset
from gpulogreg.data.validation import check_sample_weight
from gpulogreg.loss import LogisticObjective
from gpulogreg.solvers import auto_solver, get_solver, solver_entry
from gpulogreg.solvers.lbfgs import CurvatureCarry

__all__ = [
    "CVOutcome",
    "CVSpec",
    "HeldOut",
    "HeldOutScorer",
    "MeanScorer",
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
    feature_names : ndarray of str or None
        The fitted feature names when ``X`` is the caller's DataFrame (``score``);
        None for the validated rows of a cross-validation.
    """

    rows: np.ndarray
    X: Array
    y: np.ndarray
    sample_weight: np.ndarray | None
    classes: np.ndarray
    feature_names: np.ndarray | None = None


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
    #: Passes over ``X`` of the paths: one per round and task for the shared evaluations,
    #: one per call a fold's own backend served (Dask; Hessians, Hessian-vector products).
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
    splits: Any,
    spec: CVSpec,
) -> CVOutcome:
    """Cross-validate the C (and l1_ratio) grid of ``spec`` over ``splits``, then refit.

    Parameters
    ----------
    X : array-like, Dask array or Dataset
    y : array-like of shape (n_samples,), or None for a Dataset
    sample_weight : array-like of shape (n_samples,) or None
    splits : sequence of (train, test), int or splitter
        Row indices (or boolean masks) of each fold; for a Dataset, the number
        of folds (rows dealt to them by :func:`~gpulogreg.backends.folds.hash_folds`)
        or a splitter with a ``test_fold`` array (scikit-learn's ``PredefinedSplit``).
    spec : CVSpec
    """
    if spec.fit.solver != "auto" and solver_entry(spec.fit.solver).stochastic:
        raise InputValueError(
            f"solver={spec.fit.solver!r} is stochastic: LogisticRegressionCV takes "
            "the full-batch solvers (lbfgs, newton, newton-cg, gd)"
        )
    if isinstance(X, Dataset):
        splits = _check_dataset_cv(splits, spec, X.n_samples)
    source = open_source(X, y, sample_weight, spec.fit)
    if isinstance(source, DatasetSource):
        assert isinstance(splits, RowFolds)
        outcome = _cross_validate_dataset(source, splits, spec)
    else:
        if isinstance(splits, int):
            raise InputValueError("in-memory data take their splits as (train, test) pairs")
        outcome = _cross_validate(
            source,
            _check_splits(splits, source.n_samples),
            _raw_weights(sample_weight, source),
            spec,
        )
    on_data_device = source.device_context()
    del source
    release_device_memory(outcome.device, on_data_device)
    return outcome


def _raw_weights(sample_weight: Any, source: ArraySource) -> np.ndarray | None:
    """The sample weights as given (validated, broadcast; no class weights): the scores'."""
    if sample_weight is None:
        return None
    if array_module_name(sample_weight) == "dask":
        sample_weight = sample_weight.compute()
    return check_sample_weight(to_host(sample_weight), source.n_samples)


def _check_dataset_cv(splits: Any, spec: CVSpec, n_samples: int) -> RowFolds:
    """What a Dataset's cross-validation takes: hashed or given folds, and scores that add up.

    Returns
    -------
    RowFolds
        The fold of each row: ``cv=int`` hashes the row index, a splitter with
        a ``test_fold`` array (scikit-learn's ``PredefinedSplit``) gives it.
    """
    if hasattr(splits, "test_fold") and hasattr(splits, "split"):
        rows = RowFolds.predefined(splits.test_fold, n_samples)
    elif isinstance(splits, numbers.Integral) and not isinstance(splits, bool) and int(splits) >= 2:
        rows = RowFolds.hashed(int(splits))
    else:
        raise InputValueError(
            "a Dataset is cross-validated with cv=int (at least 2), its rows dealt to the "
            "folds by a hash of the row index, or with a fold label per row "
            "(sklearn.model_selection.PredefinedSplit(test_fold)); other splitters and "
            "index lists need the rows in memory"
        )
    if not isinstance(spec.scorer, MeanScorer) and spec.scorer is not _roc_auc:
        raise InputValueError(
            "a Dataset's cross-validation scores with None/'accuracy', 'neg_log_loss' "
            "(added up chunk by chunk) or 'roc_auc' (from the held-out decision values); "
            "other scorers need the held-out rows in memory"
        )
    return rows


# --------------------------------------------------------------------------- splits
def _check_splits(
    splits: Sequence[tuple[Any, Any]], n_samples: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The splits as int64 row indices, checked (in range, non-empty)."""
    out = []
    for f, split in enumerate(splits):
        if isinstance(split, (str, bytes)) or len(split) != 2:
            raise InputValueError(
                f"cv: split {f} is not a (train, test) pair of row indices or masks"
            )
        train, test = split
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
        raise InputValueError(
            "the cross-validation has no folds (an empty iterable, or a generator used up "
            "by an earlier fit: pass a list of splits)"
        )
    return out


def stratified_folds(y_index: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` stratified folds without shuffling, as scikit-learn's ``StratifiedKFold``.

    The classes are numbered by their first appearance in ``y``; the rows
    sorted by that number are dealt to the folds in turn, which fixes how
    many rows of each class each fold holds; each class's rows then fill the
    folds in order of appearance (the first rows of a class test in fold 0).

    Raises
    ------
    ValueError
        ``n_splits`` below 2 or above the number of rows of every class.
    """
    y_index = np.asarray(y_index, dtype=np.int64)
    _, first, inverse = np.unique(y_index, return_index=True, return_inverse=True)
    y_index = np.argsort(np.argsort(first))[inverse]  # classes renumbered by first appearance
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
    """In-memory and Dask data: folds from the splits, one evaluator per task."""
    fit = spec.fit
    positives, layout = _tasks(source, fit)
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

    shape = BackendShape(
        name=source.backend_name,
        format="csr" if is_sparse(source.X) else "dense",
        xp=xp,
        dtype=source.dtype,
        n_samples=source.n_samples,
        n_features=source.n_features,
        layout=layout,
    )
    broker = EvaluationBroker(evaluators, fold_backend)
    paths = _run_paths(source, broker, shape, positives, fold_sums, spec)
    paths.scores = _scores(source, folds, raw_weight, paths.coefs, paths.intercepts, spec.scorer)
    outcome = _outcome(source, paths, broker.passes)
    _choose(outcome, source, spec)
    return outcome


def _cross_validate_dataset(source: DatasetSource, rows: RowFolds, spec: CVSpec) -> CVOutcome:
    """A Dataset: folds by a hash of the row index or given labels, every round one pass."""
    fit = spec.fit
    n_folds = rows.n_folds
    positives, layout = _tasks(source, fit)
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    chunked = {positive: source.backend(positive, n_classes) for positive in positives}
    held_out = np.zeros(n_folds)
    shares = np.zeros(n_folds)  # each fold's training weight (sums over its own rows: 0 is 0)
    start = 0
    for inner in chunked[positives[0]].chunk_backends():
        s = host_float64(cast(Any, inner).sample_weight)
        folds = rows.held_out(start, s.shape[0])
        for f in range(n_folds):
            held_out[f] += s[folds == f].sum()
            shares[f] += s[folds != f].sum()
        start += s.shape[0]
    for f in range(n_folds):
        if not held_out[f] > 0:
            remedy = "; use fewer folds" if rows.hashed_rows else ""
            raise InputValueError(
                f"{rows.describe(f)}: no held-out rows (or their weights sum to 0) "
                f"among the Dataset's {source.n_samples} rows{remedy}"
            )
        if not shares[f] > 0:
            raise InputValueError(
                f"{rows.describe(f)}: the training rows' sample and class weights sum to 0"
            )
    dataset_folds = DatasetFolds(rows, 1.0 / shares)
    evaluators: dict[Hashable, FoldEvaluator | None] = {
        positive: ChunkedFolds(chunked[positive], dataset_folds) for positive in positives
    }

    def fold_backend(positive: Hashable, fold: int) -> Backend:
        return FoldOfChunks(chunked[positive], dataset_folds, fold)  # type: ignore[index]

    first = chunked[positives[0]]
    shape = BackendShape(
        name=first.name,
        format=first.format,
        xp=first.xp,
        dtype=source.dtype,
        n_samples=source.n_samples,
        n_features=source.n_features,
        layout=layout,
    )
    broker = EvaluationBroker(evaluators, fold_backend)
    paths = _run_paths(source, broker, shape, positives, shares * source.weight_sum, spec)
    if isinstance(spec.scorer, MeanScorer):
        paths.scores = _dataset_scores(source, rows, paths.coefs, paths.intercepts, spec.scorer)
        score_passes = 1
    else:
        paths.scores, score_passes = _dataset_roc_auc(source, rows, paths.coefs, paths.intercepts)
    # The broker counted the CV's passes; the chunked backends are not handed to
    # source.done_with, so that the refit's n_passes_ counts its own passes only.
    outcome = _outcome(source, paths, broker.passes + 1 + score_passes)  # + the shares' pass
    _choose(outcome, source, spec)
    return outcome


def _tasks(source: Source, fit: FitSpec) -> tuple[list[int | None], ParamLayout]:
    """The tasks of every fold (one-vs-rest classes, or one model) and their layout."""
    positives, n_model_classes = plan_tasks(
        len(source.classes), fit.multi_class, binary_only=fit.intercept_scaling is not None
    )
    return positives, ParamLayout.for_classes(source.n_features, n_model_classes, fit.fit_intercept)


@dataclass
class _Paths:
    """The path points of every fold, l1_ratio and C (shapes as in :class:`CVOutcome`)."""

    coefs: np.ndarray
    intercepts: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    solver: str
    scores: np.ndarray | None = None


def _run_paths(
    source: Source,
    broker: EvaluationBroker,
    shape: BackendShape,
    positives: list[int | None],
    fold_sums: np.ndarray,
    spec: CVSpec,
) -> _Paths:
    """Every (task, fold, l1_ratio) walks the C path in a solver thread; the broker serves them."""
    fit, layout, xp = spec.fit, shape.layout, shape.xp
    n_folds, n_l1, n_cs = len(fold_sums), len(spec.l1_ratios), len(spec.Cs)
    runs = [
        _PathRun(positive, f, l1)
        for positive in positives
        for f in range(n_folds)
        for l1 in spec.l1_ratios
    ]
    order = np.argsort(spec.Cs, kind="stable")  # strong to weak penalty
    solvers = {l1: _solver_name(fit.solver, l1, shape) for l1 in spec.l1_ratios}

    def job(run: _PathRun) -> list[_PathPoint]:
        backend = broker.backend(run.positive, run.fold, shape)
        solver = get_solver(solvers[run.l1_ratio])
        # L-BFGS carries its curvature pairs along the path (only the L2 term changes)
        options = {"carry": CurvatureCarry()} if solvers[run.l1_ratio] == "lbfgs" else {}
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
                **options,
            )
            params = result.params
            points.append(_PathPoint(host_float64(params), result.n_iter, result.converged))
        return points

    with source.device_context(), solver_blas(source):
        done = broker.run([partial(job, run) for run in runs], source.device_context)
    by_run = dict(zip(runs, done, strict=True))
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
    solver = ",".join(dict.fromkeys(solvers.values()))
    return _Paths(coefs, intercepts, n_iter, converged, solver)


def _outcome(source: Source, paths: _Paths, n_passes: int) -> CVOutcome:
    assert paths.scores is not None
    return CVOutcome(
        classes=source.classes,
        n_features=source.n_features,
        feature_names=source.feature_names,
        coefs=paths.coefs,
        intercepts=paths.intercepts,
        scores=paths.scores,
        n_iter=paths.n_iter,
        converged=paths.converged,
        n_passes=n_passes,
        C=math.nan,
        l1_ratio=math.nan,
        refit=None,
        coef=paths.coefs[0, 0, 0],
        intercept=paths.intercepts[0, 0, 0],
        backend=source.ran,
        device=source.device,
        solver=paths.solver,
        dtype=source.dtype,
    )


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
        if raw_weight is not None and not raw_weight[test].sum() > 0:
            raise InputValueError(f"fold {f}: the held-out rows' sample weights sum to 0")
        held_out = HeldOut(
            rows=test,
            X=X_test,
            y=y_host[test],
            sample_weight=None if raw_weight is None else raw_weight[test],
            classes=source.classes,
        )
        stacked = coefs[f].reshape(-1, n_features)
        Z = np.asarray(to_host(decision_values(X_test, stacked, intercepts[f].reshape(-1))))
        if isinstance(scorer, MeanScorer):  # all path points at once
            Z = Z.reshape(Z.shape[0], n_l1 * n_cs, n_rows)
            means = scorer.means(Z, held_out.y, held_out.sample_weight)
            scores[f] = means.reshape(n_l1, n_cs)
            continue
        Z = Z.reshape(Z.shape[0], n_l1, n_cs, n_rows)
        for li in range(n_l1):
            for c in range(n_cs):
                decision = Z[:, li, c, 0] if n_rows == 1 else Z[:, li, c]
                scores[f, li, c] = scorer(held_out, decision, coefs[f, li, c], intercepts[f, li, c])
    return scores


def _dataset_scores(
    source: DatasetSource,
    rows_of: RowFolds,
    coefs: np.ndarray,
    intercepts: np.ndarray,
    scorer: MeanScorer,
) -> np.ndarray:
    """(F, L, N) held-out scores of a Dataset: weighted sums added up over one pass."""
    n_folds = rows_of.n_folds
    n_l1, n_cs, n_rows, n_features = coefs.shape[1:]
    totals = np.zeros((n_folds, n_l1, n_cs))
    weights = np.zeros(n_folds)
    W = coefs.reshape(n_folds, -1, n_features)
    b = intercepts.reshape(n_folds, -1)
    for f, Z, y, w in _held_out_decisions(source, rows_of, W, b):
        weights[f] += w.sum()
        values = scorer.row_values(Z.reshape(Z.shape[0], n_l1 * n_cs, n_rows), y)
        totals[f] += (w @ values).reshape(n_l1, n_cs)
    for f in range(n_folds):
        _check_held_out_weight(rows_of, f, weights[f])
    return totals / weights[:, None, None]


def _held_out_decisions(
    source: DatasetSource, rows_of: RowFolds, W: np.ndarray, b: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of a Dataset and fold, the decision values of the fold's held-out rows.

    Per chunk and fold, only the fold's held-out rows meet its own models.

    Parameters
    ----------
    W : ndarray of shape (n_folds, n_models, n_features)
    b : ndarray of shape (n_folds, n_models)

    Yields
    ------
    fold : int
    Z : ndarray of shape (n_held_out_rows, n_models), float64, on the host
    y : ndarray of shape (n_held_out_rows,), int64 class indices
    sample_weight : ndarray of shape (n_held_out_rows,), float64
    """
    chunks = source.chunks.for_class(None)
    for chunk in chunks.dataset.iter_chunks(chunks.dtype_arg):
        X, y, _ = chunks.prepare(chunk)
        xp = array_namespace(y)
        w = np.ones(y.shape[0]) if chunk.sample_weight is None else chunk.sample_weight
        held_out = rows_of.held_out(chunk.start, y.shape[0])
        y_host = np.asarray(to_host(y), dtype=np.int64)
        for f in range(rows_of.n_folds):
            rows = np.flatnonzero(held_out == f)
            if rows.shape[0] == 0:
                continue
            with device_of(X):
                X_rows = X[xp.asarray(rows) if xp is not np else rows]
            Z = np.asarray(to_host(decision_values(X_rows, W[f], b[f])))
            yield f, Z.reshape(rows.shape[0], W.shape[1]), y_host[rows], np.asarray(w[rows])


def _check_held_out_weight(rows_of: RowFolds, fold: int, weight: float) -> None:
    """Refuse a fold of a Dataset whose held-out rows' sample weights sum to 0."""
    if not weight > 0:
        raise InputValueError(
            f"{rows_of.describe(fold)}: the held-out rows' sample weights sum to 0"
        )


#: Bytes of held-out decision values that a Dataset's ROC AUC keeps at once
#: (float64, one per row and path point): path points beyond it are scored in
#: further passes over the Dataset.
ROC_AUC_BUFFER_BYTES = 1 << 28


def _dataset_roc_auc(
    source: DatasetSource, rows_of: RowFolds, coefs: np.ndarray, intercepts: np.ndarray
) -> tuple[np.ndarray, int]:
    """(F, L, N) held-out ROC AUCs of a binary Dataset fit, and the passes they took.

    The exact AUC ranks every held-out row of a fold, so each pass keeps the
    held-out decision values of as many path points as
    :data:`ROC_AUC_BUFFER_BYTES` holds (at least one: 8 bytes per row), with
    their labels and weights; the peak is about twice that, while the chunks'
    pieces are joined.
    """
    n_folds = rows_of.n_folds
    n_l1, n_cs, n_outputs, n_features = coefs.shape[1:]
    assert n_outputs == 1, "the estimator refuses roc_auc for more than two classes"
    n_points = n_l1 * n_cs
    W = coefs.reshape(n_folds, n_points, n_features)
    b = intercepts.reshape(n_folds, n_points)
    group = int(np.clip(ROC_AUC_BUFFER_BYTES // (8 * max(source.n_samples, 1)), 1, n_points))
    scores = np.empty((n_folds, n_points))
    passes = 0
    for p0 in range(0, n_points, group):
        p1 = min(p0 + group, n_points)
        parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(n_folds)]
        for f, Z, y, w in _held_out_decisions(source, rows_of, W[:, p0:p1], b[:, p0:p1]):
            parts[f].append((Z, y, w))
        passes += 1
        for f in range(n_folds):  # every fold has held-out rows: the shares' pass checked
            decision = np.concatenate([part[0] for part in parts[f]])
            labels = np.concatenate([part[1] for part in parts[f]])
            weight = np.concatenate([part[2] for part in parts[f]])
            _check_held_out_weight(rows_of, f, float(weight.sum()))
            for p in range(p1 - p0):
                scores[f, p0 + p] = _weighted_roc_auc(labels == 1, decision[:, p], weight)
    return scores.reshape(n_folds, n_l1, n_cs), passes


def builtin_scorer(name: str | None, *, ovr: bool) -> HeldOutScorer | None:
    """The scorer of ``name`` computed from decision values (None: not one of ours).

    ``None`` and ``"accuracy"``: the weighted share of correct labels;
    ``"neg_log_loss"``: minus the weighted mean log-loss of the predicted
    probabilities clipped to ``[eps, 1 - eps]`` (scikit-learn's rule);
    ``"roc_auc"``: the weighted area under the ROC curve (two classes).
    """
    if name in (None, "accuracy", "neg_log_loss"):
        return MeanScorer("accuracy" if name is None else name, ovr=ovr)
    if name == "roc_auc":
        return _roc_auc
    return None


@dataclass(frozen=True)
class MeanScorer:
    """A score that is a weighted mean over the held-out rows (accuracy, minus log-loss).

    :meth:`row_values` gives each row's term for many models at once, so that a
    fold's scores are a few array operations and a Dataset's add up chunk by chunk.
    """

    name: str
    ovr: bool

    def row_values(self, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each row's term per model: 1.0 for a correct label (accuracy), or the log of the
        probability of its label clipped to ``[eps, 1 - eps]`` (minus its log-loss).

        Parameters
        ----------
        Z : ndarray of shape (n_rows, n_models, n_outputs)
            Decision values (one output: binary).
        y : ndarray of shape (n_rows,), int
            Class indices.

        Returns
        -------
        ndarray of shape (n_rows, n_models)
        """
        n_outputs = Z.shape[2]
        if self.name == "accuracy":
            predicted = (Z[:, :, 0] > 0) if n_outputs == 1 else Z.argmax(axis=2)
            return (predicted == y[:, None]).astype(np.float64)
        eps = np.finfo(np.float64).eps
        if n_outputs == 1:  # log sigmoid(t), t = +-z with the sign of the row's label
            t = (2.0 * y[:, None] - 1.0) * Z[:, :, 0]
            log_p = np.minimum(t, 0.0) - np.log1p(np.exp(-np.abs(t)))
        else:
            own = np.take_along_axis(Z, y[:, None, None], axis=2)[:, :, 0]
            if self.ovr:  # the sigmoids normalised to sum to one
                log_sigmoid = -np.logaddexp(0.0, -Z)
                own = np.take_along_axis(log_sigmoid, y[:, None, None], axis=2)[:, :, 0]
                log_p = own - np.logaddexp.reduce(log_sigmoid, axis=2)
            else:  # softmax
                top = Z.max(axis=2, keepdims=True)
                log_p = own - (top[:, :, 0] + np.log(np.exp(Z - top).sum(axis=2)))
        return np.clip(log_p, np.log(eps), np.log1p(-eps))

    def means(self, Z: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
        """The weighted mean of :meth:`row_values` per model, shape (n_models,)."""
        values = self.row_values(Z, y)
        if weight is None:
            return np.asarray(values.mean(axis=0))
        return np.asarray(weight @ values / weight.sum())

    def __call__(
        self, held_out: HeldOut, decision: np.ndarray, coef: np.ndarray, intercept: np.ndarray
    ) -> float:
        Z = decision.reshape(decision.shape[0], 1, -1)
        return float(self.means(Z, held_out.y, held_out.sample_weight)[0])


def _roc_auc(
    held_out: HeldOut, decision: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> float:
    """Weighted ROC AUC of a fold's held-out rows (:func:`_weighted_roc_auc`)."""
    return _weighted_roc_auc(held_out.y == 1, decision, held_out.sample_weight)


def _weighted_roc_auc(
    positive: np.ndarray, decision: np.ndarray, weight: np.ndarray | None
) -> float:
    """Weighted ROC AUC: the trapezoids between the curve's points at distinct scores."""
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
def _choose(outcome: CVOutcome, source: Source, spec: CVSpec) -> None:
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
