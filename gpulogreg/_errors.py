"""Errors any layer may raise (this module imports nothing).

:class:`InputError` marks an exception as "the input is wrong": data that
validation refuses, a file a reader or the model loader refuses, an invalid
estimator parameter, a bad command-line option. The command line exits with
status 2 for these and 1 for every other exception, so a ``ValueError`` from
inside the library (NumPy's ``LinAlgError`` is one) reads as a failure, not
as the user's mistake. The concrete classes are also ``ValueError`` or
``TypeError``, so code that catches those, and scikit-learn's conventions
(a bad parameter value raises ``ValueError``), keep working.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "InputError",
    "InputTypeError",
    "InputValueError",
    "MissingDependencyError",
]


class MissingDependencyError(ImportError):
    """An optional dependency is needed (the message says which extra installs it)."""


class InputError(Exception):
    """Base of the errors the caller's input causes (command-line exit status 2)."""


class InputValueError(InputError, ValueError):
    """An input has a wrong value: data, parameters, files."""


class InputTypeError(InputError, TypeError):
    """An input has a wrong type (e.g. non-numeric features)."""


class DataError(InputValueError):
    """A data file the readers refuse; the message names the file, column and row (or line).

    Public as :class:`gpulogreg.io.DataError`; defined here so that every
    reader module (:mod:`gpulogreg.io`, :mod:`gpulogreg._svmlight`) raises
    the one class.
    """
