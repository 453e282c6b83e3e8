"""Newton-CG measurements: line search against a trust region, the preconditioner, the solvers.

Two commands (not collected by the tests; nothing here asserts on time)::

    python bench/bench_newton_cg.py compare [--scale 1.0]
    python bench/bench_newton_cg.py dense --rows 200000 --cols 2000 [-C 1.0] [--conditioning ill]

``compare`` runs variants of truncated Newton on the same objective, from zero
to ``tol`` (default 1e-10), on four generated problems: dense well- and
ill-conditioned and the CTR-like and text-like CSR sets of
:mod:`gpulogreg.sparse_problems` (the Numba backends, dense and CSR), at ``--scale``
times the default sizes. The variants:

* ``ls-liblinear``: the shipped solver (``solver="newton-cg"``): Armijo line
  search, CG preconditioned by ``(1 - a) l2 + a diag(H)``, ``a = PCG_MIX``;
* ``ls-jacobi``: the same with ``a = 1`` (Jacobi's ``diag(H)``);
* ``ls-none``: the same without preconditioner;
* ``tr-liblinear``: a trust region around the same preconditioned CG, written
  here after liblinear's TRON (Lin, Weng & Keerthi 2008; radius in the ``M``
  norm, Steihaug's truncation at the boundary, TRON's ratio tests and radius
  updates); a rejected step costs its evaluation and its CG solve.

For each it prints the Newton iterations, Hessian-vector products (CG steps),
``value_grad`` passes, diagonal passes, seconds to ``tol`` and seconds until the
objective is within 1e-8 (relative) of the reference optimum (a separate
``ls-liblinear`` run to ``tol=1e-13``).

``dense`` times newton-cg (its default preconditioned line search), L-BFGS and
Cholesky Newton (``cg_threshold`` lifted: a Hessian per iteration) on one
dense float64 problem in memory with the Numba backend, and prints the same
columns. Run it with nothing else on the machine, one benchmark at a time,
and name the CPU (``/proc/cpuinfo``) with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gpulogreg._typing import Array, SolverResult
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.sparse_numba import SparseNumbaBackend
from gpulogreg.benchmark import TARGET_GAP, make_problem
from gpulogreg.loss import LogisticObjective
from gpulogreg.solvers import newton
from gpulogreg.solvers._common import Monitor
from gpulogreg.solvers.lbfgs import solve_lbfgs
from gpulogreg.sparse_problems import make_sparse_problem

#: TRON's ratio thresholds (actual / predicted reduction): accept above ETA0;
#: shrink below ETA1, keep up to ETA2, grow above (Lin, Weng & Keerthi 2008).
ETA0, ETA1, ETA2 = 1e-4, 0.25, 0.75
#: TRON's radius factors: shrink by at least SIGMA1..SIGMA2, grow by up to SIGMA3.
SIGMA1, SIGMA2, SIGMA3 = 0.25, 0.5, 4.0
#: Tolerance of the reference run that defines the optimum of a problem.
REFERENCE_TOL = 1e-13


class Counting:
    """An objective that counts the passes over the data its methods make."""

    def __init__(self, objective: LogisticObjective) -> None:
        self._objective = objective
        self.counts = {"value_grad": 0, "hvp": 0, "diagonal": 0, "hessian": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objective, name)

    def value_grad(self, params: Array) -> tuple[float, Array]:
        self.counts["value_grad"] += 1
        return self._objective.value_grad(params)

    def value_grad_slope(self, params: Array, d: Array) -> tuple[float, Array, float]:
        self.counts["value_grad"] += 1
        return self._objective.value_grad_slope(params, d)

    def hvp(self, params: Array, v: Array) -> Array:
        self.counts["hvp"] += 1
        return self._objective.hvp(params, v)

    def hessian_diagonal(self, params: Array) -> Array:
        self.counts["diagonal"] += 1
        return self._objective.hessian_diagonal(params)

    def hessian(self, params: Array) -> Array:
        self.counts["hessian"] += 1
        return self._objective.hessian(params)


# --------------------------------------------------------------------------- trust region
def _steihaug_pcg(
    objective: Any, x: Array, g: Array, M: Array, radius: float
) -> tuple[Array, Array, int]:
    """PCG on ``H s = -g``, truncated as the shipped solver's or at ``||s||_M = radius``.

    Returns the step, the residual ``-g - H s`` and the CG steps taken.
    """
    g_norm = math.sqrt(float(g @ g))
    target = min(newton.CG_FORCING_MAX, math.sqrt(g_norm)) * g_norm
    s = np.zeros_like(g)
    r = -g
    z = r / M
    p = z.copy()
    rz = float(r @ z)
    steps = 0
    for _ in range(min(objective.n_params, newton.CG_MAX_ITER)):
        Hp = objective.hvp(x, p)
        steps += 1
        curvature = float(p @ Hp)
        alpha = rz / curvature if curvature > 0 else math.inf
        trial = s + alpha * p if math.isfinite(alpha) else None
        if trial is None or float(trial @ (M * trial)) > radius * radius:
            # to the boundary: the tau >= 0 with ||s + tau p||_M = radius
            sp, pp, ss = float(s @ (M * p)), float(p @ (M * p)), float(s @ (M * s))
            tau = (-sp + math.sqrt(sp * sp + pp * (radius * radius - ss))) / pp
            return s + tau * p, r - tau * Hp, steps
        s = trial
        r = r - alpha * Hp
        if math.sqrt(float(r @ r)) <= target:
            break
        z = r / M
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return s, r, steps


def solve_tron(objective: Any, params0: Array, *, tol: float, max_iter: int) -> SolverResult:
    """A trust-region Newton method after liblinear's TRON around the shipped preconditioner."""
    monitor = Monitor("tron", tol=tol, max_iter=max_iter)
    x = np.asarray(params0, dtype=np.float64).copy()
    f, g = objective.value_grad(x)
    done = monitor.converged_at_start(x, f, objective.optimality(x, g))
    if done is not None:
        return done
    M = newton.preconditioner(objective, x)
    radius = math.sqrt(float(g @ (g / M)))  # ||g||_{M^-1}: TRON's ||g|| in the M metric
    first = True
    while True:
        s, r, _ = _steihaug_pcg(objective, x, g, M, radius)
        gs = float(g @ s)
        predicted = -0.5 * (gs - float(s @ r))
        f_new, g_new = objective.value_grad(x + s)
        actual = f - f_new
        s_norm = math.sqrt(float(s @ (M * s)))
        if first:
            radius = min(radius, s_norm)
            first = False
        curvature_gap = f_new - f - gs
        alpha = SIGMA3 if curvature_gap <= 0 else max(SIGMA1, -0.5 * gs / curvature_gap)
        if actual < ETA0 * predicted:
            radius = min(max(alpha, SIGMA1) * s_norm, SIGMA2 * radius)
        elif actual < ETA1 * predicted:
            radius = max(SIGMA1 * radius, min(alpha * s_norm, SIGMA2 * radius))
        elif actual < ETA2 * predicted:
            radius = max(SIGMA1 * radius, min(alpha * s_norm, SIGMA3 * radius))
        else:
            radius = max(radius, min(alpha * s_norm, SIGMA3 * radius))
        if actual > ETA0 * predicted:
            x, f, g = x + s, f_new, g_new
            done = monitor.step(x, f, objective.optimality(x, g), 1.0)
            if done is not None:
                return done
            M = newton.preconditioner(objective, x)
        elif predicted <= 0 or abs(predicted) <= 1e-15 * abs(f):  # rounding level
            return monitor.stop(x, "stopped: predicted reduction at rounding level")


