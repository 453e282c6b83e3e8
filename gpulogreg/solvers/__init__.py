"""Solver registry: name -> entry with the :class:`gpulogreg._typing.SolverFn` signature.

Every solver takes ``(problem, params0, *, tol, max_iter, callback, progress)``
and returns a :class:`~gpulogreg._typing.SolverResult`. The *problem* of a
full-batch solver (newton, lbfgs, gd) is the penalised objective
(:class:`gpulogreg.loss.LogisticObjective`), written once against its backend
and array namespace ``xp``, so adding a backend never touches a solver. The
stochastic solver (minibatch) needs batches of the data rather than the
objective: its problem is a
:class:`~gpulogreg.solvers.stochastic.trainer.MinibatchProblem`. Each entry
says which problem it takes and whether it handles an L1 term, so the fit
plan builds the right one without naming solvers. Modules are imported on
first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from gpulogreg._errors import InputValueError
from gpulogreg._typing import SolverFn

__all__ = ["SOLVERS", "SolverEntry", "get_solver", "solver_entry"]


@dataclass(frozen=True)
class SolverEntry:
    """A registered solver.

    Attributes
    ----------
    target : str
        ``"module:function"`` of the solver function.
    stochastic : bool
        Takes a ``MinibatchProblem`` (batches of the data), not the objective.
    handles_l1 : bool
        Minimises L1 and elastic-net penalties (a proximal method).
    """

    target: str
    stochastic: bool = False
    handles_l1: bool = False


SOLVERS: dict[str, SolverEntry] = {
    "newton": SolverEntry("gpulogreg.solvers.newton:solve_newton"),
    "lbfgs": SolverEntry("gpulogreg.solvers.lbfgs:solve_lbfgs"),
    "gd": SolverEntry("gpulogreg.solvers.gd:solve_gd", handles_l1=True),
    "minibatch": SolverEntry(
        "gpulogreg.solvers.stochastic.trainer:solve_minibatch", stochastic=True, handles_l1=True
    ),
}


def solver_entry(name: str) -> SolverEntry:
    """The registry entry of ``name``; ValueError naming the choices otherwise."""
    if name not in SOLVERS:
        raise InputValueError(f"solver must be one of {sorted(SOLVERS)}, got {name!r}")
    return SOLVERS[name]


def get_solver(name: str) -> SolverFn:
    """Return the solver function registered under ``name``."""
    module_name, _, func_name = solver_entry(name).target.partition(":")
    solver: SolverFn = getattr(importlib.import_module(module_name), func_name)
    return solver
