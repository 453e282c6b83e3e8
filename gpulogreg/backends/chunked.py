"""A backend over a :class:`~gpulogreg.data.dataset.Dataset`: exact sums, chunk by chunk.

The full-batch solvers (newton, lbfgs, gd) run unchanged on data that does not
fit in memory: every protocol method is the sum over chunks of the same method
of an *inner* backend built on the chunk with
:func:`gpulogreg.backends.make_backend`, so the Numba and CUDA kernels of the
in-memory path do the work (:class:`~gpulogreg.backends.sum_of_parts.SumOfParts`
states the identity and adds the parts in order). The chunks come prepared
from the data layer (:class:`~gpulogreg.data.chunks.PreparedChunks`: labels
encoded, weights normalised over the whole dataset) and are staged by
:mod:`gpulogreg.backends.staging` (read ahead on a thread; pinned buffers and a
copy stream on a GPU), so at most two chunks are resident. Chunks are visited
in the dataset's fixed order and their results added in that order, so a pass
is reproducible run to run (on a GPU, with the same GPU model and CUDA, NVRTC,
cuBLAS and CuPy versions: see :mod:`gpulogreg.backends.cupy_backend`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name
from gpulogreg._layout import ParamLayout
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Backend
from gpulogreg.backends.staging import PinnedStager
from gpulogreg.backends.sum_of_parts import SumOfParts
from gpulogreg.data.chunks import PreparedChunks
from gpulogreg.data.dataset import Dataset
from gpulogreg.data.pipeline import HostStager, SlotPipeline, Stager

__all__ = ["ChunkedBackend"]


def resolve_chunk_backend(
    chunks: PreparedChunks, backend: str, device: str
) -> tuple[str, str, bool]:
    """``(inner backend, device, chunks already on the GPU)`` for a dataset's chunks.

    Decided from the first chunk (one read), as for in-memory data of its kind.
    """
    from gpulogreg.backends import resolve_backend

    first = next(iter(chunks.dataset.iter_chunks(chunks.dtype_arg)))
    name, target = resolve_backend(first.X, backend, device)
    return name, target, array_module_name(first.X) == "cupy"


def device_namespace(device: str) -> ModuleType:
    """The array module of the parameters and staged chunks on ``device`` (CuPy on a GPU)."""
    if device != "gpu":
        return np
    import cupy

    return cupy


def make_device_stager(xp: ModuleType, max_rows: int, n_features: int, dtype: Any) -> Stager:
    """The stager that copies host chunks to the GPU (pinned buffers, a copy stream)."""
    return PinnedStager(xp, max_rows, n_features, dtype)


class ChunkedBackend(SumOfParts):
    """The backend protocol over a :class:`Dataset`, accumulated chunk by chunk.

    Parameters
    ----------
    dataset : Dataset or PreparedChunks
        The data; a :class:`PreparedChunks` is used as it is (the other data
        arguments must then be left at their defaults).
    classes : ndarray, optional
        Class labels in model order; default: the dataset's (from its scan).
    n_classes : int, optional
        Model classes: 2 for a binary (sigmoid) loss, more for multinomial;
        default from ``classes`` and ``positive_class``.
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
    progress : Reporter, optional
        The fit's progress: it shows the chunk of each pass next to the bar
        and counts the passes.

    Attributes
    ----------
    chunks : PreparedChunks
    weight_sum : float
        ``W``, the sum of the effective weights (the penalty is ``1/(C W)``).
    n_passes : int
        Full passes over the data so far (the benchmark reports time per pass).
    inner_name : str
        Backend of the chunks.
    device : {"cpu", "gpu"}
    """

    def __init__(
        self,
        dataset: Dataset | PreparedChunks,
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
        progress: Reporter | None = None,
    ) -> None:
        if isinstance(dataset, PreparedChunks):
            self.chunks = dataset
        else:
            self.chunks = PreparedChunks(
                dataset,
                classes=classes,
                class_weight=class_weight,
                positive_class=positive_class,
                dtype=dtype,
            )
        chunks = self.chunks
        info = chunks.info
        self.n_classes = int(n_classes) if n_classes is not None else chunks.n_classes
        self.weight_sum = chunks.weight_sum
        self.dtype = chunks.dtype
        self.n_samples = info.n_samples
        self.n_features = info.n_features
        self.format = "csr" if info.sparse else "dense"  # the chunks' storage
        self.layout = ParamLayout.for_classes(self.n_features, self.n_classes, fit_intercept)
        self.inner_name, self.device, self._chunks_on_device = resolve_chunk_backend(
            chunks, backend, device
        )
        self.name = f"chunked({self.inner_name})"
        self.xp: ModuleType = device_namespace(self.device)
        self.prefetch = bool(prefetch)
        self.progress = progress
        self.n_passes = 0
        self._stager: Stager | None = None
        #: Inner backends kept between passes: only for in-memory chunks used
        #: in place (never for chunks staged into reused device buffers).
        self._cacheable = chunks.dataset.in_memory and (
            self.device != "gpu" or self._chunks_on_device
        )
        self._cache: list[Backend] | None = None

    def _make_stager(self) -> Stager:
        # CSR chunks are staged on the host and moved by make_backend, each in its own
        # size: pinned buffers are dense (max_rows x n_features), which a sparse chunk
        # must never become.
        if self.device != "gpu" or self._chunks_on_device or self.chunks.info.sparse:
            return HostStager()
        if self._stager is None:
            self._stager = make_device_stager(
                self.xp, max(self.chunks.info.chunk_rows), self.n_features, self.dtype
            )
        return self._stager

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
        if self._cache is not None:
            for i, b in enumerate(self._cache):
                self._show_chunk(i + 1)
                yield b
        else:
            pipeline = SlotPipeline(
                self.chunks.dataset.iter_chunks(self.chunks.dtype_arg),
                self._make_stager(),
                prepare=self.chunks.prepare,
                threaded=self.prefetch,
            )
            cache: list[Backend] | None = [] if self._cacheable else None
            for i, staged in enumerate(pipeline):
                inner = self._inner(staged)
                if cache is not None:
                    cache.append(inner)
                self._show_chunk(i + 1)
                yield inner
            if cache is not None:
                self._cache = cache
        self.n_passes += 1
        if self.progress is not None:
            self.progress.pass_done()

    def _show_chunk(self, i: int) -> None:
        """``pass p: chunk i/N`` next to the progress bar (on a terminal or in a notebook)."""
        if self.progress is not None and self.progress.detail_due():
            n_chunks = self.chunks.info.n_chunks
            self.progress.detail(f"pass {self.n_passes + 1}: chunk {i}/{n_chunks}")

    def map_parts(self, method: str, *vectors: Array) -> Iterable[Any]:
        for inner in self.chunk_backends():
            yield getattr(inner, method)(*vectors)

    def map_parts_with_rows(
        self, method: str, params: Array, rows: Array, *options: Any
    ) -> Iterable[Any]:
        """Each chunk's ``method(params, its slice of rows, *options)``, in the dataset's order.

        Every pass reads the chunks in the same order, so a chunk's first row
        is the number of rows before it. ``rows`` is in :attr:`xp` (on the GPU
        when the chunks are computed there).
        """
        start = 0
        for inner in self.chunk_backends():
            stop = start + inner.n_samples
            yield getattr(inner, method)(params, rows[start:stop], *options)
            start = stop
        if start != rows.shape[0]:
            raise ValueError(
                f"the dataset's chunks hold {start} rows, but {rows.shape[0]} row entries "
                "were given: the data changed since they were counted"
            )
