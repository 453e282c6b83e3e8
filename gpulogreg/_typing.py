"""Shared types: array aliases, the backend protocol and solver result types.

Conventions used across the package
-----------------------------------
* ``params`` is the flat float64 parameter vector the solvers iterate on. For a
  binary model it is ``[coef_0, ..., coef_{n-1}, intercept]`` (the intercept is
  present only when ``fit_intercept``). For a multinomial model with ``K``
  classes it is the C-order ravel of a ``(K, n_features + fit_intercept)``
  matrix, intercepts in the last column (scikit-learn's layout).
* ``params`` and every gradient live in the backend's array namespace ``xp``
  (NumPy or CuPy); only Python floats cross to the host inside a solver loop.
* The data term is the *weighted mean* cross-entropy: sample weights are
  normalised by the backend so that they sum to one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from gpulogreg._layout import ParamLayout
from gpulogreg._progress import Reporter

__all__ = [
    "CERTAIN_LOSS",
    "Array",
    "Backend",
    "BatchBackend",
    "History",
    "Information",
    "MinibatchHistory",
    "Objective",
    "SolverFn",
    "SolverResult",
]

#: Any array the package computes with: ``numpy.ndarray`` or ``cupy.ndarray``.
Array = Any


#: A row is "fitted with certainty" when its loss is below this: the
#: probability of its own label is within 1e-10 of one (``|z| > 23`` binary).
CERTAIN_LOSS = 1e-10


@dataclass
class Information:
    """One pass of sums at fixed parameters: what coefficient inference needs.

    Attributes
    ----------
    hessian : array of shape (n_params, n_params), float64
        Hessian of the weighted mean loss (normalised weights).
    loss : float
        The weighted mean loss.
    gradient : array of shape (n_params,), float64
        Its gradient (zero at the unpenalised optimum).
    certain : float
        Normalised weight of the rows whose loss is below :data:`CERTAIN_LOSS`
        (fitted probabilities numerically 0 or 1: a sign of separation).
    """

    hessian: Array
    loss: float
    gradient: Array
    certain: float


@runtime_checkable
class Backend(Protocol):
    """What a compute backend offers the objective and the solvers.

    A backend is built once per fit from validated arrays and owns them: it
    never copies ``X`` again. All gradients and Hessians are float64 whatever
    the dtype of ``X``.

    Attributes
    ----------
    name : str
        Registry name (``"numpy"``, ``"numba"``, ``"cupy"``).
    format : str
        The storage of ``X``: ``"dense"`` or ``"csr"`` (``solver="auto"``
        reads it).
    xp : module
        Array namespace of ``params`` and of every returned array.
    dtype : numpy.dtype
        dtype of ``X`` (float32 or float64).
    n_samples, n_features : int
        Shape of ``X``.
    layout : ParamLayout
        The parameter layout (outputs, intercepts, split and join).
    """

    name: str
    format: str
    xp: ModuleType
    dtype: np.dtype[Any]
    n_samples: int
    n_features: int
    layout: ParamLayout

    def loss_grad(self, params: Array) -> tuple[float, Array]:
        """Weighted mean cross-entropy and its gradient, in one fused pass.

        Parameters
        ----------
        params : array of shape (n_params,), float64

        Returns
        -------
        loss : float
        grad : array of shape (n_params,), float64
        """
        ...

    def loss_grad_lazy(self, params: Array) -> tuple[Any, Array]:
        """:meth:`loss_grad` with the loss left where it was computed.

        The loss is a Python float or a 0-d float64 array on the backend's
        device (CuPy), so that the objective fetches it together with the
        penalty and a directional derivative in one transfer.
        """
        ...

    def loss(self, params: Array) -> float:
        """Weighted mean cross-entropy only (cheaper: no gradient pass)."""
        ...

    def hessian(self, params: Array) -> Array:
        """Hessian of the weighted mean cross-entropy, shape (n_params, n_params)."""
        ...

    def hvp(self, params: Array, v: Array) -> Array:
        """Hessian-vector product of the weighted mean cross-entropy, shape (n_params,)."""
        ...

    def hessian_diagonal(self, params: Array) -> Array:
        """The diagonal of :meth:`hessian`, shape (n_params,), float64, in ``xp``.

        Binary ``sum_i s_i p_i (1 - p_i) a_ij^2``; multinomial, for class ``k``,
        ``sum_i s_i P_ik (1 - P_ik) a_ij^2`` (``a_i = [x_i, 1]``, normalised
        weights ``s``): one pass over the data, never the Hessian itself (the
        preconditioner of Newton-CG on wide data).
        """
        ...

    def information(self, params: Array) -> Information:
        """What inference needs at the fitted parameters, from one pass where the backend fuses it.

        The Hessian (with the float64 linear predictor), the loss, the
        gradient and the weight of the rows fitted with certainty (see
        :class:`Information`); the Numba backend and the sums of parts read
        the data once for all of it.
        """
        ...

    def meat(self, params: Array) -> Array:
        """``sum_i s_i g_i g_i^T``, the meat of the sandwich covariance, shape (n_params, n_params).

        ``g_i`` is the gradient of row ``i``'s unweighted loss with respect to
        ``params`` and ``s_i`` its normalised weight: binary
        ``g_i = (p_i - y_i) a_i`` with ``a_i = [x_i, 1]`` (``[x_i]`` without an
        intercept); multinomial, block ``(k, j)`` of the meat is
        ``A^T diag(s R_k R_j) A`` with ``R = softmax(Z) - onehot(y)``. float64,
        in ``xp``. With frequency weights ``w_i = W s_i`` the HC0 meat of
        statsmodels' GLM is ``W * meat``.
        """
        ...

    def cluster_scores(self, params: Array, groups: Array, n_groups: int) -> Array:
        """Per-group sums of the weighted row gradients, shape (n_groups, n_params).

        Row ``c`` is ``sum_{i: groups[i] == c} s_i g_i`` (``g_i`` as in
        :meth:`meat`), so that ``S^T S`` is the meat of the cluster-robust
        covariance. ``groups`` holds one int64 group index in
        ``[0, n_groups)`` per row of the data, in the data's row order, in
        ``xp``. float64, in ``xp``; deterministic.
        """
        ...

    def gram_matvec(self, v: Array) -> Array:
        """``A^T S A v`` where ``A = [X, 1]`` and ``S`` the normalised weights.

        Used to bound the Lipschitz constant of the gradient by power iteration.
        ``v`` has shape ``(n_features + fit_intercept,)``.
        """
        ...

    def decision(self, params: Array, X: Array) -> Array:
        """Decision values ``X @ coef.T + intercept``: (m,) binary, (m, K) multinomial."""
        ...


class BatchBackend(Backend, Protocol):
    """A backend that can move to other rows of the same layout (mini-batches)."""

    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        """Compute on ``(X, y, sample_weight)`` from now on (same features, dtype, namespace)."""
        ...


class Objective(Protocol):
    """What a solver sees: the penalised objective over a backend (see :mod:`gpulogreg.loss`)."""

    xp: ModuleType
    layout: ParamLayout
    n_params: int
    l1: float
    l2: float

    def value_grad(self, params: Array) -> tuple[float, Array]: ...

    def value_grad_slope(self, params: Array, d: Array) -> tuple[float, Array, float]: ...

    def value(self, params: Array) -> float: ...

    def hessian(self, params: Array) -> Array: ...

    def hvp(self, params: Array, v: Array) -> Array: ...

    def hessian_diagonal(self, params: Array) -> Array: ...

    def penalty_curvature(self, v: Array) -> Array:
        """The L2 term's Hessian times ``v`` (no pass over the data)."""
        ...

    def lipschitz_bound(self) -> float: ...

    def prox_l1(self, params: Array, step: float) -> Array: ...

    def penalty_l1(self, params: Array) -> float: ...

    def penalty_l1_lazy(self, params: Array) -> Any: ...

    def optimality(self, params: Array, grad: Array) -> float: ...

    def optimality_lazy(self, params: Array, grad: Array) -> Array: ...


