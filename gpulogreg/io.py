"""Readers and writers for the files batch jobs have: CSV, Parquet, ``.npy``/``.npz``, svmlight.

Readers
-------
:func:`read_data` loads a whole file into a :class:`Table`: a C-contiguous
float32/float64 feature matrix ``X`` (what :class:`gpulogreg.LogisticRegression`
uses without copying), the target column, the feature names and optional id
and sample-weight columns. :func:`iter_batches` yields the same :class:`Table`
in row chunks of a bounded size, for out-of-core training; both share one
column resolution and one conversion, so they accept and refuse exactly the
same files. A CSV column's type is the one the streaming reader infers from
the file's first block (features and weights: always float64), so a value of
another type further down (a label ``yes`` among integers) is refused by
both, naming its column and row. Column names must be unique among the
columns read.

=========  ====================================  ========================================
format     read with                             ``target`` / ``features``
=========  ====================================  ========================================
CSV        pyarrow (multithreaded, typed)        column names
Parquet    pyarrow (only the selected columns)   column names
``.npy``   NumPy, memory-mapped                  column indices, or ``target`` = a .npy path
``.npz``   NumPy, ``allow_pickle=False``         array names (``X`` and ``y`` by default)
svmlight   a Numba tokenizer + pyarrow's casts    the label is the first field of each line
=========  ====================================  ========================================

The format comes from the extension (``.csv``, ``.tsv``, also ``.gz`` or
``.bz2``; ``.parquet``, ``.pq``; ``.npy``; ``.npz``; ``.svm``, ``.svmlight``,
``.libsvm``, ``.txt``, also ``.gz`` or ``.bz2``) or from ``format=``. CSV fields are separated by a
tab in ``.tsv`` names and a comma otherwise, or by ``delimiter=``.

Parquet data may be a **dataset** of files: a directory (Spark's and
pyarrow's ``write_to_dataset`` layouts, hive-partitioned ``key=value/``
directories included) or a glob pattern (``data/*.parquet``,
``data/**/*.parquet``), read through ``pyarrow.dataset`` as one table in
the order of :func:`data_files` (sorted by path; names starting with ``.`` or
``_`` left out). Hive partition keys are columns: usable as the target, id
or weight, or as features when named, but never default features (they say
how the files are stored; a key such as ``date=2024-05-01`` is no number).
CSV, ``.npy``, ``.npz`` and svmlight data are one file each.

pyarrow (the ``io`` extra) is needed for CSV, Parquet and svmlight; ``.npy``
and ``.npz`` need only NumPy. Why pyarrow: its CSV reader parses a
million-row file on all cores with exact float parsing, reads only the
requested columns, and its Parquet reader is the reference implementation.

svmlight/libsvm files are read into a **CSR matrix** (``scipy.sparse.csr_matrix``,
canonical: sorted indices without repeats, int32 indices when they fit),
parsed a block of lines at a time by :mod:`gpulogreg._svmlight` (a Numba
tokenizer; pyarrow's exact string-to-float casts), so that neither the file
nor anything of ``n_rows x n_features`` size is ever held: :func:`read_data`
keeps the CSR matrix, :func:`iter_batches` only a chunk of it. Indices are
detected as zero- or one-based like scikit-learn's ``load_svmlight_file``
(``zero_based="auto"``: one-based unless index 0 occurs); ``qid:`` fields
and ``#`` comments are ignored. Unlike scikit-learn, a line's indices may
come in any order (they are sorted); an index repeated on a line is refused,
as scikit-learn refuses it. svmlight errors name the line (from 1).

Every refusal is a :class:`DataError` (a ``ValueError`` and a
:class:`gpulogreg.InputError`) or ``FileNotFoundError`` naming the file and,
where there is one, the column and the row (0-based, header excluded; in a
dataset, counted over all its files): a non-numeric feature column, a
missing column, a missing value, NaN or infinity.

Standard input (``path="-"``) is read as CSV (or svmlight with
``format="svmlight"``), by :func:`read_data` whole and by :func:`iter_batches`
as it comes; Parquet, ``.npy`` and ``.npz`` need a file.

Writers
-------
:func:`open_predictions` gives a :class:`PredictionWriter` that writes
prediction columns batch by batch as CSV, TSV, JSON lines or Parquet (chosen
by the extension or ``format``), to a file, atomically, or to standard output
(``"-"``); :func:`write_predictions` writes one batch of them.
:func:`atomic_write` (from :mod:`gpulogreg._files`, re-exported here) is the
one way every output file of the package is written: a temporary file in the
destination's directory, flushed and fsynced, then renamed over the
destination, so a failure leaves no partial file and an existing file
untouched.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from io import BufferedReader, BytesIO, RawIOBase
from pathlib import Path
from typing import IO, Any

import numpy as np

from gpulogreg import _svmlight
from gpulogreg._errors import DataError, InputValueError, MissingDependencyError
from gpulogreg._files import atomic_write
from gpulogreg._svmlight import Survey as SvmlightSurvey

__all__ = [
    "OUTPUT_FORMATS",
    "STDIO",
    "DataError",
    "MissingDependencyError",
    "PredictionWriter",
    "SizeEstimate",
    "SparseNpzHeader",
    "SvmlightSurvey",
    "Table",
    "atomic_write",
    "column_names",
    "data_files",
    "detect_format",
    "estimate_size",
    "feature_columns",
    "is_multi_file",
    "is_sparse_npz",
    "iter_batches",
    "line_bytes",
    "open_predictions",
    "output_format",
    "read_data",
    "read_svmlight",
    "sparse_npz_header",
    "svmlight_survey",
    "write_predictions",
]

PathLike = str | os.PathLike[str]

#: The path that means standard input to the readers (CSV, the default, and
#: svmlight) and standard output to :func:`open_predictions`.
STDIO = "-"
#: Formats read from standard input: those read front to back (Parquet needs
#: its footer first, ``.npy`` and ``.npz`` a file to map or unzip).
_STDIN_FORMATS = ("csv", "svmlight")

#: Extensions (lower case) -> format name. ``.txt`` is svmlight by convention
#: of the LIBSVM data sets; pass ``format=`` for anything else.
_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".csv.bz2": "csv",
    ".tsv": "csv",
    ".tsv.gz": "csv",
    ".tsv.bz2": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".npz": "npz",
    **{
        name + packed: "svmlight"
        for name in (".svm", ".svmlight", ".libsvm", ".txt")
        for packed in ("", ".gz", ".bz2")
    },
}
FORMATS = ("csv", "parquet", "npy", "npz", "svmlight")
#: CSV names whose fields are separated by tabs when no delimiter is given.
_TAB_SEPARATED = (".tsv", ".tsv.gz", ".tsv.bz2")
#: Characters that make a path a glob pattern (when no file has that very name).
_GLOB_CHARS = frozenset("*?[")
#: Names that a directory or a glob leaves out, as pyarrow.dataset does: hidden
#: files and the markers of other tools (``_SUCCESS``, ``_metadata``, ...).
_SKIPPED_PREFIXES = (".", "_")
#: Rows per block when transposing columns into the row-major ``X``: a block
#: of rows (8192 x n_features floats, 6.5 MB at 100 float64 columns) stays in
#: cache while every column is written into it. Writing whole columns into a
#: million-row ``X`` instead was 5-20x slower (one cache line and often one TLB
#: entry per element).
_TRANSPOSE_BLOCK_ROWS = 8192
#: Default rows per chunk of :func:`iter_batches` (about 50 MB at 100 float64 columns).
DEFAULT_CHUNK_ROWS = 65536
#: Bytes a streamed Parquet read buffers per column, instead of pre-buffering a
#: row group's column chunks whole, which is what a whole-file read wants; read
#: by batches, that held 2-3x the batch in memory (measured: 1,000,000 x 50
#: float32 in 250,000-row groups, 167,772-row batches: a peak pool of 288 MB
#: pre-buffered, 147 MB through 1 MiB buffers, 101 MB through 64 KiB buffers,
#: equally fast).
_PARQUET_STREAM_BUFFER = 1 << 16


@dataclass
class Table:
    """What the readers return.

    Attributes
    ----------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_rows, n_features), float32 or float64
        C-contiguous; may be a read-only memory map (``.npy`` input without
        column selection). svmlight files give a canonical CSR matrix.
    y : ndarray of shape (n_rows,) or None
        Target column when one was asked for (any label type).
    feature_names : list of str
        Column names (``"x0", "x1", ...`` for ``.npy`` and ``.npz`` data; for
        svmlight files only those of ``features`` when given, else none: the
        columns are indices, and a file may have millions of them).
    ids : ndarray of shape (n_rows,) or None
        The ``id_column`` when one was asked for.
    weights : ndarray of shape (n_rows,) or None
        The ``weight_column`` (sample weights) when one was asked for.
    reading_options : dict
        The keyword arguments of :func:`read_data` that decide what the file
        means and were settled while reading it (svmlight: ``zero_based``, as
        detected). Pass them when reading more files of the same data, e.g.
        the test file of a model fitted on this one, so that they are read
        the same way (the CLI stores them in the model file and does so).
    """

    X: np.ndarray
    y: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    ids: np.ndarray | None = None
    weights: np.ndarray | None = None
    reading_options: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])


# --------------------------------------------------------------------------- helpers
def _pyarrow(what: str) -> Any:
    """Import pyarrow or explain which extra installs it."""
    try:
        import pyarrow
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs pyarrow: pip install 'gpulogreg[io]' (or pip install pyarrow)"
        ) from None
    return pyarrow


def detect_format(path: PathLike, format: str | None = None) -> str:
    """Format name of ``path`` from its extension, or the explicit ``format``.

    Standard input (``"-"``) is CSV unless ``format`` says otherwise. A
    directory has the format that the extensions of its files name (see
    :func:`data_files`), a glob pattern the one its own extension names.

    Raises
    ------
    DataError
        Unknown extension (the message lists the known ones) or unknown format.
    """
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        return format
    if os.fspath(path) == STDIO:
        return "csv"
    if os.path.isdir(path):
        found = {_format_from_name(f) for f in data_files(path)}
        if len(found) == 1 and None not in found:
            return str(found.pop())
        raise DataError(
            f"{path}: cannot tell the format of the directory's files from their extensions; "
            "give the format (--format parquet)"
        )
    fmt = _format_from_name(path)
    if fmt is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise DataError(f"{path}: cannot tell the format from the extension (known: {known})")
    return fmt


def _format_from_name(path: PathLike) -> str | None:
    name = Path(path).name.lower()
    for ext in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return _EXTENSIONS[ext]
    return None


def is_multi_file(path: PathLike) -> bool:
    """Whether ``path`` names a set of files: a directory, or a glob pattern that is no file."""
    p = os.fspath(path)
    return os.path.isdir(p) or (not os.path.exists(p) and any(c in _GLOB_CHARS for c in p))


def data_files(path: PathLike) -> list[str]:
    """The files that ``path`` names, in the order their rows are read.

    A file names itself. A directory names every file below it, at any depth
    (hive partitions ``key=value/`` included), a glob pattern (``*``, ``?``,
    ``[...]``; ``**`` for any depth) the files it matches; both sorted by
    path and without names (of files or directories) that start with ``.``
    or ``_`` (``_SUCCESS``, ``_metadata``, hidden files), as pyarrow.dataset
    leaves them out.

    Raises
    ------
    FileNotFoundError
        No such file, or a glob that matches no file.
    DataError
        A directory without data files.
    """
    p = os.fspath(path)
    if not is_multi_file(p):
        _check_file(p)
        return [p]
    base = _base_dir(p)
    if os.path.isdir(p):
        found = [os.path.join(root, name) for root, _, names in os.walk(p) for name in names]
    else:
        found = [f for f in glob.glob(p, recursive=True) if os.path.isfile(f)]
    files = sorted(f for f in found if not _skipped(os.path.relpath(f, base)))
    if not files:
        if os.path.isdir(p):
            raise DataError(f"{path}: the directory holds no data files")
        raise FileNotFoundError(f"no such file: nothing matches {path}")
    return files


def _base_dir(path: str) -> str:
    """The directory a set of files is under: the directory itself, or a glob's fixed part."""
    if os.path.isdir(path):
        return path
    parts = Path(path).parts
    fixed = next(i for i, part in enumerate(parts) if any(c in _GLOB_CHARS for c in part))
    return str(Path(*parts[:fixed])) if fixed else "."


