"""Full-batch (proximal) gradient descent: Lipschitz step, FISTA momentum, adaptive restart.

Algorithm
---------
Minimises ``F = f + l1 ||coef||_1`` with ``f`` the smooth part (data term and
L2) and ``l1`` possibly zero:

1. **Step size** ``1 / L`` with ``L`` the Lipschitz constant of ``grad f``,
   estimated once by ``objective.lipschitz_bound()`` (power iteration on
   ``A^T S A``, the LipschitzLR idea: the largest safe step, known up front,
   no tuning).
2. **Proximal gradient step** from the extrapolated point ``y``:
   ``x+ = prox_l1(y - grad f(y) / L, 1 / L)`` (soft thresholding; the
   identity without L1).
3. **Backtracking safeguard.** Power iteration approaches ``lambda_max`` from
   below, so ``L`` may be too small. ``x+`` is accepted when the quadratic
   upper bound ``f(x+) <= f(y) + g_y.(x+ - y) + L/2 ||x+ - y||^2`` holds;
   otherwise ``L`` doubles and step 2 is repeated. Because ``f`` is convex,
   ``(g(x+) - g_y).(x+ - y) <= L/2 ||x+ - y||^2`` implies that bound, and it is
   accepted too: it involves only gradients, which stay accurate when the
   values are at rounding level (the value test would then fail at random and
   inflate ``L``). ``L`` never decreases.
4. **Momentum (FISTA).** ``t+ = (1 + sqrt(1 + 4 t^2)) / 2``,
   ``y+ = x+ + (t - 1) / t+ (x+ - x)``: Nesterov's acceleration, with the
   proximal step for L1 and elastic net (Beck & Teboulle 2009).
5. **Adaptive restart** (O'Donoghue & Candes 2015, gradient scheme): when
   ``(y - x+).(x+ - x) > 0`` the momentum points uphill; set ``t = 1`` and
   ``y+ = x+``. This recovers linear convergence on strongly convex problems
   (an L2 penalty) without knowing the strong-convexity constant.
6. **Stop** when ``objective.optimality(x+, grad f(x+)) <= tol`` (the
   minimum-norm subgradient with L1; :class:`~gpulogreg.solvers._common.Monitor`),
   or when the gradient is found to be at its rounding level
   (:class:`~gpulogreg.solvers._common.RoundingGuard`).

Cost: two ``value_grad`` per iteration, at ``x+`` (for the safeguard, the
stopping rule and the recorded objective) and at ``y+`` (for the next step);
one after a restart, when ``y+ = x+``. The history records ``F(x+)``
(including the L1 term) and the step ``1 / L``.
"""

from __future__ import annotations

import math

from gpulogreg._array import host_scalars
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Callback, Objective, SolverResult
from gpulogreg.solvers._common import Monitor, RoundingGuard

__all__ = ["solve_gd"]

#: Factor by which the backtracking safeguard increases L.
BACKTRACK_GROWTH = 2.0
#: Most increases of L within one iteration (2^60 ~ 1e18: an estimate that
#: far off means the objective is not finite or not smooth).
MAX_BACKTRACKS = 60


def solve_gd(
    objective: Objective,
    params0: Array,
    *,
    tol: float,
    max_iter: int,
    callback: Callback | None = None,
    progress: Reporter | None = None,
) -> SolverResult:
    """Minimise ``f + l1 ||coef||_1`` by FISTA with step ``1 / L`` and adaptive restart.

    Parameters
    ----------
    objective : Objective
        Smooth part with ``value_grad`` and ``lipschitz_bound``; an L1 term
        (``objective.l1 > 0``) is handled by ``objective.prox_l1``.
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

    Returns
    -------
    SolverResult
    """
    xp = objective.xp
    monitor = Monitor("gd", tol=tol, max_iter=max_iter, callback=callback, progress=progress)
    x = xp.asarray(params0, dtype=xp.float64).copy()
    f, g = objective.value_grad(x)
    F = f + objective.penalty_l1(x)
    done = monitor.converged_at_start(x, F, objective.optimality(x, g))
    if done is not None:
        return done
    guard = RoundingGuard(objective, monitor.last_optimality)

    # 1. step size from the Lipschitz bound (any positive guess works with 3.)
    L = objective.lipschitz_bound()
    if not (L > 0 and math.isfinite(L)):
        L = 1.0
    y, f_y, g_y = x, f, g
    t = 1.0
    while True:
        # 2.-3. proximal gradient step from y, with the backtracking safeguard
        for _ in range(MAX_BACKTRACKS):
            x_new = objective.prox_l1(y - g_y / L, 1.0 / L)
            delta = x_new - y
            f_new, g_new = objective.value_grad(x_new)
            # Every scalar of the iteration in one device-to-host transfer.
            delta_sq, linear, curvature, uphill, l1_new, optimality = host_scalars(
                delta @ delta,
                g_y @ delta,
                (g_new - g_y) @ delta,
                (y - x_new) @ (x_new - x),
                objective.penalty_l1_lazy(x_new),
                objective.optimality_lazy(x_new, g_new),
            )
            bound = 0.5 * L * delta_sq
            if f_new <= f_y + linear + bound or curvature <= bound:
                break
            L *= BACKTRACK_GROWTH
        else:
            return monitor.stop(
                x,
                f"stopped: no step size satisfies the descent condition (L = {L:.3e}); "
                "the objective is not smooth at this point",
            )
        if delta_sq == 0.0 and y is x:
            # y is a fixed point of the proximal step but the stopping rule
            # is not met: the gradient is at rounding level.
            return monitor.stop(
                x,
                "stopped: the proximal gradient step is zero at rounding level "
                f"(optimality {monitor.last_optimality:.3e} > tol {monitor.tol:.3e}; "
                "use a larger tol)",
            )

        # 4.-5. momentum, or restart when it points uphill
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        momentum = (t - 1.0) / t_next
        if uphill > 0.0:
            t = 1.0
            y, f_y, g_y = x_new, f_new, g_new
        elif momentum == 0.0:  # first step after a (re)start: t = 1 gives no momentum
            t = t_next
            y, f_y, g_y = x_new, f_new, g_new
        else:
            t = t_next
            y = x_new + momentum * (x_new - x)
            f_y, g_y = objective.value_grad(y)
        x, g = x_new, g_new

        # 6. stopping rule, history, callback, max_iter; rounding-noise guard
        F_prev, F = F, f_new + l1_new
        done = monitor.step(x, F, optimality, 1.0 / L)
        if done is not None:
            return done
        if guard.update(x, F_prev, F, optimality):
            return monitor.stop(x, guard.message(optimality, monitor.tol))
