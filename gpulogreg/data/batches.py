"""Mini-batch sources: shuffled batches of rows, in memory or streamed from a Dataset.

A source yields :class:`Batch` items (the rows of one batch, on the training
device, with weights normalised to sum to one, and the batch's total weight)
and holds the validation rows of early stopping. It knows nothing of
backends: the mini-batch trainer binds each batch to its one backend.

* :class:`ArrayBatches`: in-memory arrays (NumPy or CuPy); each epoch is a
  fresh permutation of the training rows cut into ``batch_size`` batches;
* :class:`DatasetBatches`: a :class:`~gpulogreg.data.dataset.Dataset`
  streamed from disk; rows are shuffled within a window of chunks, and the
  chunk order itself is permuted every epoch when the source can read chunks
  in any order (``.npy`` files, arrays; CSV and Parquet are read in file
  order), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, NamedTuple, Protocol

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, host_float64, is_sparse
from gpulogreg._errors import InputValueError
from gpulogreg._typing import Array
from gpulogreg.data.chunks import PreparedChunks
from gpulogreg.data.pipeline import HostStager, SlotPipeline

__all__ = ["ArrayBatches", "Batch", "BatchSource", "DatasetBatches", "split_validation"]

#: Validation rows kept in memory at most when streaming a Dataset (bytes of X):
#: held-out chunks are subsampled beyond this so memory stays bounded.
VALIDATION_MAX_BYTES = 256 * 2**20
#: Rows shuffled together when streaming a Dataset (bytes of X per window; at
#: least one chunk): larger windows mix better, smaller ones use less memory.
SHUFFLE_WINDOW_BYTES = 128 * 2**20


class Batch(NamedTuple):
    """The rows of one mini-batch, on the training device.

    Attributes
    ----------
    X : array of shape (m, n_features)
    y : array of shape (m,), int32 class indices
    sample_weight : array of shape (m,), float64, summing to one
    weight : float
        Total effective weight of the batch before normalisation.
    """

    X: Array
    y: Array
    sample_weight: Array
    weight: float


class BatchSource(Protocol):
    """Where a mini-batch fit takes its batches from."""

    xp: Any
    n_train: int

    def n_batches(self, batch_size: int) -> int: ...

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Batch]:
        """The batches of one epoch, in the order ``rng`` draws."""
        ...

    def validation(self) -> Batch | None:
        """The held-out rows (weights normalised), or None without early stopping."""
        ...


def split_validation(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split of row indices into (train, validation).

    Every class keeps ``round(fraction * count)`` rows for validation (at least
    one row in all, and at least one row left for training).
    """
    y = np.asarray(y)
    n = y.shape[0]
    if n < 2:
        raise InputValueError("early_stopping needs at least 2 samples")
    val_parts = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        take = round(fraction * idx.size)
        if take:
            val_parts.append(rng.choice(idx, size=take, replace=False))
    val = np.concatenate(val_parts) if val_parts else np.empty(0, dtype=np.int64)
    if val.size == 0:
        val = rng.choice(n, size=1, replace=False)
    if val.size >= n:
        val = val[: n - 1]
    val = np.sort(val)
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def _gather(X: Array, y: Array, s: Array, idx: Array, total: float | None = None) -> Batch | None:
    """The batch of rows ``idx`` (weights normalised), or None when it weighs nothing.

    ``total`` is the batch's weight when already known on the host.
    """
    sb = s[idx]
    if total is None:
        total = float(sb.sum())
    if total <= 0:
        return None
    return Batch(X[idx], y[idx], sb / total, total)


