"""scikit-learn's parameter semantics, as :class:`gpulogreg.LogisticRegression` follows them.

scikit-learn 1.8 deprecated ``penalty``: ``l1_ratio`` and ``C`` decide the
penalty (``l1_ratio=0`` L2, ``1`` the lasso, in between the elastic net,
``C=inf`` none), and an explicit ``penalty`` still works with a
``FutureWarning``. :func:`resolve_regularisation` applies those rules, warns
where scikit-learn warns, maps scikit-learn's solver names to gpulogreg's
(:data:`SKLEARN_SOLVERS`) with scikit-learn's errors for the combinations it
refuses, and gives ``dual``, ``intercept_scaling`` and ``n_jobs`` their
meaning. :func:`not_converged_message` words a ``ConvergenceWarning`` as
scikit-learn's solver of that name does, so that code matching on the text
keeps working.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

from gpulogreg._errors import InputValueError

__all__ = [
    "PENALTY_DEFAULT",
    "SKLEARN_SOLVERS",
    "Regularisation",
    "not_converged_message",
    "resolve_regularisation",
]

#: The default of ``penalty``: not given, ``l1_ratio`` and ``C`` decide.
PENALTY_DEFAULT = "deprecated"

#: scikit-learn's solver names -> gpulogreg's solver. ``newton-cholesky``
#: builds the Hessian (gpulogreg's ``newton``, which turns to Newton-CG above
#: 1000 parameters); ``sag``, ``saga`` and ``liblinear`` have no counterpart of
#: their own and run ``auto`` (proximal gradient descent with an L1 term, else
#: L-BFGS or Newton-CG from the data). ``liblinear`` keeps its objective: the
#: intercept is penalised as the coefficient of a constant feature of value
#: ``intercept_scaling``.
SKLEARN_SOLVERS = {
    "lbfgs": "lbfgs",
    "newton-cg": "newton-cg",
    "newton-cholesky": "newton",
    "sag": "auto",
    "saga": "auto",
    "liblinear": "auto",
}
#: scikit-learn's solvers that take only an L2 penalty or none.
_L2_ONLY = frozenset({"lbfgs", "newton-cg", "newton-cholesky", "sag"})

_PENALTIES = ("l2", "l1", "elasticnet", None, PENALTY_DEFAULT)

#: Appended to scikit-learn's deprecation messages, which name its versions.
_FOLLOWS = " (scikit-learn's versions: gpulogreg follows its deprecation.)"
_PENALTY_DEPRECATED = (
    "'penalty' was deprecated in version 1.8 and will be removed in 1.10. To avoid this "
    "warning, leave 'penalty' set to its default value and use 'l1_ratio' or 'C' instead. "
    "Use l1_ratio=0 instead of penalty='l2', l1_ratio=1 instead of penalty='l1', l1_ratio "
    "set to a float between 0 and 1 instead of penalty='elasticnet', and C=np.inf instead "
    "of penalty=None." + _FOLLOWS
)
_L1_RATIO_NONE = (
    "'l1_ratio=None' was deprecated in version 1.8 and will trigger an error in 1.10. Use "
    "0<=l1_ratio<=1 instead." + _FOLLOWS
)


@dataclass(frozen=True)
class Regularisation:
    """The penalty and solver a fit runs with, resolved from the estimator's parameters.

    Attributes
    ----------
    C : float
        Inverse strength; ``math.inf`` for no penalty.
    l1_ratio : float
        The L1 share in [0, 1] (0 without a penalty).
    solver : str
        gpulogreg's solver: a registry name or ``"auto"``.
    intercept_scaling : float or None
        ``solver="liblinear"``: its objective, which penalises the intercept as
        the coefficient of a constant feature of this value, and takes binary
        models only. None: another solver, the intercept never penalised.
    """

    C: float
    l1_ratio: float
    solver: str
    intercept_scaling: float | None = None


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _effective_penalty(penalty: Any, C: float, l1_ratio: Any) -> str | None:
    """The penalty scikit-learn's ``fit`` derives from the parameters (None: no penalty)."""
    if penalty != PENALTY_DEFAULT:
        return penalty
    if math.isinf(C):
        return None
    if not l1_ratio:
        return "l2"
    return "l1" if l1_ratio == 1 else "elasticnet"


