"""Limited-memory BFGS with a strong Wolfe line search, written once against ``xp``.

Algorithm (Nocedal & Wright, Algorithms 7.4 and 7.5)
----------------------------------------------------
Each iteration:

1. **Direction** ``d = -H_k g`` by the two-loop recursion over the last
   ``memory`` pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i``, with the
   initial matrix ``gamma I``, ``gamma = s.y / y.y`` of the newest pair. With
   no pair stored (first iteration, after a reset) ``d = -g``.
   **Preconditioned** (up to :data:`PRECONDITION_MAX_PARAMS` parameters,
   once :data:`PRECONDITION_AFTER` iterations have not converged): the
   initial matrix becomes the inverse Hessian at the current iterate, and the
   pairs then only correct for how the curvature changes along the path. On
   ill-conditioned data this is the difference between crawling and
   converging (measured on 1,000,000 x 100 float32 with feature scales
   0.03-30: plain L-BFGS was at a relative gap of 9e-3 after 1,000
   iterations; preconditioned it converged to tol=1e-8 in 10).
2. **Line search** for a step ``t`` meeting the strong Wolfe conditions
   (:func:`~gpulogreg.solvers._linesearch.strong_wolfe`, ``c1 = 1e-4``,
   ``c2 = 0.9``), starting from ``t = 1`` (from ``1 / ||g||_2`` for a plain
   gradient direction, whose length carries no curvature information: the
   first trial moves the parameters by a unit distance, as scipy's L-BFGS-B
   does). The unit step is accepted most of the time, so an iteration costs
   about one ``value_grad``: the accepted trial's gradient is reused.
   (Capping that first trial at ``t = 1`` made the weight-normalised
   objective, whose gradient is small, start with a step ~100x too short,
   accepted by the curvature test at a tenth of the line minimum; the
   memory then grew the steps 2-3x per iteration. Measured on the
   text-like CSR set, 50,000 x 30,000, C = 1: 70 iterations to a 1e-8
   relative gap with the cap, 40 without, 55 for scipy's L-BFGS-B.)
3. **Update** ``x += t d``; store ``(s, y)`` when ``s.y > CURVATURE_EPS * y.y``
   (always true for a strictly convex objective and a Wolfe step; the test
   guards against rounding), dropping the oldest pair.
4. **Stop** when ``optimality <= tol`` (see :class:`~gpulogreg.solvers._common.Monitor`),
   at ``max_iter``, on the callback's request, or when no progress is possible.

Rounding level
--------------
A ``tol`` below what the gradient can resolve (float32 data, a tiny ``tol``)
used to make L-BFGS chase noise. Here (a) the line search switches to the
slope-based approximate Wolfe test in the end game, (b) a failed line search
first discards the memory and retries along ``-g``, and if that fails too the
solver stops with a message saying the objective is at rounding level, and (c)
a :class:`~gpulogreg.solvers._common.RoundingGuard` stops it when accepted
steps keep raising the value beyond float64 rounding without the optimality
improving (the iterates wander on the data's rounding noise). The result then
has ``converged=False`` and says why. No test on the number of iterations
without progress is used: on ill-conditioned data L-BFGS legitimately needs
hundreds of iterations to halve the gradient.

Device residency
----------------
The iterate, the gradient and the ``(s, y)`` ring buffer live in ``xp``
(CuPy on a GPU). The two-loop coefficients stay 0-d device arrays. Scalars
cross to the host in batches: each evaluation of the line search brings its
value and slope in one transfer (:meth:`LogisticObjective.value_grad_slope`),
and an iteration adds two more, ``s.y``, ``y.y`` and the optimality together,
then the new direction's slope ``g.d``: three transfers per iteration that
accepts its first step (a test counts them).
"""

from __future__ import annotations

import math
from typing import Any

from gpulogreg._array import host_scalars
from gpulogreg._errors import InputValueError
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Callback, Objective, SolverResult
from gpulogreg.solvers._common import Monitor, RoundingGuard, require_smooth
from gpulogreg.solvers._linesearch import noise_allowance, restrict, strong_wolfe
from gpulogreg.solvers.newton import ridge_cholesky_solve

__all__ = ["PRECONDITION_MAX_PARAMS", "CurvatureCarry", "solve_lbfgs"]

