"""Pieces every full-batch solver shares: the iteration monitor and its progress report.

A solver owns its mathematics; :class:`Monitor` owns the bookkeeping that must
be identical across solvers so that their results can be compared:

* the one stopping rule, ``objective.optimality(params, grad) <= tol``;
* the :class:`~gpulogreg._typing.History` record, one entry per iteration
  (``len(history) == n_iter``; the starting point is not an iteration), with
  the *full* objective (smooth part plus the L1 term);
* ``max_iter`` (``converged=False`` and a message; the estimator turns it
  into a ``ConvergenceWarning``), the user ``callback`` (``True`` stops) and
  the report of every iteration to the run's
  :class:`~gpulogreg._progress.Reporter` (its listener may stop the run too; its
  bar fills with the optimality's way to ``tol`` on a log scale).

Only Python floats reach this module: the solvers convert the objective and
the optimality to floats once per iteration (the scalars they need on the host
anyway), the iterate itself never leaves its array namespace.
"""

from __future__ import annotations

import math

from gpulogreg._errors import InputValueError
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Callback, History, Objective, SolverResult

__all__ = ["Monitor", "RoundingGuard", "gradient_noise", "require_smooth"]

#: What the progress bar of a full-batch solver measures (see :func:`_log_fraction`).
MEASURE = "optimality -> tol (log)"
#: An accepted step that *raises* the objective by more than this fraction of
#: its value shows that the values are dominated by the data's rounding (a
#: float64 sum of an objective of order one is exact to ~1e-15; float32 data
#: evaluated at float32-rounded coefficients gives ~1e-8).
ROUNDING_RTOL = 1e-12
#: Such rises, while the optimality does not halve, before the gradient's
#: noise is measured (noise raises the value every other iteration; the
#: measurement costs three evaluations, so it stays rare).
NOISE_LIMIT = 10
#: A solver is stopped as "at rounding level" when its optimality is within
#: this factor of the measured gradient noise: below it, directions are
#: dominated by noise.
NOISE_MARGIN = 4.0
#: Relative perturbation of the noise probe: above float32's 6e-8 (so that
#: float32-rounded coefficients change) and small enough that the
#: third-order term of the central difference, ~1e-18, is negligible.
PROBE_RSTEP = 1e-6


def require_smooth(objective: Objective, solver: str) -> None:
    """Raise ``ValueError`` when ``objective`` has an L1 term ``solver`` cannot handle."""
    if objective.l1 > 0:
        raise InputValueError(
            f"solver {solver!r} handles smooth (L2 or unpenalised) objectives only, "
            f"but l1 = {objective.l1:g} > 0; use solver='gd' (proximal FISTA) for L1 "
            "and elastic-net penalties"
        )


class RoundingGuard:
    """Detects a solver that walks on rounding noise instead of converging.

    The line searches accept, in their end game, steps certified by slopes
    even when the value rises slightly (see :mod:`gpulogreg.solvers._linesearch`).
    When ``tol`` is below what the gradient can resolve, the iterates then
    wander at the noise level forever. The symptom is cheap to watch: accepted
    steps *raise* the value by more than :data:`ROUNDING_RTOL` while the
    optimality does not halve. It is not proof: float32 data evaluated at
    float32-rounded coefficients (the NumPy and CuPy baselines) have noisy
    values long before their gradient stops being informative, and
    ill-conditioned problems legitimately take hundreds of iterations to halve
    the gradient. So after ``limit`` (:data:`NOISE_LIMIT`) such rises :meth:`update`
    measures the gradient's noise (:func:`gradient_noise`, two ``value_grad``
    and one ``hvp``) and stops the solver only when the optimality is within
    :data:`NOISE_MARGIN` of it; otherwise it starts counting again. A float64
    problem making genuine progress does not raise its value beyond rounding,
    so it pays nothing; FISTA, which is not monotone, pays three evaluations
    per ten rises at most.
    """

    def __init__(
        self, objective: Objective, optimality: float, *, limit: int = NOISE_LIMIT
    ) -> None:
        self.objective = objective
        self.anchor = optimality
        self.limit = limit
        self.rises = 0
        self.noise = 0.0

    def update(self, x: Array, f_prev: float, f: float, optimality: float) -> bool:
        """Account for one accepted step to ``x``; True when the solver should stop."""
        if optimality <= 0.5 * self.anchor:
            self.anchor = optimality
            self.rises = 0
        if f > f_prev + ROUNDING_RTOL * abs(f_prev):
            self.rises += 1
        if self.rises < self.limit:
            return False
        self.rises = 0
        self.noise = gradient_noise(self.objective, x)
        return optimality <= NOISE_MARGIN * self.noise

    def message(self, optimality: float, tol: float) -> str:
        return (
            "stopped: the gradient is at its rounding level (noise ~"
            f"{self.noise:.1e} measured at the last iterate, optimality {optimality:.3e} > "
            f"tol {tol:.3e}); a tol below ~{NOISE_MARGIN * self.noise:.0e} cannot be resolved "
            "with this data and backend"
        )


