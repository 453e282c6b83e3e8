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
``Dataset.from_svmlight(path, ...)``   svmlight/libsvm text (also ``.gz``, ``.bz2``) parsed
                                       a block of lines at a time into CSR chunks
``Dataset.from_npz(X_path, y_path)``   a CSR matrix of ``scipy.sparse.save_npz``, its
                                       arrays streamed out of the archive by row ranges
``Dataset.from_arrays(X, y)``          arrays (or a scipy.sparse matrix) already in
                                       memory, cut into chunks
``Dataset.from_chunks(source)``        ``(X, y)`` or ``(X, y, sample_weight)`` chunks
                                       from a re-iterable or a function returning a
                                       fresh iterator (a one-shot generator cannot
                                       serve multi-pass solvers and is refused)
=====================================  =============================================

Chunks are dense arrays or **CSR matrices** (``scipy.sparse``; validated into
canonical CSR by :func:`gpulogreg.data.sparse.check_sparse`), never densified:
the chunked backend builds each chunk's backend from the CSR registry, and
the scan counts the stored values (:attr:`DatasetInfo.nnz`) that mini-batch
windows and chunk sizes are measured in. A dataset's chunks are all dense or
all sparse.

Every pass reads the chunks in the same order, so results are reproducible.
The first pass (:meth:`Dataset.scan`) validates the data once (shapes,
finiteness, weights), finds the classes and the per-class weight sums that
class weights and the penalty need; it is cached on the object (and redone
when a source file changes). Later passes trust the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from gpulogreg._array import is_sparse
from gpulogreg._errors import InputTypeError, InputValueError
from gpulogreg.data import sources
from gpulogreg.data.sources import DEFAULT_CHUNK_BYTES, ChunkFactory, _float_dtype
from gpulogreg.data.sparse import check_sparse, index_dtype
from gpulogreg.data.validation import _host_values, check_sample_weight, check_X, encode_labels

__all__ = ["DEFAULT_CHUNK_BYTES", "Chunk", "Dataset", "DatasetInfo"]


class Chunk(NamedTuple):
    """One block of consecutive rows.

    Attributes
    ----------
    X : ndarray or CSR matrix of shape (m, n_features), float32 or float64
        C-contiguous (may be a read-only view of a memory map: do not keep it
        after use), or a canonical ``scipy.sparse`` CSR matrix.
    y : ndarray of shape (m,)
        Labels as stored (not encoded).
    sample_weight : ndarray of shape (m,), float64, or None
    start : int
        Index in the whole dataset of the chunk's first row.
    """

    X: Any
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
    has_weights : bool
        Whether the chunks carry sample weights.
    nnz : int or None
        Stored values of all the chunks when they are sparse (CSR); None for
        dense chunks.
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
    nnz: int | None = None

    @property
    def sparse(self) -> bool:
        """Whether the chunks are CSR matrices."""
        return self.nnz is not None

    def row_bytes(self) -> float:
        """Bytes of one row of X on average: ``n_features`` values, or a CSR row's values,
        indices and row pointer."""
        itemsize = np.dtype(self.dtype).itemsize
        if self.nnz is None:
            return float(self.n_features * itemsize)
        index = index_dtype(self.nnz, self.n_features).itemsize
        return self.nnz / max(self.n_samples, 1) * (itemsize + index) + index


