"""gpulogreg's own estimator with scikit-learn's parameter semantics and fitted attributes."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import scale

import gpulogreg
from gpulogreg import LogisticRegression

SKLEARN = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
if SKLEARN < (1, 8):
    pytest.skip(
        f"scikit-learn {sklearn.__version__}: the 1.8+ semantics need scikit-learn 1.8",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(400, 6, n_informative=4, random_state=0)
    return scale(X), y


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return scale(X), y


def _outcome(cls, params, X, y):
    """("raises", first words of the error) or ("fits", the warnings' categories and openings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cls(**params).fit(X, y)
        except ValueError as error:
            # Our default solver is "auto", scikit-learn's "lbfgs": the name aside.
            opening = re.sub(r"^Solver \S+", "Solver", str(error).split(".")[0])
            kinds = [w.category.__name__ for w in caught]  # the warnings before the refusal
            return "raises", (opening, kinds)
    found = [
        (w.category.__name__, str(w.message)[:40])
        for w in caught
        if not issubclass(w.category, ConvergenceWarning)
    ]
    return "fits", found


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"l1_ratio": 1.0, "solver": "saga"},
        {"l1_ratio": 0.5, "solver": "saga"},
        {"C": np.inf},
        {"l1_ratio": None},
        {"n_jobs": 2},
        {"penalty": "l2"},
        {"penalty": "l1", "solver": "saga"},
        {"penalty": "l1", "l1_ratio": 0.0, "solver": "saga"},
        {"penalty": "l2", "l1_ratio": 0.5},
        {"penalty": "elasticnet", "l1_ratio": 0.5, "solver": "saga"},
        {"penalty": "elasticnet", "l1_ratio": None, "solver": "saga"},
        {"penalty": None},
        {"penalty": None, "C": 2.0},
        {"l1_ratio": 1.0, "solver": "lbfgs"},
        {"l1_ratio": 0.5, "solver": "newton-cholesky"},
        {"dual": True},
        {"dual": True, "solver": "liblinear"},
        {"dual": True, "solver": "liblinear", "l1_ratio": 1.0},
        {"solver": "liblinear", "C": np.inf},
        {"solver": "liblinear", "l1_ratio": 0.5},
        {"C": np.inf, "l1_ratio": 0.5},
        {"penalty": "l1", "l1_ratio": 0.5, "solver": "lbfgs", "n_jobs": 1},
        {"penalty": None, "C": 2.0, "solver": "liblinear"},
        {"penalty": "l2", "l1_ratio": 0.5, "C": 2.0, "n_jobs": 1},
    ],
)
def test_warnings_and_errors_come_where_scikit_learns_come(binary, params) -> None:
    """The 1.8+ penalty semantics: the same warnings (kind, opening, order) or the same
    refusal after the same warnings."""
    X, y = binary
    ours = _outcome(LogisticRegression, {"max_iter": 200, **params}, X, y)
    theirs = _outcome(SklearnLogisticRegression, {"max_iter": 200, **params}, X, y)
    assert ours == theirs


def test_l1_ratio_one_is_the_lasso_without_penalty(binary) -> None:
    X, y = binary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lasso = LogisticRegression(l1_ratio=1.0, C=0.05, tol=1e-10).fit(X, y)
    with pytest.warns(FutureWarning, match="'penalty' was deprecated"):
        deprecated = LogisticRegression(penalty="l1", C=0.05, tol=1e-10).fit(X, y)
    reference = SklearnLogisticRegression(l1_ratio=1.0, C=0.05, solver="saga", tol=1e-10)
    reference.fit(X, y)
    assert np.count_nonzero(lasso.coef_) < X.shape[1]
    np.testing.assert_allclose(lasso.coef_, deprecated.coef_, atol=1e-10)
    np.testing.assert_allclose(lasso.coef_, reference.coef_, atol=1e-4)


@pytest.mark.parametrize(
    ("solver", "ran"),
    [
        ("lbfgs", "lbfgs"),
        ("newton-cg", "newton-cg"),
        ("newton-cholesky", "newton"),
        ("sag", "lbfgs"),
        ("saga", "lbfgs"),
        ("liblinear", "lbfgs"),
    ],
)
def test_scikit_learns_solver_names_run_ours_and_agree(binary, solver, ran) -> None:
    X, y = binary
    model = LogisticRegression(solver=solver, tol=1e-10, max_iter=1000).fit(X, y)
    reference = SklearnLogisticRegression(solver=solver, tol=1e-12, max_iter=10_000).fit(X, y)
    assert model.solver_ == ran
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=2e-5)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=2e-5)


@pytest.mark.parametrize("intercept_scaling", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("l1_ratio", [0.0, 1.0])
def test_liblinear_penalises_the_intercept_as_liblinear_does(
    binary, intercept_scaling, l1_ratio
) -> None:
    """liblinear's objective: the intercept is the coefficient of a constant feature of value s."""
    X, y = binary
    params = {"solver": "liblinear", "C": 0.1, "l1_ratio": l1_ratio}
    params["intercept_scaling"] = intercept_scaling
    model = LogisticRegression(**params, tol=1e-12, max_iter=5000).fit(X, y)
    reference = SklearnLogisticRegression(**params, tol=1e-12, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=5e-5)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=5e-5)
    unpenalised = LogisticRegression(C=0.1, l1_ratio=l1_ratio, tol=1e-12).fit(X, y)
    if intercept_scaling < 1:  # a small constant feature: the intercept pays dearly
        assert abs(model.intercept_[0]) < 0.5 * abs(unpenalised.intercept_[0])


