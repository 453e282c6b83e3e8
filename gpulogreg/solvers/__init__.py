"""Solver registry: name -> function with the :class:`gpulogreg._typing.SolverFn` signature.

Every solver is written once against the objective (and through it the
backend and its array namespace ``xp``); adding a backend never touches a
solver. Modules are imported on first use.
"""

from __future__ import annotations

import importlib

from gpulogreg._typing import SolverFn

__all__ = ["SOLVERS", "get_solver"]

#: name -> "module:function"
SOLVERS: dict[str, str] = {
    "newton": "gpulogreg.solvers.newton:solve_newton",
    "lbfgs": "gpulogreg.solvers.lbfgs:solve_lbfgs",
    "gd": "gpulogreg.solvers.gd:solve_gd",
}


def get_solver(name: str) -> SolverFn:
    """Return the solver function registered under ``name``."""
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {name!r}")
    module_name, _, func_name = SOLVERS[name].partition(":")
    solver: SolverFn = getattr(importlib.import_module(module_name), func_name)
    return solver
