"""The model file format: parameters and a declared list of fitted attributes, without pickle.

This module knows the format and nothing above it: it imports neither the
estimator nor :mod:`gpulogreg.persistence` (the public module, which builds
the estimator from what is read here), so the estimator's ``save`` can use it.

File format (versions 1 and 2)
------------------------------
The package's no-pickle container (:mod:`gpulogreg._files`): one ZIP archive
laid out like NumPy's ``.npz`` (stored, not compressed), so
``numpy.load(path, allow_pickle=False)`` opens it and any zip tool lists it:

``metadata.json``
    UTF-8 JSON: ``{"format": "gpulogreg-model", "format_version": 1 or 2,
    "library_version": ..., "estimator": "LogisticRegression", "created": ...,
    "params": {constructor parameters}, "state": {fitted scalars},
    "arrays": {attribute name: member name}, "object_string_arrays": [...],
    "datetime_arrays": {...}, "extra": {caller's metadata}}``.
    Values JSON cannot hold are tagged: non-finite floats as
    ``{"__float__": "inf"}`` (by the container), dicts with non-string keys
    (``class_weight``) as ``{"__dict__": [[key, value], ...]}``, tuples as
    ``{"__tuple__": [...]}``, histories as ``{"__history__": ...}``.
``arrays/<name>.npy``
    One ``.npy`` member per array attribute (``coef_``, ``intercept_``,
    ``classes_``, ``n_iter_``, ``feature_names_in_``, ...). Only numeric, bool
    and fixed-width unicode dtypes are written. An object array (string
    classes and feature names; classes of Python bools or ints) is stored as
    the ``<U``, bool or int64 array of its elements and listed under
    ``object_string_arrays`` (named for its first use), so it is restored as an
    object array (:func:`storable_objects`). A datetime64 or timedelta64
    array (classes) is stored as its int64 view, its dtype (with unit and byte
    order) under ``datetime_arrays``, and restored to that dtype.

``training`` (version 2, only when ``partial_fit`` ran since the last ``fit``)
    What ``partial_fit`` continues from (:class:`TrainingState`):
    ``{"layout": [n_features, n_outputs, fit_intercept], "weight_seen": ...,
    "tasks": [{"arrays": {name: member}, "state": {...}}, ...]}``, one task per
    trainer, each with its float64 arrays (parameters, optimiser moments) in
    ``arrays/training_<task>_<name>.npy`` members and its scalars as a
    checkpoint holds them (seed, RNG state, epoch, step, optimiser), its
    history being the model's ``history_``.

``format_version`` is the oldest version that reads the file: 2 when it uses
``datetime_arrays`` (a version-1 reader would restore int64 classes) or holds
``training`` (one would refuse its arrays as unknown attributes), else 1.

Only the attributes the estimator declares are written (its
``FITTED_ATTRIBUTES``), and a file holding any other attribute is refused.
Reading trusts nothing in the file (see :func:`gpulogreg._files.read`); on top
of that, before any array data is read, the arrays' declared shapes must be
the ones the fitted scalars imply (``coef_`` has ``n_features_in_`` columns
and one row per class, or one for two classes; ``intercept_`` one entry per
row of ``coef_``; ``feature_names_in_`` one per feature; each training array
one entry per parameter of the layout, which must be ``coef_``'s), so a file
makes the loader allocate only what its metadata allows. Any failure raises
:class:`ModelFormatError` saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

import numpy as np

from gpulogreg import _files
from gpulogreg._errors import InputValueError
from gpulogreg._layout import ParamLayout
from gpulogreg._typing import History, MinibatchHistory
from gpulogreg._version import __version__
from gpulogreg.checkpoint import CheckpointState

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelContents",
    "ModelFormatError",
    "TrainingState",
    "fitted_attributes",
    "read_model_file",
    "storable_objects",
    "write_model_file",
]

#: Value of the ``format`` field: tells our files from other archives.
FORMAT = "gpulogreg-model"
#: The newest format version this library reads. A file is labelled with the
#: oldest version that reads it: 1 unless it holds what version 2 added
#: (datetime64 and timedelta64 arrays), so a model that needs nothing new stays
#: readable by the gpulogreg versions that read only version 1.
FORMAT_VERSION = 2
#: Parameters that only steer training (predictions never depend on them): one
#: that JSON cannot hold (a ``numpy.random.Generator``, a progress callback) is
#: stored as None and listed under ``params_not_saved``.
_TRAINING_ONLY_PARAMETERS = ("random_state", "callback")
#: Private attributes that files written before the declared list hold (the
#: whole ``vars(model)`` was saved) and that no loaded model needs: skipped.
_RETIRED_ATTRIBUTES = frozenset({"_n_model_classes"})


class ModelFormatError(InputValueError):
    """The file is not a gpulogreg model this version can load (the message says why)."""


# --------------------------------------------------------------------------- JSON encoding
def _encode(value: Any, where: str) -> Any:
    """Plain-JSON form of a parameter or fitted scalar; raises TypeError for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value  # non-finite floats are tagged by the container
    if isinstance(value, History):
        cls = type(value)
        return {
            "__history__": {k: _encode(v, where) for k, v in value.as_dict().items()},
            "__class__": f"{cls.__module__}:{cls.__qualname__}",
        }
    if isinstance(value, (list, tuple)):
        items = [_encode(v, where) for v in value]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, where) for k, v in value.items()}
        return {"__dict__": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    raise TypeError(f"{where}: cannot store a {type(value).__name__} without pickle")


#: History fields under their names in older model files -> their names now
#: (``grad_max_norm`` held the optimality, which is not a gradient norm with L1).
_OLD_HISTORY_KEYS = {"grad_max_norm": "optimality"}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tuple__"}:
        return tuple(_decode(v) for v in value["__tuple__"])
    if set(value) == {"__dict__"}:
        return {_hashable(_decode(k)): _decode(v) for k, v in value["__dict__"]}
    if set(value) == {"__history__", "__class__"}:
        history = _history_class(value["__class__"])()
        fields = {f.name for f in dataclasses.fields(history) if not f.name.startswith("_")}
        for key, series in value["__history__"].items():
            key = _OLD_HISTORY_KEYS.get(key, key)
            if key not in fields or not isinstance(getattr(history, key), list):
                raise ModelFormatError(f"unknown history field {key!r} in the metadata")
            getattr(history, key).extend(float(v) for v in _decode(series))
        return history
    if any(k.startswith("__") for k in value):
        raise ModelFormatError(f"unexpected object in the metadata: keys {sorted(value)}")
    return {k: _decode(v) for k, v in value.items()}


#: The history classes a model file may name (``module:qualname``), including
#: where they lived in older versions; nothing is imported by name from a file.
_HISTORY_CLASSES: dict[str, type[History]] = {
    "gpulogreg._typing:History": History,
    "gpulogreg._typing:MinibatchHistory": MinibatchHistory,
    "gpulogreg.solvers.minibatch:MinibatchHistory": MinibatchHistory,
}


def _history_class(name: Any) -> type[History]:
    """The History (sub)class named ``module:qualname`` (one of :data:`_HISTORY_CLASSES`)."""
    cls = _HISTORY_CLASSES.get(str(name))
    if cls is None:
        raise ModelFormatError(f"history class {name!r} is not one of gpulogreg's")
    return cls


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise ModelFormatError("a dict key in the metadata is a list")
    return key


# --------------------------------------------------------------------------- arrays
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: The element types an object array may hold to be stored, each with the dtype
#: it is stored as; it is restored with ``astype(object)`` (Python str, bool, int).
_OBJECT_ELEMENTS: tuple[tuple[Callable[[Any], bool], type[np.generic]], ...] = (
    (lambda v: isinstance(v, str), np.str_),
    (lambda v: isinstance(v, (bool, np.bool_)), np.bool_),
    (_is_int, np.int64),
)


def storable_objects(values: np.ndarray) -> np.ndarray | None:
    """The typed array an object array is stored as, or None when no file can hold it exactly.

    Its elements must all be strings, all bools or all integers (within int64),
    and survive the round trip unchanged (a string with a trailing NUL does not);
    they come back as Python ``str``, ``bool`` or ``int``. The data layer refuses
    labels that are not storable (:func:`gpulogreg.data.validation.encode_labels`):
    a fit that cannot be saved would be a trap.
    """
    flat = values.ravel().tolist()
    for accepts, dtype in _OBJECT_ELEMENTS:
        if all(accepts(v) for v in flat):
            try:
                typed = np.asarray(flat, dtype=dtype).reshape(values.shape)
            except OverflowError:  # an int beyond int64
                return None
            return typed if typed.astype(object).ravel().tolist() == flat else None
    return None


#: Dtype kinds stored as their int64 view (the dtype, with its unit, in the metadata).
_DATETIME_KINDS = "Mm"


def _storable_array(name: str, value: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The array to write and how it is restored: None (as written), "object" or a dtype.

    Numbers, bools and unicode strings are written as they are; object arrays
    as :func:`storable_objects` says; datetime64 and timedelta64 arrays as their
    int64 view, restored to the exact dtype (unit and byte order).
    """
    if value.dtype.kind in "biufcU":
        return value, None
    if value.dtype.kind in _DATETIME_KINDS:
        native = value.astype(value.dtype.newbyteorder("="))
        return native.view(np.int64), value.dtype.str
    if value.dtype.kind == "O":
        typed = storable_objects(value)
        if typed is not None:
            return typed, "object"
        kinds = sorted({type(v).__name__ for v in value.ravel().tolist()})
        raise TypeError(
            f"{name}: an object array of {', '.join(kinds)} cannot be stored without pickle "
            "(use numbers, bools, strings or datetime64)"
        )
    raise TypeError(f"{name}: dtype {value.dtype} cannot be stored without pickle")


def _datetime_dtype(spec: Any, name: str, path: str) -> np.dtype[Any]:
    """The datetime64 or timedelta64 dtype the metadata names for array ``name``."""
    try:
        dtype = np.dtype(spec) if isinstance(spec, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in _DATETIME_KINDS:
        raise ModelFormatError(f"{path}: {name} is stored as dtype {spec!r}, not a datetime")
    return dtype


def _restored(
    name: str,
    value: np.ndarray,
    object_arrays: Collection[str],
    datetimes: Mapping[str, Any],
    path: str,
) -> np.ndarray:
    """An array as the model held it (see :func:`_storable_array`)."""
    if name in object_arrays:
        return value.astype(object)
    if name not in datetimes:
        return value
    dtype = _datetime_dtype(datetimes[name], name, path)
    if value.dtype.kind != "i" or value.dtype.itemsize != 8:
        raise ModelFormatError(f"{path}: {name} is a datetime stored as {value.dtype}, not int64")
    return value.astype(np.int64).view(dtype.newbyteorder("=")).astype(dtype)


# --------------------------------------------------------------------------- training state
@dataclasses.dataclass(frozen=True)
class TrainingState:
    """What ``partial_fit`` continues from, as a model file keeps it: host arrays and JSON.

    Attributes
    ----------
    layout : ParamLayout
        The parameter layout of every task.
    weight_seen : float
        Total sample weight of the chunks trained on so far (scales the penalty).
    tasks : tuple of CheckpointState
        Per task (one, or one per class for one-vs-rest), the trainer's state as
        a checkpoint holds it: float64 arrays of shape ``(layout.n_params,)``
        (parameters, optimiser moments) and JSON scalars (seed, RNG state,
        epoch and step counters, optimiser), without its history, which is the
        model's ``history_``.
    """

    layout: ParamLayout
    weight_seen: float
    tasks: tuple[CheckpointState, ...]


#: Prefix of the members that hold the training state's arrays (never an attribute name).
_TRAINING_PREFIX = "training_"


def _training_meta(training: TrainingState, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The metadata of ``training``; its arrays are added to ``arrays``."""
    tasks = []
    for k, task in enumerate(training.tasks):
        members = {}
        for name, value in task.arrays.items():
            members[name] = f"{_TRAINING_PREFIX}{k}_{name}"
            arrays[members[name]] = np.asarray(value, dtype=np.float64)
        tasks.append({"arrays": members, "state": dict(task.meta)})
    layout = training.layout
    return {
        "layout": [layout.n_features, layout.n_outputs, layout.fit_intercept],
        "weight_seen": float(training.weight_seen),
        "tasks": tasks,
    }


def _training_members(meta: Mapping[str, Any], path: str) -> set[str]:
    """The array members of the training state (none without one), once its form is checked."""
    training = meta.get("training")
    if training is None:
        return set()
    if not (isinstance(training, dict) and set(training) == {"layout", "weight_seen", "tasks"}):
        raise ModelFormatError(f"{path}: metadata field 'training' is malformed")
    tasks = training["tasks"]
    if not (isinstance(tasks, list) and tasks):
        raise ModelFormatError(f"{path}: the training state lists no task")
    members: set[str] = set()
    for task in tasks:
        if not (isinstance(task, dict) and set(task) == {"arrays", "state"}):
            raise ModelFormatError(f"{path}: a task of the training state is malformed")
        if not (isinstance(task["arrays"], dict) and isinstance(task["state"], dict)):
            raise ModelFormatError(f"{path}: a task of the training state is malformed")
        for member in task["arrays"].values():
            if not (isinstance(member, str) and member.startswith(_TRAINING_PREFIX)):
                raise ModelFormatError(f"{path}: bad training array {member!r}")
            if member in members:
                raise ModelFormatError(f"{path}: training array {member!r} is listed twice")
            members.add(member)
    return members


def _training_layout(meta: Mapping[str, Any], path: str) -> ParamLayout:
    """The layout a (checked) training state names."""
    layout = meta["training"]["layout"]
    ints = isinstance(layout, list) and len(layout) == 3 and all(_is_int(v) for v in layout[:2])
    if not (ints and layout[0] >= 1 and layout[1] >= 1 and isinstance(layout[2], bool)):
        raise ModelFormatError(f"{path}: the training state's layout {layout!r} is malformed")
    weight = meta["training"]["weight_seen"]
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0):
        raise ModelFormatError(f"{path}: the training state's weight_seen is malformed")
    return ParamLayout(*layout)


def _check_training(
    meta: Mapping[str, Any], headers: Mapping[str, _files.ArrayHeader], path: str
) -> None:
    """The training state's arrays are float64 vectors of its layout, which is coef_'s."""
    members = _training_members(meta, path)
    if not members:
        return
    layout = _training_layout(meta, path)
    coef = headers.get("coef_")
    n_tasks = len(meta["training"]["tasks"])
    if coef is None or coef.shape != (n_tasks * layout.n_outputs, layout.n_features):
        raise ModelFormatError(f"{path}: the training state does not match coef_")
    for member in members:
        header = headers.get(member)
        if header is None or header.dtype != np.float64 or header.shape != (layout.n_params,):
            raise ModelFormatError(
                f"{path}: training array {member!r} is missing or not {layout.n_params} float64"
            )


def _training_state(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], path: str
) -> TrainingState | None:
    """The training state of a (checked) file, or None when it holds none."""
    if meta.get("training") is None:
        return None
    tasks = tuple(
        CheckpointState(
            arrays={name: arrays[member] for name, member in task["arrays"].items()},
            meta=task["state"],
        )
        for task in meta["training"]["tasks"]
    )
    return TrainingState(
        _training_layout(meta, path), float(meta["training"]["weight_seen"]), tasks
    )


