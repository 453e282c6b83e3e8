"""scikit-learn's ``LogisticRegression``, its solves served by gpulogreg.

The drop-in keeps everything of scikit-learn's estimator but the numerical
solve: its signature, parameter validation, deprecation warnings, data
validation, label handling, fitted-attribute layout and prediction are
scikit-learn's own code, so they agree with it by construction. Its ``fit``
chooses a route: when gpulogreg serves it (:func:`unserved_reason` is None),
the solve that scikit-learn's ``fit`` delegates to
``sklearn.linear_model._logistic._logistic_regression_path`` runs
:func:`served_path` instead, which fits :class:`gpulogreg.LogisticRegression`
on the validated data; otherwise scikit-learn's solver runs, and a log record
on the ``gpulogreg.accel`` logger says why. CuPy (GPU) and Dask data skip
scikit-learn's ``fit`` altogether: gpulogreg's estimator fits them where they
are, and the predictions of such data stay there. :func:`fit_counts` tells
how many fits went each way.

The route travels in a context variable set by the drop-in's ``fit``, so
the swapped function serves nothing else: ``LogisticRegressionCV``, other
estimators and scikit-learn's own class keep scikit-learn's solvers, and
concurrent fits in other threads are not affected.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression as _SklearnLogisticRegression
from sklearn.linear_model import _logistic
from sklearn.utils import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from gpulogreg._array import array_module_name, array_namespace
from gpulogreg._compat import CallbackSupportMixin, callback_management_context
from gpulogreg._predict import decision_values, labels, log_probabilities, probabilities
from gpulogreg._sklearn_callbacks import FitCallbacks
from gpulogreg._sklearn_params import SKLEARN_SOLVERS
from gpulogreg.data import check_X
from gpulogreg.estimator import LogisticRegression as GpulogregLogisticRegression

__all__ = [
    "MIN_SKLEARN",
    "SERVED_SOLVERS",
    "LogisticRegression",
    "fit_counts",
    "install_router",
    "reset_fit_counts",
    "served_path",
    "unserved_reason",
]

logger = logging.getLogger("gpulogreg.accel")

#: scikit-learn's solvers whose fits gpulogreg serves (mapped as
#: :data:`gpulogreg._sklearn_params.SKLEARN_SOLVERS` says). ``tol`` is
#: gpulogreg's: the max-norm of the weight-normalised objective's (sub)gradient,
#: which is what scikit-learn's lbfgs and newton-cg test too; sag/saga's bounds
#: the coefficients' relative change over an epoch, which has no counterpart.
#: liblinear runs scikit-learn's own (its native solver already is liblinear).
SERVED_SOLVERS = frozenset(SKLEARN_SOLVERS) - {"liblinear"}

#: True inside a drop-in ``fit`` that gpulogreg serves (per thread and task).
_route: contextvars.ContextVar[bool] = contextvars.ContextVar("accel_route", default=False)
_counts: Counter[str] = Counter()
_counts_lock = threading.Lock()


def fit_counts() -> dict[str, int]:
    """Fits of the drop-in so far: ``{"gpulogreg": served, "scikit-learn": fallen back}``."""
    with _counts_lock:
        return {"gpulogreg": _counts["gpulogreg"], "scikit-learn": _counts["scikit-learn"]}


def reset_fit_counts() -> None:
    """Set both :func:`fit_counts` to zero."""
    with _counts_lock:
        _counts.clear()


def unserved_reason(estimator: _SklearnLogisticRegression) -> str | None:
    """Why scikit-learn's own solver must run a fit of NumPy or SciPy data (None: ours does).

    Parameters
    ----------
    estimator : LogisticRegression
        The drop-in, with its parameters set.
    """
    if estimator.solver not in SERVED_SOLVERS:
        return f"solver={estimator.solver!r} runs scikit-learn's bundled liblinear"
    return None


def _beyond_sklearn(X: Any) -> bool:
    """Data scikit-learn's ``fit`` would not take as gpulogreg does: CuPy (GPU) and Dask arrays.

    scikit-learn's array-API route keeps CuPy data on the GPU only with
    ``array_api_dispatch`` and its own solver; a Dask array it loads into memory.
    """
    return array_module_name(X) != "numpy"


@contextmanager
def _routed(served: bool) -> Iterator[None]:
    token = _route.set(served)
    try:
        yield
    finally:
        _route.reset(token)


class LogisticRegression(_SklearnLogisticRegression):
    """scikit-learn's ``LogisticRegression``, its solves served by gpulogreg.

    The signature, validation, warnings, attributes and predictions are
    scikit-learn's (this class derives from it); the solve runs on gpulogreg
    for the solvers of :data:`SERVED_SOLVERS` (scikit-learn's callbacks
    included) and on scikit-learn's own solver otherwise (logged on
    ``gpulogreg.accel``).
    ``gpulogreg.accel.patch_sklearn()`` puts it in place of
    ``sklearn.linear_model.LogisticRegression``.
    """

    def set_callbacks(self, *callbacks: Any) -> LogisticRegression:
        """Set scikit-learn callbacks; gpulogreg's solvers run them for every served solver.

        scikit-learn warns (and ignores them) for its solvers other than lbfgs;
        here that is left to liblinear, which runs on scikit-learn for NumPy
        and SciPy data (on CuPy or Dask data gpulogreg serves it, callbacks
        included).

        Returns
        -------
        self
        """
        if not hasattr(CallbackSupportMixin, "set_callbacks"):
            raise AttributeError(f"scikit-learn {sklearn.__version__} has no callbacks (1.9+)")
        if self.solver in SERVED_SOLVERS:
            return cast(LogisticRegression, CallbackSupportMixin.set_callbacks(self, *callbacks))
        return cast(LogisticRegression, super().set_callbacks(*callbacks))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> LogisticRegression:
        """Fit as scikit-learn's ``fit`` does, the solve served by gpulogreg when it can be.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        install_router()
        if _beyond_sklearn(X):
            with _counts_lock:
                _counts["gpulogreg"] += 1
            return self._fit_beyond_sklearn(X, y, sample_weight)
        reason = unserved_reason(self)
        with _counts_lock:
            _counts["scikit-learn" if reason else "gpulogreg"] += 1
        if reason:
            logger.info("LogisticRegression.fit runs on scikit-learn: %s", reason)
        with _routed(reason is None):
            super().fit(X, y, sample_weight=sample_weight)
        return self

    def _fit_beyond_sklearn(self, X: Any, y: Any, sample_weight: Any) -> LogisticRegression:
        """CuPy or Dask data: all of the fit on gpulogreg's estimator, on the data's device.

        The parameters are checked by scikit-learn's constraints, and
        gpulogreg's estimator takes them all with scikit-learn's semantics
        (warnings included). The fitted attributes come back as host NumPy
        arrays, as gpulogreg's own; :meth:`decision_function` and the
        predictions keep CuPy and Dask data where they are.
        """
        self._validate_params()
        model = GpulogregLogisticRegression(**self.get_params(deep=False))
        if self.warm_start and hasattr(self, "coef_"):
            model.classes_, model.n_features_in_ = self.classes_, self.n_features_in_
            model.coef_, model.intercept_ = np.asarray(self.coef_), np.asarray(self.intercept_)
        spec = model._spec(warn=True, stacklevel=4)  # the warnings point at the user's call
        self.__dict__.pop("feature_names_in_", None)  # CuPy and Dask data carry no names
        with callback_management_context(self):
            callbacks = FitCallbacks.for_estimator(self, X, y, sample_weight)
            outcome = model._fit(X, y, sample_weight, spec, callbacks)
            for name in ("classes_", "coef_", "intercept_", "n_iter_", "n_features_in_"):
                setattr(self, name, getattr(model, name))
            if callbacks is not None:
                callbacks.end()
        model._warn_if_not_converged(outcome)
        return self

    def decision_function(self, X: Any) -> Any:
        """scikit-learn's, and for CuPy or Dask data gpulogreg's (the result stays there).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples,) for two classes, else (n_samples, n_classes)
        """
        if not _beyond_sklearn(X):
            return super().decision_function(X)
        check_is_fitted(self)
        owner = type(self).__name__
        X, _ = check_X(
            X, n_features=self.n_features_in_, owner=owner, lazy=True, accept_sparse=True
        )
        return decision_values(X, self.coef_, self.intercept_)

    def predict_proba(self, X: Any) -> Any:
        """scikit-learn's, and for CuPy or Dask data the softmax (sigmoid) of theirs."""
        if not _beyond_sklearn(X):
            return super().predict_proba(X)
        return probabilities(self.decision_function(X), ovr=False)

    def predict_log_proba(self, X: Any) -> Any:
        """scikit-learn's, and for CuPy or Dask data the stable log of theirs."""
        if not _beyond_sklearn(X):
            return super().predict_log_proba(X)
        return log_probabilities(self.decision_function(X), ovr=False)

    def predict(self, X: Any) -> Any:
        """scikit-learn's, and for CuPy or Dask data the label of the largest score."""
        if not _beyond_sklearn(X):
            return super().predict(X)
        return labels(self.decision_function(X), self.classes_)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean (weighted) accuracy; for CuPy or Dask data computed where they are."""
        if not _beyond_sklearn(X):
            return float(super().score(X, y, sample_weight=sample_weight))
        predicted = self.predict(X)
        xp = array_namespace(predicted)
        hits = predicted == (xp.asarray(y) if xp is not np else y)
        if sample_weight is None:
            value = hits.mean()
        else:
            weights = xp.asarray(sample_weight) if xp is not np else sample_weight
            value = (hits * weights).sum() / weights.sum()
        return float(value.compute() if hasattr(value, "compute") else value)


#: The oldest scikit-learn whose ``LogisticRegression`` the drop-in follows
#: (1.8: ``penalty`` deprecated, ``l1_ratio`` and ``C`` decide; the path
#: function takes the fitting estimator).
MIN_SKLEARN = (1, 8)
#: Keywords of ``_logistic_regression_path`` that :func:`served_path` relies on.
_PATH_KEYWORDS = frozenset(
    [
        "classes",
        "Cs",
        "fit_intercept",
        "max_iter",
        "tol",
        "verbose",
        "solver",
        "coef",
        "class_weight",
        "penalty",
        "sample_weight",
        "l1_ratio",
        "estimator",
    ]
)
_install_lock = threading.Lock()


def _sklearn_version() -> tuple[int, int]:
    major, minor = sklearn.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def install_router() -> None:
    """Route scikit-learn's path function through :func:`routed_path` (once; idempotent).

    The router is inert outside a served drop-in ``fit``, so it stays when
    :func:`~gpulogreg.accel.unpatch_sklearn` puts scikit-learn's class back.

    Raises
    ------
    RuntimeError
        When the installed scikit-learn is older than :data:`MIN_SKLEARN` or
        its path function is not the one the drop-in knows (no silent mismatch).
    """
    with _install_lock:
        current = _logistic._logistic_regression_path
        if getattr(current, "__wrapped__", None) is not None:
            return
        if _sklearn_version() < MIN_SKLEARN:
            raise RuntimeError(
                f"gpulogreg.accel needs scikit-learn >= {'.'.join(map(str, MIN_SKLEARN))}, "
                f"found {sklearn.__version__}"
            )
        missing = _PATH_KEYWORDS - set(inspect.signature(current).parameters)
        if missing:
            raise RuntimeError(
                f"scikit-learn {sklearn.__version__} changed _logistic_regression_path "
                f"(no {sorted(missing)}): gpulogreg.accel does not support this version"
            )
        _logistic._logistic_regression_path = routed_path(current)


def routed_path(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` (scikit-learn's path function) with the drop-in's served fits taken over."""

    def path(*args: Any, **kwargs: Any) -> Any:
        if _route.get() and isinstance(kwargs.get("estimator"), LogisticRegression):
            with _routed(False):  # nested fits (none today) get scikit-learn's own
                return served_path(*args, **kwargs)
        return original(*args, **kwargs)

    path.__wrapped__ = original  # type: ignore[attr-defined]
    path.__doc__ = original.__doc__
    return path


