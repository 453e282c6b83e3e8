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

from gpulogreg._typing import Array, Backend

__all__ = ["LogisticObjective", "loss_and_gradient"]

#: Power-iteration steps used to estimate lambda_max(A^T S A). Ten steps give an
#: estimate within a few per cent on the data we see; the solvers using it keep
#: a backtracking safeguard for when it is too low.
POWER_ITERATIONS = 10
#: Safety margin on the power-iteration estimate (it approaches from below).
LIPSCHITZ_MARGIN = 1.05


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

    Attributes
    ----------
    xp : module
        Array namespace of the parameters.
    n_params : int
    l2, l1 : float
        Penalty strengths of the normalised objective.
    """

    def __init__(
        self, backend: Backend, *, C: float = 1.0, l1_ratio: float = 0.0, weight_sum: float = 1.0
    ) -> None:
        self.backend = backend
        self.xp = backend.xp
        alpha = 0.0 if math.isinf(C) else 1.0 / (C * weight_sum)
        self.l2 = alpha * (1.0 - l1_ratio)
        self.l1 = alpha * l1_ratio
        n_cols = backend.n_features + int(backend.fit_intercept)
        self.n_params = backend.n_outputs * n_cols
        mask = self.xp.ones((backend.n_outputs, n_cols), dtype=self.xp.float64)
        if backend.fit_intercept:
            mask[:, -1] = 0.0
        #: 1 for penalised coefficients, 0 for intercepts.
        self.penalty_mask = mask.ravel()

    # -- smooth part ----------------------------------------------------------
    def value_grad(self, params: Array) -> tuple[float, Array]:
        """Smooth objective (data term + L2) and its gradient."""
        loss, grad = self.backend.loss_grad(params)
        if self.l2:
            penalised = params * self.penalty_mask
            loss += 0.5 * self.l2 * float(penalised @ penalised)
            grad = grad + self.l2 * penalised
        return loss, grad

    def value(self, params: Array) -> float:
        """Smooth objective only."""
        loss = self.backend.loss(params)
        if self.l2:
            penalised = params * self.penalty_mask
            loss += 0.5 * self.l2 * float(penalised @ penalised)
        return loss

    def hessian(self, params: Array) -> Array:
        """Hessian of the smooth objective, shape (n_params, n_params)."""
        H = self.backend.hessian(params)
        if self.l2:
            idx = self.xp.arange(self.n_params)
            H[idx, idx] += self.l2 * self.penalty_mask
        return H

    def hvp(self, params: Array, v: Array) -> Array:
        """Hessian-vector product of the smooth objective."""
        out = self.backend.hvp(params, v)
        if self.l2:
            out = out + self.l2 * self.penalty_mask * v
        return out

    def lipschitz_bound(self) -> float:
        """Upper estimate of the gradient's Lipschitz constant.

        ``lambda_max(A^T S A) / 4 + l2`` for the sigmoid loss (its curvature is
        at most 1/4) and ``/ 2`` for softmax, with ``lambda_max`` from
        :data:`POWER_ITERATIONS` steps of power iteration on
        :meth:`Backend.gram_matvec` and a :data:`LIPSCHITZ_MARGIN`.
        """
        xp = self.xp
        backend = self.backend
        n_cols = backend.n_features + int(backend.fit_intercept)
        v = xp.ones(n_cols, dtype=xp.float64) / math.sqrt(n_cols)
        eigenvalue = 0.0
        for _ in range(POWER_ITERATIONS):
            w = backend.gram_matvec(v)
            eigenvalue = float(xp.sqrt(w @ w))
            if eigenvalue == 0.0:
                break
            v = w / eigenvalue
        curvature = 0.25 if backend.n_outputs == 1 else 0.5
        return LIPSCHITZ_MARGIN * curvature * eigenvalue + self.l2

    # -- L1 part --------------------------------------------------------------
    def penalty_l1(self, params: Array) -> float:
        """The L1 term ``l1 * ||coef||_1`` (0 without L1)."""
        if not self.l1:
            return 0.0
        return self.l1 * float(self.xp.abs(params * self.penalty_mask).sum())

    def prox_l1(self, params: Array, step: float) -> Array:
        """Proximal operator of ``step * l1 * ||coef||_1`` (soft thresholding)."""
        if not self.l1:
            return params
        xp = self.xp
        threshold = step * self.l1 * self.penalty_mask
        return xp.sign(params) * xp.maximum(xp.abs(params) - threshold, 0.0)

    def optimality(self, params: Array, grad: Array) -> float:
        """Max-norm of the minimum-norm subgradient of the full objective.

        Without L1 this is ``max |grad|``. With L1, for a penalised entry
        ``j``: ``|g_j + l1 sign(w_j)|`` when ``w_j != 0`` and
        ``max(|g_j| - l1, 0)`` when ``w_j == 0``.
        """
        xp = self.xp
        if not self.l1:
            return float(xp.abs(grad).max())
        l1 = self.l1 * self.penalty_mask
        nonzero = xp.abs(grad + l1 * xp.sign(params))
        at_zero = xp.maximum(xp.abs(grad) - l1, 0.0)
        return float(xp.where(params != 0, nonzero, at_zero).max())


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

    X, _ = check_X(X)
    classes, y_index = encode_labels(y)
    if y_index.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y_index.shape[0]} labels")
    if not set(classes.tolist()) <= {0, 1}:
        raise ValueError(f"y must hold labels 0 and 1, got {classes.tolist()}")
    y01 = classes[y_index].astype("int32")
    sw = check_sample_weight(sample_weight, X.shape[0])
    weight_sum = float(sw.sum())
    impl = make_backend(X, y01, sw / weight_sum, n_classes=2, fit_intercept=True, backend=backend)
    xp = impl.xp
    coef_arr = xp.asarray(coef, dtype=xp.float64).ravel()
    if coef_arr.shape[0] != X.shape[1]:
        raise ValueError(f"coef has {coef_arr.shape[0]} entries but X has {X.shape[1]} features")
    params = xp.concatenate([coef_arr, xp.asarray([float(intercept)], dtype=xp.float64)])
    objective = LogisticObjective(impl, C=C, weight_sum=weight_sum)
    loss, grad = objective.value_grad(params)
    if array_module_name(X) != array_module_name(grad):
        grad = grad.get()  # NumPy input computed on the GPU: hand back NumPy
    return loss, grad[:-1], float(grad[-1])
