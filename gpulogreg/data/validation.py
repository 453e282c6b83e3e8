"""Validation and conversion of in-memory data: the one place ``X`` may be copied.

Everything downstream (backends, objective, solvers) trusts what leaves this
module: ``X`` is a 2-D, C-contiguous, finite float32 or float64 array in its
own array namespace (NumPy or CuPy), or a Dask array of such row blocks;
labels are encoded as int32 class indices; sample weights are finite,
non-negative float64 with a positive sum.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, device_of, is_sparse, to_host
from gpulogreg._compat import DataConversionWarning
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg._model_file import storable_objects
from gpulogreg._typing import Array
from gpulogreg.data.sparse import check_sparse

__all__ = [
    "FitData",
    "check_X",
    "check_feature_names",
    "check_labels",
    "check_sample_weight",
    "class_weights",
    "encode_labels",
    "prepare_arrays",
]


def shown(value: Any) -> str:
    """A value as a message shows it: NumPy scalars and arrays as plain Python values.

    ``np.int64(0)`` reads ``0`` and ``array(['a', 'b'])`` reads ``['a', 'b']``.
    """
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    return repr(value)


def _feature_names(X: Any) -> np.ndarray | None:
    """Column names of a DataFrame (pandas or polars), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "shape"):
        return None
    names = [str(c) for c in columns]
    if not all(isinstance(c, str) for c in columns):
        return None
    return np.asarray(names, dtype=object)


#: How many unseen or missing names a mismatch lists before "- ..." (scikit-learn's 5).
_MAX_LISTED_NAMES = 5

#: The warning points at the caller of the estimator method that checks X.
_WARNING_STACKLEVEL = 3


def check_feature_names(
    X: Any, fitted: np.ndarray | None, *, owner: str, warn: bool = True
) -> None:
    """Check the columns of ``X`` against the feature names a model was fitted with.

    scikit-learn's rules and wording, so that a model is applied only to the
    features it was trained on: a DataFrame whose column names differ from
    ``fitted`` in names or order is refused; a DataFrame given to a model
    fitted without names, or an array (no names) given to a model fitted with
    them, only warns. A Dask array carries no column names: nothing is checked.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The input as given, before :func:`check_X` (which drops the names).
    fitted : ndarray of str or None
        The model's ``feature_names_in_``; None when fitted without names.
    owner : str
        The model's class name, named in the warnings.
    warn : bool
        Warn when exactly one of ``X`` and the model has names (prediction
        does; partial_fit does not, as an array chunk keeps the fitted names).

    Raises
    ------
    ValueError
        ``X`` has column names that are not ``fitted``, in the same order.
    """
    if array_module_name(X) == "dask":
        return
    names = _feature_names(X)
    if names is None or fitted is None:
        if warn and names is not None:
            warnings.warn(
                f"X has feature names, but {owner} was fitted without feature names",
                UserWarning,
                stacklevel=_WARNING_STACKLEVEL,
            )
        elif warn and fitted is not None:
            warnings.warn(
                f"X does not have valid feature names, but {owner} was fitted with feature names",
                UserWarning,
                stacklevel=_WARNING_STACKLEVEL,
            )
        return
    if len(names) == len(fitted) and all(a == b for a, b in zip(names, fitted, strict=True)):
        return
    message = "The feature names should match those that were passed during fit.\n"
    unexpected = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))
    if unexpected:
        message += "Feature names unseen at fit time:\n" + _listed(unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + _listed(missing)
    if not unexpected and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise InputValueError(message)


def _listed(names: list[str]) -> str:
    """One ``- name`` line per name, the first :data:`_MAX_LISTED_NAMES`, then ``- ...``."""
    lines = [f"- {n}\n" for n in names[:_MAX_LISTED_NAMES]]
    if len(names) > _MAX_LISTED_NAMES:
        lines.append("- ...\n")
    return "".join(lines)


def _dataframe_to_numpy(X: Any) -> np.ndarray:
    """Convert a pandas/polars DataFrame, naming the first non-numeric column.

    pandas' nullable and Arrow-backed numeric and boolean columns (``Int64``,
    ``Float64``, ``boolean``, ``double[pyarrow]``) are numbers like their NumPy
    counterparts; a missing value in one (``pd.NA``) is refused naming its
    column and row.
    """
    dtypes = getattr(X, "dtypes", None)
    columns = list(X.columns)
    extension = []
    if dtypes is not None:
        for name, dtype in zip(columns, list(dtypes), strict=True):
            if _is_numpy_dtype(dtype):
                kind = np.dtype(dtype).kind
            elif _is_pandas_number(dtype):
                kind = "f"
                extension.append(name)
            else:
                kind = "f" if getattr(dtype, "is_numeric", lambda: False)() else "O"
            if kind not in "biuf":
                raise InputTypeError(f"column {name!r} is not numeric (dtype {dtype})")
    if not extension:
        return np.asarray(X.to_numpy())
    for name in extension:
        missing = np.flatnonzero(np.asarray(X[name].isna()))
        if missing.size:
            raise InputValueError(
                f"column {name!r} has a missing value at row {int(missing[0])}; remove or impute it"
            )
    return np.asarray(X.to_numpy(dtype=np.float64))


def _is_pandas_number(dtype: Any) -> bool:
    """A pandas extension dtype holding numbers or booleans (pandas is loaded: X is a frame)."""
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return False
    types = pandas.api.types
    return bool(types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype))


