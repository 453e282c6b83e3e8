"""The parameter layout: how the solvers' flat vector maps to coefficients and intercepts.

One object owns the layout for the whole package (as scikit-learn's
``LinearModelLoss`` does): backends split the vector into coefficients and
intercepts with it, the penalty takes its mask from it, and the estimator
converts between it and ``coef_`` / ``intercept_``.

Layout
------
``params`` is the C-order ravel of a ``(n_outputs, n_features + fit_intercept)``
float64 matrix whose last column holds the intercepts (when ``fit_intercept``).
A binary model has one output (``[w_0, ..., w_{n-1}, b]``); a multinomial model
with ``K`` classes has ``K`` outputs. One-vs-rest fits one binary layout per
class.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gpulogreg._array import host_float64

__all__ = ["HasLayout", "ParamLayout"]


@dataclass(frozen=True)
class ParamLayout:
    """Shape of one model's parameter vector.

    Attributes
    ----------
    n_features : int
    n_outputs : int
        1 for the binary (sigmoid) loss, ``K`` for the multinomial loss.
    fit_intercept : bool
    """

    n_features: int
    n_outputs: int
    fit_intercept: bool

    @classmethod
    def for_classes(cls, n_features: int, n_classes: int, fit_intercept: bool) -> ParamLayout:
        """The layout of a model of ``n_classes`` classes (2: binary, one output)."""
        return cls(int(n_features), 1 if n_classes == 2 else int(n_classes), bool(fit_intercept))

    @property
    def n_cols(self) -> int:
        """Columns of the parameter matrix: ``n_features`` (+ 1 with an intercept)."""
        return self.n_features + int(self.fit_intercept)

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return self.n_outputs * self.n_cols

    # -- flat vector <-> (coef, intercept) ------------------------------------------
    def matrix(self, params: Any) -> Any:
        """``params`` viewed as the ``(n_outputs, n_cols)`` matrix (no copy)."""
        return params.reshape(self.n_outputs, self.n_cols)

    def split(self, params: Any) -> tuple[Any, Any]:
        """Views ``(coef (n_outputs, n_features), intercept (n_outputs,))`` of ``params``.

        Without an intercept the second item is the float ``0.0``.
        """
        W = self.matrix(params)
        if self.fit_intercept:
            return W[:, : self.n_features], W[:, self.n_features]
        return W, 0.0

    def join(self, coef: Any, intercept: Any, xp: ModuleType) -> Any:
        """Inverse of :meth:`split`: a flat, C-contiguous float64 vector in ``xp``.

        ``intercept`` is ignored without ``fit_intercept``.
        """
        coef = xp.reshape(coef, (self.n_outputs, self.n_features))
        if self.fit_intercept:
            column = xp.reshape(xp.asarray(intercept, dtype=xp.float64), (self.n_outputs, 1))
            coef = xp.concatenate([coef.astype(xp.float64, copy=False), column], axis=1)
        return xp.ascontiguousarray(coef, dtype=xp.float64).ravel()

    def zeros(self, xp: ModuleType) -> Any:
        """The starting point ``0`` in ``xp``."""
        return xp.zeros(self.n_params, dtype=xp.float64)

    def penalty_mask(self, xp: ModuleType) -> Any:
        """1.0 for every coefficient, 0.0 for every intercept (never penalised)."""
        mask = xp.ones((self.n_outputs, self.n_cols), dtype=xp.float64)
        if self.fit_intercept:
            mask[:, self.n_features] = 0.0
        return mask.ravel()

    # -- estimator attributes -------------------------------------------------------
    def to_estimator(self, params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Host ``(coef (n_outputs, n_features), intercept (n_outputs,))`` of ``params``.

        Zeros for the intercepts without ``fit_intercept``; both C-contiguous float64.
        """
        coef, intercept = self.split(host_float64(params))
        intercept = np.broadcast_to(np.asarray(intercept, dtype=np.float64), (self.n_outputs,))
        return np.ascontiguousarray(coef), np.ascontiguousarray(intercept)

    def estimator_coefficients(
        self, params_per_task: list[Any], *, centre: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``coef_`` and ``intercept_`` (float64) of a fit's tasks, one layout each.

        The tasks' rows are stacked (one-vs-rest: one binary model per class).
        Softmax ones are centred over the classes, as scikit-learn's: softmax
        is unchanged by a shift common to all classes, and the intercepts are
        unpenalised, so the centred ones are reported. With ``centre`` (no L1
        term) each feature's coefficients are centred too: the loss stays the
        same and an L2 penalty can only fall, and the L2 optimum has centred
        coefficients (Zhu & Hastie 2004), so this removes the part of the shift
        a solver stopping at ``tol`` left (preconditioned CG does not keep the
        iterates centred, and that direction costs only the weak penalty), and
        without a penalty it picks the smallest of the equivalent solutions.
        """
        parts = [self.to_estimator(params) for params in params_per_task]
        coef = np.ascontiguousarray(np.concatenate([c for c, _ in parts], axis=0))
        intercept = np.ascontiguousarray(np.concatenate([b for _, b in parts]))
        if self.n_outputs > 1:
            if self.fit_intercept:
                intercept = intercept - intercept.mean()
            if centre:
                coef = np.ascontiguousarray(coef - coef.mean(axis=0))
        return coef, intercept

    def from_estimator(self, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        """Flat host parameters of this layout from ``coef_`` rows and ``intercept_`` entries."""
        return np.asarray(self.join(np.asarray(coef), np.asarray(intercept), np), dtype=np.float64)


class HasLayout:
    """Mixin for objects with a ``layout`` attribute: the layout's sizes as attributes."""

    layout: ParamLayout

    @property
    def n_params(self) -> int:
        """Length of the parameter vector."""
        return self.layout.n_params

    @property
    def n_outputs(self) -> int:
        """1 for the binary (sigmoid) loss, ``K`` for the multinomial loss."""
        return self.layout.n_outputs

    @property
    def fit_intercept(self) -> bool:
        """Whether the parameters carry intercepts."""
        return self.layout.fit_intercept
