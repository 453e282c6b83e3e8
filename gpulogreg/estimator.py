"""``LogisticRegression``: the scikit-learn-compatible estimator.

It validates and converts the data once (:mod:`gpulogreg.data`), builds one
backend for the data's array module and ``device`` (:mod:`gpulogreg.backends`),
wraps it in the penalised objective (:mod:`gpulogreg.loss`) and runs a
registered solver (:mod:`gpulogreg.solvers`). It minimises scikit-learn's
objective, so with the same ``C`` the coefficients agree with
``sklearn.linear_model.LogisticRegression`` to solver tolerance.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from gpulogreg._compat import BaseEstimator, ClassifierMixin, ConvergenceWarning, NotFittedError
from gpulogreg._typing import Array, History, SolverResult
from gpulogreg.backends import make_backend
from gpulogreg.data import FitData, array_module_name, check_X, prepare_fit_data
from gpulogreg.loss import LogisticObjective
from gpulogreg.solvers import SOLVERS, get_solver

__all__ = ["LogisticRegression"]

#: ``solver="auto"`` uses Newton while the Hessian has at most this many rows.
#: Building it costs 2 m p^2 flops (BLAS, compute-bound) against about 2 m p
#: memory-bound flops per L-BFGS evaluation; below this size a Newton
#: iteration costs a few evaluations and Newton needs far fewer iterations,
#: also on ill-conditioned data.
AUTO_NEWTON_MAX_PARAMS = 512

_PENALTIES = ("l2", "l1", "elasticnet", None)
_MULTI_CLASS = ("auto", "multinomial", "ovr")
_DTYPES = {None: None, "float32": np.float32, "float64": np.float64}


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression (binary, multinomial, one-vs-rest) on CPU or GPU.

    Minimises, with sample weights ``s_i`` (class weights folded in)::

        sum_i s_i CE(y_i, x_i W^T + b) + (1 - r) ||W||^2 / (2 C) + r ||W||_1 / C

    (``r = l1_ratio``; the intercept ``b`` is never penalised), scikit-learn's
    objective, internally divided by ``sum_i s_i``.

    Parameters
    ----------
    penalty : {"l2", "l1", "elasticnet", None}, default="l2"
        Kept for scikit-learn compatibility: "l1" means ``l1_ratio=1``,
        "elasticnet" uses ``l1_ratio``, None means no penalty (``C=inf``).
    C : float, default=1.0
        Inverse regularisation strength; ``numpy.inf`` for none.
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1] (used with ``penalty="elasticnet"``).
    fit_intercept : bool, default=True
    solver : {"auto", "newton", "lbfgs", "gd"}, default="auto"
        "auto": ``gd`` (proximal, FISTA) with an L1 term, else Newton for up
        to :data:`AUTO_NEWTON_MAX_PARAMS` parameters, else L-BFGS.
    tol : float, default=1e-6
        Stop when the max-norm of the gradient of the weight-normalised
        objective (with L1: of its minimum-norm subgradient) is at most ``tol``.
    max_iter : int, default=1000
    class_weight : None, "balanced" or dict, default=None
        "balanced" weighs class ``k`` by ``n_samples / (n_classes * count_k)``.
    multi_class : {"auto", "multinomial", "ovr"}, default="auto"
        More than two classes: softmax loss ("auto", "multinomial") or one
        binary model per class ("ovr").
    warm_start : bool, default=False
        Start from the previous solution when refitting the same classes.
    verbose : int, default=0
        > 0 shows a progress bar on stderr.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the stochastic solvers; the full-batch solvers are deterministic.
    device : {"auto", "cpu", "gpu"}, default="auto"
        Where to train. CuPy input trains on its GPU; "gpu" moves NumPy input
        there once (an error when no GPU is usable); "auto" uses a GPU only if
        CuPy imports and a device is present.
    backend : {"auto", "numba", "numpy", "cupy"}, default="auto"
        Compute backend; "numpy" is the unfused baseline, "auto" picks
        "cupy" on the GPU and "numba" on the CPU.
    dtype : {None, "float32", "float64"}, default=None
        Working dtype of ``X``; None keeps float32/float64 input as it is.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features), float64
    intercept_ : ndarray of shape (1,) or (n_classes,), float64
    classes_ : ndarray of shape (n_classes,)
    n_iter_ : ndarray of shape (1,) or (n_classes,) for "ovr", int
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when fitted on a DataFrame
    history_ : History or list of History ("ovr")
        Per iteration: objective, gradient max-norm, step, elapsed seconds.
    objective_ : float
        Final value of the weight-normalised objective (sum over "ovr" models).
    converged_ : bool
    backend_ : str
        Backend that ran the fit.
    device_ : {"cpu", "gpu"}
    """

    def __init__(
        self,
        penalty: str | None = "l2",
        *,
        C: float = 1.0,
        l1_ratio: float = 0.0,
        fit_intercept: bool = True,
        solver: str = "auto",
        tol: float = 1e-6,
        max_iter: int = 1000,
        class_weight: Any = None,
        multi_class: str = "auto",
        warm_start: bool = False,
        verbose: int = 0,
        random_state: Any = None,
        device: str = "auto",
        backend: str = "auto",
        dtype: str | None = None,
    ) -> None:
        self.penalty = penalty
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.multi_class = multi_class
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state
        self.device = device
        self.backend = backend
        self.dtype = dtype

    # -- configuration --------------------------------------------------------
    def _validate_params(self) -> tuple[float, float]:
        """Check hyper-parameters; return the effective ``(C, l1_ratio)``."""
        if self.penalty not in _PENALTIES:
            raise ValueError(f"penalty must be one of {_PENALTIES}, got {self.penalty!r}")
        C = self.C
        if not isinstance(C, numbers.Real) or isinstance(C, bool) or not C > 0:
            raise ValueError(f"C must be a positive number (numpy.inf for no penalty), got {C!r}")
        l1_ratio = self.l1_ratio
        if not isinstance(l1_ratio, numbers.Real) or not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
        if self.penalty is None:
            C, l1_ratio = math.inf, 0.0
        elif self.penalty == "l1":
            l1_ratio = 1.0
        elif self.penalty == "l2" and l1_ratio != 0.0:
            raise ValueError("l1_ratio > 0 needs penalty='elasticnet' (or 'l1')")
        if self.solver != "auto" and self.solver not in SOLVERS:
            raise ValueError(
                f"solver must be 'auto' or one of {sorted(SOLVERS)}, got {self.solver!r}"
            )
        if l1_ratio > 0 and self.solver in ("newton", "lbfgs"):
            raise ValueError(f"solver={self.solver!r} supports only L2; use 'gd' for L1")
        if not isinstance(self.tol, numbers.Real) or not self.tol > 0:
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")
        if (
            not isinstance(self.max_iter, numbers.Integral)
            or isinstance(self.max_iter, bool)
            or self.max_iter < 1
        ):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.multi_class not in _MULTI_CLASS:
            raise ValueError(f"multi_class must be one of {_MULTI_CLASS}, got {self.multi_class!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")
        return float(C), float(l1_ratio)

    def _solver_name(self, n_params: int, l1_ratio: float) -> str:
        if self.solver != "auto":
            return str(self.solver)
        if l1_ratio > 0:
            return "gd"
        return "newton" if n_params <= AUTO_NEWTON_MAX_PARAMS else "lbfgs"

    # -- fitting --------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> LogisticRegression:
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NumPy or CuPy array, pandas/polars DataFrame. float32 and float64
            are used as given (no copy when C-contiguous).
        y : array-like of shape (n_samples,)
            Labels: any two or more distinct values.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights.

        Returns
        -------
        self
        """
        C, l1_ratio = self._validate_params()
        _check_y_present(y)
        data = prepare_fit_data(
            X,
            y,
            sample_weight,
            class_weight=self.class_weight,
            dtype=_DTYPES[self.dtype],
        )
        self._fit_data(data, C, l1_ratio)
        return self

    def _fit_data(self, data: FitData, C: float, l1_ratio: float) -> None:
        n_classes = len(data.classes)
        previous = self._warm_start_params(data)
        self.classes_ = data.classes
        self.n_features_in_ = int(data.X.shape[1])
        if data.feature_names is not None:
            self.feature_names_in_ = data.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        ovr = n_classes > 2 and self.multi_class == "ovr"
        if ovr:
            tasks = [(data.y == k).astype("int32") for k in range(n_classes)]
            n_model_classes = 2
        else:
            tasks = [data.y]
            n_model_classes = n_classes
        results: list[SolverResult] = []
        for index, y_task in enumerate(tasks):
            backend = make_backend(
                data.X,
                y_task,
                data.sample_weight,
                n_classes=n_model_classes,
                fit_intercept=self.fit_intercept,
                backend=self.backend,
                device=self.device,
            )
            objective = LogisticObjective(
                backend, C=C, l1_ratio=l1_ratio, weight_sum=data.weight_sum
            )
            xp = backend.xp
            if previous is not None:
                params0 = xp.asarray(previous[index], dtype=xp.float64)
            else:
                params0 = xp.zeros(objective.n_params, dtype=xp.float64)
            solver_name = self._solver_name(objective.n_params, l1_ratio)
            solve = get_solver(solver_name)
            result = solve(
                objective,
                params0,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                verbose=bool(self.verbose),
            )
            results.append(result)
            self.backend_ = backend.name
            self.device_ = "gpu" if array_module_name(params0) == "cupy" else "cpu"
            self.solver_ = solver_name
        self._set_fitted(results, n_model_classes)
        if not all(r.converged for r in results):
            messages = "; ".join(r.message for r in results if not r.converged)
            warnings.warn(
                f"{self.solver_} did not converge to tol={self.tol} in max_iter="
                f"{self.max_iter} iterations ({messages}); increase max_iter or scale the data",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _warm_start_params(self, data: FitData) -> list[np.ndarray] | None:
        """Previous solution laid out as solver params, when warm starting applies."""
        if not self.warm_start or not hasattr(self, "coef_"):
            return None
        if not np.array_equal(self.classes_, data.classes) or (
            self.coef_.shape[1] != data.X.shape[1]
        ):
            return None
        W = self.coef_
        if self.fit_intercept:
            W = np.concatenate([W, self.intercept_[:, None]], axis=1)
        if len(data.classes) > 2 and self.multi_class == "ovr":
            return [row for row in W]
        return [W.ravel()]

    def _set_fitted(self, results: list[SolverResult], n_model_classes: int) -> None:
        n_cols = self.n_features_in_ + int(self.fit_intercept)
        rows = []
        for result in results:
            params = _to_host(result.params)
            rows.append(params.reshape(-1, n_cols))
        W = np.concatenate(rows, axis=0)
        self.coef_ = np.ascontiguousarray(W[:, : self.n_features_in_])
        self.intercept_ = (
            np.ascontiguousarray(W[:, -1]) if self.fit_intercept else np.zeros(W.shape[0])
        )
        self.n_iter_ = np.asarray([r.n_iter for r in results], dtype=np.int32)
        self.converged_ = all(r.converged for r in results)
        histories: list[History] = [r.history for r in results]
        self.history_: History | list[History] = histories[0] if len(results) == 1 else histories
        self.objective_ = float(
            sum(h.objective[-1] if h.objective else math.nan for h in histories)
        )
        self._n_model_classes = n_model_classes

    # -- prediction -----------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call 'fit' first."
            )

    def decision_function(self, X: Any) -> Array:
        """Decision values ``X @ coef_.T + intercept_``.

        Returns
        -------
        array of shape (n_samples,) for two classes, else (n_samples, n_classes)
            float64, in the namespace of ``X`` (CuPy in, CuPy out).
        """
        self._check_fitted()
        X, _ = check_X(X, n_features=self.n_features_in_)
        xp = _namespace(X)
        coef = xp.asarray(self.coef_, dtype=X.dtype)
        # BLAS in X's dtype (X is never upcast), result widened to float64.
        scores = (X @ coef.T).astype(xp.float64) + xp.asarray(self.intercept_)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        scores = self.decision_function(X)
        xp = _namespace(scores)
        if scores.ndim == 1:
            p = _sigmoid(scores, xp)
            return xp.stack([1.0 - p, p], axis=1)
        if self.multi_class == "ovr":
            P = _sigmoid(scores, xp)
            return P / P.sum(axis=1, keepdims=True)
        shifted = scores - scores.max(axis=1, keepdims=True)
        E = xp.exp(shifted)
        return E / E.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> Array:
        """Logarithm of :meth:`predict_proba`, computed stably."""
        scores = self.decision_function(X)
        xp = _namespace(scores)
        if scores.ndim == 1:
            # log sigmoid(z) = -log1p(exp(-z)), evaluated without overflow.
            log_p1 = -(xp.maximum(-scores, 0.0) + xp.log1p(xp.exp(-xp.abs(scores))))
            log_p0 = log_p1 - scores
            return xp.stack([log_p0, log_p1], axis=1)
        if self.multi_class == "ovr":
            return xp.log(self.predict_proba(X))
        shifted = scores - scores.max(axis=1, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> Array:
        """Predicted class labels, shape (n_samples,)."""
        scores = self.decision_function(X)
        xp = _namespace(scores)
        index = (scores > 0).astype(xp.int64) if scores.ndim == 1 else scores.argmax(axis=1)
        classes = self.classes_
        if xp is np:
            return classes[index]
        if classes.dtype.kind in "biuf":
            return xp.asarray(classes)[index]
        return classes[index.get()]

    # -- persistence -----------------------------------------------------------
    def save(self, path: Any) -> None:
        """Save the fitted model to exactly ``path``, without pickle (see persistence)."""
        from gpulogreg.persistence import save_model

        self._check_fitted()
        save_model(self, path)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _check_y_present(y: Any) -> None:
    if y is None:
        raise ValueError(
            "requires y to be passed, but the target y is None; fit(X, y) needs the class labels"
        )


def _namespace(a: Any) -> Any:
    if array_module_name(a) == "cupy":
        import cupy

        return cupy
    return np


def _to_host(a: Any) -> np.ndarray:
    return np.asarray(a.get() if array_module_name(a) == "cupy" else a, dtype=np.float64)


def _sigmoid(z: Array, xp: Any) -> Array:
    """Sigmoid without overflow for any finite ``z``."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0, e) / (1.0 + e)
