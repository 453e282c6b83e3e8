"""Save and load fitted models without pickle.

File format (version 1)
-----------------------
One file, a ZIP archive laid out like NumPy's ``.npz`` (stored, not
compressed), so ``numpy.load(path, allow_pickle=False)`` opens it and any zip
tool lists it:

``metadata.json``
    UTF-8 JSON: ``{"format": "gpulogreg-model", "format_version": 1,
    "library_version": ..., "estimator": "LogisticRegression", "created": ...,
    "params": {constructor parameters}, "state": {fitted scalars},
    "arrays": {attribute name: member name}, "extra": {caller's metadata}}``.
    Values JSON cannot hold are tagged: non-finite floats as
    ``{"__float__": "inf"}``, dicts with non-string keys (``class_weight``) as
    ``{"__dict__": [[key, value], ...]}``, histories as ``{"__history__": ...}``.
``arrays/<name>.npy``
    One ``.npy`` member per array attribute (``coef_``, ``intercept_``,
    ``classes_``, ``n_iter_``, ``feature_names_in_``, ...). Only numeric, bool
    and fixed-width unicode dtypes are written: string classes and feature
    names are stored as ``<U`` arrays (the metadata records when the
    attribute was an object array of strings so it is restored as such).

Loading trusts nothing in the file: it must be a ZIP archive whose members are
exactly ``metadata.json`` and the ``arrays/*.npy`` the metadata lists; the
metadata must name this format and a version this library reads; arrays are
read with ``allow_pickle=False`` (an object array is refused before any byte
of it is unpickled); parameters must be constructor parameters; shapes must
agree. Any failure raises :class:`ModelFormatError` saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import inspect
import json
import math
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpulogreg._typing import History
from gpulogreg._version import __version__
from gpulogreg.io import atomic_write

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFormatError",
    "load",
    "load_with_metadata",
    "save_model",
]

#: Value of the ``format`` field: tells our files from other archives.
FORMAT = "gpulogreg-model"
#: Bumped when a file written now could not be read by an older version.
FORMAT_VERSION = 1
METADATA_MEMBER = "metadata.json"
ARRAY_PREFIX = "arrays/"
#: Largest metadata member read (bytes): a model's metadata is a few kB plus
#: its histories; anything far larger is not one of our files.
MAX_METADATA_BYTES = 64 * 1024 * 1024


class ModelFormatError(ValueError):
    """The file is not a gpulogreg model this version can load (the message says why)."""


# --------------------------------------------------------------------------- JSON encoding
def _encode(value: Any, where: str) -> Any:
    """Plain-JSON form of a parameter or fitted scalar; raises TypeError for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
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
    if set(value) == {"__float__"}:
        text = value["__float__"]
        if text not in ("inf", "-inf", "nan"):
            raise ModelFormatError(f"bad float tag {text!r} in the metadata")
        return float(text)
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


def _history_class(name: Any) -> type[History]:
    """The History (sub)class named ``module:qualname``; only gpulogreg's own are imported."""
    module_name, _, qualname = str(name).partition(":")
    if module_name != "gpulogreg" and not module_name.startswith("gpulogreg."):
        raise ModelFormatError(f"history class {name!r} is not one of gpulogreg's")
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError):
        raise ModelFormatError(f"history class {name!r} is unknown to this gpulogreg") from None
    if not (isinstance(cls, type) and issubclass(cls, History)):
        raise ModelFormatError(f"{name!r} is not a history class")
    return cls


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise ModelFormatError("a dict key in the metadata is a list")
    return key


# --------------------------------------------------------------------------- arrays
def _storable_array(name: str, value: np.ndarray) -> tuple[np.ndarray, bool]:
    """Array to write and whether it was an object array of strings."""
    if value.dtype.kind in "biufcU":
        return value, False
    if value.dtype.kind == "O":
        flat = value.ravel().tolist()
        if all(isinstance(v, str) for v in flat):
            return np.asarray(value, dtype=str), True
        kinds = sorted({type(v).__name__ for v in flat})
        raise TypeError(
            f"{name}: an object array of {', '.join(kinds)} cannot be stored without pickle "
            "(use numbers, bools or strings)"
        )
    raise TypeError(f"{name}: dtype {value.dtype} cannot be stored without pickle")