def _is_numpy_dtype(dtype: Any) -> bool:
    try:
        np.dtype(dtype)
    except TypeError:
        return False
    return True


def check_X(
    X: Any,
    *,
    dtype: Any = None,
    name: str = "X",
    n_features: int | None = None,
    owner: str = "the model",
    lazy: bool = False,
    accept_sparse: bool = False,
) -> tuple[Array, np.ndarray | None]:
    """Validate a feature matrix and convert it once.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NumPy or CuPy array, pandas or polars DataFrame, or nested sequences.
    dtype : {None, numpy.float32, numpy.float64}
        Target dtype. None keeps float32 and float64 as given and converts
        everything else to float64.
    name : str
        Name used in error messages.
    n_features : int, optional
        Expected number of columns (prediction on a fitted model).
    owner : str
        Who expects ``n_features`` (named in the error message).
    lazy : bool
        Accept a Dask array: shape and dtype are checked at once, the
        conversion (one column chunk, C-contiguous blocks of the target dtype)
        is lazy, and the caller checks finiteness in its own pass over the
        blocks (:func:`prepare_fit_data` does, prediction does per block).
    accept_sparse : bool
        Accept ``scipy.sparse`` / ``cupyx.scipy.sparse`` input, returned as
        canonical CSR (:func:`gpulogreg.data.sparse.check_sparse`); refused
        with a message naming ``name`` otherwise.

    Returns
    -------
    X : array of shape (n_samples, n_features)
        C-contiguous float32/float64 array in the input's namespace; the input
        itself when it already qualifies (no copy). A Dask array (``lazy``)
        comes back as a Dask array whose blocks are such arrays; sparse input
        (``accept_sparse``) as a canonical CSR matrix.
    feature_names : ndarray of str or None
        Column names when ``X`` was a DataFrame.

    Raises
    ------
    TypeError
        Non-numeric data.
    ValueError
        Wrong dimensions, no rows, NaN or infinity (with its position), or the
        wrong number of features.
    """
    if is_sparse(X):
        if not accept_sparse:
            raise InputTypeError(
                f"{name} is a sparse matrix, which this operation does not take; "
                "convert it with X.toarray() if it fits in memory"
            )
        return check_sparse(X, dtype=dtype, name=name, n_features=n_features, owner=owner), None
    feature_names = _feature_names(X)
    module = array_module_name(X)
    if module == "dask" and not lazy:
        raise InputTypeError(
            f"{name} is a Dask array: LogisticRegression.fit, predict, predict_proba and "
            "decision_function take Dask arrays; elsewhere compute it first"
        )
    if feature_names is not None:
        X = _dataframe_to_numpy(X)
    xp = array_namespace(X)
    if module == "numpy" and not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise InputTypeError(
                f"{name} could not be converted to a numeric array: {exc}"
            ) from None
    if X.dtype.kind not in "biuf":
        if X.dtype.kind == "O":
            if module == "dask":
                raise InputTypeError(
                    f"{name} is a Dask array of objects: convert it to numbers first"
                )
            try:
                X = X.astype(np.float64)
            except (ValueError, TypeError) as exc:
                raise InputTypeError(f"{name} contains non-numeric values: {exc}") from None
        elif X.dtype.kind == "c":
            raise InputValueError(f"{name} is complex: Complex data not supported")
        else:
            raise InputTypeError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        hint = (
            " (Reshape your data with X.reshape(-1, 1) for a single feature"
            " or X.reshape(1, -1) for a single sample)"
            if X.ndim == 1
            else ""
        )
        raise InputValueError(f"{name} must be 2-D, got {X.ndim}-D with shape {X.shape}{hint}")
    for axis, what in enumerate(("sample(s)", "feature(s)")):
        if X.shape[axis] == 0:
            raise InputValueError(
                f"{name} is empty: 0 {what} (shape={X.shape}) while a minimum of 1 is required."
            )
    if n_features is not None and X.shape[1] != n_features:
        raise InputValueError(
            f"{name} has {X.shape[1]} features, but {owner} is expecting "
            f"{n_features} features as input"
        )
    target = np.dtype(dtype) if dtype is not None else None
    if target is None:
        target = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if target not in (np.float32, np.float64):
        raise InputValueError(f"dtype must be float32 or float64, got {target}")
    if module == "dask":
        return _dask_row_blocks(X, target), feature_names
    with device_of(X):  # CuPy works on the current device: make it X's
        X = xp.ascontiguousarray(X, dtype=target)
        _check_finite(X, name)
    return X, feature_names


