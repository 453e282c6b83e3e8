"""The sandwich covariance's sums on every backend: ``meat`` and ``cluster_scores``.

Both are checked against a brute-force reference built from explicit per-row
gradients ``g_i`` (themselves checked against finite differences of a row's
loss and against the backends' gradient), for binary and multinomial models,
with and without an intercept, float32 and float64 X and non-uniform weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gpulogreg import Dataset
from gpulogreg.backends import numpy_backend
from gpulogreg.backends.chunked import ChunkedBackend
from gpulogreg.backends.cupy_backend import CupyBackend
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.numpy_backend import NumpyBackend
from tests._cuda_emulator import EmulatedKernels, build_emulator, find_cxx
from tests._helpers import make_classification

#: Rows of the test data, and the uneven row blocks of its Dask and Dataset forms.
ROWS = (700, 1300, 599)
N_ROWS = sum(ROWS)
N_FEATURES = 5
#: Groups of the cluster scores: uneven sizes, one as big as a third of the
#: data (more than one row chunk), the last one empty.
N_GROUPS = 12
#: Normwise relative agreement with the float64 reference, per dtype of X.
RTOL = {np.float64: 1e-11, np.float32: 1e-5}


def rel_err(got: Any, ref: np.ndarray) -> float:
    """``max |got - ref| / max |ref|``."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


# -- the reference --------------------------------------------------------------------
def row_gradients(
    X: np.ndarray, y: np.ndarray, params: np.ndarray, n_classes: int, fit_intercept: bool
) -> np.ndarray:
    """``g_i`` for every row, one row at a time: ``(p_i - onehot(y_i)) outer a_i``, C order.

    ``a_i = [x_i, 1]`` (``x_i`` without an intercept) in float64; the
    parameters are the flat ``(n_outputs, n_cols)`` layout (binary: one output
    whose target is ``y_i`` itself).
    """
    X = X.astype(np.float64)
    n_outputs = 1 if n_classes == 2 else n_classes
    W = params.reshape(n_outputs, -1)
    G = np.empty((X.shape[0], params.size))
    for i, x in enumerate(X):
        a = np.append(x, 1.0) if fit_intercept else x
        z = W @ a
        if n_outputs == 1:
            r = 1.0 / (1.0 + np.exp(-z)) - y[i]
        else:
            p = np.exp(z - z.max())
            r = p / p.sum() - np.eye(n_outputs)[y[i]]
        G[i] = np.outer(r, a).ravel()
    return G


class Problem:
    """Data, parameters, groups and the brute-force meat and cluster scores."""

    def __init__(self, dtype: Any, n_classes: int, fit_intercept: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        X, y = make_classification(N_ROWS, N_FEATURES, dtype=dtype, n_classes=n_classes, seed=seed)
        self.X, self.y = X, y.astype(np.int32)
        self.n_classes, self.fit_intercept = n_classes, fit_intercept
        self.w = rng.uniform(0.2, 3.0, N_ROWS)  # frequency-like weights
        self.s = self.w / self.w.sum()
        n_params = (1 if n_classes == 2 else n_classes) * (N_FEATURES + int(fit_intercept))
        self.params = rng.normal(size=n_params) * 0.5  # not optimal: residuals of all sizes
        sizes = np.r_[1 / 3, np.full(N_GROUPS - 2, (2 / 3) / (N_GROUPS - 2)), 0.0]
        self.groups = rng.choice(N_GROUPS, size=N_ROWS, p=sizes / sizes.sum()).astype(np.int64)
        G = row_gradients(X, self.y, self.params, n_classes, fit_intercept)
        self.G = G
        self.meat = G.T @ (self.s[:, None] * G)
        self.scores = np.zeros((N_GROUPS, n_params))
        np.add.at(self.scores, self.groups, self.s[:, None] * G)


# -- the backends -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> EmulatedKernels:
    if find_cxx() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) found")
    return EmulatedKernels(build_emulator(tmp_path_factory.mktemp("emulator")))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row chunks of 512 rows: the chunked sums cross chunk and group boundaries."""
    monkeypatch.setattr(numpy_backend, "HESSIAN_CHUNK_ROWS", 512)


def _in_memory(cls: type) -> Callable[[Problem, Any], Any]:
    def build(pb: Problem, request: Any) -> Any:
        return cls(pb.X, pb.y, pb.s, n_classes=pb.n_classes, fit_intercept=pb.fit_intercept)

    return build


def _cupy_emulated(pb: Problem, request: Any) -> Any:
    """The CuPy backend's own code on NumPy arrays, with the kernels emulated on the host."""
    kernels = request.getfixturevalue("kernels")
    gpu = CupyBackend(
        pb.X, pb.y, pb.s, n_classes=pb.n_classes, fit_intercept=pb.fit_intercept, kernels=kernels
    )
    gpu.hessian_chunk_bytes = 8 * (N_FEATURES + 1) * 700  # several binary chunks
    return gpu


