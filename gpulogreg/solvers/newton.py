"""Newton-Raphson with a Cholesky solve (or truncated CG) and Armijo backtracking.

Algorithm
---------
Each iteration, from ``x`` with objective ``f`` and gradient ``g``:

1. **Hessian.** ``H = objective.hessian(x)``, ``(n_params, n_params)``,
   built by the backend in row chunks through BLAS (no ``m x n`` temporary).
2. **Newton direction** ``d`` solving ``H d = -g``: Cholesky ``H = L L^T``
   (``xp.linalg.cholesky``), then ``L u = -g`` and ``L^T d = u``.
3. **Safe path** for a singular or numerically indefinite ``H`` (duplicated
   or constant columns, unpenalised or nearly separable data, the intercepts
   of the multinomial loss, which are defined only up to a common shift): if
   the factorisation fails, has a non-positive pivot or one with ``L_jj^2``
   below :data:`PIVOT_RTOL` times ``H_jj`` (the column is, to rounding, a
   combination of the previous ones), or the solve leaves a residual above
   :data:`SOLVE_RTOL` of the gradient, retry with a ridge
   ``H + tau mean(diag H) I`` for ``tau`` = 1e-8, 1e-6, ..., 1. The ridge is
   a multiple of the identity so that the step stays out of ``H``'s null
   space, like the iterates of the gradient methods (starting from zero,
   multinomial intercepts keep summing to zero, as scikit-learn's do). If
   every ridge fails, take a gradient step
   ``d = -g / trace(H)`` (``trace(H) >= lambda_max(H)``, so its unit step does
   not overshoot a quadratic model).
4. **Line search.** Armijo backtracking from the full step ``t = 1``, halving
   (:func:`~gpulogreg.solvers._linesearch.backtracking`), with the
   slope-based test at rounding level. If the Newton direction fails it, the
   gradient step of 3 is tried before giving up.
5. **Update** ``x += t d``; the accepted trial's value and gradient are
   reused, so a full Newton step costs one Hessian and one ``value_grad``.
6. **Stop** when ``optimality <= tol`` (:class:`~gpulogreg.solvers._common.Monitor`),
   or when the values show that the iterates wander on rounding noise
   (:class:`~gpulogreg.solvers._common.RoundingGuard`: ``tol`` below what the
   gradient resolves).

Newton-CG for many parameters
-----------------------------
Building ``H`` costs ``2 m p^2`` flops (compute-bound, BLAS at ~200 GFLOP/s
in float64 and ~460 in float32 on our reference machine); a ``value_grad``
reads X once, ``m p`` values at ~45 GB/s. One Hessian is thus worth about
``2 p B / (F b) ~ 0.05 p`` evaluations: ~5 at ``p = 100``, ~50 at ``p = 1000``
(plus ``p^2`` floats of memory and a ``p^3 / 3`` factorisation). A truncated
CG solve costs one Hessian-vector product (two to three passes over X) per CG
step, typically 10-30 steps per Newton iteration, i.e. 20-90 evaluations.
Above :data:`CG_THRESHOLD` parameters the exact Hessian is no longer cheaper,
and the solver switches to Newton-CG: step 2 becomes CG on ``H d = -g``
with ``objective.hvp``, stopped when ``||r|| <= eta ||g||`` with the forcing
sequence ``eta = min(0.5, sqrt(||g||))`` (Nocedal & Wright, Algorithm 7.1:
superlinear convergence), after :data:`CG_MAX_ITER` steps, or at
non-positive curvature (rounding: the objective is convex), returning the
last iterate (``-g`` if there is none).
"""

from __future__ import annotations

import math
from typing import Any

from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Callback, Objective, SolverResult
from gpulogreg.solvers._common import Monitor, RoundingGuard, require_smooth
from gpulogreg.solvers._linesearch import backtracking, noise_allowance, restrict

__all__ = ["CG_THRESHOLD", "ridge_cholesky_solve", "solve_newton"]

