"""The penalised logistic objective over a backend, in scikit-learn's convention.

scikit-learn minimises, for sample weights ``s_i`` (class weights folded in)::

    F(w, b) = sum_i s_i l(y_i, z_i) + ||w||^2 / (2 C) * (1 - r) + ||w||_1 / C * r

with ``l`` the (binary or multinomial) cross-entropy, ``z_i = x_i . w + b``,
``r = l1_ratio`` and the intercept ``b`` never penalised. This module works with
``f = F / sum_i s_i``: the same minimiser, better scaled (the data term is a
weighted *mean*). Hence the penalty strengths used here are::

    alpha = 1 / (C * sum_i s_i),   l2 = alpha * (1 - r),   l1 = alpha * r

The smooth part (data term + L2) is what :meth:`LogisticObjective.value_grad`
returns; the L1 term is handled by the solvers through :meth:`prox_l1`.
The stopping rule of every solver is ``optimality(params, grad) <= tol``: the
max-norm of the gradient, or with L1 of the minimum-norm subgradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gpulogreg._array import host_scalars
from gpulogreg._errors import InputValueError
from gpulogreg._layout import ParamLayout
from gpulogreg._typing import Array, Backend

__all__ = ["LogisticObjective", "Penalty", "loss_and_gradient"]

#: Power-iteration steps used to estimate lambda_max(A^T S A). Ten steps give an
#: estimate within a few per cent on the data we see; the solvers using it keep
#: a backtracking safeguard for when it is too low.
POWER_ITERATIONS = 10
#: Safety margin on the power-iteration estimate (it approaches from below).
LIPSCHITZ_MARGIN = 1.05


@dataclass
class Penalty:
    """The elastic-net penalty of the weight-normalised objective, for one layout.

    ``l2 / 2 sum_j m_j w_j^2 + l1 sum_j |m_j w_j|`` with ``l2 = (1 - r) / (C W)``
    and ``l1 = r / (C W)`` (``r = l1_ratio``, ``W`` the sum of the effective
    sample weights the data term is normalised by) and the per-parameter
    weights ``m`` of :attr:`mask`: 1 for the coefficients, 0 for the intercepts
    (never penalised), except for liblinear's objective (``intercept_scaling``
    ``s``), which penalises an intercept ``b`` as the coefficient ``b / s`` of a
    constant feature of value ``s``: ``m = 1 / s^2`` in its pure L2 penalty,
    ``1 / s`` in its pure L1 one. The full-batch objective and the mini-batch
    trainer both use it, so they minimise the same function.

    Attributes
    ----------
    l2, l1 : float
        Strengths in the weight-normalised objective.
    mask : array of shape (n_params,), float64
        The per-parameter weights ``m``.
    xp : module
        Array namespace of ``mask`` and of the parameters.
    """

    l2: float
    l1: float
    mask: Array
    xp: ModuleType

    @classmethod
    def build(
        cls,
        layout: ParamLayout,
        xp: ModuleType,
        *,
        C: float,
        l1_ratio: float,
        weight_sum: float,
        intercept_scaling: float | None = None,
    ) -> Penalty:
        """The penalty of ``C`` and ``l1_ratio`` for data of total weight ``weight_sum``.

        ``intercept_scaling``: liblinear's penalised intercept (see the class);
        None leaves the intercepts unpenalised.

        Raises
        ------
        ValueError
            ``intercept_scaling`` with an elastic-net mix (liblinear's penalty is pure).
        """
        alpha = 0.0 if math.isinf(C) else 1.0 / (C * weight_sum)
        mask = layout.penalty_mask(xp)
        if intercept_scaling is not None and layout.fit_intercept:
            if 0.0 < l1_ratio < 1.0:
                raise InputValueError("a penalised intercept takes a pure L1 or L2 penalty")
            power = 1.0 if l1_ratio == 1.0 else 2.0
            mask = xp.where(mask == 0.0, float(intercept_scaling) ** -power, mask)
        return cls(l2=alpha * (1.0 - l1_ratio), l1=alpha * l1_ratio, mask=mask, xp=xp)

    def add_smooth(self, params: Array, loss: Any, grad: Array) -> tuple[Any, Array]:
        """``loss`` and ``grad`` of the data term plus the L2 term (the smooth objective).

        Nothing leaves the device: ``loss`` may be a 0-d device array, and so is
        the result then (the caller fetches it with its other scalars at once).
        """
        if not self.l2:
            return loss, grad
        weighted = params * self.mask
        return loss + 0.5 * self.l2 * (params @ weighted), grad + self.l2 * weighted

    def smooth_value(self, params: Array) -> float:
        """The L2 term ``l2 / 2 sum_j m_j w_j^2``."""
        if not self.l2:
            return 0.0
        return 0.5 * self.l2 * float(params @ (params * self.mask))

    def add_hessian(self, H: Array) -> Array:
        """``H`` plus the L2 term's Hessian (on the diagonal, in place)."""
        if self.l2:
            idx = self.xp.arange(H.shape[0])
            H[idx, idx] += self.l2 * self.mask
        return H

    def add_diagonal(self, diagonal: Array) -> Array:
        """The diagonal of a Hessian plus the L2 term's (``l2`` on the coefficients)."""
        if not self.l2:
            return diagonal
        return diagonal + self.l2 * self.mask

    def add_hvp(self, out: Array, v: Array) -> Array:
        """A Hessian-vector product plus the L2 term's."""
        if not self.l2:
            return out
        return out + self.l2 * self.mask * v

    def l1_value(self, params: Array) -> float:
        """The L1 term ``l1 sum_j |m_j w_j|`` (0 without L1)."""
        return float(self.l1_lazy(params))

    def l1_lazy(self, params: Array) -> Any:
        """The L1 term, left on the device (a 0-d array; 0.0 without L1)."""
        if not self.l1:
            return 0.0
        return self.l1 * self.xp.abs(params * self.mask).sum()

    def prox(self, params: Array, step: Array | float) -> Array:
        """Proximal operator of ``step * l1 sum_j |m_j w_j|`` (soft thresholding).

        ``step`` may be a vector (per-coordinate steps of a preconditioned method).
        """
        if not self.l1:
            return params
        xp = self.xp
        threshold = step * self.l1 * self.mask
        return xp.sign(params) * xp.maximum(xp.abs(params) - threshold, 0.0)

    def optimality(self, params: Array, grad: Array) -> float:
        """Max-norm of the minimum-norm subgradient of smooth part + L1 term.

        ``grad`` is the smooth part's gradient. Without L1 this is
        ``max |grad|``. With L1, for a penalised entry ``j``:
        ``|g_j + l1 sign(w_j)|`` when ``w_j != 0`` and ``max(|g_j| - l1, 0)``
        when ``w_j == 0``.
        """
        return float(self.optimality_lazy(params, grad))

    def optimality_lazy(self, params: Array, grad: Array) -> Array:
        """:meth:`optimality` left on the device (a 0-d array)."""
        xp = self.xp
        if not self.l1:
            return xp.abs(grad).max()
        l1 = self.l1 * self.mask
        nonzero = xp.abs(grad + l1 * xp.sign(params))
        at_zero = xp.maximum(xp.abs(grad) - l1, 0.0)
        return xp.where(params != 0, nonzero, at_zero).max()


class LogisticObjective:
    """Penalised, weight-normalised logistic objective.

    Parameters
    ----------
    backend : Backend
        Owns the data and computes the data term.
    C : float
        Inverse regularisation strength (``numpy.inf``: no penalty).
    l1_ratio : float
        Elastic-net mixing in [0, 1]; 0 is pure L2.
    weight_sum : float
        Sum of the effective sample weights before normalisation.
    intercept_scaling : float, optional
        liblinear's penalised intercept (see :class:`Penalty`); None: unpenalised.

    Attributes
    ----------
    xp : module
        Array namespace of the parameters.
    layout : ParamLayout
    n_params : int
    penalty : Penalty
    l2, l1 : float
        Penalty strengths of the normalised objective.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        C: float = 1.0,
        l1_ratio: float = 0.0,
        weight_sum: float = 1.0,
        intercept_scaling: float | None = None,
    ) -> None:
        self.backend = backend
        self.xp = backend.xp
        self.layout: ParamLayout = backend.layout
        self.n_params = self.layout.n_params
        self.penalty = Penalty.build(
            self.layout,
            self.xp,
            C=C,
            l1_ratio=l1_ratio,
            weight_sum=weight_sum,
            intercept_scaling=intercept_scaling,
        )
        self.l2 = self.penalty.l2
        self.l1 = self.penalty.l1

    # -- smooth part ----------------------------------------------------------
    def value_grad(self, params: Array) -> tuple[float, Array]:
        """Smooth objective (data term + L2) and its gradient; one device-to-host transfer."""
        loss, grad = self.backend.loss_grad_lazy(params)
        value, grad = self.penalty.add_smooth(params, loss, grad)
        (value,) = host_scalars(value)
        return value, grad

    def value_grad_slope(self, params: Array, d: Array) -> tuple[float, Array, float]:
        """:meth:`value_grad` and the directional derivative ``grad . d``, in one transfer.

        What a line search needs at a trial point: the value (data term and
        penalty) and the slope come to the host together.
        """
        loss, grad = self.backend.loss_grad_lazy(params)
        value, grad = self.penalty.add_smooth(params, loss, grad)
        value, slope = host_scalars(value, grad @ d)
        return value, grad, slope

    def value(self, params: Array) -> float:
        """Smooth objective only."""
        return self.backend.loss(params) + self.penalty.smooth_value(params)

    def hessian(self, params: Array) -> Array:
        """Hessian of the smooth objective, shape (n_params, n_params)."""
        return self.penalty.add_hessian(self.backend.hessian(params))

    def hvp(self, params: Array, v: Array) -> Array:
        """Hessian-vector product of the smooth objective."""
        return self.penalty.add_hvp(self.backend.hvp(params, v), v)

    def penalty_curvature(self, v: Array) -> Array:
        """The L2 term's Hessian times ``v``: ``l2 * mask * v`` (no pass over the data)."""
        return self.l2 * self.penalty.mask * v

    def hessian_diagonal(self, params: Array) -> Array:
        """Diagonal of the smooth objective's Hessian, shape (n_params,), without forming it."""
        return self.penalty.add_diagonal(self.backend.hessian_diagonal(params))

    def lipschitz_bound(self) -> float:
        """Upper estimate of the gradient's Lipschitz constant.

        ``lambda_max(A^T S A) / 4 + l2`` for the sigmoid loss (its curvature is
        at most 1/4) and ``/ 2`` for softmax, with ``lambda_max`` from
        :data:`POWER_ITERATIONS` steps of power iteration on
        :meth:`Backend.gram_matvec` and a :data:`LIPSCHITZ_MARGIN`.
        """
        xp = self.xp
        n_cols = self.layout.n_cols
        v = xp.ones(n_cols, dtype=xp.float64) / math.sqrt(n_cols)
        eigenvalue = 0.0
        for _ in range(POWER_ITERATIONS):
            w = self.backend.gram_matvec(v)
            eigenvalue = float(xp.sqrt(w @ w))
            if eigenvalue == 0.0:
                break
            v = w / eigenvalue
        curvature = 0.25 if self.layout.n_outputs == 1 else 0.5
        return LIPSCHITZ_MARGIN * curvature * eigenvalue + self.l2

    # -- L1 part --------------------------------------------------------------
    def penalty_l1(self, params: Array) -> float:
        """The L1 term ``l1 * ||coef||_1`` (0 without L1)."""
        return self.penalty.l1_value(params)

    def penalty_l1_lazy(self, params: Array) -> Any:
        """:meth:`penalty_l1` left on the device, to be fetched with other scalars."""
        return self.penalty.l1_lazy(params)

    def prox_l1(self, params: Array, step: float) -> Array:
        """Proximal operator of ``step * l1 * ||coef||_1`` (soft thresholding)."""
        return self.penalty.prox(params, step)

    def optimality(self, params: Array, grad: Array) -> float:
        """Max-norm of the minimum-norm subgradient of the full objective (see Penalty)."""
        return self.penalty.optimality(params, grad)

    def optimality_lazy(self, params: Array, grad: Array) -> Array:
        """:meth:`optimality` left on the device, to be fetched with other scalars."""
        return self.penalty.optimality_lazy(params, grad)


def loss_and_gradient(
    X: Array,
    y: Array,
    coef: Array,
    intercept: float = 0.0,
    *,
    sample_weight: Array | None = None,
    C: float = math.inf,
    backend: str = "auto",
) -> tuple[float, Array, float]:
    """Binary penalised log-loss and its gradient, divided by the sum of weights.

    ``loss = sum_i s_i [log(1 + exp(z_i)) - y_i z_i] / sum(s) + ||coef||^2 / (2 C sum(s))``
    with ``z_i = x_i . coef + intercept``: the weighted mean natural-log
    cross-entropy (``sklearn.metrics.log_loss`` when ``C`` is infinite) plus the
    scaled L2 penalty.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
        Labels in {0, 1} (booleans accepted).
    coef : array of shape (n_features,)
    intercept : float
    sample_weight : array of shape (n_samples,), optional
    C : float
        Inverse regularisation strength; ``inf`` for none.
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    loss : float
    grad_coef : array of shape (n_features,), float64, in X's namespace (NumPy input
        gives NumPy output whatever the backend)
    grad_intercept : float
    """
    from gpulogreg.backends import make_backend
    from gpulogreg.data import array_module_name, check_sample_weight, check_X, encode_labels

    X, _ = check_X(X, accept_sparse=True)
    classes, y_index = encode_labels(y)
    if y_index.shape[0] != X.shape[0]:
        raise InputValueError(f"X has {X.shape[0]} rows but y has {y_index.shape[0]} labels")
    if not set(classes.tolist()) <= {0, 1}:
        raise InputValueError(f"y must hold labels 0 and 1, got {classes.tolist()}")
    y01 = classes[y_index].astype("int32")
    sw = check_sample_weight(sample_weight, X.shape[0])
    weight_sum = float(sw.sum())
    impl = make_backend(X, y01, sw / weight_sum, n_classes=2, fit_intercept=True, backend=backend)
    xp = impl.xp
    coef_arr = xp.asarray(coef, dtype=xp.float64).ravel()
    if coef_arr.shape[0] != X.shape[1]:
        raise InputValueError(
            f"coef has {coef_arr.shape[0]} entries but X has {X.shape[1]} features"
        )
    params = xp.concatenate([coef_arr, xp.asarray([float(intercept)], dtype=xp.float64)])
    objective = LogisticObjective(impl, C=C, weight_sum=weight_sum)
    loss, grad = objective.value_grad(params)
    if array_module_name(X) != array_module_name(grad):
        grad = grad.get()  # NumPy input computed on the GPU: hand back NumPy
    return loss, grad[:-1], float(grad[-1])
