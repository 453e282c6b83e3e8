"""scikit-learn's callbacks (``set_callbacks``, scikit-learn 1.9+) on gpulogreg's solvers.

scikit-learn's callbacks see a fit as a tree of tasks, each begun and ended
with a hook call (``on_fit_task_begin`` / ``on_fit_task_end``) that can ask for
``fitted_estimator``: a copy of the estimator ready to predict as if the fit
had stopped there. gpulogreg's fit is the tree::

    fit                                    (the root)
    |- ovr-class 0, 1, ...                 (one-vs-rest only: a binary model per class)
       |- <solver>-iter 0, 1, ...          (one per solver iteration; minibatch: per epoch)

An iteration task begins at the iterate it starts from and ends at the one it
reached. As scikit-learn's lbfgs words its contract, there is always at least
one iteration task (a fit that stops at its start, ``max_iter=0`` or a warm
start that meets ``tol``, has one that changes nothing), and one more, empty,
task follows the last iteration (begun before the solver knew it was done).
An ``on_fit_task_end`` hook returning True stops the solver after that
iteration (the fit is then not converged).

:class:`FitCallbacks` holds one fit's tree. The estimator's ``fit`` makes it
(:meth:`FitCallbacks.for_estimator`, its own root task); the drop-in
(:mod:`gpulogreg.accel`) makes one under scikit-learn's root
(:meth:`FitCallbacks.within`), where scikit-learn's ``fit`` begins and ends the
root. The fit plan (:mod:`gpulogreg._fit`) tells it the layout and the tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpulogreg._array import host_float64
from gpulogreg._layout import ParamLayout
from gpulogreg._typing import Array

__all__ = ["FitCallbacks", "Iterations"]


def _iteration_subtasks(max_iter: int) -> int:
    """Children of a task whose solver runs up to ``max_iter`` iterations (see the module)."""
    return max(max_iter, 1) + 1


class FitCallbacks:
    """The scikit-learn callback tasks of one fit.

    Parameters
    ----------
    estimator : estimator
        What the hooks receive as ``estimator`` (and copy for ``fitted_estimator``).
    context : CallbackContext or None
        The task the fit's tasks go under; None: the estimator's own root
        (made by :meth:`begin` with its ``_init_callback_context``).
    X, y, metadata
        What the hooks receive (``metadata``: ``{"sample_weight": ...}`` or None).
    """

    def __init__(
        self,
        estimator: Any,
        context: Any,
        *,
        X: Any,
        y: Any,
        metadata: dict[str, Any] | None,
        stale: tuple[str, ...] = (),
    ) -> None:
        self.estimator = estimator
        self._stale = stale
        self._given_root = context
        self._root: Any = context
        self._hook_data = {"X": X, "y": y, "metadata": metadata}
        self._layout: ParamLayout | None = None
        self._params: list[Any] = []
        self._fixed: dict[str, Any] = {}
        self._dtype: Any = np.float64
        self._centre = False
        self._max_iter = 0
        self._task_contexts: dict[int, Any] = {}

    @classmethod
    def for_estimator(
        cls, estimator: Any, X: Any, y: Any, sample_weight: Any, *, stale: tuple[str, ...] = ()
    ) -> FitCallbacks | None:
        """The tree of ``estimator``'s fit, its own root; None when it has no callbacks.

        ``stale``: the estimator's attributes of an earlier fit, dropped when the
        tree begins (the data are valid by then), so that no ``fitted_estimator``
        (a copy of the estimator) carries them.
        """
        if not getattr(estimator, "_skl_callbacks", None):
            return None
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        return cls(estimator, None, X=X, y=y, metadata=metadata, stale=stale)

    @classmethod
    def within(
        cls, context: Any, estimator: Any, X: Any, y: Any, sample_weight: Any
    ) -> FitCallbacks | None:
        """The tree of a solve under scikit-learn's ``context``; None without callbacks."""
        if context is None or not getattr(estimator, "_skl_callbacks", None):
            return None
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        return cls(estimator, context, X=X, y=y, metadata=metadata)

    # -- the fit plan's calls --------------------------------------------------------
    def begin(
        self,
        *,
        layout: ParamLayout,
        starts: list[np.ndarray],
        max_iter: int,
        centre: bool,
        dtype: Any,
        fixed: dict[str, Any],
    ) -> None:
        """The fit's tasks are known: set up the root (when it is ours) and begin it.

        Parameters
        ----------
        layout : ParamLayout
            The layout of every task's parameters.
        starts : list of ndarray
            Every task's starting parameters (host float64).
        max_iter : int
        centre, dtype
            How parameters become ``coef_``/``intercept_`` (as the fit's outcome).
        fixed : dict
            Fitted attributes every ``fitted_estimator`` gets (``classes_``, ...).
        """
        self._layout = layout
        self._params = list(starts)
        self._centre = centre
        self._dtype = dtype
        self._fixed = fixed
        n_tasks = len(starts)
        for name in self._stale:
            self.estimator.__dict__.pop(name, None)
        if self._given_root is None:
            subtasks = n_tasks if n_tasks > 1 else _iteration_subtasks(max_iter)
            self._root = self.estimator._init_callback_context(max_subtasks=subtasks)
            self._root.call_on_fit_task_begin(estimator=self.estimator, **self._hook_data)
        self._max_iter = max_iter
        self._task_contexts = {}

    def iterations(self, task: int, solver: str) -> Iterations:
        """The iteration tasks of ``task``'s solver (begins the task's first iteration)."""
        context = self._root
        if len(self._params) > 1:  # one-vs-rest: a task per class
            context = self._root.subcontext(
                task_name="ovr-class", max_subtasks=_iteration_subtasks(self._max_iter)
            )
            context.call_on_fit_task_begin(
                estimator=self.estimator,
                **self._hook_data,
                reconstruction_attributes=self._attributes,
            )
        self._task_contexts[task] = context
        name = "minibatch-epoch" if solver == "minibatch" else f"{solver}-iter"
        return Iterations(self, task, context, name)

    def task_done(self, task: int, params: Array) -> None:
        """``task``'s solver stopped at ``params``: end the task (a one-vs-rest class)."""
        self._params[task] = host_float64(params)
        context = self._task_contexts[task]
        if context is not self._root:
            context.call_on_fit_task_end(
                estimator=self.estimator,
                **self._hook_data,
                reconstruction_attributes=self._attributes,
            )

    def end(self) -> None:
        """End the root when it is ours (the estimator is fitted by then)."""
        if self._given_root is None and self._root is not None:
            self._root.call_on_fit_task_end(
                estimator=self.estimator, **self._hook_data, reconstruction_attributes={}
            )

    # -- what the hooks receive -------------------------------------------------------
    def _attributes(self) -> dict[str, Any]:
        """The fitted attributes of the fit as it stands (evaluated only when a hook asks)."""
        assert self._layout is not None
        coef, intercept = self._layout.estimator_coefficients(self._params, centre=self._centre)
        return {
            **self._fixed,
            "coef_": coef.astype(self._dtype),
            "intercept_": intercept.astype(self._dtype),
        }

    def _hook(self, context: Any, hook: str, params: Array | None = None) -> bool:
        """Call ``hook`` of ``context``; with ``params``, the fit's state includes them."""
        call: Callable[..., Any] = getattr(context, hook)
        if params is None:  # the empty task after the last iteration
            return bool(call(estimator=self.estimator))
        return bool(
            call(
                estimator=self.estimator,
                **self._hook_data,
                reconstruction_attributes=self._attributes,
            )
        )


