"""How each kind of source becomes row chunks: arrays, ``.npy``, CSV, Parquet, svmlight, ``.npz``.

A :class:`ChunkSource` is what a :class:`~gpulogreg.data.dataset.Dataset` is
built from: a factory of fresh chunk iterables (one call per pass), what is
known up front (width, dtype, column names), a description for messages, a
stamp that changes with the files, and, for sources that allow it, a reader of
chunk ``i`` (mini-batch training then visits chunks in a random order).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpulogreg._array import is_sparse
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg.data.sparse import index_dtype
from gpulogreg.data.validation import _host_values, check_sample_weight, check_X

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "ChunkSource",
    "arrays",
    "npy_files",
    "sparse_npz_file",
    "svmlight_file",
    "table_file",
    "user_chunks",
]

#: Default size of one chunk of X in bytes (rows = this / bytes per row): big
#: enough that per-chunk overhead (a parallel kernel launch and its barrier, a
#: small BLAS call, an mmap) is small next to reading the chunk (measured on a
#: busy 2-core machine: ~30 ms per chunk, so 32 MB chunks cost 2x a pass and
#: 128 MB chunks 1.6x), small enough that the two or three chunks in flight
#: (double buffering) stay far below a 1 GB budget.
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: Fewest rows per default chunk (very wide data).
MIN_CHUNK_ROWS = 1024


#: Returns a fresh iterable of ``(X, y)`` or ``(X, y, sample_weight)`` chunks.
ChunkFactory = Callable[[], Iterable[Any]]


@dataclass
class ChunkSource:
    """A source of chunks and what is known about it before the first pass."""

    factory: ChunkFactory
    n_features: int | None = None
    dtype: Any = None
    feature_names: Sequence[str] | None = None
    description: str = "chunks"
    stamp: Callable[[], tuple[Any, ...]] | None = None
    in_memory: bool = False
    #: Reads chunk ``i`` (rows ``i * reader_rows ...``) directly, or None.
    reader: Callable[[int], tuple[Any, Any, Any]] | None = None
    reader_rows: int = 0
    #: What the reader settled about the files' meaning (svmlight: the index base).
    reading_options: dict[str, Any] = field(default_factory=dict)


def default_chunk_rows(n_features: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk of X takes about :data:`DEFAULT_CHUNK_BYTES`."""
    return max(MIN_CHUNK_ROWS, DEFAULT_CHUNK_BYTES // max(1, n_features * itemsize))


def sparse_chunk_rows(n_rows: int, nnz: int, n_features: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk's CSR arrays take about :data:`DEFAULT_CHUNK_BYTES`.

    A row costs its stored values and their indices, and one row pointer
    (index types by the rule of :func:`gpulogreg.data.sparse.index_dtype`).
    """
    index = index_dtype(nnz, n_features).itemsize
    row_bytes = nnz / max(n_rows, 1) * (itemsize + index) + index
    return max(MIN_CHUNK_ROWS, int(DEFAULT_CHUNK_BYTES // row_bytes))


def _float_dtype(dtype: Any, source: np.dtype[Any] | None = None) -> np.dtype[Any]:
    """float32/float64 target dtype; None keeps a float32/float64 source, else float64."""
    if dtype is None:
        if source is not None and source in (np.float32, np.float64):
            return np.dtype(source)
        return np.dtype(np.float64)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise InputValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_chunk_rows(chunk_rows: int | None) -> None:
    if chunk_rows is not None and (
        not isinstance(chunk_rows, (int, np.integer))
        or isinstance(chunk_rows, bool)
        or chunk_rows < 1
    ):
        raise InputValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")


def _file_stamp(*paths: Any) -> tuple[Any, ...]:
    """(size, mtime) of the files: a cached scan is redone when they change."""
    stamp = []
    for p in paths:
        if p is None:
            continue
        st = os.stat(p)
        stamp.append((os.fspath(p), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


# --------------------------------------------------------------------------- .npy
class _NpyFile:
    """Header of a ``.npy`` file and row-range reads that map only those rows."""

    def __init__(self, path: Any, name: str) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        with open(self.path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError as exc:
                raise InputValueError(f"{self.path} is not a .npy file ({exc})") from None
            self.offset = f.tell()
        if dtype.hasobject:
            raise InputTypeError(f"{self.path} holds Python objects; {name} must be numeric")
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.fortran = bool(fortran)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.n_rows = self.shape[0] if self.shape else 0
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        self.row_bytes = self.row_items * self.dtype.itemsize

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as an array backed by a mapping of only those rows.

        C-order files are mapped from the first byte of row ``start`` (rounded
        down to the allocation granularity), privately and writable
        (copy-on-write: the file is opened read-only and never changes; reads
        map the page-cache pages without copying them). A writable array has
        the same Numba type as an in-memory one, so no kernel is compiled
        twice. ``MADV_WILLNEED`` starts the read-ahead of the whole range. The
        mapping lives as long as the returned array: drop it after use and the
        rows leave the resident set. Fortran-order files are copied row-wise
        out of a transient whole-file map.
        """
        n = stop - start
        if n <= 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        if self.fortran:
            whole = np.load(self.path, mmap_mode="r")
            out = np.ascontiguousarray(whole[start:stop])
            del whole
            return out
        begin = self.offset + start * self.row_bytes
        aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
        length = begin - aligned + n * self.row_bytes
        with open(self.path, "rb") as f:
            mm = mmap.mmap(
                f.fileno(),
                length,
                flags=mmap.MAP_PRIVATE,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
                offset=aligned,
            )
        if hasattr(mm, "madvise") and hasattr(mmap, "MADV_WILLNEED"):
            mm.madvise(mmap.MADV_WILLNEED)
        arr = np.frombuffer(mm, dtype=self.dtype, count=n * self.row_items, offset=begin - aligned)
        return arr.reshape((n, *self.shape[1:]))


def arrays(
    X: Any, y: Any, sample_weight: Any = None, *, chunk_rows: int | None, dtype: Any
) -> ChunkSource:
    """Chunks of in-memory arrays (NumPy, CuPy or a DataFrame: views, no copies), or of a
    sparse matrix (canonical CSR once; a chunk copies its rows' stored values)."""
    _check_chunk_rows(chunk_rows)
    X, names = check_X(X, dtype=None if dtype is None else _float_dtype(dtype), accept_sparse=True)
    y = np.asarray(_host_values(y))
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputValueError(f"X has {X.shape[0]} rows but y has shape {y.shape}")
    sw = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])
    n = X.shape[0]
    if is_sparse(X):
        rows = chunk_rows or sparse_chunk_rows(n, int(X.nnz), X.shape[1], X.dtype.itemsize)
        kind = f"CSR {n} x {X.shape[1]} {X.dtype} ({X.nnz} stored)"
    else:
        rows = chunk_rows or default_chunk_rows(X.shape[1], X.dtype.itemsize)
        kind = f"arrays {n} x {X.shape[1]} {X.dtype}"

    def read(i: int) -> tuple[Any, Any, Any]:
        start, stop = i * rows, min((i + 1) * rows, n)
        return X[start:stop], y[start:stop], None if sw is None else sw[start:stop]

    return ChunkSource(
        _sequential(read, n, rows),
        n_features=int(X.shape[1]),
        dtype=X.dtype,
        feature_names=None if names is None else list(names),
        description=f"{kind}, {rows} rows per chunk",
        in_memory=True,
        reader=read,
        reader_rows=rows,
    )


