"""Bad input gets a clear ValueError/TypeError naming the problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gpulogreg import LogisticRegression, loss_and_gradient
from gpulogreg.data import check_X
from tests._helpers import make_classification


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(100, 3, seed=0)


@pytest.mark.parametrize(("value", "word"), [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_x_names_value_and_position(
    data: tuple[np.ndarray, np.ndarray], value: float, word: str
) -> None:
    X, y = data
    X = X.copy()
    X[17, 2] = value
    with pytest.raises(ValueError, match=rf"{word} at row 17, column 2"):
        LogisticRegression().fit(X, y)


@pytest.mark.parametrize("shape", [(100,), (100, 3, 1)])
def test_wrong_dimensions(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"must be 2-D"):
        LogisticRegression().fit(np.zeros(shape), np.arange(100) % 2)


def test_empty_data() -> None:
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        LogisticRegression().fit(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        LogisticRegression().fit(np.zeros((3, 0)), np.arange(3) % 2)


def test_single_class(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    with pytest.raises(ValueError, match="only 1 class"):
        LogisticRegression().fit(X, np.ones(len(X)))


def test_mismatched_lengths(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="100 rows but y has 99"):
        LogisticRegression().fit(X, y[:-1])


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (-1.0, "negative"),
        (np.nan, "NaN at row 5"),
        (np.inf, "inf at row 5"),
    ],
)
def test_bad_sample_weight(
    data: tuple[np.ndarray, np.ndarray], weights: float, message: str
) -> None:
    X, y = data
    sw = np.ones(len(y))
    sw[5] = weights
    with pytest.raises(ValueError, match=message):
        LogisticRegression().fit(X, y, sample_weight=sw)


def test_sample_weight_length(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="sample_weight has 3 entries"):
        LogisticRegression().fit(X, y, sample_weight=np.ones(3))


def test_zero_weights(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="sums to zero"):
        LogisticRegression().fit(X, y, sample_weight=np.zeros(len(y)))


def test_non_numeric_array(data: tuple[np.ndarray, np.ndarray]) -> None:
    _, y = data
    X = np.array([["a", "b"]] * len(y))
    with pytest.raises(TypeError, match="numeric"):
        LogisticRegression().fit(X, y)


def test_non_numeric_dataframe_column_is_named(data: tuple[np.ndarray, np.ndarray]) -> None:
    pd = pytest.importorskip("pandas")
    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["colour"] = "red"
    with pytest.raises(TypeError, match="'colour'"):
        LogisticRegression().fit(frame, y)


def test_complex_data_is_refused(data: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="Complex data not supported"):
        check_X(data[0] + 1j)


def test_continuous_target_is_refused(data: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        LogisticRegression().fit(data[0], np.linspace(0, 1, len(data[0])))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"C": 0.0}, "C must be a positive"),
        ({"C": -1.0}, "C must be a positive"),
        ({"penalty": "l3"}, "penalty must be one of"),
        ({"solver": "lbfgs-b"}, "solver must be"),
        ({"tol": 0.0}, "tol must be"),
        ({"max_iter": -1}, "max_iter must be"),
        ({"l1_ratio": 1.5}, "l1_ratio must be in"),
        ({"dual": True}, "supports only dual=False"),
        ({"solver": "liblinear", "l1_ratio": 0.5}, "Only 'saga' solver supports elasticnet"),
        ({"intercept_scaling": 0.0}, "intercept_scaling must be a positive"),
        ({"l1_ratio": 1.0, "solver": "newton"}, "supports only L2"),
        ({"multi_class": "one"}, "multi_class must be"),
        ({"device": "tpu"}, "device must be one of"),
        ({"backend": "torch"}, "backend must be"),
        ({"dtype": "float16"}, "dtype must be"),
        ({"class_weight": "auto"}, "class_weight must be"),
        ({"class_weight": {7: 2.0}}, "names class 7"),
    ],
)
def test_invalid_hyper_parameters(
    data: tuple[np.ndarray, np.ndarray], params: dict[str, object], message: str
) -> None:
    X, y = data
    with pytest.raises(ValueError, match=message):
        LogisticRegression(**params).fit(X, y)  # type: ignore[arg-type]


def test_predict_with_wrong_number_of_features(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but LogisticRegression is expecting 3"):
        model.predict(X[:, :2])


def test_predict_before_fit(data: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="not fitted"):
        LogisticRegression().predict(data[0])


def test_y_none(data: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="y is None"):
        LogisticRegression().fit(data[0], None)


def test_loss_and_gradient_rejects_non_binary_labels(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    with pytest.raises(ValueError, match="labels 0 and 1"):
        loss_and_gradient(X, np.arange(len(X)) % 3, np.zeros(3))


def test_huge_finite_values_are_not_mistaken_for_infinity() -> None:
    # Their sum overflows to inf: the fast finiteness check must not report it.
    X = np.full((4, 2), 1e308)
    checked, _ = check_X(X)
    assert checked is X


_EXTENSION_DTYPES = ["Int64", "Float64", "boolean", "Float32", "double[pyarrow]", "int64[pyarrow]"]


def _extension_column(x: np.ndarray, dtype: str, scale: float) -> tuple[Any, Any, np.ndarray]:
    """``(pandas, a column of dtype, its values as NumPy)``; skips without pandas/pyarrow."""
    pd = pytest.importorskip("pandas")
    if "pyarrow" in dtype:
        pytest.importorskip("pyarrow")
    values = x > 0 if dtype == "boolean" else np.round(x * scale)
    return pd, pd.array(values, dtype=dtype), values


@pytest.mark.parametrize("dtype", _EXTENSION_DTYPES)
def test_pandas_extension_dtypes_train_like_numpy(
    data: tuple[np.ndarray, np.ndarray], dtype: str
) -> None:
    """Nullable and Arrow-backed columns without missing values are numbers (issue 10, 7)."""
    X, y = data
    pd, column, values = _extension_column(X[:, 0], dtype, scale=3.0)
    frame = pd.DataFrame({"a": column, "b": X[:, 1], "c": X[:, 2]})
    plain = np.column_stack([values.astype(np.float64), X[:, 1], X[:, 2]])
    model = LogisticRegression().fit(frame, y)
    reference = LogisticRegression().fit(plain, y)
    np.testing.assert_array_equal(model.coef_, reference.coef_)
    np.testing.assert_array_equal(model.predict_proba(frame), reference.predict_proba(plain))


@pytest.mark.parametrize("dtype", ["Int64", "Float64", "boolean", "double[pyarrow]"])
def test_missing_value_in_an_extension_column_names_column_and_row(
    data: tuple[np.ndarray, np.ndarray], dtype: str
) -> None:
    X, y = data
    pd, column, _ = _extension_column(X[:, 0], dtype, scale=1.0)
    frame = pd.DataFrame({"b": X[:, 1], "a": column}, index=np.arange(100) + 1000)
    frame.iloc[42, 1] = pd.NA
    with pytest.raises(ValueError, match=r"column 'a' has a missing value at row 42"):
        LogisticRegression().fit(frame, y)


def test_messages_show_plain_values_not_numpy_reprs(data: tuple[np.ndarray, np.ndarray]) -> None:
    """``0``, not ``np.int64(0)`` (issue 10, principle 8)."""
    X, y = data
    with pytest.raises(ValueError, match=r"only 1 class \(0\)"):
        LogisticRegression().fit(X, np.zeros_like(y))
    with pytest.raises(ValueError, match=r"class_weight names class 7, not among \[0, 1\]$"):
        LogisticRegression(class_weight={7: 2.0}).fit(X, y)
    model = LogisticRegression(solver="minibatch")
    with pytest.raises(ValueError, match=r"y contains label 5 \(row 3\) not in classes \[0, 1\]"):
        model.partial_fit(X, np.where(np.arange(100) == 3, 5, y), classes=[0, 1])


# --------------------------------------------------------------------------- labels (issue 10, 7)
def _complex(y: np.ndarray) -> np.ndarray:
    return y + 0j


def _imaginary(y: np.ndarray) -> np.ndarray:
    return 1 + 1j * y


def _object_complex(y: np.ndarray) -> np.ndarray:
    return np.array([complex(v) for v in y], dtype=object)


@pytest.mark.parametrize("make", [_complex, _imaginary, _object_complex])
def test_complex_labels_are_refused_as_scikit_learn_does(
    data: tuple[np.ndarray, np.ndarray], make: Any
) -> None:
    X, y = data
    labels = make(y)
    with pytest.raises(ValueError, match="Complex data not supported"):
        LogisticRegression().fit(X, labels)
    with pytest.raises(ValueError, match="Complex data not supported"):
        LogisticRegression().partial_fit(X, labels, classes=list(set(labels.tolist())))


def test_complex_classes_of_partial_fit_are_refused(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Integer labels matched against complex ``classes`` would make complex ``classes_``."""
    X, y = data
    with pytest.raises(ValueError, match="Complex data not supported: classes"):
        LogisticRegression().partial_fit(X, y, classes=[0j, 1 + 0j])