def _chunked(pb: Problem, request: Any) -> Any:
    """A Dataset of uneven chunks, its weights normalised by the dataset itself."""
    ds = Dataset.from_chunks(
        [
            (pb.X[a:b], pb.y[a:b], pb.w[a:b])
            for a, b in zip(np.cumsum((0, *ROWS[:-1])), np.cumsum(ROWS), strict=True)
        ]
    )
    return ChunkedBackend(ds, backend="numba", fit_intercept=pb.fit_intercept)


def _dask(pb: Problem, request: Any) -> Any:
    da = pytest.importorskip("dask.array")
    from gpulogreg.backends import make_backend

    return make_backend(
        da.from_array(pb.X, chunks=(ROWS, N_FEATURES)),
        da.from_array(pb.y, chunks=(ROWS,)),
        pb.s,
        n_classes=pb.n_classes,
        fit_intercept=pb.fit_intercept,
    )


BACKENDS = {
    "numpy": _in_memory(NumpyBackend),
    "numba": _in_memory(NumbaBackend),
    "cupy": _cupy_emulated,
    "chunked": _chunked,
    "dask": _dask,
}
CASES = [
    pytest.param(dtype, k, fi, id=f"{np.dtype(dtype).name}-K{k}-{'icpt' if fi else 'noicpt'}")
    for dtype in (np.float64, np.float32)
    for k in (2, 3)
    for fi in (True, False)
]


