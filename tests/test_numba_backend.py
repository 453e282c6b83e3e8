"""The Numba backend against the NumPy baseline, a float64 reference and itself.

Small data only; the kernels are compiled once (cache=True) per dtype.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from gpulogreg._numba_read import read_once
from gpulogreg.backends import _numba_kernels as nk
from gpulogreg.backends.numba_backend import NumbaBackend
from gpulogreg.backends.numpy_backend import NumpyBackend

#: Normwise relative agreement with the baseline, per dtype of X (issue 2).
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
#: Rows spanning several reduction chunks and ending in a partial block.
N_ROWS = 2 * nk.CHUNK_ROWS + 37
N_FEATURES = 7


def rel_err(got, ref) -> float:
    """``max |got - ref| / max |ref|`` (normwise, so near-zero entries don't dominate)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    return float(np.max(np.abs(got - ref))) / (scale if scale > 0 else 1.0)


def make_problem(dtype, n_classes, fit_intercept, weights, seed=0, n_rows=N_ROWS):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, N_FEATURES)).astype(dtype)
    X[:, 0] *= 3.0  # features on different scales
    y = rng.integers(0, n_classes, n_rows).astype(np.int32)
    s = np.ones(n_rows) if weights == "uniform" else rng.random(n_rows) * 2.0
    s /= s.sum()
    ref = NumpyBackend(X, y, s, n_classes=n_classes, fit_intercept=fit_intercept)
    fast = NumbaBackend(X, y, s, n_classes=n_classes, fit_intercept=fit_intercept)
    # Random, not optimal, parameters: residuals of both signs and sizes.
    params = rng.standard_normal(ref.n_params) * 0.7
    v = rng.standard_normal(ref.n_params)
    return X, ref, fast, params, v


CASES = [
    pytest.param(dtype, k, fi, wt, id=f"{dtype.__name__}-K{k}-{'icpt' if fi else 'noicpt'}-{wt}")
    for dtype in (np.float64, np.float32)
    for k in (2, 3)
    for fi in (True, False)
    for wt in ("uniform", "random")
]


@pytest.mark.parametrize(("dtype", "n_classes", "fit_intercept", "weights"), CASES)
def test_matches_numpy_baseline(dtype, n_classes, fit_intercept, weights):
    X, ref, fast, params, v = make_problem(dtype, n_classes, fit_intercept, weights)
    tol = RTOL[dtype]
    loss_ref, grad_ref = ref.loss_grad(params)
    loss, grad = fast.loss_grad(params)
    assert isinstance(loss, float)
    assert grad.dtype == np.float64
    assert grad.shape == (ref.n_params,)
    assert rel_err(loss, loss_ref) <= tol
    assert rel_err(grad, grad_ref) <= tol
    assert rel_err(fast.loss(params), ref.loss(params)) <= tol
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= tol
    n_cols = N_FEATURES + int(fit_intercept)
    assert rel_err(fast.gram_matvec(v[:n_cols]), ref.gram_matvec(v[:n_cols])) <= tol
    H = fast.hessian(params)
    assert rel_err(H, ref.hessian(params)) <= tol
    assert rel_err(fast.hessian_diagonal(params), np.diag(ref.hessian(params))) <= tol
    M = fast.meat(params)
    assert rel_err(M, ref.meat(params)) <= tol
    if n_classes == 2:
        np.testing.assert_array_equal(H, H.T)
        np.testing.assert_array_equal(M, M.T)
    else:
        assert rel_err(H, H.T) <= 1e-14
        assert rel_err(M, M.T) <= 1e-14
    groups = np.arange(N_ROWS) % 13
    S = fast.cluster_scores(params, groups, 13)
    assert rel_err(S, ref.cluster_scores(params, groups, 13)) <= tol
    X_new = X[:101]
    assert rel_err(fast.decision(params, X_new), ref.decision(params, X_new)) <= tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("n_classes", "n_features"),
    # Five- and ten-class groups with repeated classes, an odd class left for
    # the gradient pairs, and feature segments of float32 partial sums.
    [(4, 9), (5, 300), (6, 9), (10, 9), (11, 300), (16, 9)],
)
def test_multinomial_products_match_a_float64_reference(dtype, n_classes, n_features):
    rng = np.random.default_rng(n_classes)
    # Row-pair tiles: a full block and an odd partial one (a row paired with
    # itself); two-row tiles: three blocks, a partial one and a partial 8-row tile.
    m = nk.PAIR_TILE_BLOCK_ROWS + nk.BLOCK_ROWS + 5
    X = (rng.standard_normal((m, n_features)) + 0.5).astype(dtype)
    y = rng.integers(0, n_classes, m).astype(np.int32)
    s = rng.random(m)
    s /= s.sum()
    ref = NumpyBackend(X.astype(np.float64), y, s, n_classes=n_classes)
    fast = NumbaBackend(X, y, s, n_classes=n_classes)
    params = rng.standard_normal(ref.n_params) * 0.2
    v = rng.standard_normal(ref.n_params)
    float32_products = dtype == np.float32 and n_classes >= nk.FLOAT32_PRODUCTS_MIN_CLASSES
    tol = 1e-6 if float32_products else 1e-12
    loss_ref, grad_ref = ref.loss_grad(params)
    loss, grad = fast.loss_grad(params)
    assert rel_err(loss, loss_ref) <= tol
    assert rel_err(grad, grad_ref) <= tol
    assert fast.loss(params) == loss
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= tol
    if float32_products:  # the float32 products are in use: not float64 accuracy
        assert rel_err(grad, grad_ref) > 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 13, 16])
