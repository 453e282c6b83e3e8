"""The GPU backend on CSR data: our CUDA kernels on ``cupyx.scipy.sparse`` CSR matrices.

One loss-and-gradient evaluation is two passes over the stored values:

1. one fused kernel (``gpulogreg_csr_logistic_loss_grad`` /
   ``gpulogreg_csr_softmax_loss_grad``): a group of ``lanes`` threads per
   row forms ``z_i = x_i . w + b`` in double (the float32 or float64 values
   times the float64 parameter vector itself), evaluates the stable sigmoid
   or softmax, the weighted cross-entropy and the weighted residual ``R`` in
   double, and leaves one loss partial sum per block (binary: and one
   residual sum, the intercept's gradient), reduced in a fixed order by a
   second kernel;
2. ``grad = X^T R``, by the backend's :attr:`~SparseCupyBackend.transpose`
   setting (:data:`TRANSPOSES`):

   ``"csc"`` (the default)
       a gather on a CSC copy of ``X`` made once when the data are bound
       (:class:`TransposedCopy`; about the CSR's bytes again): each column's
       sum ``sum_i x_ij R_ik`` in double by a group of threads, in a fixed
       order. Columns longer than :data:`PIECE_ITERATIONS` x lanes stored
       values (the popular ids of click logs: a few columns hold a good part
       of the values) are cut into pieces of that length, summed piece by
       piece and then per column in order (``gpulogreg_segment_sums``), so
       one long column does not hold up the launch. Deterministic and
       float64 throughout; costs the memory of the copy.
   ``"atomic"``
       a scatter from the CSR rows with double ``atomicAdd``
       (``gpulogreg_csr_scatter_add``): no copy, float64 sums, but the order
       in which additions reach a column follows the threads' timing, so the
       gradient is NOT bitwise reproducible run to run (it agrees to
       rounding), and a popular column serialises its atomics.
   ``"cusparse"``
       cuSPARSE's transposed SpMV (SpMM for several classes) through CuPy,
       ``X.T @ R`` with ``R`` cast to ``X``'s dtype: no copy, but float32 data
       accumulate in float32 in cuSPARSE, and cuSPARSE does not document its
       transposed CSR product as bitwise reproducible.

   The benchmark (``bench/bench_sparse_gpu.py``) measures the three on the
   issue's click-log-like and text-like data, and whether each repeats bit
   for bit.

Reproducibility: with ``"csc"`` every sum has an order fixed by the data (the
lanes and pieces follow the row and column lengths) and the grid, and the
grid follows the device's attributes and each kernel's register count,
which is NVRTC's choice: results are bitwise identical run to run on the same
GPU model with the same CUDA, NVRTC and CuPy versions, and agree to rounding
across versions and models (as the dense backend's, see
:mod:`gpulogreg.backends.cupy_backend`). ``"atomic"`` is not bitwise
reproducible even then.

The Hessian-vector product, ``gram_matvec`` and the Hessian diagonal
(Newton-CG) are a products kernel (``gpulogreg_csr_matvecs``: the decision
values of the parameters and of the direction in one pass) and the same
transposed product (of the squared values, for the diagonal). ``decision``
is the products kernel on any CSR matrix. The Hessian, the meat, the observed
information and the cluster scores (small ``n_features``: inference) are the
scipy baseline's chunked sparse products, run by ``cupyx.scipy.sparse``, with
their decision values from the products kernel.

Index types: the kernels take int32 and int64 ``indices``/``indptr`` (both
of one type), so the data layer's rule (int32 when it fits, int64 otherwise)
reaches the GPU unchanged; CuPy 14's ``cupyx.scipy.sparse`` keeps int64
indices too (its constructor picks int32 only when the values fit, as the
rule does). The ``"cusparse"`` setting and the inherited baseline methods
depend on what CuPy supports for int64 (the GPU suite checks them).

Flush to zero (CuPy compiles with ``-ftz=true``, see
:mod:`gpulogreg.backends._cuda`): a subnormal float32 stored value is read as
zero by the kernels. All the kernels' arithmetic is in double, which is not
flushed.

Memory: :func:`check_sparse_device_memory` refuses data that would not fit in
free device memory with what a fit allocates (:func:`sparse_device_memory_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpulogreg._array import array_namespace, device_of
from gpulogreg._typing import Array, Information
from gpulogreg.backends import _cuda, cupy_backend
from gpulogreg.backends.cupy_backend import (
    DENSE_HESSIAN_MAX_PARAMS,
    DEVICE_HEADROOM_BYTES,
    _gb,
    _on_data_device,
    _on_data_device_of_argument,
)
from gpulogreg.backends.errors import GPUMemoryError
from gpulogreg.backends.numpy_backend import HESSIAN_CHUNK_ROWS
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend

__all__ = [
    "DEFAULT_TRANSPOSE",
    "PIECE_ITERATIONS",
    "TRANSPOSES",
    "SparseCupyBackend",
    "TransposedCopy",
    "check_sparse_device_memory",
    "lanes_for",
    "sparse_device_bytes_needed",
    "sparse_device_memory_terms",
]

#: The ways :class:`SparseCupyBackend` computes ``X^T R`` (see the module docstring).
TRANSPOSES = ("csc", "atomic", "cusparse")
#: The default: deterministic, float64, at the cost of a CSC copy of ``X``.
DEFAULT_TRANSPOSE = "csc"
#: Stored values per lane in one piece of a long column of the CSC copy: a
#: piece is ``PIECE_ITERATIONS * lanes`` values (32 iterations of the
#: group's loop), long enough that the per-piece partial sums cost little
#: next to the values, short enough that the longest column is spread over
#: many groups.
PIECE_ITERATIONS = 32
#: The terms of :func:`sparse_device_memory_terms` that belong to one method
#: each (methods run one at a time: the fit needs the largest of them).
WORKING_TERMS = ("loss_grad", "hvp", "gram_matvec", "hessian", "hessian_diagonal", "transpose")

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INDICES = (np.dtype(np.int32), np.dtype(np.int64))


def lanes_for(mean_length: float) -> int:
    """Threads per row of the CSR kernels for rows of ``mean_length`` stored values.

    The smallest power of two at least ``mean_length``, between 1 and the
    warp size (32): a typical row is read in one step of its group, and
    short rows do not leave most of a warp idle.
    """
    lanes = 1
    while lanes < mean_length and lanes < _cuda.WARP_SIZE:
        lanes *= 2
    return lanes


def _check_lanes(lanes: int) -> int:
    lanes = int(lanes)
    if lanes < 1 or lanes > _cuda.WARP_SIZE or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two from 1 to {_cuda.WARP_SIZE}, got {lanes}")
    return lanes


def _stable_argsort(xp: Any, a: Array) -> Array:
    """Indices that sort ``a``, equal keys in their original order (CuPy's sort is stable)."""
    if xp is np:
        return np.argsort(a, kind="stable")
    return xp.argsort(a)


@dataclass(frozen=True)
class TransposedCopy:
    """``X^T`` in CSR form (``X`` in CSC), its long columns cut into pieces.

    The rows of ``X^T`` are the columns of ``X``; within a column the values
    keep the order of their rows. Piece ``q`` holds the values
    ``pieces[q] : pieces[q + 1]``, column ``j`` the pieces
    ``segments[j] : segments[j + 1]`` (none for an empty column); every
    piece has at most ``piece_length`` values.

    Attributes
    ----------
    data : array of shape (nnz,), X's dtype
    rows : array of shape (nnz,), X's index dtype
        The row of each value.
    pieces : array of shape (n_pieces + 1,), X's index dtype
    segments : array of shape (n_features + 1,), X's index dtype
    n_pieces : int
    piece_length : int
    lanes : int
        Threads per piece in the gather.
    """

    data: Array
    rows: Array
    pieces: Array
    segments: Array
    n_pieces: int
    piece_length: int
    lanes: int

    @classmethod
    def of(cls, X: Any, *, lanes: int | None = None) -> TransposedCopy:
        """The copy of a CSR ``X`` (scipy or cupyx), made in X's namespace and index dtype.

        ``lanes`` defaults to :func:`lanes_for` of the mean column length.
        Temporaries: the stable sort's order (8 bytes per value) and the rows
        of the values in CSR order (the index dtype, and int64 while they are
        found).
        """
        xp = array_namespace(X.data)
        index = X.indices.dtype
        n_columns = int(X.shape[1])
        nnz = int(X.data.shape[0])
        lanes = _check_lanes(lanes if lanes is not None else lanes_for(nnz / max(n_columns, 1)))
        piece_length = PIECE_ITERATIONS * lanes
        positions = xp.arange(nnz, dtype=index)
        rows_in_csr = xp.searchsorted(X.indptr[1:], positions, side="right").astype(index)
        del positions
        order = _stable_argsort(xp, X.indices)
        data = X.data[order]
        rows = rows_in_csr[order]
        del order, rows_in_csr
        counts = xp.bincount(X.indices, minlength=n_columns).astype(np.int64)
        starts = xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(counts)])
        per_column = (counts + (piece_length - 1)) // piece_length
        segments = xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(per_column)])
        n_pieces = int(segments[-1])
        piece = xp.arange(n_pieces, dtype=np.int64)
        column = xp.searchsorted(segments[1:], piece, side="right")
        piece_starts = starts[column] + (piece - segments[column]) * piece_length
        pieces = xp.concatenate([piece_starts, xp.full(1, nnz, dtype=np.int64)]).astype(index)
        return cls(
            data=data,
            rows=rows,
            pieces=pieces,
            segments=segments.astype(index),
            n_pieces=n_pieces,
            piece_length=piece_length,
            lanes=lanes,
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the copy's arrays."""
        return int(self.data.nbytes + self.rows.nbytes + self.pieces.nbytes + self.segments.nbytes)


class SparseCupyBackend(SparseNumpyBackend):
    """GPU backend for CSR ``X``: fused CUDA kernels over the stored values, never densified.

    Same constructor as the baseline (the data are on the device already:
    :func:`gpulogreg.backends.make_backend` moves host CSR there once) plus
    ``kernels`` and ``transpose``. Every method runs with the device holding
    ``X`` current.

    Parameters
    ----------
    X : cupyx.scipy.sparse CSR matrix or array of shape (n_samples, n_features)
        Validated CSR (:func:`gpulogreg.data.sparse.check_sparse`): float32 or
        float64 values, int32 or int64 indices (``indices`` and ``indptr`` of
        one type); held as given, never copied (but see ``transpose``).
    y : array of shape (n_samples,), int32
    sample_weight : array of shape (n_samples,), float64, summing to one
    n_classes : int
    fit_intercept : bool
    kernels : KernelLauncher, optional
        The kernels to launch; default: those compiled for X's device. Tests
        pass the host emulator here to run this class on scipy matrices.
    transpose : {"csc", "atomic", "cusparse"}, optional
        How ``X^T R`` is computed (see the module docstring); default
        :attr:`transpose`, :data:`DEFAULT_TRANSPOSE` unless a subclass or
        the class attribute says otherwise.
    """

    name = "cupy"
    #: How ``X^T R`` is computed (one of :data:`TRANSPOSES`).
    transpose: str = DEFAULT_TRANSPOSE
    #: Threads per row of the CSR kernels; None: :func:`lanes_for` the mean row length.
    row_lanes: int | None = None
    #: Threads per piece of the CSC gather; None: :func:`lanes_for` the mean column length.
    column_lanes: int | None = None

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int = 2,
        fit_intercept: bool = True,
        kernels: _cuda.KernelLauncher | None = None,
        transpose: str | None = None,
    ) -> None:
        if transpose is not None:
            if transpose not in TRANSPOSES:
                raise ValueError(f"transpose must be one of {TRANSPOSES}, got {transpose!r}")
            self.transpose = transpose
        with device_of(X):
            self._kernels = kernels if kernels is not None else cupy_backend._kernels_for(X.data)
            self._rows_allocated = 0
            super().__init__(X, y, sample_weight, n_classes=n_classes, fit_intercept=fit_intercept)

    def _encode_labels(self) -> None:
        """Nothing: the kernels read the int32 labels (no float or one-hot copy)."""

    @_on_data_device_of_argument
    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        """Compute on other rows from now on; the CSC copy (``"csc"``) is made here."""
        _check_kernel_csr(X)
        if self._rows_allocated and np.dtype(X.data.dtype) != self.dtype:
            raise TypeError(f"bind() keeps the dtype of X ({self.dtype}), got {X.data.dtype}")
        super().bind(X, y, sample_weight)
        xp = self.xp
        self.index_dtype = np.dtype(X.indices.dtype)
        self._binary = self.n_outputs == 1
        self._lanes = self._row_lanes_of(X)
        self._loss_kernel = "csr_logistic_loss_grad" if self._binary else "csr_softmax_loss_grad"
        self._grid = self._grid_for(self._loss_kernel, X, self.n_samples * self._lanes)
        self._n_series = 2 if self._binary else 1
        if self.n_samples > self._rows_allocated:
            # More rows never give a smaller grid: buffers for the most rows serve all.
            self._partials_buffer = xp.empty(self._n_series * self._grid, dtype=xp.float64)
            self._sums = xp.empty(self._n_series, dtype=xp.float64)
            self._residual_buffer = xp.empty(self.n_samples * self.n_outputs, dtype=xp.float64)
            self._rows_allocated = self.n_samples
        self._partials = self._partials_buffer[: self._n_series * self._grid]
        self._residual = self._residual_buffer[: self.n_samples * self.n_outputs].reshape(
            self.n_samples, self.n_outputs
        )
        self._transposed: TransposedCopy | None = None
        if self.transpose == "csc":
            self._transposed = TransposedCopy.of(X, lanes=self.column_lanes)
            self._piece_partials = xp.empty(
                self._transposed.n_pieces * self.n_outputs, dtype=xp.float64
            )

    # -- launches -----------------------------------------------------------------
    def _row_lanes_of(self, X: Any) -> int:
        if self.row_lanes is not None:
            return _check_lanes(self.row_lanes)
        return lanes_for(int(X.data.shape[0]) / max(int(X.shape[0]), 1))

    def _grid_for(self, name: str, X: Any, threads: int) -> int:
        return self._kernels.grid(name, X.data.dtype, threads, X.indices.dtype)

    def _launch_rows(self, name: str, X: Any, lanes: int, args: tuple[Any, ...]) -> None:
        """Launch CSR kernel ``name`` over the rows of ``X`` (arguments after its arrays)."""
        n_rows = int(X.shape[0])
        grid = self._grid_for(name, X, n_rows * lanes)
        self._kernels.launch(
            name, X.data.dtype, grid, (X.data, X.indices, X.indptr, *args), X.indices.dtype
        )

    def _check_params(self, params: Array) -> Array:
        params = self.xp.ascontiguousarray(params, dtype=self.xp.float64)
        if params.shape != (self.n_params,):
            raise ValueError(f"params must have shape ({self.n_params},), got {params.shape}")
        return params

    def _intercept_args(self, params: Array) -> tuple[Array, int]:
        """The first intercept inside ``params`` (a view: no copy) and the flag."""
        if self.fit_intercept:
            return params[self.n_features :], 1
        return params, 0  # not read by the kernels

    def _fused(self, params: Array) -> None:
        """The fused loss/residual kernel into ``self._residual``, its partials into ``_sums``."""
        intercept, has_intercept = self._intercept_args(params)
        if self._binary:
            args: tuple[Any, ...] = (params, intercept, has_intercept, self.y)
            args += (self.sample_weight, self._residual, self._partials, self.n_samples)
        else:
            args = (params, self.layout.n_cols, intercept, has_intercept, self.y)
            args += (self.sample_weight, self._residual, self._partials, self.n_samples)
            args += (self.n_outputs,)
        self._launch_rows(self._loss_kernel, self.X, self._lanes, (*args, self._lanes))
        self._kernels.launch(
            "sum_partials", np.float64, self._n_series, (self._partials, self._grid, self._sums)
        )

    def _products(
        self, stacked: Array, n_outputs: int, X: Any, *, class_major: bool = False
    ) -> Array:
        """``Z[i, k] = x_i . w_k + b_k`` in double for the rows ``w_k`` of ``stacked``.

        ``stacked`` is flat, ``n_outputs`` rows in the parameter layout (one
        row of ``n_cols`` per output, the intercept last when fitted).
        Returns ``Z`` of shape (m, n_outputs), or its transpose (n_outputs, m),
        each output's values contiguous, with ``class_major``.
        """
        xp = self.xp
        n_rows = int(X.shape[0])
        shape = (n_outputs, n_rows) if class_major else (n_rows, n_outputs)
        out = xp.empty(shape, dtype=xp.float64)
        strides = (1, n_rows) if class_major else (n_outputs, 1)
        intercept, has_intercept = self._intercept_args(stacked)
        lanes = self._row_lanes_of(X)
        args = (stacked, self.layout.n_cols, 1, intercept, has_intercept, 0, out, *strides)
        self._launch_rows("csr_matvecs", X, lanes, (*args, n_rows, n_outputs, lanes))
        return out

    def _linear(self, params: Array, X: Array) -> Array:
        """``X @ coef.T + intercept`` in double by the products kernel: (m,) or (m, K)."""
        if self._binary:
            return self._products(self._check_params(params), 1, X, class_major=True)[0]
        return self._products(self._check_params(params), self.n_outputs, X)

    def _chunk_linear(self, params: Array, Xc: Array, *, exact: bool) -> Array:
        """:meth:`_linear`: the kernel's products are exact in double for either dtype."""
        return self._linear(params, Xc)

    def _transpose_into(self, R: Array, out: Array, *, square: bool = False) -> None:
        """``out[k * n_cols + j] = sum_i v_ij R[i, k]`` for every output k, ``v = x`` or ``x^2``.

        ``R`` is (m, k) or (m,) float64 in ``xp``; ``out`` a flat float64
        array in the parameter layout (the intercepts' entries are left as
        they are, but ``"atomic"`` first zeroes the coefficients' entries).
        """
        xp = self.xp
        m, n, stride = self.n_samples, self.n_features, self.layout.n_cols
        R = xp.ascontiguousarray(xp.reshape(R, (m, -1)), dtype=xp.float64)
        k = int(R.shape[1])
        if self.transpose == "csc":
            t = self._transposed
            assert t is not None  # made by bind for "csc"
            partials = self._piece_partials[: t.n_pieces * k]
            # Rows of X^T (its pieces) times the columns of R: R[i, c] is "feature" i of
            # output c (class stride 1, feature stride k); one partial sum per piece.
            gather = (t.data, t.rows, t.pieces, R, 1, k, R, 0, int(square), partials, k, 1)
            grid = self._kernels.grid(
                "csr_matvecs", self.dtype, t.n_pieces * t.lanes, self.index_dtype
            )
            self._kernels.launch(
                "csr_matvecs",
                self.dtype,
                grid,
                (*gather, t.n_pieces, k, t.lanes),
                self.index_dtype,
            )
            grid = self._kernels.grid("segment_sums", np.float64, n, self.index_dtype)
            self._kernels.launch(
                "segment_sums",
                np.float64,
                grid,
                (partials, t.segments, out, stride, n, k),
                self.index_dtype,
            )
        elif self.transpose == "atomic":
            xp.reshape(out, (-1, stride))[:k, :n] = 0.0
            scatter = (R, int(square), out, stride, m, k, self._lanes)
            self._launch_rows("csr_scatter_add", self.X, self._lanes, scatter)
        else:  # "cusparse"
            X = self.X.power(2) if square else self.X
            Rt = R.astype(self.dtype)
            product = X.T @ Rt[:, 0] if k == 1 else (X.T @ Rt).T
            xp.reshape(out, (-1, stride))[:k, :n] = xp.reshape(product, (k, n))

    def _transpose_product(self, R: Array) -> tuple[Array, Array]:
        """``(R^T X, sum_i R_i)`` for ``R`` of shape (m,) or (m, K), by :attr:`transpose`."""
        xp = self.xp
        k = 1 if R.ndim == 1 else int(R.shape[1])
        out = xp.zeros(k * self.layout.n_cols, dtype=xp.float64)
        self._transpose_into(R, out)
        grad = xp.reshape(out, (k, self.layout.n_cols))[:, : self.n_features]
        return (grad[0] if R.ndim == 1 else grad), R.sum(axis=0)

    def _newton_weights(self, z: Array) -> Array:
        """``s p (1 - p)`` of decision values ``z`` (m,) by the Newton-weights kernel."""
        xp = self.xp
        h = xp.empty(self.n_samples, dtype=xp.float64)
        z = xp.ascontiguousarray(z)
        grid = self._kernels.grid("logistic_newton_weights", np.float64, self.n_samples)
        self._kernels.launch(
            "logistic_newton_weights",
            np.float64,
            grid,
            (z, z, 0, self.sample_weight, h, self.n_samples),  # z holds the intercept
        )
        return h

    def _set_intercepts(self, out: Array, R: Array) -> None:
        """The intercepts' entries of ``out`` (parameter layout): ``sum_i R_ik``."""
        if self.fit_intercept:
            xp = self.xp
            k = 1 if R.ndim == 1 else int(R.shape[1])
            xp.reshape(out, (-1, self.layout.n_cols))[:k, self.n_features] = R.sum(axis=0)

    # -- protocol -----------------------------------------------------------------
    @_on_data_device
    def loss(self, params: Array) -> float:
        self._fused(self._check_params(params))
        return float(self._sums[0])

    @_on_data_device
    def loss_grad_lazy(self, params: Array) -> tuple[Array, Array]:
        """The loss as a 0-d device array (no transfer) and the gradient, on the device."""
        xp = self.xp
        params = self._check_params(params)
        self._fused(params)
        grad = xp.empty(self.n_params, dtype=xp.float64)
        R = self._residual[:, 0] if self._binary else self._residual
        self._transpose_into(R, grad)
        if self.fit_intercept:
            if self._binary:
                grad[self.n_features] = self._sums[1]
            else:
                self._set_intercepts(grad, R)
        return self._sums[0].copy(), grad  # a copy: the buffer serves the next evaluation

    @_on_data_device
    def hvp(self, params: Array, v: Array) -> Array:
        """``H v`` from one products pass for ``z`` and ``z_v`` and one transposed product."""
        xp = self.xp
        R = self._hvp_rows(xp.concatenate([self._check_params(params), self._check_params(v)]))
        out = xp.empty(self.n_params, dtype=xp.float64)
        self._transpose_into(R, out)
        self._set_intercepts(out, R)
        return out

    def _hvp_rows(self, stacked: Array) -> Array:
        """The rows' weights ``R`` of ``H v`` from the parameters and ``v``, stacked.

        Binary ``R = s p (1 - p) z_v``; multinomial
        ``R = s P (z_v - sum_k P_k z_vk)``. The decision values and ``P`` go
        when this returns, before the transposed product.
        """
        if self._binary:
            z, zv = self._products(stacked, 2, self.X, class_major=True)
            R = self._newton_weights(z)
            R *= zv
            return R
        K = self.n_outputs
        Z = self._products(stacked, 2 * K, self.X)
        z, zv = Z[:, :K], Z[:, K:]
        P = self._probabilities(z)
        R = zv - (P * zv).sum(axis=1, keepdims=True)
        R *= P
        R *= self.sample_weight[:, None]
        return R

    @_on_data_device
    def gram_matvec(self, v: Array) -> Array:
        """``A^T diag(s) A v`` for ``v`` of one output's ``n_cols`` entries (Lipschitz bounds)."""
        xp = self.xp
        d = self.layout.n_cols
        v = xp.ascontiguousarray(v, dtype=xp.float64)
        if v.shape != (d,):
            raise ValueError(f"v must have shape ({d},), got {v.shape}")
        r = self._products(v, 1, self.X, class_major=True)[0]
        r *= self.sample_weight
        out = xp.empty(d, dtype=xp.float64)
        self._transpose_into(r, out)
        self._set_intercepts(out, r)
        return out

    @_on_data_device
    def hessian_diagonal(self, params: Array) -> Array:
        """The diagonal of :meth:`hessian`: ``sum_i h_ik a_ij^2``.

        One products pass for the decision values and one transposed product
        of the squared values. Binary ``h = s p (1 - p)`` (the Newton-weights
        kernel); multinomial ``h_k = s P_k (1 - P_k)``.
        """
        xp = self.xp
        H = self._diagonal_rows(params)
        out = xp.empty(self.n_params, dtype=xp.float64)
        self._transpose_into(H, out, square=True)
        self._set_intercepts(out, H)
        return out

    def _diagonal_rows(self, params: Array) -> Array:
        """The rows' weights of the diagonal: ``s p (1 - p)``, or ``s P (1 - P)`` (m, K)."""
        z = self._linear(params, self.X)
        if self._binary:
            return self._newton_weights(z)
        P = self._probabilities(z)
        del z
        H = 1.0 - P
        H *= P
        H *= self.sample_weight[:, None]
        return H

    def decision(self, params: Array, X: Array) -> Array:
        """Decision values of the rows of a CSR ``X`` on any device, by the products kernel.

        Non-CSR input (or a dtype the kernels do not take) gets the baseline's
        products.
        """
        with device_of(X):  # the rows to score may live on another device than the data
            if not _kernel_csr(X):
                return super()._linear(params, X)  # the baseline's products (not our kernel)
            return self._linear(params, X)

    @_on_data_device
    def hessian(self, params: Array) -> Array:
        """The baseline's chunked sparse ``A^T diag(h) A`` on the device."""
        return super().hessian(self._check_params(params))

    @_on_data_device
    def meat(self, params: Array) -> Array:
        """The baseline's chunked construction with the residuals' weights, on the device."""
        return super().meat(self._check_params(params))

    @_on_data_device
    def information(self, params: Array) -> Information:
        """The baseline's chunked passes on the device (decision values from our kernel)."""
        return super().information(self._check_params(params))

    @_on_data_device
    def cluster_scores(self, params: Array, groups: Array, n_groups: int) -> Array:
        """The baseline's chunked per-group sparse products, on the device."""
        return super().cluster_scores(self._check_params(params), groups, n_groups)