# --------------------------------------------------------------------------- variants
def _line_search(mix: float | None) -> Callable[..., SolverResult]:
    def solve(objective: Any, params0: Array, *, tol: float, max_iter: int) -> SolverResult:
        if mix is None:
            return newton.solve_newton_cg(
                objective, params0, tol=tol, max_iter=max_iter, precondition=False
            )
        previous = newton.PCG_MIX
        newton.PCG_MIX = mix
        try:
            return newton.solve_newton_cg(objective, params0, tol=tol, max_iter=max_iter)
        finally:
            newton.PCG_MIX = previous

    return solve


VARIANTS: dict[str, Callable[..., SolverResult]] = {
    "ls-liblinear": _line_search(newton.PCG_MIX),
    "ls-jacobi": _line_search(1.0),
    "ls-none": _line_search(None),
    "tr-liblinear": solve_tron,
}


def _cholesky_newton(objective: Any, params0: Array, *, tol: float, max_iter: int) -> SolverResult:
    return newton.solve_newton(objective, params0, tol=tol, max_iter=max_iter, cg_threshold=10**9)


def _lbfgs(objective: Any, params0: Array, *, tol: float, max_iter: int) -> SolverResult:
    return solve_lbfgs(objective, params0, tol=tol, max_iter=max_iter)


SOLVERS: dict[str, Callable[..., SolverResult]] = {
    "newton-cg": VARIANTS["ls-liblinear"],
    "lbfgs": _lbfgs,
    "newton (cholesky)": _cholesky_newton,
}


# --------------------------------------------------------------------------- problems
def _objective(X: Any, y: np.ndarray, C: float) -> LogisticObjective:
    m = X.shape[0]
    s = np.full(m, 1.0 / m)
    y32 = np.asarray(y, dtype=np.int32)
    sparse = hasattr(X, "tocsr")
    backend = (SparseNumbaBackend if sparse else NumbaBackend)(X, y32, s)
    return LogisticObjective(backend, C=C, weight_sum=float(m))


