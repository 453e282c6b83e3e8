"""Sparse input: the data layer's one conversion to canonical CSR, and the scipy baseline backend.

References: the dense baseline on ``X.toarray()`` (the same formulas, so agreement to
rounding), scikit-learn on the same CSR, and errors that name the row and column.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from gpulogreg import LogisticRegression, loss_and_gradient
from gpulogreg.backends import get_backend_class
from gpulogreg.backends.numpy_backend import NumpyBackend
from gpulogreg.backends.sparse_numpy import SparseNumpyBackend
from gpulogreg.data import check_X
from gpulogreg.data.sparse import INT32_MAX, check_sparse, index_dtype


def _csr(m: int = 600, n: int = 15, density: float = 0.2, seed: int = 0, dtype=np.float64):
    return sp.random(m, n, density=density, format="csr", random_state=seed, dtype=dtype)


def _labels(X, seed: int = 1, n_classes: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if n_classes == 2:
        z = X @ rng.normal(size=X.shape[1]) + 0.5 * rng.normal(size=X.shape[0])
        return (z > np.median(z)).astype(np.int32)
    return rng.integers(0, n_classes, X.shape[0]).astype(np.int32)


# --------------------------------------------------------------------------- data layer
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr"])
def test_every_format_becomes_csr_with_the_same_values(fmt: str) -> None:
    X = _csr()
    out, names = check_X(X.asformat(fmt), accept_sparse=True)
    assert out.format == "csr"
    assert names is None
    assert out.has_canonical_format
    np.testing.assert_array_equal(out.toarray(), X.toarray())


def test_a_canonical_csr_is_taken_as_it_is() -> None:
    X = _csr()
    out, _ = check_X(X, accept_sparse=True)
    assert out is X


@pytest.mark.parametrize("kind", ["csr_matrix", "csr_array"])
def test_the_kind_of_the_input_is_kept(kind: str) -> None:
    X = getattr(sp, kind)(_csr().tocoo())
    out, _ = check_X(X.tocsc(), accept_sparse=True)
    assert type(out) is type(X)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int64, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_values_keep_float32_or_float64_and_others_become_float64(given, expected) -> None:
    X = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=given))
    out, _ = check_X(X, accept_sparse=True)
    assert out.dtype == expected


def test_dtype_argument_converts_the_values() -> None:
    out, _ = check_X(_csr(), accept_sparse=True, dtype=np.float32)
    assert out.dtype == np.float32


def test_unsorted_and_duplicated_indices_are_sorted_and_summed_once_on_a_copy() -> None:
    data = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    indices = np.array([2, 0, 2, 1, 1])
    indptr = np.array([0, 3, 5])
    X = sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(2, 3))
    out = check_sparse(X)
    np.testing.assert_array_equal(out.indices, [0, 2, 1])
    np.testing.assert_array_equal(out.data, [2.0, 4.0, 9.0])
    np.testing.assert_array_equal(out.toarray(), [[2.0, 0.0, 4.0], [0.0, 9.0, 0.0]])
    # the caller's arrays are untouched
    np.testing.assert_array_equal(X.data, data)
    np.testing.assert_array_equal(X.indices, indices)


def test_explicit_zeros_are_kept() -> None:
    X = sp.csr_matrix((np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    out = check_sparse(X)
    assert out.nnz == 2


def test_indices_are_int32_when_they_fit_and_int64_otherwise() -> None:
    assert index_dtype(10, 10) == np.int32
    assert index_dtype(INT32_MAX, INT32_MAX) == np.int32
    assert index_dtype(INT32_MAX + 1, 10) == np.int64
    assert index_dtype(10, INT32_MAX + 1) == np.int64
    X = _csr()
    wide = sp.csr_matrix(X)
    wide.indices, wide.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    out = check_sparse(wide)
    assert out.indices.dtype == np.int32
    assert out.indptr.dtype == np.int32
    np.testing.assert_array_equal(out.toarray(), X.toarray())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_value_is_named_with_its_row_and_column(bad: float) -> None:
    X = sp.lil_matrix((5, 4))
    X[1, 1] = 1.0
    X[3, 2] = bad
    with pytest.raises(ValueError, match=r"X contains (NaN|inf|-inf) at row 3, column 2"):
        check_X(X.tocsr(), accept_sparse=True)


def test_out_of_range_and_negative_indices_name_the_row() -> None:
    data = np.ones(3)
    X = sp.csr_matrix((data, np.array([0, 1, 2]), np.array([0, 1, 3])), shape=(2, 3))
    X.indices[2] = 7
    with pytest.raises(ValueError, match=r"column index 7 at row 1, outside \[0, 3\)"):
        check_sparse(X)
    X.indices[2] = -1
    with pytest.raises(ValueError, match=r"column index -1 at row 1"):
        check_sparse(X)


def test_a_malformed_indptr_is_refused() -> None:
    X = _csr(5, 4, density=0.5)
    X.indptr[2], X.indptr[3] = X.indptr[3], X.indptr[2] + 0
    X.indptr[3] = X.indptr[2] - 1
    with pytest.raises(ValueError, match="indptr decreases at row"):
        check_sparse(X)


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="0 sample"):
        check_sparse(sp.csr_matrix((0, 3)))
    with pytest.raises(ValueError, match="has 15 features, but the model is expecting 3"):
        check_sparse(_csr(), n_features=3)


def test_complex_values_are_refused() -> None:
    with pytest.raises(ValueError, match="Complex data not supported"):
        check_sparse(sp.csr_matrix(np.array([[1j, 0.0]])))


def test_operations_that_do_not_take_sparse_data_say_so() -> None:
    with pytest.raises(TypeError, match="X is a sparse matrix, which this operation does not take"):
        check_X(_csr())


# --------------------------------------------------------------------------- baseline backend
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_baseline_equals_the_dense_baseline(n_classes: int, fit_intercept: bool) -> None:
    X = _csr(900, 12, density=0.25)
    y = _labels(X, n_classes=n_classes)
    rng = np.random.default_rng(3)
    s = rng.random(X.shape[0])
    s /= s.sum()
    a = SparseNumpyBackend(X, y, s, n_classes=n_classes, fit_intercept=fit_intercept)
    b = NumpyBackend(X.toarray(), y, s, n_classes=n_classes, fit_intercept=fit_intercept)
    assert a.format == "csr"
    assert b.format == "dense"
    p = 0.3 * rng.normal(size=a.n_params)
    v = rng.normal(size=a.n_params)
    groups = rng.integers(0, 5, X.shape[0])

    def close(u, w):
        np.testing.assert_allclose(u, w, rtol=1e-12, atol=1e-15)

    (la, ga), (lb, gb) = a.loss_grad(p), b.loss_grad(p)
    close(la, lb)
    close(ga, gb)
    close(a.loss(p), b.loss(p))
    close(a.hvp(p, v), b.hvp(p, v))
    close(a.hessian(p), b.hessian(p))
    close(a.hessian_diagonal(p), np.diag(b.hessian(p)))
    close(a.meat(p), b.meat(p))
    close(a.cluster_scores(p, groups, 5), b.cluster_scores(p, groups, 5))
    close(a.gram_matvec(v[: a.layout.n_cols]), b.gram_matvec(v[: a.layout.n_cols]))
    close(a.decision(p, X), b.decision(p, X.toarray()))
    ia, ib = a.information(p), b.information(p)
    close(ia.hessian, ib.hessian)
    close(ia.gradient, ib.gradient)
    close(ia.loss, ib.loss)


def test_float32_csr_accumulates_in_float64() -> None:
    X = _csr(900, 12, dtype=np.float32)
    y = _labels(X)
    s = np.full(X.shape[0], 1.0 / X.shape[0])
    loss, grad = SparseNumpyBackend(X, y, s).loss_grad(np.zeros(13))
    assert grad.dtype == np.float64
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-12)


def test_the_registry_has_a_csr_variant_of_the_baseline() -> None:
    assert get_backend_class("numpy", sparse=True) is SparseNumpyBackend
    with pytest.raises(ValueError, match="does not take sparse data"):
        get_backend_class("dask", sparse=True)


def test_loss_and_gradient_takes_sparse_input() -> None:
    X = _csr()
    y = _labels(X)
    coef = np.linspace(-1, 1, X.shape[1])
    dense = loss_and_gradient(X.toarray(), y, coef, 0.2, C=2.0, backend="numpy")
    sparse = loss_and_gradient(X, y, coef, 0.2, C=2.0, backend="numpy")
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-12)
    np.testing.assert_allclose(sparse[1], dense[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sparse[2], dense[2], rtol=1e-12)


# --------------------------------------------------------------------------- estimator
FIT_CASES = [
    {"solver": "lbfgs"},
    {"solver": "newton"},
    {"solver": "gd"},
    {"solver": "gd", "l1_ratio": 1.0, "C": 0.05},
    {"solver": "gd", "l1_ratio": 0.5, "C": 0.1},
    {"solver": "lbfgs", "class_weight": "balanced"},
    {"solver": "lbfgs", "fit_intercept": False},
]


@pytest.mark.parametrize("params", FIT_CASES)
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_csr_fit_equals_the_dense_fit(params: dict, n_classes: int, backend: str) -> None:
    X = _csr(700, 10, density=0.3)
    y = _labels(X, n_classes=n_classes)
    w = np.random.default_rng(5).random(X.shape[0]) + 0.5
    common = {"backend": backend, "tol": 1e-10, "max_iter": 20000, **params}
    sparse = LogisticRegression(**common).fit(X, y, sample_weight=w)
    dense = LogisticRegression(**common).fit(X.toarray(), y, sample_weight=w)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        sparse.predict_proba(X), dense.predict_proba(X.toarray()), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_array_equal(sparse.predict(X.tocsc()), dense.predict(X.toarray()))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("params", [{"multi_class": "ovr"}, {"solver": "minibatch", "max_iter": 3}])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_vs_rest_and_minibatch_take_csr(params: dict, backend: str) -> None:
    X = _csr(700, 10, density=0.3)
    y = _labels(X, n_classes=3)
    common = {"backend": backend, "random_state": 0, **params}
    sparse = LogisticRegression(**common).fit(X, y)
    dense = LogisticRegression(**common).fit(X.toarray(), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("solver", ["lbfgs", "newton", "newton-cg", "gd"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_csr_fit_matches_scikit_learn(solver: str, backend: str) -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    X = _csr(1500, 20, density=0.2)
    y = _labels(X)
    ours = LogisticRegression(backend=backend, solver=solver, C=0.5, tol=1e-10).fit(X, y)
    theirs = sklearn.LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-4, atol=1e-6)


def test_a_wide_csr_fit_is_never_densified() -> None:
    """Peak traced memory stays a small multiple of the CSR bytes plus the solver state.

    2,000 rows x 2,000,000 features with 10 values per row: the CSR is 0.25 MB and a
    dense copy would be 32 GB; the solver state (L-BFGS pairs, gradients) is a few
    vectors of n_features float64 (16 MB each).
    """
    m, n, per_row = 2000, 2_000_000, 10
    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(n, size=(m, per_row), replace=True), axis=1).ravel()
    X = sp.csr_matrix(
        (np.ones(m * per_row), indices, np.arange(0, m * per_row + 1, per_row)), shape=(m, n)
    )
    X.sum_duplicates()
    y = (rng.random(m) < 0.5).astype(np.int32)
    model = LogisticRegression(backend="numpy", solver="lbfgs", max_iter=5, tol=1e-30)
    tracemalloc.start()
    try:
        with pytest.warns():  # stopped by max_iter on purpose
            model.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    vector = 8 * n
    csr_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    # L-BFGS keeps 2 x its memory of vectors; the objective a few more.
    assert peak < 4 * csr_bytes + 40 * vector, peak / 1e6


# --------------------------------------------------------------------------- inference
@pytest.mark.filterwarnings("ignore::gpulogreg.inference.InferenceWarning")
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC1", "cluster"])
def test_inference_on_csr_equals_inference_on_the_dense_values(cov_type: str) -> None:
    X = _csr(1500, 8, density=0.4)
    y = _labels(X)
    groups = np.arange(X.shape[0]) % 25 if cov_type == "cluster" else None
    fits = [
        LogisticRegression(backend="numpy", C=np.inf, tol=1e-12).fit(data, y)
        for data in (X, X.toarray())
    ]
    sparse, dense = (
        model.inference(data, y, cov_type=cov_type, groups=groups)
        for model, data in zip(fits, (X, X.toarray()), strict=True)
    )
    np.testing.assert_allclose(sparse.bse, dense.bse, rtol=1e-8)
    np.testing.assert_allclose(sparse.params, dense.params, rtol=1e-8, atol=1e-12)
    for got, expected in zip(
        sparse.predict_interval(X[:40]), dense.predict_interval(X[:40].toarray()), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-8)
    np.testing.assert_allclose(
        sparse.predict_se(X[:40].tocsc()), dense.predict_se(X[:40].toarray()), rtol=1e-8
    )


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_row_quadratic_forms_of_csr_rows(fit_intercept: bool) -> None:
    from gpulogreg.backends.quadratic import row_quadratic_forms

    X = _csr(700, 12, density=0.3, dtype=np.float32)
    d = 12 + int(fit_intercept)
    M = np.random.default_rng(2).normal(size=(d, d))
    Sigma = M @ M.T
    A = X.toarray().astype(np.float64)
    if fit_intercept:
        A = np.hstack([A, np.ones((A.shape[0], 1))])
    expected = np.einsum("ij,jk,ik->i", A, Sigma, A)
    got = row_quadratic_forms(X, Sigma, fit_intercept=fit_intercept)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# --------------------------------------------------------------------------- Dask
@pytest.mark.parametrize("n_classes", [2, 3])
def test_dask_arrays_of_csr_blocks_train_like_the_in_memory_csr(n_classes: int) -> None:
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X = _csr(1800, 12, density=0.3)
    y = _labels(X, n_classes=n_classes)
    w = np.random.default_rng(4).random(X.shape[0]) + 0.5
    dX = da.from_array(X, chunks=(500, 12), asarray=False)
    with dask.config.set(scheduler="synchronous"):
        model = LogisticRegression(tol=1e-10).fit(dX, da.from_array(y, chunks=500), w)
        proba = model.predict_proba(dX).compute()
    reference = LogisticRegression(tol=1e-10).fit(X, y, w)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(proba, reference.predict_proba(X), rtol=1e-10, atol=1e-12)


def test_a_bad_value_in_a_dask_csr_block_names_its_global_row() -> None:
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X = _csr(1800, 12, density=0.3)
    y = _labels(X)
    k = X.indptr[1234]
    X.data[k] = np.nan
    column = X.indices[k]
    dX = da.from_array(X, chunks=(500, 12), asarray=False)
    with (
        dask.config.set(scheduler="synchronous"),
        pytest.raises(ValueError, match=f"X contains NaN at row 1234, column {column}"),
    ):
        LogisticRegression().fit(dX, y)


def test_partial_fit_takes_csr_chunks_like_dense_ones() -> None:
    X = _csr(1200, 10, density=0.3)
    y = _labels(X)
    sparse = LogisticRegression(backend="numpy", solver="minibatch", random_state=0)
    dense = LogisticRegression(backend="numpy", solver="minibatch", random_state=0)
    for rows in (slice(0, 600), slice(600, 1200)):
        sparse.partial_fit(X[rows].tocoo(), y[rows], classes=[0, 1])
        dense.partial_fit(X[rows].toarray(), y[rows], classes=[0, 1])
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)


def test_the_baseline_computes_on_int64_indices() -> None:
    X = _csr(600, 12, density=0.3)
    wide = sp.csr_matrix(X)
    wide.indices, wide.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    y = _labels(X)
    s = np.full(X.shape[0], 1.0 / X.shape[0])
    p = np.linspace(-0.5, 0.5, 13)
    a = SparseNumpyBackend(wide, y, s)
    b = SparseNumpyBackend(X, y, s)
    assert a.X.indices.dtype == np.int64
    np.testing.assert_allclose(a.loss_grad(p)[1], b.loss_grad(p)[1], rtol=1e-14)
    np.testing.assert_allclose(a.hessian(p), b.hessian(p), rtol=1e-14)


@pytest.mark.parametrize("source", ["memory", "dataset", "dask"])
def test_auto_picks_newton_cg_for_wide_csr_wherever_it_lives(source: str) -> None:
    from gpulogreg import Dataset

    X = _csr(400, 1500, density=0.01)
    y = _labels(X)
    if source == "dataset":
        data = (Dataset.from_arrays(X, y, chunk_rows=150),)
    elif source == "dask":
        da = pytest.importorskip("dask.array")
        data = (da.from_array(X, chunks=(150, 1500), asarray=False), y)
    else:
        data = (X, y)
    model = LogisticRegression(C=0.5).fit(*data)
    assert model.solver_ == "newton-cg"
    dense = LogisticRegression(C=0.5).fit(X.toarray(), y)
    assert dense.solver_ == "lbfgs"
