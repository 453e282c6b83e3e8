"""Checkpoints of long mini-batch fits: saved without pickle, written atomically.

A checkpoint is the package's no-pickle container (:mod:`gpulogreg._files`:
a ZIP archive of ``metadata.json`` and ``arrays/<name>.npy``, read back
trusting nothing) holding the float64 state arrays (parameters, optimiser
moments, best parameters) and, in the metadata, everything else: format name
and version, library version, the fingerprint of the problem and the
hyper-parameters that shape the trajectory, the epoch, the step counter, the
RNG state, the early-stopping state and the history so far.

Files are written to a temporary file in the destination directory, fsynced
and renamed over the destination (:func:`gpulogreg._files.atomic_write`): a
job killed while saving leaves the previous checkpoint intact.

Resuming: a fit given the same ``checkpoint_path`` loads the file, checks that
it was written for the same problem (shape, classes, hyper-parameters) and
continues after the saved epoch. Everything that determines the rest of the
trajectory is in the file, so the resumed run ends exactly where an
uninterrupted run with the same seed ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpulogreg import _files
from gpulogreg._errors import InputValueError
from gpulogreg._version import __version__

__all__ = ["CheckpointError", "CheckpointState", "load_checkpoint", "save_checkpoint"]

#: Value of the ``format`` field: tells our checkpoints from other files.
FORMAT = "gpulogreg-checkpoint"
#: Bumped when a checkpoint written now could not be read by an older version
#: (2: the shared container; version 1 was an ``.npz`` with a ``__metadata__`` array).
FORMAT_VERSION = 2
#: The member that marks a version-1 checkpoint (its JSON as a uint8 array).
_V1_METADATA_MEMBER = "__metadata__.npy"


class CheckpointError(InputValueError):
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
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    Raises
    ------
    TypeError
        An array that needs pickle (dtype object) or metadata JSON cannot hold.
    """
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__}
    meta.update(state.meta)
    _files.write(path, meta, state.arrays)


def load_checkpoint(path: Any) -> CheckpointState:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Not a readable checkpoint, an array that needs pickle, no or foreign
        metadata, or a format version other than this one's (an older
        gpulogreg's checkpoint cannot be resumed: delete it).
    """
    path = os.fspath(path)
    try:
        meta, arrays = _files.read(path)
    except _files.ForeignFileError as exc:
        if exc.members is None:
            raise CheckpointError(f"{path} is not a readable checkpoint ({exc.reason})") from None
        if _V1_METADATA_MEMBER in exc.members:
            raise CheckpointError(_older(path, 1)) from None
        raise CheckpointError(f"{path} is not a gpulogreg checkpoint ({exc.reason})") from None
    except (_files.ContainerError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gpulogreg checkpoint (format field missing)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: checkpoint format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer gpulogreg (checkpoint format "
            f"{version}, this one reads {FORMAT_VERSION})"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(_older(path, version))
    return CheckpointState(arrays=arrays, meta=meta)


def _older(path: str, version: int) -> str:
    return (
        f"{path} was written by an older gpulogreg (checkpoint format {version}; this one "
        f"reads {FORMAT_VERSION}) and cannot be resumed: delete it, or use another "
        "checkpoint_path"
    )