def npy_files(
    X_path: Any, y_path: Any, sample_weight_path: Any, *, chunk_rows: int | None, dtype: Any
) -> ChunkSource:
    """``.npy`` files read a chunk of rows at a time, each a map of just its rows."""
    _check_chunk_rows(chunk_rows)
    fx = _NpyFile(X_path, "X")
    fy = _NpyFile(y_path, "y")
    fw = None if sample_weight_path is None else _NpyFile(sample_weight_path, "sample_weight")
    if len(fx.shape) != 2:
        raise InputValueError(f"{fx.path}: X must be 2-D, got shape {fx.shape}")
    if fx.dtype.kind not in "biuf":
        raise InputTypeError(f"{fx.path}: X must be numeric, got dtype {fx.dtype}")
    for f in (fy, fw):
        if f is None:
            continue
        if len(f.shape) != 1:
            raise InputValueError(f"{f.path}: {f.name} must be 1-D, got shape {f.shape}")
        if f.n_rows != fx.n_rows:
            raise InputValueError(
                f"{fx.path} has {fx.n_rows} rows but {f.path} has {f.n_rows} entries"
            )
    target = _float_dtype(dtype, fx.dtype)
    rows = chunk_rows or default_chunk_rows(fx.shape[1], target.itemsize)
    n = fx.n_rows

    def read(i: int) -> tuple[Any, Any, Any]:
        start, stop = i * rows, min((i + 1) * rows, n)
        return (
            fx.read_rows(start, stop),
            np.array(fy.read_rows(start, stop)),
            None if fw is None else np.array(fw.read_rows(start, stop), dtype=np.float64),
        )

    return ChunkSource(
        _sequential(read, n, rows),
        n_features=fx.shape[1],
        dtype=target,
        description=f"{fx.path} ({n} x {fx.shape[1]} {fx.dtype}), {rows} rows per chunk",
        stamp=lambda: _file_stamp(X_path, y_path, sample_weight_path),
        reader=read,
        reader_rows=rows,
    )