def _consistency_warnings(
    penalty: Any, effective: str | None, C: float, l1_ratio: Any, stacklevel: int
) -> None:
    """scikit-learn's warnings for parameters that contradict each other."""
    if effective != "elasticnet" and l1_ratio is not None and 0 < l1_ratio < 1:
        warnings.warn(
            f"l1_ratio parameter is only used when penalty is 'elasticnet'. "
            f"Got (penalty={effective})",
            UserWarning,
            stacklevel=stacklevel,
        )
    if (penalty == "l2" and l1_ratio != 0) or (penalty == "l1" and l1_ratio != 1):
        warnings.warn(
            f"Inconsistent values: penalty={penalty} with l1_ratio={l1_ratio}. "
            "penalty is deprecated. Please use l1_ratio only.",
            UserWarning,
            stacklevel=stacklevel,
        )


def _check_sklearn_solver(solver: str, penalty: str | None, dual: bool) -> None:
    """scikit-learn's refusals for its solver names (``_check_solver``'s)."""
    if solver in _L2_ONLY and penalty not in ("l2", None):
        raise InputValueError(
            f"Solver {solver} supports only 'l2' or None penalties, got {penalty} penalty. "
            "(gpulogreg's solver='gd', 'saga' or 'auto' fits an L1 term.)"
        )
    if solver == "liblinear":
        if penalty == "elasticnet":
            raise InputValueError(
                "Only 'saga' solver supports elasticnet penalty, got solver=liblinear."
            )
        if penalty is None:
            raise InputValueError(
                "C=np.inf as well as penalty=None is not supported for the liblinear solver"
            )
        if dual and penalty == "l1":
            raise InputValueError(
                "Unsupported set of arguments: The combination of penalty='l1' and "
                "loss='logistic_regression' are not supported when dual=True, Parameters: "
                "penalty='l1', loss='logistic_regression', dual=True"
            )


def resolve_regularisation(
    *,
    penalty: Any,
    C: Any,
    l1_ratio: Any,
    solver: Any,
    dual: Any,
    intercept_scaling: Any,
    n_jobs: Any,
    own_solvers: frozenset[str],
    warn: bool = True,
    stacklevel: int = 2,
) -> Regularisation:
    """The effective penalty and solver of an estimator's parameters, as scikit-learn decides.

    Parameters
    ----------
    penalty, C, l1_ratio, solver, dual, intercept_scaling, n_jobs
        The estimator's parameters (see :class:`gpulogreg.LogisticRegression`).
    own_solvers : frozenset of str
        gpulogreg's solver names (besides ``"auto"``), which pass unchanged.
    warn : bool, default=True
        Issue scikit-learn's deprecation and consistency warnings (a fit);
        False for a use of the fitted settings (inference). They come in
        scikit-learn's order, its refusals among them.
    stacklevel : int, default=2
        The warnings' ``stacklevel`` from this function (the frame of the
        user's call: 2 is this function's caller).

    Raises
    ------
    ValueError
        An unknown penalty or solver, a ``C``, ``l1_ratio`` or
        ``intercept_scaling`` out of range, or a combination scikit-learn refuses
        (an L1 term for an L2-only solver, ``dual=True`` outside liblinear's L2).
    """
    if penalty not in _PENALTIES:
        raise InputValueError(
            f"penalty must be one of ('l2', 'l1', 'elasticnet', None), got {penalty!r}"
        )
    if not _is_real(C) or not C > 0:
        raise InputValueError(f"C must be a positive number (numpy.inf for no penalty), got {C!r}")
    if l1_ratio is not None and (not _is_real(l1_ratio) or not 0.0 <= l1_ratio <= 1.0):
        raise InputValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
    known = sorted({"auto", *own_solvers, *SKLEARN_SOLVERS})
    if solver not in known:
        raise InputValueError(f"solver must be one of {known}, got {solver!r}")
    if not isinstance(dual, bool):
        raise InputValueError(f"dual must be a bool, got {dual!r}")
    if not _is_real(intercept_scaling) or not intercept_scaling > 0:
        raise InputValueError(
            f"intercept_scaling must be a positive number, got {intercept_scaling!r}"
        )
    here = stacklevel + 1  # the warnings' frame, seen from this function's callees
    if warn and penalty == PENALTY_DEFAULT and l1_ratio is None:
        warnings.warn(_L1_RATIO_NONE, FutureWarning, stacklevel=stacklevel)
    if warn and penalty != PENALTY_DEFAULT:
        warnings.warn(_PENALTY_DEPRECATED, FutureWarning, stacklevel=stacklevel)
    effective = _effective_penalty(penalty, float(C), l1_ratio)
    if solver in SKLEARN_SOLVERS:
        _check_sklearn_solver(solver, effective, dual)
    if dual and solver != "liblinear":
        raise InputValueError(f"Solver {solver} supports only dual=False, got dual={dual}")
    if warn:
        _consistency_warnings(penalty, effective, float(C), l1_ratio, here)
    if effective == "elasticnet" and l1_ratio is None:
        raise InputValueError("l1_ratio must be specified when penalty is elasticnet.")
    if warn and penalty is None and C != 1.0:
        warnings.warn(
            "Setting penalty=None will ignore the C and l1_ratio parameters",
            UserWarning,
            stacklevel=stacklevel,
        )
    if warn and n_jobs is not None:
        warnings.warn(
            "'n_jobs' has no effect since 1.8 and will be removed in 1.10. You provided "
            f"'n_jobs={n_jobs}', please leave it unspecified. (scikit-learn's versions; "
            "gpulogreg's kernels use every Numba thread.)",
            FutureWarning,
            stacklevel=stacklevel,
        )
    if effective is None:
        C, ratio = math.inf, 0.0
    else:
        ratio = {"l2": 0.0, "l1": 1.0}.get(effective, float(l1_ratio or 0.0))
    return Regularisation(
        C=float(C),
        l1_ratio=ratio,
        solver=SKLEARN_SOLVERS.get(solver, solver),
        intercept_scaling=float(intercept_scaling) if solver == "liblinear" else None,
    )


