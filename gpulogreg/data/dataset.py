"""Out-of-core training data: :class:`Dataset`, a re-iterable source of row chunks.

``LogisticRegression.fit`` accepts a :class:`Dataset` in place of ``(X, y)``.
Training then holds a bounded amount of memory whatever the size of the data:
the full-batch solvers (newton, lbfgs, gd) see the *exact* objective,
accumulated chunk by chunk (prepared by :mod:`gpulogreg.data.chunks`, summed by
:class:`gpulogreg.backends.chunked.ChunkedBackend`),
and ``solver="minibatch"`` streams shuffled batches from a window of chunks.

Sources
-------
=====================================  =============================================
``Dataset.from_npy(X_path, y_path)``   ``.npy`` files, mapped a chunk at a time (the
                                       mapping of a chunk is dropped after use, so
                                       resident memory stays at about one chunk)
``Dataset.from_parquet(path, ...)``    Parquet, by row groups / record batches
                                       (pyarrow), only the needed columns
``Dataset.from_csv(path, ...)``        CSV through pyarrow's streaming reader
``Dataset.from_arrays(X, y)``          arrays already in memory, cut into chunks
``Dataset.from_chunks(source)``        ``(X, y)`` or ``(X, y, sample_weight)`` chunks
                                       from a re-iterable or a function returning a
                                       fresh iterator (a one-shot generator cannot
                                       serve multi-pass solvers and is refused)
=====================================  =============================================

Every pass reads the chunks in the same order, so results are reproducible.
The first pass (:meth:`Dataset.scan`) validates the data once (shapes,
finiteness, weights), finds the classes and the per-class weight sums that
class weights and the penalty need; it is cached on the object (and redone
when a source file changes). Later passes trust the data.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from gpulogreg.data.validation import _to_host, check_sample_weight, check_X, encode_labels

__all__ = ["Chunk", "Dataset", "DatasetInfo"]

#: Default size of one chunk of X in bytes (rows = this / bytes per row): big
#: enough that per-chunk overhead (a parallel kernel launch and its barrier, a
#: small BLAS call, an mmap) is small next to reading the chunk (measured on a
#: busy 2-core machine: ~30 ms per chunk, so 32 MB chunks cost 2x a pass and
#: 128 MB chunks 1.6x), small enough that the two or three chunks in flight
#: (double buffering) stay far below a 1 GB budget.
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: Fewest rows per default chunk (very wide data).
MIN_CHUNK_ROWS = 1024


class Chunk(NamedTuple):
    """One block of consecutive rows.

    Attributes
    ----------
    X : ndarray of shape (m, n_features), float32 or float64, C-contiguous
        May be a read-only view of a memory map: do not keep it after use.
    y : ndarray of shape (m,)
        Labels as stored (not encoded).
    sample_weight : ndarray of shape (m,), float64, or None
    start : int
        Index in the whole dataset of the chunk's first row.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    start: int


@dataclass
class DatasetInfo:
    """What one validating pass over a :class:`Dataset` finds.

    Attributes
    ----------
    n_samples, n_features, n_chunks : int
    chunk_rows : list of int
        Rows in each chunk, in order.
    classes : ndarray of shape (n_classes,)
        Sorted distinct labels (or the ``classes`` given to the dataset).
    class_counts : ndarray of shape (n_classes,), int64
    class_weight_sums : ndarray of shape (n_classes,), float64
        Sum of the sample weights of each class (the counts without weights).
    dtype : numpy.dtype
        dtype of the chunks' X.
    """

    n_samples: int
    n_features: int
    n_chunks: int
    chunk_rows: list[int]
    classes: np.ndarray
    class_counts: np.ndarray
    class_weight_sums: np.ndarray
    dtype: np.dtype[Any]
    has_weights: bool = False
    stamp: tuple[Any, ...] = field(default=(), repr=False)


