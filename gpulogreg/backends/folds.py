"""Several models of one data set evaluated together: the folds of a cross-validation.

A fold is a weight vector over the rows (held-out rows weigh zero), so the
models of all folds can share every read of ``X``. A fold evaluator holds
``X``, the labels and the folds' weights (:class:`FoldWeights`: row ``i`` weighs
``s_i * counts[i, f] * scale[f]`` in fold ``f``, each fold's weights summing to
one), and evaluates the weighted mean loss and its gradient of any set of fold
models in one pass:

* :class:`NumbaFolds` (dense NumPy ``X``): the fused kernel of
  :mod:`gpulogreg.backends._numba_folds`, one read of each row for all models;
* :class:`ArrayFolds` (NumPy or CuPy, dense or CSR): two matrix products for
  all models at once (``Z = X W^T``, then ``R^T X``), BLAS, cuBLAS or the
  sparse product, with the pointwise loss in between.

Each model's result is the one its own backend (:func:`gpulogreg.backends.make_backend`
with the fold's weights) would give, up to the order of floating-point sums.
* :class:`ChunkedFolds` (a :class:`~gpulogreg.data.dataset.Dataset`): one of the
  above per chunk, the chunks read once per evaluation and their sums added in
  the dataset's order. A Dataset's folds are a hash of the row index
  (:func:`hash_folds`) or given fold labels, one per row (:class:`RowFolds`), so
  nothing but the chunks (and the labels) is ever read.

Dask arrays have no fold evaluator (:func:`make_fold_evaluator` returns None):
their folds are evaluated by per-fold backends, one pass each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, is_sparse
from gpulogreg._errors import InputValueError
from gpulogreg._layout import ParamLayout
from gpulogreg._typing import Array
from gpulogreg.backends.sum_of_parts import SumOfParts

__all__ = [
    "ArrayFolds",
    "ChunkedFolds",
    "DatasetFolds",
    "FoldEvaluator",
    "FoldOfChunks",
    "FoldWeights",
    "NumbaFolds",
    "RowFolds",
    "hash_folds",
    "make_fold_evaluator",
]

#: splitmix64's constants (Steele, Lea and Flood 2014): a fixed bijection of the
#: 64-bit integers whose outputs pass statistical tests, so that ``hash % k`` deals
#: consecutive rows to the folds as a random draw would, the same on every machine.
_MIX_INCREMENT = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def hash_folds(start: int, n_rows: int, n_folds: int) -> np.ndarray:
    """The fold (held out in it) of rows ``start .. start + n_rows - 1``: ``splitmix64(i) % k``.

    Returns
    -------
    ndarray of shape (n_rows,), int64 in ``0 .. n_folds - 1``
    """
    z = np.arange(start, start + n_rows, dtype=np.uint64) * _MIX_INCREMENT + _MIX_INCREMENT
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_folds)).astype(np.int64)


@dataclass(frozen=True)
class FoldWeights:
    """The folds' row weights: ``s[i] * counts[i, f] * scale[f]`` for row ``i`` in fold ``f``.

    Attributes
    ----------
    s : array of shape (n_samples,), float64, in the data's namespace
        The rows' (sample x class) weights.
    counts : array of shape (n_samples, n_folds), uint8 or int32, in the data's namespace
        How often each row is among each fold's training rows (0: held out).
    scale : ndarray of shape (n_folds,), float64 (host)
        Each fold's normaliser, so that its weights sum to one.
    """

    s: Array
    counts: Array
    scale: np.ndarray

    def matrix(self, folds: Sequence[int], xp: Any) -> Array:
        """The weights of ``folds``, one column each: shape (n_samples, len(folds)), float64."""
        index = np.asarray(folds, dtype=np.int64)
        counts = self.counts[:, xp.asarray(index)].astype(xp.float64)
        return self.s[:, None] * counts * xp.asarray(self.scale[index])

    def column(self, fold: int, xp: Any) -> Array:
        """Fold ``fold``'s weights, C-contiguous float64 (a fold's own backend)."""
        return xp.ascontiguousarray(self.s * (self.counts[:, fold] * float(self.scale[fold])))


class FoldEvaluator(Protocol):
    """Losses and gradients of several fold models from one pass over ``X``."""

    layout: ParamLayout

    def evaluate(
        self, folds: Sequence[int], params: Sequence[Array], *, with_grad: bool
    ) -> list[tuple[Any, Array | None]]:
        """``(loss, grad)`` of each model: ``params[a]`` with the weights of fold ``folds[a]``.

        The loss is a float or a 0-d array of the data's namespace, ``grad``
        a flat float64 vector in the parameter layout (None without ``with_grad``).
        """
        ...


def make_fold_evaluator(
    X: Array, y: Array, fold_weights: FoldWeights, layout: ParamLayout, backend: str
) -> FoldEvaluator | None:
    """The evaluator of ``backend`` (a resolved registry name) for placed data; None for Dask."""
    if array_module_name(X) == "dask":
        return None
    if backend == "numba" and not is_sparse(X):
        return NumbaFolds(X, y, fold_weights, layout)
    return ArrayFolds(X, y, fold_weights, layout)


def _stacked(layout: ParamLayout, params: Sequence[Array], xp: Any) -> tuple[Array, Array]:
    """``(W (A * n_out, n), bias (A * n_out,))`` of the models, float64, C-contiguous."""
    coefs, biases = [], []
    for p in params:
        coef, intercept = layout.split(xp.asarray(p, dtype=xp.float64))
        coefs.append(coef)
        biases.append(
            intercept if layout.fit_intercept else xp.zeros(layout.n_outputs, dtype=xp.float64)
        )
    W = xp.ascontiguousarray(xp.concatenate(coefs, axis=0))
    return W, xp.ascontiguousarray(xp.concatenate(biases))


class NumbaFolds:
    """The fused Numba pass for dense NumPy ``X`` (see :mod:`gpulogreg.backends._numba_folds`)."""

    def __init__(self, X: Array, y: Array, fold_weights: FoldWeights, layout: ParamLayout) -> None:
        self.X = X
        self.y = np.ascontiguousarray(y, dtype=np.int32)
        self.s = np.ascontiguousarray(fold_weights.s, dtype=np.float64)
        self.counts = np.ascontiguousarray(fold_weights.counts)
        self.scale = np.ascontiguousarray(fold_weights.scale, dtype=np.float64)
        self.layout = layout

    def evaluate(
        self, folds: Sequence[int], params: Sequence[Array], *, with_grad: bool
    ) -> list[tuple[Any, Array | None]]:
        from gpulogreg.backends._numba_folds import folds_loss_grad
        from gpulogreg.backends.numba_backend import _serial_when_small

        layout = self.layout
        K, n = layout.n_outputs, layout.n_features
        W, bias = _stacked(layout, params, np)
        index = np.asarray(folds, dtype=np.int64)
        with _serial_when_small(self.X.shape[0]):
            out = folds_loss_grad(
                self.X, self.y, self.s, self.counts, self.scale, index, W, bias, K, with_grad
            )
        A = len(index)
        losses = out[A * K * (n + 1) :]
        grads = out[: A * K * (n + 1)].reshape(A, K, n + 1)
        results: list[tuple[Any, Array | None]] = []
        for a in range(A):
            grad = layout.join(grads[a, :, :n], grads[a, :, n], np) if with_grad else None
            results.append((float(losses[a]), grad))
        return results


class ArrayFolds:
    """Two matrix products for all models (NumPy or CuPy, dense or CSR ``X``).

    Binary models: ``Z = X W^T + b`` (one column per model), the stable
    log-loss and residual ``R = S_a (sigmoid(Z) - y)`` column by column,
    ``grad = R^T X``. Multinomial models: ``Z`` has ``K`` columns per model and
    the softmax runs over each model's columns. The products run in ``X``'s
    dtype (no upcast copy of ``X``), as the baseline backend's.
    """

    def __init__(self, X: Array, y: Array, fold_weights: FoldWeights, layout: ParamLayout) -> None:
        self.xp = array_namespace(fold_weights.s)
        self.X = X
        self.y = self.xp.asarray(y, dtype=self.xp.int32)
        self.weights = fold_weights
        self.layout = layout

    def evaluate(
        self, folds: Sequence[int], params: Sequence[Array], *, with_grad: bool
    ) -> list[tuple[Any, Array | None]]:
        xp, X, layout = self.xp, self.X, self.layout
        K = layout.n_outputs
        W, bias = _stacked(layout, params, xp)
        A = len(folds)
        S = self.weights.matrix(folds, xp)  # (m, A)
        Z = xp.asarray(X @ W.T.astype(X.dtype)).astype(xp.float64) + bias  # (m, A * K)
        if K == 1:
            yf = self.y.astype(xp.float64)[:, None]
            e = xp.exp(-xp.abs(Z))
            losses = (S * (xp.maximum(Z, 0.0) - yf * Z + xp.log1p(e))).sum(axis=0)
            R = S * (xp.where(Z >= 0, 1.0, e) / (1.0 + e) - yf)
        else:
            Z3 = Z.reshape(Z.shape[0], A, K)
            zmax = Z3.max(axis=2, keepdims=True)
            E = xp.exp(Z3 - zmax)
            total = E.sum(axis=2, keepdims=True)
            own = xp.take_along_axis(Z3, self.y[:, None, None].astype(xp.int64), axis=2)
            lse = zmax + xp.log(total)
            losses = (S * (lse - own)[:, :, 0]).sum(axis=0)
            E /= total
            E[xp.arange(E.shape[0]), :, self.y] -= 1.0
            R = (E * S[:, :, None]).reshape(Z.shape[0], A * K)
        grads: Array | None = None
        if with_grad:
            Rx = R.astype(X.dtype)
            product = (X.T @ Rx).T if is_sparse(X) else Rx.T @ X
            grads = xp.asarray(product).astype(xp.float64)  # (A * K, n)
            intercepts = R.sum(axis=0)
        results: list[tuple[Any, Array | None]] = []
        for a in range(A):
            grad = None
            if grads is not None:
                rows = slice(a * K, (a + 1) * K)
                grad = layout.join(grads[rows], intercepts[rows], xp)
            results.append((losses[a], grad))
        return results


#: Fold labels read per step when :meth:`RowFolds.predefined` finds the folds.
_LABEL_SCAN_ROWS = 1 << 20


class RowFolds:
    """Which fold holds out each row of a Dataset: a hash of the row index, or given fold labels.

    Build it with :meth:`hashed` or :meth:`predefined`. Either way nothing but
    one fold id per row (hashed on the fly, or the given array) is read.

    Attributes
    ----------
    n_folds : int
    """

    def __init__(self, n_folds: int, test_fold: np.ndarray | None, labels: np.ndarray) -> None:
        self.n_folds = int(n_folds)
        self._test_fold = test_fold
        self._labels = labels

    @classmethod
    def hashed(cls, n_folds: int) -> RowFolds:
        """Rows dealt by :func:`hash_folds` (``splitmix64(row) % n_folds``)."""
        return cls(n_folds, None, np.arange(n_folds))

    @classmethod
    def predefined(cls, test_fold: Any, n_samples: int) -> RowFolds:
        """scikit-learn's ``PredefinedSplit`` rule: row ``i`` is held out in fold ``test_fold[i]``.

        A fold per distinct label, in sorted order; ``-1`` puts a row in every
        training set and no test set. ``test_fold`` is read as given (a memory
        map stays one), a chunk's range at a time.

        Raises
        ------
        InputValueError
            ``test_fold`` is not one integer per row, or names no fold.
        """
        if not hasattr(test_fold, "shape") or not hasattr(test_fold, "dtype"):
            test_fold = np.asarray(test_fold)
        if test_fold.ndim != 1 or test_fold.shape[0] != n_samples:
            raise InputValueError(
                f"cv: test_fold has shape {tuple(test_fold.shape)}; a Dataset of {n_samples} "
                f"rows needs one fold label per row, shape ({n_samples},)"
            )
        if not np.issubdtype(test_fold.dtype, np.integer):
            raise InputValueError(
                f"cv: test_fold holds {test_fold.dtype} values; fold labels are integers "
                "(-1: a row held out in no fold)"
            )
        labels = np.zeros(0, dtype=np.int64)
        for start in range(0, n_samples, _LABEL_SCAN_ROWS):  # a range at a time: no copy
            part = np.asarray(test_fold[start : start + _LABEL_SCAN_ROWS], dtype=np.int64)
            labels = np.union1d(labels, np.unique(part))
        labels = labels[labels != -1]
        if labels.shape[0] == 0:
            raise InputValueError("cv: test_fold holds only -1: no row is held out in any fold")
        return cls(labels.shape[0], test_fold, labels)

    def held_out(self, start: int, n_rows: int) -> np.ndarray:
        """The fold holding out each of rows ``start .. start + n_rows - 1`` (-1: none).

        Returns
        -------
        ndarray of shape (n_rows,), int64 in ``-1 .. n_folds - 1``
        """
        if self._test_fold is None:
            return hash_folds(start, n_rows, self.n_folds)
        given = np.asarray(self._test_fold[start : start + n_rows], dtype=np.int64)
        return np.where(given == -1, -1, np.searchsorted(self._labels, given))

    @property
    def hashed_rows(self) -> bool:
        """Whether the folds are a hash of the row index (not given labels)."""
        return self._test_fold is None

    def describe(self, f: int) -> str:
        """How an error names fold ``f``."""
        if self._test_fold is None:
            return f"fold {f} of cv={self.n_folds}"
        return f"fold {f} (test_fold label {self._labels[f]})"


class DatasetFolds:
    """A Dataset's folds as weights: the rows' :class:`RowFolds`, each chunk's counts kept.

    The training counts of a chunk (``n_rows x n_folds`` uint8, one byte per
    row and fold) are built on its first pass and kept, keyed by the chunk's
    first row and length, so that later passes neither hash nor compare again (building
    them costs more than the fold kernel's read of a narrow chunk).

    Parameters
    ----------
    rows : RowFolds
    scale : ndarray of shape (n_folds,)
        Each fold's normaliser (one over the share of the weight it trains on).
    """

    def __init__(self, rows: RowFolds, scale: np.ndarray) -> None:
        self.rows = rows
        self.n_folds = rows.n_folds
        self.scale = np.asarray(scale, dtype=np.float64)
        self._counts: dict[tuple[int, int], np.ndarray] = {}

    def weights(self, inner: Any, start: int) -> FoldWeights:
        """The fold weights of one chunk's rows (global rows ``start ..``), on its device."""
        key = (int(start), int(inner.n_samples))
        counts = self._counts.get(key)
        if counts is None:
            held_out = self.rows.held_out(*key)
            counts = np.ones((key[1], self.n_folds), dtype=np.uint8)
            rows = np.flatnonzero(held_out >= 0)
            counts[rows, held_out[rows]] = 0
            self._counts[key] = counts
        xp = array_namespace(inner.sample_weight)
        return FoldWeights(s=inner.sample_weight, counts=xp.asarray(counts), scale=self.scale)


class ChunkedFolds:
    """The fold models of a Dataset: an in-memory evaluator per chunk, summed in chunk order.

    Parameters
    ----------
    chunked : ChunkedBackend
        The dataset's chunks (its ``chunk_backends`` pass: staging, prefetch,
        pass counting); their weights are normalised over the whole dataset.
    folds : DatasetFolds
    """

    def __init__(self, chunked: Any, folds: DatasetFolds) -> None:
        self.chunked = chunked
        self.layout: ParamLayout = chunked.layout
        self.folds = folds

    def evaluate(
        self, folds: Sequence[int], params: Sequence[Array], *, with_grad: bool
    ) -> list[tuple[Any, Array | None]]:
        losses: list[list[float]] = [[] for _ in folds]
        grads: list[Array | None] = [None for _ in folds]
        start = 0
        for inner in self.chunked.chunk_backends():
            weights = self.folds.weights(inner, start)
            evaluator = make_fold_evaluator(inner.X, inner.y, weights, self.layout, inner.name)
            assert evaluator is not None  # chunks are in-memory arrays
            for a, (loss, grad) in enumerate(
                evaluator.evaluate(folds, params, with_grad=with_grad)
            ):
                losses[a].append(float(loss))
                if grad is not None:
                    previous = grads[a]
                    grads[a] = grad if previous is None else previous + grad
            start += int(inner.n_samples)
        return [(math.fsum(loss), grad) for loss, grad in zip(losses, grads, strict=True)]


class FoldOfChunks(SumOfParts):
    """One fold's own backend over a Dataset: each chunk's backend with the fold's weights.

    What the shared passes of :class:`ChunkedFolds` do not batch (Hessians,
    Hessian-vector products, the Gram products of the Lipschitz bound) is
    served fold by fold by this backend, one pass over the chunks per call.
    """

    def __init__(self, chunked: Any, folds: DatasetFolds, fold: int) -> None:
        self.chunked = chunked
        self.name = chunked.name
        self.format = chunked.format
        self.xp = chunked.xp
        self.dtype = chunked.dtype
        self.n_samples = chunked.n_samples
        self.n_features = chunked.n_features
        self.layout = chunked.layout
        self.folds, self.fold = folds, int(fold)

    def map_parts(self, method: str, *vectors: Array) -> Iterable[Any]:
        from gpulogreg.backends import make_backend

        start = 0
        for inner in self.chunked.chunk_backends():
            weights = self.folds.weights(inner, start)
            part = make_backend(
                inner.X,
                inner.y,
                weights.column(self.fold, self.xp),
                n_classes=self.chunked.n_classes,
                fit_intercept=self.layout.fit_intercept,
                backend=inner.name,
                device=self.chunked.device,
            )
            yield getattr(part, method)(*vectors)
            start += int(inner.n_samples)