@pytest.mark.parametrize("dtype", ["S", object], ids=["bytes", "object-bytes"])
def test_bytes_labels_are_refused_as_scikit_learn_does(
    data: tuple[np.ndarray, np.ndarray], dtype: Any
) -> None:
    X, y = data
    labels = np.array([b"no", b"yes"], dtype=dtype)[y]
    with pytest.raises(TypeError, match="labels represented as bytes are not supported"):
        LogisticRegression().fit(X, labels)


def _object_labels(kind: str) -> np.ndarray:
    import datetime
    import decimal

    pairs: dict[str, list[Any]] = {
        "Decimal": [decimal.Decimal("0.5"), decimal.Decimal("1.5")],
        "date": [datetime.date(2020, 1, 1), datetime.date(2021, 1, 1)],
        "float": [0.0, 1.0],
        "int-and-str": [1, "a"],
        "int-and-bool": [2, True],
        "huge-int": [0, 2**70],
    }
    return np.array(pairs[kind] + [None], dtype=object)[:2]


@pytest.mark.parametrize(
    "kind", ["Decimal", "date", "float", "int-and-str", "int-and-bool", "huge-int"]
)
def test_object_labels_a_model_file_cannot_hold_are_refused_at_fit(
    data: tuple[np.ndarray, np.ndarray], kind: str
) -> None:
    """A fit whose model ``save`` would refuse is a trap: refused first, saying why."""
    X, y = data
    labels = _object_labels(kind)[y]
    with pytest.raises(ValueError, match=r"y holds labels of type .* which a model file"):
        LogisticRegression().fit(X, labels)


def test_timezone_aware_timestamps_are_refused_at_fit(data: tuple[np.ndarray, np.ndarray]) -> None:
    pd = pytest.importorskip("pandas")
    X, y = data
    stamps = pd.Series(pd.to_datetime(["2020-01-01", "2021-01-01"])[y]).dt.tz_localize("UTC")
    with pytest.raises(ValueError, match=r"y holds labels of type Timestamp"):
        LogisticRegression().fit(X, stamps)


@pytest.mark.parametrize("dtype", ["datetime64[D]", "timedelta64[s]"])
def test_nat_labels_are_missing_values(data: tuple[np.ndarray, np.ndarray], dtype: str) -> None:
    X, y = data
    labels = np.array([1, 2], dtype=dtype)[y]
    labels[7] = np.array("NaT", dtype=dtype)
    with pytest.raises(ValueError, match=r"y contains NaT at row 7"):
        LogisticRegression().fit(X, labels)