def table_file(
    path: Any,
    fmt: str,
    *,
    target: str,
    features: str | Sequence[str] | None,
    weight: str | None,
    chunk_rows: int | None,
    dtype: Any,
    delimiter: str | None = None,
) -> ChunkSource:
    """CSV (pyarrow's streaming reader) or Parquet (record batches), needed columns only.

    Whatever :func:`gpulogreg.io.iter_batches` reads: a file, or for Parquet a
    directory (hive-partitioned or not) or a glob, with the same column
    selection and the same refusals; the stamp covers every file.
    """
    from gpulogreg import io

    _check_chunk_rows(chunk_rows)
    path = os.fspath(path)
    feats = io.feature_columns(
        path,
        target=target,
        features=features,
        weight_column=weight,
        format=fmt,
        delimiter=delimiter,
    )
    target_dt = None if dtype is None else _float_dtype(dtype)
    read_dt = target_dt or np.dtype(np.float64)
    rows = chunk_rows or default_chunk_rows(len(feats), read_dt.itemsize)

    def source() -> Iterator[tuple[Any, Any, Any]]:
        for table in io.iter_batches(
            path,
            target=target,
            features=feats,
            weight_column=weight,
            dtype=target_dt,
            chunk_rows=rows,
            format=fmt,
            delimiter=delimiter,
        ):
            sw = None
            if weight is not None:
                sw = np.asarray(table.weights, dtype=np.float64)
            yield table.X, table.y, sw

    return ChunkSource(
        source,
        n_features=len(feats),
        dtype=target_dt,
        feature_names=feats,
        description=f"{path} ({fmt}, target {target!r}, {len(feats)} features), "
        f"{rows} rows per chunk",
        stamp=lambda: _file_stamp(*io.data_files(path)),
    )


def svmlight_file(
    path: Any,
    *,
    n_features: int | None,
    zero_based: bool | str,
    chunk_rows: int | None,
    dtype: Any,
) -> ChunkSource:
    """An svmlight file as CSR chunks, parsed a block of lines at a time on every pass.

    What the chunks need before the first pass (the width, the index base,
    rows per chunk) is given or found by one structural pass
    (:func:`gpulogreg.io.svmlight_survey`), so that every chunk has the
    file's width and every pass reads the indices alike.
    """
    from gpulogreg import io

    _check_chunk_rows(chunk_rows)
    path = os.fspath(path)
    if path == io.STDIO:
        raise InputValueError(
            "a Dataset reads its file on every pass; standard input can be read once"
        )
    if zero_based not in ("auto", True, False):
        raise InputValueError(f"zero_based must be 'auto', True or False, got {zero_based!r}")
    target = _float_dtype(dtype)
    base = zero_based
    if n_features is None or base == "auto" or chunk_rows is None:
        found = io.svmlight_survey(path)
        base = found.zero_based(base)
        if n_features is None:
            n_features = found.width(bool(base))
            if n_features == 0:
                raise InputValueError(
                    f"{path}: no features found (no line has an index:value pair)"
                )
        rows = chunk_rows or sparse_chunk_rows(found.n_rows, found.nnz, n_features, target.itemsize)
    else:
        rows = chunk_rows
    width, options = int(n_features), {"zero_based": bool(base)}

    def source() -> Iterator[tuple[Any, Any, Any]]:
        for table in io.iter_batches(
            path,
            format="svmlight",
            n_features=width,
            zero_based=options["zero_based"],
            dtype=target,
            chunk_rows=rows,
        ):
            yield table.X, table.y, None

    return ChunkSource(
        source,
        n_features=width,
        dtype=target,
        description=f"{path} (svmlight, {width} features, "
        f"{'zero' if options['zero_based'] else 'one'}-based), {rows} rows per chunk",
        stamp=lambda: _file_stamp(path),
        reading_options=options,
    )