# --------------------------------------------------------------------------- save
def save_model(
    model: Any, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
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
        A parameter or attribute that cannot be stored without pickle.
    """
    params = model.get_params(deep=False)
    enc_params = {}
    skipped = []
    for key, value in params.items():
        try:
            enc_params[key] = _encode(value, f"parameter {key}")
        except TypeError:
            if key != "random_state":
                raise
            # A Generator seeds training only; predictions do not depend on it.
            enc_params[key] = None
            skipped.append(key)
    arrays: dict[str, np.ndarray] = {}
    object_strings: list[str] = []
    state: dict[str, Any] = {}
    for key, value in vars(model).items():
        if key in params:
            continue
        if isinstance(value, np.ndarray):
            arr, was_object = _storable_array(key, value)
            arrays[key] = arr
            if was_object:
                object_strings.append(key)
        else:
            state[key] = _encode(value, f"attribute {key}")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "estimator": type(model).__name__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "numpy_version": np.__version__,
        "params": enc_params,
        "params_not_saved": skipped,
        "state": state,
        "arrays": {key: f"{ARRAY_PREFIX}{key}.npy" for key in arrays},
        "object_string_arrays": object_strings,
        "extra": _encode(dict(metadata or {}), "metadata"),
    }
    text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False)
    with atomic_write(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(METADATA_MEMBER, text.encode("utf-8"))
        for key, arr in arrays.items():
            with zf.open(f"{ARRAY_PREFIX}{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)


# --------------------------------------------------------------------------- load
def load(path: str | os.PathLike[str]) -> Any:
    """Load a model written by :meth:`LogisticRegression.save`.

    Raises
    ------
    FileNotFoundError
    ModelFormatError
        Not a gpulogreg model, corrupt, written by a newer format version, or
        holding pickled objects (refused unread).
    """
    return load_with_metadata(path)[0]


def load_with_metadata(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Load a model and return it with its metadata (``metadata["extra"]``: the caller's)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path}")
    if os.path.isdir(path):
        raise ModelFormatError(f"{path} is a directory, not a model file")
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(f"{path} is not a gpulogreg model file (not a zip/npz archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = _read_metadata(zf, path)
            arrays = _read_arrays(zf, meta, path)
    except ModelFormatError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path} is corrupt: {exc}") from None
    model = _build_model(meta, arrays, path)
    return model, meta


def _read_metadata(zf: zipfile.ZipFile, path: str) -> dict[str, Any]:
    names = zf.namelist()
    if METADATA_MEMBER not in names:
        raise ModelFormatError(
            f"{path} is not a gpulogreg model file (no {METADATA_MEMBER}; members: "
            f"{', '.join(names[:5]) or 'none'})"
        )
    info = zf.getinfo(METADATA_MEMBER)
    if info.file_size > MAX_METADATA_BYTES:
        raise ModelFormatError(f"{path}: {METADATA_MEMBER} is implausibly large")
    try:
        meta = json.loads(zf.read(METADATA_MEMBER).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: {METADATA_MEMBER} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
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
    if meta.get("estimator") != "LogisticRegression":
        raise ModelFormatError(f"{path}: unknown estimator {meta.get('estimator')!r}")
    for key in ("params", "state", "arrays"):
        if not isinstance(meta.get(key), dict):
            raise ModelFormatError(f"{path}: metadata field {key!r} is missing or malformed")
    expected = {METADATA_MEMBER, *meta["arrays"].values()}
    unexpected = sorted(set(names) - expected)
    if unexpected:
        raise ModelFormatError(
            f"{path}: unexpected member {unexpected[0]!r}; refusing a file that is not ours"
        )
    return meta


def _read_arrays(zf: zipfile.ZipFile, meta: dict[str, Any], path: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    object_strings = set(meta.get("object_string_arrays", []))
    for key, member in meta["arrays"].items():
        if not isinstance(member, str) or member != f"{ARRAY_PREFIX}{key}.npy":
            raise ModelFormatError(f"{path}: bad array entry {key!r}")
        try:
            with zf.open(member) as fp:
                major, _ = np.lib.format.read_magic(fp)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                _, _, dtype = read_header(fp)
                if dtype.hasobject:
                    raise ModelFormatError(
                        f"{path}: array {key!r} holds Python objects (pickle); refused unread"
                    )
            with zf.open(member) as fp:
                arr = np.lib.format.read_array(fp, allow_pickle=False)
        except ModelFormatError:
            raise
        except KeyError:
            raise ModelFormatError(f"{path}: array member {member!r} is missing") from None
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise ModelFormatError(
                    f"{path}: array {key!r} holds Python objects (pickle); refused unread"
                ) from None
            raise ModelFormatError(f"{path}: array {key!r} is corrupt ({exc})") from None
        if arr.dtype.kind not in "biufcU":
            raise ModelFormatError(f"{path}: array {key!r} has unsupported dtype {arr.dtype}")
        if key in object_strings:
            arr = arr.astype(object)
        arrays[key] = arr
    return arrays


def _build_model(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: str) -> Any:
    from gpulogreg.estimator import LogisticRegression

    valid = set(inspect.signature(LogisticRegression.__init__).parameters) - {"self"}
    params = {k: _decode(v) for k, v in meta["params"].items()}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ModelFormatError(
            f"{path}: parameter {unknown[0]!r} is unknown to this gpulogreg ({__version__}); "
            f"the file was written by gpulogreg {meta.get('library_version', '?')}"
        )
    model = LogisticRegression(**params)
    for key, value in meta["state"].items():
        _check_attribute_name(key, valid, path)
        setattr(model, key, _decode(value))
    for key, arr in arrays.items():
        _check_attribute_name(key, valid, path)
        setattr(model, key, arr)
    _check_consistent(model, path)
    return model


def _check_attribute_name(key: Any, params: set[str], path: str) -> None:
    """A fitted attribute (``coef_``, ``_private``): never a parameter, a method or a dunder."""
    from gpulogreg.estimator import LogisticRegression

    if (
        not isinstance(key, str)
        or not key.isidentifier()
        or key in params
        or key.startswith("__")
        or hasattr(LogisticRegression, key)
        or not (key.endswith("_") or key.startswith("_"))
    ):
        raise ModelFormatError(f"{path}: bad attribute name {key!r} in the model file")


def _check_consistent(model: Any, path: str) -> None:
    """The fitted attributes prediction needs are present and agree in shape."""
    for name in ("coef_", "intercept_", "classes_", "n_features_in_"):
        if not hasattr(model, name):
            raise ModelFormatError(f"{path}: the model has no {name} (not a fitted model)")
    coef, intercept, classes = model.coef_, model.intercept_, model.classes_
    n_features = model.n_features_in_
    if not isinstance(n_features, int) or coef.ndim != 2 or coef.shape[1] != n_features:
        raise ModelFormatError(f"{path}: coef_ shape {coef.shape} and n_features_in_ disagree")
    if coef.dtype.kind != "f" or intercept.dtype.kind != "f":
        raise ModelFormatError(f"{path}: coef_ and intercept_ must be float arrays")
    if intercept.shape != (coef.shape[0],):
        raise ModelFormatError(f"{path}: intercept_ shape {intercept.shape} does not match coef_")
    if classes.ndim != 1 or len(classes) < 2:
        raise ModelFormatError(f"{path}: classes_ must list at least two classes")
    n_out = coef.shape[0]
    if not (n_out == len(classes) or (n_out == 1 and len(classes) == 2)):
        raise ModelFormatError(
            f"{path}: coef_ has {n_out} rows for {len(classes)} classes (corrupt file)"
        )
    names = getattr(model, "feature_names_in_", None)
    if names is not None and names.shape != (n_features,):
        raise ModelFormatError(f"{path}: feature_names_in_ does not match n_features_in_")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ModelFormatError(f"{path}: coef_ or intercept_ holds NaN or infinity")
