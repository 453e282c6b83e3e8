"""JSON lines for machines: plain JSON values and the progress log of ``--log-json``.

A :class:`JsonLinesLog` is written as things happen, one JSON object per line,
each line flushed when it is written, so that a job scheduler (or ``tail -f``)
sees a fit's progress while it runs. It is therefore not written atomically:
a fit that fails leaves its log, ended by a record that says why.

The records of a fit, each with an ``"event"``:

``start``
    ``version`` (gpulogreg's), ``time`` (ISO 8601, UTC) and what the command
    knows before the fit: ``command``, ``data``, ``rows``, ``features``,
    ``solver``, ``parameters``.
``iteration``
    One per solver iteration or mini-batch epoch, as the estimator's
    ``callback`` receives it (:class:`gpulogreg._progress.Reporter`):
    ``solver``, ``task``, ``iteration``, ``objective``, ``optimality``,
    ``step``, ``seconds``, and ``passes`` / ``validation_loss`` where known.
``end``
    ``time`` and the outcome: ``converged``, ``iterations``, ``objective``,
    ``seconds``, ``model`` (the file written), ...; or ``error`` when the
    command failed.

Non-finite numbers are written as ``null`` (JSON has no NaN).

This module imports nothing from the package but its version.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

import numpy as np

from gpulogreg._version import __version__

__all__ = ["JsonLinesLog", "jsonable"]

#: The destination that means standard error.
STDERR = "-"


def jsonable(value: Any) -> Any:
    """``value`` with plain Python scalars for JSON: NumPy values converted, non-finite as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class JsonLinesLog:
    """A JSON-lines progress log, written and flushed record by record.

    Calling the log writes an ``iteration`` record, so the log itself is the
    estimator's ``callback``. As a context manager it closes its file and,
    when the block fails before :meth:`end`, writes an ``end`` record with
    the ``error``.

    Parameters
    ----------
    stream : text stream
        Where the lines go.
    owned : bool
        Whether :meth:`close` closes ``stream`` (a file the log opened).
    """

    def __init__(self, stream: TextIO, *, owned: bool = False) -> None:
        self.stream = stream
        self.owned = owned
        self.ended = False

    @classmethod
    def open(cls, destination: str) -> JsonLinesLog:
        """The log on ``destination``: a path (replaced), or ``"-"`` for standard error.

        A path is opened as it is, so a FIFO or ``/dev/stdout`` works as a
        destination too.
        """
        if destination == STDERR:
            return cls(sys.stderr)
        return cls(open(destination, "w", encoding="utf-8"), owned=True)

    def write(self, event: str, fields: Mapping[str, Any]) -> None:
        """One line: ``{"event": event, **fields}``, flushed."""
        record = jsonable({"event": event, **fields})
        self.stream.write(json.dumps(record, allow_nan=False) + "\n")
        self.stream.flush()

    def start(self, **fields: Any) -> None:
        """The ``start`` record: the version, the time and ``fields``."""
        self.write("start", {"version": __version__, "time": _now(), **fields})

    def __call__(self, record: Mapping[str, Any]) -> None:
        """An ``iteration`` record (the estimator's ``callback``)."""
        self.write("iteration", record)

    def end(self, **fields: Any) -> None:
        """The ``end`` record: the time and ``fields``."""
        self.write("end", {"time": _now(), **fields})
        self.ended = True

    def close(self) -> None:
        """Close the file the log opened (standard error stays open)."""
        if self.owned:
            self.stream.close()

    def __enter__(self) -> JsonLinesLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and not self.ended:
                self.end(error=" ".join(str(exc).split()) or type(exc).__name__)
        finally:
            self.close()