def _kernel_csr(X: Any) -> bool:
    """Whether the kernels take ``X``: CSR, float32/64 values, int32/64 indices of one type."""
    return (
        getattr(X, "format", None) == "csr"
        and np.dtype(X.data.dtype) in _FLOATS
        and np.dtype(X.indices.dtype) in _INDICES
        and X.indptr.dtype == X.indices.dtype
        and X.data.flags.c_contiguous
        and X.indices.flags.c_contiguous
        and X.indptr.flags.c_contiguous
    )


def _check_kernel_csr(X: Any) -> None:
    """Raise a TypeError naming what the CUDA CSR kernels cannot take in ``X``."""
    if getattr(X, "format", None) != "csr":
        raise TypeError(
            f"the sparse GPU backend needs a CSR matrix, got {type(X).__module__}."
            f"{type(X).__name__} (validate it with gpulogreg.data.check_X, which converts it once)"
        )
    if np.dtype(X.data.dtype) not in _FLOATS:
        raise TypeError(f"the CUDA CSR kernels take float32 or float64 values, got {X.data.dtype}")
    if np.dtype(X.indices.dtype) not in _INDICES or X.indptr.dtype != X.indices.dtype:
        raise TypeError(
            "the CUDA CSR kernels take indices and indptr both int32 or both int64, got "
            f"{X.indices.dtype} and {X.indptr.dtype} (gpulogreg.data.check_X makes them so)"
        )
    if not _kernel_csr(X):
        raise ValueError("the CUDA CSR kernels need C-contiguous data, indices and indptr")


