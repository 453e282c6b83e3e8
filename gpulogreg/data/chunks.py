"""Chunk preparation for out-of-core fits: a Dataset's chunks with labels and weights ready.

A :class:`~gpulogreg.data.dataset.Dataset` yields chunks of raw rows (``X``,
labels as stored, optional sample weights). Before a backend may use a chunk,
its labels become int32 class indices (one-vs-rest: 0/1 for one class) and its
weights the normalised effective weights ``s_i = w_i c_{y_i} / W``, with the
class multipliers ``c_k`` and the total weight ``W`` of the whole dataset (from
its validating scan). With that normalisation the weighted mean loss is
additive over chunks, which is what lets the chunked backend sum them. This is
the data layer's side of the out-of-core pipeline; staging the prepared chunks
(threads, pinned buffers) is :mod:`gpulogreg.backends.staging`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError
from gpulogreg.data.dataset import Chunk, Dataset, DatasetInfo
from gpulogreg.data.validation import class_weights, shown

__all__ = ["PreparedChunks"]

#: Integer labels spanning fewer values than this are encoded by a lookup table
#: (one gather) instead of a binary search; the table then takes at most 256 kB.
LABEL_LUT_MAX = 1 << 16


class PreparedChunks:
    """The chunks of a :class:`Dataset` with encoded labels and normalised weights.

    Parameters
    ----------
    dataset : Dataset
    classes : ndarray, optional
        Class labels in model order; default: the dataset's (from its scan).
    class_weight : None, "balanced" or dict
    positive_class : int, optional
        One-vs-rest: the binary target is ``y == classes[positive_class]``.
    dtype : {None, "float32", "float64"}
        Working dtype of X; None keeps the dataset's.

    Attributes
    ----------
    info : DatasetInfo
        The scan, with counts laid out over ``classes``.
    classes : ndarray
    n_classes : int
        Classes of the model: 2 for a one-vs-rest task, else ``len(classes)``.
    weight_sum : float
        ``W``, the sum of the effective weights (the penalty is ``1 / (C W)``).
    dtype : numpy.dtype
        dtype of the prepared chunks' X.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        classes: np.ndarray | None = None,
        class_weight: Any = None,
        positive_class: int | None = None,
        dtype: Any = None,
    ) -> None:
        self.dataset = dataset
        self.dtype_arg = dtype
        info = dataset.scan(dtype)
        self.classes = info.classes if classes is None else np.asarray(classes)
        if classes is not None and not np.array_equal(self.classes, info.classes):
            # The model knows more classes than the data holds (or orders them
            # differently): recount with the model's classes.
            info = _recount(info, self.classes)
        self.info: DatasetInfo = info
        self.positive_class = positive_class
        self.n_classes = 2 if positive_class is not None else len(self.classes)
        k = len(self.classes)
        multipliers = class_weights(
            class_weight, self.classes, np.arange(k, dtype=np.int32), info.class_weight_sums
        )
        self.weight_sum = float(multipliers @ info.class_weight_sums)
        if not self.weight_sum > 0:
            raise InputValueError("the sample and class weights sum to zero")
        #: Per-class factor of the normalised weights, ``c_k / W``.
        self._class_scale = np.asarray(multipliers / self.weight_sum, dtype=np.float64)
        self._uniform_class_weight = bool(np.all(self._class_scale == self._class_scale[0]))
        self._label_offset: int | None = None
        self._label_lut = np.empty(0, dtype=np.int32)
        if self.classes.dtype.kind in "iub":
            lo, hi = int(self.classes.min()), int(self.classes.max())
            if hi - lo < LABEL_LUT_MAX:
                self._label_offset = lo
                self._label_lut = np.zeros(hi - lo + 1, dtype=np.int32)
                self._label_lut[self.classes.astype(np.int64) - lo] = np.arange(k, dtype=np.int32)
        self.dtype = np.dtype(info.dtype)

    def class_totals(self) -> np.ndarray:
        """The effective weight ``c_k sum_i w_i`` of each class (they add up to ``W``)."""
        return self._class_scale * self.weight_sum * self.info.class_weight_sums

    def for_class(self, positive_class: int | None) -> PreparedChunks:
        """The same chunks prepared for another task (one-vs-rest class, or all classes)."""
        other = object.__new__(PreparedChunks)
        other.__dict__.update(self.__dict__)
        other.positive_class = positive_class
        other.n_classes = 2 if positive_class is not None else len(self.classes)
        return other

    def prepare(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, class indices (int32), normalised weights (float64))`` of one chunk.

        The labels were validated against the classes by the scan, so a lookup
        or a binary search encodes them; the weights are ``c_{y_i} w_i / W``.
        """
        y = chunk.y
        if self._label_offset is not None:
            idx = self._label_lut[y.astype(np.int64, copy=False) - self._label_offset]
        else:
            idx = np.searchsorted(self.classes, y).astype(np.int32)
        if self._uniform_class_weight:
            s = np.full(idx.shape[0], self._class_scale[0])
        else:
            s = self._class_scale[idx]
        if chunk.sample_weight is not None:
            s = s * chunk.sample_weight
        if self.positive_class is not None:
            idx = (idx == self.positive_class).astype(np.int32)
        return chunk.X, idx, s


def _recount(info: DatasetInfo, classes: np.ndarray) -> DatasetInfo:
    """``info`` with the counts laid out over ``classes`` (labels outside them raise)."""
    pos = np.clip(np.searchsorted(classes, info.classes), 0, len(classes) - 1)
    unknown = classes[pos] != info.classes
    if unknown.any():
        raise InputValueError(
            f"the data holds label {shown(info.classes[unknown][0])}, not in classes "
            f"{shown(classes)}"
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
