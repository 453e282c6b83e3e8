"""A backend over a :class:`~gpulogreg.dataset.Dataset`: exact sums, chunk by chunk.

The full-batch solvers (newton, lbfgs, gd) run unchanged on data that does not
fit in memory: every protocol method is the sum over chunks of the same method
of an *inner* backend built on the chunk with
:func:`gpulogreg.backends.make_backend` (so the Numba and CUDA kernels of the
in-memory path do the work). With the sample weights normalised over the whole
dataset (``s_i = w_i c_{y_i} / W``, ``W = sum_i w_i c_{y_i}``), the weighted
mean loss is additive over chunks::

    loss(params) = sum_c loss_c(params),  grad = sum_c grad_c,
    H = sum_c H_c,  Hv = sum_c H_c v,  A^T S A v = sum_c A_c^T S_c A_c v

so the objective, and hence the solver's path, equal the in-memory ones up to
floating-point summation order. Chunks are visited in the dataset's fixed
order, so a pass is reproducible bit for bit.

Memory: one chunk is computed on while the next one is read (a background
thread, ``prefetch=True``), so at most two chunks are resident.

GPU streaming (``device="gpu"`` with host data): each chunk is copied into a
*pinned* host buffer and from there to a device buffer by an asynchronous copy
on a dedicated non-blocking copy stream; two slots (pinned + device buffer
each) alternate, so the copy of chunk ``i + 1`` overlaps the kernels of chunk
``i``. The compute stream waits on the copy's event before it reads a slot,
and a slot is refilled only after the compute that read it has finished
(:class:`SlotPipeline` enforces the ordering; it is plain host logic, tested
without a GPU through a fake stager).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from gpulogreg._progress import ProgressLine
from gpulogreg._typing import Array, Backend
from gpulogreg.dataset import Chunk, Dataset, DatasetInfo

__all__ = ["ChunkedBackend", "PinnedStager", "SlotPipeline", "Stager", "class_multipliers"]

#: Integer labels spanning fewer values than this are encoded by a lookup table.
LABEL_LUT_MAX = 1 << 16
#: Seconds between two redraws of the chunk progress line (terminal only).
PROGRESS_INTERVAL = 0.2


# --------------------------------------------------------------------------- staging
class Stager(Protocol):
    """Moves prepared host chunks into numbered slots and hands them to the compute side.

    ``stage`` runs on the reader thread, ``acquire`` and ``release`` on the
    compute thread, always in the order stage(i) -> acquire(i) -> release(i)
    for a given slot; a slot is staged again only after it was released.
    """

    n_slots: int

    def stage(self, slot: int, item: Any) -> Any: ...

    def acquire(self, slot: int, staged: Any) -> Any: ...

    def release(self, slot: int) -> None: ...


class HostStager:
    """No device: chunks are used where they are (slots only bound the read-ahead)."""

    def __init__(self, n_slots: int = 2) -> None:
        self.n_slots = n_slots

    def stage(self, slot: int, item: Any) -> Any:
        return item

    def acquire(self, slot: int, staged: Any) -> Any:
        return staged

    def release(self, slot: int) -> None:
        return None


class SlotPipeline:
    """Read ahead and stage chunks on a background thread, ``n_slots`` in flight at most.

    Slot ``i % n_slots`` holds item ``i``. The reader thread takes a free slot
    (blocking until the compute side released it), reads the next item,
    prepares it (``prepare``, e.g. label encoding) and stages it; the compute
    side receives items in order, ``acquire`` makes them usable (on a GPU: the
    compute stream waits for the slot's copy) and ``release`` frees the slot
    after the caller is done with it (the caller's computation has finished:
    every inner backend call ends with a host scalar, which synchronises).

    With ``threaded=False`` the same protocol runs inline (no overlap).
    Exceptions raised while reading are re-raised on the compute side; leaving
    the loop early stops the reader.
    """

    def __init__(
        self,
        items: Iterable[Any],
        stager: Stager,
        *,
        prepare: Callable[[Any], Any] | None = None,
        threaded: bool = True,
    ) -> None:
        self.items = items
        self.stager = stager
        self.prepare = prepare or (lambda item: item)
        self.threaded = threaded

    def __iter__(self) -> Iterator[Any]:
        if not self.threaded:
            yield from self._inline()
            return
        yield from self._threaded()

    def _inline(self) -> Iterator[Any]:
        n = self.stager.n_slots
        for i, item in enumerate(self.items):
            slot = i % n
            staged = self.stager.stage(slot, self.prepare(item))
            try:
                yield self.stager.acquire(slot, staged)
            finally:
                self.stager.release(slot)

    def _threaded(self) -> Iterator[Any]:
        n = self.stager.n_slots
        free = threading.Semaphore(n)
        ready: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        stop = threading.Event()

        def reader() -> None:
            try:
                iterator = iter(self.items)
                i = 0
                while True:
                    free.acquire()
                    if stop.is_set():
                        return
                    try:
                        item = next(iterator)
                    except StopIteration:
                        ready.put(("end", -1, None))
                        return
                    slot = i % n
                    ready.put(("item", slot, self.stager.stage(slot, self.prepare(item))))
                    i += 1
            except BaseException as exc:
                ready.put(("error", -1, exc))

        thread = threading.Thread(target=reader, name="gpulogreg-chunk-reader", daemon=True)
        thread.start()
        try:
            while True:
                kind, slot, payload = ready.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                try:
                    yield self.stager.acquire(slot, payload)
                finally:
                    self.stager.release(slot)
                    free.release()
        finally:
            stop.set()
            for _ in range(n):  # wake the reader wherever it waits for a slot
                free.release()
            thread.join(timeout=60)


class PinnedStager:
    """Host chunk -> pinned buffer -> device buffer on a copy stream, double buffered.

    Each slot owns a pinned host buffer and a device buffer for X (and small
    ones for the labels and weights), sized for the largest chunk. ``stage``
    (reader thread) waits until the slot's previous copy has finished with the
    pinned buffer, copies the chunk into it (a host memcpy), starts the
    asynchronous host-to-device copy on ``copy_stream`` and records an event.
    ``acquire`` (compute thread) makes the compute stream wait on that event,
    so kernels never read a half-copied slot; ``release`` records an event on
    the compute stream, which the next ``stage`` of the slot waits on before
    overwriting the device buffer.

    The copy stream is created non-blocking, so it does not serialise with
    the legacy default stream the kernels run on.
    """

    def __init__(
        self, cupy: ModuleType, max_rows: int, n_features: int, dtype: Any, n_slots: int = 2
    ) -> None:
        import cupyx

        self.cp = cupy
        self.n_slots = n_slots
        self.device_id = cupy.cuda.Device().id
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        shape = (max_rows, n_features)
        self.pinned_X = [cupyx.empty_pinned(shape, dtype=dtype) for _ in range(n_slots)]
        self.pinned_y = [cupyx.empty_pinned((max_rows,), dtype=np.int32) for _ in range(n_slots)]
        self.pinned_s = [cupyx.empty_pinned((max_rows,), dtype=np.float64) for _ in range(n_slots)]
        self.dev_X = [cupy.empty(shape, dtype=dtype) for _ in range(n_slots)]
        self.dev_y = [cupy.empty((max_rows,), dtype=cupy.int32) for _ in range(n_slots)]
        self.dev_s = [cupy.empty((max_rows,), dtype=cupy.float64) for _ in range(n_slots)]
        self.copied: list[Any] = [None] * n_slots
        self.computed: list[Any] = [None] * n_slots

    def stage(self, slot: int, item: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Any:
        X, y, s = item
        m = X.shape[0]
        with self.cp.cuda.Device(self.device_id):
            if self.copied[slot] is not None:
                self.copied[slot].synchronize()  # the pinned buffer is free again
            if self.computed[slot] is not None:
                self.computed[slot].synchronize()  # the device buffer is free again
            np.copyto(self.pinned_X[slot][:m], X)
            self.pinned_y[slot][:m] = y
            self.pinned_s[slot][:m] = s
            dX, dy, ds = self.dev_X[slot][:m], self.dev_y[slot][:m], self.dev_s[slot][:m]
            dX.set(self.pinned_X[slot][:m], stream=self.copy_stream)
            dy.set(self.pinned_y[slot][:m], stream=self.copy_stream)
            ds.set(self.pinned_s[slot][:m], stream=self.copy_stream)
            event = self.cp.cuda.Event(disable_timing=True)
            event.record(self.copy_stream)
            self.copied[slot] = event
        return dX, dy, ds

    def acquire(self, slot: int, staged: Any) -> Any:
        self.cp.cuda.get_current_stream().wait_event(self.copied[slot])
        return staged

    def release(self, slot: int) -> None:
        event = self.cp.cuda.Event(disable_timing=True)
        event.record(self.cp.cuda.get_current_stream())
        self.computed[slot] = event


# --------------------------------------------------------------------------- weights
def class_multipliers(class_weight: Any, info: DatasetInfo) -> np.ndarray:
    """Per-class weight multipliers from a scan (``"balanced"`` uses the weighted counts)."""
    from gpulogreg.data import class_weights

    k = len(info.classes)
    return class_weights(
        class_weight, info.classes, np.arange(k, dtype=np.int32), info.class_weight_sums
    )


# --------------------------------------------------------------------------- backend
class ChunkedBackend:
    """The backend protocol over a :class:`Dataset`, accumulated chunk by chunk.

    Parameters
    ----------
    dataset : Dataset
    classes : ndarray, optional
        Class labels in model order; default: the dataset's (from its scan).
    n_classes : int
        2: binary (sigmoid) loss; more: multinomial.
    fit_intercept : bool
    class_weight : None, "balanced" or dict
    positive_class : int, optional
        One-vs-rest: the binary target is ``y == classes[positive_class]``.
    backend : {"auto", "numpy", "numba", "cupy"}
        Inner backend for each chunk.
    device : {"auto", "cpu", "gpu"}
    dtype : {None, "float32", "float64"}
        Working dtype of X; None keeps the dataset's.
    prefetch : bool
        Read the next chunk on a background thread while computing on this one.
    verbose : bool
        Show chunk progress within long passes on a terminal.

    Attributes
    ----------
    weight_sum : float
        ``W``, the sum of the effective weights (the penalty is ``1/(C W)``).
    n_passes : int
        Full passes over the data so far (the benchmark reports time per pass).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        classes: np.ndarray | None = None,
        n_classes: int | None = None,
        fit_intercept: bool = True,
        class_weight: Any = None,
        positive_class: int | None = None,
        backend: str = "auto",
        device: str = "auto",
        dtype: Any = None,
        prefetch: bool = True,
        verbose: bool = False,
    ) -> None:
        from gpulogreg.backends import resolve_backend

        self.dataset = dataset
        self.info = dataset.scan(dtype)
        self.classes = self.info.classes if classes is None else np.asarray(classes)
        if classes is not None and not np.array_equal(self.classes, self.info.classes):
            # The model knows more classes than the data holds (or orders them
            # differently): recount with the model's classes.
            self.info = _recount(dataset, self.classes, dtype)
        k = len(self.classes)
        self.positive_class = positive_class
        if n_classes is None:
            n_classes = 2 if positive_class is not None else k
        self.n_classes = int(n_classes)
        self.n_outputs = 1 if self.n_classes == 2 else self.n_classes
        self.fit_intercept = bool(fit_intercept)
        self.multipliers = class_multipliers(class_weight, self.info)
        self.weight_sum = float(self.multipliers @ self.info.class_weight_sums)
        if not self.weight_sum > 0:
            raise ValueError("the sample and class weights sum to zero")
        #: Per-class factor of the normalised weights, ``c_k / W``.
        self._class_scale = np.asarray(self.multipliers / self.weight_sum, dtype=np.float64)
        self._uniform_class_weight = bool(np.all(self._class_scale == self._class_scale[0]))
        # Small-range integer labels are encoded by a lookup table (no search).
        self._label_offset: int | None = None
        self._label_lut = np.empty(0, dtype=np.int32)
        if self.classes.dtype.kind in "iub":
            lo, hi = int(self.classes.min()), int(self.classes.max())
            if hi - lo < LABEL_LUT_MAX:
                self._label_offset = lo
                self._label_lut = np.zeros(hi - lo + 1, dtype=np.int32)
                self._label_lut[self.classes.astype(np.int64) - lo] = np.arange(k, dtype=np.int32)
        self.dtype = np.dtype(self.info.dtype)
        self._dtype_arg = dtype
        self.n_samples = self.info.n_samples
        self.n_features = self.info.n_features
        from gpulogreg.data import array_module_name

        first = next(iter(dataset.iter_chunks(dtype)))
        self.inner_name, self.device = resolve_backend(first.X, backend, device)
        self._chunks_on_device = array_module_name(first.X) == "cupy"
        del first
        self.name = f"chunked({self.inner_name})"
        self.xp: ModuleType = np
        if self.device == "gpu":
            import cupy

            self.xp = cupy
        self.prefetch = bool(prefetch)
        self.verbose = bool(verbose)
        self.n_passes = 0
        self._stager: Any = None
        #: Inner backends kept between passes: only for in-memory chunks used
        #: in place (never for chunks staged into reused device buffers).
        self._cacheable = dataset.in_memory and (self.device != "gpu" or self._chunks_on_device)
        self._cache: list[Backend] | None = None

    # -- parameter layout ------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.n_outputs * (self.n_features + int(self.fit_intercept))

    # -- chunk preparation -----------------------------------------------------
    def _prepare(self, chunk: Chunk) -> tuple[Any, np.ndarray, np.ndarray]:
        """Encode labels and normalise weights for one chunk (runs on the reader thread).

        The labels were validated against the classes by the scan, so a
        binary search encodes them; the weights are ``c_{y_i} w_i / W``.
        """
        y = chunk.y
        if self._label_offset is not None:
            idx = self._label_lut[y.astype(np.int64, copy=False) - self._label_offset]
        else:
            idx = np.searchsorted(self.classes, y).astype(np.int32)
        w = chunk.sample_weight
        if self._uniform_class_weight:
            s = np.full(idx.shape[0], self._class_scale[0])
        else:
            s = self._class_scale[idx]
        if w is not None:
            s = s * w
        if self.positive_class is not None:
            idx = (idx == self.positive_class).astype(np.int32)
        return chunk.X, idx, s

    def _make_stager(self) -> Stager:
        if self.device != "gpu" or self._chunks_on_device:
            return HostStager()
        if self._stager is None:
            self._stager = PinnedStager(
                self.xp, max(self.info.chunk_rows), self.n_features, self.dtype
            )
        stager: Stager = self._stager
        return stager

    def _inner(self, staged: tuple[Any, Any, Any]) -> Backend:
        from gpulogreg.backends import make_backend

        X, y, s = staged
        return make_backend(
            X,
            y,
            s,
            n_classes=self.n_classes,
            fit_intercept=self.fit_intercept,
            backend=self.inner_name,
            device=self.device,
        )

    def chunk_backends(self) -> Iterator[Backend]:
        """One inner backend per chunk, in the dataset's order (one full pass)."""
        progress = (
            ProgressLine(interval=PROGRESS_INTERVAL, delay=PROGRESS_INTERVAL)
            if self.verbose
            else None
        )
        if self._cache is not None:
            for i, b in enumerate(self._cache):
                if progress is not None:
                    _show_chunk(progress, i + 1, self.info.n_chunks)
                yield b
        else:
            pipeline = SlotPipeline(
                self.dataset.iter_chunks(self._dtype_arg),
                self._make_stager(),
                prepare=self._prepare,
                threaded=self.prefetch,
            )
            cache: list[Backend] | None = [] if self._cacheable else None
            for i, staged in enumerate(pipeline):
                inner = self._inner(staged)
                if cache is not None:
                    cache.append(inner)
                if progress is not None:
                    _show_chunk(progress, i + 1, self.info.n_chunks)
                yield inner
            if cache is not None:
                self._cache = cache
        if progress is not None:
            progress.close(erase=True)
        self.n_passes += 1

    # -- protocol ----------------------------------------------------------------
    def loss(self, params: Array) -> float:
        return math.fsum(b.loss(params) for b in self.chunk_backends())

    def loss_grad(self, params: Array) -> tuple[float, Array]:
        losses: list[float] = []
        grad = None
        for b in self.chunk_backends():
            loss, g = b.loss_grad(params)
            losses.append(loss)
            grad = g if grad is None else grad + g
        return math.fsum(losses), grad

    def hessian(self, params: Array) -> Array:
        H = None
        for b in self.chunk_backends():
            Hc = b.hessian(params)
            if H is None:
                H = Hc
            else:
                H += Hc
        return H

    def hvp(self, params: Array, v: Array) -> Array:
        out = None
        for b in self.chunk_backends():
            o = b.hvp(params, v)
            out = o if out is None else out + o
        return out

    def gram_matvec(self, v: Array) -> Array:
        out = None
        for b in self.chunk_backends():
            o = b.gram_matvec(v)
            out = o if out is None else out + o
        return out

    def decision(self, params: Array, X: Array) -> Array:
        xp = self.xp
        W = params.reshape(self.n_outputs, self.n_features + int(self.fit_intercept))
        coef = W[:, : self.n_features]
        z = (X @ coef.T.astype(X.dtype, copy=False)).astype(xp.float64)
        if self.fit_intercept:
            z = z + W[:, -1]
        return z[:, 0] if self.n_outputs == 1 else z


