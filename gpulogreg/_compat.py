"""scikit-learn interoperability without depending on scikit-learn.

When scikit-learn is installed the estimator derives from its ``BaseEstimator``
and ``ClassifierMixin`` (so ``clone``, pipelines, tags and
``parametrize_with_checks`` work) and raises its warning and error types, so
existing warning filters and ``except`` clauses keep working. Without it,
small stand-ins with the same behaviour are used. With scikit-learn 1.9 or
later it also takes scikit-learn's callbacks (``set_callbacks``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError

__all__ = [
    "BaseEstimator",
    "CallbackSupportMixin",
    "ClassifierMixin",
    "ConvergenceWarning",
    "DataConversionWarning",
    "NotFittedError",
    "callback_management_context",
]


class _FallbackBaseEstimator:
    """``get_params``/``set_params`` from the ``__init__`` signature (scikit-learn's contract)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind != p.VAR_KEYWORD
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters of this estimator."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> _FallbackBaseEstimator:
        """Set constructor parameters; unknown names raise ValueError."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise InputValueError(f"invalid parameter {name!r}; valid parameters: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class _FallbackClassifierMixin:
    """``score`` as mean accuracy."""

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean (weighted) accuracy of ``predict(X)`` against ``y``."""
        predicted = np.asarray(self.predict(X))  # type: ignore[attr-defined]
        return float(np.average(predicted == np.asarray(y), weights=sample_weight))


class _NoCallbackSupport:
    """Stands in for scikit-learn's ``CallbackSupportMixin`` before 1.9: no ``set_callbacks``."""


@contextmanager
def _no_callback_management(estimator: Any) -> Iterator[None]:
    yield


class _FallbackConvergenceWarning(UserWarning):
    """The solver stopped at ``max_iter`` before meeting ``tol``."""


class _FallbackDataConversionWarning(UserWarning):
    """Input was converted to another shape or type."""


class _FallbackNotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


BaseEstimator: type
ClassifierMixin: type
ConvergenceWarning: type[Warning]
NotFittedError: type[Exception]
DataConversionWarning: type[Warning]
try:
    import sklearn.base
    import sklearn.exceptions
except ImportError:  # scikit-learn is optional
    BaseEstimator = _FallbackBaseEstimator
    ClassifierMixin = _FallbackClassifierMixin
    ConvergenceWarning = _FallbackConvergenceWarning
    NotFittedError = _FallbackNotFittedError
    DataConversionWarning = _FallbackDataConversionWarning
else:
    BaseEstimator = sklearn.base.BaseEstimator
    ClassifierMixin = sklearn.base.ClassifierMixin
    ConvergenceWarning = sklearn.exceptions.ConvergenceWarning
    NotFittedError = sklearn.exceptions.NotFittedError
    DataConversionWarning = sklearn.exceptions.DataConversionWarning

CallbackSupportMixin: type
callback_management_context: Callable[[Any], AbstractContextManager[None]]
try:  # scikit-learn 1.9's callbacks (set_callbacks)
    import sklearn.callback
    import sklearn.callback._callback_support
except ImportError:
    CallbackSupportMixin = _NoCallbackSupport
    callback_management_context = _no_callback_management
else:
    CallbackSupportMixin = sklearn.callback.CallbackSupportMixin
    callback_management_context = sklearn.callback._callback_support.callback_management_context
