"""gpulogreg: fast logistic regression for large data on the CPU (Numba) and the GPU (CUDA).

Importing the package has no side effects and stays cheap: it imports neither
CuPy, Numba nor scikit-learn and touches no device. The public names are
loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gpulogreg._version import __version__

if TYPE_CHECKING:
    from gpulogreg._errors import InputError
    from gpulogreg.accel import patch_sklearn as patch_sklearn
    from gpulogreg.accel import unpatch_sklearn as unpatch_sklearn
    from gpulogreg.data.dataset import Dataset
    from gpulogreg.estimator import LogisticRegression
    from gpulogreg.inference import InferenceResult, InferenceWarning
    from gpulogreg.loss import loss_and_gradient
    from gpulogreg.model_selection import LogisticRegressionCV
    from gpulogreg.persistence import load

__all__ = [
    "Dataset",
    "InferenceResult",
    "InferenceWarning",
    "InputError",
    "LogisticRegression",
    "LogisticRegressionCV",
    "__version__",
    "load",
    "loss_and_gradient",
]

#: public name -> module that defines it (``patch_sklearn`` and ``unpatch_sklearn``
#: are left out of ``__all__``: they import scikit-learn, an optional dependency,
#: so ``from gpulogreg import *`` must not reach them)
_LAZY = {
    "Dataset": "gpulogreg.data.dataset",
    "InferenceResult": "gpulogreg.inference",
    "InferenceWarning": "gpulogreg.inference",
    "InputError": "gpulogreg._errors",
    "LogisticRegression": "gpulogreg.estimator",
    "LogisticRegressionCV": "gpulogreg.model_selection",
    "loss_and_gradient": "gpulogreg.loss",
    "load": "gpulogreg.persistence",
    "patch_sklearn": "gpulogreg.accel",
    "unpatch_sklearn": "gpulogreg.accel",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gpulogreg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