def _skipped(relative: str) -> bool:
    return any(part.startswith(_SKIPPED_PREFIXES) for part in Path(relative).parts)


def _check_file(path: PathLike, fmt: str | None = None) -> Path:
    """``path`` as a Path, once it is known to be a file (or standard input, for ``fmt``)."""
    if os.fspath(path) == STDIO:
        if fmt is not None and fmt not in _STDIN_FORMATS:
            raise DataError(f"{fmt} data cannot be read from standard input; give a file")
        return Path(STDIO)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if p.is_dir():
        raise DataError(f"{path} is a directory, not a data file")
    return p


def _check_source(path: str, fmt: str, delimiter: str | None) -> None:
    """Refuse what ``fmt`` cannot read: a missing file, several files not Parquet, a delimiter."""
    if delimiter is not None and fmt != "csv":
        raise DataError(f"{path}: a delimiter is for CSV files, not {fmt}")
    if not is_multi_file(path):
        _check_file(path, fmt)
    elif fmt != "parquet":
        raise DataError(
            f"{path}: a directory or a glob is read as a Parquet dataset, not as {fmt} files; "
            "name one file"
        )


def _parse_features(features: str | Sequence[Any] | None) -> list[Any] | None:
    """Accept ``"a,b,c"`` or a sequence; None means every column but target and id."""
    if features is None:
        return None
    if isinstance(features, str):
        items = [f.strip() for f in features.split(",") if f.strip()]
    else:
        items = list(features)
    if not items:
        raise DataError("the feature list is empty")
    if len(set(map(str, items))) != len(items):
        raise DataError(f"the feature list names a column twice: {items}")
    return items


def _resolve_columns(
    path: PathLike,
    names: list[str],
    *,
    target: str | None,
    features: list[Any] | None,
    id_column: str | None,
    weight_column: str | None,
    partitions: Sequence[str] = (),
) -> list[str]:
    """Feature column names, checking that every requested column exists.

    ``partitions`` (the keys of a hive-partitioned dataset) are columns like
    the others when named, but never among the default features: they say
    how the files are stored, not what a row holds.
    """
    available = set(names)
    for role, col in (("target", target), ("id", id_column), ("weight", weight_column)):
        if col is not None and col not in available:
            raise DataError(f"{path}: {role} column {col!r} not found (columns: {_show(names)})")
    if features is None:
        excluded = {target, id_column, weight_column, *partitions}
        feats = [n for n in names if n not in excluded]
        if not feats:
            raise DataError(f"{path}: no feature columns left besides the target, id and weight")
        return feats
    feats = [str(f) for f in features]
    missing = [f for f in feats if f not in available]
    if missing:
        raise DataError(
            f"{path}: feature column {missing[0]!r} not found (columns: {_show(names)})"
        )
    for role, col in (("target", target), ("weight", weight_column)):
        if col is not None and col in feats:
            raise DataError(f"{path}: column {col!r} is both the {role} and a feature")
    return feats


