"""The scikit-learn drop-in: patching, served fits against scikit-learn's, fallbacks, its tests."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.linear_model
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._logistic import LogisticRegression as SklearnLogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, scale

import gpulogreg
from gpulogreg import accel
from gpulogreg.accel import conformance

SKLEARN = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
if SKLEARN < (1, 8):
    pytest.skip(
        f"scikit-learn {sklearn.__version__}: the 1.8+ semantics need scikit-learn 1.8",
        allow_module_level=True,
    )

FAILURES = Path(__file__).with_name("sklearn_conformance_failures.txt")


@pytest.fixture(autouse=True)
def _restore():
    accel.reset_fit_counts()
    yield
    accel.unpatch_sklearn()


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return scale(X), y


def test_patch_swaps_the_public_class_and_unpatch_puts_it_back():
    original = sklearn.linear_model.LogisticRegression
    accel.patch_sklearn()
    accel.patch_sklearn()  # idempotent
    assert accel.is_patched()
    assert sklearn.linear_model.LogisticRegression is accel.LogisticRegression
    assert issubclass(accel.LogisticRegression, original)
    accel.unpatch_sklearn()
    assert not accel.is_patched()
    assert sklearn.linear_model.LogisticRegression is original
    gpulogreg.patch_sklearn()  # the package's own names for the same
    assert sklearn.linear_model.LogisticRegression is accel.LogisticRegression
    gpulogreg.unpatch_sklearn()
    assert sklearn.linear_model.LogisticRegression is original


def test_the_signature_is_scikit_learns():
    assert accel.LogisticRegression().get_params() == SklearnLogisticRegression().get_params()


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky", "sag", "saga"])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_served_fit_agrees_with_scikit_learns(iris, solver, binary, sparse):
    X, y = iris
    y = (y == 1).astype(int) if binary else y
    X = sp.csr_matrix(X) if sparse else X
    params = dict(solver=solver, C=0.5, tol=1e-10, max_iter=100_000, random_state=0)
    ours = accel.LogisticRegression(**params).fit(X, y)
    theirs = SklearnLogisticRegression(**params).fit(X, y)
    assert accel.fit_counts() == {"gpulogreg": 1, "scikit-learn": 0}
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-5)
    assert ours.n_iter_.shape == theirs.n_iter_.shape == (1,)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)


def test_penalties_follow_scikit_learns_l1_ratio_and_C(iris):
    X, y = iris
    y = y == 2
    for l1_ratio in (1.0, 0.5):
        params = dict(solver="saga", C=0.3, l1_ratio=l1_ratio, tol=1e-10, max_iter=100_000)
        ours = accel.LogisticRegression(**params).fit(X, y)
        theirs = SklearnLogisticRegression(**params).fit(X, y)
        np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-5)
        assert np.array_equal(ours.coef_ == 0, theirs.coef_ == 0)
    ours = accel.LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X[:, :2], y)
    theirs = SklearnLogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X[:, :2], y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-5)


def test_weights_are_folded_as_scikit_learn_folds_them(iris):
    X, y = iris
    s = np.random.default_rng(0).uniform(0.1, 2.0, y.shape[0])
    params = dict(class_weight="balanced", tol=1e-10, max_iter=10_000)
    ours = accel.LogisticRegression(**params).fit(X[:120], y[:120], sample_weight=s[:120])
    theirs = SklearnLogisticRegression(**params).fit(X[:120], y[:120], sample_weight=s[:120])
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-6)


def test_coefficients_keep_the_data_dtype(iris):
    X, y = iris
    model = accel.LogisticRegression().fit(X.astype(np.float32), y)
    assert model.coef_.dtype == model.intercept_.dtype == np.float32
    assert accel.LogisticRegression().fit(X, y).coef_.dtype == np.float64


def test_a_warm_start_continues_from_the_fitted_coefficients(iris):
    X, y = iris
    model = accel.LogisticRegression(warm_start=True, tol=1e-10, max_iter=10_000).fit(X, y)
    model.fit(X, y)
    assert model.n_iter_[0] <= 1


def test_max_iter_zero_keeps_the_start_and_warns(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="newton-cg failed to converge"):
        model = accel.LogisticRegression(solver="newton-cg", max_iter=0).fit(X, y == 1)
    assert model.n_iter_[0] == 0
    assert np.all(model.coef_ == 0)


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        ("lbfgs", "lbfgs failed to converge after 2 iteration"),
        ("newton-cg", "newton-cg failed to converge"),
        ("newton-cholesky", "Newton solver did not converge after 2 iterations"),
        ("saga", "The max_iter was reached which means the coef_ did not converge"),
    ],
)
def test_not_converged_is_worded_as_scikit_learn_words_it(iris, solver, message):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match=message):
        model = accel.LogisticRegression(solver=solver, max_iter=2, tol=1e-15).fit(X, y == 1)
    assert model.n_iter_[0] == 2


def test_what_gpulogreg_does_not_serve_falls_back_with_a_log_record(iris, caplog):
    X, y = iris
    with caplog.at_level(logging.INFO, logger="gpulogreg.accel"):
        ours = accel.LogisticRegression(solver="liblinear").fit(X, y == 1)
    theirs = SklearnLogisticRegression(solver="liblinear").fit(X, y == 1)
    np.testing.assert_array_equal(ours.coef_, theirs.coef_)
    assert accel.fit_counts() == {"gpulogreg": 0, "scikit-learn": 1}
    assert "solver='liblinear'" in caplog.text


def test_other_estimators_keep_scikit_learns_solver(iris):
    X, y = iris
    accel.patch_sklearn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sklearn.linear_model.LogisticRegressionCV(Cs=2, cv=2).fit(X, y)
    SklearnLogisticRegression().fit(X, y)
    assert accel.fit_counts() == {"gpulogreg": 0, "scikit-learn": 0}


def test_clone_pickle_pipelines_and_grid_search(iris):
    X, y = iris
    model = accel.LogisticRegression(C=0.7).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert type(clone(model)) is accel.LogisticRegression
    pipe = make_pipeline(StandardScaler(), accel.LogisticRegression()).fit(X, y)
    assert pipe.score(X, y) > 0.9
    search = GridSearchCV(accel.LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert search.best_params_["C"] in (0.1, 1.0)
    assert accel.fit_counts()["gpulogreg"] == 1 + 1 + 2 * 3 + 1


def test_python_m_accel_runs_a_script_patched(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True)\n"
        "LogisticRegression(max_iter=1000).fit(X, y)\n"
        "print(type(LogisticRegression()).__module__, sys.argv[1:])\n"
    )
    counts = tmp_path / "counts.json"
    done = subprocess.run(
        [sys.executable, "-m", "gpulogreg.accel", "--counts", str(counts), str(script), "a"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["gpulogreg.accel._estimator", "['a']"]
    assert json.loads(counts.read_text()) == {"gpulogreg": 1, "scikit-learn": 0}


def test_scikit_learns_own_tests_pass_but_the_listed_failures():
    result = conformance.run()
    expected = conformance.expected_failures(FAILURES)
    assert all(expected.values()), "every listed failure needs its reason"
    assert result.ids("failed") == sorted(expected)
    assert len(result.ids("passed")) >= 230
    assert result.fits["gpulogreg"] > 5 * result.fits["scikit-learn"]


def test_dask_data_train_on_their_cluster_and_predict_lazily(iris):
    da = pytest.importorskip("dask.array")
    X, y = iris
    X_dask, y_dask = da.from_array(X, chunks=(50, 4)), da.from_array(y, chunks=50)
    on_dask = accel.LogisticRegression(C=0.5).fit(X_dask, y_dask)
    in_memory = accel.LogisticRegression(C=0.5).fit(X, y)
    assert accel.fit_counts() == {"gpulogreg": 2, "scikit-learn": 0}
    np.testing.assert_allclose(on_dask.coef_, in_memory.coef_, atol=1e-6)
    proba = on_dask.predict_proba(X_dask)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), in_memory.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(on_dask.predict(X_dask).compute(), in_memory.predict(X))
    assert on_dask.score(X_dask, y_dask) == pytest.approx(in_memory.score(X, y))
    pd = pytest.importorskip("pandas")
    named = accel.LogisticRegression().fit(pd.DataFrame(X, columns=list("abcd")), y)
    named.fit(X_dask, y_dask)  # no names: the earlier fit's go
    assert not hasattr(named, "feature_names_in_")
    with pytest.raises(ValueError, match="The 'C' parameter of LogisticRegression"):
        accel.LogisticRegression(C=-1.0).fit(X_dask, y_dask)
