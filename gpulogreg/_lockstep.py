"""Many solver runs in lock step, their evaluations batched into shared passes over ``X``.

The folds of a cross-validation are independent problems over the same rows.
Each runs the ordinary solver (:mod:`gpulogreg.solvers`: its line search,
stopping rule and history unchanged) in a thread of its own, against a
:class:`BrokeredBackend`. A brokered backend does no arithmetic: every call is
a request to the :class:`EvaluationBroker`, which waits until each running
solver has a request outstanding, then serves them all at once, on the
calling thread:

* the loss-and-gradient and loss-only requests of one group (the models of one
  fold evaluator) in one call of :meth:`~gpulogreg.backends.folds.FoldEvaluator.evaluate`,
  i.e. one read of ``X`` for all of them;
* anything else (Hessians, Hessian-vector products) on the fold's own backend,
  one after another.

Every backend call therefore runs on the broker's thread, one at a time (the
Numba kernels' thread pool and the GPU stream see one caller, as in a plain
fit); the solver threads only do their vector arithmetic and wait. A solver
that has finished leaves the round, so a converged fold costs nothing more.
The batches are the same whatever the threads' timing (a round starts only
when every running solver is waiting), so results are reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from gpulogreg._layout import HasLayout, ParamLayout
from gpulogreg._typing import Array, Backend
from gpulogreg.backends.folds import FoldEvaluator

__all__ = ["BackendShape", "BrokeredBackend", "EvaluationBroker"]

T = TypeVar("T")

#: Backend methods served by a fold evaluator (one pass for the whole round).
_BATCHED = ("loss_grad_lazy", "loss")


class _CancelledError(RuntimeError):
    """The broker stopped serving (another solver or the broker itself failed)."""


@dataclass(frozen=True)
class BackendShape:
    """What a brokered backend tells the objective and the solvers about its data."""

    name: str
    format: str
    xp: Any
    dtype: np.dtype[Any]
    n_samples: int
    n_features: int
    layout: ParamLayout


@dataclass
class _Request:
    group: Hashable
    fold: int
    method: str
    args: tuple[Any, ...]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class EvaluationBroker:
    """Serves the backend calls of solver threads, batching them per round.

    Parameters
    ----------
    evaluators : dict
        The fold evaluator of each group (None: the group's folds are served by
        their own backends, one pass each: Dask data).
    fold_backend : callable
        ``fold_backend(group, fold)``: the fold's own backend (built on first
        use, then kept), for the calls an evaluator does not batch.
    """

    evaluators: dict[Hashable, FoldEvaluator | None]
    fold_backend: Callable[[Hashable, int], Backend]
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _pending: list[_Request] = field(default_factory=list)
    _live: int = 0
    _closed: bool = False
    _backends: dict[tuple[Hashable, int], Backend] = field(default_factory=dict)
    #: Rounds served (every running solver had a request in each).
    rounds: int = 0
    #: Passes over the data: one per group's shared evaluation, one per call served alone.
    passes: int = 0

    def backend(self, group: Hashable, fold: int, shape: BackendShape) -> BrokeredBackend:
        """A backend for the solver of ``fold`` in ``group``, of the data ``shape`` describes."""
        return BrokeredBackend(self, group, fold, shape)

    # -- the solver threads' side ----------------------------------------------------
    def call(self, group: Hashable, fold: int, method: str, *args: Any) -> Any:
        """Hand a backend call to the broker and wait for its result (solver threads)."""
        request = _Request(group, fold, method, args)
        with self._cond:
            if self._closed:
                raise _CancelledError("the cross-validation stopped")
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done:
                self._cond.wait()
        if request.error is not None:
            raise request.error
        return request.result

    # -- the broker's side ---------------------------------------------------------------
    def run(
        self,
        jobs: Sequence[Callable[[], T]],
        context: Callable[[], AbstractContextManager[Any]],
    ) -> list[T]:
        """Run ``jobs`` (solver runs using brokered backends) to the end; their results in order.

        Each job runs in its own thread inside ``context()`` (the data's
        device); this thread serves their requests until all have returned.

        Raises
        ------
        BaseException
            The first failure among the jobs (in job order), after all have stopped.
        """
        results: list[Any] = [None] * len(jobs)
        errors: list[BaseException | None] = [None] * len(jobs)

        def work(index: int) -> None:
            try:
                with context():
                    results[index] = jobs[index]()
            except BaseException as error:  # handed to the caller below
                errors[index] = error
                with self._cond:
                    self._closed = True  # one failure stops the others' next calls
            finally:
                with self._cond:
                    self._live -= 1
                    self._cond.notify_all()

        with self._cond:
            self._live = len(jobs)
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        try:
            self._serve()
        finally:
            with self._cond:
                self._closed = True
                for request in self._pending:
                    request.error = _CancelledError("the cross-validation stopped")
                    request.done = True
                self._pending = []
                self._cond.notify_all()
            for thread in threads:
                thread.join()
        real = [e for e in errors if e is not None and not isinstance(e, _CancelledError)]
        if real:
            raise real[0]
        if any(e is not None for e in errors):
            raise next(e for e in errors if e is not None)
        return results

    def _serve(self) -> None:
        while True:
            with self._cond:
                while self._live and len(self._pending) < self._live:
                    self._cond.wait()
                if not self._live:
                    return
                batch, self._pending = self._pending, []
            try:
                self._execute(batch)
            except BaseException:  # an interrupt: the waiting solvers are cancelled
                for request in batch:
                    if request.result is None and request.error is None:
                        request.error = _CancelledError("the cross-validation stopped")
                raise
            finally:
                with self._cond:
                    for request in batch:
                        request.done = True
                    self._cond.notify_all()

    def _execute(self, batch: list[_Request]) -> None:
        """Serve one round: the batched requests per group, then the others."""
        self.rounds += 1
        grouped: dict[Hashable, list[_Request]] = {}
        for request in batch:
            if request.method in _BATCHED and self.evaluators.get(request.group) is not None:
                grouped.setdefault(request.group, []).append(request)
            else:
                self._serve_one(request)
        for group, requests in grouped.items():
            evaluator = self.evaluators[group]
            assert evaluator is not None
            with_grad = any(r.method == "loss_grad_lazy" for r in requests)
            try:
                values = evaluator.evaluate(
                    [r.fold for r in requests], [r.args[0] for r in requests], with_grad=with_grad
                )
            except Exception as error:  # the pass failed: the first solver raises it
                requests[0].error = error
                for request in requests[1:]:
                    request.error = _CancelledError("a shared evaluation failed")
                continue
            self.passes += 1
            for request, (loss, grad) in zip(requests, values, strict=True):
                request.result = (loss, grad) if request.method == "loss_grad_lazy" else float(loss)

    def _serve_one(self, request: _Request) -> None:
        try:
            key = (request.group, request.fold)
            if key not in self._backends:
                self._backends[key] = self.fold_backend(request.group, request.fold)
            request.result = getattr(self._backends[key], request.method)(*request.args)
            self.passes += 1
        except Exception as error:
            request.error = error


class BrokeredBackend(HasLayout):
    """A fold's backend whose calls are served by the :class:`EvaluationBroker`.

    It has the attributes of the :class:`BackendShape` (name, format, namespace,
    dtype, sizes, layout) and the methods the objective and the solvers call.
    """

    def __init__(
        self, broker: EvaluationBroker, group: Hashable, fold: int, shape: BackendShape
    ) -> None:
        self._broker, self._group, self._fold = broker, group, fold
        self.name = shape.name
        self.format = shape.format
        self.xp = shape.xp
        self.dtype = shape.dtype
        self.n_samples = shape.n_samples
        self.n_features = shape.n_features
        self.layout: ParamLayout = shape.layout
        #: The last loss-and-gradient evaluation: (parameters, loss, gradient).
        self._last: tuple[Array, Any, Array] | None = None

    def _call(self, method: str, *args: Any) -> Any:
        return self._broker.call(self._group, self._fold, method, *args)

    def loss_grad_lazy(self, params: Array) -> tuple[Any, Array]:
        """The data term at ``params``; the last point's again without a pass.

        Along a C path each fit starts where the last one stopped, whose data
        term was the last evaluation: only the penalty changed, which the
        objective adds. The last point is kept (parameters, loss, gradient)
        and served from memory when asked for again, exactly.
        """
        last = self._last
        if last is not None and bool(self.xp.array_equal(last[0], params)):
            return last[1], last[2].copy()
        loss, grad = self._call("loss_grad_lazy", params)
        self._last = (self.xp.array(params, copy=True), loss, grad.copy())
        return loss, grad

    def loss_grad(self, params: Array) -> tuple[float, Array]:
        loss, grad = self.loss_grad_lazy(params)
        return float(loss), grad

    def loss(self, params: Array) -> float:
        last = self._last
        if last is not None and bool(self.xp.array_equal(last[0], params)):
            return float(last[1])
        return float(self._call("loss", params))

    def hessian(self, params: Array) -> Array:
        return self._call("hessian", params)

    def hvp(self, params: Array, v: Array) -> Array:
        return self._call("hvp", params, v)

    def hessian_diagonal(self, params: Array) -> Array:
        return self._call("hessian_diagonal", params)

    def gram_matvec(self, v: Array) -> Array:
        return self._call("gram_matvec", v)

    def decision(self, params: Array, X: Array) -> Array:
        return np.asarray(self._call("decision", params, X))