def _describe(value: float) -> str:
    """``NaN``, ``inf`` or ``-inf`` as users write them."""
    return "NaN" if np.isnan(value) else str(value)


def _check_finite(X: Array, name: str) -> None:
    """Raise a ValueError naming the first NaN/inf entry (row, column)."""
    bad = _first_nonfinite(X)
    if bad is not None:
        raise InputValueError(_nonfinite_message(name, *bad))


def _first_nonfinite(X: Array) -> tuple[int, int, float] | None:
    """``(row, column, value)`` of the first NaN/inf entry of a 2-D array, or None.

    The fast path is one sum over ``X``: NaN and infinity propagate through
    it, so a finite sum proves every entry finite without an ``X``-sized
    boolean temporary (for C-contiguous NumPy floats, the parallel Numba read
    :func:`gpulogreg._numba_read.read_once`: 15 ms against 64 ms for
    ``isfinite(X).all()`` on 1,000,000 x 100 float32). Only a non-finite (or
    overflowing) sum looks for the entry.
    """
    xp = array_namespace(X)
    if xp is np and X.flags.c_contiguous and X.dtype in (np.float32, np.float64):
        from gpulogreg._numba_read import read_once  # Numba is imported on first use

        total = float(read_once(X))
    else:
        total = float(X.sum(dtype=xp.float64))
    if math.isfinite(total) or bool(xp.isfinite(X).all()):
        return None
    row, col = (int(i) for i in xp.argwhere(~xp.isfinite(X))[0])
    return row, col, float(X[row, col])


def _nonfinite_message(name: str, row: int, col: int, value: float) -> str:
    return f"{name} contains {_describe(value)} at row {row}, column {col}; remove or impute it"


