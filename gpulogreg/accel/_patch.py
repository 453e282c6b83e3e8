"""``patch_sklearn()`` and ``unpatch_sklearn()``: the drop-in in place of scikit-learn's class."""

from __future__ import annotations

import threading
from typing import Any

import sklearn.linear_model

from gpulogreg.accel._estimator import LogisticRegression, install_router

__all__ = ["is_patched", "patch_sklearn", "unpatch_sklearn"]

_lock = threading.Lock()
_original: dict[str, Any] = {}


def patch_sklearn() -> None:
    """Make ``sklearn.linear_model.LogisticRegression`` gpulogreg's drop-in.

    Code that imports the class after this call (``from sklearn.linear_model
    import LogisticRegression``) gets :class:`gpulogreg.accel.LogisticRegression`:
    scikit-learn's estimator whose solves run on gpulogreg. Names bound
    before the call, and objects made from them, keep scikit-learn's class
    and solver. Idempotent.

    Raises
    ------
    RuntimeError
        When the installed scikit-learn is not one the drop-in supports
        (see :func:`gpulogreg.accel._estimator.install_router`).
    """
    with _lock:
        if _original:
            return
        install_router()
        _original["class"] = sklearn.linear_model.LogisticRegression
        sklearn.linear_model.LogisticRegression = LogisticRegression


def unpatch_sklearn() -> None:
    """Put scikit-learn's own class back (a no-op when not patched)."""
    with _lock:
        if _original:
            sklearn.linear_model.LogisticRegression = _original.pop("class")


def is_patched() -> bool:
    """Whether :func:`patch_sklearn` is in effect."""
    return bool(_original)