#: Pairs kept (scipy and scikit-learn use 10; more rarely helps on logistic
#: losses and costs 4 n flops per pair and iteration).
MEMORY = 10
#: Up to this many parameters L-BFGS may be preconditioned by an inverse
#: Hessian (``2 m p^2`` flops through BLAS and ``8 p^2`` bytes).
PRECONDITION_MAX_PARAMS = 512
#: Iterations of plain L-BFGS before it is preconditioned. Well-conditioned
#: logistic problems reach tol=1e-8 within about ten iterations (measured: 9
#: on 1,000,000 x 100 standard normal features), and then never pay for a
#: Hessian, which costs about 20 evaluations at that size; a problem still
#: unconverged after ten is ill-conditioned, and the Hessian pays for itself.
PRECONDITION_AFTER = 10
#: A pair is stored only when ``s.y > CURVATURE_EPS * y.y``: positive
#: curvature by more than rounding (keeps the inverse Hessian approximation
#: positive definite).
CURVATURE_EPS = 1e-10


class _Memory:
    """Ring buffer of the last ``size`` curvature pairs, in ``xp``."""

    def __init__(self, xp: Any, size: int, n: int) -> None:
        self.xp = xp
        self.size = size
        self.S = xp.zeros((size, n), dtype=xp.float64)
        self.Y = xp.zeros((size, n), dtype=xp.float64)
        self.rho = [0.0] * size
        self.order: list[int] = []  # slots, oldest first
        self.gamma = 1.0
        #: Inverse Hessian at the start (the initial matrix), or None for gamma I.
        self.h0: Array | None = None

    def __len__(self) -> int:
        return len(self.order)

    @property
    def informed(self) -> bool:
        """Whether the direction carries curvature information (pairs or ``h0``)."""
        return bool(self.order) or self.h0 is not None

    def fall_back(self) -> None:
        """Forget curvature: first the pairs, then the preconditioner."""
        if self.order:
            self.order.clear()
        else:
            self.h0 = None

    def push(self, s: Array, y: Array, sy: float, yy: float) -> None:
        slot = len(self.order) if len(self.order) < self.size else self.order.pop(0)
        self.S[slot] = s
        self.Y[slot] = y
        self.rho[slot] = 1.0 / sy
        self.order.append(slot)
        self.gamma = sy / yy

    def direction(self, g: Array) -> Array:
        """``-H g`` by the two-loop recursion (N&W Algorithm 7.4)."""
        q = g.copy()
        alphas: dict[int, Array] = {}
        for slot in reversed(self.order):
            alpha = self.rho[slot] * (self.S[slot] @ q)  # 0-d array: stays on the device
            q -= alpha * self.Y[slot]
            alphas[slot] = alpha
        r = self.h0 @ q if self.h0 is not None else self.gamma * q
        for slot in self.order:
            beta = self.rho[slot] * (self.Y[slot] @ r)
            r += (alphas[slot] - beta) * self.S[slot]
        return -r


class CurvatureCarry:
    """The curvature pairs of one L-BFGS fit, carried to the next fit of a path.

    Along a regularisation path (the C grid of a cross-validation) consecutive
    problems share the data term and differ by the L2 term only, whose Hessian
    is known exactly. A pair ``(s, y)`` is kept with the L2 part taken out of
    ``y``, and the next fit puts its own L2 part back, ``y = y_data + l2' m s``:
    it starts with the data term's curvature, as if it had run those
    iterations itself. Pass one instance to every fit of the path
    (``solve_lbfgs(..., carry=...)``); it is updated when a fit returns.
    """

    def __init__(self) -> None:
        self.pairs: list[tuple[Array, Array]] = []

    def restore(self, pairs: _Memory, objective: Objective) -> None:
        """Fill an empty memory with the carried pairs, in this fit's penalty."""
        for s, y_data in self.pairs:
            y = y_data + objective.penalty_curvature(s)
            sy, yy = host_scalars(s @ y, y @ y)
            if sy > CURVATURE_EPS * yy and yy > 0:
                pairs.push(s, y, sy, yy)

    def keep(self, pairs: _Memory, objective: Objective) -> None:
        """Take the memory's pairs, the L2 part of ``y`` removed."""
        self.pairs = [
            (pairs.S[slot].copy(), pairs.Y[slot] - objective.penalty_curvature(pairs.S[slot]))
            for slot in pairs.order
        ]


