"""The public loss_and_gradient and the penalised objective."""

from __future__ import annotations

import numpy as np
import pytest

from gpulogreg import loss_and_gradient
from gpulogreg.backends import make_backend
from gpulogreg.data import prepare_fit_data
from gpulogreg.loss import LogisticObjective
from tests._helpers import make_classification

BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_log_loss_without_penalty(backend: str) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = make_classification(700, 6, seed=1)
    rng = np.random.default_rng(0)
    coef, sw = rng.normal(size=6), rng.uniform(0.1, 2.0, size=700)
    loss, _, _ = loss_and_gradient(X, y, coef, -0.4, sample_weight=sw, backend=backend)
    p = 1 / (1 + np.exp(-(X @ coef - 0.4)))
    assert loss == pytest.approx(metrics.log_loss(y, p, sample_weight=sw), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_is_scaled_by_weight_sum(backend: str) -> None:
    X, y = make_classification(300, 4, seed=2)
    coef = np.array([0.5, -1.0, 2.0, 0.1])
    sw = np.full(300, 2.0)
    base, grad0, _ = loss_and_gradient(X, y, coef, sample_weight=sw, backend=backend)
    loss, grad, _ = loss_and_gradient(X, y, coef, sample_weight=sw, C=0.25, backend=backend)
    assert loss - base == pytest.approx(coef @ coef / (2 * 0.25 * 600))
    np.testing.assert_allclose(grad - grad0, coef / (0.25 * 600), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C", [np.inf, 0.3])
def test_gradient_matches_finite_differences(backend: str, C: float) -> None:
    X, y = make_classification(400, 5, seed=3)
    rng = np.random.default_rng(1)
    coef, b = rng.normal(size=5), 0.7
    sw = rng.uniform(0.5, 1.5, size=400)
    _, grad, grad_b = loss_and_gradient(X, y, coef, b, sample_weight=sw, C=C, backend=backend)
    step = 1e-6  # central differences: error O(step^2) ~ 1e-12, rounding ~ 1e-16 / step

    def f(c: np.ndarray, intercept: float) -> float:
        return loss_and_gradient(X, y, c, intercept, sample_weight=sw, C=C, backend=backend)[0]

    numeric = [(f(coef + step * e, b) - f(coef - step * e, b)) / (2 * step) for e in np.eye(5)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    numeric_b = (f(coef, b + step) - f(coef, b - step)) / (2 * step)
    assert grad_b == pytest.approx(numeric_b, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4])
def test_finite_for_extreme_decision_values(backend: str, dtype: type, scale: float) -> None:
    X = np.array([[1.0], [-1.0], [1.0], [-1.0], [0.5]], dtype=dtype)
    y = np.array([1, 0, 0, 1, 1])
    loss, grad, grad_b = loss_and_gradient(X, y, np.array([scale]), backend=backend)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))
    assert np.isfinite(grad_b)
    # Two points are right with margin `scale`, two wrong by `scale`, one right by scale/2:
    # the loss is (2 * scale + tiny) / 5 to double precision.
    assert loss == pytest.approx(2 * scale / 5, rel=1e-12)


def test_objective_hessian_and_hvp_agree() -> None:
    X, y = make_classification(500, 4, seed=5)
    data = prepare_fit_data(X, y)
    objective = LogisticObjective(
        make_backend(data.X, data.y, data.sample_weight, backend="numpy"),
        C=0.5,
        weight_sum=data.weight_sum,
    )
    rng = np.random.default_rng(2)
    params, v = rng.normal(size=5), rng.normal(size=5)
    np.testing.assert_allclose(objective.hessian(params) @ v, objective.hvp(params, v), rtol=1e-12)
    # The intercept (last entry) is not penalised.
    H0 = LogisticObjective(objective.backend, C=np.inf).hessian(params)
    np.testing.assert_allclose(np.diag(objective.hessian(params) - H0), [1 / (0.5 * 500)] * 4 + [0])


def test_lipschitz_bound_dominates_the_hessian() -> None:
    X, y = make_classification(800, 6, ill_conditioned=True, seed=6)
    data = prepare_fit_data(X, y)
    backend = make_backend(data.X, data.y, data.sample_weight, backend="numpy")
    objective = LogisticObjective(backend, C=1.0, weight_sum=data.weight_sum)
    A = np.hstack([X, np.ones((800, 1))])
    exact = np.linalg.eigvalsh(A.T @ A / 800).max() / 4 + objective.l2
    bound = objective.lipschitz_bound()
    assert exact * 0.95 <= bound <= exact * 1.1
    for params in np.random.default_rng(3).normal(size=(3, 7)):
        assert np.linalg.eigvalsh(objective.hessian(params)).max() <= bound * 1.0001


def test_l1_prox_and_optimality() -> None:
    X, y = make_classification(200, 3, seed=7)
    data = prepare_fit_data(X, y)
    backend = make_backend(data.X, data.y, data.sample_weight, backend="numpy")
    objective = LogisticObjective(backend, C=0.5, l1_ratio=1.0, weight_sum=data.weight_sum)
    l1 = 1 / (0.5 * 200)
    assert objective.l1 == pytest.approx(l1)
    params = np.array([3 * l1, -0.5 * l1, 0.0, 5.0])
    np.testing.assert_allclose(objective.prox_l1(params, 1.0), [2 * l1, 0.0, 0.0, 5.0])
    grad = np.array([0.5 * l1, 2 * l1, 0.5 * l1, 1e-3])
    # |g + l1| = 1.5 l1 ; |g - l1| = l1 ; max(|g| - l1, 0) = 0 ; intercept 1e-3.
    assert objective.optimality(params, grad) == pytest.approx(max(1.5 * l1, 1e-3))