def _show(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _target_dtype(dtype: Any) -> np.dtype[Any] | None:
    if dtype is None:
        return None
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise DataError(f"dtype must be float32 or float64, got {dt}")
    return dt


# --------------------------------------------------------------------------- arrow -> numpy
def _is_numeric_type(pa: Any, t: Any) -> bool:
    types = pa.types
    return bool(
        types.is_integer(t) or types.is_floating(t) or types.is_boolean(t) or types.is_decimal(t)
    )


def _arrow_to_matrix(
    table: Any,
    features: list[str],
    dtype: np.dtype[Any] | None,
    *,
    path: PathLike,
    row_offset: int = 0,
) -> np.ndarray:
    """Row-major float matrix from the feature columns of a pyarrow Table.

    Types and nulls are checked first (both from metadata), then the columns
    are transposed into ``X`` one block of rows at a time, all columns per
    block, so that the block stays in cache while it is written; each block
    is checked for NaN/inf right after. Errors name the column and the row.
    ``dtype`` None gives float32 when every feature column is float32 and
    float64 otherwise.
    """
    pa = _pyarrow("reading tables")
    pc = __import__("pyarrow.compute", fromlist=["compute"])
    selected = table.select(features)
    for name, col in zip(features, selected.columns, strict=True):
        if not _is_numeric_type(pa, col.type):
            raise DataError(f"{path}: column {name!r} is not numeric (type {col.type})")
        if col.null_count:
            row = int(pc.index(pc.is_null(col), True).as_py())
            raise DataError(
                f"{path}: column {name!r} has a missing value at row {row + row_offset}"
            )
    if any(pa.types.is_decimal(c.type) for c in selected.columns):
        selected = pa.table(
            [c.cast(pa.float64()) if pa.types.is_decimal(c.type) else c for c in selected.columns],
            names=features,
        )
    if dtype is None:
        all_f32 = all(pa.types.is_float32(c.type) for c in selected.columns)
        dtype = np.dtype(np.float32 if all_f32 else np.float64)
    X = np.empty((table.num_rows, len(features)), dtype=dtype)
    start = 0
    for batch in selected.to_batches(max_chunksize=_TRANSPOSE_BLOCK_ROWS):
        stop = start + batch.num_rows
        block = X[start:stop]
        for j, col in enumerate(batch.columns):
            block[:, j] = col.to_numpy(zero_copy_only=False)
        finite = np.isfinite(block)
        if not finite.all():
            r, c = (int(i) for i in np.argwhere(~finite)[0])
            raise DataError(
                f"{path}: column {features[c]!r} contains {block[r, c]} at row "
                f"{start + r + row_offset}"
            )
        start = stop
    return X


def _arrow_column_to_numpy(col: Any, *, path: PathLike, name: str, row_offset: int) -> np.ndarray:
    """A target or id column as a NumPy array (strings become a 'U' array, never objects)."""
    pa = _pyarrow("reading tables")
    pc = __import__("pyarrow.compute", fromlist=["compute"])
    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise DataError(f"{path}: column {name!r} has a missing value at row {row + row_offset}")
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.asarray(col.to_pylist(), dtype=str)
    if pa.types.is_decimal(col.type):
        col = col.cast(pa.float64())
    values = np.asarray(col.to_numpy())
    if values.dtype.kind == "O":
        raise DataError(f"{path}: column {name!r} has unsupported type {col.type}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"{path}: column {name!r} contains {values[row]} at row {row + row_offset}")
    return values


def _arrow_table_to_table(
    table: Any,
    *,
    path: PathLike,
    features: list[str],
    target: str | None,
    id_column: str | None,
    weight_column: str | None,
    dtype: np.dtype[Any] | None,
    row_offset: int = 0,
) -> Table:
    X = _arrow_to_matrix(table, features, dtype, path=path, row_offset=row_offset)
    y = (
        _arrow_column_to_numpy(table.column(target), path=path, name=target, row_offset=row_offset)
        if target is not None
        else None
    )
    ids, weights = (
        _arrow_column_to_numpy(table.column(col), path=path, name=col, row_offset=row_offset)
        if col is not None
        else None
        for col in (id_column, weight_column)
    )
    return Table(X=X, y=y, feature_names=list(features), ids=ids, weights=weights)


# --------------------------------------------------------------------------- standard input
class _Prefixed(RawIOBase):
    """A stream that yields ``head`` and then what is left of ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Stdin:
    """Standard input, read once, its first block kept for the CSV schema.

    pyarrow infers a CSV file's column types from its first block, and the
    readers open a file twice for that (:class:`_CsvSource`'s schema, then
    its reader); a pipe can be read only once. So the first block is read ahead
    and kept: the schema is inferred from it (its complete lines, as pyarrow
    cuts a block of a file), and the one reader gets it back, then the rest.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        from pyarrow import csv

        self.stream = stream
        self.block_size = csv.ReadOptions().block_size
        self.head = stream.read(self.block_size)  # less only when that is all there is
        self.taken = False

    def first_block(self) -> IO[bytes]:
        """The complete lines of the first block (all of it when that is the whole input)."""
        end = len(self.head)
        if end == self.block_size:
            end = self.head.rfind(b"\n") + 1 or end
        return BytesIO(self.head[:end])

    def take(self) -> IO[bytes]:
        """The whole input, once."""
        if self.taken:
            raise DataError(f"{STDIO}: standard input was read already")
        self.taken = True
        return BufferedReader(_Prefixed(self.head, self.stream))


_stdin_state: list[_Stdin] = []


def _stdin() -> _Stdin:
    """The :class:`_Stdin` of the current ``sys.stdin`` (made on first use)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise DataError(f"{STDIO}: there is no standard input to read")
    if not _stdin_state or _stdin_state[0].stream is not stream:
        _stdin_state[:] = [_Stdin(stream)]
    return _stdin_state[0]


def _source(path: PathLike, *, schema_only: bool = False) -> Any:
    """What pyarrow's CSV readers open for ``path``: the path, or standard input."""
    if os.fspath(path) != STDIO:
        return path
    stdin = _stdin()
    return stdin.first_block() if schema_only else stdin.take()


# --------------------------------------------------------------------------- CSV
def _csv_delimiter(path: PathLike, delimiter: str | None) -> str:
    """The field separator: ``delimiter``, else a tab for ``.tsv`` names and a comma otherwise."""
    if delimiter is None:
        return "\t" if str(path).lower().endswith(_TAB_SEPARATED) else ","
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise DataError(
            f"the delimiter must be one character other than a quote or a newline, got "
            f"{delimiter!r}"
        )
    return delimiter


class _CsvSource:
    """A CSV file, its parse options (the delimiter) and its columns' types.

    The types of the target, id and weight columns come from the first block,
    as the streaming reader infers them (:meth:`convert_options`), so a file
    reads the same whole or in chunks: a stray ``yes`` far down a column of
    integer labels is refused by both, instead of making the whole-file
    reader infer strings (three classes) while the streaming one refuses the
    file.
    """

    #: A CSV file has no partition keys.
    partitions: tuple[str, ...] = ()
    #: The end of the message for a file without rows.
    no_rows = "the file has a header but no rows"

    def __init__(self, path: str, delimiter: str | None) -> None:
        _pyarrow("reading CSV")
        from pyarrow import csv

        self.path = path
        self.parse = csv.ParseOptions(delimiter=_csv_delimiter(path, delimiter))
        try:
            with csv.open_csv(_source(path, schema_only=True), parse_options=self.parse) as reader:
                self.schema = reader.schema
        except Exception as exc:
            raise _translate_arrow_error(exc, path, None) from None
        self.names: list[str] = list(self.schema.names)

    def convert_options(
        self, features: list[str], needed: list[str], weight_column: str | None
    ) -> Any:
        """Every column read is given its type.

        Features and weights are float64; the target and the id keep the type
        inferred from the first block (a column of nothing but missing values
        there reads as strings, so that its first value is named as missing).
        Empty strings and the usual null markers are missing values in every
        column, labels included.
        """
        pa = _pyarrow("reading CSV")
        from pyarrow import csv

        types = {}
        for name in needed:
            inferred = self.schema.field(name).type
            types[name] = pa.string() if pa.types.is_null(inferred) else inferred
        floats = (*features, weight_column)
        types.update({name: pa.float64() for name in floats if name is not None})
        return csv.ConvertOptions(
            include_columns=needed, column_types=types, strings_can_be_null=True
        )

    def read(self, features: list[str], needed: list[str], weight_column: str | None) -> Any:
        """The needed columns of the whole file (a pyarrow Table)."""
        from pyarrow import csv

        convert = self.convert_options(features, needed, weight_column)
        try:
            return csv.read_csv(
                _source(self.path), parse_options=self.parse, convert_options=convert
            )
        except Exception as exc:
            raise self.error(exc, convert) from None

    def batches(
        self, features: list[str], needed: list[str], weight_column: str | None, chunk_rows: int
    ) -> Iterator[Any]:
        """Record batches of the needed columns, from pyarrow's streaming reader."""
        from pyarrow import csv

        convert = self.convert_options(features, needed, weight_column)
        try:
            reader = csv.open_csv(
                _source(self.path), parse_options=self.parse, convert_options=convert
            )
        except Exception as exc:
            raise self.error(exc, convert) from None
        return _guard_arrow(iter(reader), lambda exc: self.error(exc, convert))

    def error(self, exc: Exception, convert: Any) -> Exception:
        return _translate_arrow_error(exc, self.path, self.names, convert, self.parse)


_CSV_COLUMN = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?(.*)")
_CSV_ROW = re.compile(r"Row #(\d+)")
_CSV_CONVERSION = re.compile(r"CSV conversion error to (\S+): invalid value (.*)")


def _translate_arrow_error(
    exc: Exception,
    path: PathLike,
    names: list[str] | None,
    convert: Any = None,
    parse: Any = None,
) -> Exception:
    """Turn a pyarrow parsing error into a DataError naming the column (and the row).

    pyarrow's multithreaded readers do not say in which row a value failed to
    convert; given the ``convert`` (and ``parse``) options that failed, the
    one column is read again, single-threaded, to find it (on this error
    path only).
    """
    if isinstance(exc, (DataError, FileNotFoundError, MissingDependencyError)):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = _CSV_COLUMN.search(text)
    if match and names is not None and int(match.group(1)) < len(names):
        name = names[int(match.group(1))]
        detail = match.group(2)
        conversion = _CSV_CONVERSION.search(detail)
        if conversion is None:
            return DataError(f"{path}: column {name!r}: {detail}")
        type_name, value = conversion.group(1), conversion.group(2).strip()
        rereadable = convert is not None and os.fspath(path) != STDIO
        row = _failing_row(path, name, convert, parse) if rereadable else None
        at = "" if row is None else f" at row {row}"
        if type_name == "double":
            return DataError(f"{path}: column {name!r} is not numeric (value {value}{at})")
        return DataError(
            f"{path}: column {name!r} holds {value}{at}, but its first rows read as "
            f"{type_name} (a column holds values of one type)"
        )
    if "Empty CSV file" in text:
        return DataError(f"{path}: the file is empty")
    return DataError(f"{path}: cannot read: {text}")


def _failing_row(path: PathLike, name: str, convert: Any, parse: Any) -> int | None:
    """The row (0-based, header excluded) where column ``name`` fails to convert."""
    from pyarrow import csv

    try:
        csv.read_csv(
            path,
            read_options=csv.ReadOptions(use_threads=False),
            parse_options=parse,
            convert_options=csv.ConvertOptions(
                include_columns=[name],
                column_types={name: convert.column_types[name]},
                strings_can_be_null=True,
            ),
        )
    except Exception as exc:
        row = _CSV_ROW.search(str(exc))
        return int(row.group(1)) - 2 if row else None  # pyarrow counts from 1, header included
    return None


# --------------------------------------------------------------------------- Parquet
class _ParquetFile:
    """One Parquet file, read with ``pyarrow.parquet.ParquetFile`` (selected columns only)."""

    #: A file has no partition keys.
    partitions: tuple[str, ...] = ()
    no_rows = "the file has no rows"

    def __init__(self, path: str) -> None:
        _pyarrow("reading Parquet")
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except Exception as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        self.names: list[str] = list(self.file.schema_arrow.names)

    def read(self, features: list[str], needed: list[str], weight_column: str | None) -> Any:
        """The needed columns of every row (a pyarrow Table)."""
        try:
            return self.file.read(columns=needed)
        except Exception as exc:
            raise self.error(exc) from None

    def batches(
        self, features: list[str], needed: list[str], weight_column: str | None, chunk_rows: int
    ) -> Iterator[Any]:
        """Record batches of at most ``chunk_rows`` rows of the needed columns.

        Read through a file opened with small column buffers
        (:data:`_PARQUET_STREAM_BUFFER`) and no pre-buffering.
        """
        import pyarrow.parquet as pq

        streamed = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=_PARQUET_STREAM_BUFFER)
        scan = streamed.iter_batches(batch_size=chunk_rows, columns=needed)
        return _guard_arrow(scan, self.error)

    def error(self, exc: Exception) -> Exception:
        if isinstance(exc, (DataError, FileNotFoundError, MissingDependencyError)):
            return exc
        return DataError(f"{self.path}: cannot read: {_first_line(exc)}")


class _ParquetDataset(_ParquetFile):
    """Parquet files read as one table: a directory (hive-partitioned or not) or a glob.

    Read through ``pyarrow.dataset`` in the order of :func:`data_files`, with
    the schema of the first file; the keys of hive partitions
    (``label=1/part-0.parquet``) are columns, listed in ``partitions``.
    Streaming reads one file and one batch ahead, so that memory stays
    bounded by a few chunks.
    """

    no_rows = "the dataset has no rows"

    def __init__(self, path: str) -> None:
        _pyarrow("reading Parquet")
        import pyarrow.dataset as ds

        self.path = path
        try:
            self.dataset = ds.dataset(
                data_files(path),
                format="parquet",
                partitioning="hive",
                partition_base_dir=_base_dir(path),
            )
        except (DataError, FileNotFoundError):
            raise
        except Exception as exc:
            raise DataError(
                f"{path}: not a readable Parquet dataset ({_first_line(exc)})"
            ) from None
        self.names = list(self.dataset.schema.names)
        # The partition keys: the columns that the files themselves do not hold.
        stored = set(next(self.dataset.get_fragments()).physical_schema.names)
        self.partitions = tuple(name for name in self.names if name not in stored)

    def read(self, features: list[str], needed: list[str], weight_column: str | None) -> Any:
        try:
            return self.dataset.to_table(columns=needed)
        except Exception as exc:
            raise self.error(exc) from None

    def batches(
        self, features: list[str], needed: list[str], weight_column: str | None, chunk_rows: int
    ) -> Iterator[Any]:
        import pyarrow.dataset as ds

        buffered = ds.ParquetFragmentScanOptions(
            pre_buffer=False, use_buffered_stream=True, buffer_size=_PARQUET_STREAM_BUFFER
        )
        scan = self.dataset.to_batches(
            columns=needed,
            batch_size=chunk_rows,
            batch_readahead=1,
            fragment_readahead=1,
            fragment_scan_options=buffered,
        )
        return _guard_arrow(iter(scan), self.error)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_TableSource = _CsvSource | _ParquetFile


def _table_source(path: str, fmt: str, delimiter: str | None) -> _TableSource:
    if fmt == "csv":
        return _CsvSource(path, delimiter)
    return _ParquetDataset(path) if is_multi_file(path) else _ParquetFile(path)


def _select_columns(
    source: _TableSource,
    *,
    target: str | None,
    features: list[Any] | None,
    id_column: str | None,
    weight_column: str | None,
) -> tuple[list[str], list[str]]:
    """``(feature columns, every column to read)`` of a table source (see _resolve_columns)."""
    names = source.names
    feats = _resolve_columns(
        source.path,
        names,
        target=target,
        features=features,
        id_column=id_column,
        weight_column=weight_column,
        partitions=source.partitions,
    )
    needed = [c for c in (id_column, weight_column, *feats, target) if c is not None]
    counts = Counter(names)
    doubled = next((name for name in needed if counts[name] > 1), None)
    if doubled is not None:
        raise DataError(
            f"{source.path}: column name {doubled!r} appears {counts[doubled]} times in the "
            "file; rename the columns so that each name is used once"
        )
    return feats, needed


def _read_table(
    source: _TableSource,
    *,
    target: str | None,
    features: list[Any] | None,
    id_column: str | None,
    weight_column: str | None,
    dtype: np.dtype[Any] | None,
) -> Table:
    feats, needed = _select_columns(
        source,
        target=target,
        features=features,
        id_column=id_column,
        weight_column=weight_column,
    )
    table = source.read(feats, needed, weight_column)
    if table.num_rows == 0:
        raise DataError(f"{source.path}: {source.no_rows}")
    return _arrow_table_to_table(
        table,
        path=source.path,
        features=feats,
        target=target,
        id_column=id_column,
        weight_column=weight_column,
        dtype=dtype,
    )


# --------------------------------------------------------------------------- .npy / .npz
def _column_index(path: PathLike, spec: Any, n_cols: int, role: str) -> int:
    try:
        j = int(spec)
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: {role} must be a column index for .npy data, got {spec!r}"
        ) from None
    if not -n_cols <= j < n_cols:
        raise DataError(f"{path}: {role} column {j} out of range for {n_cols} columns")
    return j % n_cols