def sparse_npz_file(
    X_path: Any,
    y_path: Any,
    sample_weight_path: Any,
    *,
    chunk_rows: int | None,
    dtype: Any,
) -> ChunkSource:
    """A ``scipy.sparse.save_npz`` archive as CSR chunks, with labels (and weights) from ``.npy``.

    The archive's arrays are streamed by row ranges on every pass
    (:func:`gpulogreg.io.iter_batches` of the ``.npz``); the labels and
    weights are mapped a chunk of rows at a time.
    """
    from gpulogreg import io

    _check_chunk_rows(chunk_rows)
    X_path = os.fspath(X_path)
    header = io.sparse_npz_header(X_path)
    fy = _NpyFile(y_path, "y")
    fw = None if sample_weight_path is None else _NpyFile(sample_weight_path, "sample_weight")
    for f in (fy, fw):
        if f is None:
            continue
        if len(f.shape) != 1:
            raise InputValueError(f"{f.path}: {f.name} must be 1-D, got shape {f.shape}")
        if f.n_rows != header.n_rows:
            raise InputValueError(
                f"{X_path} has {header.n_rows} rows but {f.path} has {f.n_rows} entries"
            )
    target = _float_dtype(dtype, header.dtype)
    rows = chunk_rows or sparse_chunk_rows(
        header.n_rows, header.nnz, header.n_features, target.itemsize
    )

    def source() -> Iterator[tuple[Any, Any, Any]]:
        start = 0
        for table in io.iter_batches(X_path, format="npz", dtype=target, chunk_rows=rows):
            stop = start + table.n_rows
            labels = np.array(fy.read_rows(start, stop))
            weights = None if fw is None else np.array(fw.read_rows(start, stop), np.float64)
            yield table.X, labels, weights
            start = stop

    return ChunkSource(
        source,
        n_features=header.n_features,
        dtype=target,
        description=f"{X_path} ({header.format} {header.n_rows} x {header.n_features} "
        f"{header.dtype}, {header.nnz} stored), {rows} rows per chunk",
        stamp=lambda: _file_stamp(X_path, y_path, sample_weight_path),
    )


def user_chunks(
    source: Iterable[Any] | ChunkFactory, *, n_features: int | None, dtype: Any
) -> ChunkSource:
    """Chunks from a re-iterable or a function returning a fresh iterable (not a generator)."""
    if callable(source):
        factory: ChunkFactory = source
    elif isinstance(source, Iterator):
        raise InputTypeError(
            "a one-shot iterator can be read only once, but training reads the data "
            "several times; pass a list of chunks or a function that returns a fresh "
            "iterator (e.g. the generator function itself)"
        )
    elif isinstance(source, Iterable):
        iterable = source

        def factory() -> Iterable[Any]:
            return iterable

    else:
        raise InputTypeError(
            f"source must be an iterable of chunks or a function, got {type(source)}"
        )
    return ChunkSource(factory, n_features=n_features, dtype=dtype, description="user chunks")


def _sequential(
    read: Callable[[int], tuple[Any, Any, Any]], n_rows: int, rows: int
) -> ChunkFactory:
    """A chunk factory reading chunks ``0, 1, ...`` of ``rows`` rows through ``read``."""

    def source() -> Iterator[tuple[Any, Any, Any]]:
        for i in range(-(-n_rows // rows)):
            yield read(i)

    return source
