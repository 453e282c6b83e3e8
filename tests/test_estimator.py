"""LogisticRegression against scikit-learn and statsmodels on the same objective."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gpulogreg import LogisticRegression
from tests._helpers import make_classification

sklearn_lm = pytest.importorskip("sklearn.linear_model")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

SOLVERS = ["newton", "lbfgs", "gd"]
#: Iteration budget that lets plain first-order methods reach tol=1e-8 on the
#: ill-conditioned set (condition number ~1e6 -> ~1e3 accelerated steps per digit).
MAX_ITER = {"newton": 100, "lbfgs": 5000, "gd": 200_000}


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = sklearn_datasets.load_breast_cancer(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _ill_conditioned() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(1500, 8, ill_conditioned=True, seed=3)


DATASETS = {"breast_cancer": _breast_cancer, "ill_conditioned": _ill_conditioned}


def _params(model: object) -> np.ndarray:
    return np.concatenate([model.coef_.ravel(), model.intercept_.ravel()])  # type: ignore[attr-defined]


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("weighting", ["none", "sample_weight", "balanced"])
def test_coefficients_equal_scikit_learn(solver: str, dataset: str, weighting: str) -> None:
    X, y = DATASETS[dataset]()
    rng = np.random.default_rng(7)
    sample_weight = rng.uniform(0.2, 3.0, size=len(y)) if weighting == "sample_weight" else None
    class_weight = "balanced" if weighting == "balanced" else None
    C = 0.5
    ref = sklearn_lm.LogisticRegression(
        solver="newton-cholesky", C=C, tol=1e-10, max_iter=1000, class_weight=class_weight
    ).fit(X, y, sample_weight=sample_weight)
    model = LogisticRegression(
        C=C, solver=solver, tol=1e-8, max_iter=MAX_ITER[solver], class_weight=class_weight
    ).fit(X, y, sample_weight=sample_weight)
    assert model.converged_
    assert _relative_error(_params(model), _params(ref)) < 1e-4


@pytest.mark.parametrize("solver", SOLVERS)
def test_multinomial_equals_scikit_learn(solver: str) -> None:
    X, y = make_classification(900, 6, n_classes=3, seed=5)
    ref = sklearn_lm.LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(X, y)
    model = LogisticRegression(C=2.0, solver=solver, tol=1e-9, max_iter=MAX_ITER[solver]).fit(X, y)
    assert model.coef_.shape == (3, 6)
    assert _relative_error(_params(model), _params(ref)) < 1e-4
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs", "newton"])
@pytest.mark.parametrize("C", [150.0, np.inf])
def test_softmax_coefficients_are_centred_over_the_classes(solver: str, C: float) -> None:
    # The L2 optimum is centred (and without a penalty the centred solution is
    # the smallest one): a solver stopping at the default tol must not leave a shift.
    X, y = make_classification(300, 4, n_classes=3, seed=2)
    model = LogisticRegression(C=C, solver=solver, tol=1e-4).fit(X, y)
    np.testing.assert_allclose(model.coef_.sum(axis=0), 0.0, atol=1e-12)
    assert abs(model.intercept_.sum()) < 1e-12
    l1 = LogisticRegression(C=1.0, l1_ratio=1.0, tol=1e-8, max_iter=5000).fit(X, y)
    assert np.any(l1.coef_ == 0.0)  # L1: coefficients left as the solver found them


def test_one_vs_rest_equals_scikit_learn() -> None:
    multiclass = pytest.importorskip("sklearn.multiclass")
    X, y = make_classification(900, 5, n_classes=4, seed=9)
    ref = multiclass.OneVsRestClassifier(
        sklearn_lm.LogisticRegression(solver="newton-cholesky", tol=1e-10)
    ).fit(X, y)
    model = LogisticRegression(multi_class="ovr", tol=1e-9).fit(X, y)
    ref_coef = np.vstack([e.coef_ for e in ref.estimators_])
    assert model.coef_.shape == (4, 5)
    assert _relative_error(model.coef_, ref_coef) < 1e-4
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def test_unpenalised_fit_equals_statsmodels_logit() -> None:
    sm = pytest.importorskip("statsmodels.api")
    data = sm.datasets.spector.load_pandas()
    X = data.exog.to_numpy()
    y = data.endog.to_numpy()
    ref = sm.Logit(y, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-12)
    model = LogisticRegression(C=np.inf, tol=1e-10).fit(X, y)
    ours = np.concatenate([model.intercept_, model.coef_.ravel()])
    np.testing.assert_allclose(ours, ref.params, rtol=1e-6)


def test_float32_reaches_float64_optimum() -> None:
    X, y = make_classification(3000, 8, ill_conditioned=True, seed=11)
    reference = LogisticRegression(solver="newton", tol=1e-10).fit(X, y)
    model32 = LogisticRegression(solver="lbfgs", tol=1e-8, max_iter=5000).fit(
        X.astype(np.float32), y
    )
    float32_values = LogisticRegression(solver="newton", tol=1e-10).fit(
        X.astype(np.float32).astype(np.float64), y
    )
    # Same data values in float32 and float64 -> same optimum, reached in float32.
    assert abs(model32.objective_ - float32_values.objective_) <= 1e-8 * float32_values.objective_
    assert _relative_error(_params(float32_values), _params(reference)) < 1e-3


@pytest.mark.parametrize(
    "labels",
    [["no", "yes"], [-1, 1], [False, True], [2.0, 7.0]],
    ids=["str", "pm1", "bool", "float"],
)
def test_any_two_labels(labels: list[object]) -> None:
    X, y01 = make_classification(400, 4, seed=2)
    y = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[y01]
    model = LogisticRegression().fit(X, y)
    assert list(model.classes_) == sorted(labels)
    reference = LogisticRegression().fit(X, y01)
    np.testing.assert_array_equal(model.predict(X), np.asarray(labels)[reference.predict(X)])
    np.testing.assert_allclose(model.coef_, reference.coef_)


def test_prediction_methods_are_consistent() -> None:
    X, y = make_classification(500, 5, seed=4)
    model = LogisticRegression().fit(X, y)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X)), proba, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    z = model.decision_function(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)))
    assert model.score(X, y) == pytest.approx(np.mean(model.predict(X) == y))


def test_fitted_attributes_and_history() -> None:
    X, y = make_classification(500, 5, seed=4)
    model = LogisticRegression(solver="lbfgs", tol=1e-7).fit(X, y)
    assert model.coef_.shape == (1, 5)
    assert model.intercept_.shape == (1,)
    assert model.n_features_in_ == 5
    assert model.n_iter_.shape == (1,)
    history = model.history_
    assert len(history) == model.n_iter_[0] > 0
    assert history.optimality[-1] <= 1e-7
    assert all(np.diff(history.elapsed) >= 0)
    assert model.objective_ == pytest.approx(history.objective[-1])
    assert model.backend_ == "numba"
    assert model.device_ == "cpu"


def test_feature_names_from_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    X, y = make_classification(300, 3, seed=1)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = LogisticRegression().fit(frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c"]


def test_convergence_warning_at_max_iter() -> None:
    X, y = make_classification(500, 5, ill_conditioned=True, seed=4)
    with pytest.warns(Warning, match="failed to converge"):
        model = LogisticRegression(solver="gd", max_iter=3, tol=1e-12).fit(X, y)
    assert not model.converged_
    assert model.n_iter_[0] == 3


def test_warm_start_resumes_from_previous_solution() -> None:
    X, y = make_classification(800, 6, seed=8)
    model = LogisticRegression(solver="lbfgs", warm_start=True, tol=1e-8).fit(X, y)
    first = model.n_iter_[0]
    objective = model.objective_
    model.fit(X, y)
    assert model.n_iter_[0] < first
    assert model.objective_ == pytest.approx(objective, rel=1e-12)


def test_results_independent_of_thread_count() -> None:
    numba = pytest.importorskip("numba")
    X, y = make_classification(20_000, 7, seed=6)
    previous = numba.get_num_threads()
    fits = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            fits.append(LogisticRegression(solver="lbfgs", tol=1e-9).fit(X, y))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    np.testing.assert_array_equal(fits[0].intercept_, fits[1].intercept_)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backends_agree(backend: str) -> None:
    X, y = make_classification(2000, 6, seed=12)
    reference = LogisticRegression(backend="numpy", tol=1e-10).fit(X, y)
    model = LogisticRegression(backend=backend, tol=1e-10).fit(X, y)
    assert _relative_error(_params(model), _params(reference)) < 1e-8


def test_l1_penalty_gives_sparse_solution_like_scikit_learn() -> None:
    X, y = _breast_cancer()
    ref = sklearn_lm.LogisticRegression(
        l1_ratio=1.0, solver="saga", C=0.1, tol=1e-12, max_iter=100_000
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, y)
    model = LogisticRegression(l1_ratio=1.0, C=0.1, tol=1e-9, max_iter=200_000).fit(X, y)
    np.testing.assert_array_equal(model.coef_ == 0, ref.coef_ == 0)
    assert _relative_error(_params(model), _params(ref)) < 1e-3