def _numeric_matrix(
    path: PathLike, X: np.ndarray, dtype: np.dtype[Any] | None, row_offset: int = 0
) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: the array is not numeric (dtype {X.dtype})")
    if X.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array, got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: the array is empty (shape {X.shape})")
    target = dtype or (X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64))
    if X.dtype != target or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=target)
    _check_finite_matrix(path, X, row_offset)
    return X


def _check_finite_matrix(path: PathLike, X: np.ndarray, row_offset: int = 0) -> None:
    """Name the first NaN/inf entry, scanning in row blocks (X may be a memory map)."""
    if X.dtype.kind != "f":
        return
    block = 1 << 16  # rows per block: bounds the temporary boolean mask
    for start in range(0, X.shape[0], block):
        chunk = X[start : start + block]
        finite = np.isfinite(chunk)
        if not finite.all():
            r, c = (int(i) for i in np.argwhere(~finite)[0])
            raise DataError(
                f"{path}: column {c} contains {chunk[r, c]} at row {row_offset + start + r}"
            )


def _load_npy(path: PathLike) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a plain .npy array ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: not a .npy file ({exc})") from None


def _read_npy(
    path: PathLike,
    *,
    target: Any,
    features: list[Any] | None,
    id_column: Any,
    weight_column: Any,
    dtype: np.dtype[Any] | None,
    rows: tuple[int, int] | None = None,
) -> Table:
    """The file whole (``X`` the memory map itself when every column is a feature), or
    the ``rows`` ``(start, stop)`` copied out of a map that is dropped when they are read.
    """
    arr = _load_npy(path)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array, got shape {arr.shape}")
    n_rows, n_cols = arr.shape
    start, stop = rows if rows is not None else (0, n_rows)
    # A part is copied, so that no array of it keeps the map (and the file's pages) alive.
    take = np.asarray if rows is None else np.array
    if rows is not None:
        arr = arr[start:stop]
    y = None
    used: set[int] = set()
    if target is not None:
        if str(target).lower().endswith(".npy"):
            labels = _load_npy(_check_file(target, "npy"))
            if labels.ndim != 1 or labels.shape[0] != n_rows:
                raise DataError(
                    f"{target}: expected {n_rows} labels (1-D), got shape {labels.shape}"
                )
            y = take(labels[start:stop])
        else:
            t = _column_index(path, target, n_cols, "target")
            y = take(arr[:, t])
            used.add(t)
    ids, weights = None, None
    if id_column is not None:
        i = _column_index(path, id_column, n_cols, "id")
        ids = take(arr[:, i])
        used.add(i)
    if weight_column is not None:
        i = _column_index(path, weight_column, n_cols, "weight")
        weights = take(arr[:, i])
        used.add(i)
    if features is not None:
        cols = [_column_index(path, f, n_cols, "feature") for f in features]
        if used & set(cols):
            raise DataError(f"{path}: a column is both a feature and the target/id/weight")
    else:
        cols = [j for j in range(n_cols) if j not in used]
    if cols != list(range(n_cols)):
        X = np.asarray(arr[:, cols])
    else:  # the whole file: the memory map itself (no copy unless the dtype must change)
        X = arr if rows is None else np.array(arr)
    if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(f"{path}: the target contains {y[row]} at row {start + row}")
    X = _numeric_matrix(path, X, dtype, row_offset=start)
    return Table(X=X, y=y, feature_names=[f"x{j}" for j in cols], ids=ids, weights=weights)


def _iter_npy(path: PathLike, *, chunk_rows: int, **columns: Any) -> Iterator[Table]:
    """A ``.npy`` file by ``chunk_rows`` rows, each read from a map of its own (see _read_npy)."""
    n_rows = int(_load_npy(path).shape[0])
    for start in range(0, n_rows, chunk_rows):
        yield _read_npy(path, rows=(start, min(start + chunk_rows, n_rows)), **columns)


def _read_npz(
    path: PathLike,
    *,
    target: Any,
    features: list[Any] | None,
    id_column: Any,
    weight_column: Any,
    dtype: np.dtype[Any] | None,
) -> Table:
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive")
    with npz:
        keys = list(npz.files)
        y_key = target if target is not None else None
        x_candidates = [k for k in keys if k not in {y_key, id_column, weight_column}]
        x_key = "X" if "X" in keys else (x_candidates[0] if len(x_candidates) == 1 else None)
        if x_key is None:
            raise DataError(f"{path}: no array named 'X' (arrays: {_show(keys)})")
        for role, key in (("target", y_key), ("id", id_column), ("weight", weight_column)):
            if key is not None and key not in keys:
                raise DataError(f"{path}: {role} array {key!r} not found (arrays: {_show(keys)})")
        try:
            X = npz[x_key]
            y = npz[y_key] if y_key is not None else None
            ids = npz[id_column] if id_column is not None else None
            weights = npz[weight_column] if weight_column is not None else None
        except ValueError as exc:
            raise DataError(f"{path}: refused ({exc})") from None
    if X.ndim != 2:
        raise DataError(f"{path}: array {x_key!r} must be 2-D, got shape {X.shape}")
    cols = list(range(X.shape[1]))
    if features is not None:
        cols = [_column_index(path, f, X.shape[1], "feature") for f in features]
        X = X[:, cols]
    X = _numeric_matrix(path, X, dtype)
    for name, arr in (("target", y), ("id", ids), ("weight", weights)):
        if arr is not None and (arr.ndim != 1 or arr.shape[0] != X.shape[0]):
            raise DataError(f"{path}: {name} must have {X.shape[0]} entries, got {arr.shape}")
    if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(f"{path}: the target contains {y[row]} at row {row}")
    return Table(X=X, y=y, feature_names=[f"x{j}" for j in cols], ids=ids, weights=weights)


