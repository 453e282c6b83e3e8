"""The Numba CSR kernels and their backend against scipy, the dense backends and themselves.

References: :class:`SparseNumpyBackend` on the same values in float64 (scipy
products), the dense :class:`NumbaBackend` on ``X.toarray()``, finite
differences, and the backend itself under another thread count (bitwise).
Small data only; the kernels are compiled once per dtype pair (cache=True).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from gpulogreg import LogisticRegression
from gpulogreg.backends import _numba_sparse as ns
from gpulogreg.backends import get_backend_class, make_backend, sparse_numba
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.sparse_numba import SparseNumbaBackend
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend

#: Normwise relative agreement with the float64 references: the kernels widen
#: float32 values exactly and accumulate in float64, so both dtypes agree to
#: float64 rounding (the scipy baseline on float32 rounds w to float32 and is
#: compared in float64 instead).
RTOL = 1e-10
#: Agreement with a reference that rounds products to float32 (float32 rounding).
DENSE_FLOAT32_RTOL = 1e-6
#: Rows: four reduction chunks, the last one partial, ending in a partial block.
N_ROWS = 3 * ns.CHUNK_ROWS + 805
N_FEATURES = 40
#: A column no row touches, and one touched by explicit zeros only.
UNTOUCHED, ZEROS_ONLY = 5, 17
DTYPES = [np.float64, np.float32]
INDEX_DTYPES = [np.int32, np.int64]


def rel_err(got, ref) -> float:
    """``max |got - ref| / max |ref|`` (normwise, so near-zero entries don't dominate)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    return float(np.max(np.abs(got - ref))) / (scale if scale > 0 else 1.0)


def make_csr(dtype=np.float64, index_dtype=np.int32, seed=0, n_rows=N_ROWS) -> sp.csr_matrix:
    """Canonical CSR with empty rows, explicit zeros, an untouched column and uneven rows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 2 * 12, n_rows)  # 12 stored values per row on average
    lengths[rng.choice(n_rows, n_rows // 20, replace=False)] = 0  # empty rows
    lengths[7] = N_FEATURES - 1  # a full row (all but the untouched column)
    columns = [i for i in range(N_FEATURES) if i != UNTOUCHED]
    rows = [np.sort(rng.choice(columns, size=k, replace=False)) for k in lengths]
    indices = np.concatenate(rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = rng.standard_normal(indices.size)
    data[indices == 0] *= 3.0  # features on different scales
    data[::11] = 0.0  # explicit zeros
    data[indices == ZEROS_ONLY] = 0.0
    X = sp.csr_matrix((data.astype(dtype), indices, indptr), shape=(n_rows, N_FEATURES))
    # Set after construction: scipy's constructor would take int64 indices down to int32.
    X.indices, X.indptr = indices.astype(index_dtype), indptr.astype(index_dtype)
    assert X.has_canonical_format
    assert X.indices.dtype == index_dtype
    return X


def make_problem(dtype, index_dtype, n_classes, fit_intercept, seed=0, n_rows=N_ROWS):
    X = make_csr(dtype, index_dtype, seed, n_rows)
    rng = np.random.default_rng(seed + 1)
    y = rng.integers(0, n_classes, X.shape[0]).astype(np.int32)
    s = rng.random(X.shape[0]) * 2.0
    s[::13] = 0.0  # zero-weight rows (a masked fold)
    s /= s.sum()
    fast = SparseNumbaBackend(X, y, s, n_classes=n_classes, fit_intercept=fit_intercept)
    params = rng.standard_normal(fast.n_params) * 0.7
    v = rng.standard_normal(fast.n_params)
    return X, y, s, fast, params, v


CASES = [
    pytest.param(dt, it, k, fi, id=f"{dt.__name__}-{it.__name__}-K{k}-{'icpt' if fi else 'noicpt'}")
    for dt in DTYPES
    for it in INDEX_DTYPES
    for k in (2, 3)
    for fi in (True, False)
]


@pytest.mark.parametrize(("dtype", "index_dtype", "n_classes", "fit_intercept"), CASES)
def test_matches_the_scipy_baseline_and_the_dense_backend(
    dtype, index_dtype, n_classes, fit_intercept
):
    X, y, s, fast, params, v = make_problem(dtype, index_dtype, n_classes, fit_intercept)
    assert fast.lanes.shape[0] - 1 >= 2  # the scatters really go through several lanes
    kw = {"n_classes": n_classes, "fit_intercept": fit_intercept}
    scipy_ref = SparseNumpyBackend(X.astype(np.float64), y, s, **kw)
    dense = NumbaBackend(X.toarray(), y, s, **kw)
    n_cols = fast.layout.n_cols

    loss, grad = fast.loss_grad(params)
    assert isinstance(loss, float)
    assert grad.dtype == np.float64
    assert grad.shape == (fast.n_params,)
    # The dense backend keeps float32 products in its multinomial Hessian: float32 rounding.
    dense_tol = RTOL if dtype == np.float64 else DENSE_FLOAT32_RTOL
    for ref, tol in ((scipy_ref, RTOL), (dense, dense_tol)):
        loss_ref, grad_ref = ref.loss_grad(params)
        assert rel_err(loss, loss_ref) <= RTOL
        assert rel_err(grad, grad_ref) <= RTOL
        assert rel_err(fast.loss(params), loss_ref) <= RTOL
        assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= RTOL
        assert rel_err(fast.gram_matvec(v[:n_cols]), ref.gram_matvec(v[:n_cols])) <= RTOL
        assert rel_err(fast.hessian(params), ref.hessian(params)) <= tol
        assert rel_err(fast.meat(params), ref.meat(params)) <= tol
    assert rel_err(fast.hessian_diagonal(params), scipy_ref.hessian_diagonal(params)) <= RTOL
    assert rel_err(fast.hessian_diagonal(params), np.diag(dense.hessian(params))) <= dense_tol
    assert rel_err(fast.decision(params, X), dense.decision(params, X.toarray())) <= RTOL

    H, M = fast.hessian(params), fast.meat(params)
    np.testing.assert_array_equal(H, H.T)  # exactly symmetric: the lower half is a mirror
    np.testing.assert_array_equal(M, M.T)
    untouched = [k * n_cols + UNTOUCHED for k in range(fast.n_outputs)]
    assert not H[untouched].any()
    assert not grad[untouched].any()

    info, info_ref = fast.information(params), scipy_ref.information(params)
    assert rel_err(info.hessian, info_ref.hessian) <= RTOL
    assert rel_err(info.gradient, info_ref.gradient) <= RTOL
    assert rel_err(info.loss, info_ref.loss) <= RTOL
    assert info.certain == pytest.approx(info_ref.certain, abs=1e-15)
    np.testing.assert_array_equal(info.hessian, H)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_finite_difference_gradient_and_hessian_vector_product(n_classes, index_dtype):
    *_, fast, params, v = make_problem(np.float64, index_dtype, n_classes, True, seed=1)
    _, grad = fast.loss_grad(params)
    step = 1e-6
    for j in range(fast.n_params):
        e = np.zeros_like(params)
        e[j] = step
        fd = (fast.loss(params + e) - fast.loss(params - e)) / (2 * step)
        assert fd == pytest.approx(grad[j], rel=1e-6, abs=1e-9)
    fd_hvp = (fast.loss_grad(params + step * v)[1] - fast.loss_grad(params - step * v)[1]) / (
        2 * step
    )
    assert rel_err(fast.hvp(params, v), fd_hvp) <= 1e-6


def _everything(fast, X, params, v):
    """Every kernel's result at (params, v), as a list of arrays."""
    n_cols = fast.layout.n_cols
    info = fast.information(params)
    return [
        *fast.loss_grad(params),
        fast.loss(params),
        fast.hvp(params, v),
        fast.gram_matvec(v[:n_cols]),
        fast.hessian_diagonal(params),
        fast.hessian(params),
        fast.meat(params),
        info.hessian,
        info.gradient,
        info.loss,
        info.certain,
        fast.decision(params, X),
    ]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_bitwise_identical_across_thread_counts(dtype, n_classes):
    X, *_, fast, params, v = make_problem(dtype, np.int32, n_classes, True, seed=2)
    assert X.nnz >= sparse_numba.SERIAL_MAX_NNZ  # the passes are parallel
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _everything(fast, X, params, v)
        numba.set_num_threads(2)
        two = _everything(fast, X, params, v)
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(one, two, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_the_gram_matrix_does_not_depend_on_the_column_parts():
    X, _, s, *_ = make_problem(np.float64, np.int32, 2, True)
    h = s * np.linspace(0.5, 2.0, X.shape[0])
    work = ns.column_work(X.indices, X.indptr, N_FEATURES, True)
    assert work.sum() == sum(
        (k * (k + 1)) // 2 + k + 1 for k in np.diff(X.indptr)
    )  # pairs j1 <= j2, the intercept column of each entry, the intercept entry
    one = ns.binary_gram(X.data, X.indices, X.indptr, h, N_FEATURES, True, ns.column_parts(work, 1))
    for parts in (3, 7, 64):
        bounds = ns.column_parts(work, parts)
        assert bounds[0] == 0
        assert bounds[-1] == N_FEATURES + 1
        assert np.all(np.diff(bounds) > 0)
        H = ns.binary_gram(X.data, X.indices, X.indptr, h, N_FEATURES, True, bounds)
        assert H.tobytes() == one.tobytes()


# --------------------------------------------------------------------------- lanes
def test_lanes_follow_the_data_not_the_threads():
    # Narrow data: as many lanes as the chunks allow, up to LANE_MAX.
    assert ns.n_lanes(10**6, 10**8, 100) == ns.LANE_MAX
    assert ns.n_lanes(3 * ns.CHUNK_ROWS, 10**8, 100) == 2  # a power of two
    assert ns.n_lanes(4 * ns.CHUNK_ROWS, 10**8, 100) == 4
    # Few stored values: one lane per LANE_MIN_NNZ.
    assert ns.n_lanes(10**6, 3 * ns.LANE_MIN_NNZ, 10) == 2
    assert ns.n_lanes(10**6, ns.LANE_MIN_NNZ - 1, 10) == 1
    # Wide data: at least LANE_NNZ_PER_COLUMN stored values per lane and entry
    # (the CTR-like benchmark set: 2 lanes).
    assert ns.n_lanes(300_000, 9_000_000, 2**20) == 2
    assert ns.n_lanes(300_000, 3 * ns.LANE_NNZ_PER_COLUMN * 10**5, 10**5) == 2
    # The buffers' memory: LANE_BYTES in all (slots of 3 float64), one lane whatever the width.
    width = ns.LANE_BYTES // (3 * 8) // 3
    assert ns.n_lanes(10**7, 10**10, width) == 2
    assert ns.n_lanes(10**7, 10**10, 10**9) == 1


def test_lane_bounds_are_whole_chunks_balanced_by_work():
    rng = np.random.default_rng(0)
    m = 20 * ns.CHUNK_ROWS + 100
    lengths = rng.integers(0, 40, m)
    lengths[: 5 * ns.CHUNK_ROWS] = 200  # heavy first rows: their lanes get fewer chunks
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    bounds = ns.lane_bounds(indptr, 10)
    lanes = ns.n_lanes(m, int(indptr[-1]), 10)
    assert bounds.shape == (lanes + 1,)
    assert bounds[0] == 0
    assert bounds[-1] == m
    assert np.all(bounds[:-1] % ns.CHUNK_ROWS == 0)
    assert np.all(np.diff(bounds) > 0)
    cost = indptr[bounds[1:]] - indptr[bounds[:-1]] + ns.ROW_COST_NNZ * np.diff(bounds)
    heaviest_chunk = 200 * ns.CHUNK_ROWS + ns.ROW_COST_NNZ * ns.CHUNK_ROWS
    assert cost.max() - cost.min() <= 2 * heaviest_chunk
    # One chunk only: one lane.
    assert ns.lane_bounds(indptr[: ns.CHUNK_ROWS // 2 + 1], 10).tolist() == [0, ns.CHUNK_ROWS // 2]


# --------------------------------------------------------------------------- backend
def test_the_registry_and_auto_pick_it_for_csr_on_the_cpu():
    assert get_backend_class("numba", sparse=True) is SparseNumbaBackend
    X = make_csr()
    y = (np.arange(X.shape[0]) % 2).astype(np.int32)
    s = np.full(X.shape[0], 1.0 / X.shape[0])
    backend = make_backend(X, y, s, backend="auto", device="cpu")
    assert isinstance(backend, SparseNumbaBackend)
    assert backend.format == "csr"
    assert backend.name == "numba"


def test_x_is_held_as_given():
    X, *_, fast, _, _ = make_problem(np.float32, np.int64, 2, True)
    assert fast.X is X
    data, indices, indptr = fast._csr
    assert data is X.data
    assert indices is X.indices
    assert indptr is X.indptr


def test_refuses_what_the_kernels_do_not_take():
    X = make_csr()
    y = np.zeros(X.shape[0], dtype=np.int32)
    s = np.full(X.shape[0], 1.0 / X.shape[0])
    for bad in (X.toarray(), X.tocsc(), X.astype(np.int64)):
        with pytest.raises(TypeError, match=r"scipy\.sparse CSR"):
            SparseNumbaBackend(bad, y, s)


def test_decision_takes_any_csr_and_other_inputs():
    X, y, s, fast, params, _ = make_problem(np.float64, np.int32, 3, True)
    dense = NumbaBackend(X.toarray(), y, s, n_classes=3)
    ref = dense.decision(params, X.toarray())
    # Unsorted and duplicated entries (non-canonical CSR) give the same sums:
    # each row holds its entries backwards, then again forwards, at half value.
    parts = [
        (
            np.concatenate([X.indices[a:b][::-1], X.indices[a:b]]),
            np.concatenate([X.data[a:b][::-1], X.data[a:b]]) / 2,
        )
        for a, b in zip(X.indptr[:-1], X.indptr[1:], strict=True)
    ]
    messy = sp.csr_matrix(
        (
            np.concatenate([d for _, d in parts]),
            np.concatenate([i for i, _ in parts]),
            2 * X.indptr,
        ),
        shape=X.shape,
    )
    assert not messy.has_sorted_indices
    assert rel_err(fast.decision(params, messy), ref) <= RTOL
    # Other formats go through the baseline.
    assert rel_err(fast.decision(params, X.tocsc()), ref) <= RTOL


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_columns_renumbered_by_popularity_give_the_same_results(
    monkeypatch, n_classes, fit_intercept
):
    # Wide data goes through ColumnOrder; here every width does.
    monkeypatch.setattr(sparse_numba, "COMPACT_MIN_FEATURES", 1)
    X, y, s, fast, params, v = make_problem(np.float32, np.int32, n_classes, fit_intercept)
    order = fast._order
    assert order is not None
    assert order.width == N_FEATURES - 1  # the untouched column is left out
    counts = np.bincount(X.indices, minlength=N_FEATURES)[order.columns]
    assert np.all(np.diff(counts) <= 0)  # most frequent first
    np.testing.assert_array_equal(order.columns[order.indices], X.indices)
    ref = SparseNumpyBackend(
        X.astype(np.float64), y, s, n_classes=n_classes, fit_intercept=fit_intercept
    )
    n_cols = fast.layout.n_cols
    loss, grad = fast.loss_grad(params)
    loss_ref, grad_ref = ref.loss_grad(params)
    assert rel_err(loss, loss_ref) <= RTOL
    assert rel_err(grad, grad_ref) <= RTOL
    assert rel_err(fast.loss(params), loss_ref) <= RTOL
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= RTOL
    assert rel_err(fast.gram_matvec(v[:n_cols]), ref.gram_matvec(v[:n_cols])) <= RTOL
    assert rel_err(fast.hessian_diagonal(params), ref.hessian_diagonal(params)) <= RTOL
    assert rel_err(fast.hessian(params), ref.hessian(params)) <= RTOL
    assert rel_err(fast.decision(params, X), ref.decision(params, X.astype(np.float64))) <= RTOL
    untouched = [k * n_cols + UNTOUCHED for k in range(fast.n_outputs)]
    assert not grad[untouched].any()
    assert not fast.hvp(params, v)[untouched].any()


def test_the_kept_curvature_follows_the_parameters():
    X, y, s, fast, params, v = make_problem(np.float64, np.int32, 2, True)
    ref = SparseNumpyBackend(X, y, s)
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= RTOL
    params *= 0.5  # the same array, changed in place: the weights must be recomputed
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= RTOL
    assert rel_err(fast.hvp(params, 2.0 * v), ref.hvp(params, 2.0 * v)) <= RTOL


def test_the_decisions_kept_by_loss_grad_serve_only_their_parameters():
    X, y, s, fast, params, v = make_problem(np.float64, np.int32, 2, True)
    ref = SparseNumpyBackend(X, y, s)
    fast.loss_grad(params)  # keeps X @ w + b for the curvature weights at params
    assert rel_err(fast.hessian_diagonal(params), ref.hessian_diagonal(params)) <= RTOL
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= RTOL
    fast.loss_grad(params)
    params *= 0.5  # changed in place after loss_grad: its decisions no longer apply
    assert rel_err(fast.hessian_diagonal(params), ref.hessian_diagonal(params)) <= RTOL
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= RTOL


def test_a_wide_fit_equals_the_baseline_fit():
    rng = np.random.default_rng(3)
    n = 2 * sparse_numba.COMPACT_MIN_FEATURES
    X = sp.random(3000, n, density=20 / n, format="csr", random_state=rng)
    y = (X @ rng.standard_normal(n) + 0.3 * rng.standard_normal(3000) > 0).astype(int)
    fits = [
        LogisticRegression(backend=b, solver="newton-cg", C=10.0, tol=1e-10).fit(X, y)
        for b in ("numba", "numpy")
    ]
    assert fits[0].n_features_in_ == n
    np.testing.assert_allclose(fits[0].coef_, fits[1].coef_, rtol=0, atol=1e-7)
    np.testing.assert_allclose(fits[0].intercept_, fits[1].intercept_, rtol=0, atol=1e-7)


def test_above_the_gram_bound_the_baseline_builds_the_matrices(monkeypatch):
    X, y, s, fast, params, _ = make_problem(np.float64, np.int32, 2, True)
    ref = SparseNumpyBackend(X, y, s)
    monkeypatch.setattr(sparse_numba, "GRAM_MAX_PARAMS", fast.n_params - 1)
    assert rel_err(fast.hessian(params), ref.hessian(params)) <= RTOL
    assert rel_err(fast.meat(params), ref.meat(params)) <= RTOL
    assert rel_err(fast.information(params).hessian, ref.hessian(params)) <= RTOL


@pytest.mark.parametrize("n_classes", [2, 3])
def test_extreme_decision_values_stay_finite(n_classes):
    X, y, s, fast, params, v = make_problem(np.float64, np.int32, n_classes, True)
    ref = SparseNumpyBackend(X, y, s, n_classes=n_classes)
    big = params * 2000.0  # |z| up to about 1e5
    loss, grad = fast.loss_grad(big)
    loss_ref, grad_ref = ref.loss_grad(big)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))
    assert rel_err(loss, loss_ref) <= RTOL
    assert rel_err(grad, grad_ref) <= RTOL
    for out in (fast.hvp(big, v), fast.hessian_diagonal(big), fast.hessian(big)):
        assert np.all(np.isfinite(out))


def test_a_fit_on_csr_equals_the_baseline_fit():
    X = make_csr(seed=4)
    rng = np.random.default_rng(5)
    y = (X @ rng.standard_normal(N_FEATURES) + 0.3 * rng.standard_normal(X.shape[0]) > 0).astype(
        int
    )
    ours = LogisticRegression(backend="numba", C=0.5, tol=1e-10).fit(X, y)
    base = LogisticRegression(backend="numpy", C=0.5, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(ours.coef_, base.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.intercept_, base.intercept_, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_column_order_counts_and_renumbers_in_the_index_dtype(index_dtype):
    indices = np.array([5, 2, 9, 2, 5, 2, 0, 9, 7], dtype=index_dtype)
    order = sparse_numba.ColumnOrder(indices, 12)
    # counts 2:3, 5:2, 9:2, 0:1, 7:1; ties by column; columns 1, 3, 4, 6, 8, 10, 11 unused
    np.testing.assert_array_equal(order.columns, [2, 5, 9, 0, 7])
    assert order.indices.dtype == index_dtype
    np.testing.assert_array_equal(order.indices, [1, 0, 2, 0, 1, 0, 3, 2, 4])
    np.testing.assert_array_equal(order.columns[order.indices], indices)
    many = np.random.default_rng(0).integers(0, 1000, 3 * ns.RENUMBER_BLOCK).astype(index_dtype)
    order = sparse_numba.ColumnOrder(many, 1000)
    np.testing.assert_array_equal(order.columns[order.indices], many)
    np.testing.assert_array_equal(ns.column_counts(many, 1000), np.bincount(many, minlength=1000))