def solve_lbfgs(
    objective: Objective,
    params0: Array,
    *,
    tol: float,
    max_iter: int,
    callback: Callback | None = None,
    progress: Reporter | None = None,
    memory: int = MEMORY,
    precondition_after: int | None = PRECONDITION_AFTER,
    carry: CurvatureCarry | None = None,
) -> SolverResult:
    """Minimise a smooth objective by L-BFGS with a strong Wolfe line search.

    Parameters
    ----------
    objective : Objective
        Smooth objective (``objective.l1 == 0``).
    params0 : array of shape (n_params,)
        Starting point (not modified).
    tol : float
        Stop when ``objective.optimality(params, grad) <= tol``.
    max_iter : int
        Iteration budget.
    callback : callable, optional
        ``callback(n_iter, params, objective) -> bool | None``; ``True`` stops.
    progress : Reporter, optional
        Where every iteration is reported (the listener, the progress bar).
    memory : int
        Number of curvature pairs kept.
    precondition_after : int or None
        Iterations after which the inverse Hessian becomes the initial matrix
        (0: from the start); None never preconditions. Only up to
        :data:`PRECONDITION_MAX_PARAMS` parameters.
    carry : CurvatureCarry, optional
        The previous fit of a path's curvature pairs: the memory starts with
        them, and takes this fit's when it returns.

    Returns
    -------
    SolverResult

    Raises
    ------
    ValueError
        If the objective has an L1 term.
    """
    require_smooth(objective, "lbfgs")
    if memory < 1:
        raise InputValueError(f"memory must be >= 1, got {memory}")
    xp = objective.xp
    monitor = Monitor("lbfgs", tol=tol, max_iter=max_iter, callback=callback, progress=progress)
    x = xp.asarray(params0, dtype=xp.float64).copy()
    f, g = objective.value_grad(x)
    done = monitor.converged_at_start(x, f, objective.optimality(x, g))
    if done is not None:
        return done

    pairs = _Memory(xp, memory, int(x.shape[0]))
    if carry is None:
        return _iterate(objective, x, f, g, pairs, monitor, precondition_after)
    carry.restore(pairs, objective)
    try:
        return _iterate(objective, x, f, g, pairs, monitor, precondition_after)
    finally:
        carry.keep(pairs, objective)


def _iterate(
    objective: Objective,
    x: Array,
    f: float,
    g: Array,
    pairs: _Memory,
    monitor: Monitor,
    precondition_after: int | None,
) -> SolverResult:
    """Steps 1-4 of the module docstring from ``x`` (value ``f``, gradient ``g``)."""
    if objective.n_params > PRECONDITION_MAX_PARAMS:
        precondition_after = None
    f_prev: float | None = None
    guard = RoundingGuard(objective, monitor.last_optimality)
    while True:
        if monitor.n_iter == precondition_after:
            pairs.h0 = _inverse_hessian(objective, x)
        # 1. direction (steepest descent when the memory is empty or the
        #    quasi-Newton direction is not a descent direction after rounding)
        d, slope0 = _descent_direction(pairs, g)
        step0 = 1.0 if pairs.informed else 1.0 / math.sqrt(-slope0)

        # 2. line search; the accepted trial's gradient is reused
        f_noise = noise_allowance(f, slope0, step0, f_prev)
        search = strong_wolfe(restrict(objective, x, d), f, slope0, step0=step0, f_noise=f_noise)
        if not search.success:
            if pairs.informed:
                pairs.fall_back()  # retry this iteration with less curvature information
                continue
            return monitor.stop(
                x,
                "stopped: the line search cannot decrease the objective even along the "
                "steepest-descent direction; the objective and its gradient are at rounding "
                f"level (optimality {monitor.last_optimality:.3e} > tol {monitor.tol:.3e}; "
                "use a larger tol)",
            )

        # 3. update the iterate and the memory
        s = search.step * d
        x_new = x + s
        y = search.grad - g
        # The pair's curvature and the new optimality in one transfer.
        sy, yy, optimality = host_scalars(
            s @ y, y @ y, objective.optimality_lazy(x_new, search.grad)
        )
        if sy > CURVATURE_EPS * yy and yy > 0:
            pairs.push(s, y, sy, yy)
        f_prev, f, x, g = f, search.value, x_new, search.grad

        # 4. stopping rule, history, callback, max_iter; rounding-noise guard
        done = monitor.step(x, f, optimality, search.step)
        if done is not None:
            return done
        if guard.update(x, f_prev, f, optimality):
            return monitor.stop(x, guard.message(optimality, monitor.tol))


def _inverse_hessian(objective: Objective, x: Array) -> Array | None:
    """Inverse Hessian at ``x`` (ridge-regularised when singular), None if it fails."""
    xp = objective.xp
    identity = xp.eye(objective.n_params, dtype=xp.float64)
    inverse, _ = ridge_cholesky_solve(xp, objective.hessian(x), -identity)
    return inverse


def _descent_direction(pairs: _Memory, g: Array) -> tuple[Array, float]:
    """Quasi-Newton direction and its slope ``g.d < 0``; ``-g`` as the safe fallback."""
    while pairs.informed:
        d = pairs.direction(g)
        slope = float(g @ d)
        if slope < 0 and math.isfinite(slope):
            return d, slope
        pairs.fall_back()
    return -g, -float(g @ g)
