"""svmlight / libsvm text to CSR, a block of lines at a time, in bounded memory.

The format
----------
One row per line: a label, then ``index:value`` pairs separated by blanks
(spaces or tabs; ``\\r`` of Windows line ends counts as one). ``#`` starts a
comment that runs to the end of the line; lines that are blank or hold only a
comment are no rows. ``qid:N`` fields (ranking data) are skipped. Indices are
decimal integers, zero- or one-based (the caller says which, or
:func:`survey` finds whether index 0 occurs); values and labels are decimal
numbers (``1``, ``-0.5``, ``2.5e-3``, ...).

How it is read
--------------
The text comes from a binary stream (a file, ``gzip``/``bz2``, standard
input) in blocks of :data:`BLOCK_BYTES` cut at the last newline (a line longer
than a block makes a longer block, never a broken line). A Numba kernel
(:func:`_tokenize`) walks each block once: it parses the indices into
integers, records the row pointers and each row's line number, and copies the
value and label texts into two compact buffers; pyarrow's string-to-float cast
(``fast_float``: exact, correctly rounded, about 13 ns per value) turns those
buffers into float64. Rows whose indices are not strictly increasing are
sorted (:func:`_sort_rows`), and a repeated index is refused, as
``sklearn.datasets.load_svmlight_file`` refuses it. Nothing of ``n_rows x
n_features`` size is ever built: memory is a few blocks plus the CSR arrays
the caller keeps.

Every refusal is a :class:`gpulogreg._errors.DataError` naming the source
and the line (counted from 1, blank and comment lines included, as an editor
counts): a token that is no ``index:value`` pair, an index that is not a
non-negative integer, a label or value that is not a number, NaN or infinity,
a repeated index, index 0 in a one-based file, an index beyond
``n_features``.

This module is the parsing and its checks only; :mod:`gpulogreg.io` opens the
files and streams and offers the readers (``read_svmlight``,
``iter_batches``, ``read_data``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

import numpy as np
from numba import njit

from gpulogreg._errors import DataError, MissingDependencyError

__all__ = [
    "BLOCK_BYTES",
    "ParsedBlock",
    "Survey",
    "csr_index_dtype",
    "iter_blocks",
    "iter_csr",
    "read_csr",
    "survey",
]

#: Bytes of text read and parsed at a time: large enough that the per-block
#: overhead (a kernel call, two pyarrow casts, a few allocations) is small
#: next to parsing it (8 MiB is about 20 ms of work), small enough that the
#: block and its parsed arrays (about 4x the block) stay far below any budget.
BLOCK_BYTES = 8 * 2**20
#: The largest index accepted (2**62): ``10 * index + digit`` cannot overflow
#: int64 below it, and no CSR matrix is that wide.
INDEX_LIMIT = 2**62
#: The largest value of an int32 index or row pointer.
INT32_MAX = int(np.iinfo(np.int32).max)
#: Labels that are integers up to this magnitude (2**53, the float64 integers)
#: are returned as int64.
_EXACT_INTEGERS = 2.0**53

# Error codes of the tokenizer (``stats[_ERROR]``).
_OK = 0
_NO_COLON = 1
_BAD_INDEX = 2
_NEGATIVE_INDEX = 3
_LARGE_INDEX = 4
_NO_VALUE = 5
_BAD_QID = 6

# Slots of the tokenizer's ``stats`` array.
_ROWS = 0  # rows found
_PAIRS = 1  # index:value pairs found
_MIN_INDEX = 2  # smallest index (INDEX_LIMIT when there is none)
_MAX_INDEX = 3  # largest index (-1 when there is none)
_FIRST_ZERO = 4  # pair number of the first index 0 (-1: none)
_UNSORTED = 5  # rows whose indices are not strictly increasing
_ERROR = 6  # an error code (0: none)
_ERROR_LINE = 7  # its line (0-based, in the whole source)
_ERROR_START = 8  # its token, as byte offsets in the block
_ERROR_STOP = 9
_N_STATS = 10

_NEWLINE = 10
_HASH = 35
_COLON = 58
_MINUS = 45
_ZERO_CHAR = 48

#: Character classes of the tokenizer, by byte value.
_OTHER = 0
_BLANK = 1  # space, tab, vertical tab, form feed, carriage return
_END = 2  # newline or "#": the end of a line's data
_CLASSES = np.zeros(256, dtype=np.uint8)
_CLASSES[[32, 9, 11, 12, 13]] = _BLANK
_CLASSES[[_NEWLINE, _HASH]] = _END


@njit(cache=True, nogil=True)
def _count_lines_and_colons(buf: np.ndarray) -> tuple[int, int]:
    """Newlines and colons in ``buf``: the bounds of the rows and pairs of a block.

    (``bytes.count`` takes 4 ms per 8 MiB for one byte value; this loop
    vectorises, 0.5 ms for both.)
    """
    lines = 0
    colons = 0
    for i in range(buf.shape[0]):
        lines += buf[i] == _NEWLINE
        colons += buf[i] == _COLON
    return lines, colons


@njit(cache=True, nogil=True)
def _token_end(buf: np.ndarray, i: int) -> int:
    """The end of the token at ``i`` (the next blank, newline, ``#`` or the end of ``buf``)."""
    n = buf.shape[0]
    while i < n and _CLASSES[buf[i]] == _OTHER:
        i += 1
    return i


@njit(cache=True, nogil=True)
def _classify(buf: np.ndarray, start: int, stop: int) -> int:
    """The error code of the malformed pair ``buf[start:stop]`` (error path only)."""
    colon = -1
    for k in range(start, stop):
        if buf[k] == _COLON:
            colon = k
            break
    if colon < 0:
        return _NO_COLON
    negative = buf[start] == _MINUS and colon > start + 1
    digits = start + 1 if negative else start
    for k in range(digits, colon):
        if not 0 <= buf[k] - _ZERO_CHAR <= 9:
            return _BAD_INDEX
    if colon == start:
        return _BAD_INDEX
    if negative:
        return _NEGATIVE_INDEX
    if colon + 1 == stop:
        return _NO_VALUE
    return _LARGE_INDEX


@njit(cache=True, nogil=True)
def _tokenize(
    buf: np.ndarray,
    line0: int,
    row_line: np.ndarray,
    indptr: np.ndarray,
    index: np.ndarray,
    value_text: np.ndarray,
    value_offsets: np.ndarray,
    label_text: np.ndarray,
    label_offsets: np.ndarray,
    unsorted: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Walk a block of complete lines once, stopping at the first malformed token.

    One pass over the bytes, each looked at once through the class table
    :data:`_CLASSES` (a malformed token is looked at again, to name the error).

    Parameters
    ----------
    buf : uint8 array of shape (n_bytes,)
        Whole lines (the last one may lack its newline).
    line0 : int
        Lines of the source before the block.
    row_line : int64 array of shape (>= n_lines,)
        Out: the line (0-based, in the source) of each row.
    indptr : int64 array of shape (>= n_lines + 1,)
        Out: row pointers into ``index`` (``indptr[0] = 0``).
    index : int64 array of shape (>= n_colons,)
        Out: each pair's index, as written (not shifted for one-based files).
    value_text, label_text : uint8 arrays of shape (>= n_bytes,)
        Out: the value (label) texts, one after the other.
    value_offsets : int32 array of shape (>= n_colons + 1,)
    label_offsets : int32 array of shape (>= n_lines + 1,)
        Out: where each value (label) text starts in its buffer, Arrow's
        string offsets.
    unsorted : int64 array of shape (>= n_lines,)
        Out: the rows whose indices are not strictly increasing.
    stats : int64 array of shape (_N_STATS,)
        Out: the counts and the error, see the ``_ROWS`` ... slots.
    """
    n = buf.shape[0]
    rows = 0
    pairs = 0
    n_value = 0
    n_label = 0
    low = INDEX_LIMIT
    high = -1
    first_zero = -1
    n_unsorted = 0
    indptr[0] = 0
    value_offsets[0] = 0
    label_offsets[0] = 0
    line = line0
    i = 0
    while i < n:
        while i < n and _CLASSES[buf[i]] == _BLANK:
            i += 1
        if i < n and _CLASSES[buf[i]] == _OTHER:
            # The label, then the pairs up to the end of the line's data.
            while i < n and _CLASSES[buf[i]] == _OTHER:
                label_text[n_label] = buf[i]
                n_label += 1
                i += 1
            label_offsets[rows + 1] = n_label
            row_line[rows] = line
            previous = -1
            increasing = True
            while True:
                while i < n and _CLASSES[buf[i]] == _BLANK:
                    i += 1
                if i >= n or _CLASSES[buf[i]] == _END:
                    break
                start = i
                v = 0
                while i < n and 0 <= buf[i] - _ZERO_CHAR <= 9 and v < INDEX_LIMIT // 10:
                    v = v * 10 + (buf[i] - _ZERO_CHAR)
                    i += 1
                if i > start and i + 1 < n and buf[i] == _COLON and _CLASSES[buf[i + 1]] == _OTHER:
                    i += 1
                    while i < n and _CLASSES[buf[i]] == _OTHER:
                        value_text[n_value] = buf[i]
                        n_value += 1
                        i += 1
                elif (
                    i == start
                    and i + 3 < n
                    and buf[i] == 113  # q
                    and buf[i + 1] == 105  # i
                    and buf[i + 2] == 100  # d
                    and buf[i + 3] == _COLON
                ):
                    stop = _token_end(buf, i)
                    k = i + 4
                    while k < stop and 0 <= buf[k] - _ZERO_CHAR <= 9:
                        k += 1
                    if k == i + 4 or k < stop:
                        stats[_ERROR] = _BAD_QID
                        stats[_ERROR_LINE] = line
                        stats[_ERROR_START] = start
                        stats[_ERROR_STOP] = stop
                        stats[_ROWS] = rows
                        return
                    i = stop
                    continue
                else:
                    stop = _token_end(buf, start)
                    stats[_ERROR] = _classify(buf, start, stop)
                    stats[_ERROR_LINE] = line
                    stats[_ERROR_START] = start
                    stats[_ERROR_STOP] = stop
                    stats[_ROWS] = rows
                    return
                index[pairs] = v
                pairs += 1
                value_offsets[pairs] = n_value
                if v <= previous:
                    increasing = False
                previous = v
                low = min(low, v)
                high = max(high, v)
                if v == 0 and first_zero < 0:
                    first_zero = pairs - 1
            indptr[rows + 1] = pairs
            if not increasing:
                unsorted[n_unsorted] = rows
                n_unsorted += 1
            rows += 1
        # The rest of the line (a comment, or nothing) up to its newline.
        while i < n and buf[i] != _NEWLINE:
            i += 1
        line += 1
        i += 1
    stats[_ROWS] = rows
    stats[_PAIRS] = pairs
    stats[_MIN_INDEX] = low
    stats[_MAX_INDEX] = high
    stats[_FIRST_ZERO] = first_zero
    stats[_UNSORTED] = n_unsorted
    stats[_ERROR] = _OK


@njit(cache=True, nogil=True)
def _sort_rows(rows: np.ndarray, indptr: np.ndarray, index: np.ndarray, values: np.ndarray) -> int:
    """Sort the pairs of each of ``rows`` by index, in place; the first row with a repeat.

    Returns
    -------
    int
        The first of ``rows`` (in order) in which an index occurs twice, or -1.
    """
    for r in rows:
        a, b = indptr[r], indptr[r + 1]
        order = np.argsort(index[a:b], kind="mergesort")
        index[a:b] = index[a:b][order]
        values[a:b] = values[a:b][order]
        for k in range(a + 1, b):
            if index[k] == index[k - 1]:
                return int(r)
    return -1


class ParsedBlock(NamedTuple):
    """The rows of one block of text.

    Attributes
    ----------
    labels : float64 array of shape (m,), or None (``values=False``)
    indptr : int64 array of shape (m + 1,)
        Row pointers, from 0.
    indices : int64 array of shape (nnz,)
        Indices as written (one-based files not shifted), increasing in each row.
    values : float64 array of shape (nnz,), or None (``values=False``)
    lines : int64 array of shape (m,)
        Each row's line in the source, counted from 1.
    first_zero : int
        The first pair whose index is 0, or -1.
    low, high : int
        The smallest and largest index (``INDEX_LIMIT`` and -1 without pairs).
    """

    labels: np.ndarray | None
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None
    lines: np.ndarray
    first_zero: int
    low: int
    high: int

    @property
    def n_rows(self) -> int:
        return int(self.lines.shape[0])

    def line_of_pair(self, k: int) -> int:
        """The line (from 1) of pair number ``k``."""
        return int(self.lines[int(np.searchsorted(self.indptr, k, side="right")) - 1])


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        raise MissingDependencyError(
            "reading svmlight files needs pyarrow: pip install 'gpulogreg[io]' "
            "(or pip install pyarrow)"
        ) from None
    return pa, pc


def _texts(pa: Any, text: np.ndarray, offsets: np.ndarray, count: int) -> Any:
    """An Arrow string array over ``count`` texts of a compact buffer (no copy)."""
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


def _to_float(pa: Any, pc: Any, texts: Any) -> np.ndarray | int:
    """The texts as float64, or the position of the first text that is no number."""
    try:
        return np.asarray(pc.cast(texts, pa.float64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Halve the range until one text remains: a linear amount of casting in all.
    lo, hi = 0, len(texts)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(texts.slice(lo, mid - lo), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


def _shown(text: bytes) -> str:
    return repr(text.decode("utf-8", errors="replace"))


def iter_blocks(
    stream: IO[bytes], name: str, *, values: bool = True, block_bytes: int | None = None
) -> Iterator[ParsedBlock]:
    """Parse a stream of svmlight text block by block.

    Parameters
    ----------
    stream : binary file object
        Read with ``read(block_bytes)`` until it returns nothing.
    name : str
        The source in messages (a path, ``<stdin>``).
    values : bool
        Convert the labels and values (False: only the structure, for
        :func:`survey`).
    block_bytes : int, optional
        Bytes read at a time; default :data:`BLOCK_BYTES` (read when called).

    Yields
    ------
    ParsedBlock
        Rows sorted by index within each row; blocks without rows are skipped.

    Raises
    ------
    DataError
        A malformed token, a label or value that is no number, a repeated
        index: naming the line.
    """
    pa, pc = _pyarrow() if values else (None, None)
    # One buffer, reused: each block's complete lines are parsed from it, and the
    # unfinished last line moves to its front for the next read (no block is
    # copied; a parsed block keeps no view of the buffer).
    buf = bytearray(block_bytes or BLOCK_BYTES)
    kept = 0  # bytes of an unfinished line at the front of buf
    line0 = 0
    while True:
        if kept == len(buf):  # a line longer than the buffer: a larger one
            larger = bytearray(2 * len(buf))
            larger[:kept] = buf
            buf = larger
        end = kept + _fill(stream, buf, kept)
        last = end < len(buf)  # the stream ended before the buffer was full
        cut = end if last else buf.rfind(b"\n", 0, end) + 1
        if cut == 0:
            if last:
                return  # nothing left
            kept = end  # no line ends in the buffer yet: read on
            continue
        with memoryview(buf) as view:
            block, newlines = _parse(view[:cut], line0, name, pa, pc, values)
        line0 += newlines
        if block.n_rows:
            yield block
        if last:
            return
        kept = end - cut
        buf[:kept] = buf[cut:end]


def _fill(stream: IO[bytes], buf: bytearray, start: int) -> int:
    """Read into ``buf[start:]`` until it is full or the stream ends; the bytes read."""
    got = 0
    with memoryview(buf) as view:
        while start + got < len(buf):
            n = stream.readinto(view[start + got :])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
    return got


def _parse(
    text: bytes | memoryview, line0: int, name: str, pa: Any, pc: Any, values: bool
) -> tuple[ParsedBlock, int]:
    """One block of whole lines (see :func:`iter_blocks`) and its number of newlines."""
    if len(text) > INT32_MAX:
        raise DataError(f"{name}, line {line0 + 1}: a line of over {INT32_MAX} bytes")
    buf = np.frombuffer(text, dtype=np.uint8)
    newlines, n_colons = _count_lines_and_colons(buf)  # colons: at least the pairs
    n_lines = newlines + 1
    row_line = np.empty(n_lines, dtype=np.int64)
    indptr = np.empty(n_lines + 1, dtype=np.int64)
    index = np.empty(n_colons, dtype=np.int64)
    value_text = np.empty(len(text), dtype=np.uint8)
    value_offsets = np.empty(n_colons + 1, dtype=np.int32)
    label_text = np.empty(len(text), dtype=np.uint8)
    label_offsets = np.empty(n_lines + 1, dtype=np.int32)
    unsorted = np.empty(n_lines, dtype=np.int64)
    stats = np.zeros(_N_STATS, dtype=np.int64)
    _tokenize(
        buf,
        line0,
        row_line,
        indptr,
        index,
        value_text,
        value_offsets,
        label_text,
        label_offsets,
        unsorted,
        stats,
    )
    if stats[_ERROR] != _OK:
        raise _token_error(name, text, stats)
    rows, pairs = int(stats[_ROWS]), int(stats[_PAIRS])
    block = ParsedBlock(
        None,
        indptr[: rows + 1],
        index[:pairs],
        None,
        row_line[:rows] + 1,
        int(stats[_FIRST_ZERO]),
        int(stats[_MIN_INDEX]),
        int(stats[_MAX_INDEX]),
    )
    if values:
        labels = _to_float(pa, pc, _texts(pa, label_text, label_offsets, rows))
        if isinstance(labels, int):
            shown = _text_at(label_text, label_offsets, labels)
            hint = " (each line starts with its label)" if b":" in shown else ""
            raise DataError(
                f"{name}, line {int(block.lines[labels])}: the label {_shown(shown)} is not a "
                f"number{hint}"
            )
        vals = _to_float(pa, pc, _texts(pa, value_text, value_offsets, pairs))
        if isinstance(vals, int):
            raise DataError(
                f"{name}, line {block.line_of_pair(vals)}: the value "
                f"{_shown(_text_at(value_text, value_offsets, vals))} of feature "
                f"{int(block.indices[vals])} is not a number"
            )
        _check_finite(name, labels, block, label_text, label_offsets, labels=True)
        _check_finite(name, vals, block, value_text, value_offsets, labels=False)
        block = block._replace(labels=labels, values=vals)
    n_unsorted = int(stats[_UNSORTED])
    if n_unsorted:
        # Arrow's floats are read-only: the sort works on a copy.
        carried = np.array(block.values) if block.values is not None else np.empty(pairs)
        block = block._replace(values=carried if block.values is not None else None)
        repeat = _sort_rows(unsorted[:n_unsorted], block.indptr, block.indices, carried)
        if repeat >= 0:
            row = block.indices[block.indptr[repeat] : block.indptr[repeat + 1]]
            twice = int(row[np.flatnonzero(row[1:] == row[:-1])[0]])
            raise DataError(
                f"{name}, line {int(block.lines[repeat])}: feature index {twice} appears twice "
                "(an index may occur once per line)"
            )
        if block.first_zero >= 0:  # the sort moved it
            block = block._replace(first_zero=int(np.flatnonzero(block.indices == 0)[0]))
    return block, newlines


def _text_at(text: np.ndarray, offsets: np.ndarray, k: int) -> bytes:
    return bytes(text[offsets[k] : offsets[k + 1]])


def _check_finite(
    name: str,
    numbers: np.ndarray,
    block: ParsedBlock,
    text: np.ndarray,
    offsets: np.ndarray,
    *,
    labels: bool,
) -> None:
    """Refuse NaN and infinity among the labels or the values, naming the line."""
    if numbers.size == 0 or np.isfinite(numbers.sum()):
        return
    bad = ~np.isfinite(numbers)
    if not bad.any():
        return  # the sum overflowed, the numbers are finite
    k = int(np.flatnonzero(bad)[0])
    written = _shown(_text_at(text, offsets, k))
    if labels:
        raise DataError(f"{name}, line {int(block.lines[k])}: the label {written} is not finite")
    raise DataError(
        f"{name}, line {block.line_of_pair(k)}: the value {written} of feature "
        f"{int(block.indices[k])} is not finite"
    )


def _token_error(name: str, text: bytes | memoryview, stats: np.ndarray) -> DataError:
    """The message of a tokenizer error code."""
    line = int(stats[_ERROR_LINE]) + 1
    token = bytes(text[int(stats[_ERROR_START]) : int(stats[_ERROR_STOP])])
    code = int(stats[_ERROR])
    shown = _shown(token)
    reasons = {
        _NO_COLON: f"expected index:value pairs after the label, got {shown}",
        _BAD_INDEX: f"the feature index in {shown} is not an integer",
        _NEGATIVE_INDEX: f"negative feature index in {shown}",
        _LARGE_INDEX: f"the feature index in {shown} is too large (the limit is 2**62)",
        _NO_VALUE: f"no value after the index in {shown}",
        _BAD_QID: f"the query id in {shown} is not an integer",
    }
    return DataError(f"{name}, line {line}: {reasons[code]}")


# --------------------------------------------------------------------------- survey
@dataclass(frozen=True)
class Survey:
    """What one structural pass over svmlight text finds (no value is converted).

    Attributes
    ----------
    n_rows, nnz : int
        Rows and stored pairs (``qid`` not counted).
    min_index, max_index : int
        Smallest and largest index as written (-1 for both when no row has a pair).
    """

    n_rows: int
    nnz: int
    min_index: int
    max_index: int

    def zero_based(self, zero_based: bool | str) -> bool:
        """Resolve ``"auto"``: one-based unless index 0 occurs (scikit-learn's rule)."""
        if zero_based == "auto":
            return self.min_index == 0
        return bool(zero_based)

    def width(self, zero_based: bool) -> int:
        """Features the indices span: the largest index, plus one when zero-based."""
        if self.max_index < 0:
            return 0
        return self.max_index + (1 if zero_based else 0)


def survey(stream: IO[bytes], name: str) -> Survey:
    """Rows, stored pairs and index range of svmlight text, in one pass of the tokenizer."""
    rows = nnz = 0
    low, high = INDEX_LIMIT, -1
    for block in iter_blocks(stream, name, values=False):
        rows += block.n_rows
        nnz += int(block.indices.shape[0])
        low, high = min(low, block.low), max(high, block.high)
    return Survey(rows, nnz, low if high >= 0 else -1, high)


# --------------------------------------------------------------------------- CSR
def csr_index_dtype(nnz: int, n_features: int) -> np.dtype[Any]:
    """int32 when ``nnz`` and ``n_features`` fit in int32, else int64.

    The rule of :func:`gpulogreg.data.sparse.index_dtype` (this layer may not
    import the data package); ``tests/test_svmlight.py`` checks they agree.
    """
    if nnz <= INT32_MAX and n_features <= INT32_MAX:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def _labels(values: np.ndarray) -> np.ndarray:
    """int64 labels when they are all integers (exactly representable), else float64."""
    if (
        values.size
        and np.all(values == np.round(values))
        and np.abs(values).max() < _EXACT_INTEGERS
    ):
        return values.astype(np.int64)
    return values


class _Checks:
    """The checks that need the index base and the width, applied block by block."""

    def __init__(self, name: str, zero_based: bool, n_features: int | None) -> None:
        self.name = name
        self.zero_based = zero_based
        self.n_features = n_features

    def __call__(self, block: ParsedBlock) -> None:
        if not self.zero_based and block.first_zero >= 0:
            raise DataError(
                f"{self.name}, line {block.line_of_pair(block.first_zero)}: feature index 0 found "
                "in a one-based file (read it as zero-based: zero_based=True, --index-base 0)"
            )
        if self.n_features is not None:
            limit = self.n_features - (1 if self.zero_based else 0)
            if block.high > limit:
                k = int(np.flatnonzero(block.indices > limit)[0])
                raise DataError(
                    f"{self.name}, line {block.line_of_pair(k)}: feature index "
                    f"{int(block.indices[k])} is beyond the {self.n_features} features expected"
                )


def _build_csr(
    parts: list[ParsedBlock], n_features: int, zero_based: bool, dtype: np.dtype[Any]
) -> tuple[Any, np.ndarray]:
    """One CSR matrix (and its labels) of the rows of ``parts``, in order."""
    import scipy.sparse as sp

    nnz = sum(int(p.indices.shape[0]) for p in parts)
    m = sum(p.n_rows for p in parts)
    idx = csr_index_dtype(nnz, n_features)
    data = np.empty(nnz, dtype=dtype)
    indices = np.empty(nnz, dtype=idx)
    indptr = np.empty(m + 1, dtype=idx)
    labels = np.empty(m, dtype=np.float64)
    indptr[0] = 0
    at, row = 0, 0
    shift = 0 if zero_based else 1
    for p in parts:
        k, r = int(p.indices.shape[0]), p.n_rows
        assert p.values is not None
        assert p.labels is not None
        data[at : at + k] = p.values
        np.subtract(p.indices, shift, out=indices[at : at + k], casting="unsafe")
        indptr[row + 1 : row + r + 1] = p.indptr[1:] + at
        labels[row : row + r] = p.labels
        at += k
        row += r
    X = sp.csr_matrix((data, indices, indptr), shape=(m, n_features), copy=False)
    # scipy may pick its own index type: the rule above holds (see csr_index_dtype).
    X.indices, X.indptr = indices, indptr
    X.has_sorted_indices = True
    X.has_canonical_format = True  # sorted and without repeats, checked by _parse
    return X, _labels(labels)


def _split(block: ParsedBlock, rows: int) -> tuple[ParsedBlock, ParsedBlock]:
    """The first ``rows`` rows of a block and the rest."""
    cut = int(block.indptr[rows])
    assert block.labels is not None
    assert block.values is not None
    # Checked already: the parts keep the whole block's bounds, not their own, and no
    # first zero.
    head = ParsedBlock(
        block.labels[:rows],
        block.indptr[: rows + 1],
        block.indices[:cut],
        block.values[:cut],
        block.lines[:rows],
        -1,
        block.low,
        block.high,
    )
    tail = ParsedBlock(
        block.labels[rows:],
        block.indptr[rows:] - cut,
        block.indices[cut:],
        block.values[cut:],
        block.lines[rows:],
        -1,
        block.low,
        block.high,
    )
    return head, tail


def read_csr(
    stream: IO[bytes],
    name: str,
    *,
    n_features: int | None,
    zero_based: bool | str,
    dtype: np.dtype[Any],
) -> tuple[Any, np.ndarray, bool]:
    """The whole text as one canonical CSR matrix.

    Parameters
    ----------
    stream : binary file object
    name : str
        The source in messages.
    n_features : int, optional
        The width; default the largest index (plus one when zero-based).
    zero_based : {"auto", True, False}
        "auto": one-based unless index 0 occurs.
    dtype : numpy.dtype
        float32 or float64, of the values.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_rows, n_features)
    y : ndarray of shape (n_rows,)
        int64 when every label is an integer, else float64.
    zero_based : bool
        The base the indices were read with.

    Raises
    ------
    DataError
        See :func:`iter_blocks` and the module docstring; also a source
        without rows or without features.
    """
    parts: list[ParsedBlock] = []
    low, high = INDEX_LIMIT, -1
    fixed = None if zero_based == "auto" else _Checks(name, bool(zero_based), n_features)
    for block in iter_blocks(stream, name):
        if fixed is not None:
            fixed(block)
        low, high = min(low, block.low), max(high, block.high)
        assert block.values is not None
        if dtype != block.values.dtype:
            block = block._replace(values=block.values.astype(dtype))
        if block.high <= INT32_MAX:
            block = block._replace(indices=block.indices.astype(np.int32))
        parts.append(block)
    if not parts:
        raise DataError(f"{name}: no data lines (every line is blank or a comment)")
    found = Survey(0, 0, low if high >= 0 else -1, high)
    base = found.zero_based(zero_based)
    if fixed is None:
        checks = _Checks(name, base, n_features)
        for block in parts:
            checks(block)
    width = n_features if n_features is not None else found.width(base)
    if width == 0:
        raise DataError(f"{name}: no features found (no line has an index:value pair)")
    X, y = _build_csr(parts, width, base, dtype)
    return X, y, base


def iter_csr(
    open_stream: Callable[[], AbstractContextManager[IO[bytes]]],
    name: str,
    *,
    n_features: int,
    zero_based: bool,
    dtype: np.dtype[Any],
    chunk_rows: int,
) -> Iterator[tuple[Any, np.ndarray]]:
    """The text as CSR chunks of ``chunk_rows`` rows (the last one: fewer), streamed.

    Parameters as :func:`read_csr`, but the width and the base are settled
    (:func:`survey` finds them); ``open_stream`` opens the text (once).

    Yields
    ------
    X : scipy.sparse.csr_matrix of shape (m, n_features), canonical
    y : ndarray of shape (m,)
        int64 when every label of the chunk is an integer, else float64.
    """
    checks = _Checks(name, zero_based, n_features)
    pending: list[ParsedBlock] = []
    n_pending = 0
    found = False
    with open_stream() as stream:
        for block in iter_blocks(stream, name):
            checks(block)
            found = True
            assert block.values is not None
            if dtype != block.values.dtype:
                block = block._replace(values=block.values.astype(dtype))
            while n_pending + block.n_rows >= chunk_rows:
                head, block = _split(block, chunk_rows - n_pending)
                yield _build_csr([*pending, head], n_features, zero_based, dtype)
                pending, n_pending = [], 0
            if block.n_rows:
                pending.append(block)
                n_pending += block.n_rows
    if pending:
        yield _build_csr(pending, n_features, zero_based, dtype)
    if not found:
        raise DataError(f"{name}: no data lines (every line is blank or a comment)")