def served_path(
    X: Any,
    y: Any,
    *,
    classes: np.ndarray,
    Cs: Any,
    fit_intercept: bool,
    max_iter: int,
    tol: float,
    verbose: int,
    solver: str,
    coef: np.ndarray | None,
    class_weight: Any,
    penalty: str,
    sample_weight: Any,
    l1_ratio: float | None,
    callback_ctx: Any = None,
    estimator: Any = None,
    **_: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ``_logistic_regression_path`` contract, solved by gpulogreg.

    ``X`` and ``y`` arrive validated by scikit-learn's ``fit`` (float32 or
    float64, C-ordered or CSR). The arguments left in ``**_`` concern
    scikit-learn's solvers only (``random_state`` and ``max_squared_sum`` of
    sag/saga, ``n_threads``, ``dual`` and ``intercept_scaling`` of liblinear).
    ``callback_ctx`` is the fit's scikit-learn callback task: the solver's
    iterations become its subtasks, the hooks receiving ``estimator`` (the
    drop-in), as scikit-learn's lbfgs does.

    Returns
    -------
    coefs : ndarray of shape (n_Cs, n_features + fit_intercept), or (n_Cs, n_classes, ...)
        In ``X``'s dtype, the intercepts last (the binary model without the class axis).
    Cs : ndarray of shape (n_Cs,)
    n_iter : ndarray of shape (n_Cs,), int32
    """
    Cs = np.asarray(Cs, dtype=np.float64)
    n_features = X.shape[1]
    binary = len(classes) == 2
    n_models = 1 if binary else len(classes)
    weights = _row_weights(y, classes, sample_weight, class_weight)
    start = _start(coef, n_models, n_features, fit_intercept)
    ratio = {"l1": 1.0, "l2": 0.0}.get(penalty, l1_ratio or 0.0)
    coefs, n_iters = [], np.zeros(Cs.shape[0], dtype=np.int32)
    for k, C in enumerate(Cs):
        model = GpulogregLogisticRegression(
            C=float(C),
            l1_ratio=0.0 if np.isinf(C) else float(ratio),
            fit_intercept=fit_intercept,
            solver=solver,
            tol=tol,
            max_iter=max_iter,
            verbose=bool(verbose),
            warm_start=start is not None,
        )
        if start is not None:
            model.classes_ = classes
            model.coef_, model.intercept_ = start[:, :n_features], start[:, n_features]
            model.n_features_in_ = n_features
        callbacks = FitCallbacks.within(callback_ctx, estimator, X, y, sample_weight)
        outcome = model._fit(X, y, weights, model._spec(warn=True), callbacks)
        model._warn_if_not_converged(outcome)  # in scikit-learn's words
        coef64, intercept64 = model._coefficients_float64()
        start = np.concatenate([coef64, intercept64[:, None]], axis=1)
        full = start if fit_intercept else start[:, :n_features]
        coefs.append((full[0] if binary else full).astype(X.dtype))
        n_iters[k] = int(model.n_iter_.max())
    return np.stack(coefs), Cs, n_iters


def _row_weights(
    y: np.ndarray, classes: np.ndarray, sample_weight: Any, class_weight: Any
) -> np.ndarray | None:
    """Sample weights times class weights, as scikit-learn folds them (None: unit weights)."""
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if class_weight is None:
        return weights
    per_class = compute_class_weight(
        class_weight, classes=classes, y=y, sample_weight=sample_weight
    )
    per_row = np.asarray(per_class, dtype=np.float64)[np.searchsorted(classes, y)]
    return per_row if weights is None else weights * per_row


def _start(
    coef: np.ndarray | None, n_models: int, n_features: int, fit_intercept: bool
) -> np.ndarray | None:
    """A warm start in gpulogreg's terms: ``(n_models, n_features + 1)``, intercepts last."""
    if coef is None:
        return None
    width = n_features + int(fit_intercept)
    coef = np.asarray(coef, dtype=np.float64)
    accepted = [(width,), (1, width)] if n_models == 1 else [(n_models, width)]
    if coef.shape not in accepted:
        expected = f"({width},) or (1, {width})" if n_models == 1 else str(accepted[0])
        raise ValueError(f"Initialization coef is of shape {coef.shape}, expected shape {expected}")
    flat = coef.reshape(n_models, width)
    if fit_intercept:
        return flat.copy()
    return np.concatenate([flat, np.zeros((n_models, 1))], axis=1)