# --------------------------------------------------------------------------- sparse .npz
#: Members of a ``scipy.sparse.save_npz`` archive that every format has.
_SPARSE_NPZ_MEMBERS = frozenset({"format", "shape", "data"})


@dataclass(frozen=True)
class SparseNpzHeader:
    """What a ``scipy.sparse.save_npz`` archive holds, read from its small members and
    the headers of the large ones (nothing of the size of the matrix is read).

    Attributes
    ----------
    format : str
        ``"csr"``, ``"csc"``, ``"coo"``, ... (as saved).
    n_rows, n_features, nnz : int
    dtype : numpy.dtype
        Of the stored values.
    """

    format: str
    n_rows: int
    n_features: int
    nnz: int
    dtype: np.dtype[Any]


def _npz_names(path: PathLike) -> list[str]:
    """The array names of an ``.npz`` archive (its ``.npy`` members)."""
    import zipfile

    _check_file(path, "npz")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({_first_line(exc)})") from None
    return [n[: -len(".npy")] for n in names if n.endswith(".npy")]


def is_sparse_npz(path: PathLike) -> bool:
    """Whether an ``.npz`` file is a sparse matrix of ``scipy.sparse.save_npz``."""
    return set(_npz_names(path)) >= _SPARSE_NPZ_MEMBERS