# -- device memory --------------------------------------------------------------------
def sparse_device_memory_terms(
    n_samples: int,
    n_features: int,
    nnz: int,
    dtype: Any,
    index_dtype: Any,
    n_outputs: int = 1,
    *,
    transpose: str = DEFAULT_TRANSPOSE,
) -> dict[str, int]:
    """Device bytes of each part of a GPU fit on a CSR ``X``, from what the backend allocates.

    ``b`` is the values' itemsize, ``c`` the indices', ``k`` the outputs (1
    binary, K multinomial), ``d = n_features + 1`` and ``p = k d`` the
    parameters; ``m`` rows, ``n`` features, ``z`` stored values, and ``P``
    the pieces of the CSC copy (at most ``min(z, n) + z / 32 + 1``). CuPy
    returns a temporary to its pool when its last reference goes, so what
    counts is each method's peak:

    ``data``
        the CSR arrays (``z (b + c) + (m + 1) c``), the labels (int32) and
        the weights (float64): ``12 m``.
    ``held`` (for the whole fit)
        the residuals (``8 m k``); ``"csc"``: the copy (``z (b + c) + (n + 1)
        c + (P + 1) c``) and the pieces' partial sums (``8 P k``).
    ``transpose`` (``"csc"``: while the copy is made, once)
        the rows of the values in CSR order (as int64, then ``c``), the sort
        order (8) and the sort's own buffers (about the keys and the order
        again): ``z (16 + 3 c)``; the per-column and per-piece bookkeeping
        (``40 n + 40 P``).
    ``loss_grad`` (also ``loss``)
        the gradient (``8 p``) and the transposed product's own memory,
        ``T``: nothing for ``"csc"`` and ``"atomic"``; ``"cusparse"``: ``R``
        in X's dtype (``b m k``), the product and its float64 copy (``(b +
        8) n k``) and the index arrays of the transposed view, which scipy
        copies (``z c + (m + 1) c``).
    ``hvp``
        the stacked parameters (``16 p``) and, binary, ``z``, ``z_v`` and the
        weights ``h`` (``24 m``; ``R = h z_v`` in place); multinomial ``Z``
        and ``Z_v`` (``16 m k``) with ``P``, ``R`` and the softmax's and the
        row sums' temporaries (up to ``24 m k``) and a row sum (``8 m``);
        then the result (``8 p``) and ``T``.
    ``gram_matvec``
        ``r = s z`` in place (``8 m``), the result (``8 d``) and ``T``.
    ``hessian_diagonal``
        binary ``z`` and ``h`` (``16 m``); multinomial ``z`` with the
        softmax's temporaries, then ``P`` and ``H`` (up to ``32 m k``) and a
        row sum (``8 m``); the result (``8 p``) and ``T``; ``"cusparse"`` also
        squares the values (``z b`` and a copy of the index arrays).
    ``hessian`` (chunks of :data:`~gpulogreg.backends.numpy_backend.HESSIAN_CHUNK_ROWS`
        rows ``r``; only when ``p`` is at most :data:`DENSE_HESSIAN_MAX_PARAMS`)
        the baseline's sparse products: the chunk and ``[X, 1]`` in float64
        (the chunk's share of the values ``z_r`` and a column of ones, a few
        times: ``4 (z_r + r) (8 + c)``), its decision values and weights
        (``8 r (k + 1)``), ``H`` (``8 p^2``) and a block and its product
        (``16 d^2``).
    ``headroom``
        :data:`~gpulogreg.backends.cupy_backend.DEVICE_HEADROOM_BYTES`:
        cuSPARSE's buffers, the solvers' parameter-sized vectors, the
        per-block partial sums.

    The fit needs ``data + held + max(working terms) + headroom``
    (:func:`sparse_device_bytes_needed`; the working terms are
    :data:`WORKING_TERMS`).

    Returns
    -------
    dict of str to int
        Bytes per term, keyed as above.
    """
    if transpose not in TRANSPOSES:
        raise ValueError(f"transpose must be one of {TRANSPOSES}, got {transpose!r}")
    b, c = np.dtype(dtype).itemsize, np.dtype(index_dtype).itemsize
    m, n, z, k = int(n_samples), int(n_features), int(nnz), max(1, int(n_outputs))
    d = n + 1
    p = k * d
    pieces = min(z, n) + z // PIECE_ITERATIONS + 1
    terms = {"data": z * (b + c) + (m + 1) * c + 12 * m, "held": 8 * m * k}
    terms["transpose"] = 0
    if transpose == "csc":
        terms["held"] += z * (b + c) + (n + 1) * c + (pieces + 1) * c + 8 * pieces * k
        terms["transpose"] = z * (16 + 3 * c) + 40 * n + 40 * pieces
    index_copy = z * c + (m + 1) * c
    product = (b * m + (b + 8) * n) * k + index_copy if transpose == "cusparse" else 0
    terms["loss_grad"] = 8 * p + product
    rows = 24 * m if k == 1 else 40 * m * k + 8 * m
    terms["hvp"] = 16 * p + rows + 8 * p + product
    single = (b * m + (b + 8) * n) + index_copy if transpose == "cusparse" else 0
    terms["gram_matvec"] = 8 * m + 8 * d + single
    squares = z * b + index_copy if transpose == "cusparse" else 0
    weights = 16 * m if k == 1 else 32 * m * k + 8 * m
    terms["hessian_diagonal"] = weights + 8 * p + product + squares
    if p > DENSE_HESSIAN_MAX_PARAMS:
        terms["hessian"] = 0
    else:
        chunk = min(m, HESSIAN_CHUNK_ROWS)
        chunk_values = -(-z * chunk // max(m, 1))  # the chunk's share of the stored values
        terms["hessian"] = (
            4 * (chunk_values + chunk) * (8 + c) + 8 * chunk * (k + 1) + 8 * p * p + 16 * d * d
        )
    terms["headroom"] = DEVICE_HEADROOM_BYTES
    return terms


def sparse_device_bytes_needed(
    n_samples: int,
    n_features: int,
    nnz: int,
    dtype: Any,
    index_dtype: Any,
    n_outputs: int = 1,
    *,
    transpose: str = DEFAULT_TRANSPOSE,
) -> int:
    """``data + held + max(working terms) + headroom`` of :func:`sparse_device_memory_terms`."""
    terms = sparse_device_memory_terms(
        n_samples, n_features, nnz, dtype, index_dtype, n_outputs, transpose=transpose
    )
    working = max(terms[name] for name in WORKING_TERMS)
    return terms["data"] + terms["held"] + working + terms["headroom"]


def check_sparse_device_memory(
    X: Any,
    n_outputs: int = 1,
    *,
    x_resident: bool = False,
    transpose: str = DEFAULT_TRANSPOSE,
    free_bytes: int | None = None,
    total_bytes: int | None = None,
    device_label: str = "the GPU",
) -> None:
    """Raise :class:`~gpulogreg.backends.GPUMemoryError` when a fit on CSR ``X`` would not fit.

    Parameters
    ----------
    X : CSR matrix (scipy or cupyx)
    n_outputs : int
    x_resident : bool
        ``X`` is on the device already (cupyx input): only the rest must fit.
    transpose : str
        The backend's setting (``"csc"`` holds a copy of ``X``).
    free_bytes, total_bytes : int, optional
        Memory to compare with; default: queried from the current device.
    device_label : str
        How the message names the device (when ``free_bytes`` is given).
    """
    m, n = (int(s) for s in X.shape)
    nnz = int(X.data.shape[0])
    need = sparse_device_bytes_needed(
        m, n, nnz, X.data.dtype, X.indices.dtype, n_outputs, transpose=transpose
    )
    x_bytes = int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
    if x_resident:
        need -= x_bytes
    if free_bytes is None:
        free_bytes, total_bytes, device_label = cupy_backend._current_device_memory()
    if need <= free_bytes:
        return
    total = f" of {_gb(total_bytes)}" if total_bytes else ""
    what = "on top of X" if x_resident else "with X"
    copy = (
        " (including a CSC copy of X for the deterministic gradient)" if transpose == "csc" else ""
    )
    raise GPUMemoryError(
        f"a fit on sparse X ({m} x {n}, {nnz} stored {np.dtype(X.data.dtype)} values, "
        f"{_gb(x_bytes)}) needs about {_gb(need)} {what}{copy} on {device_label}, but only "
        f"{_gb(free_bytes)}{total} are free. Train out of core instead (a gpulogreg.Dataset "
        "of CSR chunks, or solver='minibatch'), or use device='cpu'."
    )