def test_aligned_coefficient_copy_pads_rows_to_32_bytes(dtype, n_features):
    W = np.random.default_rng(n_features).standard_normal((3, n_features))
    Wx = nk._aligned_copy(W, np.zeros(1, dtype))
    per_row = 32 // np.dtype(dtype).itemsize
    assert Wx.dtype == dtype
    assert Wx.flags.c_contiguous
    assert Wx.shape == (3, -(-n_features // per_row) * per_row)
    assert Wx.ctypes.data % 64 == 0
    assert Wx.strides[0] % 32 == 0
    np.testing.assert_array_equal(Wx[:, :n_features], W.astype(dtype))
    assert not Wx[:, n_features:].any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [4, 5, 6, 7, 9, 10])
def test_multinomial_class_groups_match_numpy_baseline(dtype, n_classes):
    """Classes go through the dot products five at a time (K = 5, 9, 10: full
    groups, and a last group with classes repeated) or four at a time (a last
    group of two or three, classes repeated, or a single class left over), and
    through the gradient's sums in pairs (an odd K leaves one alone)."""
    X, ref, fast, params, v = make_problem(dtype, n_classes, True, "random", seed=3)
    tol = RTOL[dtype]
    loss_ref, grad_ref = ref.loss_grad(params)
    loss, grad = fast.loss_grad(params)
    assert rel_err(loss, loss_ref) <= tol
    assert rel_err(grad, grad_ref) <= tol
    assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= tol
    assert rel_err(fast.hessian_diagonal(params), ref.hessian_diagonal(params)) <= tol
    X_new = X[:101]  # an odd number of rows: the last 2-row tile holds one
    assert rel_err(fast.decision(params, X_new), ref.decision(params, X_new)) <= tol


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_finite_difference_gradient(n_classes, fit_intercept):
    _, _, fast, params, v = make_problem(np.float64, n_classes, fit_intercept, "random", seed=1)
    _, grad = fast.loss_grad(params)
    step = 1e-6
    for j in range(fast.n_params):
        e = np.zeros_like(params)
        e[j] = step
        fd = (fast.loss(params + e) - fast.loss(params - e)) / (2 * step)
        assert fd == pytest.approx(grad[j], rel=1e-6, abs=1e-9)
    # The Hessian-vector product is the derivative of the gradient along v.
    fd_hvp = (fast.loss_grad(params + step * v)[1] - fast.loss_grad(params - step * v)[1]) / (
        2 * step
    )
    assert rel_err(fast.hvp(params, v), fd_hvp) <= 1e-6


def stable_reference(X, y, s, w, b):
    """Float64 loss and gradient of the stable formula, straight from its definition."""
    z = X.astype(np.float64) @ w + b
    e = np.exp(-np.abs(z))
    loss = np.maximum(z, 0.0) - y * z + np.log1p(e)
    p = np.where(z >= 0, 1.0, e) / (1.0 + e)
    r = s * (p - y)
    return float(s @ loss), np.concatenate([X.astype(np.float64).T @ r, [r.sum()]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_decision_values(dtype):
    """|z| up to 1e4 and beyond: finite and equal to the float64 reference."""
    z_target = np.array(
        [
            0.0,
            1e-8,
            -1e-8,
            0.5,
            -3.0,
            20.0,
            -37.0,
            40.0,
            709.0,
            -709.0,
            745.5,
            -746.0,
            800.0,
            -1e3,
            1e4,
            -1e4,
            3e4,
            -1e5,
        ]
    )
    z_target = np.concatenate([z_target, np.linspace(-1e4, 1e4, 2 * nk.BLOCK_ROWS + 3)])
    m = z_target.size
    X = np.zeros((m, 2), dtype=dtype)
    X[:, 0] = z_target
    X[:, 1] = 1.0
    for y_value in (0, 1):
        y = np.full(m, y_value, dtype=np.int32)
        y[::3] = 1 - y_value
        s = np.full(m, 1.0 / m)
        fast = NumbaBackend(X, y, s)
        params = np.array([1.0, 0.25, -0.25])  # w = (1, 0.25), b = -0.25: z = x0 + 0
        loss, grad = fast.loss_grad(params)
        loss_ref, grad_ref = stable_reference(X, y, s, params[:2], params[2])
        assert np.isfinite(loss)
        assert np.all(np.isfinite(grad))
        assert loss == pytest.approx(loss_ref, rel=1e-13)
        np.testing.assert_allclose(grad, grad_ref, rtol=1e-12, atol=1e-15)
        assert fast.loss(params) == pytest.approx(loss_ref, rel=1e-13)
        assert np.all(np.isfinite(fast.hvp(params, np.ones(3))))
        assert np.all(np.isfinite(fast.hessian(params)))
        # Multinomial with the same extreme logits.
        multi = NumbaBackend(X, y, s, n_classes=3)
        P = np.array([[1.0, 0.0, 0.0], [-1.0, 0.5, 0.0], [0.0, 0.0, 0.0]]).ravel()
        loss_m, grad_m = multi.loss_grad(P)
        assert np.isfinite(loss_m)
        assert np.all(np.isfinite(grad_m))
        base = NumpyBackend(X.astype(np.float64), y, s, n_classes=3)
        loss_b, grad_b = base.loss_grad(P)
        assert loss_m == pytest.approx(loss_b, rel=1e-12)
        # float32 data: the gradient sums R^T X run in float32 within a block of rows.
        assert rel_err(grad_m, grad_b) <= (1e-12 if dtype == np.float64 else 1e-6)
        assert np.all(np.isfinite(multi.hvp(P, np.ones(9))))


def test_float32_products_past_float32_range_fall_back_to_float64() -> None:
    rng = np.random.default_rng(7)
    K, m, n = 6, 45, 9
    y = rng.integers(0, K, m).astype(np.int32)
    s = np.full(m, 1.0 / m)
    b = np.zeros(K)
    for case in ("coefficient", "product", "subnormal"):
        X = rng.standard_normal((m, n)).astype(np.float32)
        W = rng.standard_normal((K, n)) * 0.1
        labels = y
        if case == "coefficient":  # W past float32's range, x * w = 1e4
            W[0, 0] = 1e39
            X[:, 0] = 1e-35
        elif case == "product":  # finite float32 factors whose products pass 3.4e38
            X[:, 0] = 1e30
            W[:, 0] = 1e9 * np.arange(1, K + 1)
        else:  # W past float32's range times subnormal x: x * w = -1, yet float32's
            # product -inf gives class 2 probability 0, a finite (wrong) result
            # when no row is of class 2
            W[2, 3] = 4e38
            X[:, 3] = np.float32(-2.5e-39)
            labels = np.where(y == 2, 0, y).astype(np.int32)
        ref = NumpyBackend(X.astype(np.float64), labels, s, n_classes=K)
        params = np.column_stack([W, b]).ravel()
        v = rng.standard_normal(params.shape[0])
        fast = NumbaBackend(X, labels, s, n_classes=K)
        loss_ref, grad_ref = ref.loss_grad(params)
        loss, grad = fast.loss_grad(params)
        assert np.isfinite(loss), case
        assert np.all(np.isfinite(grad)), case
        assert loss == pytest.approx(loss_ref, rel=1e-12), case
        assert rel_err(grad, grad_ref) <= 1e-12, case
        assert fast.loss(params) == pytest.approx(loss_ref, rel=1e-12), case
        assert rel_err(fast.hvp(params, v), ref.hvp(params, v)) <= 1e-10, case


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [2, 3, 6])  # 6: float32 products on float32 data
def test_bitwise_identical_across_thread_counts(dtype, n_classes):
    _, _, fast, params, v = make_problem(
        dtype, n_classes, True, "random", seed=2, n_rows=3 * nk.CHUNK_ROWS + 5
    )
    n_cols = N_FEATURES + 1
    groups = np.random.default_rng(0).integers(0, 40, fast.n_samples)

    def evaluate():
        loss, grad = fast.loss_grad(params)
        return [
            np.array([loss, fast.loss(params)]),
            grad,
            fast.hvp(params, v),
            fast.hessian_diagonal(params),
            fast.gram_matvec(v[:n_cols]),
            fast.hessian(params),
            fast.meat(params),
            fast.cluster_scores(params, groups, 40),
            fast.decision(params, fast.X),
            np.array([read_once(fast.X)]),
        ]

    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = evaluate()
        numba.set_num_threads(2)
        two = evaluate()
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_X_is_held_not_copied(dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 4)).astype(dtype)
    y = rng.integers(0, 2, 300).astype(np.int32)
    s = np.full(300, 1 / 300)
    fast = NumbaBackend(X, y, s)
    assert fast.X is X
    assert fast.dtype == dtype
    fast.loss_grad(np.zeros(5))
    assert fast.X is X


def test_rejects_what_it_would_have_to_copy():
    X = np.asfortranarray(np.ones((10, 3)))
    y = np.zeros(10, dtype=np.int32)
    s = np.full(10, 0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        NumbaBackend(X, y, s)
    with pytest.raises(ValueError, match="float32 or float64"):
        NumbaBackend(np.ones((10, 3), dtype=np.int64), y, s)
    with pytest.raises(TypeError, match="NumPy array"):
        NumbaBackend([[1.0]], y[:1], s[:1])


def test_read_once_is_the_sum():
    X = np.random.default_rng(4).standard_normal((nk.CHUNK_ROWS + 3, 5)).astype(np.float32)
    assert read_once(X) == pytest.approx(float(X.astype(np.float64).sum()), rel=1e-12)


@numba.njit
def _apply(fn_id, x):
    out = np.empty_like(x)
    for i in range(x.size):
        if fn_id == 0:
            out[i] = nk.exp_nonpos(x[i])
        elif fn_id == 1:
            out[i] = nk.log1p_unit(x[i])
        else:
            out[i] = nk.log_pos(x[i])
    return out


def test_scalar_math_accuracy():
    rng = np.random.default_rng(5)
    # exp on (-inf, 0]: relative error ~1 ulp on normal results, exact zeros below -745.2.
    x = -np.concatenate(
        [rng.random(20000) * 745, rng.random(2000) * 1e-3, [0.0, 708.4, 745.2, 746.0, 1e4, np.inf]]
    )
    got, ref = _apply(0, x), np.exp(x)
    normal = ref > 1e-300
    assert np.max(np.abs(got[normal] - ref[normal]) / ref[normal]) < 1e-15
    assert np.max(np.abs(got[~normal] - ref[~normal])) < 1e-300
    assert np.all(got[ref == 0] == 0)
    # log1p on [0, 1], never forming 1 + t.
    t = np.concatenate([rng.random(20000), 10.0 ** rng.uniform(-300, 0, 2000), [0.0, 1.0]])
    got, ref = _apply(1, t), np.log1p(t)
    positive = ref > 0
    assert np.max(np.abs(got[positive] - ref[positive]) / ref[positive]) < 1e-15
    assert np.all(got[~positive] == 0)
    # log of positive normal numbers (the log-sum-exp of the multinomial loss).
    u = np.concatenate(
        [1 + rng.random(20000) * 50, 10.0 ** rng.uniform(-300, 300, 2000), [1.0, 2.0, np.sqrt(2.0)]]
    )
    got, ref = _apply(2, u), np.log(u)
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)) < 1e-15
