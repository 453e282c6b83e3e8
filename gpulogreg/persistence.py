"""Save and load fitted models without pickle: the public side of the model file format.

The format itself (versions 1 and 2, a ZIP archive of ``metadata.json`` and
``arrays/<name>.npy``) lives in :mod:`gpulogreg._model_file`, below the
estimator; this module sits above it: it builds the
:class:`~gpulogreg.LogisticRegression` from what the file holds. A model file
stores the constructor parameters and the attributes the estimator declares
in ``LogisticRegression.FITTED_ATTRIBUTES`` (nothing else of ``vars(model)``)
and, when ``partial_fit`` ran since the last ``fit``, the state of its
trainers, so that a loaded model continues training exactly as the saved one.

Loading trusts nothing in the file: it must be our container (see
:func:`gpulogreg._files.read`), name this format and a version this library
reads, hold only declared attributes with the shapes its metadata allows and
only constructor parameters; the built model must have finite coefficients.
Any failure raises :class:`ModelFormatError` saying what is wrong.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpulogreg._fit import PartialFitState
from gpulogreg._model_file import (
    FORMAT,
    FORMAT_VERSION,
    ModelFormatError,
    TrainingState,
    read_model_file,
)
from gpulogreg._version import __version__
from gpulogreg.estimator import LogisticRegression

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFormatError",
    "load",
    "load_with_metadata",
    "save_model",
]


def save_model(
    model: LogisticRegression,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a fitted model to exactly ``path`` (atomically), without pickle.

    Parameters
    ----------
    model : LogisticRegression
        A fitted estimator.
    path : path
        Written as given (no extension is added); replaced atomically.
    metadata : mapping, optional
        Extra JSON-serialisable information (e.g. the CLI's column names),
        returned by :func:`load_with_metadata` under ``"extra"``.

    Raises
    ------
    TypeError
        A parameter or attribute that cannot be stored without pickle, or a
        public fitted attribute outside ``FITTED_ATTRIBUTES``.
    """
    model._write_model_file(path, metadata)


def load(path: str | os.PathLike[str]) -> LogisticRegression:
    """Load a model written by :meth:`LogisticRegression.save` or :func:`save_model`.

    Raises
    ------
    FileNotFoundError
    ModelFormatError
        Not a gpulogreg model, corrupt, written by a newer format version, or
        holding pickled objects (refused unread).
    """
    return load_with_metadata(path)[0]


def load_with_metadata(path: str | os.PathLike[str]) -> tuple[LogisticRegression, dict[str, Any]]:
    """Load a model and return it with its metadata (``metadata["extra"]``: the caller's)."""
    path = os.fspath(path)
    meta, params, attributes, training = read_model_file(
        path, attribute_names=LogisticRegression.FITTED_ATTRIBUTES
    )
    if meta.get("estimator") != LogisticRegression.__name__:
        raise ModelFormatError(f"{path}: unknown estimator {meta.get('estimator')!r}")
    valid = set(inspect.signature(LogisticRegression.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ModelFormatError(
            f"{path}: parameter {unknown[0]!r} is unknown to this gpulogreg ({__version__}); "
            f"the file was written by gpulogreg {meta.get('library_version', '?')}"
        )
    model = LogisticRegression(**params)
    for key, value in attributes.items():
        setattr(model, key, value)
    _check_consistent(model, path)
    if training is not None:
        model._partial_state = _restored_training(training, model, path)
    return model, meta


def _restored_training(
    training: TrainingState, model: LogisticRegression, path: str
) -> PartialFitState:
    """The ``partial_fit`` state of a loaded model, its histories being ``history_``."""
    history = getattr(model, "history_", None)
    histories = history if isinstance(history, list) else [history]
    try:
        return PartialFitState.restored(training, histories)
    except ValueError as exc:  # CheckpointError too
        raise ModelFormatError(f"{path}: the partial_fit state is malformed ({exc})") from None


def _check_consistent(model: LogisticRegression, path: str) -> None:
    """The fitted attributes prediction needs are present, arrays of the right kind, finite.

    ``classes_`` must be sorted and distinct, as a fit makes it: prediction maps
    the decision columns to the classes in that order, and ``partial_fit``
    and scoring look labels up in it by bisection.

    Their shapes were checked against each other before they were read
    (:func:`gpulogreg._model_file.read_model_file`).
    """
    for name in ("coef_", "intercept_", "classes_", "n_features_in_"):
        if not hasattr(model, name):
            raise ModelFormatError(f"{path}: the model has no {name} (not a fitted model)")
    for name in ("coef_", "intercept_", "classes_", "feature_names_in_"):
        if hasattr(model, name) and not isinstance(getattr(model, name), np.ndarray):
            raise ModelFormatError(f"{path}: {name} is not stored as an array")
    coef, intercept = model.coef_, model.intercept_
    if coef.dtype.kind != "f" or intercept.dtype.kind != "f":
        raise ModelFormatError(f"{path}: coef_ and intercept_ must be float arrays")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ModelFormatError(f"{path}: coef_ or intercept_ holds NaN or infinity")
    classes = model.classes_
    if classes.ndim != 1 or not bool(np.all(classes[1:] > classes[:-1])):
        raise ModelFormatError(f"{path}: classes_ must be sorted and distinct")
