"""Newton-CG: truncated Newton with diagonally preconditioned CG, and ``solver="auto"``.

References: scikit-learn's ``newton-cholesky`` (dense and small CSR) and
``newton-cg`` (wide CSR) at ``tol=1e-12``, our Cholesky Newton and L-BFGS on
the same objective, and the dense fit of the same values for CSR data. The
bookkeeping every solver shares (history, ``n_iter``, callback, ``max_iter``,
rounding level) is tested for newton-cg with the others in ``test_solvers.py``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from gpulogreg import Dataset, LogisticRegression
from gpulogreg.loss import LogisticObjective
from gpulogreg.solvers import AUTO_NEWTON_CG_MIN_PARAMS, auto_solver, get_solver
from gpulogreg.solvers.newton import (
    CG_FORCING_MAX,
    CG_THRESHOLD,
    PCG_MIX,
    preconditioner,
    truncated_cg,
)
from tests._helpers import make_classification
from tests.test_solvers import _objective

sklearn_lm = pytest.importorskip("sklearn.linear_model")


class CountingHvp:
    """An objective that counts its Hessian-vector products (one per CG step)."""

    def __init__(self, objective: LogisticObjective) -> None:
        self._objective = objective
        self.hvp_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objective, name)

    def hvp(self, params: Any, v: Any) -> Any:
        self.hvp_calls += 1
        return self._objective.hvp(params, v)


class _Scaled:
    """An objective times ``factor`` (its Hessian-vector products; the rest as given)."""

    def __init__(self, objective: LogisticObjective, factor: float) -> None:
        self._objective = objective
        self._factor = factor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objective, name)

    def hvp(self, params: Any, v: Any) -> Any:
        return self._factor * self._objective.hvp(params, v)


def _solve(solver: str, objective: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("tol", 1e-10)
    kwargs.setdefault("max_iter", 5000)
    return get_solver(solver)(objective, np.zeros(objective.n_params), **kwargs)


def _sklearn(X: Any, y: np.ndarray, sample_weight: Any = None, **kwargs: Any) -> np.ndarray:
    """scikit-learn's parameters in our layout, ``(n_outputs, n_features + 1)``."""
    kwargs.setdefault("solver", "newton-cholesky")
    model = sklearn_lm.LogisticRegression(tol=1e-12, max_iter=10_000, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecations across versions
        model.fit(X, y, sample_weight=sample_weight)
    return np.concatenate([model.coef_, model.intercept_[:, None]], axis=1)


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _weights(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 3.0, n)


# -- the optimum ----------------------------------------------------------------------------
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_newton_cg_reaches_scikit_learns_coefficients(n_classes: int, backend: str) -> None:
    X, y = make_classification(1500, 8, n_classes=n_classes, seed=2, ill_conditioned=True)
    w = _weights(len(y))
    ref = _sklearn(X, y, w, C=1.0)
    result = _solve("newton-cg", _objective(X, y, C=1.0, sample_weight=w, backend=backend))
    assert result.converged, result.message
    assert _relative_error(result.params.reshape(ref.shape), ref) < 1e-6


@pytest.mark.parametrize("n_classes", [2, 3])
def test_newton_cg_reaches_the_optimum_of_newton_and_lbfgs(n_classes: int) -> None:
    X, y = make_classification(1200, 6, n_classes=n_classes, seed=5)
    objective = _objective(X, y, C=0.5, sample_weight=_weights(len(y)))
    cg = _solve("newton-cg", objective)
    for other in ("newton", "lbfgs"):
        result = _solve(other, objective)
        assert result.converged, result.message
        assert cg.objective == pytest.approx(result.objective, rel=1e-13)
        assert _relative_error(cg.params, result.params) < 1e-7


def test_newton_switches_to_the_same_newton_cg_above_the_threshold() -> None:
    X, y = make_classification(800, 5, seed=1)
    switched = _solve("newton", _objective(X, y), cg_threshold=0)
    direct = _solve("newton-cg", _objective(X, y))
    np.testing.assert_array_equal(switched.params, direct.params)
    assert switched.history.objective == direct.history.objective
    assert "newton-cg" not in switched.message  # the message says why it stopped, not who


# -- the CG forcing term ----------------------------------------------------------------
def test_the_forcing_term_is_relative_to_the_starting_gradient() -> None:
    X, y = make_classification(500, 6, seed=2)
    objective = _objective(X, y, C=0.5)
    x = np.random.default_rng(1).normal(size=objective.n_params) * 0.2
    g = objective.value_grad(x)[1]
    g_norm = float(np.linalg.norm(g))
    for start_norm in (g_norm, 100 * g_norm):  # at the start: eta = 0.5; later: eta = 0.1
        d, _ = truncated_cg(objective, x, g, None, start_norm)
        eta = min(CG_FORCING_MAX, math.sqrt(g_norm / start_norm))
        assert np.linalg.norm(objective.hvp(x, d) + g) <= eta * g_norm * (1 + 1e-9)
    # The same solve with the objective times 1000 takes the same steps to the same d.
    plain = CountingHvp(objective)
    d, _ = truncated_cg(plain, x, g, None, 100 * g_norm)
    scaled = CountingHvp(_Scaled(objective, 1000.0))
    d_scaled, _ = truncated_cg(scaled, x, 1000.0 * g, None, 1000.0 * 100 * g_norm)
    assert scaled.hvp_calls == plain.hvp_calls
    np.testing.assert_allclose(d_scaled, d, rtol=1e-9, atol=1e-14)
    # A zero gradient (no start norm) gives the zero direction.
    zero, _ = truncated_cg(objective, x, np.zeros_like(g), None, 0.0)
    assert not np.any(zero)


# -- the preconditioner -----------------------------------------------------------------
def test_the_preconditioner_saves_cg_steps_on_columns_of_different_scales() -> None:
    """Correlated columns on scales 0.03-30: counted Hessian-vector products, never time."""
    X, y = make_classification(2000, 20, ill_conditioned=True, seed=1)
    counts = {}
    for precondition in (True, False):
        objective = CountingHvp(_objective(X, y, C=1.0))
        result = _solve("newton-cg", objective, tol=1e-8, precondition=precondition)
        assert result.converged, result.message
        counts[precondition] = objective.hvp_calls
    assert counts[True] < counts[False] / 4  # measured: 82 against 599


def test_the_preconditioner_is_liblinears_mix_of_the_diagonal_and_the_penalty() -> None:
    X, y = make_classification(500, 4, seed=0)
    objective = _objective(X, y, C=0.2)
    x = np.random.default_rng(0).normal(size=objective.n_params) * 0.3
    expected = (1 - PCG_MIX) * objective.l2 + PCG_MIX * np.diag(objective.hessian(x))
    np.testing.assert_allclose(preconditioner(objective, x), expected, rtol=1e-13)


def test_an_unpenalised_zero_column_gets_a_unit_preconditioner() -> None:
    X, y = make_classification(300, 4, seed=7)
    X[:, 2] = 0.0
    objective = _objective(X, y, C=math.inf)
    assert preconditioner(objective, np.zeros(objective.n_params))[2] == 1.0
    result = _solve("newton-cg", objective)
    assert result.converged, result.message
    assert result.params[2] == 0.0


@pytest.mark.parametrize("C", [1.0, math.inf])
def test_multinomial_iterates_stay_off_the_null_space(C: float) -> None:
    """A common shift of the classes' intercepts (and, unpenalised, of a column's
    coefficients) leaves the loss unchanged; from zero, newton-cg does not move along it."""
    X, y = make_classification(900, 4, n_classes=4, seed=3, ill_conditioned=True)
    objective = _objective(X, y, C=C, sample_weight=_weights(len(y)))
    result = _solve("newton-cg", objective)
    assert result.converged, result.message
    W = result.params.reshape(4, 5)
    sums = np.abs(W.sum(axis=0))
    assert sums[-1] < 1e-9 * np.abs(W).max()  # the intercepts (rounding: ~5e-11)
    if math.isinf(C):
        assert sums.max() < 1e-9 * np.abs(W).max()
    ref = _sklearn(X, y, _weights(len(y)), C=C if math.isfinite(C) else 1.0, **(
        {"penalty": None} if math.isinf(C) else {}
    ))  # fmt: skip
    assert _relative_error(W - W.mean(axis=0), ref - ref.mean(axis=0)) < 1e-6


def test_newton_cg_refuses_l1_and_names_the_proximal_solver() -> None:
    X, y = make_classification(100, 3)
    with pytest.raises(ValueError, match=r"'newton-cg'.*gd"):
        _solve("newton-cg", _objective(X, y, l1_ratio=1.0))
    with pytest.raises(ValueError, match="gd"):
        LogisticRegression(solver="newton-cg", l1_ratio=1.0).fit(X, y)


# -- CSR data ---------------------------------------------------------------------------------
def _csr(n_rows: int, n_cols: int, density: float, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng)
    X.data = rng.normal(size=X.nnz) * rng.choice([0.1, 1.0, 10.0], size=X.nnz)
    return X


def _labels(X: sp.csr_matrix, n_classes: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Z = X @ rng.normal(size=(X.shape[1], n_classes))
    return np.argmax(Z + rng.gumbel(size=Z.shape), axis=1)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_a_csr_fit_equals_the_dense_fit_and_scikit_learn(
    n_classes: int, fit_intercept: bool
) -> None:
    X = _csr(700, 12, density=0.3)
    y = _labels(X, n_classes)
    w = _weights(X.shape[0])
    # Rounding decides where a truncated CG solve stops, so the two fits take
    # different paths and stop at different points within tol of the optimum
    # (~tol / smallest curvature apart): a tight tol makes that far below 1e-8.
    kw = {"solver": "newton-cg", "backend": "numpy", "tol": 1e-12, "fit_intercept": fit_intercept}
    sparse = LogisticRegression(**kw).fit(X, y, sample_weight=w)
    dense = LogisticRegression(**kw).fit(X.toarray(), y, sample_weight=w)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-8, atol=1e-10)
    ref = _sklearn(X, y, w, fit_intercept=fit_intercept)
    ours = np.concatenate([sparse.coef_, np.reshape(sparse.intercept_, (-1, 1))], axis=1)
    assert _relative_error(ours, ref) < 1e-6


def test_wide_csr_data_run_newton_cg_under_auto() -> None:
    """More features than rows, most of them rare: solver="auto" picks newton-cg."""
    X = _csr(400, 3000, density=0.004, seed=4)
    y = _labels(X, 2, seed=5)
    w = _weights(X.shape[0])
    model = LogisticRegression(backend="numpy", tol=1e-10, C=2.0).fit(X, y, sample_weight=w)
    assert model.solver_ == "newton-cg"
    assert model.n_iter_.max() < 50
    ref = _sklearn(X, y, w, C=2.0, solver="newton-cg")
    ours = np.concatenate([model.coef_, model.intercept_[:, None]], axis=1)
    assert _relative_error(ours, ref) < 1e-6


def test_the_preconditioner_saves_cg_steps_on_csr_columns_of_different_scales() -> None:
    X = _csr(2000, 40, density=0.2, seed=9)
    X = (X @ sp.diags(np.logspace(-2, 2, X.shape[1]))).tocsr()  # column scales 0.01-100
    y = _labels(X, 2, seed=10)
    counts = {}
    for precondition in (True, False):
        objective = CountingHvp(_objective(X, y, C=1.0))
        result = _solve("newton-cg", objective, tol=1e-8, precondition=precondition)
        assert result.converged, result.message
        counts[precondition] = objective.hvp_calls
    assert counts[True] < counts[False] / 2  # measured: 124 against 261


def test_dask_arrays_of_wide_csr_blocks_run_newton_cg_under_auto() -> None:
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X = _csr(600, 1500, density=0.01, seed=11)
    y = _labels(X, 2, seed=12)
    with dask.config.set(scheduler="synchronous"):
        model = LogisticRegression(tol=1e-10).fit(
            da.from_array(X, chunks=(200, 1500), asarray=False), da.from_array(y, chunks=200)
        )
    assert model.solver_ == "newton-cg"
    reference = LogisticRegression(tol=1e-10, solver="newton-cg").fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    ("data", "penalty", "expected"),
    [
        ("dense", "l2", "lbfgs"),
        ("narrow csr", "l2", "lbfgs"),
        ("wide csr", "l2", "newton-cg"),
        ("wide csr", "l1", "gd"),
    ],
)
def test_auto_picks_the_solver_from_format_and_size(data: str, penalty: str, expected: str) -> None:
    X = _csr(300, 1500 if data.startswith("wide") else 20, density=0.01, seed=6)
    y = _labels(X, 2, seed=7)
    kw = {"backend": "numpy", "penalty": penalty, "max_iter": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the choice is the point
        model = LogisticRegression(**kw).fit(X.toarray() if data == "dense" else X, y)
    assert model.solver_ == expected


def test_the_auto_rule() -> None:
    threshold = AUTO_NEWTON_CG_MIN_PARAMS
    assert threshold == CG_THRESHOLD  # where newton itself stops building the Hessian
    assert auto_solver(l1_ratio=0.0, data_format="csr", n_params=threshold + 1) == "newton-cg"
    assert auto_solver(l1_ratio=0.0, data_format="csr", n_params=threshold) == "lbfgs"
    assert auto_solver(l1_ratio=0.0, data_format="dense", n_params=10**6) == "lbfgs"
    assert auto_solver(l1_ratio=0.5, data_format="csr", n_params=10**6) == "gd"


# -- out of core and on Dask -------------------------------------------------------------------
def test_newton_cg_on_a_dataset_and_on_dask_equals_the_in_memory_fit() -> None:
    X, y = make_classification(3000, 6, n_classes=3, seed=8)
    w = _weights(len(y))
    kw = {"solver": "newton-cg", "tol": 1e-10}
    ref = LogisticRegression(**kw).fit(X, y, sample_weight=w)
    chunked = LogisticRegression(**kw).fit(Dataset.from_arrays(X, y, w, chunk_rows=700))
    np.testing.assert_allclose(chunked.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    da = pytest.importorskip("dask.array")
    on_dask = LogisticRegression(**kw).fit(
        da.from_array(X, chunks=(800, 6)), da.from_array(y, chunks=800), sample_weight=w
    )
    np.testing.assert_allclose(on_dask.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