def encode_labels(
    y: Any, classes: np.ndarray | None = None, *, row_offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Encode labels as int32 indices into the sorted unique classes.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels: ints, integral floats, strings, bools, datetime64 or
        timedelta64 values, or an object array of strings, bools or ints (see
        :func:`check_labels` for what is refused).
    classes : ndarray, optional
        Known classes (``partial_fit``, prediction); labels outside them raise.
    row_offset : int
        Row of ``y[0]`` in the whole data (error messages of a block).

    Returns
    -------
    classes : ndarray of shape (n_classes,)
    y_index : ndarray of shape (n_samples,), int32
    """
    y = _host_values(y)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; "
            "pass y of shape (n_samples,), for example with y.ravel()",
            DataConversionWarning,
            stacklevel=3,
        )
        y = y.ravel()
    if y.ndim != 1:
        raise InputValueError(f"y must be 1-D, got shape {y.shape}")
    _check_label_values(y, "y", row_offset)
    if classes is None:
        classes, y_index = _unique_labels(y, "y")
    else:
        y_index = np.searchsorted(classes, y)
        y_index = np.clip(y_index, 0, len(classes) - 1)
        unknown = classes[y_index] != y
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise InputValueError(
                f"y contains label {shown(y[row])} (row {row + row_offset}) not in classes "
                f"{shown(classes)}"
            )
    return classes, y_index.astype(np.int32).ravel()


def check_labels(labels: Any, what: str = "classes") -> np.ndarray:
    """The sorted distinct values of ``labels`` (e.g. ``partial_fit``'s ``classes``), checked.

    Labels are refused as scikit-learn refuses them (complex numbers, bytes,
    non-integral or missing values: NaN, None, NaT), and so are object arrays
    that a model file cannot store exactly (anything but strings, bools or
    ints, or a mix of those), since a model fitted on them could not be saved.

    Raises
    ------
    ValueError, TypeError
        Naming what is wrong (``what`` names the argument).
    """
    values = np.asarray(_host_values(labels))
    _check_label_values(values.ravel(), what, 0)
    return _unique_labels(values.ravel(), what)[0]


def _check_label_values(y: np.ndarray, what: str, row_offset: int) -> None:
    """Refuse label dtypes and values that are no class labels (see :func:`check_labels`)."""
    kind = y.dtype.kind
    if kind == "c":
        raise _complex_labels(what)
    if kind == "S":
        raise _bytes_labels(what)
    if kind == "V":
        raise InputTypeError(f"{what} has the structured dtype {y.dtype}; labels must be scalars")
    if kind == "f":
        if not np.isfinite(y).all():
            row = int(np.flatnonzero(~np.isfinite(y))[0])
            raise InputValueError(f"{what} contains {_describe(y[row])} at row {row + row_offset}")
        if (y != np.round(y)).any():
            raise InputValueError(
                f"Unknown label type: continuous. {what} holds non-integer floats; "
                "a classifier needs class labels"
            )
    if kind in "Mm" and np.isnat(y).any():
        row = int(np.flatnonzero(np.isnat(y))[0])
        raise InputValueError(f"{what} contains NaT at row {row + row_offset}")
    if kind == "O" and any(v is None or (isinstance(v, float) and np.isnan(v)) for v in y):
        raise InputValueError(f"{what} contains missing values")


def _unique_labels(y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted distinct labels, index of each label)``; object labels must be storable."""
    try:
        classes, y_index = np.unique(y, return_inverse=True)
    except TypeError:  # labels of types that do not compare (int and str, complex)
        raise _object_labels_error(y, what) from None
    if classes.dtype.kind == "O" and storable_objects(classes) is None:
        raise _object_labels_error(classes, what)
    return classes, y_index


def _object_labels_error(values: np.ndarray, what: str) -> Exception:
    """The error for object labels that are no storable class labels, naming their types."""
    types = {type(v) for v in values.tolist()}
    if any(issubclass(t, complex) for t in types):
        return _complex_labels(what)
    if any(issubclass(t, bytes) for t in types):
        return _bytes_labels(what)
    names = ", ".join(sorted(t.__name__ for t in types))
    return InputValueError(
        f"{what} holds labels of type {names}, which a model file cannot store exactly "
        "(labels must all be strings, all bools or all integers within int64, or a NumPy array of "
        "numbers, datetime64 or timedelta64; scikit-learn refuses object labels other "
        "than strings); convert them, e.g. with .astype(str)"
    )


def _complex_labels(what: str) -> ValueError:
    return InputValueError(
        f"Complex data not supported: {what} holds complex numbers, which are no class "
        "labels (as in scikit-learn)"
    )


def _bytes_labels(what: str) -> TypeError:
    return InputTypeError(
        f"{what} holds bytes: labels represented as bytes are not supported (as in "
        "scikit-learn); decode them to strings"
    )


def _host_values(a: Any) -> Any:
    """Host form of labels or weights: CuPy arrays copied, DataFrame columns converted."""
    if array_module_name(a) == "cupy":
        return to_host(a)
    if hasattr(a, "to_numpy"):
        return a.to_numpy()
    return a


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray:
    """Validate sample weights: finite, non-negative, right length, positive sum.

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    if sample_weight is None:
        return np.ones(n_samples)
    if np.isscalar(sample_weight):
        sw = np.full(n_samples, float(sample_weight))  # type: ignore[arg-type]
    else:
        try:
            sw = np.asarray(_host_values(sample_weight), dtype=np.float64)
        except (ValueError, TypeError):
            raise InputTypeError("sample_weight must be numeric") from None
    if sw.ndim != 1:
        raise InputValueError(f"sample_weight must be 1-D, got shape {sw.shape}")
    if sw.shape[0] != n_samples:
        raise InputValueError(f"sample_weight has {sw.shape[0]} entries but X has {n_samples} rows")
    _check_weight_values(sw)
    if sw.sum() <= 0:
        raise InputValueError("sample_weight sums to zero")
    return sw


def _check_weight_values(sw: np.ndarray, row_offset: int = 0) -> None:
    """Raise a ValueError naming the first non-finite or negative weight."""
    if not np.isfinite(sw).all():
        row = int(np.flatnonzero(~np.isfinite(sw))[0])
        raise InputValueError(
            f"sample_weight contains {_describe(sw[row])} at row {row + row_offset}"
        )
    if (sw < 0).any():
        row = int(np.flatnonzero(sw < 0)[0])
        raise InputValueError(f"sample_weight is negative ({sw[row]}) at row {row + row_offset}")


def class_weights(
    class_weight: Any, classes: np.ndarray, y_index: np.ndarray, sample_weight: np.ndarray
) -> np.ndarray:
    """Per-class multipliers of the sample weights.

    ``"balanced"`` gives ``n_samples / (n_classes * count_k)`` with counts
    weighted by ``sample_weight`` (scikit-learn's convention); a dict maps class
    labels to weights (missing classes get 1).

    Returns
    -------
    ndarray of shape (n_classes,), float64
    """
    n_classes = len(classes)
    if class_weight is None:
        return np.ones(n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise InputValueError(
                f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}"
            )
        counts = np.bincount(y_index, weights=sample_weight, minlength=n_classes)
        return np.asarray(sample_weight.sum() / (n_classes * counts))
    if isinstance(class_weight, dict):
        weights = np.ones(n_classes)
        known = {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(classes)}
        for label, w in class_weight.items():
            key = label.item() if hasattr(label, "item") else label
            if key not in known:
                raise InputValueError(
                    f"class_weight names class {shown(label)}, not among {shown(classes)}"
                )
            if not np.isfinite(w) or w < 0:
                raise InputValueError(
                    f"class_weight for class {shown(label)} must be finite and >= 0"
                )
            weights[known[key]] = float(w)
        return weights
    raise InputTypeError(
        f"class_weight must be None, 'balanced' or a dict, got {type(class_weight)}"
    )


@dataclass
class FitData:
    """Validated training data.

    Attributes
    ----------
    X : array of shape (n_samples, n_features), float32/float64, C-contiguous
    y : array of shape (n_samples,), int32 class indices, in X's namespace
    sample_weight : array of shape (n_samples,), float64, sums to 1, in X's namespace
    weight_sum : float
        Sum of the effective (sample * class) weights before normalisation:
        the penalty of the un-normalised objective is divided by it.
    classes : ndarray of shape (n_classes,)
    feature_names : ndarray of str or None
    """

    X: Array
    y: Array
    sample_weight: Array
    weight_sum: float
    classes: np.ndarray
    feature_names: np.ndarray | None


def prepare_arrays(
    X: Any,
    y: Any,
    sample_weight: Any = None,
    *,
    class_weight: Any = None,
    classes: np.ndarray | None = None,
    dtype: Any = None,
    min_classes: int = 2,
) -> FitData:
    """Validate and convert in-memory training data (NumPy, CuPy, DataFrames), once.

    Raises
    ------
    ValueError, TypeError
        Naming the problem: see :func:`check_X`, :func:`encode_labels`,
        :func:`check_sample_weight`; also mismatched lengths and a single class.
    """
    X, feature_names = check_X(X, dtype=dtype, accept_sparse=True)
    n_samples = X.shape[0]
    y_host = np.asarray(_host_values(y)) if not isinstance(y, np.ndarray) else y
    if y_host.ndim >= 1 and y_host.shape[0] != n_samples:
        raise InputValueError(f"X has {n_samples} rows but y has {y_host.shape[0]} labels")
    classes, y_index = encode_labels(y_host, classes)
    present = np.unique(y_index).size
    _check_n_classes(present, classes[y_index[0]], min_classes)
    sw = check_sample_weight(sample_weight, n_samples)
    sw = sw * class_weights(class_weight, classes, y_index, sw)[y_index]
    weight_sum = float(sw.sum())
    if weight_sum <= 0:
        raise InputValueError("the sample and class weights sum to zero")
    xp = array_namespace(X)
    with device_of(X):  # labels and weights go to the device that holds X
        y_dev, s_dev = xp.asarray(y_index), xp.asarray(sw / weight_sum)
    return FitData(
        X=X,
        y=y_dev,
        sample_weight=s_dev,
        weight_sum=weight_sum,
        classes=classes,
        feature_names=feature_names,
    )


def _check_n_classes(present: int, example: Any, min_classes: int) -> None:
    """Raise when ``y`` holds fewer than ``min_classes`` classes (``example`` is one of them)."""
    if present < min_classes:
        raise InputValueError(
            f"y has only {present} class ({shown(example)}); "
            f"need at least {min_classes} to fit a classifier"
        )


def _dask_row_blocks(X: Any, dtype: np.dtype[Any]) -> Any:
    """Dask ``X`` as one column chunk of C-contiguous ``dtype`` row blocks (lazy).

    Sparse blocks become canonical CSR blocks, validated when computed (their
    errors name the global row).
    """
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})  # rows keep their chunks; each block holds whole rows
    if is_sparse(X._meta):
        meta = X._meta.tocsr().astype(dtype)
        return X.map_blocks(_canonical_block, dtype, dtype=dtype, meta=meta)
    return X.map_blocks(_contiguous_block, dtype, dtype=dtype, meta=X._meta.astype(dtype))


def _canonical_block(
    block: Array, dtype: np.dtype[Any], block_info: dict[Any, Any] | None = None
) -> Array:
    if block.shape[0] == 0:  # an empty block has nothing to check
        return block.tocsr().astype(dtype)
    offset = 0 if block_info is None else int(block_info[0]["array-location"][0][0])
    return check_sparse(block, dtype=dtype, row_offset=offset)


def _contiguous_block(block: Array, dtype: np.dtype[Any]) -> Array:
    return array_namespace(block).ascontiguousarray(block, dtype=dtype)