def _problems(scale: float) -> dict[str, tuple[Any, np.ndarray, float]]:
    def rows(n: int) -> int:
        return max(1000, int(n * scale))

    out: dict[str, tuple[Any, np.ndarray, float]] = {}
    for conditioning in ("well", "ill"):
        X, y = make_problem(rows(200_000), 200, dtype="float64", conditioning=conditioning)
        out[f"dense-{conditioning} {X.shape[0]}x{X.shape[1]}"] = (X, y, 1.0)
    X, y = make_sparse_problem("ctr", rows(100_000), 2**18, per_row=30)
    out[f"ctr {X.shape[0]}x{X.shape[1]}"] = (X, y, 0.1)
    X, y = make_sparse_problem("text", rows(50_000), 30_000, per_row=100)
    out[f"text {X.shape[0]}x{X.shape[1]}"] = (X, y, 1.0)
    return out


def _run(
    solver: Callable[..., SolverResult],
    objective: LogisticObjective,
    tol: float,
    max_iter: int,
    f_star: float,
) -> dict[str, Any]:
    counting = Counting(objective)
    start = time.perf_counter()
    result = solver(counting, np.zeros(objective.n_params), tol=tol, max_iter=max_iter)
    seconds = time.perf_counter() - start
    h = result.history
    reached = [
        t
        for t, f in zip(h.elapsed, h.objective, strict=True)
        if f - f_star <= TARGET_GAP * abs(f_star)
    ]
    return {
        "converged": result.converged,
        "n_iter": result.n_iter,
        **counting.counts,
        "seconds": seconds,
        "time_to_optimum": reached[0] if reached else None,
        "gap": (result.objective - f_star) / abs(f_star),
    }


def _print(problem: str, name: str, row: dict[str, Any]) -> None:
    t_opt = row["time_to_optimum"]
    print(
        f"{problem:28s} {name:18s} it {row['n_iter']:4d}  hvp {row['hvp']:5d}  "
        f"vg {row['value_grad']:4d}  diag {row['diagonal']:3d}  H {row['hessian']:3d}  "
        f"{row['seconds']:8.2f} s  to 1e-8: {'-' if t_opt is None else f'{t_opt:.2f} s':>9s}  "
        f"gap {row['gap']:.1e}  {'ok' if row['converged'] else 'NOT CONVERGED'}",
        flush=True,
    )


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def compare(
    scale: float, variants: list[str], tol: float, max_iter: int, json_out: str | None
) -> None:
    records = []
    for problem, (X, y, C) in _problems(scale).items():
        objective = _objective(X, y, C)
        f_star = newton.solve_newton_cg(
            objective, np.zeros(objective.n_params), tol=REFERENCE_TOL, max_iter=200
        ).objective
        for name in variants:
            solver = VARIANTS[name]
            row = _run(solver, objective, tol, max_iter, f_star)
            _print(problem, name, row)
            records.append({"problem": problem, "variant": name, "C": C, **row})
    _dump(records, json_out)


def dense(
    rows: int,
    cols: int,
    C: float,
    conditioning: str,
    solvers: list[str],
    tol: float,
    max_iter: int,
    json_out: str | None,
) -> None:
    X, y = make_problem(rows, cols, dtype="float64", conditioning=conditioning)
    objective = _objective(X, y, C)
    objective.value_grad(np.zeros(objective.n_params))  # compile the kernels outside the timings
    objective.hvp(np.zeros(objective.n_params), np.zeros(objective.n_params))
    objective.hessian_diagonal(np.zeros(objective.n_params))
    f_star = newton.solve_newton_cg(
        objective, np.zeros(objective.n_params), tol=REFERENCE_TOL, max_iter=200
    ).objective
    problem = f"dense-{conditioning} {rows}x{cols} C={C:g}"
    records = []
    for name in solvers:
        row = _run(SOLVERS[name], objective, tol, max_iter, f_star)
        _print(problem, name, row)
        records.append({"problem": problem, "solver": name, **row})
    _dump(records, json_out)


def _dump(records: list[dict[str, Any]], json_out: str | None) -> None:
    print(f"CPU: {_cpu()}")
    if json_out:
        with open(json_out, "w") as f:
            for record in records:
                f.write(json.dumps({"cpu": _cpu(), **record}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="line search vs trust region, preconditioners")
    c.add_argument("--scale", type=float, default=1.0, help="times the default row counts")
    c.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    d = sub.add_parser("dense", help="newton-cg vs lbfgs vs Cholesky newton on dense data")
    d.add_argument("--rows", type=int, default=200_000)
    d.add_argument("--cols", type=int, default=2_000)
    d.add_argument("-C", type=float, default=1.0)
    d.add_argument("--conditioning", choices=("well", "ill"), default="well")
    d.add_argument("--solvers", default=",".join(SOLVERS), help=f"subset of {','.join(SOLVERS)}")
    for p in (c, d):
        p.add_argument("--tol", type=float, default=1e-10)
        p.add_argument("--max-iter", type=int, default=500)
        p.add_argument("--json-out", default=None)
    args = parser.parse_args()
    if args.command == "compare":
        compare(args.scale, args.variants.split(","), args.tol, args.max_iter, args.json_out)
    else:
        dense(
            args.rows,
            args.cols,
            args.C,
            args.conditioning,
            args.solvers.split(","),
            args.tol,
            args.max_iter,
            args.json_out,
        )


if __name__ == "__main__":
    main()