def _recount(dataset: Dataset, classes: np.ndarray, dtype: Any) -> DatasetInfo:
    """Scan info with the counts laid out over ``classes`` (labels outside them raise)."""
    info = dataset.scan(dtype)
    pos = np.searchsorted(classes, info.classes)
    pos = np.clip(pos, 0, len(classes) - 1)
    unknown = classes[pos] != info.classes
    if unknown.any():
        raise ValueError(
            f"the data holds label {info.classes[unknown][0]!r}, not in classes {classes}"
        )
    counts = np.zeros(len(classes), dtype=np.int64)
    wsums = np.zeros(len(classes))
    counts[pos] = info.class_counts
    wsums[pos] = info.class_weight_sums
    return DatasetInfo(
        n_samples=info.n_samples,
        n_features=info.n_features,
        n_chunks=info.n_chunks,
        chunk_rows=info.chunk_rows,
        classes=np.asarray(classes),
        class_counts=counts,
        class_weight_sums=wsums,
        dtype=info.dtype,
        has_weights=info.has_weights,
        stamp=info.stamp,
    )


def _show_chunk(progress: ProgressLine, i: int, n_chunks: int) -> None:
    """``chunk i/N`` of the current pass, on a terminal only."""
    bar = progress.bar(i / max(n_chunks, 1))
    progress.update(f"  pass {bar} chunk {i}/{n_chunks}", transient=True)