def default_chunk_rows(n_features: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk of X takes about :data:`DEFAULT_CHUNK_BYTES`."""
    return max(MIN_CHUNK_ROWS, DEFAULT_CHUNK_BYTES // max(1, n_features * itemsize))


def _float_dtype(dtype: Any, source: np.dtype[Any] | None = None) -> np.dtype[Any]:
    """float32/float64 target dtype; None keeps a float32/float64 source, else float64."""
    if dtype is None:
        if source is not None and source in (np.float32, np.float64):
            return np.dtype(source)
        return np.dtype(np.float64)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_chunk_rows(chunk_rows: int | None) -> None:
    if chunk_rows is not None and (
        not isinstance(chunk_rows, (int, np.integer))
        or isinstance(chunk_rows, bool)
        or chunk_rows < 1
    ):
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")


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
                raise ValueError(f"{self.path} is not a .npy file ({exc})") from None
            self.offset = f.tell()
        if dtype.hasobject:
            raise TypeError(f"{self.path} holds Python objects; {name} must be numeric")
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


# --------------------------------------------------------------------------- Dataset
ChunkFactory = Callable[[], Iterable[Any]]


class Dataset:
    """A re-iterable source of ``(X, y[, sample_weight])`` row chunks.

    Build one with a ``from_*`` constructor; pass it to
    ``LogisticRegression.fit(dataset)``.

    Parameters
    ----------
    source : callable
        Returns a fresh iterable of ``(X, y)`` or ``(X, y, sample_weight)``
        tuples each time it is called (one call per pass).
    n_features : int, optional
        Known width of X (checked against every chunk).
    dtype : {None, "float32", "float64"}
        dtype of the chunks' X; None keeps float32/float64 data as it is.
    classes : array-like, optional
        All the labels; skips nothing (the scan still counts them) but fixes
        the class order and rejects labels outside them.
    feature_names : sequence of str, optional
    description : str
        Shown in messages and ``repr``.
    stamp : callable, optional
        Returns a value that changes when the underlying files change.
    """

    def __init__(
        self,
        source: ChunkFactory,
        *,
        n_features: int | None = None,
        dtype: Any = None,
        classes: Any = None,
        feature_names: Sequence[str] | None = None,
        description: str = "chunks",
        stamp: Callable[[], tuple[Any, ...]] | None = None,
    ) -> None:
        if not callable(source):
            raise TypeError("source must be a function returning an iterable of chunks")
        self._source = source
        self._n_features = n_features
        self._dtype = None if dtype is None else _float_dtype(dtype)
        self.classes = None if classes is None else np.unique(np.asarray(classes))
        self.feature_names = (
            None
            if feature_names is None
            else np.asarray([str(f) for f in feature_names], dtype=object)
        )
        self.description = description
        self._stamp = stamp or (lambda: ())
        self._info: dict[str, DatasetInfo] = {}
        #: True when every chunk already lives in memory (then the chunked
        #: backend may keep per-chunk state between passes).
        self.in_memory = False
        #: Reads chunk ``i`` (rows ``i * _reader_rows ...``) directly, for
        #: sources that allow it (``.npy`` files, arrays): mini-batch training
        #: then visits the chunks in a random order each epoch.
        self._reader: Callable[[int], tuple[Any, Any, Any]] | None = None
        self._reader_rows = 0

    def __repr__(self) -> str:
        return f"Dataset({self.description})"

    # -- constructors --------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        chunk_rows: int | None = None,
        dtype: Any = None,
        classes: Any = None,
    ) -> Dataset:
        """Chunks of in-memory arrays (NumPy, CuPy or a DataFrame); views, no copies.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        chunk_rows : int, optional
            Rows per chunk; default about :data:`DEFAULT_CHUNK_BYTES` of X.
        """
        _check_chunk_rows(chunk_rows)
        X, names = check_X(X, dtype=None if dtype is None else _float_dtype(dtype))
        y = np.asarray(_to_host(y))
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has shape {y.shape}")
        sw = None
        if sample_weight is not None:
            sw = check_sample_weight(sample_weight, X.shape[0])
        rows = chunk_rows or default_chunk_rows(X.shape[1], X.dtype.itemsize)
        n = X.shape[0]

        def read(i: int) -> tuple[Any, Any, Any]:
            start, stop = i * rows, min((i + 1) * rows, n)
            return X[start:stop], y[start:stop], None if sw is None else sw[start:stop]

        ds = cls(
            _sequential(read, n, rows),
            n_features=int(X.shape[1]),
            dtype=X.dtype,
            classes=classes,
            feature_names=None if names is None else list(names),
            description=f"arrays {X.shape[0]} x {X.shape[1]} {X.dtype}, {rows} rows per chunk",
        )
        ds.in_memory = True
        ds._reader, ds._reader_rows = read, rows
        return ds

    @classmethod
    def from_npy(
        cls,
        X_path: Any,
        y_path: Any,
        *,
        sample_weight_path: Any = None,
        chunk_rows: int | None = None,
        dtype: Any = None,
        classes: Any = None,
    ) -> Dataset:
        """``.npy`` files read a chunk of rows at a time, never whole.

        Each chunk of X is a memory map of just its rows (see
        :meth:`_NpyFile.read_rows`), used in place when the file's dtype is
        the working dtype; the map is released when the chunk is done, so
        resident memory stays bounded by a few chunks.

        Parameters
        ----------
        X_path : path to a 2-D float or integer ``.npy`` file
        y_path : path to a 1-D ``.npy`` file of labels (same number of rows)
        sample_weight_path : path to a 1-D ``.npy`` file, optional
        chunk_rows : int, optional
            Rows per chunk; default about :data:`DEFAULT_CHUNK_BYTES` of X.
        dtype : {None, "float32", "float64"}
            None keeps float32/float64 files as they are (others become float64).
        """
        _check_chunk_rows(chunk_rows)
        fx = _NpyFile(X_path, "X")
        fy = _NpyFile(y_path, "y")
        fw = None if sample_weight_path is None else _NpyFile(sample_weight_path, "sample_weight")
        if len(fx.shape) != 2:
            raise ValueError(f"{fx.path}: X must be 2-D, got shape {fx.shape}")
        if fx.dtype.kind not in "biuf":
            raise TypeError(f"{fx.path}: X must be numeric, got dtype {fx.dtype}")
        for f in (fy, fw):
            if f is None:
                continue
            if len(f.shape) != 1:
                raise ValueError(f"{f.path}: {f.name} must be 1-D, got shape {f.shape}")
            if f.n_rows != fx.n_rows:
                raise ValueError(
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

        ds = cls(
            _sequential(read, n, rows),
            n_features=fx.shape[1],
            dtype=target,
            classes=classes,
            description=f"{fx.path} ({n} x {fx.shape[1]} {fx.dtype}), {rows} rows per chunk",
            stamp=lambda: _file_stamp(X_path, y_path, sample_weight_path),
        )
        ds._reader, ds._reader_rows = read, rows
        return ds

    @classmethod
    def from_parquet(
        cls,
        path: Any,
        *,
        target: str,
        features: str | Sequence[str] | None = None,
        weight: str | None = None,
        chunk_rows: int | None = None,
        dtype: Any = None,
        classes: Any = None,
    ) -> Dataset:
        """A Parquet file read by record batches (pyarrow), only the needed columns.

        Parameters
        ----------
        path : path to a Parquet file
        target : str
            Label column.
        features : "a,b,c" or sequence of str, optional
            Feature columns in this order; default every column except the
            target and the weight.
        weight : str, optional
            Column of sample weights.
        chunk_rows : int, optional
            Rows per chunk (pyarrow reads row groups and cuts them into batches
            of this size); default about :data:`DEFAULT_CHUNK_BYTES` of X.
        """
        return cls._from_table_file(
            path,
            "parquet",
            target=target,
            features=features,
            weight=weight,
            chunk_rows=chunk_rows,
            dtype=dtype,
            classes=classes,
        )

    @classmethod
    def from_csv(
        cls,
        path: Any,
        *,
        target: str,
        features: str | Sequence[str] | None = None,
        weight: str | None = None,
        chunk_rows: int | None = None,
        dtype: Any = None,
        classes: Any = None,
    ) -> Dataset:
        """A CSV file read in chunks by pyarrow's streaming reader.

        Parameters as :meth:`from_parquet`; feature columns are parsed as floats.
        """
        return cls._from_table_file(
            path,
            "csv",
            target=target,
            features=features,
            weight=weight,
            chunk_rows=chunk_rows,
            dtype=dtype,
            classes=classes,
        )

    @classmethod
    def _from_table_file(
        cls,
        path: Any,
        fmt: str,
        *,
        target: str,
        features: str | Sequence[str] | None,
        weight: str | None,
        chunk_rows: int | None,
        dtype: Any,
        classes: Any,
    ) -> Dataset:
        from gpulogreg import io

        _check_chunk_rows(chunk_rows)
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        names = _column_names(path, fmt)
        feats = io._parse_features(features)
        if feats is None:
            feats = [c for c in names if c not in (target, weight)]
        feats = io._resolve_columns(
            path, names, target=target, features=feats, id_column=None, weight_column=weight
        )
        if weight is not None and weight in feats:
            raise ValueError(f"{path}: column {weight!r} is both the weight and a feature")
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
            ):
                sw = None
                if weight is not None:
                    sw = np.asarray(table.weights, dtype=np.float64)
                yield table.X, table.y, sw

        return cls(
            source,
            n_features=len(feats),
            dtype=target_dt,
            classes=classes,
            feature_names=feats,
            description=f"{path} ({fmt}, target {target!r}, {len(feats)} features), "
            f"{rows} rows per chunk",
            stamp=lambda: _file_stamp(path),
        )

    @classmethod
    def from_chunks(
        cls,
        source: Iterable[Any] | ChunkFactory,
        *,
        n_features: int | None = None,
        dtype: Any = None,
        classes: Any = None,
        feature_names: Sequence[str] | None = None,
    ) -> Dataset:
        """Chunks from a re-iterable (a list, ...) or a function returning a fresh iterable.

        Each item is ``(X, y)`` or ``(X, y, sample_weight)``; X may be any
        array-like :func:`gpulogreg.data.check_X` accepts. A one-shot iterator
        (a generator object) is refused: the solvers read the data several
        times; pass the generator *function* instead.
        """
        if callable(source):
            factory: ChunkFactory = source
        elif isinstance(source, Iterator):
            raise TypeError(
                "a one-shot iterator can be read only once, but training reads the data "
                "several times; pass a list of chunks or a function that returns a fresh "
                "iterator (e.g. the generator function itself)"
            )
        elif isinstance(source, Iterable):
            iterable = source

            def factory() -> Iterable[Any]:
                return iterable

        else:
            raise TypeError(
                f"source must be an iterable of chunks or a function, got {type(source)}"
            )
        return cls(
            factory,
            n_features=n_features,
            dtype=dtype,
            classes=classes,
            feature_names=feature_names,
            description="user chunks",
        )

    # -- reading -------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Number of feature columns (reads the first chunk when not known from a header)."""
        if self._n_features is None:
            first = next(iter(self.iter_chunks()), None)
            if first is None:
                raise ValueError(f"{self.description}: the dataset has no rows")
        assert self._n_features is not None
        return self._n_features

    def working_dtype(self, dtype: Any = None) -> np.dtype[Any]:
        """dtype the chunks will have for the requested ``dtype`` (None: the dataset's)."""
        if dtype is not None:
            return _float_dtype(dtype)
        if self._dtype is not None:
            return self._dtype
        return self.info().dtype

    @property
    def random_access(self) -> bool:
        """Whether chunks can be read in any order (:meth:`iter_chunks` with ``order``)."""
        return self._reader is not None

    def _items(self, order: Sequence[int] | None) -> Iterator[tuple[int, int | None, Any]]:
        """(chunk index, first row or None when it follows the previous chunk, raw item)."""
        if order is None:
            for index, item in enumerate(self._source()):
                yield index, None, item
            return
        reader = self._reader
        if reader is None:
            raise ValueError(f"{self.description}: chunks can be read only in order")
        for index in order:
            yield int(index), int(index) * self._reader_rows, reader(int(index))

    def iter_chunks(
        self, dtype: Any = None, *, validate: bool = False, order: Sequence[int] | None = None
    ) -> Iterator[Chunk]:
        """Yield the chunks, in the dataset's order or in ``order``.

        Parameters
        ----------
        dtype : {None, "float32", "float64"}
            dtype of the chunks' X; None keeps the dataset's.
        validate : bool
            Check every chunk (finite values, shapes, weights); :meth:`scan`
            does it once, later passes skip it.
        order : sequence of int, optional
            Chunk indices to read, in this order (only when :attr:`random_access`).
        """
        target = None if dtype is None else _float_dtype(dtype)
        target = target or self._dtype
        start = 0
        for index, first_row, item in self._items(order):
            if first_row is not None:
                start = first_row
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise TypeError(
                    f"{self.description}: chunk {index} must be a tuple (X, y) or "
                    f"(X, y, sample_weight), got {type(item).__name__}"
                )
            X, y = item[0], item[1]
            sw = item[2] if len(item) == 3 else None
            if validate or not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.float64):
                X, names = check_X(X, dtype=target, name=f"X (chunk {index}, rows from {start})")
                if names is not None and self.feature_names is None:
                    self.feature_names = names
            elif target is not None and X.dtype != target:
                X = X.astype(target)
            elif not X.flags.c_contiguous:
                X = np.ascontiguousarray(X)
            if X.ndim != 2:
                raise ValueError(f"{self.description}: chunk {index}: X must be 2-D")
            if self._n_features is None:
                self._n_features = int(X.shape[1])
            elif X.shape[1] != self._n_features:
                raise ValueError(
                    f"{self.description}: chunk {index} has {X.shape[1]} features, "
                    f"expected {self._n_features}"
                )
            y = np.asarray(_to_host(y))
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"{self.description}: chunk {index} has {X.shape[0]} rows of X but y of "
                    f"shape {y.shape}"
                )
            if sw is not None:
                sw = (
                    check_sample_weight(sw, X.shape[0])
                    if validate
                    else np.asarray(_to_host(sw), dtype=np.float64)
                )
            if X.shape[0]:
                yield Chunk(X, y, sw, start)
            start += int(X.shape[0])

    def scan(self, dtype: Any = None) -> DatasetInfo:
        """Validate every chunk once and count rows, classes and weights (cached).

        Raises
        ------
        ValueError, TypeError
            Naming the chunk and the problem (NaN/inf with its row, shape,
            labels outside ``classes``, negative weights, no rows).
        """
        target = self.working_dtype(dtype) if (dtype is not None or self._dtype) else None
        key = str(target)
        stamp = self._stamp()
        cached = self._info.get(key)
        if cached is not None and cached.stamp == stamp:
            return cached
        n_samples = 0
        rows: list[int] = []
        label_sets: list[np.ndarray] = []
        fixed = self.classes
        counts: np.ndarray | None = None
        wsums: np.ndarray | None = None
        seen_dtype: np.dtype[Any] | None = None
        has_weights = False
        for chunk in self.iter_chunks(target, validate=True):
            seen_dtype = chunk.X.dtype
            m = chunk.X.shape[0]
            rows.append(m)
            n_samples += m
            w = chunk.sample_weight
            has_weights = has_weights or w is not None
            if fixed is not None:
                _, idx = encode_labels(chunk.y, fixed)
                k = len(fixed)
                c = np.bincount(idx, minlength=k)
                s = np.bincount(idx, weights=w, minlength=k).astype(np.float64)
                counts = c if counts is None else counts + c
                wsums = s if wsums is None else wsums + s
            else:
                # Labels kept per chunk as (unique, counts, weight sums); merged below.
                uniq, idx = encode_labels(chunk.y)
                c = np.bincount(idx, minlength=len(uniq))
                s = np.bincount(idx, weights=w, minlength=len(uniq)).astype(np.float64)
                label_sets.append(np.asarray(uniq))
                label_sets.append(c)
                label_sets.append(s)
        if n_samples == 0 or seen_dtype is None:
            raise ValueError(f"{self.description}: the dataset has no rows")
        if fixed is None:
            uniqs = label_sets[0::3]
            classes = np.unique(np.concatenate(uniqs))
            counts = np.zeros(len(classes), dtype=np.int64)
            wsums = np.zeros(len(classes))
            for u, c, s in zip(uniqs, label_sets[1::3], label_sets[2::3], strict=True):
                pos = np.searchsorted(classes, u)
                counts[pos] += c
                wsums[pos] += s
        else:
            classes = fixed
        assert counts is not None
        assert wsums is not None
        if wsums.sum() <= 0:
            raise ValueError(f"{self.description}: the sample weights sum to zero")
        info = DatasetInfo(
            n_samples=n_samples,
            n_features=self.n_features,
            n_chunks=len(rows),
            chunk_rows=rows,
            classes=classes,
            class_counts=np.asarray(counts, dtype=np.int64),
            class_weight_sums=np.asarray(wsums, dtype=np.float64),
            dtype=np.dtype(seen_dtype),
            has_weights=has_weights,
            stamp=stamp,
        )
        self._info[key] = info
        return info

    def info(self, dtype: Any = None) -> DatasetInfo:
        """The cached :meth:`scan` result (scanning when needed)."""
        return self.scan(dtype)

    @property
    def n_samples(self) -> int:
        """Number of rows (one validating pass the first time)."""
        return self.info().n_samples

    def to_arrays(self, dtype: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Concatenate every chunk in memory (for small data and tests)."""
        Xs, ys, ws = [], [], []
        any_w = False
        for chunk in self.iter_chunks(dtype):
            Xs.append(np.array(chunk.X))
            ys.append(chunk.y)
            ws.append(chunk.sample_weight)
            any_w = any_w or chunk.sample_weight is not None
        sw = None
        if any_w:
            sw = np.concatenate(
                [np.ones(x.shape[0]) if w is None else w for x, w in zip(Xs, ws, strict=True)]
            )
        return np.concatenate(Xs), np.concatenate(ys), sw


def _sequential(
    read: Callable[[int], tuple[Any, Any, Any]], n_rows: int, rows: int
) -> ChunkFactory:
    """A chunk factory reading chunks ``0, 1, ...`` of ``rows`` rows through ``read``."""

    def source() -> Iterator[tuple[Any, Any, Any]]:
        for i in range(-(-n_rows // rows)):
            yield read(i)

    return source


def _column_names(path: str, fmt: str) -> list[str]:
    """Column names of a CSV or Parquet file, through pyarrow."""
    from gpulogreg import io

    if fmt == "csv":
        return io._csv_header(path)
    io._pyarrow("reading Parquet")
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as exc:
        raise io.DataError(f"{path}: not a readable Parquet file ({exc})") from None
