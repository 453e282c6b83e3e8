"""``LogisticRegression``: the scikit-learn-compatible estimator.

It validates and converts the data once (:mod:`gpulogreg.data`), builds one
backend for the data's array module and ``device`` (:mod:`gpulogreg.backends`),
wraps it in the penalised objective (:mod:`gpulogreg.loss`) and runs a
registered solver (:mod:`gpulogreg.solvers`). It minimises scikit-learn's
objective, so with the same ``C`` the coefficients agree with
``sklearn.linear_model.LogisticRegression`` to solver tolerance.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from typing import Any, ClassVar

import numpy as np

from gpulogreg import _model_file
from gpulogreg._array import is_sparse
from gpulogreg._compat import (
    BaseEstimator,
    CallbackSupportMixin,
    ClassifierMixin,
    ConvergenceWarning,
    NotFittedError,
    callback_management_context,
)
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg._fit import (
    FitOutcome,
    FitSpec,
    PartialFitState,
    PreviousFit,
    run_fit,
    run_partial_fit,
)
from gpulogreg._inference import run_inference
from gpulogreg._predict import decision_values, labels, log_probabilities, probabilities
from gpulogreg._sklearn_callbacks import FitCallbacks
from gpulogreg._sklearn_params import (
    PENALTY_DEFAULT,
    Regularisation,
    not_converged_message,
    resolve_regularisation,
)
from gpulogreg._typing import Array
from gpulogreg.data import check_feature_names, check_X
from gpulogreg.inference import InferenceResult
from gpulogreg.solvers import SOLVERS, solver_entry
from gpulogreg.solvers.stochastic.config import MinibatchConfig

__all__ = ["LogisticRegression"]

_MULTI_CLASS = ("auto", "multinomial", "ovr")
_DTYPES = {None: None, "float32": np.float32, "float64": np.float64}


class LogisticRegression(CallbackSupportMixin, ClassifierMixin, BaseEstimator):
    """Logistic regression (binary, multinomial, one-vs-rest) on CPU or GPU.

    Minimises, with sample weights ``s_i`` (class weights folded in)::

        sum_i s_i CE(y_i, x_i W^T + b) + (1 - r) ||W||^2 / (2 C) + r ||W||_1 / C

    (``r = l1_ratio``; the intercept ``b`` is not penalised, except by
    ``solver="liblinear"``: see ``intercept_scaling``), scikit-learn's
    objective, internally divided by ``sum_i s_i``.

    Parameters
    ----------
    penalty : {"l2", "l1", "elasticnet", None}, deprecated
        Deprecated as in scikit-learn 1.8 (a ``FutureWarning``): leave it
        unset, and ``l1_ratio`` and ``C`` decide. Given, it acts as in
        scikit-learn: "l1" means ``l1_ratio=1``, "elasticnet" uses
        ``l1_ratio``, None means no penalty (``C=inf``), with scikit-learn's
        warnings for inconsistent values.
    C : float, default=1.0
        Inverse regularisation strength; ``numpy.inf`` for none.
    l1_ratio : float, default=0.0
        The L1 share of the penalty in [0, 1]: 0 is L2 (ridge), 1 the lasso,
        in between the elastic net.
    dual : bool, default=False
        scikit-learn's: only ``solver="liblinear"`` with an L2 penalty takes
        ``True`` (its dual has the same solution, which gpulogreg finds in the
        primal); elsewhere ``True`` is an error, as in scikit-learn.
    fit_intercept : bool, default=True
    intercept_scaling : float, default=1.0
        ``solver="liblinear"`` only, as in scikit-learn: the intercept is
        penalised as the coefficient of a constant feature of this value
        (liblinear's objective). Every other solver leaves the intercept
        unpenalised and ignores it.
    solver : str, default="auto"
        gpulogreg's {"auto", "newton", "newton-cg", "lbfgs", "gd", "minibatch"}
        or scikit-learn's names: "newton-cholesky" runs "newton"; "sag",
        "saga" and "liblinear" run "auto" ("liblinear" with its penalised
        intercept, binary or ``multi_class="ovr"``), and the L2-only ones
        ("lbfgs", "newton-cg", "newton-cholesky", "sag") refuse an L1 term
        as scikit-learn does.
        "auto": ``gd`` (proximal, FISTA) with an L1 term; ``newton-cg`` on
        wide sparse data (CSR with more than 1000 parameters); else L-BFGS
        (which turns to a Hessian preconditioner on ill-conditioned problems).
        See :func:`gpulogreg.solvers.auto_solver`. "newton" builds the Hessian
        up to 1000 parameters and runs "newton-cg" above; "newton-cg" is
        truncated Newton with diagonally preconditioned conjugate gradients
        at any size (it never forms the Hessian). "minibatch": shuffled
        mini-batch epochs (see Notes).
    tol : float, default=1e-6
        Stop when the max-norm of the gradient of the weight-normalised
        objective (with L1: of its minimum-norm subgradient) is at most ``tol``.
    max_iter : int, default=1000
        0 returns the starting point (zero, or the warm start) with a
        ``ConvergenceWarning``, as scikit-learn does.
    class_weight : None, "balanced" or dict, default=None
        "balanced" weighs class ``k`` by ``n_samples / (n_classes * count_k)``.
    multi_class : {"auto", "multinomial", "ovr"}, default="auto"
        More than two classes: softmax loss ("auto", "multinomial") or one
        binary model per class ("ovr").
    warm_start : bool, default=False
        Start from the previous solution when refitting the same classes.
    verbose : int, default=0
        > 0 shows a progress bar on stderr: tqdm's where tqdm is installed
        (the ``progress`` extra; a widget in notebooks), else a plain status
        line. The bar of newton, lbfgs and gd measures the optimality's way
        from its starting value down to ``tol`` on a log scale, minibatch's the
        epochs out of ``max_iter``; its label turns to "converged" (and the bar
        full) or "stopped" at the end.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the stochastic solvers; the full-batch solvers are deterministic.
    n_jobs : None
        scikit-learn's: no effect (a ``FutureWarning`` when set); the kernels
        use every Numba thread, with results independent of their number.
    device : {"auto", "cpu", "gpu"}, default="auto"
        Where to train. CuPy input trains on its GPU; "gpu" moves NumPy input
        there once (an error when no GPU is usable); "auto" uses a GPU only if
        CuPy imports and a device is present.
    backend : {"auto", "numba", "numpy", "cupy", "dask"}, default="auto"
        Compute backend; "numpy" is the unfused baseline, "auto" picks
        "cupy" on the GPU and "numba" on the CPU, and "dask" for Dask arrays
        (each block then runs "numba" or "cupy" on its worker).
    dtype : {None, "float32", "float64"}, default=None
        Working dtype of ``X``; None keeps float32/float64 input as it is.
    batch_size : int, default=256
        ``solver="minibatch"`` and :meth:`partial_fit`: rows per mini-batch.
    optimizer : {"adam", "sgd"}, default="adam"
        Mini-batch update rule: Adam, or SGD with heavy-ball ``momentum``.
    learning_rate : {"constant", "invscaling", "cosine"}, default="constant"
        Mini-batch schedule at fractional epoch ``e``: ``eta0``,
        ``eta0 / sqrt(1 + e)``, or ``eta0 (1 + cos(pi e / max_iter)) / 2``.
    eta0 : float, default=0.001
        Initial mini-batch learning rate (0.001 suits Adam; SGD usually wants more).
    momentum : float, default=0.9
        SGD momentum in [0, 1).
    early_stopping : bool, default=False
        Mini-batch: hold out ``validation_fraction`` of the rows (stratified;
        whole chunks for a :class:`~gpulogreg.Dataset`) and stop when their log
        loss has not improved by ``tol`` for ``n_iter_no_change`` epochs,
        restoring the best parameters.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
        Mini-batch: epochs without an improvement of more than ``tol`` (of the
        validation loss, or else of the epoch's objective estimate) before stopping.
    checkpoint_path : str or None, default=None
        Mini-batch: save the training state there (the pickle-free container
        of model files, written atomically) every ``checkpoint_every`` epochs and at
        the end; a later ``fit`` with the same path resumes from it and ends
        where an uninterrupted run with the same seed ends. A checkpoint
        written for other data (a digest of sampled rows, labels and weights)
        or other settings is refused with a ``CheckpointError``.
    checkpoint_every : int, default=1
    callback : callable or None, default=None
        ``callback(record)`` after every iteration (newton, lbfgs, gd) or
        epoch (minibatch) of ``fit`` (not ``partial_fit``), while it runs;
        ``record`` is a dict of
        ``solver``, ``task`` (the class of a one-vs-rest model, else 0) and the
        history's entry (``iteration``, ``objective``, ``optimality``,
        ``step``, ``seconds``, ``passes`` for a Dataset, ``validation_loss``
        with early stopping; see ``History.entry``): the records of the
        command line's ``--log-json``. Returning ``True`` stops the solver
        after that iteration (the fit is then not converged). A model file
        does not keep it.

    Notes
    -----
    ``solver="minibatch"`` runs epochs of shuffled mini-batches; there
    ``max_iter`` counts epochs and ``tol`` is the improvement that resets
    the ``n_iter_no_change`` counter. Its per-batch objective is the batch's
    weighted mean loss plus the same penalty as the full objective, so it
    approaches the same minimiser. ``fit`` also accepts a
    :class:`gpulogreg.Dataset` (data on disk or in chunks) in place of
    ``(X, y)``: newton, lbfgs and gd then accumulate the exact objective chunk
    by chunk, and minibatch streams batches, with bounded memory.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features), float64
    intercept_ : ndarray of shape (1,) or (n_classes,), float64
    classes_ : ndarray of shape (n_classes,)
    n_iter_ : ndarray of shape (1,) or (n_classes,) for "ovr", int
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when fitted on a DataFrame
    history_ : History or list of History ("ovr")
        Per iteration: objective, optimality (the quantity compared with
        ``tol``), step, elapsed seconds, and full passes over the data for a
        Dataset. ``history_.plot()`` draws the convergence (needs matplotlib,
        the ``plot`` extra).
    objective_ : float
        Final value of the weight-normalised objective (sum over "ovr" models).
    converged_ : bool
    backend_ : str
        Backend that ran the fit.
    device_ : {"cpu", "gpu"}
    solver_ : str
        The solver that ran (``solver="auto"`` resolved from the data).
    n_passes_ : int, only after a fit on a Dataset
        Full passes over the data the fit made, all one-vs-rest models together
        (for minibatch: the final pass that computes ``objective_``).
    """

    #: Set by ``fit`` (an array; a SciPy CSR matrix after :meth:`sparsify`).
    coef_: Any

    #: The fitted attributes a saved model keeps (those a model has; the
    #: ``partial_fit`` trainers' state is saved beside them, see ``save``).
    FITTED_ATTRIBUTES: ClassVar[tuple[str, ...]] = (
        "coef_",
        "intercept_",
        "classes_",
        "n_iter_",
        "n_features_in_",
        "feature_names_in_",
        "history_",
        "objective_",
        "converged_",
        "backend_",
        "device_",
        "solver_",
        "n_passes_",
    )

    def __init__(
        self,
        penalty: str | None = PENALTY_DEFAULT,
        *,
        C: float = 1.0,
        l1_ratio: float | None = 0.0,
        dual: bool = False,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        solver: str = "auto",
        tol: float = 1e-6,
        max_iter: int = 1000,
        class_weight: Any = None,
        multi_class: str = "auto",
        warm_start: bool = False,
        verbose: int = 0,
        random_state: Any = None,
        n_jobs: int | None = None,
        device: str = "auto",
        backend: str = "auto",
        dtype: str | None = None,
        batch_size: int = 256,
        optimizer: str = "adam",
        learning_rate: str = "constant",
        eta0: float = 0.001,
        momentum: float = 0.9,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        checkpoint_path: str | None = None,
        checkpoint_every: int = 1,
        callback: Any = None,
    ) -> None:
        self.penalty = penalty
        self.C = C
        self.l1_ratio = l1_ratio
        self.dual = dual
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.multi_class = multi_class
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device
        self.backend = backend
        self.dtype = dtype
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.callback = callback

    # -- configuration --------------------------------------------------------
    def _validate_params(self, *, warn: bool, stacklevel: int) -> Regularisation:
        """Check hyper-parameters; return the effective penalty and solver.

        ``warn``: issue scikit-learn's deprecation and consistency warnings
        (``fit`` and ``partial_fit``; not a use of the fitted settings), at
        ``stacklevel`` seen from here.
        """
        resolved = resolve_regularisation(
            penalty=self.penalty,
            C=self.C,
            l1_ratio=self.l1_ratio,
            solver=self.solver,
            dual=self.dual,
            intercept_scaling=self.intercept_scaling,
            n_jobs=self.n_jobs,
            own_solvers=frozenset(SOLVERS),
            warn=warn,
            stacklevel=stacklevel + 1,
        )
        solver = resolved.solver
        if resolved.l1_ratio > 0 and solver != "auto" and not solver_entry(solver).handles_l1:
            raise InputValueError(f"solver={solver!r} supports only L2; use 'gd' for L1")
        self._check_settings()
        if self.callback is not None and not callable(self.callback):
            raise InputTypeError(f"callback must be callable or None, got {self.callback!r}")
        return resolved

    def _check_settings(self) -> None:
        """Check ``tol``, ``max_iter``, ``multi_class`` and ``dtype``."""
        if not isinstance(self.tol, numbers.Real) or not self.tol > 0:
            raise InputValueError(f"tol must be a positive number, got {self.tol!r}")
        if (
            not isinstance(self.max_iter, numbers.Integral)
            or isinstance(self.max_iter, bool)
            or self.max_iter < 0
        ):
            raise InputValueError(f"max_iter must be a non-negative integer, got {self.max_iter!r}")
        if self.multi_class not in _MULTI_CLASS:
            raise InputValueError(
                f"multi_class must be one of {_MULTI_CLASS}, got {self.multi_class!r}"
            )
        if self.dtype not in _DTYPES:
            raise InputValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")

    def _spec(self, *, warn: bool = False, stacklevel: int = 3) -> FitSpec:
        """The validated settings of a fit, for the fit plan (:mod:`gpulogreg._fit`).

        ``warn``: scikit-learn's parameter warnings, at ``stacklevel`` seen
        from here (3: the caller of ``fit``, which calls this).
        """
        resolved = self._validate_params(warn=warn, stacklevel=stacklevel + 1)
        return self._spec_of(
            resolved,
            minibatch=MinibatchConfig.from_params(self.get_params(deep=False)),
            checkpoint_path=self.checkpoint_path,
            callback=self.callback,
        )

    def _spec_of(self, resolved: Regularisation, **extra: Any) -> FitSpec:
        """The fit settings of ``resolved`` and this estimator's other parameters.

        ``solver`` stays ``"auto"`` when so resolved: the fit plan decides from the data.
        """
        return FitSpec(
            C=resolved.C,
            l1_ratio=resolved.l1_ratio,
            fit_intercept=bool(self.fit_intercept),
            solver=resolved.solver,
            tol=float(self.tol),
            max_iter=int(self.max_iter),
            multi_class=str(self.multi_class),
            class_weight=self.class_weight,
            backend=self.backend,
            device=self.device,
            dtype=_DTYPES[self.dtype],
            verbose=bool(self.verbose),
            random_state=self.random_state,
            intercept_scaling=resolved.intercept_scaling,
            **extra,
        )

    def _previous(self) -> PreviousFit | None:
        """This model's fitted state, offered to the next fit (warm start, partial_fit)."""
        if not hasattr(self, "classes_"):
            return None
        fitted = hasattr(self, "coef_") and hasattr(self, "intercept_")
        coef, intercept = self._coefficients_float64() if fitted else (None, None)
        return PreviousFit(
            classes=self.classes_,
            coef=coef,
            intercept=intercept,
            n_features=int(self.n_features_in_),
            feature_names=getattr(self, "feature_names_in_", None),
        )

    def _coefficients_float64(self) -> tuple[np.ndarray, np.ndarray]:
        """``coef_`` and ``intercept_`` in float64, dense: the fit's own solution when they
        are its rounding (``_solution``), else their values (set by hand, or loaded)."""
        coef: Any = self.coef_
        coef = coef.toarray() if is_sparse(coef) else np.asarray(coef)
        intercept = np.asarray(self.intercept_)
        solution = self.__dict__.get("_solution")
        if solution is not None:
            exact_coef, exact_intercept = solution
            if np.array_equal(exact_coef.astype(coef.dtype), coef) and np.array_equal(
                exact_intercept.astype(intercept.dtype), intercept
            ):
                return exact_coef, exact_intercept
        return coef.astype(np.float64), intercept.astype(np.float64)

    # -- fitting --------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> LogisticRegression:
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or gpulogreg.Dataset
            NumPy or CuPy array, pandas/polars DataFrame. float32 and float64
            are used as given (no copy when C-contiguous). A
            :class:`gpulogreg.Dataset` trains out of core (``y`` and
            ``sample_weight`` then come from the dataset). A Dask array (NumPy
            or CuPy chunks) trains on its Dask cluster, each row block on the
            worker that holds it (solvers newton, lbfgs, gd).
        y : array-like of shape (n_samples,)
            Labels: any two or more distinct values.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights.

        Returns
        -------
        self
        """
        spec = self._spec(warn=True)
        with callback_management_context(self):
            callbacks = FitCallbacks.for_estimator(
                self, X, y, sample_weight, stale=(*self.FITTED_ATTRIBUTES, "_solution")
            )
            outcome = self._fit(X, y, sample_weight, spec, callbacks)
            if callbacks is not None:
                callbacks.end()  # the root task ends on the fitted estimator
        self._warn_if_not_converged(outcome)
        return self

    def _fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        spec: FitSpec,
        callbacks: FitCallbacks | None,
    ) -> FitOutcome:
        """:meth:`fit` but the warning and the root task's end; the callback tasks in
        ``callbacks`` (see :mod:`gpulogreg._sklearn_callbacks`)."""
        spec = dataclasses.replace(spec, sklearn_callbacks=callbacks)
        self.__dict__.pop("_partial_state", None)
        previous = self._previous() if self.warm_start else None
        outcome = run_fit(X, y, sample_weight, spec, previous)
        self._set_fitted(outcome)
        return outcome

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> LogisticRegression:
        """One epoch of mini-batch training on ``(X, y)``, continuing from the current state.

        Each call shuffles ``X`` into ``batch_size`` batches and updates the
        model with ``optimizer`` (its moments carry over between calls), the
        learning-rate schedule advancing one epoch per call (``cosine`` over
        ``max_iter`` calls). The penalty is the full objective's for all the
        data seen so far (``||w||^2 / (2 C)`` against the total weight of
        every chunk passed), so one pass over the chunks of a data set
        approaches ``fit`` on their concatenation; to revisit data many times
        use ``fit(Dataset, solver="minibatch")``. ``fit`` starts afresh;
        ``partial_fit`` after ``fit`` (or on a loaded model) continues from the
        fitted coefficients.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, optional
            Every label the model will see; required on the first call (a
            chunk may hold only some of them), must match on later calls.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        state: PartialFitState | None = self.__dict__.get("_partial_state")
        outcome, state = run_partial_fit(
            X, y, sample_weight, classes, self._spec(warn=True), self._previous(), state
        )
        self._set_fitted(outcome)
        self._partial_state = state
        return self

    # -- uncertainty ----------------------------------------------------------
    def inference(
        self,
        X: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        cov_type: str = "nonrobust",
        groups: Any = None,
    ) -> InferenceResult | list[InferenceResult]:
        """Standard errors, tests and intervals of the fitted coefficients (statsmodels' names).

        One extra pass over the data at the fitted parameters, on the model's
        backend (see :mod:`gpulogreg.inference`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or gpulogreg.Dataset
            The training data (the model does not keep it).
        y : array-like of shape (n_samples,)
            Labels (None for a Dataset).
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights (statsmodels' GLM ``freq_weights``); class weights
            multiply them, as in the fit.
        cov_type : {"nonrobust", "HC0", "HC1", "cluster"}
        groups : array-like of shape (n_samples,), optional
            Cluster labels for ``cov_type="cluster"`` (in-memory data only).

        Returns
        -------
        InferenceResult
            Binary models as ``statsmodels.Logit`` with a constant first;
            multinomial models as ``MNLogit`` (the first class the reference).
            One-vs-rest: a list, one binary result per class.

        Raises
        ------
        ValueError
            An L1 or elastic-net penalty (no Hessian-based covariance), a bad
            ``cov_type`` or ``groups``, data that do not match the model.

        Warns
        -----
        InferenceWarning
            A penalised fit (finite ``C``): the covariance is the Laplace
            approximation; singular or ill-conditioned information.
        """
        self._check_fitted()
        fitted = self._previous()
        assert fitted is not None
        return run_inference(
            X, y, sample_weight, spec=self._spec(), fitted=fitted, cov_type=cov_type, groups=groups
        )

    def _set_fitted(self, outcome: FitOutcome) -> None:
        """Store the fitted attributes; drop those this fit does not have."""
        attributes = outcome.attributes()
        for name in ("feature_names_in_", "n_passes_"):
            if name not in attributes:
                self.__dict__.pop(name, None)
        self.__dict__.update(attributes)

    def _warn_if_not_converged(self, outcome: FitOutcome) -> None:
        """One ``ConvergenceWarning`` in the wording of scikit-learn's solver of that name."""
        unconverged = [r for r in outcome.results if not r.converged]
        if unconverged:
            warnings.warn(
                not_converged_message(
                    str(self.solver),
                    self.solver_,
                    n_iter=max(r.n_iter for r in unconverged),
                    max_iter=int(self.max_iter),
                    loss=outcome.objective(),
                    reason="; ".join(r.message for r in unconverged),
                ),
                ConvergenceWarning,
                stacklevel=3,
            )

    # -- prediction -----------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call 'fit' first."
            )

    def decision_function(self, X: Any) -> Array:
        """Decision values ``X @ coef_.T + intercept_``.

        Every prediction method (and ``score``) checks ``X`` here.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            After a fit on a DataFrame, a DataFrame must have the fitted
            columns (``feature_names_in_``) in the fitted order.

        Raises
        ------
        ValueError
            A DataFrame whose column names differ from the fitted ones in
            names or order (scikit-learn's error), or the wrong number of features.

        Warns
        -----
        UserWarning
            An array after a fit on a DataFrame, or a DataFrame after a fit on
            an array (as scikit-learn); Dask arrays carry no names and are not checked.

        Returns
        -------
        array of shape (n_samples,) for two classes, else (n_samples, n_classes)
            float64, in the namespace of ``X`` (CuPy in, CuPy out; Dask in, a lazy
            Dask array out).
        """
        self._check_fitted()
        owner = type(self).__name__
        check_feature_names(X, getattr(self, "feature_names_in_", None), owner=owner)
        X, _ = check_X(
            X, n_features=self.n_features_in_, owner=owner, lazy=True, accept_sparse=True
        )
        return decision_values(X, self.coef_, self.intercept_)

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        return probabilities(self.decision_function(X), ovr=self.multi_class == "ovr")

    def predict_log_proba(self, X: Any) -> Array:
        """Logarithm of :meth:`predict_proba`, computed stably."""
        return log_probabilities(self.decision_function(X), ovr=self.multi_class == "ovr")

    def predict(self, X: Any) -> Array:
        """Predicted class labels, shape (n_samples,)."""
        return labels(self.decision_function(X), self.classes_)

    def sparsify(self) -> LogisticRegression:
        """Store ``coef_`` as a SciPy CSR matrix, as scikit-learn's ``sparsify`` does.

        For models with mostly zero coefficients (an L1 penalty): predictions on
        NumPy and SciPy data then multiply by the stored nonzeros only (CuPy and
        Dask data use the coefficients densified). Warm starts, inference and
        ``save`` see the dense coefficients (a saved model loads dense).

        Returns
        -------
        self
        """
        self._check_fitted()
        from scipy import sparse

        self.coef_ = sparse.csr_matrix(self.coef_)
        return self

    def densify(self) -> LogisticRegression:
        """Store ``coef_`` as a dense array again (the inverse of :meth:`sparsify`).

        Returns
        -------
        self
        """
        self._check_fitted()
        if is_sparse(self.coef_):
            self.coef_ = self.coef_.toarray()
        return self

    # -- persistence -----------------------------------------------------------
    def save(self, path: Any) -> None:
        """Save the fitted model to exactly ``path``, without pickle (see persistence)."""
        self._write_model_file(path)

    def _write_model_file(self, path: Any, metadata: Any = None) -> None:
        """Write the parameters, the ``FITTED_ATTRIBUTES`` and the ``partial_fit`` state.

        The state of the ``partial_fit`` trainers (optimiser moments, step and
        epoch counters, shuffling RNG, weight seen) is saved when ``partial_fit``
        ran since the last ``fit``, so a loaded model continues exactly.
        """
        self._check_fitted()
        state: PartialFitState | None = self.__dict__.get("_partial_state")
        attributes = _model_file.fitted_attributes(self, self.FITTED_ATTRIBUTES)
        if is_sparse(attributes["coef_"]):  # a sparsified model is saved dense
            attributes["coef_"] = attributes["coef_"].toarray()
        _model_file.write_model_file(
            path,
            estimator=type(self).__name__,
            params=self.get_params(deep=False),
            attributes=attributes,
            training=None if state is None else state.saved(),
            metadata=metadata,
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags
