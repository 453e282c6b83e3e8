"""The GPU backend: cuBLAS products around our fused CUDA kernels.

One loss-and-gradient evaluation is three steps, all on the device:

1. ``xw = X @ coef`` -- a cuBLAS product in X's dtype (gemv for binary,
   gemm for multinomial);
2. one fused kernel (``gpulogreg_logistic_loss_grad`` /
   ``gpulogreg_softmax_loss_grad``) that adds the intercepts (read from the
   parameter vector on the device), evaluates the stable sigmoid or softmax,
   the weighted cross-entropy and the weighted residual ``R`` per row in
   double, writes ``R`` in X's dtype, and leaves one loss partial sum per block
   (and, binary, one residual partial sum per block for the intercept); a
   second kernel reduces the partials in a fixed order;
3. ``grad = R^T X`` -- cuBLAS again.

The parameters and gradients stay on the device, and so does the loss
(:meth:`CupyBackend.loss_grad_lazy` returns it as a 0-d array): the objective
fetches it with the penalty, and in a line search with the slope, in one
device-to-host transfer per evaluation (a test counts the transfers).

Accumulation in float64 for float32 data (DESIGN.md: loss and gradient partial
sums in float64). The loss and the intercept gradient are accumulated in double
inside our kernels. For ``R^T X`` with float32 ``X`` we keep cuBLAS and bound
its float32 accumulation: the rows are cut into chunks of
:data:`GRAD_CHUNK_ROWS` (1024); one strided-batched cuBLAS product gives each
chunk's float32 partial gradient (sums of at most 1024 products), and the
partials are summed in float64 in a fixed order. The rounding error of the
gradient is then about float32's epsilon times the sum of |r_i x_ij| over a
chunk, instead of growing with the number of rows, while X is still read once
by cuBLAS at memory speed. ``X @ coef`` stays a float32 product: each row's
dot product has only ``n_features`` terms. float64 data uses plain float64
cuBLAS products. The Hessian is built in float64 (chunks of X are widened to
float64 in a bounded buffer), as in the NumPy baseline.

Reproducibility: the kernels use no atomics, and the reduction order is fixed
by the grid size, which depends on the device's attributes, the number of
rows and the kernel's register count (see :mod:`gpulogreg.backends._cuda`).
The register count is NVRTC's choice, so another NVRTC, CUDA or CuPy version
can compile the same source to another count, hence another grid and another
order of the partial sums; cuBLAS, too, may pick another algorithm in another
version. Results are therefore bitwise identical run to run with the same
GPU model and the same CUDA, NVRTC, cuBLAS and CuPy versions; with another
version (or GPU model) they agree to rounding, not bit for bit.

Do not set ``CUPY_TF32=1``: it lets cuBLAS round float32 products to TF32.

Memory: :func:`check_device_memory` refuses data that would not fit in free
device memory, with everything a fit allocates (:func:`device_memory_terms`
counts it method by method), with a :class:`gpulogreg.backends.GPUMemoryError`
pointing to the streaming path; :func:`gpulogreg.backends.release_device_memory` returns
CuPy's cached blocks after a fit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, device_of
from gpulogreg._typing import Array
from gpulogreg.backends import _cuda
from gpulogreg.backends.errors import GPUMemoryError
from gpulogreg.backends.numpy_backend import HESSIAN_CHUNK_ROWS, NumpyBackend

__all__ = [
    "GRAD_CHUNK_ROWS",
    "GRAD_MAX_BATCH",
    "HESSIAN_CHUNK_BYTES",
    "CupyBackend",
    "check_device_memory",
    "device_bytes_needed",
    "device_memory_terms",
    "sigmoid",
    "softmax",
]

#: Rows per float32 partial product of ``R^T X`` (see the module docstring):
#: small enough that float32 sums of 1024 terms lose about 2^-24 * sqrt(1024)
#: relative, large enough that the batched product still streams X at full speed
#: and the float64 partials (n_rows / 1024 x n_features) stay small.
GRAD_CHUNK_ROWS = 1024
#: Chunks per strided-batched cuBLAS call of ``R^T X`` (32,768 chunks of 1,024
#: rows: 32 M rows per call), below the 65,535 limit of a grid's y and z sizes.
GRAD_MAX_BATCH = 32768
#: Bytes of the float64 row chunk used to build the Hessian (64 MiB: bounded
#: whatever the number of rows; two such buffers are alive at once).
HESSIAN_CHUNK_BYTES = 64 * 2**20
#: Device memory kept free beyond what :func:`device_memory_terms` counts:
#: cuBLAS workspace, the solvers' parameter-sized vectors and small
#: temporaries (512 MiB).
DEVICE_HEADROOM_BYTES = 512 * 2**20
#: Parameters up to which the Newton solver builds the dense Hessian (its
#: default ``cg_threshold``; above it, Hessian-vector products): the memory
#: check counts the Hessian's buffers only up to here. Equal to
#: ``gpulogreg.solvers.newton.CG_THRESHOLD`` (a test checks; backends do not
#: import solvers).
DENSE_HESSIAN_MAX_PARAMS = 1000

#: The terms of :func:`device_memory_terms` that belong to one method each
#: (methods run one at a time: the fit needs the largest of them).
WORKING_TERMS = ("loss_grad", "hvp", "gram_matvec", "hessian", "hessian_diagonal")

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _on_data_device(method: _Method) -> _Method:
    """Run a backend method with the device holding the backend's ``X`` current."""

    @functools.wraps(method)
    def on_device(self: Any, *args: Any, **kwargs: Any) -> Any:
        with device_of(self.X):
            return method(self, *args, **kwargs)

    return cast(_Method, on_device)