def gradient_noise(objective: Objective, x: Array) -> float:
    """Estimate the rounding noise of ``objective``'s gradient at ``x`` (max-norm).

    Compares the central difference of the gradient over ``x +- delta`` with
    the Hessian-vector product ``H delta`` (two ``value_grad`` and one
    ``hvp``): the exact parts agree to third order in ``delta``, so what is
    left is rounding. ``delta`` changes every coordinate by
    :data:`PROBE_RSTEP` of its magnitude (alternating signs): enough to change
    the float32 rounding of the coefficients.
    """
    xp = objective.xp
    magnitude = xp.abs(x)
    floor = float(magnitude.mean()) or 1.0
    signs = 1.0 - 2.0 * (xp.arange(x.shape[0]) % 2)
    delta = PROBE_RSTEP * (magnitude + floor) * signs
    _, g_plus = objective.value_grad(x + delta)
    _, g_minus = objective.value_grad(x - delta)
    residual = 0.5 * (g_plus - g_minus) - objective.hvp(x, delta)
    return float(xp.abs(residual).max())


def _log_fraction(start: float, optimality: float, tol: float) -> float:
    """How far ``optimality`` went from ``start`` down to ``tol``, on a log scale, in [0, 1].

    On a log scale Newton's quadratic convergence and first-order methods'
    linear convergence both look like steady progress.
    """
    if optimality <= tol:
        return 1.0
    if not (start > tol > 0) or not math.isfinite(optimality):
        return 0.0
    return min(max(math.log(start / optimality) / math.log(start / tol), 0.0), 1.0)


class Monitor:
    """Iteration bookkeeping shared by the solvers.

    Parameters
    ----------
    name : str
        Solver name, used in messages and on the progress line.
    tol : float
        Stopping threshold on ``objective.optimality``.
    max_iter : int
        Iteration budget.
    callback : callable, optional
        ``callback(n_iter, params, objective) -> bool | None``; ``True`` stops.
    progress : Reporter, optional
        Where every iteration is reported (its listener returning ``True``
        stops as the callback does); None: nobody watches.

    Notes
    -----
    A solver calls :meth:`converged_at_start` once, then :meth:`step` after
    every iteration; ``step`` returns a :class:`SolverResult` when the solver
    must stop (converged, callback, ``max_iter``) and ``None`` otherwise. A
    solver that cannot make progress calls :meth:`stop` with its reason.
    """

    def __init__(
        self,
        name: str,
        *,
        tol: float,
        max_iter: int,
        callback: Callback | None = None,
        progress: Reporter | None = None,
    ) -> None:
        if not tol >= 0:  # also rejects NaN
            raise InputValueError(f"tol must be >= 0, got {tol!r}")
        if max_iter < 0:
            raise InputValueError(f"max_iter must be >= 0, got {max_iter!r}")
        self.name = name
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.callback = callback
        self.history = History()
        self.n_iter = 0
        self.last_optimality = math.inf
        self.last_objective = math.nan
        self.progress = progress if progress is not None else Reporter()
        self.progress.begin(name, MEASURE)
        self._first_optimality = math.nan  # the empty end of the bar; NaN: an empty bar

    def converged_at_start(
        self, params: Array, objective: float, optimality: float
    ) -> SolverResult | None:
        """Result for a starting point that already meets the rule (e.g. a warm start), or None."""
        self.last_optimality = optimality
        self.last_objective = objective
        self._first_optimality = optimality
        if optimality <= self.tol:
            return self.stop(
                params,
                f"the starting point meets the stopping rule ({self._rule(optimality)})",
                converged=True,
            )
        if self.max_iter == 0:
            return self.stop(params, f"max_iter=0 reached ({self._rule(optimality)})")
        return None

    def step(
        self, params: Array, objective: float, optimality: float, step: float
    ) -> SolverResult | None:
        """Record one iteration; return the result when the solver must stop."""
        self.n_iter += 1
        self.last_optimality = optimality
        self.last_objective = objective
        self.history.record(objective, optimality, step, passes=self.progress.passes)
        stop_requested = self.progress.watched and self.progress.iteration(
            self.history.entry(),
            fraction=_log_fraction(self._first_optimality, optimality, self.tol),
            text=self._progress_text(objective, optimality, self.history.elapsed[-1]),
        )
        if self.callback is not None:
            stop_requested = bool(self.callback(self.n_iter, params, objective)) or stop_requested
        if not math.isfinite(objective) or not math.isfinite(optimality):
            return self.stop(
                params,
                f"the objective or the gradient became non-finite ({objective}, {optimality})",
            )
        if optimality <= self.tol:
            return self.stop(params, f"converged: {self._rule(optimality)}", converged=True)
        if stop_requested:
            return self.stop(params, f"stopped by the callback ({self._rule(optimality)})")
        if self.n_iter >= self.max_iter:
            return self.stop(
                params,
                f"max_iter={self.max_iter} reached before convergence ({self._rule(optimality)})",
            )
        return None

    def stop(self, params: Array, message: str, *, converged: bool = False) -> SolverResult:
        """Build the result; ``message`` says why the solver stopped."""
        message = f"{message} after {self.n_iter} iteration{'s' if self.n_iter != 1 else ''}"
        self.progress.end(f"{self.name}: {message}", converged=converged)
        return SolverResult(
            params=params,
            converged=converged,
            n_iter=self.n_iter,
            history=self.history,
            message=message,
            objective=self.last_objective,
        )

    def _progress_text(self, objective: float, optimality: float, elapsed: float) -> str:
        """The bar's text (the bar itself fills from the starting optimality down to ``tol``)."""
        return (
            f"iter {self.n_iter:>{len(str(self.max_iter))}d}/{self.max_iter}"
            f"  objective {objective:.10g}  optimality {optimality:.3e} (tol {self.tol:.1e})"
            f"  {elapsed:.2f}s"
        )

    def _rule(self, optimality: float) -> str:
        relation = "<=" if optimality <= self.tol else ">"
        return f"optimality {optimality:.3e} {relation} tol {self.tol:.3e}"
