"""``LogisticRegressionCV``: choosing ``C`` (and ``l1_ratio``) by cross-validation, fast.

The estimator's API is scikit-learn's (1.9, with the attribute layout of
``use_legacy_attributes=False`` by default); the work is done by the CV plan
(:mod:`gpulogreg._cv`): the folds are weight masks over data validated and
placed once, and all fold models advance together, sharing each pass over
``X``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, to_host
from gpulogreg._compat import ConvergenceWarning
from gpulogreg._cv import (
    CVOutcome,
    CVSpec,
    HeldOut,
    HeldOutScorer,
    builtin_scorer,
    run_cv,
    stratified_folds,
)
from gpulogreg._errors import InputValueError
from gpulogreg._fit import FitOutcome, FitSpec
from gpulogreg._sklearn_params import PENALTY_DEFAULT, resolve_regularisation
from gpulogreg.data.dataset import Dataset
from gpulogreg.data.validation import encode_labels
from gpulogreg.estimator import LogisticRegression
from gpulogreg.solvers import SOLVERS, solver_entry
from gpulogreg.solvers.stochastic.config import MinibatchConfig

__all__ = ["LogisticRegressionCV"]

#: scikit-learn's grid for an integer ``Cs``: ``Cs`` values from 1e-4 to 1e4.
_CS_RANGE = (-4.0, 4.0)
#: Folds of ``cv=None`` (scikit-learn's default since 0.22).
_DEFAULT_FOLDS = 5
_L1_RATIOS_NONE = (
    "l1_ratios=None was deprecated in scikit-learn 1.8 and will be an error in 1.10: "
    "pass l1_ratios=(0.0,) for an L2 penalty (gpulogreg follows its deprecation)."
)


class LogisticRegressionCV(LogisticRegression):
    """Logistic regression with ``C`` (and ``l1_ratio``) chosen by cross-validation.

    For every fold, the C path runs from the strongest penalty to the
    weakest, each fit warm started from the last; the folds are weight masks
    over one copy of the data, and all fold models advance together: each
    round of their solvers is one pass over ``X`` for all of them (a fold that
    has converged stops costing arithmetic). The best grid point by the folds'
    summed held-out scores is then refitted on all rows, starting from the mean
    of the folds' solutions, as scikit-learn does.

    Parameters
    ----------
    Cs : int or array-like, default=10
        The grid of C values; an int ``n`` gives ``n`` values evenly spaced on a
        log scale between 1e-4 and 1e4 (scikit-learn's).
    l1_ratios : array-like of floats in [0, 1], default=(0.0,)
        The grid of L1 shares (0: L2). None is scikit-learn 1.8's deprecated
        spelling of an L2 penalty (a ``FutureWarning``; the legacy attributes
        then have no l1_ratio dimension).
    fit_intercept : bool, default=True
    cv : int, cross-validation splitter or iterable, default=None
        None: 5 folds. An int: that many stratified folds without shuffling
        (scikit-learn's ``StratifiedKFold``, the same folds). A splitter
        (``split(X, y, **params)``) or an iterable of ``(train, test)`` index
        arrays (or boolean masks).
    dual : bool, default=False
        As in :class:`~gpulogreg.LogisticRegression`.
    penalty : {"l2", "l1", "elasticnet"}, deprecated
        scikit-learn 1.8's deprecated way (a ``FutureWarning``): "l2" and "l1"
        stand for ``l1_ratios=(0,)`` and ``(1,)``; "elasticnet" uses ``l1_ratios``.
    scoring : None, str or callable, default=None
        How the held-out rows score a model (higher is better). None and
        "accuracy": the (sample-weighted) accuracy; "neg_log_loss";
        "roc_auc" (two classes): computed by gpulogreg from one product of the
        held-out rows with every path point. Any other of scikit-learn's scorer
        names, or a callable ``scorer(estimator, X, y)`` (``sample_weight=`` too
        when ``fit`` had weights): called with a fitted
        :class:`~gpulogreg.LogisticRegression` per grid point and fold.
    solver : str, default="auto"
        As in :class:`~gpulogreg.LogisticRegression` (full-batch solvers only);
        "auto" runs L-BFGS for an L2 penalty on dense data, whose evaluations
        the fold models share.
    tol : float, default=1e-6
    max_iter : int, default=1000
        Per fit of the path (each C of each fold), and for the refit.
    class_weight : None, "balanced" or dict, default=None
        "balanced" counts the classes over all rows (scikit-learn's rule).
    n_jobs : None
        No effect (the folds share each pass over the data and every Numba
        thread); accepted for scikit-learn's signature.
    verbose : int, default=0
        > 0 shows the refit's progress bar.
    refit : bool, default=True
        False: no refit; ``coef_`` is the mean over the folds of each fold's
        best model, ``C_`` the mean of their C values (``l1_ratio_`` likewise).
    intercept_scaling : float, default=1.0
        ``solver="liblinear"``: its penalised intercept, as in LogisticRegression.
    random_state : None
        Accepted for scikit-learn's signature: the solvers here are deterministic.
    use_legacy_attributes : bool, default=False
        scikit-learn's transition flag. False: the layout of its 1.10 default
        (below). True: its legacy dictionaries keyed by class.
    multi_class : {"auto", "multinomial", "ovr"}, default="auto"
        "ovr": one binary path per class and fold.
    device, backend, dtype
        As in :class:`~gpulogreg.LogisticRegression`.

    Attributes
    ----------
    Cs_ : ndarray of shape (n_cs,)
    l1_ratios_ : ndarray of shape (n_l1_ratios,)
    scores_ : ndarray of shape (n_folds, n_l1_ratios, n_cs)
        Legacy: a dict (positive class, or each class) -> (n_folds, n_cs, n_l1_ratios).
    coefs_paths_ : ndarray of shape (n_folds, n_l1_ratios, n_cs, n_rows, n_features + fit_intercept)
        ``n_rows`` is 1 for two classes, else the number of classes; the
        intercept last. Legacy: a dict class -> (n_folds, n_cs, n_l1_ratios, n_dof).
    C_ : float
        The chosen C (legacy: an array repeated per class).
    l1_ratio_ : float
    n_iter_ : ndarray of shape (n_folds, n_l1_ratios, n_cs)
        Iterations of each path fit (the largest over one-vs-rest classes).
        Legacy: (1 or n_classes for "ovr", n_folds, n_cs, n_l1_ratios).
    n_cv_passes_ : int
        Passes over ``X`` the cross-validation's paths made, all fold models
        together (rounds of their shared evaluations; Hessians and
        Hessian-vector products of the Newton solvers are counted once per round).
    coef_, intercept_, classes_, n_features_in_, feature_names_in_
        Of the final model, as in LogisticRegression; also ``history_``,
        ``objective_``, ``converged_`` of the refit, ``backend_``, ``device_``,
        ``solver_``.

    Notes
    -----
    ``save`` writes the final model as a :class:`~gpulogreg.LogisticRegression`
    (``C`` and ``l1_ratio`` the chosen ones), which ``gpulogreg.load`` reads.
    """

    def __init__(
        self,
        *,
        Cs: Any = 10,
        l1_ratios: Any = (0.0,),
        fit_intercept: bool = True,
        cv: Any = None,
        dual: bool = False,
        penalty: str = PENALTY_DEFAULT,
        scoring: Any = None,
        solver: str = "auto",
        tol: float = 1e-6,
        max_iter: int = 1000,
        class_weight: Any = None,
        n_jobs: int | None = None,
        verbose: int = 0,
        refit: bool = True,
        intercept_scaling: float = 1.0,
        random_state: Any = None,
        use_legacy_attributes: bool = False,
        multi_class: str = "auto",
        device: str = "auto",
        backend: str = "auto",
        dtype: str | None = None,
    ) -> None:
        self.Cs = Cs
        self.l1_ratios = l1_ratios
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.dual = dual
        self.penalty = penalty
        self.scoring = scoring
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.refit = refit
        self.intercept_scaling = intercept_scaling
        self.random_state = random_state
        self.use_legacy_attributes = use_legacy_attributes
        self.multi_class = multi_class
        self.device = device
        self.backend = backend
        self.dtype = dtype

    # -- the fit settings -------------------------------------------------------------
    def _spec(self, *, warn: bool = False, stacklevel: int = 3) -> FitSpec:
        """The fit settings of the final model (the chosen C and l1_ratio; ``inference``)."""
        C, l1_ratio = self.__dict__.get("_chosen", (1.0, 0.0))
        return self._fit_spec(C, l1_ratio)

    def _fit_spec(self, C: float, l1_ratio: float) -> FitSpec:
        """The settings of a fit with ``C`` and ``l1_ratio``, checked."""
        resolved = resolve_regularisation(
            penalty=PENALTY_DEFAULT,
            C=C,
            l1_ratio=l1_ratio,
            solver=self.solver,
            dual=self.dual,
            intercept_scaling=self.intercept_scaling,
            n_jobs=None,
            own_solvers=frozenset(SOLVERS),
            warn=False,
        )
        solver = resolved.solver
        if l1_ratio > 0 and solver != "auto" and not solver_entry(solver).handles_l1:
            raise InputValueError(
                f"solver={self.solver!r} supports only L2; use 'gd' or 'auto' for "
                f"l1_ratios above 0 (got {l1_ratio})"
            )
        self._check_settings()
        return self._spec_of(resolved, minibatch=MinibatchConfig())

    @property
    def partial_fit(self) -> Any:
        """LogisticRegressionCV has no ``partial_fit`` (scikit-learn's has none either)."""
        raise AttributeError(
            "LogisticRegressionCV has no partial_fit: a cross-validation fits the whole data; "
            "use LogisticRegression(C=cv.C_).partial_fit"
        )

    # -- the grid ----------------------------------------------------------------------
    def _grid(self) -> tuple[np.ndarray, tuple[float, ...], bool]:
        """``Cs_``, the l1_ratios and whether they were given (not None), checked."""
        if isinstance(self.Cs, numbers.Integral) and not isinstance(self.Cs, bool):
            if self.Cs < 1:
                raise InputValueError(f"Cs must be a positive int or a list of floats: {self.Cs}")
            Cs = np.logspace(*_CS_RANGE, int(self.Cs))
        else:
            values = np.asarray(self.Cs, dtype=object)
            if values.ndim != 1 or values.size == 0 or not all(_is_real(c) for c in values):
                raise InputValueError(
                    f"Cs must be a positive int or a list of positive numbers, got {self.Cs!r}"
                )
            Cs = values.astype(np.float64)
            if not np.all(Cs > 0):
                raise InputValueError(f"Cs must hold positive numbers, got {self.Cs!r}")
        ratios: Any = self.l1_ratios
        given = ratios is not None
        if self.penalty != PENALTY_DEFAULT:
            if self.penalty not in ("l2", "l1", "elasticnet"):
                raise InputValueError(
                    f"penalty must be 'l2', 'l1' or 'elasticnet', got {self.penalty!r}"
                )
            warnings.warn(
                "'penalty' was deprecated in scikit-learn 1.8 and will be removed in 1.10: "
                "use l1_ratios=(0,) for 'l2', (1,) for 'l1' and floats in [0, 1] for "
                "'elasticnet' (gpulogreg follows its deprecation).",
                FutureWarning,
                stacklevel=3,
            )
            if self.penalty != "elasticnet":
                ratios = (0.0,) if self.penalty == "l2" else (1.0,)
            elif ratios is None:
                raise InputValueError("penalty='elasticnet' needs l1_ratios")
        elif ratios is None:
            warnings.warn(_L1_RATIOS_NONE, FutureWarning, stacklevel=3)
            ratios = (0.0,)
        values = np.asarray(ratios, dtype=object)
        if (
            values.ndim != 1
            or values.size == 0
            or not all(_is_real(r) and 0 <= float(r) <= 1 for r in values)
        ):
            raise InputValueError(
                f"l1_ratios must be an array-like of numbers between 0 and 1; got {ratios!r}"
            )
        return Cs, tuple(float(r) for r in values), given

    # -- fitting --------------------------------------------------------------------
    def fit(
        self, X: Any, y: Any = None, sample_weight: Any = None, **params: Any
    ) -> LogisticRegressionCV:
        """Cross-validate the grid, choose the best point, and refit it on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), sparse matrix, Dask array or Dataset
            A :class:`~gpulogreg.Dataset` (out of core) takes ``cv`` as a number of
            folds, its rows dealt to them by a hash of the row index, or as
            ``sklearn.model_selection.PredefinedSplit(test_fold)``, a fold label per
            row (-1: in every training set), read a chunk's range at a time (a
            memory-mapped column stays one); any full-batch solver and l1_ratio,
            scored by accuracy or neg_log_loss (added up chunk by chunk) or
            roc_auc (the held-out decision values kept, 8 bytes per row and path
            point, 256 MiB of them per pass, about twice that at the peak).
        y : array-like of shape (n_samples,), or None with a Dataset
        sample_weight : array-like of shape (n_samples,), optional
            Training weights, and the held-out rows' weights in the scores.
        **params
            Passed to the splitter's ``split`` (``groups=...``).

        Returns
        -------
        self
        """
        Cs, l1_ratios, ratios_given = self._grid()
        spec = self._fit_spec(1.0, l1_ratios[0])
        for ratio in l1_ratios[1:]:
            self._fit_spec(1.0, ratio)  # every l1_ratio checked with the solver
        if self.n_jobs is not None:
            warnings.warn(
                "n_jobs has no effect: the folds share every pass over the data",
                UserWarning,
                stacklevel=2,
            )
        ovr = self.multi_class == "ovr"
        splits: Any
        if isinstance(X, Dataset):
            if y is not None or sample_weight is not None or params:
                raise InputValueError(
                    "fit(dataset) takes the labels and weights from the Dataset; pass no y, "
                    "sample_weight or split parameters"
                )
            splits = _DEFAULT_FOLDS if self.cv is None else self.cv
            scorer = self._held_out_scorer(X.scan(self.dtype).classes, ovr)
        else:
            if y is None:
                raise InputValueError(
                    "requires y to be passed, but the target y is None; fit(X, y) needs the labels"
                )
            y_host = _host_labels(y)
            classes, y_index = encode_labels(y_host)
            scorer = self._held_out_scorer(classes, ovr)
            splits = self._splits(X, y_host, y_index, params)
        cv_spec = CVSpec(
            fit=spec,
            Cs=Cs,
            l1_ratios=l1_ratios,
            scorer=scorer,
            refit=bool(self.refit),
        )
        for name in (*self.FITTED_ATTRIBUTES, "_solution"):
            self.__dict__.pop(name, None)
        outcome = run_cv(X, y, sample_weight, splits, cv_spec)
        self._set_cv_fitted(outcome, Cs, l1_ratios, ratios_given)
        self._warn_paths(outcome)
        if outcome.refit is not None:
            self._warn_if_not_converged(outcome.refit)
        return self

    def _splits(
        self, X: Any, y_host: np.ndarray, y_index: np.ndarray, params: dict[str, Any]
    ) -> list[tuple[Any, Any]]:
        cv = _DEFAULT_FOLDS if self.cv is None else self.cv
        if isinstance(cv, (str, bytes)):
            raise InputValueError(
                f"cv must be None, an int, a splitter or an iterable of splits, got {cv!r}"
            )
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
            if params:
                raise InputValueError(
                    f"fit got {sorted(params)}, which an integer cv does not take"
                )
            return stratified_folds(y_index, int(cv))
        if hasattr(cv, "split"):
            # Splitters look at the rows' number (and y, groups): device and Dask
            # arrays are shown as an empty host array of as many rows.
            rows = X if array_module_name(X) == "numpy" else np.empty((y_host.shape[0], 0))
            return list(cv.split(rows, y_host, **params))
        if isinstance(cv, Iterable):
            return list(cv)
        raise InputValueError(f"cv must be None, an int, a splitter or an iterable, got {cv!r}")

    def _held_out_scorer(self, classes: np.ndarray, ovr: bool) -> HeldOutScorer:
        scoring = self.scoring
        if scoring == "roc_auc" and len(classes) > 2:
            raise InputValueError(
                "scoring='roc_auc' takes two classes; for more use 'roc_auc_ovr' or 'roc_auc_ovo'"
            )
        if scoring is None or isinstance(scoring, str):
            ours = builtin_scorer(scoring, ovr=ovr)
            if ours is not None:
                return ours
        if isinstance(scoring, str):
            try:
                from sklearn.metrics import get_scorer
            except ImportError as error:
                raise InputValueError(
                    f"scoring={scoring!r} needs scikit-learn (pip install 'gpulogreg[accel]'); "
                    "gpulogreg computes 'accuracy', 'neg_log_loss' and 'roc_auc' itself"
                ) from error
            scoring = _with_labels(get_scorer(scoring), classes)
        if not callable(scoring):
            raise InputValueError(
                f"scoring must be None, a scorer name or a callable, got {scoring!r}"
            )
        return _EstimatorScorer(scoring, self.multi_class)

    def _set_cv_fitted(
        self, outcome: CVOutcome, Cs: np.ndarray, l1_ratios: tuple[float, ...], ratios_given: bool
    ) -> None:
        refit: FitOutcome | None = outcome.refit
        if refit is not None:
            self._set_fitted(refit)
        else:
            self.__dict__.pop("feature_names_in_", None)
            self.__dict__.update(
                classes_=outcome.classes,
                n_features_in_=int(outcome.n_features),
                coef_=outcome.coef.astype(outcome.dtype),
                intercept_=outcome.intercept.astype(outcome.dtype),
                _solution=(outcome.coef, outcome.intercept),
                converged_=bool(outcome.converged.all()),
                backend_=outcome.backend,
                device_=outcome.device,
                solver_=outcome.solver,
            )
            if outcome.feature_names is not None:
                self.feature_names_in_ = outcome.feature_names
        self.__dict__["_chosen"] = (outcome.C, outcome.l1_ratio)
        self.Cs_ = Cs
        self.l1_ratios_ = np.asarray(l1_ratios)
        self.n_cv_passes_ = int(outcome.n_passes)
        paths = outcome.coefs
        if self.fit_intercept:
            paths = np.concatenate([paths, outcome.intercepts[..., None]], axis=-1)
        if not self.use_legacy_attributes:
            self.C_, self.l1_ratio_ = float(outcome.C), float(outcome.l1_ratio)
            self.scores_ = outcome.scores
            self.coefs_paths_ = paths
            self.n_iter_ = outcome.n_iter.max(axis=0)
            return
        self._set_legacy(outcome, paths, ratios_given)

    def _set_legacy(self, outcome: CVOutcome, paths: np.ndarray, ratios_given: bool) -> None:
        """scikit-learn's legacy attributes: dictionaries keyed by class, (F, N, L) axes."""
        classes = outcome.classes
        keys = classes[1:] if len(classes) == 2 else classes
        scores = np.swapaxes(outcome.scores, 1, 2)  # (F, N, L)
        by_row = np.transpose(paths, (3, 0, 2, 1, 4))  # (R, F, N, L, n_dof)
        n_iter = np.swapaxes(outcome.n_iter, 2, 3)  # (T, F, N, L)
        if not ratios_given:
            scores, by_row, n_iter = scores[..., 0], by_row[..., 0, :], n_iter[..., 0]
        self.__dict__.update(
            scores_={key: scores.copy() for key in keys},
            coefs_paths_={key: by_row[r] for r, key in enumerate(keys)},
            n_iter_=n_iter,
            C_=np.full(len(keys), outcome.C),
            l1_ratio_=np.full(len(keys), outcome.l1_ratio),
        )

    def _warn_paths(self, outcome: CVOutcome) -> None:
        missed = int((~outcome.converged).sum())
        if missed:
            warnings.warn(
                f"{missed} of {outcome.converged.size} fits of the cross-validation's paths "
                f"stopped before tol={self.tol} was met (max_iter={self.max_iter} per fit); "
                "their scores are of unconverged models. Increase max_iter or raise tol.",
                ConvergenceWarning,
                stacklevel=3,
            )

    # -- scoring ------------------------------------------------------------------------
    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """The ``scoring`` of this model on ``(X, y)`` (accuracy for ``scoring=None``)."""
        self._check_fitted()
        scorer = self._held_out_scorer(self.classes_, self.multi_class == "ovr")
        decision = np.asarray(to_host(self.decision_function(X)), dtype=np.float64)
        _, y_index = encode_labels(_host_labels(y), self.classes_)
        held_out = HeldOut(
            rows=np.arange(decision.shape[0]),
            X=X,
            y=y_index.astype(np.int64),
            sample_weight=None if sample_weight is None else np.asarray(sample_weight, float),
            classes=self.classes_,
            feature_names=getattr(self, "feature_names_in_", None),
        )
        coef, intercept = self._coefficients_float64()
        return float(scorer(held_out, decision, coef, intercept))

    # -- persistence ---------------------------------------------------------------------
    def _write_model_file(self, path: Any, metadata: Any = None) -> None:
        """Write the final model as a :class:`~gpulogreg.LogisticRegression` (``save``)."""
        self._final_model()._write_model_file(path, metadata)

    def _final_model(self) -> LogisticRegression:
        """The final model as a LogisticRegression: the chosen C and l1_ratio, the attributes."""
        self._check_fitted()
        C, l1_ratio = self.__dict__["_chosen"]
        model = LogisticRegression(
            C=C,
            l1_ratio=l1_ratio,
            fit_intercept=self.fit_intercept,
            solver=self.solver,
            tol=self.tol,
            max_iter=self.max_iter,
            class_weight=self.class_weight,
            multi_class=self.multi_class,
            device=self.device,
            backend=self.backend,
            dtype=self.dtype,
            dual=self.dual,
            intercept_scaling=self.intercept_scaling,
        )
        for name in (*self.FITTED_ATTRIBUTES, "_solution"):
            if name in self.__dict__:
                model.__dict__[name] = self.__dict__[name]
        if not self.use_legacy_attributes:
            model.n_iter_ = np.asarray([int(self.n_iter_.max())], dtype=np.int32)
        else:
            model.n_iter_ = np.asarray([int(np.max(self.n_iter_))], dtype=np.int32)
        return model


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _with_labels(scorer: Any, classes: np.ndarray) -> Any:
    """scikit-learn's rule for its scorers in a cross-validation: the metrics that take
    ``labels`` get all the classes (a test fold may lack one), and ``pos_label`` the last
    class for two classes."""
    function = getattr(scorer, "_score_func", None)
    if function is None:
        return scorer
    import inspect

    from sklearn.metrics import make_scorer

    parameters = inspect.signature(function).parameters
    if "labels" not in parameters:
        return scorer
    extra: dict[str, Any] = {"labels": classes}
    if len(classes) <= 2 and "pos_label" in parameters:
        extra["pos_label"] = classes[-1]
    return make_scorer(
        function,
        greater_is_better=scorer._sign == 1,
        response_method=scorer._response_method,
        **extra,
        **getattr(scorer, "_kwargs", {}),
    )


def _host_labels(y: Any) -> np.ndarray:
    """``y`` as a host array (Dask and CuPy labels fetched; DataFrame columns as values)."""
    if array_module_name(y) == "dask":
        y = y.compute()
    y = to_host(y) if array_module_name(y) == "cupy" else y
    return np.asarray(getattr(y, "to_numpy", lambda: y)())


class _EstimatorScorer:
    """A scikit-learn scorer called on a fitted LogisticRegression per grid point and fold."""

    def __init__(self, scorer: Any, multi_class: str) -> None:
        self.scorer = scorer
        self.multi_class = multi_class

    def __call__(
        self, held_out: HeldOut, decision: np.ndarray, coef: np.ndarray, intercept: np.ndarray
    ) -> float:
        model = LogisticRegression(multi_class=self.multi_class)
        model.classes_ = held_out.classes
        model.coef_, model.intercept_ = coef, intercept
        model.n_features_in_ = coef.shape[1]
        if held_out.feature_names is not None:
            model.feature_names_in_ = held_out.feature_names
        labels = held_out.classes[held_out.y]
        kwargs = {} if held_out.sample_weight is None else {"sample_weight": held_out.sample_weight}
        return float(self.scorer(model, held_out.X, labels, **kwargs))