class _NpyMember:
    """One ``.npy`` member of an open zip archive, read front to back in pieces.

    Compressed members are decompressed as they are read, so a piece costs
    its own size in memory, whatever the size of the member.
    """

    def __init__(self, archive: Any, path: PathLike, name: str) -> None:
        self.name = name
        self.path = path
        self.stream = archive.open(name + ".npy")
        try:
            version = np.lib.format.read_magic(self.stream)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(self.stream)
        except ValueError as exc:
            raise DataError(f"{path}: member {name!r} is not a .npy array ({exc})") from None
        if dtype.hasobject:
            raise DataError(f"{path}: member {name!r} holds Python objects")
        self.shape: tuple[int, ...] = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` items (a writable array in native byte order)."""
        raw = bytearray(count * self.dtype.itemsize)  # an array on it is writable
        view = memoryview(raw)
        got = 0
        while got < len(raw):
            n = self.stream.readinto(view[got:])
            if not n:
                raise DataError(f"{self.path}: member {self.name!r} ends early")
            got += n
        out = np.frombuffer(raw, dtype=self.dtype)
        return out.astype(self.dtype.newbyteorder("="), copy=False)

    def close(self) -> None:
        self.stream.close()


def sparse_npz_header(path: PathLike) -> SparseNpzHeader:
    """The format, shape, stored values and dtype of a ``scipy.sparse.save_npz`` archive.

    Raises
    ------
    DataError
        Not such an archive, or one whose members disagree.
    """
    import zipfile

    _check_file(path, "npz")
    if not is_sparse_npz(path):
        raise DataError(f"{path}: not a sparse matrix of scipy.sparse.save_npz")
    try:
        with np.load(path, allow_pickle=False) as npz:
            fmt = npz["format"].item()
            shape = npz["shape"]
    except ValueError as exc:
        raise DataError(f"{path}: refused ({exc})") from None
    fmt = fmt.decode("ascii") if isinstance(fmt, bytes) else str(fmt)
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
        raise DataError(f"{path}: the stored shape {shape.tolist()} is not a 2-D shape")
    with zipfile.ZipFile(path) as archive:
        data = _NpyMember(archive, path, "data")
        data.close()
    if len(data.shape) != 1 or data.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: the stored values must be a 1-D numeric array, got {data.dtype} "
            f"of shape {data.shape}"
        )
    return SparseNpzHeader(fmt, int(shape[0]), int(shape[1]), data.shape[0], data.dtype)


def _sparse_npz_chunks(
    path: PathLike, chunk_rows: int, dtype: np.dtype[Any] | None
) -> Iterator[tuple[int, Any]]:
    """``(first row, CSR chunk)`` of a ``save_npz`` archive, ``chunk_rows`` rows at a time.

    A CSR archive streams: its ``indptr``, ``indices`` and ``data`` members
    are read front to back, a chunk's rows at a time. Other formats store no
    rows together; they are loaded whole and converted to CSR (on every call). Every
    chunk is checked (row pointers, index range, finite values: naming the
    row and column in the whole matrix) and made canonical (sorted, repeated
    indices summed, as ``scipy.sparse`` does).
    """
    import zipfile

    import scipy.sparse as sp

    header = sparse_npz_header(path)
    n_rows, width = header.n_rows, header.n_features
    target = dtype or (
        header.dtype if header.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    )
    if header.format != "csr":
        try:
            whole = sp.load_npz(path).tocsr()
        except (ValueError, NotImplementedError) as exc:
            raise DataError(f"{path}: refused ({_first_line(exc)})") from None
        for start in range(0, n_rows, chunk_rows):
            part = whole[start : start + chunk_rows]
            yield (
                start,
                _checked_csr(path, part.data, part.indices, part.indptr, width, start, target),
            )
        return
    with zipfile.ZipFile(path) as archive:
        members = {name: _NpyMember(archive, path, name) for name in ("indptr", "indices", "data")}
        try:
            if members["indptr"].shape != (n_rows + 1,):
                raise DataError(
                    f"{path}: indptr has {members['indptr'].shape} entries for {n_rows} rows"
                )
            previous = members["indptr"].read(1)
            for start in range(0, n_rows, chunk_rows):
                pointers = np.concatenate(
                    [previous, members["indptr"].read(min(chunk_rows, n_rows - start))]
                ).astype(np.int64)
                count = int(pointers[-1] - pointers[0])
                if count < 0 or pointers[-1] > header.nnz:
                    raise DataError(f"{path}: indptr is out of order at row {start}")
                indices = members["indices"].read(count)
                data = members["data"].read(count)
                yield (
                    start,
                    _checked_csr(path, data, indices, pointers - pointers[0], width, start, target),
                )
                previous = pointers[-1:]
        finally:
            for member in members.values():
                member.close()


def _checked_csr(
    path: PathLike,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    n_features: int,
    row_offset: int,
    dtype: np.dtype[Any],
) -> Any:
    """A canonical CSR matrix of one chunk's arrays, refusing what would make it invalid."""
    import scipy.sparse as sp

    m = indptr.shape[0] - 1
    steps = np.diff(indptr)
    if (steps < 0).any() or indptr[0] != 0 or indptr[-1] != data.shape[0]:
        row = int(np.flatnonzero(steps < 0)[0]) if (steps < 0).any() else 0
        raise DataError(f"{path}: indptr is out of order at row {row_offset + row}")
    if indices.dtype.kind not in "iu":
        raise DataError(f"{path}: the column indices are not integers ({indices.dtype})")
    if data.dtype.kind not in "biuf":
        raise DataError(f"{path}: the stored values are not numeric ({data.dtype})")
    values = data.astype(dtype, copy=False)
    where = None
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n_features):
        where = int(np.flatnonzero((indices < 0) | (indices >= n_features))[0])
        what = f"the column index {int(indices[where])}, outside [0, {n_features})"
    elif values.size and not np.isfinite(values).all():
        where = int(np.flatnonzero(~np.isfinite(values))[0])
        what = f"{values[where]} in column {int(indices[where])}"
    if where is not None:
        row = int(np.searchsorted(indptr, where, side="right")) - 1
        raise DataError(f"{path}: row {row_offset + row} holds {what}")
    index = _svmlight.csr_index_dtype(int(values.shape[0]), n_features)
    X = sp.csr_matrix(
        (values, indices.astype(index, copy=False), indptr.astype(index)),
        shape=(m, n_features),
        copy=False,
    )
    X.sum_duplicates()  # sorts each row, sums its repeated indices
    X.indices, X.indptr = X.indices.astype(index, copy=False), X.indptr.astype(index, copy=False)
    return X


def _npz_side_array(
    path: PathLike, spec: Any, role: str, n_rows: int, rows: tuple[int, int] | None = None
) -> np.ndarray | None:
    """A target, id or weight for a sparse ``.npz``: a ``.npy`` file, or an array of the archive.

    ``rows`` ``(start, stop)`` reads only those entries (a ``.npy`` file is mapped).
    """
    if spec is None:
        return None
    if str(spec).lower().endswith(".npy"):
        arr = _load_npy(_check_file(spec, "npy"))
        source = str(spec)
    else:
        names = _npz_names(path)
        if str(spec) not in names:
            raise DataError(f"{path}: {role} array {spec!r} not found (arrays: {_show(names)})")
        with np.load(path, allow_pickle=False) as npz:
            try:
                arr = npz[str(spec)]
            except ValueError as exc:
                raise DataError(f"{path}: refused ({exc})") from None
        source = f"{path}: array {spec!r}"
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise DataError(f"{source}: the {role} must have {n_rows} entries, got shape {arr.shape}")
    start, stop = rows if rows is not None else (0, n_rows)
    out = np.array(arr[start:stop])
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        row = int(np.flatnonzero(~np.isfinite(out))[0])
        raise DataError(f"{source}: the {role} contains {out[row]} at row {start + row}")
    return out


def _iter_sparse_npz(
    path: str,
    *,
    target: Any,
    features: list[Any] | None,
    id_column: Any,
    weight_column: Any,
    dtype: np.dtype[Any] | None,
    chunk_rows: int,
) -> Iterator[Table]:
    """A ``save_npz`` archive as :class:`Table` chunks of CSR rows (:func:`_sparse_npz_chunks`)."""
    n_rows = sparse_npz_header(path).n_rows
    for start, X in _sparse_npz_chunks(path, chunk_rows, dtype):
        rows = (start, start + X.shape[0])
        names: list[str] = []
        if features is not None:
            cols = [_column_index(path, f, X.shape[1], "feature") for f in features]
            X = _select_sparse_columns(X, cols)
            names = [f"x{j}" for j in cols]
        y, ids, weights = (
            _npz_side_array(path, spec, role, n_rows, rows)
            for spec, role in ((target, "target"), (id_column, "id"), (weight_column, "weight"))
        )
        yield Table(X=X, y=y, feature_names=names, ids=ids, weights=weights)


def _read_sparse_npz(path: str, **columns: Any) -> Table:
    """A whole ``save_npz`` archive as one :class:`Table` (see :func:`_iter_sparse_npz`)."""
    n_rows = sparse_npz_header(path).n_rows
    if n_rows == 0:
        raise DataError(f"{path}: the matrix has no rows")
    (table,) = _iter_sparse_npz(path, chunk_rows=n_rows, **columns)
    return table


# --------------------------------------------------------------------------- svmlight
#: The name of standard input in svmlight messages ("<stdin>, line 3: ...").
_STDIN_NAME = "<stdin>"


def _check_zero_based(zero_based: Any) -> bool | str:
    if zero_based not in ("auto", True, False):
        raise InputValueError(f"zero_based must be 'auto', True or False, got {zero_based!r}")
    return "auto" if zero_based == "auto" else bool(zero_based)


def _svmlight_name(path: PathLike) -> str:
    return _STDIN_NAME if os.fspath(path) == STDIO else os.fspath(path)


@contextlib.contextmanager
def _open_text(path: PathLike) -> Iterator[IO[bytes]]:
    """The bytes of a text file: decompressed for ``.gz`` and ``.bz2`` names; ``"-"``: stdin."""
    if os.fspath(path) == STDIO:
        yield _stdin().take()
        return
    name = os.fspath(path).lower()
    with contextlib.ExitStack() as stack:
        if name.endswith(".gz"):
            import gzip

            stream: IO[bytes] = stack.enter_context(gzip.open(path, "rb"))  # type: ignore[arg-type]
        elif name.endswith(".bz2"):
            import bz2

            stream = stack.enter_context(bz2.open(path, "rb"))
        else:
            stream = stack.enter_context(open(path, "rb"))
        try:
            yield stream
        except (OSError, EOFError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            # A damaged or truncated .gz / .bz2 file, a read error.
            raise DataError(f"{path}: cannot read: {_first_line(exc)}") from None


def svmlight_survey(path: PathLike) -> SvmlightSurvey:
    """Rows, stored values and index range of an svmlight file (one pass, no value converted).

    What a streamed read needs before its first chunk: the width (the
    largest index) and the index base (whether index 0 occurs). Also a check
    of the file's structure: a malformed line is refused here, naming it.

    Raises
    ------
    DataError
        A malformed line (with its number), or a file that cannot be read.
    """
    _check_file(path, "svmlight")
    with _open_text(path) as stream:
        return _svmlight.survey(stream, _svmlight_name(path))


def read_svmlight(
    path: PathLike,
    *,
    n_features: int | None = None,
    dtype: Any = None,
    zero_based: bool | str = "auto",
) -> Table:
    """Read an svmlight/libsvm file into a CSR matrix.

    Parsed a block of lines at a time (see :mod:`gpulogreg._svmlight`); the
    file may be ``.gz`` or ``.bz2`` compressed, or ``"-"`` (standard input).
    Nothing of ``n_rows x n_features`` size is built: the memory is the CSR
    matrix, twice while its blocks are joined.

    Parameters
    ----------
    path : path, or "-"
    n_features : int, optional
        Width of ``X`` (the model's feature count when predicting); default:
        the largest index seen, plus one when zero-based.
    dtype : {None, float32, float64}
        None gives float64.
    zero_based : {"auto", True, False}
        Whether indices start at 0. "auto" (scikit-learn's default) takes
        them as one-based unless an index 0 occurs: a guess that only the
        training file can make, since a zero-based test file may well lack
        index 0. The choice made is returned in ``reading_options``; read the
        files scored by the model with it.

    Returns
    -------
    Table
        ``X`` a canonical ``scipy.sparse.csr_matrix`` of shape (n_rows,
        n_features) (sorted indices without repeats; int32 indices and row
        pointers when the stored values and the width fit, int64 otherwise),
        ``y`` the labels (int64 when they are all integers, else float64),
        no feature names (the columns are indices), ``reading_options``
        ``{"zero_based": bool}``.

    Raises
    ------
    DataError
        Naming the file and the line: see :mod:`gpulogreg._svmlight`.
    """
    _check_file(path, "svmlight")
    base = _check_zero_based(zero_based)
    dt = _target_dtype(dtype) or np.dtype(np.float64)
    with _open_text(path) as stream:
        X, y, resolved = _svmlight.read_csr(
            stream, _svmlight_name(path), n_features=n_features, zero_based=base, dtype=dt
        )
    return Table(X=X, y=y, reading_options={"zero_based": resolved})


def _iter_svmlight(
    path: str,
    *,
    n_features: int | None,
    zero_based: bool | str,
    dtype: np.dtype[Any] | None,
    chunk_rows: int,
    features: list[Any] | None,
) -> Iterator[Table]:
    """An svmlight file as CSR chunks of ``chunk_rows`` rows, parsed as they are read.

    When the width or the index base is not given, one structural pass
    (:func:`svmlight_survey`) finds them first; standard input cannot be
    read twice, so it is then read whole and sliced.
    """
    base = _check_zero_based(zero_based)
    dt = dtype or np.dtype(np.float64)
    chunks: Iterator[tuple[Any, np.ndarray]]
    if path == STDIO and (n_features is None or base == "auto"):
        table = read_svmlight(path, n_features=n_features, dtype=dt, zero_based=base)
        base = table.reading_options["zero_based"]
        y = table.y
        assert y is not None
        chunks = (
            (table.X[a : a + chunk_rows], y[a : a + chunk_rows])
            for a in range(0, table.n_rows, chunk_rows)
        )
    else:
        if n_features is None or base == "auto":
            found = svmlight_survey(path)
            base = found.zero_based(base)
            n_features = found.width(base) if n_features is None else n_features
            if n_features == 0:
                raise DataError(f"{path}: no features found (no line has an index:value pair)")
        chunks = _svmlight.iter_csr(
            lambda: _open_text(path),
            _svmlight_name(path),
            n_features=n_features,
            zero_based=bool(base),
            dtype=dt,
            chunk_rows=chunk_rows,
        )
    options = {"zero_based": bool(base)}
    names: list[str] = []
    for X, y in chunks:
        if features is not None:
            cols = [_column_index(path, f, X.shape[1], "feature") for f in features]
            X = _select_sparse_columns(X, cols)
            names = [f"x{j}" for j in cols]
        yield Table(X=X, y=y, feature_names=names, reading_options=options)


def _select_sparse_columns(X: Any, cols: list[int]) -> Any:
    """Columns ``cols`` of a CSR matrix, in that order, as a canonical CSR matrix."""
    picked = X[:, cols]
    picked.sort_indices()
    return picked


# --------------------------------------------------------------------------- public readers
def column_names(
    path: PathLike, format: str | None = None, *, delimiter: str | None = None
) -> list[str]:
    """Column names of CSV or Parquet data (reads only the header or the schema).

    A hive-partitioned dataset's partition keys are among them (last).
    """
    return _open_table(path, format, delimiter).names


def feature_columns(
    path: PathLike,
    *,
    target: Any = None,
    features: str | Sequence[Any] | None = None,
    id_column: Any = None,
    weight_column: Any = None,
    format: str | None = None,
    delimiter: str | None = None,
) -> list[str]:
    """The feature columns that :func:`read_data` and :func:`iter_batches` read.

    Reads only the header (CSV) or the schema (Parquet) and refuses what they
    refuse (missing columns, a column in two roles, duplicate names), with the
    same messages. Parameters as :func:`read_data`.
    """
    source = _open_table(path, format, delimiter)
    feats, _ = _select_columns(
        source,
        target=target,
        features=_parse_features(features),
        id_column=id_column,
        weight_column=weight_column,
    )
    return feats


def _open_table(path: PathLike, format: str | None, delimiter: str | None) -> _TableSource:
    """The CSV or Parquet source at ``path``, checked."""
    path = os.fspath(path)
    fmt = detect_format(path, format)
    if fmt not in ("csv", "parquet"):
        raise DataError(f"{path}: {fmt} files have no column names")
    _check_source(path, fmt, delimiter)
    return _table_source(path, fmt, delimiter)


@dataclass(frozen=True)
class SizeEstimate:
    """How big a file's features are, from its metadata, before it is read.

    Attributes
    ----------
    rows : int
        Exact for Parquet and ``.npy`` (their metadata say), estimated for
        CSV: the file's size over the bytes per line of its first MiB
        (decompressed for ``.gz`` and ``.bz2``), exact when that is the file.
    features : int
        Feature columns: the ``features`` given, else every column not excluded.
    itemsize : int
        Bytes per value of ``X`` as read: 4 when every feature column is
        float32 (Parquet, ``.npy``), else 8 (CSV features are read as float64).
    exact : bool
        Whether ``rows`` is exact.
    """

    rows: int
    features: int
    itemsize: int
    exact: bool


#: Bytes at the start of a CSV file whose lines estimate its number of rows.
_CSV_SAMPLE_BYTES = 1 << 20


def estimate_size(
    path: PathLike,
    *,
    format: str | None = None,
    features: str | Sequence[Any] | None = None,
    exclude: Sequence[Any] = (),
    delimiter: str | None = None,
) -> SizeEstimate | None:
    """The size of CSV, Parquet or ``.npy`` data's features (see :class:`SizeEstimate`).

    Parameters
    ----------
    path : path
        A file, or a Parquet dataset (a directory or a glob: rows from every
        file's footer).
    format : str, optional
        Default: from the extension.
    features : "a,b,c" or sequence, optional
        The feature columns (``.npy``: indices); default every column except
        ``exclude`` (and a dataset's partition keys).
    exclude : sequence
        Columns that are not features (target, id, weight); names, ``.npy``
        column indices, or anything else (ignored).
    delimiter : str, optional
        CSV only, as for :func:`read_data`.

    Returns
    -------
    SizeEstimate or None
        None for svmlight and ``.npz`` files and for standard input, whose
        size only reading them tells.
    """
    path = os.fspath(path)
    fmt = detect_format(path, format)
    if path == STDIO or fmt not in ("csv", "parquet", "npy"):
        return None
    feats = _parse_features(features)
    if fmt == "npy":
        _check_source(path, fmt, delimiter)
        arr = _load_npy(path)
        n_cols = int(arr.shape[1]) if arr.ndim == 2 else 1
        dropped = {str(e) for e in exclude} & {str(j) for j in range(-n_cols, n_cols)}
        n_features = len(feats) if feats is not None else n_cols - len(dropped)
        itemsize = 4 if arr.dtype == np.float32 else 8
        return SizeEstimate(int(arr.shape[0]), max(n_features, 1), itemsize, exact=True)
    source = _open_table(path, fmt, delimiter)
    if isinstance(source, _ParquetDataset):
        schema, rows, exact = source.dataset.schema, int(source.dataset.count_rows()), True
    elif isinstance(source, _ParquetFile):
        schema, rows, exact = source.file.schema_arrow, int(source.file.metadata.num_rows), True
    else:
        schema = source.schema
        rows, exact = _csv_rows(path)
    names = [str(f) for f in feats] if feats is not None else None
    if names is None:
        skipped = {str(e) for e in exclude} | set(source.partitions)
        names = [n for n in schema.names if n not in skipped]
    pa = _pyarrow("reading tables")
    types = [schema.field(n).type for n in names if n in schema.names]
    all_f32 = fmt == "parquet" and bool(types) and all(pa.types.is_float32(t) for t in types)
    return SizeEstimate(rows, max(len(names), 1), 4 if all_f32 else 8, exact)


def _csv_rows(path: str) -> tuple[int, bool]:
    """``(rows, exact)``: counted when the file's first MiB is the whole file, else scaled."""
    size = os.path.getsize(path)
    raw_bytes, text = _text_sample(path)
    lines = text.count(b"\n") + (not text.endswith(b"\n"))
    if raw_bytes == size:
        return max(lines - 1, 0), True  # the header is not a row
    return max(1, lines * size // max(raw_bytes, 1)), False


def _text_sample(path: str) -> tuple[int, bytes]:
    """``(bytes read, their text)``: the file's first MiB, decompressed for ``.gz`` and ``.bz2``."""
    import bz2
    import zlib

    with open(path, "rb") as f:
        raw = f.read(_CSV_SAMPLE_BYTES)
    name = path.lower()
    text = raw
    if name.endswith(".gz"):
        text = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(raw)
    elif name.endswith(".bz2"):
        text = bz2.BZ2Decompressor().decompress(raw)
    return len(raw), text


def line_bytes(path: PathLike) -> float:
    """Average bytes per line of a text file, from its first MiB (decompressed).

    Standard input (``"-"``): from the block read ahead of the readers (it
    stays there for them). What a streamed read of svmlight text sizes its
    chunks by, without a pass over the file.
    """
    if os.fspath(path) == STDIO:
        text = _stdin().head
    else:
        _check_file(path)
        text = _text_sample(os.fspath(path))[1]
    lines = text.count(b"\n") + (not text.endswith(b"\n"))
    return len(text) / max(lines, 1)


def read_data(
    path: PathLike,
    *,
    target: Any = None,
    features: str | Sequence[Any] | None = None,
    id_column: Any = None,
    weight_column: Any = None,
    dtype: Any = None,
    format: str | None = None,
    n_features: int | None = None,
    zero_based: bool | str = "auto",
    delimiter: str | None = None,
) -> Table:
    """Read a whole data file, or a Parquet dataset.

    Parameters
    ----------
    path : path
        CSV (``.csv``, ``.tsv``, either also ``.gz`` or ``.bz2``), Parquet
        (``.parquet``, ``.pq``), ``.npy``, ``.npz`` or svmlight (``.svm``,
        ``.svmlight``, ``.libsvm``, ``.txt``); ``format`` overrides the
        extension. A directory or a glob pattern is a Parquet dataset: its
        files (:func:`data_files`) read as one table, hive partition keys
        (``key=value/``) as columns (usable as target, id, weight or named
        features; never default features).
    target : str or int, optional
        Target column (CSV/Parquet: name; ``.npy``: column index or a ``.npy``
        file of labels; ``.npz``: array name, default ``"y"`` when present).
        Ignored for svmlight, whose first field is the label.
    features : "a,b,c" or sequence, optional
        Feature columns in this order; default: every column except target, id
        and weight.
    id_column : str or int, optional
        A column carried through to the predictions.
    weight_column : str or int, optional
        The column of sample weights (``Table.weights``).
    dtype : {None, "float32", "float64"}
        dtype of ``X``; None keeps float32 data as float32 and uses float64 otherwise.
    n_features : int, optional
        svmlight only: the width of ``X``.
    zero_based : {"auto", True, False}
        svmlight only: whether indices start at 0 (see :func:`read_svmlight`).
    delimiter : str, optional
        CSV only: the field separator (one character); default a tab for
        ``.tsv`` names, a comma otherwise.

    Returns
    -------
    Table
    """
    path = os.fspath(path)
    fmt = detect_format(path, format)
    _check_source(path, fmt, delimiter)
    dt = _target_dtype(dtype)
    feats = _parse_features(features)
    if fmt in ("csv", "parquet"):
        return _read_table(
            _table_source(path, fmt, delimiter),
            target=target,
            features=feats,
            id_column=id_column,
            weight_column=weight_column,
            dtype=dt,
        )
    if fmt == "npz" and target is None:
        target = _npz_default_target(path)
    if fmt == "npz" and is_sparse_npz(path):
        return _read_sparse_npz(
            path,
            target=target,
            features=feats,
            id_column=id_column,
            weight_column=weight_column,
            dtype=dt,
        )
    readers = {"npy": _read_npy, "npz": _read_npz}
    if fmt in readers:
        return readers[fmt](
            path,
            target=target,
            features=feats,
            id_column=id_column,
            weight_column=weight_column,
            dtype=dt,
        )
    _no_svmlight_columns(path, id_column, weight_column)
    table = read_svmlight(path, n_features=n_features, dtype=dt, zero_based=zero_based)
    if feats is not None:
        cols = [_column_index(path, f, table.X.shape[1], "feature") for f in feats]
        table.X = _select_sparse_columns(table.X, cols)
        table.feature_names = [f"x{j}" for j in cols]
    return table


def _no_svmlight_columns(path: PathLike, id_column: Any, weight_column: Any) -> None:
    for role, col in (("id", id_column), ("weight", weight_column)):
        if col is not None:
            raise DataError(f"{path}: svmlight files have no {role} column")


def _npz_default_target(path: PathLike) -> str | None:
    """The ``.npz`` convention: labels in an array named ``y`` when there is one."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return "y" if "y" in npz.files else None
    except Exception:
        return None


def iter_batches(
    path: PathLike,
    *,
    target: Any = None,
    features: str | Sequence[Any] | None = None,
    id_column: Any = None,
    weight_column: Any = None,
    dtype: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    delimiter: str | None = None,
    n_features: int | None = None,
    zero_based: bool | str = "auto",
) -> Iterator[Table]:
    """Yield the file as :class:`Table` chunks of at most ``chunk_rows`` rows.

    Only the selected columns are read, one chunk at a time: CSV through
    pyarrow's streaming reader (standard input too, ``path="-"``), Parquet
    files and datasets (directories, globs) by record batches, ``.npy`` by
    row ranges, each copied out of a map of its own (so the file's pages
    leave memory with the chunk), svmlight files by blocks of lines into CSR
    chunks (after a structural pass that finds the width and the index base
    when they are not given: :func:`svmlight_survey`). ``.npz`` files are
    read whole and sliced. Chunks are validated like :func:`read_data`
    (errors give the row in the whole file or dataset, the line in an
    svmlight file). Parameters as :func:`read_data`.
    """
    if chunk_rows < 1:
        raise InputValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    path = os.fspath(path)
    fmt = detect_format(path, format)
    _check_source(path, fmt, delimiter)
    dt = _target_dtype(dtype)
    feats = _parse_features(features)
    if fmt in ("csv", "parquet"):
        yield from _iter_table(
            _table_source(path, fmt, delimiter),
            target=target,
            features=feats,
            id_column=id_column,
            weight_column=weight_column,
            dtype=dt,
            chunk_rows=chunk_rows,
        )
        return
    columns = {
        "target": target,
        "features": feats,
        "id_column": id_column,
        "weight_column": weight_column,
        "dtype": dt,
    }
    if fmt == "npy":
        yield from _iter_npy(path, chunk_rows=chunk_rows, **columns)
        return
    if fmt == "npz" and is_sparse_npz(path):
        if target is None:
            columns["target"] = _npz_default_target(path)
        yield from _iter_sparse_npz(path, chunk_rows=chunk_rows, **columns)
        return
    if fmt == "svmlight":
        _no_svmlight_columns(path, id_column, weight_column)
        yield from _iter_svmlight(
            path,
            n_features=n_features,
            zero_based=zero_based,
            dtype=dt,
            chunk_rows=chunk_rows,
            features=feats,
        )
        return
    table = read_data(path, format=fmt, n_features=n_features, zero_based=zero_based, **columns)
    for start in range(0, table.n_rows, chunk_rows):
        stop = start + chunk_rows
        yield Table(
            X=table.X[start:stop],
            y=None if table.y is None else table.y[start:stop],
            feature_names=table.feature_names,
            ids=None if table.ids is None else table.ids[start:stop],
            weights=None if table.weights is None else table.weights[start:stop],
            reading_options=table.reading_options,
        )


def _iter_table(
    source: _TableSource,
    *,
    target: str | None,
    features: list[Any] | None,
    id_column: str | None,
    weight_column: str | None,
    dtype: np.dtype[Any] | None,
    chunk_rows: int,
) -> Iterator[Table]:
    pa = _pyarrow("reading tables")
    feats, needed = _select_columns(
        source,
        target=target,
        features=features,
        id_column=id_column,
        weight_column=weight_column,
    )
    batches = source.batches(feats, needed, weight_column, chunk_rows)
    offset = 0
    for table in _rechunk(pa, batches, chunk_rows):
        yield _arrow_table_to_table(
            table,
            path=source.path,
            features=feats,
            target=target,
            id_column=id_column,
            weight_column=weight_column,
            dtype=dtype,
            row_offset=offset,
        )
        offset += table.num_rows


def _guard_arrow(
    batches: Iterator[Any], translate: Callable[[Exception], Exception]
) -> Iterator[Any]:
    """The batches, with a reading error turned into a DataError by ``translate``."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise translate(exc) from None
        yield batch


def _rechunk(pa: Any, batches: Iterator[Any], chunk_rows: int) -> Iterator[Any]:
    """Regroup record batches into tables of ``chunk_rows`` rows (the last one: fewer)."""
    pending: list[Any] = []
    n_pending = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        n_pending += batch.num_rows
        while n_pending >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending = rest.to_batches() if rest.num_rows else []
            n_pending = rest.num_rows
    if n_pending:
        yield pa.Table.from_batches(pending)


# --------------------------------------------------------------------------- writers
#: Prediction file formats, by extension (lower case).
_OUTPUT_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
OUTPUT_FORMATS = ("csv", "tsv", "jsonl", "parquet")


def output_format(path: PathLike, format: str | None = None) -> str:
    """Format of a predictions file: ``format``, else from the extension (``"-"``: CSV).

    Raises
    ------
    DataError
        An unknown ``format``, or an extension that names none.
    """
    if format is not None:
        if format not in OUTPUT_FORMATS:
            raise DataError(
                f"unknown output format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}"
            )
        return format
    if os.fspath(path) == STDIO:
        return "csv"
    name = Path(path).name.lower()
    ext = next((e for e in _OUTPUT_EXTENSIONS if name.endswith(e)), None)
    if ext is None:
        *most, last = _OUTPUT_EXTENSIONS
        raise DataError(f"{path}: output must end in {', '.join(most)} or {last}")
    return _OUTPUT_EXTENSIONS[ext]


class PredictionWriter:
    """Named 1-D columns written batch by batch to an open binary file.

    CSV and TSV get a header before the first batch, JSON lines one object per
    row (``{"name": value, ...}``, in column order), Parquet one row group per
    batch (the first batch's types are the file's schema). Call :meth:`close`
    after the last batch (Parquet writes its footer then).

    Parameters
    ----------
    handle : binary file open for writing
    format : {"csv", "tsv", "jsonl", "parquet"}
    """

    def __init__(self, handle: IO[bytes], format: str) -> None:
        if format not in OUTPUT_FORMATS:
            raise DataError(f"unknown output format {format!r}")
        self._pa = _pyarrow(f"writing {format}")
        self.handle = handle
        self.format = format
        #: Rows written so far.
        self.rows = 0
        self._parquet: Any = None

    def write(self, columns: Mapping[str, Any]) -> None:
        """Append the rows of ``columns`` (name -> array of shape (n_rows,))."""
        if self.format == "jsonl":
            self.handle.write(_json_lines(columns))
            self.rows += len(next(iter(columns.values()), ()))
            return
        table = _arrow_table(self._pa, columns)
        if self.format == "parquet":
            import pyarrow.parquet as pq

            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.handle, table.schema)
            self._parquet.write_table(table)
        else:
            from pyarrow import csv

            options = csv.WriteOptions(
                include_header=self.rows == 0, delimiter="\t" if self.format == "tsv" else ","
            )
            sink = self._pa.BufferOutputStream()
            csv.write_csv(table, sink, write_options=options)
            self.handle.write(memoryview(sink.getvalue()))
        self.rows += table.num_rows

    def close(self) -> None:
        """Finish the file (the Parquet footer); the handle stays open."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def abandon(self) -> None:
        """Drop an unfinished file: its Parquet writer stops, its errors are beside the point."""
        with contextlib.suppress(Exception):
            self.close()
        self._parquet = None


def _arrow_table(pa: Any, columns: Mapping[str, Any]) -> Any:
    """A pyarrow table of named 1-D columns ('U' strings become Arrow strings)."""
    arrays = {}
    for name, values in columns.items():
        arr = np.asarray(values)
        if arr.dtype.kind == "U":
            arrays[name] = pa.array(arr.tolist(), type=pa.string())
        else:
            arrays[name] = pa.array(arr)
    return pa.table(arrays)


def _json_lines(columns: Mapping[str, Any]) -> bytes:
    """One JSON object per row, keys in column order (non-finite floats are refused)."""
    keys = [json.dumps(str(name)) + ": " for name in columns]
    values = [
        [json.dumps(v, allow_nan=False) for v in np.asarray(col).tolist()]
        for col in columns.values()
    ]
    rows = zip(*values, strict=True)
    lines = ["{" + ", ".join(k + v for k, v in zip(keys, row, strict=True)) + "}\n" for row in rows]
    return "".join(lines).encode()


@contextlib.contextmanager
def open_predictions(path: PathLike, format: str | None = None) -> Iterator[PredictionWriter]:
    """A :class:`PredictionWriter` on ``path``, written atomically, or on standard output.

    A file is written through :func:`atomic_write`: when the block raises, the
    destination keeps its old contents (or stays absent) and no partial file
    is left. ``"-"`` writes to standard output as the rows come (what a pipe
    has read cannot be taken back, so a failure there leaves the rows so far).

    Parameters
    ----------
    path : path, or "-" for standard output
    format : {None, "csv", "tsv", "jsonl", "parquet"}
        None: from the extension (:func:`output_format`).
    """
    fmt = output_format(path, format)
    with contextlib.ExitStack() as stack:
        if os.fspath(path) == STDIO:
            sys.stdout.flush()
            handle: IO[bytes] = sys.stdout.buffer
        else:
            handle = stack.enter_context(atomic_write(path))
        writer = PredictionWriter(handle, fmt)
        try:
            yield writer
        except BaseException:
            writer.abandon()
            raise
        writer.close()
        handle.flush()


def write_predictions(
    path: PathLike, columns: Mapping[str, Any], format: str | None = None
) -> None:
    """Write named 1-D columns to CSV, TSV, JSON lines or Parquet, atomically.

    Parameters
    ----------
    path : path ending in .csv, .tsv, .jsonl, .ndjson, .parquet or .pq, or "-"
    columns : mapping of column name -> array of shape (n_rows,)
        Written in this order (e.g. ``id``, ``prediction``, ``proba_<class>``).
    format : {None, "csv", "tsv", "jsonl", "parquet"}
        None: from the extension.
    """
    with open_predictions(path, format) as writer:
        writer.write(columns)