#: Above this many parameters the Hessian is not built and Newton-CG is used
#: (see the module docstring: a Hessian costs ~0.05 p evaluations, a CG solve
#: 20-90, so the two break even near p = 1000; the Hessian also needs 8 p^2
#: bytes, 8 MB at p = 1000).
CG_THRESHOLD = 1000
#: A Cholesky pivot ``L_jj^2`` below this fraction of ``H_jj`` means column j
#: is a combination of the previous ones to within ~1e-10: the solve would
#: amplify rounding in that direction by ~1e10 (a duplicated column gives
#: ~1e-16). Legitimately correlated features stay far above it.
PIVOT_RTOL = 1e-10
#: Ridge multipliers tried in turn (relative to the mean of diag(H)); the
#: first is well above PIVOT_RTOL so that a null direction among columns of
#: typical scale is cured at once, the last makes the step close to a scaled
#: gradient step.
RIDGES = (1e-8, 1e-6, 1e-4, 1e-2, 1.0)
#: A Newton solve is accepted when ``max|H d + g| <= SOLVE_RTOL max|g|``: a
#: backward-stable solve meets it up to condition numbers ~1e10; beyond, the
#: direction is not trustworthy and a ridge is added.
SOLVE_RTOL = 1e-6
#: Value rises (without the optimality halving) before the rounding guard
#: measures the gradient's noise: Newton halves the optimality at every
#: iteration until rounding, and an iteration (a Hessian) costs more than the
#: measurement's three evaluations, so the guard looks early.
NOISE_LIMIT = 2
#: Most CG steps per Newton iteration (each costs one Hessian-vector product).
CG_MAX_ITER = 250
#: Upper bound of the CG forcing term eta (N&W Algorithm 7.1).
CG_FORCING_MAX = 0.5


def solve_newton(
    objective: Objective,
    params0: Array,
    *,
    tol: float,
    max_iter: int,
    callback: Callback | None = None,
    progress: Reporter | None = None,
    cg_threshold: int = CG_THRESHOLD,
) -> SolverResult:
    """Minimise a smooth objective by Newton-Raphson (Cholesky, or CG above ``cg_threshold``).

    Parameters
    ----------
    objective : Objective
        Smooth objective (``objective.l1 == 0``) with ``hessian`` and ``hvp``.
    params0 : array of shape (n_params,)
        Starting point (not modified).
    tol : float
        Stop when ``objective.optimality(params, grad) <= tol``.
    max_iter : int
        Iteration budget (Newton iterations).
    callback : callable, optional
        ``callback(n_iter, params, objective) -> bool | None``; ``True`` stops.
    progress : Reporter, optional
        Where every iteration is reported (the listener, the progress bar).
    cg_threshold : int
        Use Newton-CG (Hessian-vector products) when ``n_params`` exceeds it.

    Returns
    -------
    SolverResult

    Raises
    ------
    ValueError
        If the objective has an L1 term.
    """
    require_smooth(objective, "newton")
    xp = objective.xp
    use_cg = objective.n_params > cg_threshold
    name = "newton-cg" if use_cg else "newton"
    monitor = Monitor(name, tol=tol, max_iter=max_iter, callback=callback, progress=progress)
    x = xp.asarray(params0, dtype=xp.float64).copy()
    f, g = objective.value_grad(x)
    done = monitor.converged_at_start(x, f, objective.optimality(x, g))
    if done is not None:
        return done

    f_prev: float | None = None
    guard = RoundingGuard(objective, monitor.last_optimality, limit=NOISE_LIMIT)
    while True:
        # 1.-3. direction: Newton (Cholesky with the safe path, or CG), with a
        #       gradient step as the fallback
        if use_cg:
            d = _cg_direction(objective, x, g)
            fallback = -g
        else:
            H = objective.hessian(x)
            d, fallback = ridge_cholesky_solve(xp, H, g)
            del H

        # 4. Armijo backtracking from the full step; the gradient step if that fails
        search = None
        for direction in (d, fallback):
            if direction is None:
                continue
            slope0 = float(g @ direction)
            if not slope0 < 0:
                continue
            search = backtracking(
                restrict(objective, x, direction),
                f,
                slope0,
                f_noise=noise_allowance(f, slope0, 1.0, f_prev),
            )
            if search.success:
                d = direction
                break
        if search is None or not search.success:
            return monitor.stop(
                x,
                "stopped: the line search cannot decrease the objective along the Newton or "
                "the gradient direction; the objective and its gradient are at rounding level "
                f"(optimality {monitor.last_optimality:.3e} > tol {monitor.tol:.3e}; "
                "use a larger tol)",
            )

        # 5. update, reusing the accepted trial's value and gradient
        x = x + search.step * d
        f_prev, f, g = f, search.value, search.grad

        # 6. stopping rule, history, callback, max_iter; rounding-noise guard
        optimality = objective.optimality(x, g)
        done = monitor.step(x, f, optimality, search.step)
        if done is not None:
            return done
        if guard.update(x, f_prev, f, optimality):
            return monitor.stop(x, guard.message(optimality, monitor.tol))


