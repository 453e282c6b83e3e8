"""Figures without pyplot: matplotlib ``Figure`` objects built directly, and the convergence plot.

Every figure of the package is a :class:`matplotlib.figure.Figure` with an Agg
canvas of its own (:func:`new_figure`). Nothing here imports pyplot or calls
``matplotlib.use``: the user's backend, and pyplot's list of open figures,
stay as they were. A figure is saved with ``fig.savefig`` (see
:func:`gpulogreg.plots.save_png`) or shown in a notebook by displaying it.

This module imports nothing from the package but the error for a missing
extra, so :meth:`gpulogreg._typing.History.plot` can use it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np

from gpulogreg._errors import InputValueError, MissingDependencyError

__all__ = ["new_figure", "plot_history", "require_matplotlib"]

#: The horizontal axes of :func:`plot_history`: name -> label.
X_AXES = {
    "seconds": "seconds since the solver started",
    "passes": "passes over the data",
    "iteration": "iteration",
}


def require_matplotlib(purpose: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``purpose`` when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs matplotlib: pip install 'gpulogreg[plot]' (or pip install matplotlib)"
        ) from None


def new_figure(purpose: str, *, figsize: tuple[float, float] = (6.4, 4.8)) -> Any:
    """A ``matplotlib.figure.Figure`` on its own Agg canvas (no pyplot, no backend switch).

    Parameters
    ----------
    purpose : str
        What the figure is for, named in the error when matplotlib is missing.
    figsize : (float, float)
        Width and height in inches.
    """
    require_matplotlib(purpose)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


class _Series(Protocol):
    """What :func:`plot_history` reads of a :class:`~gpulogreg._typing.History`."""

    unit: ClassVar[str]
    objective: list[float]
    optimality: list[float]
    elapsed: list[float]
    passes: list[float]


def plot_history(
    history: _Series, ax: Any = None, *, x: str = "seconds", reference: float | None = None
) -> Any:
    """The objective gap and the optimality against ``x``, on a log scale.

    See :meth:`gpulogreg._typing.History.plot` (which calls it) for the parameters.
    The gap is ``objective - reference``, ``reference`` being by default the
    smallest objective recorded; gaps and optimalities that are not positive
    are left out (a log scale has no zero).
    """
    xs = _x_values(history, x)
    objective = np.asarray(history.objective, dtype=np.float64)
    if reference is None:
        reference = float(objective.min()) if objective.size else 0.0
    if ax is None:
        ax = new_figure("History.plot").add_subplot()
    optimality = np.asarray(history.optimality, dtype=np.float64)
    ax.plot(xs, _positive(objective - reference), ".-", label="objective gap")
    ax.plot(xs, _positive(optimality), ".-", label="optimality")
    ax.set_yscale("log")
    ax.set_xlabel(history.unit if x == "iteration" else X_AXES[x])
    ax.set_ylabel("objective gap, optimality")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def _x_values(history: _Series, x: str) -> np.ndarray:
    if x not in X_AXES:
        raise InputValueError(f"x must be one of {tuple(X_AXES)}, got {x!r}")
    if x == "seconds":
        return np.asarray(history.elapsed, dtype=np.float64)
    if x == "iteration":
        return np.arange(1, len(history.objective) + 1, dtype=np.float64)
    if not history.passes:
        raise InputValueError(
            "this history records no passes (only fits on a Dataset count them); "
            "use x='seconds' or x='iteration'"
        )
    return np.asarray(history.passes, dtype=np.float64)


def _positive(values: np.ndarray) -> np.ndarray:
    """``values`` with what a log scale cannot show (zero, negative, non-finite) as NaN."""
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)
