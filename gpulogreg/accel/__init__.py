"""scikit-learn code on gpulogreg, unchanged: ``patch_sklearn()`` and ``python -m gpulogreg.accel``.

After :func:`patch_sklearn`, ``from sklearn.linear_model import
LogisticRegression`` gives :class:`LogisticRegression`: scikit-learn's
estimator (signature, validation, warnings, attributes, predictions) whose
numerical solve runs on gpulogreg (CuPy data on its GPU, Dask arrays on their
cluster), scikit-learn's callbacks included. What gpulogreg does not serve
(the ``liblinear`` solver on NumPy or SciPy data, which scikit-learn bundles)
runs on scikit-learn's own solver, logged on the ``gpulogreg.accel`` logger;
:func:`fit_counts` tells how many fits went each way.
``gpulogreg.patch_sklearn()`` is this module's. ``python -m gpulogreg.accel script.py [args]``
(or ``-m module [args]``) runs a program with the patch in effect.
"""

from __future__ import annotations

from gpulogreg.accel._estimator import (
    SERVED_SOLVERS,
    LogisticRegression,
    fit_counts,
    reset_fit_counts,
)
from gpulogreg.accel._patch import is_patched, patch_sklearn, unpatch_sklearn

__all__ = [
    "SERVED_SOLVERS",
    "LogisticRegression",
    "fit_counts",
    "is_patched",
    "patch_sklearn",
    "reset_fit_counts",
    "unpatch_sklearn",
]