class Iterations:
    """One solver's iteration tasks: the solver's ``callback``, then :meth:`close`.

    Made by :meth:`FitCallbacks.iterations`; the first iteration task begins
    at the task's starting parameters.
    """

    def __init__(self, tree: FitCallbacks, task: int, parent: Any, name: str) -> None:
        self._tree = tree
        self._task = task
        self._parent = parent
        self._name = name
        self._ran = 0
        self._current = self._begin(tree._params[task])

    def _begin(self, params: Array) -> Any:
        self._tree._params[self._task] = params
        context = self._parent.subcontext(task_name=self._name)
        self._tree._hook(context, "call_on_fit_task_begin", params)
        return context

    def _step(self, params: Array) -> bool:
        self._tree._params[self._task] = params
        stop = self._tree._hook(self._current, "call_on_fit_task_end", params)
        self._current = self._begin(params)
        return stop

    def __call__(self, n_iter: int, params: Array, objective: float) -> bool:
        """The solver's callback after an iteration: end it, begin the next; True stops."""
        self._ran += 1
        return self._step(params)

    def close(self, params: Array) -> None:
        """The solver stopped at ``params``: end the empty task (and the class's task)."""
        if self._ran == 0:  # at least one iteration task, as scikit-learn's lbfgs has
            self._step(params)
        self._tree._hook(self._current, "call_on_fit_task_end")
        self._tree.task_done(self._task, params)
