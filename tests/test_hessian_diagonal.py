"""``hessian_diagonal`` on every backend: the diagonal of the Hessian, never the Hessian.

The reference is a brute-force float64 sum over the rows of the curvature
weights times the squared design (``s_i p_i (1 - p_i) a_ij^2``, per class
``s_i P_ik (1 - P_ik) a_ij^2``), itself checked against the diagonal of the
baseline's Hessian and against finite differences of the gradient. Binary and
multinomial, with and without an intercept, float32 and float64 ``X``,
non-uniform weights; the in-memory backends, the CuPy backend's code (emulated
kernels, and on fake CuPy arrays), a chunked Dataset, Dask blocks and CSR data
on the sparse backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from gpulogreg import Dataset
from gpulogreg.backends import make_backend
from gpulogreg.backends.chunked import ChunkedBackend
from gpulogreg.backends.cupy_backend import CupyBackend
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.numpy_backend import NumpyBackend
from gpulogreg.backends.sparse_cupy import SparseCupyBackend
from gpulogreg.backends.sparse_numba import SparseNumbaBackend
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend
from gpulogreg.loss import LogisticObjective
from tests._helpers import make_classification

#: Rows of the test data, and the uneven row blocks of its Dask and Dataset forms.
ROWS = (700, 1300, 599)
N_ROWS = sum(ROWS)
N_FEATURES = 6
#: Normwise relative agreement with the float64 reference, per dtype of X
#: (float32: the linear predictor is computed in X's dtype, as the Hessian's).
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


class Problem:
    """Data, weights, parameters and the brute-force diagonal."""

    def __init__(self, dtype: Any, n_classes: int, fit_intercept: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        X, y = make_classification(N_ROWS, N_FEATURES, dtype=dtype, n_classes=n_classes, seed=seed)
        X[:, 1] *= 40.0  # columns on very different scales
        X[rng.random(X.shape) < 0.3] = 0.0  # zeros for the CSR form
        self.X, self.y = X, y.astype(np.int32)
        self.n_classes, self.fit_intercept = n_classes, fit_intercept
        self.w = rng.uniform(0.2, 3.0, N_ROWS)
        self.s = self.w / self.w.sum()
        self.K = 1 if n_classes == 2 else n_classes
        self.params = rng.normal(size=self.K * (N_FEATURES + int(fit_intercept))) * 0.2
        self.diagonal = brute_force_diagonal(X, self.s, self.params, self.K, fit_intercept)


def brute_force_diagonal(
    X: np.ndarray, s: np.ndarray, params: np.ndarray, K: int, fit_intercept: bool
) -> np.ndarray:
    """``sum_i s_i h_ik a_ij^2`` in float64, from the plain formulas."""
    A = X.astype(np.float64)
    if fit_intercept:
        A = np.concatenate([A, np.ones((A.shape[0], 1))], axis=1)
    Z = A @ params.reshape(K, -1).T
    if K == 1:
        P = 1.0 / (1.0 + np.exp(-Z))
    else:
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
    H = s[:, None] * P * (1.0 - P)  # (m, K)
    return (H.T @ A**2).ravel()


def rel_err(got: Any, ref: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


# -- the backends -------------------------------------------------------------------------
def _in_memory(cls: type) -> Callable[[Problem, Any], Any]:
    def build(pb: Problem, request: Any) -> Any:
        backend = cls(pb.X, pb.y, pb.s, n_classes=pb.n_classes, fit_intercept=pb.fit_intercept)
        backend.diagonal_chunk_bytes = 8 * N_FEATURES * 900  # several row chunks
        return backend

    return build


def _cupy_emulated(pb: Problem, request: Any) -> Any:
    """The CuPy backend's own code on NumPy arrays, its kernels emulated on the host."""
    gpu = CupyBackend(
        pb.X,
        pb.y,
        pb.s,
        n_classes=pb.n_classes,
        fit_intercept=pb.fit_intercept,
        kernels=request.getfixturevalue("emulated_kernels"),
    )
    gpu.diagonal_chunk_bytes = 8 * N_FEATURES * 900
    return gpu


def _chunked(pb: Problem, request: Any) -> Any:
    """A Dataset of uneven chunks, its weights normalised by the dataset itself."""
    bounds = zip(np.cumsum((0, *ROWS[:-1])), np.cumsum(ROWS), strict=True)
    ds = Dataset.from_chunks([(pb.X[a:b], pb.y[a:b], pb.w[a:b]) for a, b in bounds])
    return ChunkedBackend(ds, backend="numba", fit_intercept=pb.fit_intercept)


