"""Newton-Raphson: Cholesky on the Hessian, or truncated preconditioned CG (Newton-CG).

Both variants share one outer iteration (line search, update, stopping rule)
and differ in how the Newton direction ``d`` solving ``H d = -g`` is found.

Newton with Cholesky (``solver="newton"``, at most :data:`CG_THRESHOLD` parameters)
-----------------------------------------------------------------------------------
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
   fallback direction (the gradient step of 3) is tried before giving up.
5. **Update** ``x += t d``; the accepted trial's value and gradient are
   reused, so a full Newton step costs one Hessian and one ``value_grad``.
6. **Stop** when ``optimality <= tol`` (:class:`~gpulogreg.solvers._common.Monitor`),
   or when the values show that the iterates wander on rounding noise
   (:class:`~gpulogreg.solvers._common.RoundingGuard`: ``tol`` below what the
   gradient resolves).

Newton-CG (``solver="newton-cg"``, and ``"newton"`` above :data:`CG_THRESHOLD`)
--------------------------------------------------------------------------------
Building ``H`` costs ``2 m p^2`` flops (compute-bound, BLAS at ~200 GFLOP/s
in float64 and ~460 in float32 on our reference machine); a ``value_grad``
reads X once, ``m p`` values at ~45 GB/s. One Hessian is thus worth about
``2 p B / (F b) ~ 0.05 p`` evaluations: ~5 at ``p = 100``, ~50 at ``p = 1000``
(plus ``p^2`` floats of memory and a ``p^3 / 3`` factorisation). A truncated
CG solve costs one Hessian-vector product (one pass over X) per CG step,
2 to 60 steps per Newton iteration in the measurements below. Above :data:`CG_THRESHOLD`
parameters the exact Hessian is no longer cheaper, and a CSR ``X`` with many
features cannot hold it at all: steps 1-3 become

1. **Preconditioner** (liblinear's, Hsia, Chiang & Lin 2018): the diagonal
   ``M = (1 - a) l2 + a diag(H)`` with ``a =`` :data:`PCG_MIX` and ``l2`` the
   L2 strength of the weight-normalised objective, one pass over X
   (``objective.hessian_diagonal``). In liblinear's scaling (penalty
   ``||w||^2 / 2``, data term ``C sum_i loss_i``) this is its
   ``(1 - a) I + a diag(H)``: the identity there is the regulariser's
   Hessian, here ``l2 I`` (the same matrix up to the factor ``C sum_i s_i``,
   which CG does not see). It is Jacobi's ``diag(H)`` damped towards the
   regulariser: it evens out the curvature of columns on very different
   scales (unscaled dense features), which is what CG's iteration count
   depends on, without trusting the diagonal where it misjudges the Hessian
   (rare sparse features, whose own curvature is tiny next to the penalty's).
   Without a penalty it is Jacobi's. Multinomial: on the columns the penalty
   leaves free, every class gets the classes' mean (:func:`preconditioner`:
   the iterates stay off the loss's null space). An entry that is exactly
   zero (an all-zero column without penalty: its gradient and Hessian row are
   zero too) is set to 1.
2. **Direction** by preconditioned conjugate gradients on ``H d = -g``
   (Nocedal & Wright, Algorithm 5.3) with ``objective.hvp``, from ``d = 0``,
   stopped when the residual ``||r|| <= eta ||g||`` with the forcing sequence
   ``eta = min(`` :data:`CG_FORCING_MAX` ``, sqrt(||g|| / ||g_0||))``, ``g_0``
   the gradient at the start (N&W Algorithm 7.1's ``sqrt(||g||)``, made
   relative so that it does not depend on the objective's scale:
   superlinear convergence either way), after :data:`CG_MAX_ITER` steps, or at
   non-positive curvature ``p^T H p`` (rounding: the objective is convex),
   returning the last iterate (the preconditioned gradient ``-M^-1 g`` if
   there is none).
3. **Fallback** direction: CG's first iterate, the minimiser of the quadratic
   model along ``-M^-1 g`` (a well-scaled preconditioned gradient step).

and steps 4-6 stay. ``precondition=False`` runs the same loop with ``M = I``
(no diagonal pass).

Measured (``python bench/bench_newton_cg.py compare --scale 0.5`` and the
same problems at other ``C``, the CSR sets on the scipy baseline backend;
2-core Xeon, a shared machine: the counts are exact, the seconds were not
comparable; the forcing term was then the absolute ``sqrt(||g||)``),
Hessian-vector products to ``tol = 1e-10`` with this preconditioner /
Jacobi's (``a = 1``) / none:

========================================  =========  ======  ======
problem                                   liblinear  Jacobi  none
========================================  =========  ======  ======
dense 100,000 x 200, scales 0.03-30, C=1  326        364     23,705 [*]
the same, 50,000 rows, C=100              558        467
CTR-like CSR 50,000 x 2^18, C=0.1         120        107     147
the same, C=10                            282        459     745
text-like CSR 25,000 x 30,000, C=1        29         42      29
the same, C=100                           230        314     223
========================================  =========  ======  ======

[*] on 10,000 rows (123 Newton iterations instead of 8).

Well-conditioned dense data: 13 with every variant. Jacobi's alone loses
on the sparse sets where the penalty matters, no preconditioner is hopeless
on unscaled dense columns; liblinear's mix is never far from the best.

The forcing term relative to ``||g_0||``: on the weight-normalised objective
``||g||`` is small from the start (the mean of the rows' gradients), so the
absolute ``sqrt(||g||)`` asked the first CG solves for residuals of a few
percent where 50 % would do. Measured on the issue's CSR sets on the Numba
backend (2-core AMD EPYC Zen 3, float32, seconds to a 1e-8 relative gap,
Newton iterations, CG steps): text-like 200,000 x 100,000, C = 1: absolute
1.18-1.62 s, 4 iterations, 49 steps; relative 1.09-1.10 s, 7 iterations,
51 steps; CTR-like 300,000 x 2^20, C = 0.1: absolute 3.48 s, 9 iterations,
128 steps; relative 2.74 s, 9 iterations, 110 steps. (A fixed ``eta = 0.1``:
1.07 s and 4.14 s.)

Line search, not a trust region
-------------------------------
A trust region after liblinear's TRON (radius in the ``M`` norm, Steihaug's
truncation at the boundary, TRON's ratio tests and radius updates; in
``bench/bench_newton_cg.py``) around the same preconditioned CG took the same
Newton iterations and ``value_grad`` passes as this line search on every
problem above, and within one of its Hessian-vector products: on the
logistic loss from zero the full Newton step is accepted, so the radius (set
from the first step, then grown) cut a CG solve short by one step at most
and no step was ever rejected. The line search is the simpler of the two and keeps every CG
solve; liblinear itself moved from TRON to such a line search in version
2.40 (Galli & Lin 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gpulogreg._array import host_scalars
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Callback, Objective, SolverResult
from gpulogreg.solvers._common import Monitor, RoundingGuard, require_smooth
from gpulogreg.solvers._linesearch import backtracking, noise_allowance, restrict

__all__ = ["CG_THRESHOLD", "ridge_cholesky_solve", "solve_newton", "solve_newton_cg"]

#: A direction rule of the outer iteration: ``(x, g) -> (direction or None, fallback or None)``.
DirectionRule = Callable[[Array, Array], tuple[Array | None, Array | None]]

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
#: Upper bound of the CG forcing term eta (N&W Algorithm 7.1; liblinear's
#: eps_cg is the same 0.5).
CG_FORCING_MAX = 0.5
#: Weight ``a`` of the Hessian's diagonal in the preconditioner
#: ``(1 - a) l2 + a diag(H)`` (liblinear's alpha_pcg = 0.01, the value Hsia,
#: Chiang & Lin 2018 found robust over their data sets; 1 gives Jacobi's).
PCG_MIX = 0.01


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
    """Minimise a smooth objective by Newton-Raphson (Cholesky; Newton-CG above ``cg_threshold``).

    Parameters
    ----------
    objective : Objective
        Smooth objective (``objective.l1 == 0``) with ``hessian`` (Cholesky)
        or ``hvp`` and ``hessian_diagonal`` (Newton-CG).
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
        Run :func:`solve_newton_cg` when ``n_params`` exceeds it.

    Returns
    -------
    SolverResult

    Raises
    ------
    ValueError
        If the objective has an L1 term.
    """
    require_smooth(objective, "newton")
    if objective.n_params > cg_threshold:
        return solve_newton_cg(
            objective, params0, tol=tol, max_iter=max_iter, callback=callback, progress=progress
        )
    xp = objective.xp

    def cholesky_direction(x: Array, g: Array) -> tuple[Array | None, Array | None]:
        return ridge_cholesky_solve(xp, objective.hessian(x), g)

    return _iterate(
        objective, params0, "newton", cholesky_direction, tol, max_iter, callback, progress
    )


def solve_newton_cg(
    objective: Objective,
    params0: Array,
    *,
    tol: float,
    max_iter: int,
    callback: Callback | None = None,
    progress: Reporter | None = None,
    precondition: bool = True,
) -> SolverResult:
    """Minimise a smooth objective by truncated Newton with preconditioned CG (any size).

    Never forms the Hessian: each Newton iteration costs one diagonal pass
    (the preconditioner), one Hessian-vector product per CG step and the
    line search's ``value_grad`` (one when the full step is accepted). See the
    module docstring for the steps.

    Parameters
    ----------
    objective : Objective
        Smooth objective (``objective.l1 == 0``) with ``hvp`` and ``hessian_diagonal``.
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
    precondition : bool
        Precondition CG by the diagonal (:data:`PCG_MIX`); False: plain CG.

    Returns
    -------
    SolverResult

    Raises
    ------
    ValueError
        If the objective has an L1 term.
    """
    require_smooth(objective, "newton-cg")

    start_norm: float | None = None  # ||g_0||, the forcing term's reference

    def cg_direction(x: Array, g: Array) -> tuple[Array | None, Array | None]:
        nonlocal start_norm
        M = preconditioner(objective, x) if precondition else None
        if start_norm is None:
            start_norm = math.sqrt(float(g @ g))
        return truncated_cg(objective, x, g, M, start_norm)

    return _iterate(
        objective, params0, "newton-cg", cg_direction, tol, max_iter, callback, progress
    )


def _iterate(
    objective: Objective,
    params0: Array,
    name: str,
    direction: DirectionRule,
    tol: float,
    max_iter: int,
    callback: Callback | None,
    progress: Reporter | None,
) -> SolverResult:
    """The outer Newton iteration: direction, line search, update, stopping rule (steps 1-6)."""
    xp = objective.xp
    monitor = Monitor(name, tol=tol, max_iter=max_iter, callback=callback, progress=progress)
    x = xp.asarray(params0, dtype=xp.float64).copy()
    f, g = objective.value_grad(x)
    done = monitor.converged_at_start(x, f, objective.optimality(x, g))
    if done is not None:
        return done

    f_prev: float | None = None
    guard = RoundingGuard(objective, monitor.last_optimality, limit=NOISE_LIMIT)
    while True:
        # 1.-3. the Newton direction, and the fallback if it fails the line search
        d, fallback = direction(x, g)

        # 4. Armijo backtracking from the full step; the fallback if that fails
        search = chosen = None
        for candidate in (d, fallback):
            if candidate is None:
                continue
            slope0 = float(g @ candidate)
            if not slope0 < 0:
                continue
            search = backtracking(
                restrict(objective, x, candidate),
                f,
                slope0,
                f_noise=noise_allowance(f, slope0, 1.0, f_prev),
            )
            if search.success:
                chosen = candidate
                break
        if search is None or chosen is None:
            return monitor.stop(
                x,
                "stopped: the line search cannot decrease the objective along the Newton or "
                "the fallback direction; the objective and its gradient are at rounding level "
                f"(optimality {monitor.last_optimality:.3e} > tol {monitor.tol:.3e}; "
                "use a larger tol)",
            )

        # 5. update, reusing the accepted trial's value and gradient
        x = x + search.step * chosen
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


def preconditioner(objective: Objective, x: Array) -> Array:
    """liblinear's diagonal preconditioner ``(1 - a) l2 + a diag(H)`` at ``x`` (step 1).

    Multinomial: the loss does not change when every class's intercept (and,
    without a penalty, every class's coefficient of one column) shifts by the
    same amount. The gradient and the Hessian's range are orthogonal to that
    null space, so plain CG never moves along it, but a preconditioner that
    differs between the classes would (by as much as along any other
    direction: the intercepts would drift from summing to zero). On those
    unpenalised columns every class therefore gets the classes' mean.
    Exact zeros (an all-zero column without penalty, whose gradient and
    Hessian row are zero as well) become 1, so that CG never divides by zero.
    """
    xp = objective.xp
    layout = objective.layout
    M = (1.0 - PCG_MIX) * objective.l2 + PCG_MIX * objective.hessian_diagonal(x)
    if layout.n_outputs > 1:
        M = layout.matrix(M)
        shared = M.mean(axis=0, keepdims=True)
        if objective.l2:
            free = layout.matrix(layout.penalty_mask(xp))[:1] == 0  # the intercepts
            M = xp.where(free, shared, M)
        else:
            M = xp.broadcast_to(shared, M.shape)
        M = M.ravel()
    return xp.where(M > 0, M, 1.0)


def truncated_cg(
    objective: Objective, x: Array, g: Array, M: Array | None, start_norm: float
) -> tuple[Array, Array | None]:
    """Truncated preconditioned CG on ``H d = -g`` with Hessian-vector products (step 2).

    Parameters
    ----------
    objective : Objective
    x, g : array of shape (n_params,)
        The iterate and its gradient.
    M : array of shape (n_params,) or None
        Diagonal preconditioner (None: plain CG).
    start_norm : float
        ``||g_0||``, the gradient's norm where the solve started: the forcing
        term is ``min(CG_FORCING_MAX, sqrt(||g|| / ||g_0||))``.

    Returns
    -------
    d : array
        The truncated solution (``-M^-1 g`` if the first curvature is not positive).
    first : array or None
        CG's first iterate (the fallback of step 3); None when there is none.
    """
    g_norm = math.sqrt(float(g @ g))
    relative = g_norm / start_norm if start_norm > 0 else 0.0  # a zero gradient: target 0
    target = min(CG_FORCING_MAX, math.sqrt(relative)) * g_norm
    r = -g
    z = r if M is None else r / M
    p = z
    rz = float(r @ z)
    d = None
    first = None
    for _ in range(min(objective.n_params, CG_MAX_ITER)):
        Hp = objective.hvp(x, p)
        curvature = float(p @ Hp)
        if not curvature > 0:  # zero or negative curvature: rounding on a convex objective
            break
        alpha = rz / curvature
        d = alpha * p if d is None else d + alpha * p
        if first is None:
            first = d
        r = r - alpha * Hp
        z = r if M is None else r / M
        rr, rz_new = host_scalars(r @ r, r @ z)  # one transfer per CG step besides p.Hp
        if math.sqrt(rr) <= target:
            break
        p = z + (rz_new / rz) * p
        rz = rz_new
    if d is None:
        return z, None
    return d, first if first is not d else None
