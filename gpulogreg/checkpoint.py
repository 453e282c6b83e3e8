"""Checkpoints of long mini-batch fits: saved without pickle, written atomically.

A checkpoint is one ``.npz`` file (read back with ``allow_pickle=False``)
holding the float64 state arrays (parameters, optimiser moments, best
parameters) and one JSON document, stored as a uint8 array named
``__metadata__``, with everything else: format name and version, library
version, the fingerprint of the problem and the hyper-parameters that shape
the trajectory, the epoch, the step counter, the RNG state, the
early-stopping state and the history so far.

Files are written to a temporary file in the destination directory, fsynced
and renamed over the destination (:func:`gpulogreg.io.atomic_write`): a job
killed while saving leaves the previous checkpoint intact.

Resuming: a fit given the same ``checkpoint_path`` loads the file, checks that
it was written for the same problem (shape, classes, hyper-parameters) and
continues after the saved epoch. Everything that determines the rest of the
trajectory is in the file, so the resumed run ends exactly where an
uninterrupted run with the same seed ends.
"""

from __future__ import annotations

import io as _io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "CheckpointState", "load_checkpoint", "save_checkpoint"]

FORMAT = "gpulogreg-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "__metadata__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (corrupt, foreign, or for another problem)."""


@dataclass
class CheckpointState:
    """Everything a mini-batch fit needs to continue.

    Attributes
    ----------
    arrays : dict of str -> ndarray
        Parameters and optimiser state (float64, host).
    meta : dict
        JSON-serialisable scalars, lists and dicts (epoch, step, RNG state,
        early-stopping counters, history, fingerprint).
    """

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: Any, state: CheckpointState) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    from gpulogreg import __version__
    from gpulogreg.io import atomic_write

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__}
    meta.update(state.meta)
    text = json.dumps(meta, allow_nan=True, sort_keys=True)
    arrays = {}
    for name, arr in state.arrays.items():
        if name == _META_KEY:
            raise ValueError(f"array name {name!r} is reserved")
        a = np.asarray(arr)
        if a.dtype.hasobject:
            raise TypeError(f"checkpoint array {name!r} has dtype object")
        arrays[name] = a
    arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    buffer = _io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def load_checkpoint(path: Any) -> CheckpointState:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Not a readable ``.npz``, an array that needs pickle, no or foreign
        metadata, or a newer format version.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise CheckpointError(f"{path} is not a checkpoint (.npz) file")
            arrays = {name: np.array(npz[name]) for name in npz.files}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from None
    raw = arrays.pop(_META_KEY, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path} is not a gpulogreg checkpoint (no metadata)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gpulogreg checkpoint")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer gpulogreg (checkpoint format "
            f"{meta.get('format_version')}, this one reads {FORMAT_VERSION})"
        )
    return CheckpointState(arrays=arrays, meta=meta)