def _dask(pb: Problem, request: Any) -> Any:
    da = pytest.importorskip("dask.array")
    return make_backend(
        da.from_array(pb.X, chunks=(ROWS, N_FEATURES)),
        da.from_array(pb.y, chunks=(ROWS,)),
        pb.s,
        n_classes=pb.n_classes,
        fit_intercept=pb.fit_intercept,
    )


def _csr(cls: type) -> Callable[[Problem, Any], Any]:
    def build(pb: Problem, request: Any) -> Any:
        kw = {"n_classes": pb.n_classes, "fit_intercept": pb.fit_intercept}
        if cls is SparseCupyBackend:  # its code on scipy matrices, the kernels emulated
            kw["kernels"] = request.getfixturevalue("emulated_kernels")
        return cls(sp.csr_matrix(pb.X), pb.y, pb.s, **kw)

    return build


BACKENDS = {
    "numpy": _in_memory(NumpyBackend),
    "numba": _in_memory(NumbaBackend),
    "cupy": _cupy_emulated,
    "chunked": _chunked,
    "dask": _dask,
    "csr-numpy": _csr(SparseNumpyBackend),
    "csr-numba": _csr(SparseNumbaBackend),
    "csr-cupy": _csr(SparseCupyBackend),
}
CASES = [
    pytest.param(dtype, k, fi, id=f"{np.dtype(dtype).name}-K{k}-{'icpt' if fi else 'noicpt'}")
    for dtype in (np.float64, np.float32)
    for k in (2, 3)
    for fi in (True, False)
]


# -- the reference is right -------------------------------------------------------------
@pytest.mark.parametrize(("n_classes", "fit_intercept"), [(2, True), (3, True), (3, False)])
def test_the_reference_is_the_diagonal_of_the_hessian(n_classes: int, fit_intercept: bool) -> None:
    """The brute force equals diag(H) of the baseline and central differences of the gradient."""
    pb = Problem(np.float64, n_classes, fit_intercept, seed=1)
    backend = NumpyBackend(pb.X, pb.y, pb.s, n_classes=n_classes, fit_intercept=fit_intercept)
    assert rel_err(np.diag(backend.hessian(pb.params)), pb.diagonal) <= 1e-13
    step = 1e-5
    for j in range(pb.params.size):
        e = np.zeros_like(pb.params)
        e[j] = step
        fd = (backend.loss_grad(pb.params + e)[1][j] - backend.loss_grad(pb.params - e)[1][j]) / (
            2 * step
        )
        assert fd == pytest.approx(pb.diagonal[j], rel=1e-6)


# -- every backend agrees with it -------------------------------------------------------
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(("dtype", "n_classes", "fit_intercept"), CASES)
def test_hessian_diagonal_equals_the_reference(
    request: pytest.FixtureRequest, backend: str, dtype: Any, n_classes: int, fit_intercept: bool
) -> None:
    pb = Problem(dtype, n_classes, fit_intercept)
    b = BACKENDS[backend](pb, request)
    d = b.hessian_diagonal(b.xp.asarray(pb.params))
    assert d.dtype == np.float64
    assert d.shape == (b.n_params,)
    assert rel_err(d, pb.diagonal) <= RTOL[dtype]
    if backend not in ("chunked", "dask"):
        assert rel_err(d, np.diag(b.hessian(pb.params))) <= RTOL[dtype]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_objective_adds_the_l2_diagonal_to_the_coefficients_only(n_classes: int) -> None:
    pb = Problem(np.float64, n_classes, True)
    backend = NumbaBackend(pb.X, pb.y, pb.s, n_classes=n_classes)
    objective = LogisticObjective(backend, C=0.3, weight_sum=float(pb.w.sum()))
    d = objective.hessian_diagonal(pb.params)
    assert rel_err(d, np.diag(objective.hessian(pb.params))) <= 1e-12
    mask = backend.layout.penalty_mask(np)
    np.testing.assert_allclose(d - pb.diagonal, objective.l2 * mask, rtol=0, atol=1e-13 * d.max())
    assert objective.l2 > 0
    assert mask.min() == 0.0  # intercepts left unpenalised


def test_int64_csr_indices() -> None:
    """The CSR baseline's diagonal with 64-bit indices, as with 32-bit ones."""
    pb = Problem(np.float64, 3, True)
    X = sp.csr_matrix(pb.X)
    X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    b = SparseNumpyBackend(X, pb.y, pb.s, n_classes=3)
    assert rel_err(b.hessian_diagonal(pb.params), pb.diagonal) <= 1e-12
