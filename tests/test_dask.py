"""Training on Dask arrays: per-block kernels on the workers equal the in-memory fit."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from gpulogreg import LogisticRegression  # noqa: E402
from gpulogreg.backends import make_backend  # noqa: E402
from gpulogreg.data import prepare_fit_data  # noqa: E402
from tests._helpers import make_classification  # noqa: E402

#: Uneven row chunks (sizes that share no divisor with the kernels' chunking).
ROWS = (700, 1300, 999, 1)


def _data(n_classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(sum(ROWS), 6, n_classes=n_classes, seed=seed)
    sw = np.random.default_rng(seed).uniform(0.2, 3.0, size=X.shape[0])
    return X, y, sw


def _dask(X: np.ndarray, column_chunks: int = 6) -> da.Array:
    return da.from_array(X, chunks=(ROWS, column_chunks))


def _fit(X, y, sw=None, **kw):  # type: ignore[no-untyped-def]
    kw = {"tol": 1e-10, "max_iter": 1000, **kw}
    return LogisticRegression(**kw).fit(X, y, sample_weight=sw)


def _assert_same_model(model, ref, rtol: float = 1e-8) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_array_equal(model.classes_, ref.classes_)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_fit_equals_in_memory_fit(solver: str, n_classes: int) -> None:
    X, y, sw = _data(n_classes)
    ref = _fit(X, y, sw, solver=solver)
    # X column-chunked (rechunked once), y and weights chunked differently from X
    model = _fit(
        _dask(X, column_chunks=4), da.from_array(y, chunks=1000), da.from_array(sw), solver=solver
    )
    _assert_same_model(model, ref)
    assert model.backend_ == "dask(numba)"
    assert model.device_ == "cpu"
    assert model.converged_
    again = _fit(_dask(X), y, sw, solver=solver)  # NumPy y and weights with a Dask X
    np.testing.assert_array_equal(again.coef_, model.coef_)  # reproducible, bit for bit


def test_gd_class_weight_ovr_and_string_labels() -> None:
    X, y, _ = _data(3)
    labels = np.array(["ant", "bee", "cat"])[y]
    kw = {"solver": "gd", "class_weight": "balanced", "multi_class": "ovr", "tol": 1e-9}
    ref = _fit(X, labels, **kw)
    model = _fit(_dask(X), da.from_array(labels, chunks=500), **kw)
    _assert_same_model(model, ref, rtol=1e-6)
    pred = model.predict(_dask(X))
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(X))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_backend_sums_equal_the_numba_backend(n_classes: int) -> None:
    X, y, sw = _data(n_classes)
    s = sw / sw.sum()
    y32 = y.astype(np.int32)
    ref = make_backend(X, y32, s, n_classes=n_classes, backend="numba", device="cpu")
    dsk = make_backend(_dask(X, 4), da.from_array(y32, chunks=800), s, n_classes=n_classes)
    assert dsk.name == "dask(numba)"
    assert dsk.n_blocks == len(ROWS)
    rng = np.random.default_rng(1)
    p = rng.normal(size=dsk.n_params) * 0.3
    v = rng.normal(size=dsk.n_params)
    loss, grad = dsk.loss_grad(p)
    ref_loss, ref_grad = ref.loss_grad(p)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert dsk.loss(p) == pytest.approx(ref.loss(p), rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dsk.hessian(p), ref.hessian(p), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dsk.hvp(p, v), ref.hvp(p, v), rtol=1e-10, atol=1e-14)
    u = v[: X.shape[1] + 1]
    np.testing.assert_allclose(dsk.gram_matvec(u), ref.gram_matvec(u), rtol=1e-10)
    z = dsk.decision(p, _dask(X))
    assert isinstance(z, da.Array)
    np.testing.assert_allclose(z.compute(), ref.decision(p, X), rtol=1e-12)


def test_synchronous_scheduler_and_distributed_client() -> None:
    distributed = pytest.importorskip("distributed")
    X, y, sw = _data()
    ref = _fit(X, y, sw, solver="newton")
    with dask.config.set(scheduler="synchronous"):
        _assert_same_model(_fit(_dask(X), y, sw, solver="newton"), ref)
    with (
        warnings.catch_warnings(),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        warnings.simplefilter("ignore", ResourceWarning)
        model = _fit(_dask(X), da.from_array(y, chunks=ROWS), sw, solver="lbfgs")
        proba = model.predict_proba(_dask(X)).compute()
    _assert_same_model(model, ref)
    np.testing.assert_allclose(proba, ref.predict_proba(X), rtol=1e-8)


def test_the_graph_of_X_runs_once_per_block() -> None:
    """X is persisted: validation and every solver iteration read it from memory."""
    X, y, _ = _data()
    calls: list[int] = []
    lock = threading.Lock()

    def counted(block: np.ndarray) -> np.ndarray:
        with lock:
            calls.append(block.shape[0])
        return block

    Xd = _dask(X).map_blocks(counted, meta=np.empty((0, 0)))  # meta: no probe call
    model = _fit(Xd, y, solver="lbfgs")
    assert model.n_iter_[0] > 3
    assert sorted(calls) == sorted(ROWS)


def test_unknown_chunk_sizes() -> None:
    X, y, _ = _data()
    keep = np.arange(X.shape[0]) % 3 != 0
    Xd, yd = _dask(X), da.from_array(y, chunks=(ROWS,))
    mask = da.from_array(keep, chunks=(ROWS,))
    model = _fit(Xd[mask], yd[mask], solver="newton")  # row chunks of unknown size
    _assert_same_model(model, _fit(X[keep], y[keep], solver="newton"))


def test_predictions_are_lazy_and_equal_numpy_predictions() -> None:
    X, y, _ = _data(3)
    model = _fit(X, y, solver="newton")
    Xd = _dask(X, column_chunks=4)
    for method in ("decision_function", "predict_proba", "predict_log_proba", "predict"):
        out = getattr(model, method)(Xd)
        assert isinstance(out, da.Array), method
        expected = getattr(model, method)(X)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out.compute(), expected, rtol=1e-12, err_msg=method)
    binary = _fit(X, y == 1, solver="newton")
    np.testing.assert_allclose(
        binary.predict_proba(Xd).compute(), binary.predict_proba(X), rtol=1e-12
    )
    np.testing.assert_array_equal(binary.predict(Xd).compute(), binary.predict(X))


def test_nan_is_reported_with_its_global_row() -> None:
    X, y, _ = _data()
    X[2100, 4] = np.nan
    X[2500, 1] = np.inf  # a later one in the same block
    X[2999, 0] = np.nan  # and one in a later block
    with pytest.raises(ValueError, match="X contains NaN at row 2100, column 4"):
        _fit(_dask(X, column_chunks=3), y)
    model = _fit(X[:2000], y[:2000], solver="newton")
    scores = model.decision_function(_dask(X))  # lazy: each block checks itself
    with pytest.raises(ValueError, match=r"X contains NaN at row (2100, column 4|2999, column 0)"):
        scores.compute()


def test_bad_labels_and_weights_are_reported_with_their_global_row() -> None:
    X, y, sw = _data()
    y_bad = y.astype(float)
    y_bad[1500] = np.nan
    with pytest.raises(ValueError, match="y contains NaN at row 1500"):
        _fit(_dask(X), da.from_array(y_bad, chunks=400))
    sw[2800] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight is negative \(-1.0\) at row 2800"):
        _fit(_dask(X), y, da.from_array(sw, chunks=ROWS))
    with pytest.raises(ValueError, match="only 1 class"):
        _fit(_dask(X), np.zeros(len(y)))
    with pytest.raises(ValueError, match="rows but y has"):
        _fit(_dask(X), y[:-1])


def test_validation_keeps_X_lazy_and_one_column_chunk() -> None:
    X, y, sw = _data()
    data = prepare_fit_data(_dask(X.astype(np.float32), column_chunks=2), y, sw)
    assert isinstance(data.X, da.Array)
    assert data.X.numblocks == (len(ROWS), 1)
    assert data.X.dtype == np.float32
    assert data.y.dtype == np.int32
    assert data.y.chunks[0] == ROWS
    assert data.weight_sum == pytest.approx(sw.sum(), rel=1e-12)
    np.testing.assert_allclose(data.sample_weight.compute(), sw / sw.sum(), rtol=1e-14)


def test_unsupported_uses_are_refused_clearly() -> None:
    X, y, _ = _data()
    Xd = _dask(X)
    with pytest.raises(ValueError, match="minibatch"):
        LogisticRegression(solver="minibatch").fit(Xd, y)
    with pytest.raises(TypeError, match="partial_fit does not take Dask"):
        LogisticRegression().partial_fit(Xd, y, classes=[0, 1])
    with pytest.raises(ValueError, match="backend='dask'"):
        LogisticRegression(backend="numpy").fit(Xd, y)
    with pytest.raises(ValueError, match="needs a Dask array"):
        LogisticRegression(backend="dask").fit(X, y)
    from gpulogreg import loss_and_gradient

    with pytest.raises(TypeError, match="Dask array"):
        loss_and_gradient(Xd, y, np.zeros(X.shape[1]))


@pytest.mark.gpu
@pytest.mark.parametrize("n_classes", [2, 3])
def test_cupy_chunks_train_on_the_gpu(n_classes: int) -> None:
    cupy = pytest.importorskip("cupy")
    X, y, sw = _data(n_classes)
    ref = _fit(X, y, sw, solver="newton")
    Xg = _dask(X).map_blocks(cupy.asarray)  # CuPy chunks, y and weights on the host
    model = _fit(Xg, y, sw, solver="newton")
    _assert_same_model(model, ref, rtol=1e-7)
    assert model.backend_ == "dask(cupy)"
    assert model.device_ == "gpu"
    proba = model.predict_proba(Xg)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(cupy.asnumpy(proba.compute()), ref.predict_proba(X), rtol=1e-7)
    labels = model.predict(Xg).compute()
    np.testing.assert_array_equal(cupy.asnumpy(labels), ref.predict(X))
    # NumPy chunks moved to the GPU once with device="gpu"
    moved = _fit(_dask(X), y, sw, solver="lbfgs", device="gpu")
    assert moved.backend_ == "dask(cupy)"
    _assert_same_model(moved, ref, rtol=1e-7)