def ridge_cholesky_solve(xp: Any, H: Array, g: Array) -> tuple[Array | None, Array]:
    """Newton direction by Cholesky with the ridge safe path, and the gradient fallback.

    ``H`` is overwritten (its diagonal receives the ridge). ``g`` may also be
    a matrix of right-hand sides (``-I`` gives the inverse Hessian).

    Returns
    -------
    d : array or None
        Solution of ``(H + tau mean(diag H) I) d = -g`` for the smallest
        working ``tau`` in ``(0,) + RIDGES``; None when every attempt failed.
    fallback : array
        ``-g / trace(H)``: a gradient step whose unit length is safe.
    """
    diag = xp.diagonal(H).copy()
    trace = float(diag.sum())
    if not (trace > 0 and math.isfinite(trace)):
        trace = 1.0
    fallback = -g / trace
    # The ridge is a multiple of the identity: it leaves H's null space
    # invariant, so the step gets no component along it beyond rounding / ridge
    # (a diagonal ridge proportional to diag(H) would be scale-invariant but
    # would push the step along the null space, e.g. shift the multinomial
    # intercepts, by a fraction of its length).
    unit = trace / H.shape[0]
    g_max = float(xp.abs(g).max())
    linalg_error = getattr(xp.linalg, "LinAlgError", ArithmeticError)
    index = xp.arange(H.shape[0])
    for tau in (0.0, *RIDGES):
        if tau:
            H[index, index] = diag + tau * unit
        try:
            L = xp.linalg.cholesky(H)
        except linalg_error:
            continue
        # CuPy does not raise on a failed factorisation (unless asked to) and
        # returns a partial factor: the sign and size of the pivots and the
        # residual of the solve reject it, as well as a factor that is exact
        # but too close to singular.
        h = xp.diagonal(H)
        pivots = xp.diagonal(L)
        ratios = xp.where(pivots > 0, pivots**2 / xp.where(h > 0, h, unit), -1.0)
        if not float(ratios.min()) >= PIVOT_RTOL:
            continue
        d = xp.linalg.solve(L.T, xp.linalg.solve(L, -g))
        residual = float(xp.abs(H @ d + g).max())
        if residual <= SOLVE_RTOL * g_max:  # also False for NaN
            return d, fallback
    return None, fallback


def _cg_direction(objective: Objective, x: Array, g: Array) -> Array:
    """Truncated conjugate gradients on ``H d = -g`` with Hessian-vector products."""
    xp = objective.xp
    g_norm = math.sqrt(float(g @ g))
    target = min(CG_FORCING_MAX, math.sqrt(g_norm)) * g_norm
    d = xp.zeros_like(g)
    r = -g
    p = r.copy()
    rr = g_norm * g_norm
    for k in range(min(objective.n_params, CG_MAX_ITER)):
        Hp = objective.hvp(x, p)
        curvature = float(p @ Hp)
        if not curvature > 0:  # zero or negative curvature: rounding on a convex objective
            return d if k else -g
        alpha = rr / curvature
        d = d + alpha * p
        r = r - alpha * Hp
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= target:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return d