def test_liblinear_fits_one_vs_rest_and_refuses_multinomial(iris) -> None:
    X, y = iris
    model = LogisticRegression(solver="liblinear", multi_class="ovr", tol=1e-12).fit(X, y)
    reference = OneVsRestClassifier(SklearnLogisticRegression(solver="liblinear", tol=1e-12))
    reference.fit(X, y)
    expected = np.vstack([e.coef_ for e in reference.estimators_])
    np.testing.assert_allclose(model.coef_, expected, atol=1e-4)
    with pytest.raises(ValueError, match="'liblinear' solver does not support multiclass"):
        LogisticRegression(solver="liblinear").fit(X, y)
    with pytest.raises(ValueError, match="solver='liblinear'"):
        model.inference(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coefficients_come_in_the_datas_dtype_rounded_once(binary, dtype) -> None:
    X, y = binary
    model = LogisticRegression(tol=1e-10).fit(X.astype(dtype), y)
    assert model.coef_.dtype == dtype
    assert model.intercept_.dtype == dtype
    exact_coef, exact_intercept = model._coefficients_float64()
    assert exact_coef.dtype == np.float64
    np.testing.assert_array_equal(exact_coef.astype(dtype), model.coef_)
    np.testing.assert_array_equal(exact_intercept.astype(dtype), model.intercept_)
    # A warm start continues from the float64 solution: it meets the rule at once.
    model.set_params(warm_start=True).fit(X.astype(dtype), y)
    assert model.n_iter_[0] == 0


def test_coefficients_set_by_hand_are_what_a_warm_start_uses(binary) -> None:
    X, y = binary
    model = LogisticRegression(tol=1e-10).fit(X.astype(np.float32), y)
    model.coef_ = np.zeros_like(model.coef_)
    coef, _ = model._coefficients_float64()
    np.testing.assert_array_equal(coef, 0.0)


def test_max_iter_zero_returns_the_start_with_a_convergence_warning(binary) -> None:
    X, y = binary
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 0 iteration"):
        model = LogisticRegression(solver="lbfgs", max_iter=0).fit(X, y)
    np.testing.assert_array_equal(model.coef_, 0.0)
    np.testing.assert_array_equal(model.n_iter_, [0])
    fitted = LogisticRegression(tol=1e-10).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        fitted.set_params(warm_start=True, max_iter=0, tol=1e-30).fit(X, y)
    np.testing.assert_allclose(fitted.coef_, LogisticRegression(tol=1e-10).fit(X, y).coef_)


@pytest.mark.parametrize(
    ("solver", "pattern"),
    [
        ("lbfgs", "lbfgs failed to converge after 2 iteration"),
        ("newton-cg", "newton-cg failed to converge at loss = "),
        ("newton-cholesky", "Newton solver did not converge after 2 iterations"),
        ("sag", "The max_iter was reached which means the coef_ did not converge"),
        ("gd", "gd failed to converge after 2 iteration"),
    ],
)
def test_convergence_warnings_are_worded_as_scikit_learns(binary, solver, pattern) -> None:
    X, y = binary
    with pytest.warns(ConvergenceWarning, match=pattern):
        LogisticRegression(solver=solver, max_iter=2, tol=1e-12).fit(X, y)


@pytest.mark.parametrize("sparse_X", [False, True])
def test_sparsify_keeps_the_predictions_and_densify_undoes_it(tmp_path, binary, sparse_X) -> None:
    X, y = binary
    model = LogisticRegression(l1_ratio=1.0, C=0.05).fit(X, y)
    data = sp.csr_matrix(X) if sparse_X else X
    expected = model.predict_proba(data)
    dense = model.coef_.copy()
    assert model.sparsify() is model
    assert sp.issparse(model.coef_)
    assert model.coef_.nnz == np.count_nonzero(dense)
    np.testing.assert_allclose(model.predict_proba(data), expected, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(data), (expected[:, 1] > 0.5).astype(int))
    model.save(tmp_path / "m.glr")
    np.testing.assert_array_equal(gpulogreg.load(tmp_path / "m.glr").coef_, dense)
    assert model.densify() is model
    assert isinstance(model.coef_, np.ndarray)
    np.testing.assert_array_equal(model.coef_, dense)


def test_without_scikit_learn_the_package_imports_and_fits() -> None:
    """scikit-learn is optional: the stand-ins serve, and a star import does not reach it."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
from gpulogreg import *
import numpy as np
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
model = LogisticRegression(l1_ratio=1.0, C=0.5).fit(X, y)
assert not hasattr(model, "set_callbacks")
assert "sklearn" not in sys.modules
print("ok", model.score(X, y) > 0.9)
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok True"
