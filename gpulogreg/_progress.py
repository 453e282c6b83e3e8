"""The one progress reporter: a status line on a stream (stderr by default).

Solvers, the mini-batch trainer and the chunked backend format their own
text; :class:`ProgressLine` owns everything else: the stream, whether it is
a terminal, rate limiting, the bar and how the line ends. On a terminal the
line overwrites itself (``"\\r"`` and padding over the previous, longer
text); elsewhere (a log file, a pipe, a captured stream) each update is an
ordinary line, at most one every :data:`LOG_INTERVAL` seconds, so logs stay
readable.

This module imports nothing from the package, so any layer may use it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressLine"]

#: Default minimum seconds between two redraws on a terminal (a redraw costs a
#: write to the terminal; solvers may run thousands of cheap iterations).
TTY_INTERVAL = 0.1
#: Minimum seconds between two lines on a stream that is not a terminal
#: (a log should get a line a second, not one per iteration).
LOG_INTERVAL = 1.0
#: Width in characters of the bar drawn by :meth:`ProgressLine.bar`.
BAR_WIDTH = 20


class ProgressLine:
    """A rate-limited status line: self-overwriting on a terminal, plain lines elsewhere.

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
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = interval if self.tty else LOG_INTERVAL
        self._next = time.perf_counter() + delay
        self._width = 0  # characters of the live line on a terminal; 0: none drawn

    @staticmethod
    def bar(fraction: float) -> str:
        """``[####----]``, :data:`BAR_WIDTH` cells filled to ``fraction`` (clipped to [0, 1])."""
        filled = round(min(max(fraction, 0.0), 1.0) * BAR_WIDTH)
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
