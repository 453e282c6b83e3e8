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

``solver="auto"`` (:func:`auto_solver`) is decided from the penalty, the
storage format of the task's backend and the number of parameters:

* L1 or elastic net: ``gd`` (proximal FISTA, the full-batch solver that
  handles the L1 term);
* CSR data with more than :data:`AUTO_NEWTON_CG_MIN_PARAMS` parameters (wide
  sparse data, hashed ids or text): ``newton-cg``, which never forms the
  Hessian, its CG preconditioned by the diagonal. Measured with the Numba
  CSR backend (``bench/bench_newton_cg.py``'s solvers, 2-core Xeon shared
  with other jobs), seconds to a 1e-8 relative objective gap: CTR-like
  100,000 x 2^20, C = 0.1: newton-cg 12.0 (9 iterations, 117 CG steps),
  lbfgs 57.8 (304 iterations); text-like 50,000 x 100,000, C = 1: 1.0
  against 2.9 (with the scipy baseline: 13.1 against 53.7 and 1.9 against
  18.1);
* everything else: ``lbfgs``, Hessian-preconditioned once it is slow (see
  :mod:`gpulogreg.solvers.lbfgs`): measured on 1,000,000 x 100 float32 it
  reached tol=1e-8 2-4x sooner than Newton, whose every iteration builds a
  Hessian; on dense 200,000 x 2,000 float64 (C = 1, well-conditioned) 9.0 s
  against newton-cg's 22.3 s and Cholesky Newton's 177 s. Above
  :data:`~gpulogreg.solvers.lbfgs.PRECONDITION_MAX_PARAMS` parameters L-BFGS
  gets no Hessian preconditioner, and on ill-conditioned dense data it
  stalls where newton-cg converges (50,000 x 1,000, scales 0.03-30: a gap
  of 3e-2 after 500 iterations, 41 s; newton-cg 1e-8 in 10 s): pass
  ``solver="newton-cg"`` for wide unscaled dense features.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from gpulogreg._errors import InputValueError
from gpulogreg._typing import SolverFn

__all__ = [
    "AUTO_NEWTON_CG_MIN_PARAMS",
    "SOLVERS",
    "SolverEntry",
    "auto_solver",
    "get_solver",
    "solver_entry",
]

#: ``solver="auto"`` runs newton-cg on CSR data above this many parameters:
#: where newton itself stops building the Hessian
#: (:data:`gpulogreg.solvers.newton.CG_THRESHOLD`; a test checks they agree).
AUTO_NEWTON_CG_MIN_PARAMS = 1000


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
    "newton-cg": SolverEntry("gpulogreg.solvers.newton:solve_newton_cg"),
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


def auto_solver(*, l1_ratio: float, data_format: str, n_params: int) -> str:
    """The registry name ``solver="auto"`` stands for (see the module docstring).

    Parameters
    ----------
    l1_ratio : float
        The L1 share of the penalty (0: L2 or none).
    data_format : {"dense", "csr"}
        The ``format`` of the task's backend.
    n_params : int
        Parameters of the model (coefficients and intercepts of every output).
    """
    if l1_ratio > 0:
        return "gd"
    if data_format == "csr" and n_params > AUTO_NEWTON_CG_MIN_PARAMS:
        return "newton-cg"
    return "lbfgs"


def get_solver(name: str) -> SolverFn:
    """Return the solver function registered under ``name``."""
    module_name, _, func_name = solver_entry(name).target.partition(":")
    solver: SolverFn = getattr(importlib.import_module(module_name), func_name)
    return solver