def _batched(
    X: Array, y: Array, s: Array, order: Array, n_rows: int, batch_size: int
) -> Iterator[Batch]:
    """Batches of ``batch_size`` consecutive rows of ``order`` (the last one may be short).

    The weights of all the batches come to the host in one transfer, not one
    per batch. Rows are gathered sorted (better locality; the order within a
    batch does not change its summed gradient).
    """
    xp = array_namespace(X)
    weights = s[order[:n_rows]]
    n_full = (n_rows // batch_size) * batch_size
    parts = [weights[:n_full].reshape(-1, batch_size).sum(axis=1)]
    if n_full < n_rows:
        parts.append(weights[n_full:].sum().reshape(1))
    totals = host_float64(xp.concatenate(parts))
    for index, start in enumerate(range(0, n_rows, batch_size)):
        idx = xp.sort(order[start : min(start + batch_size, n_rows)])
        batch = _gather(X, y, s, idx, float(totals[index]))
        if batch is not None:
            yield batch


class ArrayBatches:
    """Batches gathered from in-memory arrays (NumPy or CuPy, already on the training device).

    Parameters
    ----------
    X : array of shape (n_samples, n_features), validated, on the training device
    y : array of shape (n_samples,), int32 class indices (0/1 for binary tasks)
    sample_weight : array of shape (n_samples,), float64, effective weights
        (any positive scale: batches are normalised).
    train_idx, val_idx : host int arrays, optional
        Row split (all rows train when not given).
    """

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        train_idx: np.ndarray | None = None,
        val_idx: np.ndarray | None = None,
    ) -> None:
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.xp = array_namespace(X)
        n = int(X.shape[0])
        self.train_idx = np.arange(n) if train_idx is None else np.asarray(train_idx)
        self.n_train = int(self.train_idx.size)
        self._val_idx = val_idx if val_idx is not None and len(val_idx) > 0 else None

    def n_batches(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Batch]:
        order = self.xp.asarray(self.train_idx[rng.permutation(self.n_train)])
        yield from _batched(self.X, self.y, self.sample_weight, order, self.n_train, batch_size)

    def validation(self) -> Batch | None:
        if self._val_idx is None:
            return None
        return _gather(self.X, self.y, self.sample_weight, self.xp.asarray(self._val_idx))