# -- the reference is right -------------------------------------------------------------
@pytest.mark.parametrize(("n_classes", "fit_intercept"), [(2, True), (2, False), (3, True)])
def test_row_gradients_are_the_derivatives_of_each_rows_loss(
    n_classes: int, fit_intercept: bool
) -> None:
    """Central differences of one row's loss (a backend on that row alone, weight 1) give g_i."""
    pb = Problem(np.float64, n_classes, fit_intercept, seed=1)
    step = 1e-6
    for i in (0, 17, N_ROWS - 1):
        row = NumpyBackend(
            pb.X[i : i + 1],
            pb.y[i : i + 1],
            np.ones(1),
            n_classes=n_classes,
            fit_intercept=fit_intercept,
        )
        for j in range(pb.params.size):
            e = np.zeros_like(pb.params)
            e[j] = step
            fd = (row.loss(pb.params + e) - row.loss(pb.params - e)) / (2 * step)
            assert fd == pytest.approx(pb.G[i, j], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(("n_classes", "fit_intercept"), [(2, True), (3, False)])
def test_weighted_row_gradients_sum_to_the_gradient(n_classes: int, fit_intercept: bool) -> None:
    pb = Problem(np.float64, n_classes, fit_intercept, seed=2)
    backend = NumpyBackend(pb.X, pb.y, pb.s, n_classes=n_classes, fit_intercept=fit_intercept)
    _, grad = backend.loss_grad(pb.params)
    assert rel_err(grad, pb.G.T @ pb.s) <= 1e-13
    # and so do the cluster scores over all groups
    assert rel_err(pb.scores.sum(axis=0), pb.G.T @ pb.s) <= 1e-13


# -- every backend agrees with it -------------------------------------------------------
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(("dtype", "n_classes", "fit_intercept"), CASES)
def test_meat_and_cluster_scores_equal_the_reference(
    request: pytest.FixtureRequest, backend: str, dtype: Any, n_classes: int, fit_intercept: bool
) -> None:
    pb = Problem(dtype, n_classes, fit_intercept)
    b = BACKENDS[backend](pb, request)
    tol = RTOL[dtype]
    M = b.meat(pb.params)
    assert M.dtype == np.float64
    assert rel_err(M, pb.meat) <= tol
    assert rel_err(M, M.T) <= 1e-14
    S = b.cluster_scores(pb.params, pb.groups, N_GROUPS)
    assert S.dtype == np.float64
    assert rel_err(S, pb.scores) <= tol
    np.testing.assert_array_equal(S[-1], 0.0)  # the empty group
    # Reproducible bit for bit.
    np.testing.assert_array_equal(b.meat(pb.params), M)
    np.testing.assert_array_equal(b.cluster_scores(pb.params, pb.groups, N_GROUPS), S)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(("dtype", "n_classes", "fit_intercept"), CASES)
def test_information_is_the_hessian_loss_gradient_and_certain_weight(
    request: pytest.FixtureRequest, backend: str, dtype: Any, n_classes: int, fit_intercept: bool
) -> None:
    # One pass where a backend fuses them (Numba binary, sums of parts), the
    # same numbers as the methods apart (the Hessian from a float64 linear
    # predictor: float32 data agree to their precision).
    pb = Problem(dtype, n_classes, fit_intercept)
    b = BACKENDS[backend](pb, request)
    info = b.information(pb.params)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(_host(info.hessian), _host(b.hessian(pb.params)), rtol=tol)
    loss, grad = b.loss_grad(pb.params)
    assert info.loss == pytest.approx(float(loss), rel=tol)
    np.testing.assert_allclose(_host(info.gradient), _host(grad), rtol=tol, atol=1e-12)
    assert info.certain == 0.0  # the problem's parameters fit no row with certainty


def test_rows_fitted_with_certainty_are_weighed() -> None:
    from gpulogreg.backends.numba_backend import NumbaBackend
    from gpulogreg.backends.numpy_backend import NumpyBackend

    X = np.asarray([[30.0], [-30.0], [0.1], [-0.2]])
    y = np.asarray([1, 0, 1, 1], dtype=np.int32)
    s = np.asarray([0.1, 0.2, 0.3, 0.4])
    for cls in (NumpyBackend, NumbaBackend):
        info = cls(X, y, s).information(np.asarray([1.0, 0.0]))
        assert info.certain == pytest.approx(0.3), cls  # the first two rows: |z| = 30


def _host(a: Any) -> np.ndarray:
    return np.asarray(a.get() if hasattr(a, "get") else a)


def test_cluster_scores_of_one_group_per_row_give_the_meat() -> None:
    """One group per row: ``sum_c S_c S_c^T / s_c`` is the meat (``s_c`` the row's weight)."""
    pb = Problem(np.float64, 3, True, seed=3)
    b = NumbaBackend(pb.X, pb.y, pb.s, n_classes=3)
    S = b.cluster_scores(pb.params, np.arange(N_ROWS), N_ROWS)
    assert rel_err((S / pb.s[:, None]).T @ S, b.meat(pb.params)) <= 1e-12


# -- what the methods refuse ----------------------------------------------------------------
def test_groups_are_checked() -> None:
    pb = Problem(np.float64, 2, True)
    b = NumpyBackend(pb.X, pb.y, pb.s)
    with pytest.raises(ValueError, match="one entry per row"):
        b.cluster_scores(pb.params, pb.groups[:-1], N_GROUPS)
    with pytest.raises(TypeError, match="integer group indices"):
        b.cluster_scores(pb.params, pb.groups.astype(np.float64), N_GROUPS)
    with pytest.raises(ValueError, match=r"indices in \[0, 10\)"):
        b.cluster_scores(pb.params, pb.groups, N_GROUPS - 2)  # group 10 has rows
    negative = pb.groups.copy()
    negative[5] = -1
    with pytest.raises(ValueError, match="indices in"):
        b.cluster_scores(pb.params, negative, N_GROUPS)
    with pytest.raises(ValueError, match="n_groups must be at least 1"):
        b.cluster_scores(pb.params, pb.groups, 0)


@pytest.mark.parametrize("backend", ["chunked", "dask"])
def test_parts_need_one_group_per_row_in_memory(
    request: pytest.FixtureRequest, backend: str
) -> None:
    pb = Problem(np.float64, 2, True)
    b = BACKENDS[backend](pb, request)
    for groups in (pb.groups[:-1], list(pb.groups)):
        with pytest.raises(ValueError, match="cluster scores need the groups in memory"):
            b.cluster_scores(pb.params, groups, N_GROUPS)


def test_a_dataset_that_changed_is_refused() -> None:
    """Groups are aligned with the rows the scan counted; a dataset now longer is an error."""
    pb = Problem(np.float64, 2, True)
    chunks = [(pb.X[:1000], pb.y[:1000], pb.w[:1000]), (pb.X[1000:], pb.y[1000:], pb.w[1000:])]
    b = ChunkedBackend(Dataset.from_chunks(chunks), backend="numpy")
    chunks.append((pb.X[:10], pb.y[:10], pb.w[:10]))
    with pytest.raises(ValueError, match="one entry per row"):
        b.cluster_scores(pb.params, pb.groups, N_GROUPS)
    chunks[1:] = [(pb.X[1000:1500], pb.y[1000:1500], pb.w[1000:1500])]
    with pytest.raises(ValueError, match="the data changed"):
        b.cluster_scores(pb.params, pb.groups, N_GROUPS)


# -- on a real GPU ----------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "n_classes", "fit_intercept"), CASES)
def test_cupy_backend_on_the_gpu(dtype: Any, n_classes: int, fit_intercept: bool) -> None:
    cupy = pytest.importorskip("cupy")
    pb = Problem(dtype, n_classes, fit_intercept)
    gpu = CupyBackend(
        *(cupy.asarray(a) for a in (pb.X, pb.y, pb.s)),
        n_classes=n_classes,
        fit_intercept=fit_intercept,
    )
    params, groups = cupy.asarray(pb.params), cupy.asarray(pb.groups)
    M = gpu.meat(params)
    S = gpu.cluster_scores(params, groups, N_GROUPS)
    assert isinstance(M, cupy.ndarray)
    assert isinstance(S, cupy.ndarray)
    assert rel_err(M.get(), pb.meat) <= RTOL[dtype]
    assert rel_err(S.get(), pb.scores) <= RTOL[dtype]
    cupy.testing.assert_array_equal(gpu.meat(params), M)
    cupy.testing.assert_array_equal(gpu.cluster_scores(params, groups, N_GROUPS), S)
