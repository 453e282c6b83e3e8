"""The CPU backend on CSR data: fused Numba kernels that read the stored values once per evaluation.

``loss_grad``, ``loss``, ``hvp``, ``gram_matvec``, ``hessian_diagonal`` and
``decision`` are single parallel passes over ``(data, indices, indptr)`` (see
:mod:`gpulogreg.backends._numba_sparse` for the formulas, the lanes that make
the gradient's scatter independent of the thread count, and their memory
bound). ``X`` is used as given: float32 stays float32, int32 indices stay
int32, nothing is copied or densified; every sum is accumulated in float64.

The Hessian, the meat and the observed information (``n_params`` up to
:data:`GRAM_MAX_PARAMS`) are one pass for the row weights (with the loss,
the gradient and the certain rows' weight for inference) and one
owner-computes pass over the stored values for ``A^T diag(h) A``: work
``sum_i nnz_i^2 / 2`` (times ``K^2`` multinomial), one ``n_params x n_params``
matrix, exactly symmetric. ``cluster_scores`` is the scipy baseline's.

**Columns by popularity.** On wide data (:data:`COMPACT_MIN_FEATURES`
columns or more) the one-pass kernels of training run on a copy of
``indices`` renumbered by :class:`ColumnOrder`: only the columns that hold
a stored value, the most frequent first. The lane kernels get the order as
their ``columns``: their fill gathers the coefficients through it and their
sum over lanes puts the gradient back, so columns without a stored value get
exactly zero (the gathers without lanes, ``loss`` and the decisions behind
the curvature weights at a new iterate, take ``w[columns]``, ``O(n)`` per
call).
Hashed and text features are Zipf-popular and scattered over the id space,
so in the original numbering nearly every access of a row's gather and
scatter is its own cache line of a buffer far beyond L2; renumbered, the
hot columns share lines and stay in L2. It costs one more ``indices``
array, made once per bound ``X``; ``data`` is not copied (the renumbered
rows keep their order: the sums need no sorted indices). The Gram kernels
(narrow data only) and ``decision`` on new data use the original arrays.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numba
import numpy as np

from gpulogreg._typing import Array, Information
from gpulogreg.backends import _numba_sparse as ns
from gpulogreg.backends.numba_backend import _serial_when_small
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend

__all__ = [
    "COMPACT_MIN_FEATURES",
    "GRAM_MAX_PARAMS",
    "SERIAL_MAX_NNZ",
    "ColumnOrder",
    "SparseNumbaBackend",
]

#: Passes over fewer stored values than this run on the calling thread only:
#: below two lanes' worth (:data:`~gpulogreg.backends._numba_sparse.LANE_MIN_NNZ`)
#: every scatter has one lane, and waking the thread pool costs more than
#: the pass.
SERIAL_MAX_NNZ = 2 * ns.LANE_MIN_NNZ
#: Largest ``n_params`` whose Hessian, meat and information the owner-computes
#: kernels build (a 4096 x 4096 float64 matrix is 128 MiB). Above it the
#: dense matrix is the baseline's (chunked sparse products); wide problems are
#: meant for Newton-CG, which needs only :meth:`~SparseNumbaBackend.hvp` and
#: :meth:`~SparseNumbaBackend.hessian_diagonal`.
GRAM_MAX_PARAMS = 4096
#: Column parts per thread of the owner-computes Gram kernels: more parts than
#: threads even out the load (the partition never changes the result).
GRAM_PARTS_PER_THREAD = 4

#: Fewest features for which the training kernels renumber the columns by
#: popularity (:class:`ColumnOrder`): from here on the lane slots of the
#: original numbering (16-24 bytes a column) outgrow a core's L2.
COMPACT_MIN_FEATURES = 2**15

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INDICES = (np.dtype(np.int32), np.dtype(np.int64))


def _kernel_csr(X: Any) -> bool:
    """Whether the kernels take ``X`` as it is: scipy CSR, float32/64 values, int32/64 indices.

    ``decision`` also takes non-canonical CSR (unsorted or duplicated
    entries give the same sums); the other kernels get the validated ``X``.
    """
    return (
        getattr(X, "format", None) == "csr"
        and type(X).__module__.startswith("scipy.sparse")
        and X.data.dtype in _FLOATS
        and X.indices.dtype in _INDICES
        and X.indptr.dtype == X.indices.dtype
        and X.data.flags.c_contiguous
        and X.indices.flags.c_contiguous
        and X.indptr.flags.c_contiguous
    )


class ColumnOrder:
    """The columns of a CSR ``X`` that hold stored values, most frequent first; ``X`` renumbered.

    Parameters
    ----------
    indices : ndarray of shape (nnz,), int32 or int64
        Column indices of a canonical CSR matrix.
    n_features : int

    Attributes
    ----------
    columns : ndarray of shape (u,), intp
        Original column of each new column (the kernels' ``columns``):
        stored-value count descending, ties by column (a stable order, fixed
        by the data).
    indices : ndarray of shape (nnz,), same dtype as the given indices
        ``rank[indices]``: every stored value's new column, rows in the
        original order (no longer sorted within a row).
    """

    def __init__(self, indices: np.ndarray, n_features: int) -> None:
        counts = ns.column_counts(indices, n_features)
        used = int(np.count_nonzero(counts))
        self.columns = np.argsort(-counts, kind="stable")[:used]
        rank = np.zeros(n_features, dtype=indices.dtype)
        rank[self.columns] = np.arange(used, dtype=indices.dtype)
        self.indices = ns.renumbered(indices, rank)

    @property
    def width(self) -> int:
        """Columns that hold a stored value (``u``)."""
        return int(self.columns.shape[0])


class SparseNumbaBackend(SparseNumpyBackend):
    """Fused one-pass Numba kernels on a canonical scipy CSR ``X`` (the CPU backend for CSR).

    Parameters
    ----------
    X : scipy.sparse CSR matrix or array of shape (n_samples, n_features)
        Validated canonical CSR (:func:`gpulogreg.data.sparse.check_sparse`):
        float32 or float64 values, int32 or int64 indices; held as given
        (``backend.X is X``), never copied.
    y : ndarray of shape (n_samples,), int32
        Class indices in ``0 .. n_classes - 1``.
    sample_weight : ndarray of shape (n_samples,), float64
        Non-negative weights summing to one.
    n_classes : int
        2 selects the binary (sigmoid) loss, more the multinomial (softmax) loss.
    fit_intercept : bool
    """

    name = "numba"

    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        if not _kernel_csr(X):
            raise TypeError(
                "the numba backend needs a scipy.sparse CSR X with float32 or float64 values and "
                "int32 or int64 indices (validate it with gpulogreg.data.check_X, which converts "
                f"it once), got {type(X).__module__}.{type(X).__name__}"
            )
        super().bind(X, y, sample_weight)
        self._csr = (X.data, X.indices, X.indptr)
        self._order = (
            ColumnOrder(X.indices, self.n_features)
            if self.n_features >= COMPACT_MIN_FEATURES
            else None
        )
        self._all_columns = np.arange(self.n_features, dtype=np.intp)
        self._lane_bounds: np.ndarray | None = None
        self._kept_decisions: tuple[np.ndarray, np.ndarray] | None = None
        self._kept_curvature: tuple[np.ndarray, np.ndarray] | None = None
        self._buffers: dict[int, np.ndarray] = {}
        self.__dict__.pop("_column_work", None)  # cached for the previous X

    def _encode_labels(self) -> None:
        """Nothing: the fused kernels read the int32 labels directly (no float or one-hot copy)."""

    # -- helpers ----------------------------------------------------------------
    @property
    def lanes(self) -> np.ndarray:
        """Lane row bounds of every scatter (:func:`~gpulogreg.backends._numba_sparse.lane_bounds`).

        Fixed by the data and the model's width ``n_features * n_outputs``
        only, computed once per bound ``X``.
        """
        if self._lane_bounds is None:
            width = self._width * self.n_outputs
            self._lane_bounds = ns.lane_bounds(self._csr[2], width)
        return self._lane_bounds

    def _lane_pass(
        self,
        kernel: Any,
        *args: Any,
        slot: int,
        outputs: int | None = None,
        columns: np.ndarray | None = None,
    ) -> Any:
        """``kernel(*args, bounds, work, columns)``: a lane kernel with its lane bounds and buffers.

        A kernel's slots hold its inputs and the gradient entries of a column
        (``slot`` float64 per output: 2 for ``[w_j, g_j]``, 3 for
        ``[W_j, V_j, G_j]``; ``outputs`` defaulting to the model's), one per
        entry of ``columns`` (default: the training kernels' slots,
        :attr:`_columns`). The kernels overwrite the buffers, so they are
        kept per width and reused: allocating the CTR-like set's 19 MB of
        slots afresh cost 5 ms per pass on 2 threads in page faults, 25 ms on
        one. A buffer serves one call at a time (a concurrent call gets a
        fresh one).
        """
        columns = self._columns if columns is None else columns
        bounds = self.lanes
        width = slot * columns.shape[0] * (self.n_outputs if outputs is None else outputs)
        work = self._buffers.pop(width, None)
        if work is None:
            work = np.empty((bounds.shape[0] - 1, width))
        try:
            return kernel(*args, bounds, work, columns)
        finally:
            self._buffers[width] = work

    @property
    def _width(self) -> int:
        """Columns the training kernels see: the renumbered ones (:class:`ColumnOrder`) or all."""
        return self.n_features if self._order is None else self._order.width

    def _train_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(data, indices, indptr)`` of the training kernels: indices renumbered on wide data."""
        data, indices, indptr = self._csr
        return data, indices if self._order is None else self._order.indices, indptr

    @property
    def _columns(self) -> np.ndarray:
        """The column of each lane slot of the training kernels (their ``columns``)."""
        return self._all_columns if self._order is None else self._order.columns

    def _columns_in(self, src: np.ndarray) -> np.ndarray:
        """Inputs of the gathers without lanes (loss, curvature) in the training kernels' order."""
        return src if self._order is None else np.ascontiguousarray(src[self._order.columns])

    def _serial(self) -> Any:
        """One thread for a pass over few stored values (:data:`SERIAL_MAX_NNZ`)."""
        return _serial_when_small(int(self._csr[0].shape[0]), SERIAL_MAX_NNZ)

    def _binary_params(self, params: Array) -> tuple[np.ndarray, float]:
        """Kernel arguments ``(w (n_features,), b)`` of a binary parameter vector."""
        coef, intercept = self.layout.split(np.asarray(params, dtype=np.float64))
        return np.ascontiguousarray(coef[0]), float(intercept[0]) if self.fit_intercept else 0.0

    def _multi_params(self, params: Array) -> tuple[np.ndarray, np.ndarray]:
        """Kernel arguments ``(Wt (n_features, K), bias (K,))``: coefficients feature-major."""
        coef, intercept = self.layout.split(np.asarray(params, dtype=np.float64))
        bias = intercept if self.fit_intercept else np.zeros(self.n_outputs)
        return np.ascontiguousarray(coef.T), np.ascontiguousarray(bias, dtype=np.float64)

    def _pack(self, out: np.ndarray) -> np.ndarray:
        """Kernel layout ``(K, n + 1)`` (intercepts last) to the flat parameter layout."""
        K, n = self.n_outputs, self.n_features
        full = out[: K * (n + 1)].reshape(K, n + 1)
        return np.asarray(self.layout.join(full[:, :n], full[:, n], np))

    @cached_property
    def _column_work(self) -> np.ndarray:
        """Work per output column of the Gram kernels (depends on the structure of X only)."""
        _, indices, indptr = self._csr
        return np.asarray(ns.column_work(indices, indptr, self.n_features, self.fit_intercept))

    def _parts(self) -> np.ndarray:
        """Column ranges of the Gram kernels, a few per thread (results never depend on them)."""
        return ns.column_parts(self._column_work, GRAM_PARTS_PER_THREAD * numba.get_num_threads())

    # -- protocol -----------------------------------------------------------------
    def loss_grad_lazy(self, params: Array) -> tuple[float, Array]:
        data, indices, indptr = self._train_csr()
        y, s = self.y, self.sample_weight
        with self._serial():
            if self.n_outputs == 1:
                p = np.array(params, dtype=np.float64)
                w, b = self._binary_params(p)
                z = np.empty(indptr.shape[0] - 1)
                out = self._lane_pass(
                    ns.binary_loss_grad, data, indices, indptr, y, s, w, b, z, slot=2
                )
                self._kept_decisions = (p, z)
            else:
                Wt, bias = self._multi_params(params)
                out = self._lane_pass(
                    ns.multinomial_loss_grad, data, indices, indptr, y, s, Wt, bias, slot=2
                )
        return float(out[-1]), self._pack(out)

    def loss(self, params: Array) -> float:
        data, indices, indptr = self._train_csr()
        y, s = self.y, self.sample_weight
        with self._serial():
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                return float(ns.binary_loss(data, indices, indptr, y, s, self._columns_in(w), b))
            Wt, bias = self._multi_params(params)
            Wc = self._columns_in(Wt)
            return float(ns.multinomial_loss(data, indices, indptr, y, s, Wc, bias))

    def hvp(self, params: Array, v: Array) -> Array:
        data, indices, indptr = self._train_csr()
        s = self.sample_weight
        with self._serial():
            if self.n_outputs == 1:
                vw, vb = self._binary_params(v)
                d = self._curvature_weights(params)
                out = self._lane_pass(ns.gram_matvec, data, indices, indptr, d, vw, vb, slot=2)
            else:
                Wt, bias = self._multi_params(params)
                Vt, vbias = self._multi_params(v)
                WVt = np.concatenate([Wt, Vt], axis=1)
                out = self._lane_pass(
                    ns.multinomial_hvp, data, indices, indptr, s, WVt, bias, vbias, slot=3
                )
        return self._pack(out)

    def _curvature_weights(self, params: Array) -> np.ndarray:
        """Binary rows' curvature weights ``s p (1 - p)`` at ``params``, kept for the next call.

        Newton-CG asks for the Hessian's diagonal and many Hessian-vector
        products at the iterate of its last ``loss_grad``; with the weights
        kept, each product is :func:`~gpulogreg.backends._numba_sparse.gram_matvec`,
        which gathers ``v`` only, and the diagonal a scatter only. The
        weights come from the decision values that ``loss_grad`` left at
        these ``params`` or, at other ``params``, from one gather pass.
        """
        p = np.asarray(params, dtype=np.float64)
        if self._kept_curvature is not None and np.array_equal(self._kept_curvature[0], p):
            return self._kept_curvature[1]
        if self._kept_decisions is not None and np.array_equal(self._kept_decisions[0], p):
            z = self._kept_decisions[1]
        else:
            data, indices, indptr = self._train_csr()
            w, b = self._binary_params(p)
            z = ns.binary_decision(data, indices, indptr, self._columns_in(w), b)
        d = ns.curvature_weights(z, self.sample_weight)
        self._kept_curvature = (p.copy(), d)
        return d

    def gram_matvec(self, v: Array) -> Array:
        data, indices, indptr = self._train_csr()
        n = self.n_features
        vw = np.ascontiguousarray(v[:n], dtype=np.float64)
        vb = float(v[n]) if self.fit_intercept else 0.0
        with self._serial():
            out = self._lane_pass(
                ns.gram_matvec, data, indices, indptr, self.sample_weight, vw, vb, slot=2, outputs=1
            )
        return out if self.fit_intercept else out[:n].copy()

    def hessian_diagonal(self, params: Array) -> Array:
        """The diagonal of :meth:`hessian`, one pass: ``sum_i h_i a_ij^2`` per output."""
        data, indices, indptr = self._train_csr()
        s = self.sample_weight
        with self._serial():
            if self.n_outputs == 1:
                h = self._curvature_weights(params)
                out = self._lane_pass(
                    ns.weighted_squares, data, indices, indptr, h, self.n_features, slot=1
                )
            else:
                Wt, bias = self._multi_params(params)
                out = self._lane_pass(
                    ns.multinomial_hessian_diagonal, data, indices, indptr, s, Wt, bias, slot=2
                )
        return self._pack(out)

    def decision(self, params: Array, X: Array) -> Array:
        if not _kernel_csr(X):
            return super().decision(params, X)
        with _serial_when_small(int(X.data.shape[0]), SERIAL_MAX_NNZ):
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                return ns.binary_decision(X.data, X.indices, X.indptr, w, b)
            Wt, bias = self._multi_params(params)
            return ns.multinomial_decision(X.data, X.indices, X.indptr, Wt, bias)

    def hessian(self, params: Array) -> Array:
        """Hessian ``A^T diag(h) A`` of the weighted mean loss (owner-computes kernels)."""
        if self.n_params > GRAM_MAX_PARAMS:
            return super().hessian(params)
        return self._gram_pass(params, meat=False)[0]

    def meat(self, params: Array) -> Array:
        """``sum_i s_i g_i g_i^T``: the Hessian's construction with the residuals' weights."""
        if self.n_params > GRAM_MAX_PARAMS:
            return super().meat(params)
        return self._gram_pass(params, meat=True)[0]

    def information(self, params: Array) -> Information:
        """The Hessian, loss, gradient and certain rows' weight: a weights pass and a Gram pass."""
        if self.n_params > GRAM_MAX_PARAMS:
            return super().information(params)
        H, loss, certain, gradient = self._gram_pass(params, meat=False)
        return Information(hessian=H, loss=loss, gradient=gradient, certain=certain)

    def _gram_pass(
        self, params: Array, *, meat: bool
    ) -> tuple[np.ndarray, float, float, np.ndarray]:
        """``A^T diag(h) A`` (Hessian or meat weights), loss, certain weight and gradient.

        On the original columns (sorted indices), whatever :class:`ColumnOrder` does.
        """
        data, indices, indptr = self._csr
        y, s = self.y, self.sample_weight
        n, fi = self.n_features, self.fit_intercept
        with self._serial():
            if self.n_outputs == 1:
                w, b = self._binary_params(params)
                h, stats = self._lane_pass(
                    ns.binary_gram_weights,
                    *(data, indices, indptr, y, s, w, b, meat),
                    slot=2,
                    columns=self._all_columns,
                )
                H = ns.binary_gram(data, indices, indptr, h, n, fi, self._parts())
                gradient = self._pack(stats[2 : n + 3])
            else:
                Wt, bias = self._multi_params(params)
                P, stats = self._lane_pass(
                    ns.multinomial_gram_weights,
                    *(data, indices, indptr, y, s, Wt, bias),
                    slot=2,
                    columns=self._all_columns,
                )
                H = ns.multinomial_gram(data, indices, indptr, y, s, P, meat, n, fi, self._parts())
                gradient = self._pack(stats[2:])
        return H, float(stats[0]), float(stats[1]), gradient