def _on_data_device_of_argument(method: _Method) -> _Method:
    """Run a method that receives new data (``bind``) with that data's device current."""

    @functools.wraps(method)
    def on_device(self: Any, X: Any, *args: Any, **kwargs: Any) -> Any:
        with device_of(X):
            return method(self, X, *args, **kwargs)

    return cast(_Method, on_device)


def _kernels_for(a: Any) -> _cuda.KernelLauncher:
    """The compiled kernels of the device holding CuPy array ``a``.

    Raises
    ------
    TypeError
        ``a`` is not a CuPy array (a NumPy array, whose ``device`` is the
        string ``"cpu"``, cannot be launched on).
    """
    if array_module_name(a) != "cupy":
        kind = f"{type(a).__module__}.{type(a).__name__}"
        raise TypeError(
            f"the CUDA kernels run on CuPy arrays, got {kind}; move the data to the GPU "
            "first (cupy.asarray) or pass kernels="
        )
    return _cuda.get_kernels(int(a.device.id))


class CupyBackend(NumpyBackend):
    """GPU backend: cuBLAS ``X @ w``, fused CUDA loss/residual kernel, cuBLAS ``R^T X``.

    Same constructor as :class:`~gpulogreg.backends.numpy_backend.NumpyBackend`
    (the data are already on the device: :func:`gpulogreg.backends.make_backend`
    moves them once). It subclasses the array-generic baseline and replaces
    the elementwise middle of ``loss_grad`` and ``loss``, and the binary
    ``hessian``, ``hvp`` and the weights of ``hessian_diagonal`` (the
    baseline's chunked squares), by our kernels; the binary ``meat`` is the
    Hessian's chunked construction with the baseline's row weights;
    ``decision``, ``gram_matvec``, ``cluster_scores`` and the multinomial
    Hessian, meat and Hessian-vector product are the baseline's, running on
    CuPy arrays. Every method runs with the device holding ``X``
    current (CuPy and cuBLAS work on the current device).

    Parameters
    ----------
    X : cupy.ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    y : cupy.ndarray of shape (n_samples,), int32 class indices
    sample_weight : cupy.ndarray of shape (n_samples,), float64, summing to one
    n_classes : int
    fit_intercept : bool
    kernels : KernelLauncher, optional
        The kernels to launch; default: those compiled for X's device. Tests
        pass the host emulator here to run this class on NumPy arrays.
    """

    name = "cupy"
    #: Rows per float32 partial product of ``R^T X`` (class attribute so tests can vary it).
    grad_chunk_rows = GRAD_CHUNK_ROWS
    #: Bytes of the float64 chunk buffer of :meth:`hessian`.
    hessian_chunk_bytes = HESSIAN_CHUNK_BYTES
    #: Chunks per batched cuBLAS call of ``R^T X``.
    grad_max_batch = GRAD_MAX_BATCH
    #: Bytes of the float64 squared chunk of :meth:`hessian_diagonal` (the
    #: Hessian's chunk budget: one such buffer at a time).
    diagonal_chunk_bytes = HESSIAN_CHUNK_BYTES

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int = 2,
        fit_intercept: bool = True,
        kernels: _cuda.KernelLauncher | None = None,
    ) -> None:
        with device_of(X):  # everything this backend allocates lives on X's device
            self._kernels = kernels if kernels is not None else _kernels_for(X)
            self._rows_allocated = 0
            super().__init__(X, y, sample_weight, n_classes=n_classes, fit_intercept=fit_intercept)

    def _encode_labels(self) -> None:
        """Nothing: the CUDA kernels read the int32 labels (no float or one-hot copy)."""

    @_on_data_device_of_argument
    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        """Compute on other rows (the next mini-batch); buffers grow only when rows do."""
        if X.dtype not in (np.float32, np.float64):
            raise TypeError(f"the CuPy backend takes float32 or float64 X, got {X.dtype}")
        if self._rows_allocated and X.dtype != self.dtype:
            raise TypeError(f"bind() keeps the dtype of X ({self.dtype}), got {X.dtype}")
        if not X.flags.c_contiguous:
            raise ValueError("the CuPy backend needs a C-contiguous X (see gpulogreg.data.check_X)")
        super().bind(X, y, sample_weight)
        xp = self.xp
        self._binary = self.n_outputs == 1
        self._y32 = self.y
        self._sw = self.sample_weight
        self._loss_kernel = "logistic_loss_grad" if self._binary else "softmax_loss_grad"
        self._grid = self._kernels.grid(self._loss_kernel, self.dtype, self.n_samples)
        # Partial sums per block: loss (and, binary, the residual for the intercept).
        self._n_series = 2 if self._binary else 1
        if self.n_samples > self._rows_allocated:
            # The grid never shrinks with more rows, so buffers for the most
            # rows seen serve every smaller batch.
            self._partials_buffer = xp.empty(self._n_series * self._grid, dtype=xp.float64)
            self._sums = xp.empty(self._n_series, dtype=xp.float64)
            self._residual_buffer = xp.empty(self.n_samples * self.n_outputs, dtype=self.dtype)
            self._rows_allocated = self.n_samples
        self._partials = self._partials_buffer[: self._n_series * self._grid]
        shape = (self.n_samples,) if self._binary else (self.n_samples, self.n_outputs)
        self._residual = self._residual_buffer[: self.n_samples * self.n_outputs].reshape(shape)

    # -- helpers ----------------------------------------------------------------
    def _check_params(self, params: Array) -> Array:
        params = self.xp.ascontiguousarray(params, dtype=self.xp.float64)
        if params.shape != (self.n_params,):
            raise ValueError(f"params must have shape ({self.n_params},), got {params.shape}")
        return params

    def _coef_in_dtype(self, params: Array) -> Array:
        """Coefficients as a C-contiguous (n_outputs, n_features) array in X's dtype."""
        W = self.layout.split(params)[0]
        return self.xp.ascontiguousarray(W, dtype=self.dtype)

    def _xw(self, params: Array, X: Array) -> Array:
        """``X @ coef.T`` in X's dtype (cuBLAS): (m,) binary, (m, K) multinomial."""
        coef = self._coef_in_dtype(params)
        xw = X @ coef[0] if self._binary else X @ coef.T
        return self.xp.ascontiguousarray(xw)

    def _intercept_args(self, params: Array) -> tuple[Array, int]:
        """Pointer to the first intercept inside ``params`` (no host round trip) and the flag."""
        if self.fit_intercept:
            return params[self.n_features :], 1
        return params, 0  # not read by the kernels

    def _fused(self, params: Array, xw: Array, *, write_residual: bool) -> None:
        """Run the fused loss/residual kernel and reduce its partials into ``self._sums``."""
        intercept, has_intercept = self._intercept_args(params)
        if self._binary:
            args: tuple[Any, ...] = (
                xw,
                intercept,
                has_intercept,
                self._y32,
                self._sw,
                self._residual,
                int(write_residual),
                self._partials,
                self.n_samples,
            )
        else:
            args = (
                xw,
                intercept,
                self.layout.n_cols,
                has_intercept,
                self._y32,
                self._sw,
                self._residual,
                int(write_residual),
                self._partials,
                self.n_samples,
                self.n_outputs,
            )
        self._kernels.launch(self._loss_kernel, self.dtype, self._grid, args)
        self._kernels.launch(
            "sum_partials", np.float64, self._n_series, (self._partials, self._grid, self._sums)
        )

    def _xt_r_plain(self, R: Array, start: int, stop: int) -> Array:
        """``R[start:stop]^T X[start:stop]`` in one cuBLAS product, as float64 (k, n)."""
        xp = self.xp
        X = self.X[start:stop]
        if R.ndim == 1:
            return (R[start:stop] @ X).astype(xp.float64).reshape(1, self.n_features)
        return (R[start:stop].T @ X).astype(xp.float64)

    def _xt_r(self, R: Array) -> Array:
        """``R^T X`` as float64 (n_outputs, n_features), R of shape (m,) or (m, K) in X's dtype.

        float32: float32 cuBLAS partial products over chunks of
        :attr:`grad_chunk_rows` rows (strided-batched calls of at most
        :attr:`grad_max_batch` chunks), summed in float64 in a fixed order,
        plus the remaining rows. float64: one product.
        """
        xp = self.xp
        m, n = self.n_samples, self.n_features
        chunk = int(self.grad_chunk_rows)
        if self.dtype == np.float64 or m <= chunk:
            return self._xt_r_plain(R, 0, m)
        n_chunks = m // chunk
        cut = n_chunks * chunk
        X3 = self.X[:cut].reshape(n_chunks, chunk, n)
        R3 = R[:cut].reshape(n_chunks, chunk, -1).transpose(0, 2, 1)  # (n_chunks, k, chunk)
        G = xp.zeros((R3.shape[1], n), dtype=xp.float64)
        batch = int(self.grad_max_batch)
        for first in range(0, n_chunks, batch):
            last = min(first + batch, n_chunks)
            # Multinomial R3 is strided (classes x rows per chunk): one explicit
            # contiguous copy per batch, counted by device_memory_terms (binary
            # R3 is contiguous already: no copy).
            Rb = xp.ascontiguousarray(R3[first:last])
            G += xp.matmul(Rb, X3[first:last]).sum(axis=0, dtype=xp.float64)
        if cut < m:
            G += self._xt_r_plain(R, cut, m)
        return G

    def _newton_weights(self, params: Array, X: Array, start: int, stop: int, out: Array) -> None:
        """``out = s p (1 - p)`` for rows ``start:stop`` (X is that row block)."""
        xw = self._xw(params, X)
        intercept, has_intercept = self._intercept_args(params)
        rows = stop - start
        grid = self._kernels.grid("logistic_newton_weights", self.dtype, rows)
        self._kernels.launch(
            "logistic_newton_weights",
            self.dtype,
            grid,
            (xw, intercept, has_intercept, self._sw[start:stop], out, rows),
        )

    # -- protocol ---------------------------------------------------------------
    @_on_data_device
    def loss(self, params: Array) -> float:
        params = self._check_params(params)
        self._fused(params, self._xw(params, self.X), write_residual=False)
        return float(self._sums[0])

    @_on_data_device
    def loss_grad_lazy(self, params: Array) -> tuple[Array, Array]:
        """The loss as a 0-d device array (no transfer) and the gradient, on the device."""
        xp = self.xp
        params = self._check_params(params)
        self._fused(params, self._xw(params, self.X), write_residual=True)
        grad = xp.empty(self.n_params, dtype=xp.float64)
        G = self.layout.matrix(grad)
        G[:, : self.n_features] = self._xt_r(self._residual)
        if self.fit_intercept:
            if self._binary:
                G[:, self.n_features] = self._sums[1:]
            else:
                G[:, self.n_features] = self._residual.sum(axis=0, dtype=xp.float64)
        return self._sums[0].copy(), grad  # a copy: the buffer serves the next evaluation

    @_on_data_device
    def hessian(self, params: Array) -> Array:
        """Binary: ``A^T diag(h) A`` over float64 row chunks, h from our kernel.

        ``A = [X, 1]``; the chunk buffer holds at most :attr:`hessian_chunk_bytes`.
        Multinomial: the baseline's chunked construction on the device.
        """
        if not self._binary:
            return super().hessian(params)
        return self._binary_gram(self._check_params(params), self._newton_weights)

    @_on_data_device
    def hessian_diagonal(self, params: Array) -> Array:
        """The baseline's chunked diagonal on the device; binary weights from our kernel."""
        return super().hessian_diagonal(self._check_params(params))

    def _diagonal_weights(self, params: Array, Xc: Array, rows: slice) -> Array:
        """Binary: ``s p (1 - p)`` of the chunk from the Newton-weights kernel, (chunk, 1)."""
        if not self._binary:
            return super()._diagonal_weights(params, Xc, rows)
        h = self.xp.empty(rows.stop - rows.start, dtype=self.xp.float64)
        self._newton_weights(params, Xc, rows.start, rows.stop, h)
        return h[:, None]

    @_on_data_device
    def meat(self, params: Array) -> Array:
        """The Hessian's construction with the weights ``s (p - y)^2`` (binary).

        The weights of a chunk are the baseline's rule (:meth:`_meat_weights`),
        CuPy elementwise operations on the device. Multinomial: the baseline's
        chunked blocks ``A^T diag(s R_k R_j) A`` on the device.
        """
        if not self._binary:
            return super().meat(params)
        return self._binary_gram(self._check_params(params), self._squared_residual_weights)

    @_on_data_device
    def cluster_scores(self, params: Array, groups: Array, n_groups: int) -> Array:
        """The baseline's chunked per-group sums, on the device (``groups`` on X's device)."""
        return super().cluster_scores(self._check_params(params), groups, n_groups)

    def _binary_gram(
        self, params: Array, weights: Callable[[Array, Array, int, int, Array], None]
    ) -> Array:
        """``A^T diag(h) A`` over float64 row chunks, ``A = [X, 1]``.

        ``weights(params, X_chunk, start, stop, out)`` writes a chunk's ``h``
        (the Newton weights or the meat's); the chunk buffer holds at most
        :attr:`hessian_chunk_bytes`.
        """
        xp = self.xp
        m, n, d = self.n_samples, self.n_features, self.layout.n_cols
        rows = max(1, min(m, int(self.hessian_chunk_bytes) // (8 * d)))
        H = xp.zeros((d, d), dtype=xp.float64)
        A = xp.empty((rows, d), dtype=xp.float64)
        if self.fit_intercept:
            A[:, n] = 1.0
        h = xp.empty(rows, dtype=xp.float64)
        for start in range(0, m, rows):
            stop = min(start + rows, m)
            count = stop - start
            Xc = self.X[start:stop]
            hc = h[:count]
            weights(params, Xc, start, stop, hc)
            Ac = A[:count]
            Ac[:, :n] = Xc
            H += (Ac * hc[:, None]).T @ Ac
        return H

    def _squared_residual_weights(
        self, params: Array, X: Array, start: int, stop: int, out: Array
    ) -> None:
        """``out = s (p - y)^2`` for rows ``start:stop`` (X is that row block)."""
        out[...] = self._meat_weights(self._linear(params, X), slice(start, stop))(0, 0)

    @_on_data_device
    def hvp(self, params: Array, v: Array) -> Array:
        """Binary: ``A^T diag(h) A v`` with h from our kernel and ``R^T X`` as in the gradient."""
        if not self._binary:
            return super().hvp(params, v)
        xp = self.xp
        params = self._check_params(params)
        v = self._check_params(v)
        h = xp.empty(self.n_samples, dtype=xp.float64)
        self._newton_weights(params, self.X, 0, self.n_samples, h)
        r = h * self._linear(v, self.X)  # float64 (m,)
        out = xp.empty(self.n_params, dtype=xp.float64)
        out[: self.n_features] = self._xt_r(r.astype(self.dtype))[0]
        if self.fit_intercept:
            out[self.n_features] = r.sum()
        return out

    @_on_data_device
    def gram_matvec(self, v: Array) -> Array:
        return super().gram_matvec(v)

    def decision(self, params: Array, X: Array) -> Array:
        with device_of(X):  # the rows to score may live on another device than the data
            return super().decision(params, X)


# -- prediction helpers -------------------------------------------------------------


def _as_float(a: Any, xp: ModuleType) -> Any:
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    return xp.ascontiguousarray(a, dtype=dtype)


def sigmoid(z: Array, *, kernels: _cuda.KernelLauncher | None = None) -> Array:
    """``1 / (1 + exp(-z))`` with our kernel, in z's dtype (float32/float64), no overflow.

    Parameters
    ----------
    z : cupy.ndarray of any shape
    kernels : KernelLauncher, optional
        Default: the kernels of z's device.
    """
    xp = array_namespace(z)
    with device_of(z):
        z = _as_float(z, xp)
        p = xp.empty_like(z)
        kernels = kernels if kernels is not None else _kernels_for(z)
        grid = kernels.grid("sigmoid", z.dtype, z.size)
        kernels.launch("sigmoid", z.dtype, grid, (z, p, z.size))
    return p


def softmax(Z: Array, *, kernels: _cuda.KernelLauncher | None = None) -> Array:
    """Row-wise softmax of ``Z`` (n_rows, n_classes) with our kernel, in Z's dtype."""
    xp = array_namespace(Z)
    if Z.ndim != 2:
        raise ValueError(f"softmax takes a 2-D array, got shape {Z.shape}")
    with device_of(Z):
        Z = _as_float(Z, xp)
        P = xp.empty_like(Z)
        kernels = kernels if kernels is not None else _kernels_for(Z)
        grid = kernels.grid("softmax", Z.dtype, Z.shape[0])
        kernels.launch("softmax", Z.dtype, grid, (Z, P, Z.shape[0], Z.shape[1]))
    return P


# -- device memory --------------------------------------------------------------------
def device_memory_terms(
    n_samples: int, n_features: int, dtype: Any, n_outputs: int = 1
) -> dict[str, int]:
    """Device bytes of each part of a GPU fit on ``n_samples x n_features`` data.

    Derived from what :class:`CupyBackend` and the baseline methods it
    inherits allocate (CuPy returns a temporary to its pool when its last
    reference goes, and reuses the block for the next request of that size,
    so what counts is the peak of each method). ``b`` is X's itemsize, ``k``
    the outputs (1 binary, K multinomial), ``d = n_features + 1`` (an
    intercept column is assumed) and ``p = k d`` the parameters; per row:

    ``data``
        X (``n_features b``), the labels (int32, 4) and the weights (float64, 8).
    ``held`` (for the whole fit)
        the residual ``R`` in X's dtype (``k b``); the kernels read the int32
        labels, so no float or one-hot copy of them is made.
    ``loss_grad`` (also ``loss``)
        ``X @ W^T`` (``k b``), freed before ``R^T X``; float32 ``R^T X`` then
        makes, per batched product of at most :data:`GRAD_MAX_BATCH` x
        :data:`GRAD_CHUNK_ROWS` rows, a contiguous copy of ``R`` (multinomial,
        ``k b``) and the chunks' float32 partial gradients (``4 k n / 1024``).
    ``hvp``
        binary: the Newton weights ``h`` (8), the float64 decision values of
        ``v`` and their sum with the intercept (8 + 8), then ``r = h z`` (8)
        while the decision values go, and ``r`` in X's dtype (``b``) with the
        chunk partials: ``max(24, 16 + b + 4 n / 1024)``. Multinomial (the
        baseline's): ``Z``, ``Z_v`` and ``P`` (``3 x 8 k``) are held while
        ``R = P (Z_v - sum P Z_v) s`` is built through two ``8 k``
        temporaries: ``40 k``.
    ``gram_matvec``
        the float64 decision values, their sum with the intercept, ``s z`` and
        that in X's dtype: ``16 + b``.
    ``hessian_diagonal`` (not per row: chunks of
        ``min(n_samples, HESSIAN_CHUNK_BYTES / 8 n)`` rows; Newton-CG's
        preconditioner) binary: the weights ``h`` and the float64 squares of
        the chunk (``8 + 8 n``); multinomial: the squares and the weights
        (``8 n + 8 k``), or before them the baseline's softmax weights
        (``40 k``), whichever is more.
    ``hessian`` (not per row: bounded chunks; ``meat`` takes the same)
        binary: per chunk of ``min(n_samples, HESSIAN_CHUNK_BYTES / 8 d)``
        rows, ``A = [X, 1]`` in float64 and ``A * h`` (``8 d`` each) and
        ``h`` (8); plus ``H`` and the chunk's product (``16 d^2``).
        Multinomial (the baseline's, chunks of
        :data:`~gpulogreg.backends.numpy_backend.HESSIAN_CHUNK_ROWS` rows):
        ``[X, 1]`` (``d b``), ``P`` (``8 k``; the meat: the residuals), one
        block's weights (8), ``A * h`` and, float32, ``A`` in float64
        (``8 d`` each); plus ``H`` (``8 p^2``) and a block and its product
        (``16 d^2``). Counted only when ``p`` is at most
        :data:`DENSE_HESSIAN_MAX_PARAMS` (above it Newton uses
        Hessian-vector products and never builds ``H``).
    ``headroom``
        :data:`DEVICE_HEADROOM_BYTES`: cuBLAS workspace, the solvers'
        parameter-sized vectors, the per-block partial sums.

    Methods run one at a time, so the fit needs ``data + held + max(loss_grad,
    hvp, gram_matvec, hessian, hessian_diagonal) + headroom``
    (:func:`device_bytes_needed`).
    The sums of inference after a fit are not counted: ``meat`` takes what
    ``hessian`` takes, and ``cluster_scores`` a few copies (float64 at most)
    of a chunk of ``[X, 1]`` (chunks of ``HESSIAN_CHUNK_ROWS`` rows) and the
    ``n_groups x p`` result.

    Returns
    -------
    dict of str to int
        Bytes per term, for all the rows, keyed as above.
    """
    b = np.dtype(dtype).itemsize
    k = max(1, int(n_outputs))
    m, n = int(n_samples), int(n_features)
    d = n + 1
    n_params = k * d
    float32 = b == np.dtype(np.float32).itemsize
    terms = {"data": m * (n * b + 4 + 8), "held": m * k * b}
    # float32 R^T X: rows per batched product, their copy of R and float32 partials.
    batch_rows = min(m, GRAD_MAX_BATCH * GRAD_CHUNK_ROWS) if float32 and m > GRAD_CHUNK_ROWS else 0
    partials = (batch_rows // GRAD_CHUNK_ROWS) * k * n * 4
    r_copy = batch_rows * k * b if k > 1 else 0
    terms["loss_grad"] = max(m * k * b, r_copy + partials)
    if k == 1:
        terms["hvp"] = max(24 * m, (16 + b) * m + partials)
    else:
        terms["hvp"] = 40 * k * m
    terms["gram_matvec"] = (16 + b) * m
    diagonal_rows = min(m, HESSIAN_CHUNK_BYTES // (8 * max(n, 1)))
    diagonal_per_row = 8 * (n + 1) if k == 1 else max(8 * (n + k), 40 * k)
    terms["hessian_diagonal"] = diagonal_rows * diagonal_per_row
    if n_params > DENSE_HESSIAN_MAX_PARAMS:
        terms["hessian"] = 0
    elif k == 1:
        rows = max(1, min(m, HESSIAN_CHUNK_BYTES // (8 * d)))
        terms["hessian"] = rows * (16 * d + 8) + 16 * d * d
    else:
        rows = min(m, HESSIAN_CHUNK_ROWS)
        per_row = d * b + 8 * k + 8 + 8 * d * (2 if float32 else 1)
        terms["hessian"] = rows * per_row + 8 * n_params**2 + 16 * d * d
    terms["headroom"] = DEVICE_HEADROOM_BYTES
    return terms


def device_bytes_needed(n_samples: int, n_features: int, dtype: Any, n_outputs: int = 1) -> int:
    """Device bytes a fit on ``n_samples x n_features`` data needs, with headroom.

    ``data + held + max(loss_grad, hvp, gram_matvec, hessian, hessian_diagonal) + headroom`` of
    :func:`device_memory_terms`, which derives each term from the backend's
    allocations. For example 1,000,000 x 100 float32: binary 400 + 12 + 4
    + 24 (Hessian-vector product) bytes per row; 3 classes 400 + 12 + 12 +
    120 (its Hessian-vector product).
    """
    terms = device_memory_terms(n_samples, n_features, dtype, n_outputs)
    working = max(terms[name] for name in WORKING_TERMS)
    return terms["data"] + terms["held"] + working + terms["headroom"]


def _current_device_memory() -> tuple[int, int, str]:
    """``(free bytes, total bytes, label)`` of the current CUDA device.

    Free counts the driver's free memory plus the blocks CuPy's pool holds
    but no array uses (CuPy reuses them before asking the driver).
    """
    import cupy

    device = cupy.cuda.Device()
    free, total = device.mem_info
    free += cupy.get_default_memory_pool().free_bytes()
    name = cupy.cuda.runtime.getDeviceProperties(device.id).get("name", b"")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return int(free), int(total), f"GPU {device.id} ({name})" if name else f"GPU {device.id}"


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def check_device_memory(
    n_samples: int,
    n_features: int,
    dtype: Any,
    n_outputs: int = 1,
    *,
    free_bytes: int | None = None,
    total_bytes: int | None = None,
    device_label: str = "the GPU",
    x_resident: bool = False,
) -> None:
    """Raise :class:`~gpulogreg.backends.GPUMemoryError` when the data would not fit on the device.

    Parameters
    ----------
    n_samples, n_features : int
    dtype : dtype of X
    n_outputs : int
    free_bytes, total_bytes : int, optional
        Memory to compare with; default: queried from the current device.
    device_label : str
        How the message names the device (when ``free_bytes`` is given).
    x_resident : bool
        X is already on the device (CuPy input): only the rest must fit in
        the free memory.
    """
    need = device_bytes_needed(n_samples, n_features, dtype, n_outputs)
    x_bytes = int(n_samples) * int(n_features) * np.dtype(dtype).itemsize
    if x_resident:
        need -= x_bytes
    if free_bytes is None:
        free_bytes, total_bytes, device_label = _current_device_memory()
    if need <= free_bytes:
        return
    total = f" of {_gb(total_bytes)}" if total_bytes else ""
    what = "on top of X" if x_resident else "with X"
    raise GPUMemoryError(
        f"a fit on X ({n_samples} x {n_features} {np.dtype(dtype)}, {_gb(x_bytes)}) needs "
        f"about {_gb(need)} {what} on {device_label}, but only {_gb(free_bytes)}{total} "
        "are free. Train out of core instead: pass a gpulogreg.Dataset (or use "
        "solver='minibatch'), which streams chunks to the GPU; or use float32 data, or "
        "device='cpu'."
    )
