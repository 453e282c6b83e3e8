"""scikit-learn's callbacks (``set_callbacks``) on gpulogreg's solvers, and in the drop-in."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning

from gpulogreg import Dataset, LogisticRegression

pytest.importorskip("sklearn.callback", reason="scikit-learn's callbacks came in 1.9")


class Recorder:
    """A FitCallback that records every hook with its task and fitted estimator."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[str, str, int, object]] = []
        self.stop_after = stop_after

    def setup(self, estimator, context):
        self.calls.append(("setup", context.task_name, context.task_id, None))

    def teardown(self, estimator, context):
        self.calls.append(("teardown", context.task_name, context.task_id, None))

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        self.calls.append(("begin", context.task_name, context.task_id, fitted_estimator))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.calls.append(("end", context.task_name, context.task_id, fitted_estimator))
        done = [c for c in self.calls if c[0] == "end" and c[1].endswith("-iter")]
        return self.stop_after is not None and len(done) >= self.stop_after

    def hooks(self, name: str, kind: str = "-iter") -> list[tuple[str, str, int, object]]:
        return [c for c in self.calls if c[0] == name and c[1].endswith(kind)]


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_features=4, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    return X, y


@pytest.mark.parametrize("max_iter", [0, 2, 1000])
def test_the_task_tree_counts_the_iterations_as_scikit_learns_lbfgs(data, max_iter) -> None:
    X, y = data
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter 0 and 2
        model = LogisticRegression(solver="lbfgs", max_iter=max_iter)
        model.set_callbacks(recorder).fit(X, y)
    assert [c[0] for c in recorder.calls].count("setup") == 1
    assert recorder.calls[-1][0] == "teardown"
    # the root, max(n_iter, 1) iterations and one empty task, each begun and ended
    expected = 1 + max(int(model.n_iter_[0]), 1) + 1
    assert [c[0] for c in recorder.calls].count("begin") == expected
    assert [c[0] for c in recorder.calls].count("end") == expected
    assert recorder.hooks("end")[-1][3] is None  # the empty task has no fitted estimator


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton", "gd"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_each_iterations_fitted_estimator_is_the_fit_stopped_there(data, solver, n_classes):
    X, y = data
    y = y if n_classes == 3 else (y == 1).astype(int)
    recorder = Recorder()
    model = LogisticRegression(solver=solver, tol=1e-8).set_callbacks(recorder).fit(X, y)
    ends = recorder.hooks("end")
    n_iter = int(model.n_iter_[0])
    assert len(ends) == n_iter + 1
    for i in (1, n_iter // 2, n_iter):
        stopped = ends[i - 1][3]
        assert ends[i - 1][2] == i - 1  # the iteration's task id
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # i < n_iter: not converged
            reference = LogisticRegression(solver=solver, tol=1e-8, max_iter=i).fit(X, y)
        np.testing.assert_allclose(stopped.coef_, reference.coef_, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(stopped.intercept_, reference.intercept_, atol=1e-15)
        np.testing.assert_array_equal(stopped.predict(X), reference.predict(X))
    np.testing.assert_allclose(ends[n_iter - 1][3].coef_, model.coef_)


def test_one_vs_rest_has_a_task_per_class_and_each_sees_the_classes_before(data) -> None:
    X, y = data
    recorder = Recorder()
    model = LogisticRegression(multi_class="ovr").set_callbacks(recorder).fit(X, y)
    classes = recorder.hooks("end", kind="ovr-class")
    assert [c[2] for c in classes] == [0, 1, 2]
    np.testing.assert_allclose(classes[-1][3].coef_, model.coef_)
    second = classes[1][3]  # classes 0 and 1 fitted, class 2 still at its start
    np.testing.assert_allclose(second.coef_[:2], model.coef_[:2])
    np.testing.assert_array_equal(second.coef_[2], 0.0)


def test_a_callback_returning_true_stops_the_solver(data) -> None:
    X, y = data
    model = LogisticRegression(solver="lbfgs").set_callbacks(Recorder(stop_after=3))
    with pytest.warns(match="stopped by the callback"):
        model.fit(X, y)
    assert model.n_iter_[0] == 3
    assert not model.converged_


def test_minibatch_epochs_and_datasets_take_callbacks(data, tmp_path) -> None:
    X, y = data
    recorder = Recorder()
    model = LogisticRegression(solver="minibatch", max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.set_callbacks(recorder).fit(X, y)
    assert len(recorder.hooks("end", kind="minibatch-epoch")) == 3 + 1
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    recorder = Recorder()
    model = LogisticRegression(solver="lbfgs").set_callbacks(recorder)
    model.fit(Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy"))
    assert len(recorder.hooks("end")) == model.n_iter_[0] + 1


class Failing(Recorder):
    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        super().on_fit_task_end(estimator, context, fitted_estimator=fitted_estimator)
        if len(self.hooks("end")) == 2:
            raise RuntimeError("the monitor failed")
        return False


def test_teardown_runs_when_the_fit_fails_and_refused_data_start_no_tree(data) -> None:
    X, y = data
    recorder = Failing()
    with pytest.raises(RuntimeError, match="the monitor failed"):
        LogisticRegression().set_callbacks(recorder).fit(X, y)
    assert recorder.calls[0][0] == "setup"
    assert recorder.calls[-1][0] == "teardown"
    recorder = Recorder()  # as scikit-learn's: the data are checked before the tree starts
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().set_callbacks(recorder).fit(np.full_like(X, np.nan), y)
    assert recorder.calls == []


def test_the_drop_in_serves_callbacks_on_every_served_solver(data) -> None:
    from gpulogreg import accel

    X, y = data
    accel.reset_fit_counts()
    for solver in ("lbfgs", "newton-cg", "newton-cholesky", "saga"):
        recorder = Recorder()
        model = accel.LogisticRegression(solver=solver, max_iter=300)
        model.set_callbacks(recorder).fit(X, y)
        ends = recorder.hooks("end")
        assert len(ends) == int(model.n_iter_[0]) + 1
        np.testing.assert_allclose(ends[-2][3].coef_, model.coef_)
        assert ends[-2][3].coef_.dtype == X.dtype
    assert accel.fit_counts() == {"gpulogreg": 4, "scikit-learn": 0}
    with pytest.warns(UserWarning, match="only supported in LogisticRegression for solver='lbfgs'"):
        accel.LogisticRegression(solver="liblinear").set_callbacks(Recorder())


def test_fitted_estimators_carry_nothing_of_an_earlier_fit(data) -> None:
    pd = pytest.importorskip("pandas")
    X, y = data
    model = LogisticRegression().fit(pd.DataFrame(X, columns=list("abcd")), y)
    recorder = Recorder()
    model.set_callbacks(recorder).fit(X, y)
    stopped = recorder.hooks("end")[0][3]
    assert not hasattr(stopped, "feature_names_in_")
    assert not hasattr(stopped, "history_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        stopped.predict(X)
    assert not hasattr(model, "feature_names_in_")
    with pytest.raises(ValueError, match="NaN"):  # refused data: the fitted model stays
        model.fit(np.full_like(X, np.nan), y)
    assert hasattr(model, "coef_")
