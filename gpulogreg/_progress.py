"""The one home of a fit's progress: the reporter, its one bar and the status line.

A solver run reports through one :class:`Reporter`. The solver calls
:meth:`Reporter.begin` once, :meth:`Reporter.iteration` after every iteration
(or mini-batch epoch) with its history's newest record, :meth:`Reporter.detail`
for work within an iteration (a chunk of a pass over a Dataset, a batch of an
epoch) and :meth:`Reporter.end` with the reason it stopped. The reporter hands
every record to its listener (the estimator's ``callback``; the command line's
``--log-json`` is one) and draws the one progress bar:

* tqdm's (``tqdm.auto``), where tqdm is installed (the ``progress`` extra), on a
  terminal and in a notebook (a widget there);
* else :class:`ProgressLine`'s: a self-overwriting line on a terminal, and on
  any other stream (a log file, a pipe) an ordinary line at most every
  :data:`LOG_INTERVAL` seconds, so logs stay readable.

The bar measures what the solver names in :meth:`Reporter.begin`: the
full-batch solvers fill it with the optimality's way from its starting value
down to ``tol`` on a log scale, the mini-batch trainer with its epochs out of
``max_iter``. Its label names that measure while the solver runs and becomes
"converged" (with a full bar) or "stopped" at the end, so that a full bar at
iteration 7 of 1000 reads as "converged".

This module imports nothing from the package, so any layer may use it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

__all__ = ["Listener", "ProgressLine", "Reporter"]

#: Default minimum seconds between two redraws on a terminal (a redraw costs a
#: write to the terminal; solvers may run thousands of cheap iterations).
TTY_INTERVAL = 0.1
#: Minimum seconds between two lines on a stream that is not a terminal
#: (a log should get a line a second, not one per iteration).
LOG_INTERVAL = 1.0
#: Width in characters of the bar drawn by :meth:`ProgressLine.bar`.
BAR_WIDTH = 20
#: Resolution of tqdm's bar (its counter runs from 0 to this).
BAR_STEPS = 1000
#: tqdm's line: the title and measure, the bar, the percentage, then the solver's text.
TQDM_FORMAT = "{desc} |{bar}| {percentage:3.0f}%{postfix}"

#: Receives each iteration's record (a dict of plain numbers and strings);
#: returning ``True`` asks the solver to stop after that iteration.
Listener = Callable[[dict[str, Any]], Any]


def _is_tty(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressLine:
    """A rate-limited status line: self-overwriting on a terminal, plain lines elsewhere.

    The bar :class:`Reporter` draws where tqdm is not installed (or the stream
    is neither a terminal nor a notebook's).

    Parameters
    ----------
    stream : text stream, optional
        Where to write; ``sys.stderr`` (as it is at construction) by default.
    interval : float
        Minimum seconds between two redraws on a terminal.
    delay : float
        Seconds after construction before the first (unforced) update is
        shown, so that work finishing sooner shows no line at all.

    Attributes
    ----------
    tty : bool
        Whether ``stream`` is a terminal.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = TTY_INTERVAL,
        delay: float = 0.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream)
        self._interval = interval if self.tty else LOG_INTERVAL
        self._next = time.perf_counter() + delay
        self._width = 0  # characters of the live line on a terminal; 0: none drawn

    @staticmethod
    def bar(fraction: float) -> str:
        """``[####----]``, :data:`BAR_WIDTH` cells filled to ``fraction`` (clipped to [0, 1])."""
        filled = round(_clip(fraction) * BAR_WIDTH)
        return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"

    def due(self, *, transient: bool = False) -> bool:
        """Whether an unforced :meth:`update` would be shown now (so its text is worth making)."""
        return (self.tty or not transient) and time.perf_counter() >= self._next

    def update(self, text: str, *, force: bool = False, transient: bool = False) -> bool:
        """Show ``text`` unless the last update was too recent.

        Parameters
        ----------
        text : str
            The whole line, without a newline.
        force : bool
            Show it regardless of the rate limit.
        transient : bool
            Show it on a terminal only: a detail (a batch, a chunk) that would
            flood a log.

        Returns
        -------
        bool
            Whether the text was written.
        """
        if transient and not self.tty:
            return False
        now = time.perf_counter()
        if not force and now < self._next:
            return False
        self._next = now + self._interval
        if self.tty:
            pad = " " * max(self._width - len(text), 0)
            self.stream.write("\r" + text + pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        return True

    def close(self, message: str | None = None, *, erase: bool = False) -> None:
        """End the live line, then print ``message`` (if any) on a line of its own.

        Parameters
        ----------
        message : str, optional
            A closing line, e.g. why a solver stopped; printed on any stream.
        erase : bool
            On a terminal, blank the live line instead of keeping it (for a
            line that only tracked work in progress).
        """
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r" if erase else "\n")
        self._width = 0
        if message is not None:
            self.stream.write(message + "\n")
        self.stream.flush()


def _clip(fraction: float) -> float:
    """``fraction`` in [0, 1] (NaN: 0)."""
    return min(max(fraction, 0.0), 1.0) if fraction == fraction else 0.0


class _Bar(Protocol):
    """What :class:`Reporter` needs of a bar (tqdm's or the plain line)."""

    def show(self, fraction: float, text: str) -> None: ...

    def detail_due(self) -> bool: ...

    def detail(self, text: str) -> None: ...

    def close(self, label: str, message: str, *, full: bool) -> None: ...


class _LineBar:
    """The plain bar: ``title label [####----]  45%, text`` on a :class:`ProgressLine`."""

    def __init__(self, stream: TextIO, title: str, label: str) -> None:
        self.line = ProgressLine(stream)
        self.title, self.label = title, label
        self.fraction, self.text = 0.0, ""

    def show(self, fraction: float, text: str) -> None:
        self.fraction, self.text = fraction, text
        self.line.update(self._format())

    def detail_due(self) -> bool:
        return self.line.due(transient=True)

    def detail(self, text: str) -> None:
        self.line.update(f"{self._format()}  {text}", transient=True)

    def close(self, label: str, message: str, *, full: bool) -> None:
        self.label = label
        if full:
            self.fraction = 1.0
        self.line.update(self._format(), force=True)
        self.line.close(message)

    def _format(self) -> str:
        percent = f"{100 * _clip(self.fraction):3.0f}%"
        text = f", {self.text}" if self.text else ""
        return f"{self.title} {self.label} {ProgressLine.bar(self.fraction)} {percent}{text}"


class _TqdmBar:
    """tqdm's bar (a terminal line or a notebook widget) showing the same fields."""

    def __init__(self, tqdm: Any, stream: TextIO, title: str, label: str) -> None:
        self.stream, self.title, self.text = stream, title, ""
        # miniters=0: redraw on the time interval alone (our counter moves in
        # irregular jumps, which tqdm's dynamic miniters would misread).
        self.bar = tqdm(
            total=BAR_STEPS,
            desc=f"{title} {label}",
            file=stream,
            bar_format=TQDM_FORMAT,
            mininterval=TTY_INTERVAL,
            miniters=0,
            dynamic_ncols=True,
            leave=True,
        )
        self._next_detail = 0.0

    def show(self, fraction: float, text: str) -> None:
        self.text = text
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(round(_clip(fraction) * BAR_STEPS) - self.bar.n)

    def detail_due(self) -> bool:
        return time.perf_counter() >= self._next_detail

    def detail(self, text: str) -> None:
        self._next_detail = time.perf_counter() + TTY_INTERVAL
        self.bar.set_postfix_str(f"{self.text}  {text}", refresh=False)
        self.bar.update(0)

    def close(self, label: str, message: str, *, full: bool) -> None:
        self.bar.set_description_str(f"{self.title} {label}", refresh=False)
        self.bar.set_postfix_str(self.text, refresh=False)
        if full:
            self.bar.n = BAR_STEPS
        self.bar.refresh()
        self.bar.close()
        self.stream.write(message + "\n")
        self.stream.flush()


def _tqdm_class(stream: TextIO) -> Any:
    """``tqdm.auto.tqdm`` when it is installed and fits ``stream`` (a terminal, or a notebook)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    in_notebook = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)
    return tqdm if in_notebook or _is_tty(stream) else None


def _make_bar(stream: TextIO, title: str, label: str) -> _Bar:
    tqdm = _tqdm_class(stream)
    return _LineBar(stream, title, label) if tqdm is None else _TqdmBar(tqdm, stream, title, label)


class Reporter:
    """Where one solver run reports its progress: the listener and the bar.

    Parameters
    ----------
    bar : bool
        Draw the progress bar (on ``stream``).
    listener : callable, optional
        ``listener(record)`` after every iteration, ``record`` being the
        history's newest entry (see :meth:`gpulogreg._typing.History.entry`)
        with the ``solver`` and the ``task`` added; returning ``True`` asks the
        solver to stop.
    task : int
        Index of the run within its fit (one-vs-rest fits one model per class).
    stream : text stream, optional
        Where the bar goes; ``sys.stderr`` (as it is when the bar starts) by default.

    Notes
    -----
    A reporter without bar and listener costs nothing: the solvers always
    report, whether anyone listens or not.
    """

    def __init__(
        self,
        *,
        bar: bool = False,
        listener: Listener | None = None,
        task: int = 0,
        stream: TextIO | None = None,
    ) -> None:
        self.show_bar = bool(bar)
        self.listener = listener
        self.task = int(task)
        self.stream = stream
        self.solver = ""
        #: Full passes over the data so far, where a backend reports them (else None).
        self.passes: int | None = None
        self._bar: _Bar | None = None

    @property
    def watched(self) -> bool:
        """Whether anyone watches (a listener or a bar): else a record need not be made."""
        return self.listener is not None or self.show_bar

    def pass_done(self) -> None:
        """Count one full pass over the data (a backend that reads the data in passes)."""
        self.passes = (self.passes or 0) + 1

    def begin(self, solver: str, measure: str) -> None:
        """Start a run of ``solver``; ``measure`` labels what its bar measures."""
        self.solver = solver
        if self.show_bar:
            self._bar = _make_bar(self.stream or sys.stderr, solver, measure)

    def iteration(self, record: Mapping[str, Any], *, fraction: float, text: str) -> bool:
        """Report one iteration; returns whether the listener asked to stop.

        Parameters
        ----------
        record : mapping
            The iteration's entry of the history.
        fraction : float
            How full the bar is, in [0, 1].
        text : str
            The bar's text: the iteration, the objective, the optimality, ...
        """
        stop = False
        if self.listener is not None:
            stop = bool(self.listener({"solver": self.solver, "task": self.task, **record}))
        if self._bar is not None:
            self._bar.show(fraction, text)
        return stop

    def detail_due(self) -> bool:
        """Whether :meth:`detail` would be shown now (so its text is worth making)."""
        return self._bar is not None and self._bar.detail_due()

    def detail(self, text: str) -> None:
        """Show work within an iteration next to the bar (on a terminal or in a notebook only)."""
        if self._bar is not None:
            self._bar.detail(text)

    def note(self, text: str) -> None:
        """A line of its own for the person watching the bar (e.g. resuming a checkpoint)."""
        if self.show_bar:
            stream = self.stream or sys.stderr
            stream.write(text + "\n")
            stream.flush()

    def end(self, message: str, *, converged: bool) -> None:
        """Close the bar, labelled "converged" (and full) or "stopped", then print ``message``."""
        if self._bar is not None:
            label = "converged" if converged else "stopped"
            self._bar.close(label, message, full=converged)
            self._bar = None
