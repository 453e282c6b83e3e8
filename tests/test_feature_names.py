"""A model is applied only to the features it was trained on (issue 10, principle 1).

After a fit on a DataFrame, every prediction method refuses a DataFrame whose
columns differ in names or order, with scikit-learn's error and wording, and
warns (as scikit-learn does) when names are on one side only; the same after
save/load, and in partial_fit (one check for both).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gpulogreg
from gpulogreg import LogisticRegression
from tests._helpers import make_classification

pd = pytest.importorskip("pandas")

NAMES = ["a", "b", "c"]
MISMATCH = "The feature names should match those that were passed during fit.\n"


def _method_calls(y: np.ndarray) -> dict[str, Callable[[Any, Any], Any]]:
    """Every method that applies a fitted model to X (score with the labels)."""
    return {
        "predict": lambda model, X: model.predict(X),
        "predict_proba": lambda model, X: model.predict_proba(X),
        "predict_log_proba": lambda model, X: model.predict_log_proba(X),
        "decision_function": lambda model, X: model.decision_function(X),
        "score": lambda model, X: model.score(X, y),
    }


METHODS = list(_method_calls(np.zeros(1)))


@pytest.fixture(scope="module")
def data() -> tuple[Any, np.ndarray]:
    # distinct scales per column, so that a column swap changes the answer
    X, y = make_classification(400, 3, seed=7)
    return pd.DataFrame(X * [1.0, 3.0, -2.0], columns=NAMES), y


@pytest.fixture(scope="module")
def model(data: tuple[Any, np.ndarray]) -> LogisticRegression:
    frame, y = data
    return LogisticRegression().fit(frame, y)


@pytest.fixture(scope="module")
def loaded(model: LogisticRegression, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("model") / "m.glr"
    model.save(path)
    return gpulogreg.load(path)


def _call(method: str, model: Any, X: Any, y: np.ndarray) -> Any:
    return _method_calls(y)[method](model, X)


@pytest.mark.parametrize("method", METHODS)
def test_reordered_columns_are_refused(method: str, model: Any, loaded: Any, data: Any) -> None:
    # today: silently different probabilities (the columns are used by position)
    frame, y = data
    reordered = frame[["c", "a", "b"]]
    message = MISMATCH + "Feature names must be in the same order as they were in fit.\n"
    for fitted in (model, loaded):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            _call(method, fitted, reordered, y)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        pytest.param(
            ["a", "b", "x"],
            "Feature names unseen at fit time:\n- x\n"
            "Feature names seen at fit time, yet now missing:\n- c\n",
            id="renamed",
        ),
        pytest.param(
            ["a", "c"], "Feature names seen at fit time, yet now missing:\n- b\n", id="missing"
        ),
        pytest.param(["a", "b", "c", "d"], "Feature names unseen at fit time:\n- d\n", id="extra"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_other_columns_are_refused_by_name(
    method: str, columns: list[str], expected: str, model: Any, loaded: Any, data: Any
) -> None:
    frame, y = data
    other = frame.assign(x=frame["c"], d=frame["a"])[columns]
    for fitted in (model, loaded):
        with pytest.raises(ValueError, match=f"^{re.escape(MISMATCH + expected)}$"):
            _call(method, fitted, other, y)


def test_a_long_list_of_names_is_cut_after_five(data: Any) -> None:
    frame, y = data
    wide = pd.DataFrame(np.tile(frame.to_numpy(), 3), columns=[f"f{i}" for i in range(9)])
    model = LogisticRegression().fit(wide, y)
    renamed = wide.set_axis([f"g{i}" for i in range(9)], axis=1)
    listed = "".join(f"- g{i}\n" for i in range(5)) + "- ...\n"
    with pytest.raises(ValueError, match=re.escape(f"unseen at fit time:\n{listed}Feature")):
        model.predict(renamed)


@pytest.mark.parametrize("method", METHODS)
def test_matching_dataframe_predicts_as_the_array(
    method: str, model: Any, loaded: Any, data: Any
) -> None:
    frame, y = data
    for fitted in (model, loaded):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no feature-name warning either
            from_frame = _call(method, fitted, frame, y)
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            from_array = _call(method, fitted, frame.to_numpy(), y)
        np.testing.assert_array_equal(np.asarray(from_frame), np.asarray(from_array))


@pytest.mark.parametrize("method", METHODS)
def test_an_array_after_a_dataframe_fit_warns(
    method: str, model: Any, loaded: Any, data: Any
) -> None:
    frame, y = data
    message = (
        "X does not have valid feature names, but LogisticRegression was fitted with feature names"
    )
    for fitted in (model, loaded):
        with pytest.warns(UserWarning, match=f"^{re.escape(message)}$"):
            _call(method, fitted, frame.to_numpy(), y)


@pytest.mark.parametrize("method", METHODS)
def test_a_dataframe_after_an_array_fit_warns(method: str, data: Any, tmp_path: Any) -> None:
    frame, y = data
    model = LogisticRegression().fit(frame.to_numpy(), y)
    model.save(tmp_path / "m.glr")
    message = "X has feature names, but LogisticRegression was fitted without feature names"
    for fitted in (model, gpulogreg.load(tmp_path / "m.glr")):
        with pytest.warns(UserWarning, match=f"^{re.escape(message)}$"):
            _call(method, fitted, frame, y)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_dask_arrays_are_not_checked(method: str, model: Any, data: Any) -> None:
    da = pytest.importorskip("dask.array")
    frame, y = data
    X = frame.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Dask array has no names to compare
        lazy = _call(method, model, da.from_array(X, chunks=(100, 3)), y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        expected = _call(method, model, X, y)
    np.testing.assert_array_equal(np.asarray(lazy.compute()), np.asarray(expected))


def test_partial_fit_refuses_other_columns_first(model: Any, loaded: Any, data: Any) -> None:
    # names are checked before the count, so a missing column is named, as in scikit-learn
    frame, y = data
    for fitted in (model, loaded):
        with pytest.raises(ValueError, match=re.escape(MISMATCH + "Feature names must be")):
            fitted.partial_fit(frame[["b", "a", "c"]], y)
        with pytest.raises(ValueError, match=re.escape("yet now missing:\n- c\n")):
            fitted.partial_fit(frame[["a", "b"]], y)


def test_scikit_learn_column_names_check() -> None:
    checks = pytest.importorskip("sklearn.utils.estimator_checks")
    checks.check_dataframe_column_names_consistency("LogisticRegression", LogisticRegression())
