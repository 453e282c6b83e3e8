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
from typing import Any, ClassVar

import numpy as np

from gpulogreg import _model_file
from gpulogreg._compat import BaseEstimator, ClassifierMixin, ConvergenceWarning, NotFittedError
from gpulogreg._typing import Array, History, SolverResult
from gpulogreg.backends import make_backend, place_data, release_device_memory, resolve_backend
from gpulogreg.data import (
    FitData,
    array_module_name,
    array_namespace,
    check_X,
    prepare_fit_data,
    to_host,
)
from gpulogreg.loss import LogisticObjective
from gpulogreg.solvers import SOLVERS, get_solver

__all__ = ["LogisticRegression"]

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
    solver : {"auto", "newton", "lbfgs", "gd", "minibatch"}, default="auto"
        "auto": ``gd`` (proximal, FISTA) with an L1 term, else L-BFGS (which
        turns to a Hessian preconditioner on ill-conditioned problems).
        "minibatch": shuffled mini-batch epochs (see Notes).
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
        Mini-batch: save the training state there (``.npz`` + JSON, no
        pickle, written atomically) every ``checkpoint_every`` epochs and at
        the end; a later ``fit`` with the same path resumes from it and ends
        where an uninterrupted run with the same seed ends.
    checkpoint_every : int, default=1

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
        Per iteration: objective, gradient max-norm, step, elapsed seconds.
    objective_ : float
        Final value of the weight-normalised objective (sum over "ovr" models).
    converged_ : bool
    backend_ : str
        Backend that ran the fit.
    device_ : {"cpu", "gpu"}
    """

    #: The fitted attributes a saved model keeps (those a model has; private
    #: state such as the ``partial_fit`` trainer is not saved).
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
        if self.solver != "auto" and self.solver not in SOLVERS and self.solver != "minibatch":
            raise ValueError(
                f"solver must be 'auto' or one of {sorted([*SOLVERS, 'minibatch'])}, "
                f"got {self.solver!r}"
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

    def _solver_name(self, l1_ratio: float) -> str:
        if self.solver != "auto":
            return str(self.solver)
        if l1_ratio > 0:
            return "gd"
        # L-BFGS, Hessian-preconditioned once it is slow (see solvers.lbfgs):
        # measured on 1,000,000 x 100 float32 it reached tol=1e-8 2-4x sooner
        # than Newton, whose every iteration builds a Hessian.
        return "lbfgs"

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
        C, l1_ratio = self._validate_params()
        self.__dict__.pop("_partial_state", None)
        if _is_dataset(X):
            self._fit_dataset(X, y, sample_weight, C, l1_ratio)
            return self
        _check_y_present(y)
        if self.solver == "minibatch" and array_module_name(X) == "dask":
            raise ValueError("solver='minibatch' takes no Dask arrays: use newton, lbfgs or gd")
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
        if self.solver != "minibatch":
            # One transfer for all one-vs-rest tasks: every backend below finds
            # the data already on its device.
            _, target = resolve_backend(data.X, self.backend, self.device)
            data.X, data.y, data.sample_weight = place_data(
                data.X, data.y, data.sample_weight, n_classes=n_classes, device=target
            )
        if ovr:
            tasks = [(data.y == k).astype("int32") for k in range(n_classes)]
            n_model_classes = 2
        else:
            tasks = [data.y]
            n_model_classes = n_classes
        results: list[SolverResult] = []
        for index, y_task in enumerate(tasks):
            start = None if previous is None else previous[index]
            if self.solver == "minibatch":
                results.append(
                    self._fit_minibatch_task(
                        data, y_task, n_model_classes, C, l1_ratio, previous, index, len(tasks)
                    )
                )
            else:
                results.append(self._solve_task(data, y_task, n_model_classes, C, l1_ratio, start))
        self._set_fitted(results, n_model_classes)
        self._warn_if_not_converged(results)
        if self.device_ == "gpu":
            # Drop the device copies before handing CuPy's cached blocks back.
            data.X = data.y = data.sample_weight = None
            tasks.clear()
            results.clear()
            release_device_memory()

    def _solve_task(
        self,
        data: FitData,
        y_task: Array,
        n_model_classes: int,
        C: float,
        l1_ratio: float,
        start: np.ndarray | None,
    ) -> SolverResult:
        """Fit one model (the whole multinomial model, or one one-vs-rest class)."""
        backend = make_backend(
            data.X,
            y_task,
            data.sample_weight,
            n_classes=n_model_classes,
            fit_intercept=self.fit_intercept,
            backend=self.backend,
            device=self.device,
        )
        objective = LogisticObjective(backend, C=C, l1_ratio=l1_ratio, weight_sum=data.weight_sum)
        xp = backend.xp
        if start is not None:
            params0 = xp.asarray(start, dtype=xp.float64)
        else:
            params0 = xp.zeros(objective.n_params, dtype=xp.float64)
        solver_name = self._solver_name(l1_ratio)
        result = get_solver(solver_name)(
            objective,
            params0,
            tol=float(self.tol),
            max_iter=int(self.max_iter),
            verbose=bool(self.verbose),
        )
        self.backend_ = backend.name
        # The Dask backend says where its blocks ran; its params are NumPy on the client.
        self.device_ = getattr(backend, "device", None) or (
            "gpu" if array_module_name(params0) == "cupy" else "cpu"
        )
        self.solver_ = solver_name
        return result

    def _warn_if_not_converged(self, results: list[SolverResult]) -> None:
        if not all(r.converged for r in results):
            messages = "; ".join(r.message for r in results if not r.converged)
            hint = " (increase max_iter or scale the data)" if "max_iter" in messages else ""
            warnings.warn(
                f"{self.solver_} did not converge to tol={self.tol}: {messages}{hint}",
                ConvergenceWarning,
                stacklevel=4,
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
        if n_model_classes > 2 and self.fit_intercept:
            # Softmax is unchanged by a common shift of the (unpenalised)
            # intercepts; report the centred ones, as scikit-learn does.
            self.intercept_ = self.intercept_ - self.intercept_.mean()
        self.n_iter_ = np.asarray([r.n_iter for r in results], dtype=np.int32)
        self.converged_ = all(r.converged for r in results)
        histories: list[History] = [r.history for r in results]
        self.history_: History | list[History] = histories[0] if len(results) == 1 else histories
        self.objective_ = float(sum(_final_objective(r) for r in results))
        self._n_model_classes = n_model_classes

    # -- mini-batch, partial_fit and out-of-core data ---------------------------
    def _minibatch_config(self) -> Any:
        """The validated :class:`~gpulogreg.solvers.minibatch.MinibatchConfig` of this estimator."""
        from gpulogreg.solvers.minibatch import MinibatchConfig

        config = MinibatchConfig(
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            eta0=self.eta0,
            momentum=self.momentum,
            max_epochs=int(self.max_iter),
            tol=float(self.tol),
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            checkpoint_path=self.checkpoint_path,
            checkpoint_every=self.checkpoint_every,
        )
        config.validate()
        return config

    def _minibatch_fingerprint(
        self,
        classes: np.ndarray,
        n_samples: int,
        n_features: int,
        C: float,
        l1_ratio: float,
        task: int,
        dtype: Any,
    ) -> dict[str, Any]:
        """What a checkpoint must have been written for to be resumed by this fit."""
        return {
            "n_samples": int(n_samples),
            "n_features": int(n_features),
            "classes": [str(c) for c in classes],
            "C": None if math.isinf(C) else float(C),
            "l1_ratio": float(l1_ratio),
            "fit_intercept": bool(self.fit_intercept),
            "multi_class": str(self.multi_class),
            "class_weight": repr(self.class_weight),
            "task": int(task),
            "dtype": str(np.dtype(dtype)),
            "random_state": self.random_state if isinstance(self.random_state, int) else None,
        }

    def _checkpoint_for(self, task: int, n_tasks: int) -> str | None:
        """Checkpoint file of one task (one-vs-rest tasks get ``stem.class<k>.suffix``)."""
        import os

        if self.checkpoint_path is None:
            return None
        path = os.fspath(self.checkpoint_path)
        if n_tasks == 1:
            return path
        root, ext = os.path.splitext(path)
        return f"{root}.class{task}{ext}"

    def _minibatch_seed(self, checkpoint: str | None) -> int:
        """The run's seed: the checkpoint's when resuming, else from ``random_state``."""
        import os

        from gpulogreg.checkpoint import load_checkpoint
        from gpulogreg.solvers.minibatch import resolve_seed

        if checkpoint is not None and os.path.exists(checkpoint):
            seed = load_checkpoint(checkpoint).meta.get("seed")
            if isinstance(seed, int):
                return seed
        return resolve_seed(self.random_state)

    def _fit_minibatch_task(
        self,
        data: FitData,
        y_task: Array,
        n_classes: int,
        C: float,
        l1_ratio: float,
        previous: list[np.ndarray] | None,
        index: int,
        n_tasks: int,
    ) -> SolverResult:
        """``solver="minibatch"`` on in-memory data, for one task (one OvR class or all)."""
        from gpulogreg.backends import resolve_backend, to_device
        from gpulogreg.solvers.minibatch import (
            ArrayBatches,
            Penalty,
            solve_minibatch,
            split_validation,
        )

        config = self._minibatch_config()
        name, target = resolve_backend(data.X, self.backend, self.device)
        X, y, s = (to_device(a, target) for a in (data.X, y_task, data.sample_weight))
        xp = array_namespace(X)
        checkpoint = self._checkpoint_for(index, n_tasks)
        seed = self._minibatch_seed(checkpoint)
        train_idx = val_idx = None
        train_weight = 1.0
        if config.early_stopping:
            y_host = np.asarray(_to_host(y_task), dtype=np.int64)
            train_idx, val_idx = split_validation(
                y_host, config.validation_fraction, np.random.default_rng([seed, 0])
            )
            train_weight = float(np.asarray(_to_host(data.sample_weight))[train_idx].sum())
        source = ArrayBatches(
            X,
            y,
            s,
            n_classes=n_classes,
            fit_intercept=self.fit_intercept,
            backend=name,
            device=target,
            train_idx=train_idx,
            val_idx=val_idx,
        )
        n_outputs = 1 if n_classes == 2 else n_classes
        penalty = Penalty.build(
            xp,
            C=C,
            l1_ratio=l1_ratio,
            weight_sum=data.weight_sum * train_weight,
            n_outputs=n_outputs,
            n_features=int(X.shape[1]),
            fit_intercept=self.fit_intercept,
        )
        n_params = n_outputs * (int(X.shape[1]) + int(self.fit_intercept))
        if previous is not None:
            params0 = xp.asarray(previous[index], dtype=xp.float64)
        else:
            params0 = xp.zeros(n_params, dtype=xp.float64)
        result: SolverResult = solve_minibatch(
            source,
            params0,
            penalty=penalty,
            config=config,
            seed=seed,
            fingerprint=self._minibatch_fingerprint(
                data.classes, X.shape[0], X.shape[1], C, l1_ratio, index, X.dtype
            ),
            checkpoint_path=checkpoint,
            verbose=bool(self.verbose),
        )
        # The history holds per-epoch estimates; objective_ is exact (one pass).
        full = make_backend(
            X,
            y,
            s,
            n_classes=n_classes,
            fit_intercept=self.fit_intercept,
            backend=name,
            device=target,
        )
        objective = LogisticObjective(full, C=C, l1_ratio=l1_ratio, weight_sum=data.weight_sum)
        result.objective = objective.value(result.params) + objective.penalty_l1(result.params)
        self.backend_ = name
        self.device_ = target
        self.solver_ = "minibatch"
        return result

    def _fit_dataset(
        self, dataset: Any, y: Any, sample_weight: Any, C: float, l1_ratio: float
    ) -> None:
        """Fit on a :class:`gpulogreg.Dataset`: the exact chunked objective, or mini-batches."""
        from gpulogreg.backends.chunked import ChunkedBackend
        from gpulogreg.solvers.minibatch import DatasetBatches, Penalty, solve_minibatch

        if y is not None or sample_weight is not None:
            raise ValueError(
                "fit(dataset) takes the labels and weights from the Dataset; do not pass "
                "y or sample_weight"
            )
        dtype = _DTYPES[self.dtype]
        info = dataset.scan(dtype)
        classes = info.classes
        present = int((info.class_counts > 0).sum())
        if present < 2:
            raise ValueError(
                f"y has only {present} class ({classes[info.class_counts > 0]!r}); "
                "need at least 2 to fit a classifier"
            )
        n_classes = len(classes)
        n_features = info.n_features
        previous = None
        if (
            self.warm_start
            and hasattr(self, "coef_")
            and np.array_equal(self.classes_, classes)
            and self.coef_.shape[1] == n_features
        ):
            W = self.coef_
            if self.fit_intercept:
                W = np.concatenate([W, self.intercept_[:, None]], axis=1)
            previous = list(W) if n_classes > 2 and self.multi_class == "ovr" else [W.ravel()]
        ovr = n_classes > 2 and self.multi_class == "ovr"
        positives: list[int | None] = list(range(n_classes)) if ovr else [None]
        n_model_classes = 2 if ovr else n_classes
        self.classes_ = classes
        self.n_features_in_ = int(n_features)
        if dataset.feature_names is not None:
            self.feature_names_in_ = np.asarray(dataset.feature_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        results: list[SolverResult] = []
        for index, positive in enumerate(positives):
            chunked = ChunkedBackend(
                dataset,
                classes=classes,
                n_classes=n_model_classes,
                fit_intercept=self.fit_intercept,
                class_weight=self.class_weight,
                positive_class=positive,
                backend=self.backend,
                device=self.device,
                dtype=dtype,
                verbose=bool(self.verbose),
            )
            xp = chunked.xp
            params0 = (
                xp.asarray(previous[index], dtype=xp.float64)
                if previous is not None
                else xp.zeros(chunked.n_params, dtype=xp.float64)
            )
            if self.solver == "minibatch":
                config = self._minibatch_config()
                checkpoint = self._checkpoint_for(index, len(positives))
                seed = self._minibatch_seed(checkpoint)
                fraction = config.validation_fraction if config.early_stopping else None
                source = DatasetBatches(
                    chunked,
                    validation_fraction=fraction,
                    rng=np.random.default_rng([seed, 0]),
                )
                train_fraction = source.n_train / chunked.n_samples
                penalty = Penalty.build(
                    xp,
                    C=C,
                    l1_ratio=l1_ratio,
                    weight_sum=chunked.weight_sum * train_fraction,
                    n_outputs=chunked.n_outputs,
                    n_features=n_features,
                    fit_intercept=self.fit_intercept,
                )
                result = solve_minibatch(
                    source,
                    params0,
                    penalty=penalty,
                    config=config,
                    seed=seed,
                    fingerprint=self._minibatch_fingerprint(
                        classes, chunked.n_samples, n_features, C, l1_ratio, index, chunked.dtype
                    ),
                    checkpoint_path=checkpoint,
                    verbose=bool(self.verbose),
                )
                # The history holds per-epoch estimates; objective_ is exact (one pass).
                objective = LogisticObjective(
                    chunked, C=C, l1_ratio=l1_ratio, weight_sum=chunked.weight_sum
                )
                result.objective = objective.value(result.params) + objective.penalty_l1(
                    result.params
                )
                solver_name = "minibatch"
            else:
                objective = LogisticObjective(
                    chunked, C=C, l1_ratio=l1_ratio, weight_sum=chunked.weight_sum
                )
                solver_name = self._solver_name(l1_ratio)
                result = get_solver(solver_name)(
                    objective,
                    params0,
                    tol=float(self.tol),
                    max_iter=int(self.max_iter),
                    verbose=bool(self.verbose),
                )
            results.append(result)
            self.backend_ = chunked.name
            self.device_ = chunked.device
            self.solver_ = solver_name
            self.n_passes_ = chunked.n_passes
        self._set_fitted(results, n_model_classes)
        self._warn_if_not_converged(results)
        if self.device_ == "gpu":
            results.clear()
            release_device_memory()

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
        ``partial_fit`` after ``fit`` continues from the fitted coefficients.

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
        from gpulogreg.backends import resolve_backend, to_device
        from gpulogreg.solvers.minibatch import (
            ArrayBatches,
            MinibatchTrainer,
            Penalty,
            resolve_seed,
        )

        C, l1_ratio = self._validate_params()
        config = self._minibatch_config()
        _check_y_present(y)
        if array_module_name(X) == "dask":
            raise TypeError("partial_fit does not take Dask arrays: fit(X, y) trains on them")
        fitted = hasattr(self, "classes_")
        if classes is None and not fitted:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if classes is not None:
            classes = np.unique(np.asarray(to_host(classes)))
            if fitted and not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"classes={classes!r} is not the same as on the first call to partial_fit "
                    f"(or in fit): {self.classes_!r}"
                )
        else:
            classes = self.classes_
        if len(classes) < 2:
            raise ValueError(f"classes must hold at least 2 labels, got {classes!r}")
        if isinstance(self.class_weight, str):
            raise ValueError(
                "class_weight='balanced' needs the class counts of the whole data, which "
                "partial_fit does not see; pass a dict of class weights"
            )
        shape = getattr(X, "shape", None)
        if fitted and shape is not None and len(shape) == 2 and shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        data = prepare_fit_data(
            X,
            y,
            sample_weight,
            class_weight=self.class_weight,
            classes=classes,
            dtype=_DTYPES[self.dtype],
            min_classes=1,
        )
        if fitted and data.X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {data.X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        if fitted:
            _check_feature_names(self, data.feature_names)
        n_classes = len(classes)
        ovr = n_classes > 2 and self.multi_class == "ovr"
        tasks = [(data.y == k).astype("int32") for k in range(n_classes)] if ovr else [data.y]
        n_model_classes = 2 if ovr else n_classes
        n_outputs = 1 if n_model_classes == 2 else n_model_classes
        name, target = resolve_backend(data.X, self.backend, self.device)
        X_dev, s_dev = to_device(data.X, target), to_device(data.sample_weight, target)
        xp = array_namespace(X_dev)
        state = self.__dict__.get("_partial_state")
        if state is None or state["n_tasks"] != len(tasks):
            previous = None
            if fitted and hasattr(self, "coef_"):
                W = self.coef_
                if self.fit_intercept:
                    W = np.concatenate([W, self.intercept_[:, None]], axis=1)
                previous = list(W) if ovr else [W.ravel()]
            n_params = n_outputs * (data.X.shape[1] + int(self.fit_intercept))
            seed = resolve_seed(self.random_state)
            trainers = []
            for k in range(len(tasks)):
                p0 = previous[k] if previous is not None else np.zeros(n_params)
                trainers.append(
                    MinibatchTrainer(
                        xp.asarray(p0, dtype=xp.float64),
                        penalty=Penalty(0.0, 0.0, xp.zeros(n_params)),
                        config=config,
                        seed=seed + k,
                    )
                )
            state = {"n_tasks": len(tasks), "trainers": trainers, "weight_seen": 0.0}
        state["weight_seen"] += data.weight_sum
        results: list[SolverResult] = []
        for trainer, y_task in zip(state["trainers"], tasks, strict=True):
            trainer.config = config
            trainer.penalty = Penalty.build(
                xp,
                C=C,
                l1_ratio=l1_ratio,
                weight_sum=state["weight_seen"],
                n_outputs=n_outputs,
                n_features=int(data.X.shape[1]),
                fit_intercept=self.fit_intercept,
            )
            source = ArrayBatches(
                X_dev,
                to_device(y_task, target),
                s_dev,
                n_classes=n_model_classes,
                fit_intercept=self.fit_intercept,
                backend=name,
                device=target,
            )
            estimate = trainer.run_epoch(source)
            trainer.history.record_epoch(
                estimate, trainer._last_grad_norm, trainer._last_lr, math.nan
            )
            trainer.message = f"partial_fit: {trainer.epoch} epoch(s)"
            results.append(trainer.result())
        self.classes_ = classes
        self.n_features_in_ = int(data.X.shape[1])
        if data.feature_names is not None:
            self.feature_names_in_ = data.feature_names
        self._set_fitted(results, n_model_classes)
        self._partial_state = state
        self.backend_ = name
        self.device_ = target
        self.solver_ = "minibatch"
        return self

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
            float64, in the namespace of ``X`` (CuPy in, CuPy out; Dask in, a lazy
            Dask array out).
        """
        self._check_fitted()
        X, _ = check_X(X, n_features=self.n_features_in_, owner=type(self).__name__, lazy=True)
        if array_module_name(X) == "dask":  # lazy: a Dask array of decision values
            from gpulogreg.backends.dask_backend import decision_blocks

            return decision_blocks(X, self.coef_, self.intercept_)
        xp = array_namespace(X)
        coef = xp.asarray(self.coef_, dtype=X.dtype)
        # BLAS in X's dtype (X is never upcast), result widened to float64.
        scores = (X @ coef.T).astype(xp.float64) + xp.asarray(self.intercept_)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        scores = self.decision_function(X)
        xp = array_namespace(scores)
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
        xp = array_namespace(scores)
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
        xp = array_namespace(scores)
        index = (scores > 0).astype(xp.int64) if scores.ndim == 1 else scores.argmax(axis=1)
        classes = self.classes_
        if array_module_name(index) == "dask":
            from gpulogreg.backends.dask_backend import take_classes

            return take_classes(index, classes)
        if xp is np:
            return classes[index]
        if classes.dtype.kind in "biuf":
            return xp.asarray(classes)[index]
        return classes[index.get()]

    # -- persistence -----------------------------------------------------------
    def save(self, path: Any) -> None:
        """Save the fitted model to exactly ``path``, without pickle (see persistence)."""
        self._check_fitted()
        _model_file.write_model_file(
            path,
            estimator=type(self).__name__,
            params=self.get_params(deep=False),
            attributes=_model_file.fitted_attributes(self, self.FITTED_ATTRIBUTES),
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _is_dataset(X: Any) -> bool:
    """Whether ``X`` is a :class:`gpulogreg.Dataset` (without importing it needlessly)."""
    from gpulogreg.dataset import Dataset

    return isinstance(X, Dataset)


def _check_feature_names(model: Any, names: np.ndarray | None) -> None:
    """partial_fit on a fitted model: the DataFrame columns must be the fitted ones, in order."""
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None or names is None:
        return
    if len(fitted) == len(names) and all(a == b for a, b in zip(fitted, names, strict=True)):
        return
    message = "The feature names should match those that were passed during fit.\n"
    unexpected = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))
    if unexpected:
        message += "Feature names unseen at fit time:\n" + "".join(f"- {n}\n" for n in unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + "".join(
            f"- {n}\n" for n in missing
        )
    if not unexpected and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def _final_objective(result: SolverResult) -> float:
    """Objective at the solution: the solver's, else the last one recorded."""
    if math.isfinite(result.objective) or not result.history.objective:
        return result.objective
    return result.history.objective[-1]


def _check_y_present(y: Any) -> None:
    if y is None:
        raise ValueError(
            "requires y to be passed, but the target y is None; fit(X, y) needs the class labels"
        )


def _to_host(a: Any) -> np.ndarray:
    return np.asarray(a.get() if array_module_name(a) == "cupy" else a, dtype=np.float64)


def _sigmoid(z: Array, xp: Any) -> Array:
    """Sigmoid without overflow for any finite ``z``."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0, e) / (1.0 + e)