# --------------------------------------------------------------------------- Dataset
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
            raise InputTypeError("source must be a function returning an iterable of chunks")
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
        #: The reader's settled choices that decide what the files mean
        #: (svmlight: ``{"zero_based": bool}``), for reading more files of
        #: the same data the same way (see :class:`gpulogreg.io.Table`).
        self.reading_options: dict[str, Any] = {}

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
        """Chunks of in-memory arrays (NumPy, CuPy or a DataFrame; views, no copies) or of a
        ``scipy.sparse`` matrix (converted to canonical CSR once; its chunks are row
        slices, each a copy of its rows' stored values).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        chunk_rows : int, optional
            Rows per chunk; default about :data:`DEFAULT_CHUNK_BYTES` of X
            (of its stored values, indices and row pointers when sparse).
        """
        return cls._from_source(
            sources.arrays(X, y, sample_weight, chunk_rows=chunk_rows, dtype=dtype), classes
        )

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
        :meth:`gpulogreg.data.sources._NpyFile.read_rows`), used in place when the file's dtype is
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
        source = sources.npy_files(
            X_path, y_path, sample_weight_path, chunk_rows=chunk_rows, dtype=dtype
        )
        return cls._from_source(source, classes)

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
        """Parquet data read by record batches (pyarrow), only the needed columns.

        Parameters
        ----------
        path : path
            A Parquet file, a directory of them (hive-partitioned or not) or a
            glob pattern (see :func:`gpulogreg.io.data_files`).
        target : str
            Label column (a hive partition key too).
        features : "a,b,c" or sequence of str, optional
            Feature columns in this order; default every column except the
            target, the weight and the partition keys.
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
        delimiter: str | None = None,
    ) -> Dataset:
        """A CSV file read in chunks by pyarrow's streaming reader.

        Parameters as :meth:`from_parquet` (``path``: one file, also ``.gz`` or
        ``.bz2``); feature columns are parsed as floats. ``delimiter`` is the
        field separator, default a tab for ``.tsv`` names and a comma otherwise.
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
            delimiter=delimiter,
        )

    @classmethod
    def from_svmlight(
        cls,
        path: Any,
        *,
        n_features: int | None = None,
        zero_based: bool | str = "auto",
        chunk_rows: int | None = None,
        dtype: Any = None,
        classes: Any = None,
    ) -> Dataset:
        """An svmlight/libsvm file read a block of lines at a time into CSR chunks.

        Every pass parses the file again (``.gz`` and ``.bz2`` are
        decompressed as they are read); memory holds a chunk or two, never
        the file. When the width, the index base or the chunk size is not
        given, one structural pass (:func:`gpulogreg.io.svmlight_survey`)
        finds them first: the largest index, whether index 0 occurs, the
        stored values per row.

        Parameters
        ----------
        path : path
            ``.svm``, ``.svmlight``, ``.libsvm`` or ``.txt``, also ``.gz`` or ``.bz2``.
        n_features : int, optional
            The width; default the largest index (plus one when zero-based).
        zero_based : {"auto", True, False}
            Whether indices start at 0; "auto": one-based unless index 0
            occurs. The choice made is :attr:`reading_options`.
        chunk_rows : int, optional
            Rows per chunk; default about :data:`DEFAULT_CHUNK_BYTES` of CSR arrays.
        dtype : {None, "float32", "float64"}
            dtype of the values; None gives float64.
        """
        source = sources.svmlight_file(
            path, n_features=n_features, zero_based=zero_based, chunk_rows=chunk_rows, dtype=dtype
        )
        return cls._from_source(source, classes)

    @classmethod
    def from_npz(
        cls,
        X_path: Any,
        y_path: Any,
        *,
        sample_weight_path: Any = None,
        chunk_rows: int | None = None,
        dtype: Any = None,
        classes: Any = None,
    ) -> Dataset:
        """A sparse matrix written by ``scipy.sparse.save_npz``, streamed out of the archive.

        Each pass reads the archive's ``indptr``, ``indices`` and ``data``
        arrays front to back, a chunk of rows at a time (decompressed as
        they are read when the archive is compressed), so memory holds a
        chunk, never the matrix. CSR archives stream; CSC and COO ones store
        no row's values together, so each pass loads them whole and converts
        them (save CSR for data that does not fit in memory).

        Parameters
        ----------
        X_path : path to an ``.npz`` file of ``scipy.sparse.save_npz``
        y_path : path to a 1-D ``.npy`` file of labels (one per row)
        sample_weight_path : path to a 1-D ``.npy`` file, optional
        chunk_rows : int, optional
            Rows per chunk; default about :data:`DEFAULT_CHUNK_BYTES` of CSR arrays.
        dtype : {None, "float32", "float64"}
            None keeps float32/float64 values as they are (others become float64).
        """
        source = sources.sparse_npz_file(
            X_path, y_path, sample_weight_path, chunk_rows=chunk_rows, dtype=dtype
        )
        return cls._from_source(source, classes)

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
        delimiter: str | None = None,
    ) -> Dataset:
        source = sources.table_file(
            path,
            fmt,
            target=target,
            features=features,
            weight=weight,
            chunk_rows=chunk_rows,
            dtype=dtype,
            delimiter=delimiter,
        )
        return cls._from_source(source, classes)

    @classmethod
    def _from_source(cls, source: sources.ChunkSource, classes: Any) -> Dataset:
        ds = cls(
            source.factory,
            n_features=source.n_features,
            dtype=source.dtype,
            classes=classes,
            feature_names=source.feature_names,
            description=source.description,
            stamp=source.stamp,
        )
        ds.in_memory = source.in_memory
        ds._reader, ds._reader_rows = source.reader, source.reader_rows
        ds.reading_options = dict(source.reading_options)
        return ds

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
        chunks = sources.user_chunks(source, n_features=n_features, dtype=dtype)
        chunks.feature_names = feature_names
        return cls._from_source(chunks, classes)

    # -- reading -------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Number of feature columns (reads the first chunk when not known from a header)."""
        if self._n_features is None:
            first = next(iter(self.iter_chunks()), None)
            if first is None:
                raise InputValueError(f"{self.description}: the dataset has no rows")
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
            raise InputValueError(f"{self.description}: chunks can be read only in order")
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
                raise InputTypeError(
                    f"{self.description}: chunk {index} must be a tuple (X, y) or "
                    f"(X, y, sample_weight), got {type(item).__name__}"
                )
            X, y = item[0], item[1]
            sw = item[2] if len(item) == 3 else None
            if is_sparse(X):
                X = _sparse_chunk(X, target, validate, f"X (chunk {index}, rows from {start})")
            elif (
                validate or not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.float64)
            ):
                X, names = check_X(X, dtype=target, name=f"X (chunk {index}, rows from {start})")
                if names is not None and self.feature_names is None:
                    self.feature_names = names
            elif target is not None and X.dtype != target:
                X = X.astype(target)
            elif not X.flags.c_contiguous:
                X = np.ascontiguousarray(X)
            if X.ndim != 2:
                raise InputValueError(f"{self.description}: chunk {index}: X must be 2-D")
            if self._n_features is None:
                self._n_features = int(X.shape[1])
            elif X.shape[1] != self._n_features:
                raise InputValueError(
                    f"{self.description}: chunk {index} has {X.shape[1]} features, "
                    f"expected {self._n_features}"
                )
            y = np.asarray(_host_values(y))
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise InputValueError(
                    f"{self.description}: chunk {index} has {X.shape[0]} rows of X but y of "
                    f"shape {y.shape}"
                )
            if sw is not None:
                sw = (
                    check_sample_weight(sw, X.shape[0])
                    if validate
                    else np.asarray(_host_values(sw), dtype=np.float64)
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
        rows: list[int] = []
        tally = _ClassTally(self.classes)
        seen_dtype: np.dtype[Any] | None = None
        has_weights = False
        nnz: int | None = None
        for chunk in self.iter_chunks(target, validate=True):
            if rows and (nnz is not None) != is_sparse(chunk.X):
                kinds = ("dense", "sparse") if nnz is None else ("sparse", "dense")
                raise InputTypeError(
                    f"{self.description}: chunk {len(rows)} is {kinds[1]} but the chunks "
                    f"before it are {kinds[0]}; give every chunk in one format"
                )
            if is_sparse(chunk.X):
                nnz = (nnz or 0) + int(chunk.X.nnz)
            seen_dtype = chunk.X.dtype
            rows.append(int(chunk.X.shape[0]))
            has_weights = has_weights or chunk.sample_weight is not None
            tally.add(chunk.y, chunk.sample_weight)
        n_samples = sum(rows)
        if n_samples == 0 or seen_dtype is None:
            raise InputValueError(f"{self.description}: the dataset has no rows")
        classes, counts, wsums = tally.totals()
        if wsums.sum() <= 0:
            raise InputValueError(f"{self.description}: the sample weights sum to zero")
        info = DatasetInfo(
            n_samples=n_samples,
            n_features=self.n_features,
            n_chunks=len(rows),
            chunk_rows=rows,
            classes=classes,
            class_counts=counts,
            class_weight_sums=wsums,
            dtype=np.dtype(seen_dtype),
            has_weights=has_weights,
            stamp=stamp,
            nnz=nnz,
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

    def to_arrays(self, dtype: Any = None) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """Concatenate every chunk in memory (for small data and tests).

        Returns
        -------
        X : ndarray, or a canonical CSR matrix when the chunks are sparse
        y : ndarray of shape (n_samples,)
        sample_weight : ndarray of shape (n_samples,) or None
        """
        Xs, ys, ws = [], [], []
        any_w = False
        for chunk in self.iter_chunks(dtype):
            Xs.append(chunk.X.copy() if is_sparse(chunk.X) else np.array(chunk.X))
            ys.append(chunk.y)
            ws.append(chunk.sample_weight)
            any_w = any_w or chunk.sample_weight is not None
        sw = None
        if any_w:
            sw = np.concatenate(
                [np.ones(x.shape[0]) if w is None else w for x, w in zip(Xs, ws, strict=True)]
            )
        if Xs and is_sparse(Xs[0]):
            import scipy.sparse as sp

            joined = check_sparse(sp.vstack(Xs, format="csr"), name="the joined chunks")
            return joined, np.concatenate(ys), sw
        return np.concatenate(Xs), np.concatenate(ys), sw


def _sparse_chunk(X: Any, dtype: np.dtype[Any] | None, validate: bool, name: str) -> Any:
    """A sparse chunk as canonical CSR: checked fully by the scan, trusted after it.

    The scan (``validate``) runs :func:`~gpulogreg.data.sparse.check_sparse`
    (structure, finiteness, sorting once). Later passes keep a chunk that is
    already canonical CSR with the index types of the rule (the readers'
    chunks are, and say so), converting only its values' dtype when asked;
    anything else (a user's CSC or unsorted chunk) is converted again.
    """
    canonical = (
        not validate
        and X.format == "csr"
        and X.data.dtype in (np.float32, np.float64)
        and X.indices.dtype == X.indptr.dtype == index_dtype(int(X.nnz), int(X.shape[1]))
        and X.indices.shape[0] == X.nnz
        and bool(X.has_canonical_format)
    )
    if not canonical:
        return check_sparse(X, dtype=dtype, name=name)
    if dtype is not None and X.data.dtype != dtype:
        return X.astype(dtype)  # same structure arrays, values converted
    return X


class _ClassTally:
    """Per-class counts and weight sums of the labels of every chunk, merged in chunk order."""

    def __init__(self, classes: np.ndarray | None) -> None:
        self.fixed = classes
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, y: np.ndarray, weights: np.ndarray | None) -> None:
        """Count one chunk's labels (validated against the fixed classes, if any)."""
        classes, idx = encode_labels(y, self.fixed)
        k = len(classes)
        counts = np.bincount(idx, minlength=k)
        sums = np.bincount(idx, weights=weights, minlength=k).astype(np.float64)
        self.parts.append((np.asarray(classes), counts, sums))

    def totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(classes, counts (int64), weight sums (float64))`` over every chunk so far."""
        if self.fixed is not None:
            classes = self.fixed
        else:
            classes = np.unique(np.concatenate([part[0] for part in self.parts]))
        counts = np.zeros(len(classes), dtype=np.int64)
        sums = np.zeros(len(classes))
        for labels, c, w in self.parts:
            pos = np.searchsorted(classes, labels)
            counts[pos] += c
            sums[pos] += w
        return classes, counts, sums