#: ``ConvergenceWarning`` wording of scikit-learn's solvers (code and tests match on it).
_SKLEARN_WORDING = {
    "lbfgs": "lbfgs failed to converge after {n_iter} iteration(s) ({reason}).\n\n"
    "Increase the number of iterations to improve the convergence (max_iter={max_iter}).",
    "newton-cg": "newton-cg failed to converge at loss = {loss} ({reason}). "
    "Increase the number of iterations.",
    "newton-cholesky": "Newton solver did not converge after {n_iter} iterations ({reason}).",
    "sag": "The max_iter was reached which means the coef_ did not converge ({reason}).",
    "saga": "The max_iter was reached which means the coef_ did not converge ({reason}).",
    "liblinear": "Liblinear failed to converge, increase the number of iterations ({reason}).",
}
#: gpulogreg's solvers that share a scikit-learn solver's name or its method.
_OWN_WORDING = {"lbfgs": "lbfgs", "newton-cg": "newton-cg", "newton": "newton-cholesky"}


def not_converged_message(
    solver: str, ran: str, *, n_iter: int, max_iter: int, loss: float, reason: str
) -> str:
    """A ``ConvergenceWarning``'s text, worded as scikit-learn's solver of that name words it.

    Parameters
    ----------
    solver : str
        The ``solver`` parameter (a scikit-learn name, ``"auto"`` or gpulogreg's).
    ran : str
        gpulogreg's solver that ran.
    n_iter, max_iter : int
    loss : float
        The final objective.
    reason : str
        gpulogreg's own account of the stop.
    """
    wording = _SKLEARN_WORDING.get(solver) or _SKLEARN_WORDING.get(_OWN_WORDING.get(ran, ""))
    if wording is None:
        wording = (
            "{ran} failed to converge after {n_iter} iteration(s) ({reason}). Increase the "
            "number of iterations (max_iter={max_iter}) or scale the data."
        )
    return wording.format(
        n_iter=n_iter, max_iter=max_iter, loss=loss, ran=ran, reason=f"gpulogreg's {ran}: {reason}"
    )