# --------------------------------------------------------------------------- write
def fitted_attributes(model: Any, names: Collection[str]) -> dict[str, Any]:
    """The attributes among ``names`` that ``model`` has (the ones a model file stores).

    Raises
    ------
    TypeError
        ``model`` has a public fitted attribute (``name_``) outside ``names``: a
        file would silently lose it, so it is refused instead.
    """
    undeclared = sorted(
        key
        for key in vars(model)
        if key.endswith("_") and not key.startswith("_") and key not in names
    )
    if undeclared:
        raise TypeError(
            f"attribute {undeclared[0]}: not one of {type(model).__name__}.FITTED_ATTRIBUTES, "
            "so it cannot be saved"
        )
    return {key: getattr(model, key) for key in names if hasattr(model, key)}


def write_model_file(
    path: str | os.PathLike[str],
    *,
    estimator: str,
    params: Mapping[str, Any],
    attributes: Mapping[str, Any],
    training: TrainingState | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a fitted model to exactly ``path`` (atomically), without pickle.

    Parameters
    ----------
    path : path
        Written as given (no extension is added); replaced atomically.
    estimator : str
        Class name of the estimator (``"LogisticRegression"``).
    params : mapping
        Its constructor parameters (``get_params(deep=False)``).
    attributes : mapping
        Its fitted attributes: arrays, JSON-able scalars and containers, histories.
    training : TrainingState, optional
        What ``partial_fit`` continues from, when it has run since the last ``fit``.
    metadata : mapping, optional
        Extra JSON-serialisable information (e.g. the CLI's column names),
        returned by the loader under ``"extra"``.

    Raises
    ------
    TypeError
        A parameter or attribute that cannot be stored without pickle
        (nothing is written then).
    """
    enc_params = {}
    skipped = []
    for key, value in params.items():
        try:
            enc_params[key] = _encode(value, f"parameter {key}")
        except TypeError:
            if key not in _TRAINING_ONLY_PARAMETERS:
                raise
            enc_params[key] = None
            skipped.append(key)
    arrays: dict[str, np.ndarray] = {}
    object_arrays: list[str] = []
    datetime_arrays: dict[str, str] = {}
    state: dict[str, Any] = {}
    for key, value in attributes.items():
        if isinstance(value, np.ndarray):
            arrays[key], restore = _storable_array(key, value)
            if restore == "object":
                object_arrays.append(key)
            elif restore is not None:
                datetime_arrays[key] = restore
        else:
            state[key] = _encode(value, f"attribute {key}")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if datetime_arrays or training else 1,
        "library_version": __version__,
        "estimator": estimator,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "numpy_version": np.__version__,
        "params": enc_params,
        "params_not_saved": skipped,
        "state": state,
        "object_string_arrays": object_arrays,
        "datetime_arrays": datetime_arrays,
        "extra": _encode(dict(metadata or {}), "metadata"),
    }
    if training is not None:
        meta["training"] = _training_meta(training, arrays)
    _files.write(path, meta, arrays)


# --------------------------------------------------------------------------- read
class ModelContents(NamedTuple):
    """What a model file holds, decoded (:func:`read_model_file`).

    Attributes
    ----------
    meta : dict
        The whole metadata (``meta["extra"]``: the caller's, ``meta["estimator"]``:
        the class name).
    params : dict
        Constructor parameters, decoded (not yet checked against the estimator).
    attributes : dict
        Fitted attributes, decoded: arrays and scalars.
    training : TrainingState or None
        What ``partial_fit`` continues from, when the file holds it.
    """

    meta: dict[str, Any]
    params: dict[str, Any]
    attributes: dict[str, Any]
    training: TrainingState | None


def read_model_file(
    path: str | os.PathLike[str], *, attribute_names: Collection[str]
) -> ModelContents:
    """Read a model file, refusing any attribute outside ``attribute_names``.

    Parameters
    ----------
    path : path
    attribute_names : collection of str
        The estimator's declared fitted attributes.

    Raises
    ------
    FileNotFoundError
    ModelFormatError
        Not a gpulogreg model, corrupt, written by a newer format version, an
        attribute that is not declared, shapes the metadata does not allow, or
        pickled objects (refused unread).
    """
    path = os.fspath(path)
    try:
        meta, arrays = _files.read(path, check=lambda m, h: _check_layout(m, h, path))
    except _files.ForeignFileError as exc:
        raise ModelFormatError(f"{path} is not a gpulogreg model file ({exc.reason})") from None
    except _files.ContainerError as exc:
        raise ModelFormatError(str(exc)) from None
    object_arrays = meta.get("object_string_arrays", [])
    if not (isinstance(object_arrays, list) and all(isinstance(k, str) for k in object_arrays)):
        raise ModelFormatError(f"{path}: metadata field 'object_string_arrays' is malformed")
    datetimes = meta.get("datetime_arrays", {})
    if not isinstance(datetimes, dict):
        raise ModelFormatError(f"{path}: metadata field 'datetime_arrays' is malformed")
    training_members = _training_members(meta, path)
    try:
        params = {key: _decode(value) for key, value in meta["params"].items()}
        attributes: dict[str, Any] = {}
        stored = [(k, v) for k, v in arrays.items() if k not in training_members]
        for key, value in [*meta["state"].items(), *stored]:
            if key in _RETIRED_ATTRIBUTES:
                continue
            if key not in attribute_names or key in attributes:
                raise ModelFormatError(f"{path}: bad attribute name {key!r} in the model file")
            if isinstance(value, np.ndarray):
                attributes[key] = _restored(key, value, object_arrays, datetimes, path)
            else:
                attributes[key] = _decode(value)
    except ModelFormatError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a tagged value of the wrong shape
        raise ModelFormatError(f"{path}: malformed metadata ({exc})") from None
    return ModelContents(meta, params, attributes, _training_state(meta, arrays, path))


def _check_layout(meta: dict[str, Any], headers: dict[str, _files.ArrayHeader], path: str) -> None:
    """The metadata names this format, and the arrays have the shapes it allows (unread yet)."""
    if meta.get("format") != FORMAT:
        raise ModelFormatError(f"{path} is not a gpulogreg model file (format field missing)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{path}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} uses model format version {version}, written by gpulogreg "
            f"{meta.get('library_version', '?')}; this gpulogreg ({__version__}) reads up to "
            f"version {FORMAT_VERSION}: upgrade gpulogreg"
        )
    if version < 1:
        raise ModelFormatError(f"{path}: unknown model format version {version}")
    for key in ("params", "state"):
        if not isinstance(meta.get(key), dict):
            raise ModelFormatError(f"{path}: metadata field {key!r} is missing or malformed")
    n_features = meta["state"].get("n_features_in_")
    if n_features is not None and (not isinstance(n_features, int) or isinstance(n_features, bool)):
        raise ModelFormatError(f"{path}: n_features_in_ is not an integer")
    _check_training(meta, headers, path)
    shapes = {name: header.shape for name, header in headers.items()}
    coef = shapes.get("coef_")
    if coef is not None and (len(coef) != 2 or (n_features is not None and coef[1] != n_features)):
        raise ModelFormatError(f"{path}: coef_ shape {coef} and n_features_in_ disagree")
    names = shapes.get("feature_names_in_")
    if names is not None and n_features is not None and names != (n_features,):
        raise ModelFormatError(f"{path}: feature_names_in_ does not match n_features_in_")
    if coef is None:
        return
    intercept = shapes.get("intercept_")
    if intercept is not None and intercept != (coef[0],):
        raise ModelFormatError(f"{path}: intercept_ shape {intercept} does not match coef_")
    classes = shapes.get("classes_")
    if classes is not None:
        if len(classes) != 1 or classes[0] < 2:
            raise ModelFormatError(f"{path}: classes_ must list at least two classes")
        if not (coef[0] == classes[0] or (coef[0] == 1 and classes[0] == 2)):
            raise ModelFormatError(
                f"{path}: coef_ has {coef[0]} rows for {classes[0]} classes (corrupt file)"
            )