@dataclass
class History:
    """Per-iteration record of a fit.

    Attributes
    ----------
    objective : list of float
        Penalised objective (divided by the sum of sample weights).
    optimality : list of float
        The solver's optimality, the quantity compared with ``tol``: the
        max-norm of the (scaled) gradient or, with L1, of the proximal
        optimality residual.
    step : list of float
        Step length accepted at that iteration.
    elapsed : list of float
        Seconds since the solver started.
    passes : list of float
        Full passes over the data since the solver started, where the backend
        counts them (a fit on a :class:`~gpulogreg.Dataset`); empty otherwise.
    unit : str
        What one entry is: ``"iteration"`` (``"epoch"`` for mini-batch fits).
    """

    unit: ClassVar[str] = "iteration"

    objective: list[float] = field(default_factory=list)
    optimality: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    passes: list[float] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def record(
        self, objective: float, optimality: float, step: float, passes: int | None = None
    ) -> None:
        """Append one iteration (``passes``: the data passes so far, where counted)."""
        self.objective.append(float(objective))
        self.optimality.append(float(optimality))
        self.step.append(float(step))
        self.elapsed.append(time.perf_counter() - self._start)
        if passes is not None:
            self.passes.append(float(passes))

    def __len__(self) -> int:
        return len(self.objective)

    def entry(self, index: int = -1) -> dict[str, Any]:
        """One iteration as a record: what progress listeners and ``--log-json`` receive.

        Parameters
        ----------
        index : int
            Position in the history (the newest by default).

        Returns
        -------
        dict
            ``iteration`` (counted from 1), ``objective``, ``optimality``,
            ``step``, ``seconds`` (:attr:`elapsed`) and ``passes`` where recorded.
        """
        i = range(len(self))[index]
        out: dict[str, Any] = {
            "iteration": i + 1,
            "objective": self.objective[i],
            "optimality": self.optimality[i],
            "step": self.step[i],
            "seconds": self.elapsed[i],
        }
        if self.passes:
            out["passes"] = int(self.passes[i])
        return out

    def as_dict(self) -> dict[str, list[float]]:
        """Plain-data copy (for JSON and persistence); ``passes`` only where recorded."""
        out = {
            "objective": list(self.objective),
            "optimality": list(self.optimality),
            "step": list(self.step),
            "elapsed": list(self.elapsed),
        }
        if self.passes:
            out["passes"] = list(self.passes)
        return out

    def plot(self, ax: Any = None, *, x: str = "seconds", reference: float | None = None) -> Any:
        """Draw the convergence: the objective gap and the optimality against ``x``.

        Builds a matplotlib ``Figure`` directly when ``ax`` is None (pyplot is
        never imported and the user's backend never changed); in a notebook,
        display ``ax.figure``.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; default a new Figure's one Axes.
        x : {"seconds", "passes", "iteration"}
            The horizontal axis: time since the solver started, full passes
            over the data (recorded for fits on a Dataset only) or the
            iteration (the epoch for mini-batch fits).
        reference : float, optional
            The objective's optimum; default the smallest objective recorded
            (whose gap of zero is then not drawn on the log scale).

        Returns
        -------
        matplotlib.axes.Axes
            With two lines, labelled "objective gap" and "optimality".
        """
        from gpulogreg._plot import plot_history

        return plot_history(self, ax, x=x, reference=reference)


