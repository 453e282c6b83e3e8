"""Line searches for the full-batch solvers: Armijo backtracking and strong Wolfe.

Both work on the one-dimensional restriction ``phi(t) = f(x + t d)`` of the
smooth objective along a descent direction ``d``, through a callable
``evaluate(t) -> (phi(t), grad f(x + t d), phi'(t))`` supplied by the solver.
The callable evaluates value *and* gradient: the accepted trial point's
gradient is the next iteration's gradient, so an accepted first trial costs
exactly one ``value_grad``. Only the Python floats ``phi`` and ``phi'`` steer
the search; the gradient stays in the array namespace and is handed back.

Rounding level
--------------
Near the optimum the decrease of a good step, about ``|g|^2 / L``, falls below
what the objective's value can resolve (for ``|g| = 1e-8`` it is ~1e-16, the
float64 rounding of an objective of order one; float32 data adds the rounding
of ``X @ w``). An Armijo test on values then rejects good steps at random and a
solver stalls or, worse, loops. The gradient, accumulated in float64, stays
accurate much longer. Following Hager & Zhang (2005, "approximate Wolfe
conditions") the sufficient-decrease test therefore has a second form, used
only in that end game: a step is also accepted when the value did not rise by
more than ``f_noise`` and the *quadratic model* of ``phi(t) - phi(0)``
computed from the two slopes, ``t (phi'(0) + phi'(t)) / 2``, meets the Armijo
bound, i.e. ``phi'(t) <= (1 - 2 c1) |phi'(0)|``. For a quadratic this is the
Armijo condition exactly; our objective is convex and close to quadratic
there. :func:`noise_allowance` decides when the end game has begun.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gpulogreg._typing import Array, Objective

__all__ = [
    "LineSearchResult",
    "backtracking",
    "noise_allowance",
    "restrict",
    "strong_wolfe",
    "sufficient_decrease",
]

#: Armijo constant: accept a step that achieves this fraction of the decrease
#: predicted by the slope (Nocedal & Wright's customary 1e-4).
ARMIJO_C1 = 1e-4
#: Strong Wolfe curvature constant for quasi-Newton directions (N&W: 0.9; a
#: loose value keeps the search at about one evaluation per iteration).
WOLFE_C2 = 0.9
#: Hager-Zhang's omega: the approximate test is enabled once the objective
#: changes by less than this fraction of its value per iteration, or when the
#: slope predicts a change that small.
APPROX_WOLFE_OMEGA = 1e-3
#: Hager-Zhang's epsilon: in the end game a trial value may exceed ``phi(0)``
#: by this fraction of ``|phi(0)|`` (rounding noise) when the slopes certify
#: decrease.
APPROX_WOLFE_EPS = 1e-6
#: Backtracking halves the step (any factor in (0, 1) works; 1/2 keeps the
#: number of evaluations logarithmic in the overshoot).
BACKTRACK_SHRINK = 0.5
#: Trial points per line search before giving up: 2^-30 ~ 1e-9, far below
#: any step a well-posed Newton or quasi-Newton direction needs.
MAX_EVALS = 30
#: When no upper bracket exists yet, the next trial step lies between these
#: multiples of the current one (N&W's extrapolation safeguards).
EXTRAPOLATE_MIN, EXTRAPOLATE_MAX = 2.0, 10.0
#: Interpolated trial steps keep this fraction of the bracket's width away
#: from both ends, so that the bracket shrinks geometrically even when the
#: interpolation is poor (noisy values, non-cubic phi).
INTERPOLATE_MARGIN = 0.1
#: The bracket is considered collapsed when narrower than this fraction of
#: its upper end: trial points would then differ by rounding only.
MIN_RELATIVE_WIDTH = 1e-10
#: Steps beyond this are not tried (unpenalised separable data: phi keeps
#: decreasing along rays to infinity).
MAX_STEP = 1e10

Evaluate = Callable[[float], tuple[float, Array, float]]


def restrict(objective: Objective, x: Array, d: Array) -> Evaluate:
    """``t -> (phi(t), grad f(x + t d), phi'(t))`` for the smooth part of ``objective``."""

    def evaluate(t: float) -> tuple[float, Array, float]:
        return objective.value_grad_slope(x + t * d, d)  # one device-to-host transfer

    return evaluate


@dataclass
class LineSearchResult:
    """Outcome of a line search.

    Attributes
    ----------
    step : float
        Accepted step ``t`` (0.0 when ``success`` is False and nothing better was found).
    value : float
        ``phi(step)``.
    grad : array or None
        Gradient of the objective at ``x + step d`` (None when ``step == 0``).
    slope : float
        ``phi'(step)``.
    n_evals : int
        Evaluations spent.
    success : bool
        The requested conditions hold at ``step``.
    wolfe : bool
        The strong Wolfe curvature condition also holds (only for
        :func:`strong_wolfe`; a quasi-Newton update needs ``s.y > 0``).
    """

    step: float
    value: float
    grad: Array | None
    slope: float
    n_evals: int
    success: bool
    wolfe: bool = False


def noise_allowance(f0: float, slope0: float, step0: float, f_prev: float | None) -> float:
    """How far a trial value may exceed ``f0`` under the approximate test (0: exact test only).

    The approximate test is enabled when the previous iteration changed the
    objective by at most :data:`APPROX_WOLFE_OMEGA` of its value, or when the
    slope predicts that little for the first trial step.
    """
    scale = abs(f0)
    end_game = abs(slope0 * step0) <= APPROX_WOLFE_OMEGA * scale
    if f_prev is not None and abs(f_prev - f0) <= APPROX_WOLFE_OMEGA * scale:
        end_game = True
    return APPROX_WOLFE_EPS * scale if end_game else 0.0


def sufficient_decrease(
    f0: float, slope0: float, step: float, value: float, slope: float, *, c1: float, f_noise: float
) -> bool:
    """Armijo condition, or its approximate (slope-based) form within ``f_noise``.

    See the module docstring: the second form accepts ``step`` when
    ``value <= f0 + f_noise`` and ``slope <= (1 - 2 c1) |slope0|``.
    """
    if value <= f0 + c1 * step * slope0:
        return True
    return f_noise > 0 and value <= f0 + f_noise and slope <= (2.0 * c1 - 1.0) * slope0


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def backtracking(
    evaluate: Evaluate,
    f0: float,
    slope0: float,
    *,
    step0: float = 1.0,
    c1: float = ARMIJO_C1,
    f_noise: float = 0.0,
    max_evals: int = MAX_EVALS,
) -> LineSearchResult:
    """Armijo backtracking from ``step0``, halving until sufficient decrease.

    Parameters
    ----------
    evaluate : callable
        ``t -> (phi(t), grad, phi'(t))``.
    f0, slope0 : float
        ``phi(0)`` and ``phi'(0) < 0``.
    step0 : float
        First trial (1 for Newton directions).
    c1 : float
        Armijo constant.
    f_noise : float
        Allowance of the approximate test (:func:`noise_allowance`).
    max_evals : int
        Trial budget.
    """
    step = step0
    for n_evals in range(1, max_evals + 1):
        value, grad, slope = evaluate(step)
        if _finite(value, slope) and sufficient_decrease(
            f0, slope0, step, value, slope, c1=c1, f_noise=f_noise
        ):
            return LineSearchResult(step, value, grad, slope, n_evals, success=True)
        step *= BACKTRACK_SHRINK
    return LineSearchResult(0.0, f0, None, slope0, max_evals, success=False)


@dataclass
class _Point:
    step: float
    value: float
    slope: float
    grad: Array | None


def _cubic_minimiser(a: _Point, b: _Point) -> float:
    """Minimiser of the cubic matching values and slopes at ``a`` and ``b`` (NaN if none).

    Nocedal & Wright, eq. (3.59).
    """
    if not _finite(a.value, b.value, a.slope, b.slope) or a.step == b.step:
        return math.nan
    d1 = a.slope + b.slope - 3.0 * (a.value - b.value) / (a.step - b.step)
    radicand = d1 * d1 - a.slope * b.slope
    if radicand < 0:
        return math.nan
    d2 = math.copysign(math.sqrt(radicand), b.step - a.step)
    denominator = b.slope - a.slope + 2.0 * d2
    if denominator == 0:
        return math.nan
    return b.step - (b.step - a.step) * (b.slope + d2 - d1) / denominator


def _interpolate(lo: _Point, hi: _Point) -> float:
    """Next trial inside the bracket: cubic, else secant on slopes, else bisection."""
    left, right = sorted((lo.step, hi.step))
    margin = INTERPOLATE_MARGIN * (right - left)
    inner_left, inner_right = left + margin, right - margin
    for candidate in (_cubic_minimiser(lo, hi), _secant(lo, hi)):
        if inner_left <= candidate <= inner_right:
            return candidate
    return 0.5 * (left + right)


def _secant(a: _Point, b: _Point) -> float:
    """Zero of the line through the slopes at ``a`` and ``b`` (NaN if undefined)."""
    if not _finite(a.slope, b.slope) or a.slope == b.slope:
        return math.nan
    return a.step - a.slope * (b.step - a.step) / (b.slope - a.slope)


def _extrapolate(previous: _Point, current: _Point) -> float:
    """Next trial beyond ``current`` when no upper bracket is known yet."""
    low, high = EXTRAPOLATE_MIN * current.step, EXTRAPOLATE_MAX * current.step
    candidate = _secant(previous, current)
    if math.isfinite(candidate) and candidate > current.step:
        return min(max(candidate, low), high)
    return high


def strong_wolfe(
    evaluate: Evaluate,
    f0: float,
    slope0: float,
    *,
    step0: float = 1.0,
    c1: float = ARMIJO_C1,
    c2: float = WOLFE_C2,
    f_noise: float = 0.0,
    max_evals: int = MAX_EVALS,
) -> LineSearchResult:
    """Find a step meeting the strong Wolfe conditions, by bracketing and cubic interpolation.

    The structure is Nocedal & Wright's Algorithms 3.5 (bracketing) and 3.6
    (zoom with cubic interpolation). Because our objective is convex, ``phi`` is
    convex, and every trial step classifies itself without comparing values
    across trials:

    1. sufficient decrease fails (or the value is not finite): the step is
       beyond the acceptable set -> new upper end ``hi``;
    2. ``phi'(t) > c2 |phi'(0)|``: past the line minimum -> ``hi``;
    3. ``phi'(t) < -c2 |phi'(0)|``: still steeply downhill -> new lower end
       ``lo`` (sufficient decrease holds there);
    4. otherwise the strong Wolfe conditions hold: accept.

    Only slopes and one-sided value tests steer the bracket, which keeps the
    search sound when values are at rounding level (see the module docstring).
    Without an upper end the step grows (secant extrapolation within
    [2, 10] times the current step); with one, the next trial is the cubic
    interpolant's minimiser kept away from the ends, else the secant on the
    slopes, else the midpoint.

    If the budget runs out or the bracket collapses, the last ``lo`` with a
    positive step is returned with ``success=True`` and ``wolfe=False`` (it
    decreases the objective but may not satisfy the curvature condition);
    ``success=False`` means no decrease could be certified at all.

    Parameters
    ----------
    evaluate : callable
        ``t -> (phi(t), grad, phi'(t))``.
    f0, slope0 : float
        ``phi(0)`` and ``phi'(0) < 0``.
    step0 : float
        First trial step (1 for quasi-Newton directions).
    c1, c2 : float
        Wolfe constants, ``0 < c1 < c2 < 1``.
    f_noise : float
        Allowance of the approximate sufficient-decrease test.
    max_evals : int
        Trial budget.
    """
    lo = _Point(0.0, f0, slope0, None)
    previous = lo
    hi: _Point | None = None
    step = min(step0, MAX_STEP)
    curvature = c2 * abs(slope0)
    n_evals = 0
    while n_evals < max_evals:
        n_evals += 1
        value, grad, slope = evaluate(step)
        point = _Point(step, value, slope, grad)
        too_long = not _finite(value, slope) or not sufficient_decrease(
            f0, slope0, step, value, slope, c1=c1, f_noise=f_noise
        )
        if too_long or slope > curvature:
            hi = point
        elif slope < -curvature:
            previous, lo = lo, point
        else:
            return LineSearchResult(step, value, grad, slope, n_evals, success=True, wolfe=True)
        if hi is None:
            if step >= MAX_STEP:
                break
            step = min(_extrapolate(previous, lo), MAX_STEP)
        else:
            if hi.step - lo.step <= MIN_RELATIVE_WIDTH * hi.step:
                break
            step = _interpolate(lo, hi)
    if lo.step > 0:
        return LineSearchResult(lo.step, lo.value, lo.grad, lo.slope, n_evals, success=True)
    return LineSearchResult(0.0, f0, None, slope0, n_evals, success=False)
