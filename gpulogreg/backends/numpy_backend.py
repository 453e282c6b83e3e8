"""The plain, unfused baseline backend, written against an array namespace ``xp``.

It is the reference for correctness and the yardstick of every benchmark: one
BLAS matrix-vector product for ``z = X @ w``, elementwise NumPy operations for
the stable loss and the residual, a second BLAS product for ``X.T @ r``. The
same code runs on CuPy arrays (the CuPy backend subclasses it and replaces the
elementwise middle by its fused kernel).

Formulas (binary, ``y`` in {0, 1}, normalised weights ``s`` summing to one)::

    z_i    = x_i . w + b
    loss   = sum_i s_i [max(z_i, 0) - y_i z_i + log1p(exp(-|z_i|))]
    p_i    = sigmoid(z_i) = where(z_i >= 0, 1, e_i) / (1 + e_i),  e_i = exp(-|z_i|)
    grad_w = X^T r,  grad_b = sum_i r_i,   r_i = s_i (p_i - y_i)
    H      = A^T diag(s_i p_i (1 - p_i)) A,   A = [X, 1]
    meat   = A^T diag(s_i (p_i - y_i)^2) A = sum_i s_i g_i g_i^T,   g_i = (p_i - y_i) a_i
    S_c    = sum_{i in group c} s_i g_i                  (cluster scores)

Multinomial (``K`` classes, ``Y`` one-hot)::

    Z      = X W^T + b                       (m, K)
    loss   = sum_i s_i [logsumexp(Z_i) - Z_{i, y_i}]
    R      = diag(s) (softmax(Z) - Y);  grad_W = R^T X,  grad_b = sum_i R_i
    H_kj   = A^T diag(s P_k (delta_kj - P_j)) A,   P = softmax(Z)
    meat_kj = A^T diag(s E_k E_j) A,   E = softmax(Z) - Y

The diagonal of the Hessian (the preconditioner of Newton-CG) is, per output
``k`` and column ``j`` of ``A``, ``sum_i h_ik a_ij^2`` with ``h_i = s_i p_i
(1 - p_i)`` (binary) or ``h_ik = s_i P_ik (1 - P_ik)`` (multinomial).

The Hessian and the meat are one chunked construction (:meth:`NumpyBackend._gram`)
with two row-weight rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

from gpulogreg._array import array_namespace, host_scalars
from gpulogreg._layout import HasLayout, ParamLayout
from gpulogreg._typing import CERTAIN_LOSS, Array, Information

__all__ = ["NumpyBackend"]

#: Rows per chunk when building the Hessian: bounds the temporary to
#: ``HESSIAN_CHUNK_ROWS * n_features`` floats whatever ``n_samples`` is.
HESSIAN_CHUNK_ROWS = 65536
#: Bytes of the float64 squared row chunk of :meth:`NumpyBackend.hessian_diagonal`
#: (8 MiB: a few thousand rows of a wide X, bounded whatever its shape; large
#: enough that the per-chunk Python overhead is negligible next to the product).
DIAGONAL_CHUNK_BYTES = 8 * 2**20


class NumpyBackend(HasLayout):
    """Unfused baseline: BLAS products and elementwise array operations.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), float32 or float64, C-contiguous
        Validated features (see :func:`gpulogreg.data.check_X`); never copied.
    y : array of shape (n_samples,), int32
        Class indices in ``0 .. n_classes - 1``.
    sample_weight : array of shape (n_samples,), float64
        Non-negative weights summing to one.
    n_classes : int
        2 selects the binary (sigmoid) loss, more the multinomial (softmax) loss.
    fit_intercept : bool
    """

    name = "numpy"
    #: The storage of ``X``: ``"dense"`` (C-contiguous arrays) or ``"csr"``.
    format = "dense"
    #: Bytes of squares per row chunk of :meth:`hessian_diagonal` (class
    #: attribute so that tests can make several chunks of small data).
    diagonal_chunk_bytes = DIAGONAL_CHUNK_BYTES

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int = 2,
        fit_intercept: bool = True,
    ) -> None:
        self.n_classes = int(n_classes)
        self.layout = ParamLayout.for_classes(int(X.shape[1]), self.n_classes, fit_intercept)
        self.bind(X, y, sample_weight)

    def bind(self, X: Array, y: Array, sample_weight: Array) -> None:
        """Compute on other rows from now on (the next mini-batch), keeping everything else.

        ``X`` must have the same number of features, dtype and namespace; the
        backend holds ``X`` itself, never a copy.
        """
        xp: ModuleType = array_namespace(X)
        n_samples, n_features = (int(d) for d in X.shape)
        if n_features != self.layout.n_features:
            raise ValueError(f"X has {n_features} features, expected {self.layout.n_features}")
        self.xp = xp
        self.X = X
        self.dtype = np.dtype(X.dtype)
        self.n_samples, self.n_features = n_samples, n_features
        self.y = xp.ascontiguousarray(y, dtype=xp.int32)
        self.sample_weight = xp.ascontiguousarray(sample_weight, dtype=xp.float64)
        if self.y.shape != (self.n_samples,) or self.sample_weight.shape != (self.n_samples,):
            raise ValueError(
                f"y and sample_weight must have shape ({self.n_samples},), got "
                f"{self.y.shape} and {self.sample_weight.shape}"
            )
        self._encode_labels()

    def _encode_labels(self) -> None:
        """The baseline's float labels (binary) or one-hot matrix (multinomial)."""
        xp = self.xp
        if self.n_outputs == 1:
            self.y_float = self.y.astype(xp.float64)
        else:
            self.y_onehot = xp.zeros((self.n_samples, self.n_outputs), dtype=xp.float64)
            self.y_onehot[xp.arange(self.n_samples), self.y] = 1.0

    # -- parameter layout ---------------------------------------------------
    def split(self, params: Array) -> tuple[Array, Array | float]:
        """Split ``params`` into coef ``(n_outputs, n_features)`` and intercept(s)."""
        return self.layout.split(params)

    def join(self, grad_coef: Array, grad_intercept: Array) -> Array:
        """Inverse of :meth:`split` for gradients (float64, flat)."""
        return self.layout.join(grad_coef, grad_intercept, self.xp)

    # -- linear part ----------------------------------------------------------
    def _linear(self, params: Array, X: Array) -> Array:
        """``X @ coef.T + intercept`` in float64: (m,) binary, (m, K) multinomial."""
        coef, intercept = self.split(params)
        # BLAS in X's dtype (no upcast copy of X); the product is then widened.
        z = (X @ coef.T.astype(X.dtype, copy=False)).astype(self.xp.float64)
        z = z + intercept
        return z[:, 0] if self.n_outputs == 1 else z

    def _chunk_linear(self, params: Array, Xc: Array, *, exact: bool) -> Array:
        """:meth:`_linear` of a row chunk; ``exact``: from the chunk widened to float64."""
        return self._linear(params, Xc.astype(self.xp.float64, copy=False) if exact else Xc)

    def _transpose_product(self, R: Array) -> tuple[Array, Array]:
        """``(R^T X, sum_i R_i)`` for residuals ``R`` of shape (m,) or (m, K)."""
        X = self.X
        if R.ndim == 1:
            grad_coef = (R.astype(X.dtype) @ X).astype(self.xp.float64)
        else:
            grad_coef = (R.T.astype(X.dtype) @ X).astype(self.xp.float64)
        return grad_coef, R.sum(axis=0)

    def decision(self, params: Array, X: Array) -> Array:
        return self._linear(params, X)

    # -- pointwise loss -------------------------------------------------------
    def _pointwise(self, z: Array) -> tuple[Array, Array]:
        """Per-sample loss and residual (``p - y``), unweighted."""
        xp = self.xp
        if self.n_outputs == 1:
            e = xp.exp(-xp.abs(z))
            loss = xp.maximum(z, 0.0) - self.y_float * z + xp.log1p(e)
            p = xp.where(z >= 0, 1.0, e) / (1.0 + e)
            return loss, p - self.y_float
        zmax = z.max(axis=1, keepdims=True)
        ez = xp.exp(z - zmax)
        sum_ez = ez.sum(axis=1, keepdims=True)
        logsumexp = (zmax + xp.log(sum_ez))[:, 0]
        loss = logsumexp - (z * self.y_onehot).sum(axis=1)
        return loss, ez / sum_ez - self.y_onehot

    def _curvature(self, z: Array, s: Array) -> Array:
        """Binary Newton weights ``s_i p_i (1 - p_i)``, stable for any finite ``z``."""
        xp = self.xp
        e = xp.exp(-xp.abs(z))
        return s * e / (1.0 + e) ** 2

    # -- protocol -------------------------------------------------------------
    def loss(self, params: Array) -> float:
        z = self._linear(params, self.X)
        loss, _ = self._pointwise(z)
        return float(self.sample_weight @ loss)

    def loss_grad(self, params: Array) -> tuple[float, Array]:
        loss, grad = self.loss_grad_lazy(params)
        return float(loss), grad

    def loss_grad_lazy(self, params: Array) -> tuple[Any, Array]:
        """:meth:`loss_grad` with the loss left where it was computed (0-d, in ``xp``)."""
        z = self._linear(params, self.X)
        loss, residual = self._pointwise(z)
        s = self.sample_weight
        R = residual * (s if residual.ndim == 1 else s[:, None])
        grad_coef, grad_intercept = self._transpose_product(R)
        return s @ loss, self.join(grad_coef, grad_intercept)

    def hvp(self, params: Array, v: Array) -> Array:
        z = self._linear(params, self.X)
        zv = self._linear(v, self.X)
        if self.n_outputs == 1:
            R = self._curvature(z, self.sample_weight) * zv
        else:
            P = self._probabilities(z)
            R = P * (zv - (P * zv).sum(axis=1, keepdims=True)) * self.sample_weight[:, None]
        grad_coef, grad_intercept = self._transpose_product(R)
        return self.join(grad_coef, grad_intercept)

    def gram_matvec(self, v: Array) -> Array:
        xp = self.xp
        n = self.n_features
        w = v[:n]
        z = (self.X @ w.astype(self.dtype)).astype(xp.float64)
        if self.fit_intercept:
            z = z + v[n]
        r = self.sample_weight * z
        out = (r.astype(self.dtype) @ self.X).astype(xp.float64)
        if self.fit_intercept:
            out = xp.concatenate([out, xp.reshape(r.sum(), (1,))])
        return out

    def hessian(self, params: Array) -> Array:
        """Hessian built in row chunks: the temporary is ``chunk x n_features``."""
        return self._gram(params, self._hessian_weights)

    def hessian_diagonal(self, params: Array) -> Array:
        """The diagonal of :meth:`hessian`, shape (n_params,), float64, over bounded row chunks.

        Per chunk: the curvature weights ``h`` (chunk, K) of
        :meth:`_diagonal_weights`, then ``h^T (X_c * X_c)`` with the squares
        formed in float64 (a float64 product, so float32 data accumulate in
        float64 too); the intercept entries are ``sum_i h_ik``. A chunk holds at
        most :attr:`diagonal_chunk_bytes` of squares.
        """
        xp = self.xp
        out = xp.zeros((self.n_outputs, self.layout.n_cols), dtype=xp.float64)
        rows = max(1, int(self.diagonal_chunk_bytes) // (8 * max(self.n_features, 1)))
        for start in range(0, self.n_samples, rows):
            self._add_diagonal_chunk(params, slice(start, min(start + rows, self.n_samples)), out)
        return out.ravel()

    def _add_diagonal_chunk(self, params: Array, rows: slice, out: Array) -> None:
        """Add one chunk's ``h^T X_c^2`` (and ``sum h``) to ``out`` (n_outputs, n_cols).

        A function of its own so that the chunk's temporaries are gone before
        the next chunk's are made (on a GPU, device memory).
        """
        n = self.n_features
        Xc = self.X[rows]
        h = self._diagonal_weights(params, Xc, rows)
        out[:, :n] += h.T @ self.xp.square(Xc, dtype=self.xp.float64)
        if self.fit_intercept:
            out[:, n] += h.sum(axis=0)

    def _diagonal_weights(self, params: Array, Xc: Array, rows: slice) -> Array:
        """A chunk's diagonal curvature weights, (chunk, n_outputs) float64.

        ``s p (1 - p)`` (binary), ``s P_k (1 - P_k)`` per class (multinomial),
        from the linear predictor in X's dtype (as :meth:`hessian` computes it).
        """
        z = self._linear(params, Xc)
        s = self.sample_weight[rows]
        if self.n_outputs == 1:
            return self._curvature(z, s)[:, None]
        P = self._probabilities(z)
        return s[:, None] * P * (1.0 - P)

    def information(self, params: Array) -> Information:
        """The Hessian, loss, gradient and certain rows' weight, linear predictor in float64.

        Two chunked passes here (the Hessian's, then the rest together); the
        Numba backend fuses them for binary models.
        """
        xp = self.xp
        hessian = self._gram(params, self._hessian_weights, exact=True)
        K, d = self.n_outputs, self.layout.n_cols
        gradient = xp.zeros((K, d), dtype=xp.float64)
        loss = certain = xp.zeros((), dtype=xp.float64)
        for rows in self._row_chunks():
            Xc = self.X[rows]
            z = self._chunk_linear(params, Xc, exact=True)
            s = self.sample_weight[rows]
            losses = self._row_losses(z, rows)
            loss = loss + s @ losses
            certain = certain + s[losses < CERTAIN_LOSS].sum()
            R = xp.reshape(self._raw_residual(z, rows), (Xc.shape[0], K)) * s[:, None]
            gradient += self._residual_product(R, self._design(Xc))
        loss_value, certain_value = host_scalars(loss, certain)
        return Information(
            hessian=hessian, loss=loss_value, gradient=gradient.ravel(), certain=certain_value
        )

    def meat(self, params: Array) -> Array:
        """``sum_i s_i g_i g_i^T`` in row chunks, the Hessian's blocks with other row weights."""
        return self._gram(params, self._meat_weights, exact=True)

    def cluster_scores(self, params: Array, groups: Array, n_groups: int) -> Array:
        """``S[c] = sum_{i: groups[i] == c} s_i g_i`` over row chunks (no ``m x p`` temporary).

        Per chunk the rows are sorted by group (:class:`_Segments`) and each
        output's score rows ``s_i R_ik a_i`` (``chunk x n_cols``) are summed
        group by group in a fixed pairwise order, then added to their groups'
        rows of ``S``: deterministic, on the backend's device, with no atomics.
        """
        xp = self.xp
        groups = self._check_groups(groups, n_groups)
        K, d = self.n_outputs, self.layout.n_cols
        S = xp.zeros((int(n_groups), K, d), dtype=xp.float64)
        for rows in self._row_chunks():
            Xc = self.X[rows]
            R = self._raw_residual(self._chunk_linear(params, Xc, exact=True), rows)
            R = xp.reshape(R, (Xc.shape[0], K)) * self.sample_weight[rows][:, None]
            segments = _Segments(xp, groups[rows])
            A = self._design(Xc)[segments.order]
            R = R[segments.order]
            for k in range(K):
                S[segments.labels, k] += segments.sums(A * R[:, k, None])
        return xp.reshape(S, (int(n_groups), K * d))

    # -- chunked Gram matrices ------------------------------------------------
    def _row_chunks(self) -> Iterator[slice]:
        """Fixed row chunks of :data:`HESSIAN_CHUNK_ROWS` rows, in order."""
        for start in range(0, self.n_samples, HESSIAN_CHUNK_ROWS):
            yield slice(start, min(start + HESSIAN_CHUNK_ROWS, self.n_samples))

    def _design(self, Xc: Array) -> Array:
        """``A = [X, 1]`` of a chunk, in X's dtype (``X`` itself without an intercept)."""
        xp = self.xp
        if not self.fit_intercept:
            return Xc
        return xp.concatenate([Xc, xp.ones((Xc.shape[0], 1), dtype=Xc.dtype)], axis=1)

    def _gram(self, params: Array, weights: RowWeightRule, *, exact: bool = False) -> Array:
        """``sum_i h_kj(i) a_i a_i^T`` for every block ``(k, j)``, over row chunks.

        ``weights(z, rows)`` gives a chunk's ``(k, j) -> h_kj`` (symmetric in
        ``k, j``); the blocks with ``j < k`` are the transposes of those above.
        ``exact`` computes the linear predictor from the chunk widened to
        float64 (inference: float32 products would cost p-values digits);
        the solvers' Hessians keep X's dtype.
        """
        xp = self.xp
        p, d = self.n_params, self.layout.n_cols
        H = xp.zeros((p, p), dtype=xp.float64)
        for rows in self._row_chunks():
            Xc = self.X[rows]
            Ac = self._design(Xc)
            h = weights(self._chunk_linear(params, Xc, exact=exact), rows)
            for k in range(self.n_outputs):
                for j in range(k, self.n_outputs):
                    block = self._weighted_gram(Ac, h(k, j))
                    H[k * d : (k + 1) * d, j * d : (j + 1) * d] += block
                    if j != k:
                        H[j * d : (j + 1) * d, k * d : (k + 1) * d] += block.T
        return H

    def _weighted_gram(self, A: Array, h: Array) -> Array:
        """``A^T diag(h) A`` of a chunk's design in float64 through one BLAS call."""
        Ah = A * h[:, None]
        return Ah.T @ A.astype(Ah.dtype, copy=False)

    def _residual_product(self, R: Array, A: Array) -> Array:
        """``R^T A`` in float64 for a chunk's residuals ``R`` (m, K) and design ``A``."""
        return R.T @ A.astype(self.xp.float64)

    def _hessian_weights(self, z: Array, rows: slice) -> PairWeights:
        """Curvature: ``s p (1 - p)`` (binary), ``s P_k (delta_kj - P_j)`` (multinomial)."""
        s = self.sample_weight[rows]
        if self.n_outputs == 1:
            h = self._curvature(z, s)
            return lambda k, j: h
        P = self._probabilities(z)
        return lambda k, j: s * P[:, k] * ((1.0 if j == k else 0.0) - P[:, j])

    def _meat_weights(self, z: Array, rows: slice) -> PairWeights:
        """Outer products of the residuals: ``s r^2`` (binary), ``s R_k R_j`` (multinomial)."""
        s = self.sample_weight[rows]
        R = self._raw_residual(z, rows)
        if self.n_outputs == 1:
            h = s * R * R
            return lambda k, j: h
        return lambda k, j: s * R[:, k] * R[:, j]

    # -- per-row quantities of a chunk ------------------------------------------
    def _probabilities(self, z: Array) -> Array:
        """``sigmoid(z)`` (m,) or the row-wise ``softmax(z)`` (m, K), stable for any finite z."""
        xp = self.xp
        if self.n_outputs == 1:
            e = xp.exp(-xp.abs(z))
            return xp.where(z >= 0, 1.0, e) / (1.0 + e)
        ez = xp.exp(z - z.max(axis=1, keepdims=True))
        return ez / ez.sum(axis=1, keepdims=True)

    def _row_losses(self, z: Array, rows: slice) -> Array:
        """Unweighted cross-entropy of each row of ``rows`` (stable for any finite z)."""
        xp = self.xp
        y = self.y[rows]
        if self.n_outputs == 1:
            return xp.maximum(z, 0.0) - y * z + xp.log1p(xp.exp(-xp.abs(z)))
        zmax = z.max(axis=1, keepdims=True)
        logsumexp = zmax[:, 0] + xp.log(xp.exp(z - zmax).sum(axis=1))
        return logsumexp - z[xp.arange(z.shape[0]), y]

    def _raw_residual(self, z: Array, rows: slice) -> Array:
        """Unweighted ``p - y`` (m,) or ``softmax(z) - onehot(y)`` (m, K) of the rows ``rows``.

        From the int32 labels (every subclass has them; the baseline's float
        and one-hot copies exist only in the baseline).
        """
        xp = self.xp
        y = self.y[rows]
        P = self._probabilities(z)
        if self.n_outputs == 1:
            return P - y
        P[xp.arange(P.shape[0]), y] -= 1.0
        return P

    def _check_groups(self, groups: Array, n_groups: int) -> Array:
        """``groups`` as int64 in ``xp``, checked: one index in ``[0, n_groups)`` per row."""
        xp = self.xp
        if int(n_groups) < 1:
            raise ValueError(f"n_groups must be at least 1, got {n_groups}")
        if groups.shape != (self.n_samples,):
            raise ValueError(
                f"groups must have one entry per row, shape ({self.n_samples},), got {groups.shape}"
            )
        if groups.dtype.kind not in "iu":
            raise TypeError(f"groups must hold integer group indices, got {groups.dtype}")
        groups = xp.asarray(groups, dtype=xp.int64)
        if self.n_samples and (int(groups.min()) < 0 or int(groups.max()) >= int(n_groups)):
            raise ValueError(f"groups must be indices in [0, {int(n_groups)})")
        return groups


#: A chunk's row weights of a Gram matrix: ``(k, j) -> h_kj`` of shape (chunk,).
PairWeights = Callable[[int, int], Array]
#: How a Gram matrix weights a chunk's rows: ``(z of the chunk, rows) -> PairWeights``.
RowWeightRule = Callable[[Array, slice], PairWeights]


class _Segments:
    """A chunk's rows sorted by group, and a fixed pairwise summation within each group.

    Parameters
    ----------
    xp : module
    labels : array of shape (m,), int64
        The group of each row.

    Attributes
    ----------
    order : array of shape (m,)
        Stable sort of the rows by group.
    labels : array of shape (n_present,)
        The distinct groups of the chunk, ascending.

    Notes
    -----
    :meth:`sums` adds rows ``r`` and ``r + step`` of each group (ranks within
    the group) for ``step = 1, 2, 4, ...``: a pairwise tree whose pairs depend
    on the labels alone. The result is therefore the same on every run, with
    any number of threads and on either array library (no atomics, no
    scatter-add), and as accurate as pairwise summation.
    """

    def __init__(self, xp: ModuleType, labels: Array) -> None:
        self.order = xp.argsort(labels, kind="stable")
        ordered = labels[self.order]
        m = ordered.shape[0]
        first = xp.ones(m, dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        self._starts = xp.flatnonzero(first)
        self.labels = ordered[self._starts]
        sizes = xp.diff(xp.concatenate([self._starts, xp.asarray([m], dtype=self._starts.dtype)]))
        group = xp.cumsum(first) - 1
        rank = xp.arange(m) - self._starts[group]
        size = sizes[group]
        self._pairs: list[tuple[Array, Array]] = []
        step, longest = 1, int(sizes.max())
        while step < longest:
            left = xp.flatnonzero((rank % (2 * step) == 0) & (rank + step < size))
            self._pairs.append((left, left + step))
            step *= 2

    def sums(self, V: Array) -> Array:
        """Per-group sums of the rows of ``V`` (in :attr:`order`), shape (n_present, ...).

        ``V`` is overwritten.
        """
        for left, right in self._pairs:
            V[left] += V[right]
        return V[self._starts]
