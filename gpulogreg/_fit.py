"""The fit plan: one route from any data source to fitted parameters.

``fit``, ``partial_fit`` and the out-of-core path are one route with different
sources and solvers::

    source (validated)  ->  tasks  ->  per task: starting point, backend,
                                       objective or batches, solver
                        ->  host parameters, results  ->  the estimator's attributes

Sources
    :class:`ArraySource` (NumPy, CuPy or Dask arrays, validated by
    :func:`gpulogreg.data.prepare_fit_data` and placed on the training device
    once) and :class:`DatasetSource` (a :class:`~gpulogreg.data.dataset.Dataset`
    scanned once, its chunks prepared by :mod:`gpulogreg.data.chunks`).
Tasks
    one multinomial (or binary) model, or one binary model per class for
    one-vs-rest (:func:`plan_tasks`).
Starting point
    zero, or the previous solution when warm starting applies (same classes and
    features; :func:`warm_start_params`).
Solver
    a registry entry (:mod:`gpulogreg.solvers`): full-batch solvers minimise the
    penalised objective over the task's backend; the stochastic solver takes the
    task's batches and a factory for its one backend. ``solver="auto"`` is
    resolved here, from the task's backend (its storage format) and the number
    of parameters (:func:`gpulogreg.solvers.auto_solver`).

Nothing device-resident outlives a fit: backends and objectives live only
inside :func:`_solve_task`, results leave it as host arrays, and the sources
are dropped before CuPy's cached blocks are handed back
(:func:`gpulogreg.backends.release_device_memory`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

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
from gpulogreg._blas import one_blas_thread
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg._layout import ParamLayout
from gpulogreg._model_file import TrainingState
from gpulogreg._progress import Listener, Reporter
from gpulogreg._sklearn_callbacks import FitCallbacks, Iterations
from gpulogreg._typing import Array, Backend, BatchBackend, History, MinibatchHistory, SolverResult
from gpulogreg.backends import chunked
from gpulogreg.checkpoint import CheckpointState
from gpulogreg.data import FitData, check_feature_names, check_labels, prepare_fit_data
from gpulogreg.data.batches import ArrayBatches, BatchSource, DatasetBatches, split_validation
from gpulogreg.data.chunks import PreparedChunks
from gpulogreg.data.dataset import Dataset
from gpulogreg.data.validation import shown
from gpulogreg.loss import LogisticObjective, Penalty
from gpulogreg.solvers import auto_solver, get_solver, solver_entry
from gpulogreg.solvers.stochastic.config import MinibatchConfig, resolve_seed
from gpulogreg.solvers.stochastic.trainer import (
    BackendFactory,
    BoundBackend,
    MinibatchProblem,
    MinibatchTrainer,
)

__all__ = [
    "ArraySource",
    "DatasetSource",
    "FitOutcome",
    "FitSpec",
    "PartialFitState",
    "PreviousFit",
    "Source",
    "fit_source",
    "open_source",
    "plan_tasks",
    "release_device_memory",
    "run_fit",
    "run_partial_fit",
    "solver_blas",
]


@dataclass(frozen=True)
class FitSpec:
    """The validated settings of one fit (the estimator's parameters, resolved).

    ``solver`` is a registry name or ``"auto"`` (resolved per task from its
    backend, see :func:`gpulogreg.solvers.auto_solver`); ``minibatch``
    holds the mini-batch settings (used by stochastic solvers and partial_fit);
    ``verbose`` draws the progress bar and ``callback`` receives every
    iteration's record (see :class:`gpulogreg._progress.Reporter`).
    """

    C: float
    l1_ratio: float
    fit_intercept: bool
    solver: str
    tol: float
    max_iter: int
    multi_class: str
    class_weight: Any
    backend: str
    device: str
    dtype: Any
    verbose: bool
    random_state: Any
    minibatch: MinibatchConfig
    checkpoint_path: str | None = None
    callback: Listener | None = None
    #: liblinear's objective: the intercept penalised as a constant feature of this value.
    intercept_scaling: float | None = None
    #: scikit-learn's callbacks of this fit (``set_callbacks``), or None.
    sklearn_callbacks: FitCallbacks | None = None


@dataclass
class PreviousFit:
    """What a fitted model offers a new fit: a warm start, and the checks of partial_fit."""

    classes: np.ndarray
    coef: np.ndarray | None
    intercept: np.ndarray | None
    n_features: int
    feature_names: np.ndarray | None


@dataclass
class FitOutcome:
    """Everything the estimator stores after a fit; host arrays only."""

    classes: np.ndarray
    n_features: int
    feature_names: np.ndarray | None
    layout: ParamLayout
    results: list[SolverResult]
    backend: str
    device: str
    solver: str
    n_passes: int | None = None
    #: No L1 term: softmax coefficients may be centred over the classes (see coef_intercept).
    centre_coef: bool = False
    #: The training data's dtype: ``coef_`` and ``intercept_`` are rounded to it once.
    dtype: Any = np.float64

    def objective(self) -> float:
        """Final objective (summed over one-vs-rest models); the last recorded when unknown."""
        total = 0.0
        for r in self.results:
            known = math.isfinite(r.objective) or not r.history.objective
            total += r.objective if known else r.history.objective[-1]
        return float(total)

    def attributes(self) -> dict[str, Any]:
        """The estimator's fitted attributes (``n_passes_`` only for a Dataset).

        ``coef_`` and ``intercept_`` are in the training data's dtype (float32
        data, float32 coefficients, as scikit-learn's); ``_solution`` keeps the
        float64 pair they were rounded from, for warm starts and inference.
        """
        coef, intercept = self.coef_intercept()
        histories: list[History] = [r.history for r in self.results]
        out: dict[str, Any] = {
            "classes_": self.classes,
            "n_features_in_": int(self.n_features),
            "coef_": coef.astype(self.dtype),
            "intercept_": intercept.astype(self.dtype),
            "_solution": (coef, intercept),
            "n_iter_": np.asarray([r.n_iter for r in self.results], dtype=np.int32),
            "converged_": all(r.converged for r in self.results),
            "history_": histories[0] if len(histories) == 1 else histories,
            "objective_": self.objective(),
            "backend_": self.backend,
            "device_": self.device,
            "solver_": self.solver,
        }
        if self.feature_names is not None:
            out["feature_names_in_"] = self.feature_names
        if self.n_passes is not None:
            out["n_passes_"] = self.n_passes
        return out

    def coef_intercept(self) -> tuple[np.ndarray, np.ndarray]:
        """``coef_`` and ``intercept_`` in float64 (see ``ParamLayout.estimator_coefficients``)."""
        return self.layout.estimator_coefficients(
            [r.params for r in self.results], centre=self.centre_coef
        )


def plan_tasks(
    n_classes: int, multi_class: str, *, binary_only: bool = False
) -> tuple[list[int | None], int]:
    """The models to fit: ``([positive class or None per task], classes per model)``.

    One-vs-rest (more than two classes, ``multi_class="ovr"``) fits a binary
    model per class; otherwise one model (binary or multinomial) covers all.
    ``binary_only``: the objective has binary models only (liblinear's), so
    more than two classes need one-vs-rest.
    """
    if n_classes > 2 and multi_class == "ovr":
        return list(range(n_classes)), 2
    if n_classes > 2 and binary_only:
        raise InputValueError(
            "The 'liblinear' solver does not support multiclass classification "
            f"(n_classes >= 3, here {n_classes}) with a multinomial model. Either use another "
            "solver or multi_class='ovr' (liblinear's own scheme)."
        )
    return [None], n_classes


def warm_start_params(
    previous: PreviousFit | None,
    classes: np.ndarray,
    n_features: int,
    layout: ParamLayout,
    n_tasks: int,
) -> list[np.ndarray] | None:
    """The previous solution in this fit's layout per task, when it applies (else None)."""
    if previous is None or previous.coef is None or previous.intercept is None:
        return None
    if not np.array_equal(previous.classes, classes) or previous.coef.shape[1] != n_features:
        return None
    rows = previous.coef.shape[0] // n_tasks
    return [
        layout.from_estimator(
            previous.coef[k * rows : (k + 1) * rows], previous.intercept[k * rows : (k + 1) * rows]
        )
        for k in range(n_tasks)
    ]


# --------------------------------------------------------------------------- sources
class ArraySource:
    """Validated in-memory (NumPy, CuPy) or Dask data, placed on the training device once."""

    def __init__(self, data: FitData, spec: FitSpec) -> None:
        self.classes = data.classes
        self.feature_names = data.feature_names
        self.weight_sum = data.weight_sum
        self.n_samples, self.n_features = (int(d) for d in data.X.shape)
        self.dtype = np.dtype(data.X.dtype)
        self.backend_name, self.device = backends.resolve_backend(data.X, spec.backend, spec.device)
        # One transfer for all tasks: every backend below finds the data on its device.
        self.X, self.y, self.sample_weight = backends.place_data(
            data.X,
            data.y,
            data.sample_weight,
            n_classes=len(data.classes),
            device=self.device,
            check_resident=True,
        )
        self.fit_intercept = spec.fit_intercept
        self.n_passes: int | None = None
        #: Name of the backend that ran (the Dask backend says where its blocks ran).
        self.ran = self.backend_name
        #: Whether the solvers drive Numba kernels (Dask's host blocks run them too).
        self.numba_kernels = self.device == "cpu" and self.backend_name in ("numba", "dask")
        self._digest: str | None = None

    def device_context(self) -> AbstractContextManager[Any]:
        """The device holding the data made current: the solvers' work runs there too."""
        return device_of(self.X)

    def done_with(self, backend: Backend) -> None:
        """Nothing to count: in-memory fits report no passes."""

    def digest(self) -> str:
        """A deterministic digest of the data: sampled rows, labels, weights and the weight sum.

        Cheap (:data:`DIGEST_ROWS` rows, one transfer from a device), and enough to
        tell a checkpoint of other data with the same shape and settings.
        """
        if self._digest is None:
            rows = np.unique(np.linspace(0, self.n_samples - 1, DIGEST_ROWS).astype(np.int64))
            index = array_namespace(self.X).asarray(rows)
            parts = (*_row_parts(self.X[index]), self.y[index], self.sample_weight[index])
            self._digest = _digest([to_host(a) for a in parts], self.weight_sum, self.classes)
        return self._digest

    def class_totals(self) -> np.ndarray:
        """The effective (sample x class) weight of each class (one small transfer)."""
        xp = array_namespace(self.y)
        totals = xp.bincount(self.y, weights=self.sample_weight, minlength=len(self.classes))
        return np.asarray(to_host(totals), dtype=np.float64) * self.weight_sum

    def target(self, positive: int | None) -> Array:
        """Class indices of a task: all classes, or 0/1 for one class."""
        return self.y if positive is None else (self.y == positive).astype("int32")

    def backend(
        self, positive: int | None, n_classes: int, progress: Reporter | None = None
    ) -> Backend:
        """The task's backend (in memory: no passes counted, no chunks to show to ``progress``)."""
        backend = backends.make_backend(
            self.X,
            self.target(positive),
            self.sample_weight,
            n_classes=n_classes,
            fit_intercept=self.fit_intercept,
            backend=self.backend_name,
            device=self.device,
        )
        self.ran = backend.name
        return backend

    def batches(
        self, positive: int | None, config: MinibatchConfig, seed: int
    ) -> tuple[BatchSource, float]:
        """The task's batch source and the fraction of the weight it trains on."""
        y = self.target(positive)
        train_idx = val_idx = None
        train_fraction = 1.0
        if config.early_stopping:
            train_idx, val_idx = split_validation(
                np.asarray(to_host(y), dtype=np.int64),
                config.validation_fraction,
                np.random.default_rng([seed, 0]),
            )
            train_fraction = float(host_float64(self.sample_weight)[train_idx].sum())
        source = ArrayBatches(self.X, y, self.sample_weight, train_idx=train_idx, val_idx=val_idx)
        return source, train_fraction

    def batch_backend_factory(self, n_classes: int) -> BackendFactory:
        return _factory(self.backend_name, self.device, n_classes, self.fit_intercept)


class DatasetSource:
    """A :class:`Dataset`, scanned once; each task reads it through a chunked backend."""

    def __init__(self, dataset: Dataset, spec: FitSpec, classes: np.ndarray | None = None) -> None:
        self.chunks = PreparedChunks(
            dataset, classes=classes, class_weight=spec.class_weight, dtype=spec.dtype
        )
        info = self.chunks.info
        present = int((info.class_counts > 0).sum())
        if present < 2:
            raise InputValueError(
                f"y has only {present} class ({shown(info.classes[info.class_counts > 0][0])}); "
                "need at least 2 to fit a classifier"
            )
        self.classes = info.classes
        self.feature_names = (
            None
            if dataset.feature_names is None
            else np.asarray(dataset.feature_names, dtype=object)
        )
        self.weight_sum = self.chunks.weight_sum
        self.n_samples, self.n_features = info.n_samples, info.n_features
        self.dtype = self.chunks.dtype
        self.spec = spec
        self.fit_intercept = spec.fit_intercept
        #: Full passes over the data by every task's chunked backend (``n_passes_``).
        self.n_passes: int | None = 0
        self.inner, self.device, _ = chunked.resolve_chunk_backend(
            self.chunks, spec.backend, spec.device
        )
        self.ran = f"chunked({self.inner})"
        #: Whether the solvers drive Numba kernels.
        self.numba_kernels = self.inner == "numba"
        self._digest: str | None = None

    def device_context(self) -> AbstractContextManager[Any]:
        """Chunks are staged on the current device: nothing to switch."""
        return contextlib.nullcontext()

    def backend(
        self, positive: int | None, n_classes: int, progress: Reporter | None = None
    ) -> chunked.ChunkedBackend:
        """The task's chunked backend (it shows ``progress`` its chunks and passes)."""
        return chunked.ChunkedBackend(
            self.chunks.for_class(positive),
            n_classes=n_classes,
            fit_intercept=self.fit_intercept,
            backend=self.inner,
            device=self.device,
            progress=progress,
        )

    def digest(self) -> str:
        """A deterministic digest of the data: the scan's counts and the first chunk's rows."""
        if self._digest is None:
            first = next(iter(self.chunks.dataset.iter_chunks(self.chunks.dtype_arg)))
            X, y, s = self.chunks.prepare(first)
            rows = np.unique(np.linspace(0, X.shape[0] - 1, DIGEST_ROWS).astype(np.int64))
            info = self.chunks.info
            counts = np.concatenate([info.class_counts, info.class_weight_sums, info.chunk_rows])
            parts = [*(to_host(a) for a in _row_parts(X[rows])), y[rows], s[rows], counts]
            self._digest = _digest(parts, self.weight_sum, self.classes)
        return self._digest

    def class_totals(self) -> np.ndarray:
        """The effective (sample x class) weight of each class, from the scan."""
        return self.chunks.class_totals()

    def done_with(self, backend: Backend) -> None:
        """Count the passes a task's backend made, before it goes."""
        if self.n_passes is not None and isinstance(backend, chunked.ChunkedBackend):
            self.n_passes += backend.n_passes

    def batches(
        self, positive: int | None, config: MinibatchConfig, seed: int
    ) -> tuple[BatchSource, float]:
        device = self.device
        fraction = config.validation_fraction if config.early_stopping else None
        source = DatasetBatches(
            self.chunks.for_class(positive),
            to_device=lambda a: backends.to_device(a, device),
            xp=chunked.device_namespace(device),
            validation_fraction=fraction,
            rng=np.random.default_rng([seed, 0]),
        )
        return source, source.n_train / self.n_samples

    def batch_backend_factory(self, n_classes: int) -> BackendFactory:
        return _factory(self.inner, self.device, n_classes, self.fit_intercept)


def _factory(name: str, device: str, n_classes: int, fit_intercept: bool) -> BackendFactory:
    """Builds the one backend of a mini-batch fit on a batch's rows."""

    def make(X: Array, y: Array, s: Array) -> BatchBackend:
        backend = backends.make_backend(
            X, y, s, n_classes=n_classes, fit_intercept=fit_intercept, backend=name, device=device
        )
        return cast(BatchBackend, backend)  # the in-memory backends all bind

    return make


Source = ArraySource | DatasetSource


def solver_blas(source: Source) -> AbstractContextManager[Any]:
    """BLAS on one thread while the solvers drive Numba kernels (see :mod:`gpulogreg._blas`).

    The solvers' vector arithmetic calls BLAS; OpenBLAS's threads would keep
    spinning against the Numba threads of the next pass over the data.
    """
    return one_blas_thread() if source.numba_kernels else contextlib.nullcontext()


# --------------------------------------------------------------------------- the route
def run_fit(
    X: Any, y: Any, sample_weight: Any, spec: FitSpec, previous: PreviousFit | None
) -> FitOutcome:
    """Validate the data, fit every task, and hand back host results.

    Parameters
    ----------
    X : array-like, Dask array or Dataset
    y, sample_weight : array-like or None (None for a Dataset, which carries them)
    spec : FitSpec
    previous : PreviousFit, optional
        The fitted model to warm start from (only used when it matches).
    """
    source = open_source(X, y, sample_weight, spec)
    outcome = fit_source(source, spec, previous)
    on_data_device = source.device_context()  # a device handle: it holds no data
    del source  # the device copies of the data go before the pool is emptied
    release_device_memory(outcome.device, on_data_device)
    return outcome


def open_source(X: Any, y: Any, sample_weight: Any, spec: FitSpec) -> Source:
    """The validated data of a fit, placed on its training device once.

    Parameters
    ----------
    X : array-like, Dask array or Dataset
    y, sample_weight : array-like or None (None for a Dataset, which carries them)
    spec : FitSpec
    """
    if isinstance(X, Dataset):
        if y is not None or sample_weight is not None:
            raise InputValueError(
                "fit(dataset) takes the labels and weights from the Dataset; do not pass "
                "y or sample_weight"
            )
        return DatasetSource(X, spec)
    _check_y_present(y)
    if _stochastic(spec.solver) and array_module_name(X) == "dask":
        raise InputValueError("solver='minibatch' takes no Dask arrays: use newton, lbfgs or gd")
    data = prepare_fit_data(X, y, sample_weight, class_weight=spec.class_weight, dtype=spec.dtype)
    return ArraySource(data, spec)


def release_device_memory(device: str, on_data_device: AbstractContextManager[Any]) -> None:
    """Hand CuPy's cached blocks back after a GPU fit (once the sources are gone)."""
    if device == "gpu":
        with on_data_device:  # CuPy's pools are per device: empty the data's
            backends.release_device_memory()


def fit_source(source: Source, spec: FitSpec, previous: PreviousFit | None) -> FitOutcome:
    """Fit every task of ``spec`` on an opened source; host results.

    ``previous``: the fitted model to warm start from (only used when it matches).
    """
    positives, n_model_classes = plan_tasks(
        len(source.classes), spec.multi_class, binary_only=spec.intercept_scaling is not None
    )
    layout = ParamLayout.for_classes(source.n_features, n_model_classes, spec.fit_intercept)
    starts = warm_start_params(previous, source.classes, source.n_features, layout, len(positives))
    if spec.sklearn_callbacks is not None:
        _begin_callbacks(spec, source, layout, starts, len(positives))
    with source.device_context(), solver_blas(source):
        solved = [
            _solve_task(
                source,
                spec,
                layout,
                positive,
                None if starts is None else starts[index],
                task=(index, len(positives)),
            )
            for index, positive in enumerate(positives)
        ]
    # Every task has the same format and number of parameters: one solver name.
    return _outcome(source, layout, [result for result, _ in solved], solved[0][1], spec)


def _begin_callbacks(
    spec: FitSpec,
    source: Source,
    layout: ParamLayout,
    starts: list[np.ndarray] | None,
    n_tasks: int,
) -> None:
    """Tell scikit-learn's callbacks the fit's tasks (see :mod:`gpulogreg._sklearn_callbacks`)."""
    assert spec.sklearn_callbacks is not None
    fixed: dict[str, Any] = {"classes_": source.classes, "n_features_in_": int(source.n_features)}
    if source.feature_names is not None:
        fixed["feature_names_in_"] = source.feature_names
    spec.sklearn_callbacks.begin(
        layout=layout,
        starts=[layout.zeros(np) for _ in range(n_tasks)] if starts is None else starts,
        max_iter=spec.max_iter,
        centre=spec.l1_ratio == 0.0,
        dtype=source.dtype,
        fixed=fixed,
    )


def _outcome(
    source: Source, layout: ParamLayout, results: list[SolverResult], solver: str, spec: FitSpec
) -> FitOutcome:
    """The fit's results with what the source knows (classes, names, where it ran)."""
    return FitOutcome(
        centre_coef=spec.l1_ratio == 0.0,
        dtype=source.dtype,
        classes=source.classes,
        n_features=source.n_features,
        feature_names=source.feature_names,
        layout=layout,
        results=results,
        backend=source.ran,
        device=source.device,
        solver=solver,
        n_passes=source.n_passes,
    )


def _stochastic(solver: str) -> bool:
    """Whether ``solver`` (a registry name or ``"auto"``, never stochastic) takes batches."""
    return solver != "auto" and solver_entry(solver).stochastic


def _solve_task(
    source: Source,
    spec: FitSpec,
    layout: ParamLayout,
    positive: int | None,
    start: np.ndarray | None,
    *,
    task: tuple[int, int],
) -> tuple[SolverResult, str]:
    """Fit one model (the whole multinomial model, or one one-vs-rest class).

    Returns the result and the solver that ran (``"auto"`` resolved from the backend).
    """
    name = spec.solver
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    progress = Reporter(bar=spec.verbose, listener=spec.callback, task=task[0])
    if _stochastic(name):
        checkpoint = _checkpoint_for(spec.checkpoint_path, *task)
        seed = _minibatch_seed(checkpoint, spec.random_state)
        batches, train_fraction = source.batches(positive, spec.minibatch, seed)
        xp = batches.xp
        problem = MinibatchProblem(
            source=batches,
            make_backend=source.batch_backend_factory(n_classes),
            penalty=Penalty.build(
                layout,
                xp,
                C=spec.C,
                l1_ratio=spec.l1_ratio,
                weight_sum=source.weight_sum * train_fraction,
                intercept_scaling=spec.intercept_scaling,
            ),
            config=spec.minibatch,
            seed=seed,
            fingerprint=_fingerprint(spec, source, task[0]),
            checkpoint_path=checkpoint,
        )
        params0 = _start(start, layout, xp)
        target: Any = problem
    else:
        backend = source.backend(positive, n_classes, progress)
        if name == "auto":
            name = auto_solver(
                l1_ratio=spec.l1_ratio, data_format=backend.format, n_params=layout.n_params
            )
        objective = _objective(backend, spec, source.weight_sum)
        params0 = _start(start, layout, objective.xp)
        target = objective
    solver = get_solver(name)
    iterations = _iterations(spec, task[0], name)
    result = solver(
        target,
        params0,
        tol=spec.tol,
        max_iter=spec.max_iter,
        callback=iterations,
        progress=progress,
    )
    if _stochastic(name):
        # The history holds per-epoch estimates; objective_ is exact (one pass).
        objective = _objective(source.backend(positive, n_classes), spec, source.weight_sum)
        result.objective = objective.value(result.params) + objective.penalty_l1(result.params)
    source.done_with(objective.backend)
    result.params = host_float64(result.params)
    if iterations is not None:
        iterations.close(result.params)
    return result, name


def _iterations(spec: FitSpec, task: int, solver: str) -> Iterations | None:
    """The scikit-learn callbacks' iteration tasks of ``task`` (None without callbacks)."""
    if spec.sklearn_callbacks is None:
        return None
    return spec.sklearn_callbacks.iterations(task, solver)


def _objective(backend: Backend, spec: FitSpec, weight_sum: float) -> LogisticObjective:
    return LogisticObjective(
        backend,
        C=spec.C,
        l1_ratio=spec.l1_ratio,
        weight_sum=weight_sum,
        intercept_scaling=spec.intercept_scaling,
    )


def _start(start: np.ndarray | None, layout: ParamLayout, xp: Any) -> Array:
    return layout.zeros(xp) if start is None else xp.asarray(start, dtype=xp.float64)


def _check_y_present(y: Any) -> None:
    if y is None:
        raise InputValueError(
            "requires y to be passed, but the target y is None; fit(X, y) needs the class labels"
        )


# --------------------------------------------------------------------------- checkpoints
def _checkpoint_for(path: Any, task: int, n_tasks: int) -> str | None:
    """Checkpoint file of one task (one-vs-rest tasks get ``stem.class<k>.suffix``)."""
    if path is None:
        return None
    path = os.fspath(path)
    if n_tasks == 1:
        return str(path)
    root, ext = os.path.splitext(path)
    return f"{root}.class{task}{ext}"


def _minibatch_seed(checkpoint: str | None, random_state: Any) -> int:
    """The run's seed: the checkpoint's when resuming, else from ``random_state``."""
    from gpulogreg.checkpoint import load_checkpoint

    if checkpoint is not None and os.path.exists(checkpoint):
        seed = load_checkpoint(checkpoint).meta.get("seed")
        if isinstance(seed, int):
            return seed
    return resolve_seed(random_state)


#: Rows of the data in a checkpoint's digest (evenly spaced): enough to tell data
#: sets apart, few enough to cost nothing next to an epoch.
DIGEST_ROWS = 64


def _row_parts(rows: Array) -> list[Array]:
    """The arrays that say what sampled rows of ``X`` hold: the rows, or a CSR matrix's
    stored values, indices and row pointers (a dense copy could be n_features wide)."""
    return [rows.data, rows.indices, rows.indptr] if is_sparse(rows) else [rows]


def _digest(arrays: list[np.ndarray], weight_sum: float, classes: np.ndarray) -> str:
    """BLAKE2b of the arrays' bytes (C order), the weight sum and the classes."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(np.float64(weight_sum).tobytes())
    h.update(repr([str(c) for c in classes]).encode())
    return h.hexdigest()


def _fingerprint(spec: FitSpec, source: Source, task: int) -> dict[str, Any]:
    """What a checkpoint must have been written for to be resumed by this fit."""
    return {
        "n_samples": int(source.n_samples),
        "n_features": int(source.n_features),
        "classes": [str(c) for c in source.classes],
        "C": None if math.isinf(spec.C) else float(spec.C),
        "l1_ratio": float(spec.l1_ratio),
        "fit_intercept": bool(spec.fit_intercept),
        "multi_class": str(spec.multi_class),
        "class_weight": repr(spec.class_weight),
        "task": int(task),
        "dtype": str(np.dtype(source.dtype)),
        "random_state": spec.random_state if isinstance(spec.random_state, int) else None,
        "data": source.digest(),
    }


# --------------------------------------------------------------------------- partial_fit
@dataclass
class PartialFitState:
    """The mini-batch trainers ``partial_fit`` continues, one per task.

    A model file keeps it (:meth:`saved`, :meth:`restored`), so a loaded model
    continues exactly as the saved one would have.
    """

    trainers: list[MinibatchTrainer]
    layout: ParamLayout
    weight_seen: float = 0.0

    def saved(self) -> TrainingState:
        """A host copy for a model file (each trainer's history is the model's ``history_``)."""
        tasks = []
        for trainer in self.trainers:
            state = trainer.state()
            del state.meta["history"]
            tasks.append(state)
        return TrainingState(self.layout, self.weight_seen, tuple(tasks))

    @classmethod
    def restored(cls, saved: TrainingState, histories: list[Any]) -> PartialFitState:
        """The state :meth:`saved` gave, on the host, with the model's histories (one per task).

        Raises
        ------
        ValueError
            ``saved`` or ``histories`` do not make a state (a corrupt file).
        """
        if len(histories) != len(saved.tasks) or not all(
            isinstance(h, MinibatchHistory) for h in histories
        ):
            raise ValueError("the model's history_ is not one mini-batch history per task")
        trainers = [
            _restored_trainer(
                CheckpointState(task.arrays, {**task.meta, "history": history.as_dict()}),
                saved.layout,
                np,
            )
            for task, history in zip(saved.tasks, histories, strict=True)
        ]
        return cls(trainers, saved.layout, saved.weight_seen)


def _restored_trainer(state: CheckpointState, layout: ParamLayout, xp: Any) -> MinibatchTrainer:
    """A trainer continuing ``state`` in the namespace ``xp``.

    Its penalty and configuration are placeholders: :func:`run_partial_fit`
    sets both on every call, and the optimiser comes from ``state``.
    """
    trainer = MinibatchTrainer(
        xp.zeros(layout.n_params),
        penalty=Penalty.build(layout, xp, C=math.inf, l1_ratio=0.0, weight_sum=1.0),
        config=MinibatchConfig(),
        seed=0,
    )
    trainer.restore(state)
    return trainer


def _on_namespace(trainer: MinibatchTrainer, layout: ParamLayout, xp: Any) -> MinibatchTrainer:
    """``trainer``, moved to ``xp`` when it lives elsewhere (a loaded model trained on a GPU)."""
    return trainer if trainer.xp is xp else _restored_trainer(trainer.state(), layout, xp)


def run_partial_fit(
    X: Any,
    y: Any,
    sample_weight: Any,
    classes: Any,
    spec: FitSpec,
    previous: PreviousFit | None,
    state: PartialFitState | None,
) -> tuple[FitOutcome, PartialFitState]:
    """One epoch of mini-batch training per task on ``(X, y)``, continuing ``state``.

    ``classes`` (every label the model will see) is required on the first call
    and must match the fitted classes on later ones. The penalty is the full
    objective's for all the data seen so far.
    """
    classes = _partial_fit_classes(classes, previous)
    _check_y_present(y)
    if array_module_name(X) == "dask":
        raise InputTypeError("partial_fit does not take Dask arrays: fit(X, y) trains on them")
    if isinstance(spec.class_weight, str):
        raise InputValueError(
            "class_weight='balanced' needs the class counts of the whole data, which "
            "partial_fit does not see; pass a dict of class weights"
        )
    if previous is not None:
        # names first (as scikit-learn): a renamed or missing column is named, not counted
        check_feature_names(X, previous.feature_names, owner="LogisticRegression", warn=False)
        _check_features(X, previous)
    data = prepare_fit_data(
        X,
        y,
        sample_weight,
        class_weight=spec.class_weight,
        classes=classes,
        dtype=spec.dtype,
        min_classes=1,
    )
    if previous is not None:
        _check_features(data.X, previous)
    source = ArraySource(data, spec)
    del data
    if source.feature_names is None and previous is not None:
        source.feature_names = previous.feature_names  # an array chunk keeps the fitted names
    positives, n_model_classes = plan_tasks(
        len(classes), spec.multi_class, binary_only=spec.intercept_scaling is not None
    )
    layout = ParamLayout.for_classes(source.n_features, n_model_classes, spec.fit_intercept)
    xp = array_namespace(source.X)
    if state is None or len(state.trainers) != len(positives) or state.layout != layout:
        starts = warm_start_params(previous, classes, source.n_features, layout, len(positives))
        seed = resolve_seed(spec.random_state)
        trainers = [
            MinibatchTrainer(
                _start(None if starts is None else starts[k], layout, xp),
                penalty=Penalty.build(layout, xp, C=math.inf, l1_ratio=0.0, weight_sum=1.0),
                config=spec.minibatch,
                seed=seed + k,
            )
            for k in range(len(positives))
        ]
        state = PartialFitState(trainers=trainers, layout=layout)
    else:
        state.trainers = [_on_namespace(t, layout, xp) for t in state.trainers]
    state.weight_seen += source.weight_sum
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    backend = BoundBackend(source.batch_backend_factory(n_classes))
    results = []
    with source.device_context(), solver_blas(source):
        for trainer, positive in zip(state.trainers, positives, strict=True):
            trainer.config = spec.minibatch
            trainer.penalty = Penalty.build(
                layout,
                xp,
                C=spec.C,
                l1_ratio=spec.l1_ratio,
                weight_sum=state.weight_seen,
                intercept_scaling=spec.intercept_scaling,
            )
            batches, _ = source.batches(positive, spec.minibatch, trainer.seed)
            trainer.run_epoch_recorded(batches, backend)
            result = trainer.result()
            result.params = host_float64(result.params)
            results.append(result)
    return _outcome(source, layout, results, "minibatch", spec), state


def _partial_fit_classes(classes: Any, previous: PreviousFit | None) -> np.ndarray:
    """The classes of a partial_fit call: given on the first call, the fitted ones later."""
    if classes is None:
        if previous is None:
            raise InputValueError("classes must be passed on the first call to partial_fit")
        return previous.classes
    classes = check_labels(classes)
    if previous is not None and not np.array_equal(classes, previous.classes):
        raise InputValueError(
            f"classes={shown(classes)} is not the same as on the first call to partial_fit "
            f"(or in fit): {shown(previous.classes)}"
        )
    if len(classes) < 2:
        raise InputValueError(f"classes must hold at least 2 labels, got {shown(classes)}")
    return classes


def _check_features(X: Any, previous: PreviousFit) -> None:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] != previous.n_features:
        raise InputValueError(
            f"X has {shape[1]} features, but LogisticRegression is expecting "
            f"{previous.n_features} features as input"
        )