class DatasetBatches:
    """Batches streamed from a :class:`~gpulogreg.data.dataset.Dataset`, memory bounded.

    Rows are shuffled within windows of chunks (about
    :data:`SHUFFLE_WINDOW_BYTES` of X), the chunks taken in a fresh random order
    each epoch when the dataset allows it; rows left over at the end of a window
    join the next one, so every batch but the last of an epoch is full. With
    ``early_stopping`` whole chunks are held out (at least one, and at least
    one left for training), and their rows kept in memory up to
    :data:`VALIDATION_MAX_BYTES` (subsampled beyond).

    Parameters
    ----------
    chunks : PreparedChunks
        The dataset with its label encoding and weight normalisation.
    to_device : callable
        Moves a host array to the training device (the identity on the CPU).
    validation_fraction : float or None
    rng : Generator used for the split (chunk choice and subsampling).
    prefetch : bool
        Read the next chunk on a background thread.
    """

    def __init__(
        self,
        chunks: PreparedChunks,
        *,
        to_device: Callable[[Any], Array],
        xp: Any,
        validation_fraction: float | None,
        rng: np.random.Generator,
        prefetch: bool = True,
    ) -> None:
        self.chunks = chunks
        self.xp = xp
        self._to_device = to_device
        self.prefetch = prefetch
        info = chunks.info
        row_bytes = max(1, int(info.row_bytes()))  # a CSR row: its stored values and indices
        self.window_rows = max(1, SHUFFLE_WINDOW_BYTES // row_bytes)
        self.val_chunks: set[int] = set()
        self._val: Batch | None = None
        if validation_fraction:
            if info.n_chunks < 2:
                raise InputValueError(
                    "early_stopping on a Dataset holds out whole chunks, but this dataset has "
                    "a single chunk; build it with a smaller chunk_rows"
                )
            n_val = min(max(1, round(validation_fraction * info.n_chunks)), info.n_chunks - 1)
            self.val_chunks = {int(i) for i in rng.choice(info.n_chunks, n_val, replace=False)}
            self._val = self._collect_validation(rng, row_bytes)
        self.n_train = int(
            sum(r for i, r in enumerate(info.chunk_rows) if i not in self.val_chunks)
        )

    def _collect_validation(self, rng: np.random.Generator, row_bytes: int) -> Batch | None:
        info = self.chunks.info
        n_val_rows = sum(info.chunk_rows[i] for i in self.val_chunks)
        keep_fraction = min(1.0, VALIDATION_MAX_BYTES / max(n_val_rows * row_bytes, 1))
        Xs, ys, ss = [], [], []
        dataset = self.chunks.dataset
        order = sorted(self.val_chunks) if dataset.random_access else None
        for i, chunk in enumerate(dataset.iter_chunks(self.chunks.dtype_arg, order=order)):
            if order is None and i not in self.val_chunks:
                continue
            X, y, s = self.chunks.prepare(chunk)
            if keep_fraction < 1.0:
                rows = np.sort(
                    rng.choice(X.shape[0], int(keep_fraction * X.shape[0]) or 1, replace=False)
                )
                X, y, s = X[rows], y[rows], s[rows]
            Xs.append(_own(X))
            ys.append(y)
            ss.append(s)
        X = _concat(Xs)
        s = np.concatenate(ss)
        dev = self._to_device
        return Batch(dev(X), dev(np.concatenate(ys)), dev(s / s.sum()), float(s.sum()))

    def n_batches(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)

    def validation(self) -> Batch | None:
        return self._val

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[Batch]:
        chunks = self.chunks
        dataset = chunks.dataset
        if dataset.random_access:
            # Chunks in a new random order every epoch, so that a window mixes
            # rows from all over the file (a file sorted by label would
            # otherwise give windows of a single class).
            train = [i for i in range(chunks.info.n_chunks) if i not in self.val_chunks]
            order = [train[i] for i in rng.permutation(len(train))]
            raw: Iterator[Any] = dataset.iter_chunks(chunks.dtype_arg, order=order)
        else:
            raw = (
                c
                for i, c in enumerate(dataset.iter_chunks(chunks.dtype_arg))
                if i not in self.val_chunks
            )
        pipeline = SlotPipeline(raw, HostStager(), prepare=chunks.prepare, threaded=self.prefetch)
        pending: list[tuple[Any, np.ndarray, np.ndarray]] = []
        n_pending = 0
        for X, y, s in pipeline:
            # Copy out of the (possibly memory-mapped) chunk: the window outlives it.
            pending.append((_own(X), y, s))
            n_pending += X.shape[0]
            if n_pending >= self.window_rows:
                rest = yield from self._window(pending, rng, batch_size, final=False)
                pending = [rest] if rest is not None else []
                n_pending = 0 if rest is None else rest[0].shape[0]
        if pending:
            yield from self._window(pending, rng, batch_size, final=True)

    def _window(
        self,
        parts: list[tuple[Any, np.ndarray, np.ndarray]],
        rng: np.random.Generator,
        batch_size: int,
        *,
        final: bool,
    ) -> Generator[Batch, None, tuple[Any, np.ndarray, np.ndarray] | None]:
        """Shuffle the rows of a window, yield full batches; return the left-over rows."""
        X = _concat([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        s = np.concatenate([p[2] for p in parts])
        m = X.shape[0]
        order = rng.permutation(m)
        n_full = m if final else (m // batch_size) * batch_size
        Xd, yd, sd = (self._to_device(a) for a in (X, y, s))
        if n_full:
            yield from _batched(Xd, yd, sd, self.xp.asarray(order), n_full, batch_size)
        if n_full == m:
            return None
        rest = np.sort(order[n_full:])
        return X[rest], y[rest], s[rest]


def _own(X: Any) -> Any:
    """A copy of a chunk's rows that owns its memory (NumPy, CuPy or CSR)."""
    if is_sparse(X) or array_module_name(X) == "cupy":
        return X.copy()
    return np.array(X)


def _concat(arrays: list[Any]) -> Any:
    """The rows of the arrays (NumPy, CuPy or CSR matrices) one after the other."""
    if len(arrays) == 1:
        return arrays[0]
    if is_sparse(arrays[0]):
        if array_module_name(arrays[0]) == "cupy":
            import cupyx.scipy.sparse as sparse
        else:
            import scipy.sparse as sparse
        return sparse.vstack(arrays, format="csr")
    return array_namespace(arrays[0]).concatenate(arrays)