@dataclass
class MinibatchHistory(History):
    """Per-epoch record: :class:`History` plus the validation log loss.

    ``objective`` is the epoch's *estimate* (mean of the batch objectives seen
    during the epoch); ``optimality`` the max-norm of the mean batch gradient;
    ``step`` the learning rate at the end of the epoch;
    ``validation_loss`` NaN when there is no validation set.
    """

    unit: ClassVar[str] = "epoch"

    validation_loss: list[float] = field(default_factory=list)

    def record_epoch(
        self, objective: float, optimality: float, step: float, validation_loss: float
    ) -> None:
        self.record(objective, optimality, step)
        self.validation_loss.append(float(validation_loss))

    def entry(self, index: int = -1) -> dict[str, Any]:
        """:meth:`History.entry` plus ``validation_loss`` where there is a validation set."""
        out = super().entry(index)
        loss = self.validation_loss[range(len(self))[index]]
        if not math.isnan(loss):
            out["validation_loss"] = loss
        return out

    def as_dict(self) -> dict[str, list[float]]:
        out = super().as_dict()
        out["validation_loss"] = list(self.validation_loss)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> MinibatchHistory:
        h = cls()
        h.objective = [float(v) for v in data.get("objective", [])]
        # Checkpoints written before the field was renamed call it "grad_max_norm".
        optimality = data.get("optimality", data.get("grad_max_norm", []))
        h.optimality = [float(v) for v in optimality]
        h.step = [float(v) for v in data.get("step", [])]
        h.elapsed = [float(v) for v in data.get("elapsed", [])]
        h.validation_loss = [float(v) for v in data.get("validation_loss", [])]
        if h.elapsed:
            h._start = time.perf_counter() - h.elapsed[-1]
        return h


@dataclass
class SolverResult:
    """What every solver returns.

    Attributes
    ----------
    params : array of shape (n_params,), float64, in the backend's namespace
    converged : bool
        Whether the stopping rule (``optimality <= tol``) was met.
    n_iter : int
        Iterations performed.
    history : History
    message : str
        Why the solver stopped.
    objective : float
        Objective at ``params`` (NaN when the solver does not know it).
    """

    params: Array
    converged: bool
    n_iter: int
    history: History
    message: str = ""
    objective: float = math.nan


class Callback(Protocol):
    """Called after each iteration; returning ``True`` stops the solver."""

    def __call__(self, n_iter: int, params: Array, objective: float) -> bool | None: ...


class SolverFn(Protocol):
    """Signature every registered solver implements.

    ``problem`` is the :class:`Objective` for the full-batch solvers and a
    ``MinibatchProblem`` for the stochastic one (see :mod:`gpulogreg.solvers`);
    ``progress`` is where the solver reports every iteration (its listener and
    its bar; None: nobody watches).
    """

    def __call__(
        self,
        problem: Any,
        params0: Array,
        *,
        tol: float,
        max_iter: int,
        callback: Callback | None = None,
        progress: Reporter | None = None,
    ) -> SolverResult: ...
