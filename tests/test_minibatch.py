"""solver="minibatch", partial_fit and checkpoints."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import gpulogreg
from gpulogreg import Dataset, LogisticRegression
from gpulogreg._layout import ParamLayout
from gpulogreg.backends import make_backend
from gpulogreg.checkpoint import CheckpointError, load_checkpoint
from gpulogreg.data import batches
from gpulogreg.loss import LogisticObjective, Penalty
from gpulogreg.solvers.stochastic import schedules
from gpulogreg.solvers.stochastic.config import MinibatchConfig
from tests._helpers import assert_same_fit, make_classification

#: Backend of these tests' fits: "auto" (Numba on the CPU) once it is there.
BACKEND = "auto"


def _backend() -> str:
    try:
        import gpulogreg.backends.numba_backend  # noqa: F401
    except ImportError:
        return "numpy"
    return BACKEND


def LR(**kwargs: object) -> LogisticRegression:
    """LogisticRegression on this module's backend unless one is named."""
    kwargs.setdefault("backend", _backend())
    return LogisticRegression(**kwargs)  # type: ignore[arg-type]


def _params(model: LogisticRegression) -> np.ndarray:
    return np.concatenate([model.coef_.ravel(), model.intercept_.ravel()])


def _objective(X: np.ndarray, y: np.ndarray, params: np.ndarray, C: float = 1.0) -> float:
    """The full penalised objective, evaluated in float64 by the NumPy baseline."""
    n = len(y)
    n_classes = len(np.unique(y))
    b = make_backend(
        np.asarray(X, dtype=np.float64),
        y.astype(np.int32),
        np.full(n, 1.0 / n),
        n_classes=n_classes,
        backend="numpy",
    )
    return LogisticObjective(b, C=C, weight_sum=n).value(params)


def _quiet_fit(model: LogisticRegression, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def large() -> tuple[np.ndarray, np.ndarray, float]:
    """The issue's 200,000 x 50 problem and its optimal objective (Newton, float64)."""
    X, y = make_classification(200_000, 50, seed=1)
    ref = _quiet_fit(LR(solver="newton", tol=1e-6), X, y)
    return X, y, _objective(X, y, _params(ref))


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_minibatch_reaches_the_optimal_objective(large, dtype) -> None:  # type: ignore[no-untyped-def]
    X, y, f_opt = large
    model = LR(
        solver="minibatch",
        learning_rate="cosine",
        max_iter=10,
        eta0=0.01,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X.astype(dtype), y)
    f = _objective(X, y, _params(model))
    gap = (f - f_opt) / f_opt
    assert 0 <= gap < 1e-3
    # objective_ is the exact objective of the final parameters, not an estimate
    assert model.objective_ == pytest.approx(f, rel=1e-6 if dtype == np.float64 else 1e-4)
    assert model.converged_
    assert model.n_iter_[0] == 10
    assert len(model.history_.objective) == 10
    assert len(model.history_.validation_loss) == 10
    assert model.solver_ == "minibatch"


def test_sgd_with_momentum_converges() -> None:
    X, y = make_classification(20_000, 10, seed=3)
    ref = _quiet_fit(LR(solver="newton", tol=1e-8, backend="numpy"), X, y)
    f_opt = _objective(X, y, _params(ref))
    model = LR(
        solver="minibatch",
        optimizer="sgd",
        momentum=0.9,
        eta0=0.05,
        learning_rate="cosine",
        max_iter=20,
        batch_size=128,
        random_state=0,
    ).fit(X, y)
    assert (_objective(X, y, _params(model)) - f_opt) / f_opt < 1e-3


def test_multinomial_and_ovr_minibatch() -> None:
    X, y = make_classification(6000, 6, n_classes=3, seed=4)
    for multi_class in ("multinomial", "ovr"):
        ref = _quiet_fit(LR(solver="lbfgs", tol=1e-8, multi_class=multi_class), X, y)
        model = LR(
            solver="minibatch",
            multi_class=multi_class,
            learning_rate="cosine",
            eta0=0.01,
            max_iter=15,
            random_state=1,
        ).fit(X, y)
        assert model.coef_.shape == (3, 6)
        assert np.mean(model.predict(X) == ref.predict(X)) > 0.97


def test_same_seed_same_result_and_penalty_matches_full_objective() -> None:
    X, y = make_classification(3000, 5, seed=6)
    kw = {"solver": "minibatch", "max_iter": 4, "random_state": 3, "backend": _backend()}
    a = _quiet_fit(LR(**kw), X, y)
    b = _quiet_fit(LR(**kw), X, y)
    np.testing.assert_array_equal(_params(a), _params(b))
    c = _quiet_fit(LR(**{**kw, "random_state": 4}), X, y)
    assert not np.array_equal(_params(a), _params(c))
    # A strong penalty: the mini-batch optimum is the full objective's optimum.
    ref = LR(solver="newton", C=0.001, tol=1e-10, backend="numpy").fit(X, y)
    strong = LR(
        solver="minibatch", C=0.001, eta0=0.01, learning_rate="cosine", max_iter=30, random_state=0
    ).fit(X, y)
    np.testing.assert_allclose(_params(strong), _params(ref), rtol=0.02, atol=2e-3)


def test_batch_objective_is_mean_loss_plus_full_penalty() -> None:
    X, y = make_classification(500, 4, seed=2)
    w = np.random.default_rng(0).uniform(0.5, 2.0, 500)
    s = w / w.sum()
    source = batches.ArrayBatches(X, y.astype(np.int32), s)
    penalty = Penalty.build(
        ParamLayout(n_features=4, n_outputs=1, fit_intercept=True),
        np,
        C=0.3,
        l1_ratio=0.0,
        weight_sum=w.sum(),
    )
    full = LogisticObjective(
        make_backend(X, y.astype(np.int32), s, backend="numpy"), C=0.3, weight_sum=w.sum()
    )
    p = np.linspace(-1, 1, 5)
    # One batch holding every row: the batch objective is the full objective.
    ((batch_X, batch_y, batch_s, weight),) = list(
        source.batches(np.random.default_rng(0), batch_size=500)
    )
    backend = make_backend(batch_X, batch_y, batch_s, backend="numpy")
    loss, grad = penalty.add_smooth(p, *backend.loss_grad(p))
    f, g = full.value_grad(p)
    assert weight == pytest.approx(1.0)
    assert loss == pytest.approx(f, rel=1e-12)
    np.testing.assert_allclose(grad, g, rtol=1e-12)


def test_learning_rate_schedules() -> None:
    cfg = MinibatchConfig(eta0=0.1, max_iter=10)
    assert schedules.learning_rate(cfg, 3.5) == 0.1
    cfg.learning_rate = "invscaling"
    assert schedules.learning_rate(cfg, 3.0) == pytest.approx(0.05)
    cfg.learning_rate = "cosine"
    assert schedules.learning_rate(cfg, 0.0) == pytest.approx(0.1)
    assert schedules.learning_rate(cfg, 5.0) == pytest.approx(0.05)
    assert schedules.learning_rate(cfg, 10.0) == pytest.approx(0.0)


def test_l1_minibatch_gives_sparse_coefficients() -> None:
    X, y = make_classification(4000, 12, seed=8)
    X[:, 6:] = np.random.default_rng(0).normal(size=(4000, 6))  # pure noise features
    model = LR(
        solver="minibatch",
        l1_ratio=1.0,
        C=0.01,
        learning_rate="cosine",
        max_iter=20,
        random_state=0,
    ).fit(X, y)
    assert np.sum(model.coef_ == 0.0) >= 3


# --------------------------------------------------------------------------- early stopping
def test_early_stopping_stops_and_restores_the_best_parameters() -> None:
    X, y = make_classification(5000, 8, seed=5)
    model = LR(
        solver="minibatch",
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        tol=1e-4,
        max_iter=500,
        eta0=0.05,
        random_state=0,
    ).fit(X, y)
    hist = model.history_
    assert model.converged_
    assert model.n_iter_[0] < 500
    val = np.asarray(hist.validation_loss)
    assert np.isfinite(val).all()
    best = int(np.argmin(val))
    # It stopped n_iter_no_change epochs after the last improvement by more than tol.
    assert len(val) - 1 - best <= 3 + 1
    assert model.score(X, y) > 0.6


def test_early_stopping_split_is_stratified() -> None:
    y = np.array([0] * 90 + [1] * 10)
    train, val = batches.split_validation(y, 0.2, np.random.default_rng(0))
    assert len(val) == 20
    assert np.sum(y[val] == 1) == 2
    assert set(train).isdisjoint(val)
    assert len(train) + len(val) == 100


# --------------------------------------------------------------------------- partial_fit
def test_partial_fit_needs_classes_on_the_first_call() -> None:
    X, y = make_classification(200, 3)
    model = LR()
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    model.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="not the same"):
        model.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="X has 2 features, but LogisticRegression is expecting 3"):
        model.partial_fit(X[:, :2], y)
    with pytest.raises(ValueError, match="balanced"):
        LR(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


def test_partial_fit_over_chunks_approaches_fit_on_their_concatenation() -> None:
    X, y = make_classification(40_000, 8, seed=7)
    ref = LR(solver="newton", tol=1e-8, backend="numpy").fit(X, y)
    f_opt = _objective(X, y, _params(ref))
    model = LR(eta0=0.01, random_state=0)
    chunks = np.array_split(np.arange(40_000), 8)
    for i, rows in enumerate(chunks):
        model.partial_fit(X[rows], y[rows], classes=[0, 1] if i == 0 else None)
    assert model.n_iter_[0] == 8
    assert len(model.history_.objective) == 8
    assert (_objective(X, y, _params(model)) - f_opt) / f_opt < 0.01
    assert np.mean(model.predict(X) == ref.predict(X)) > 0.97


def test_partial_fit_chunk_with_one_class_and_string_labels() -> None:
    X, y = make_classification(1000, 4, seed=1)
    labels = np.where(y == 1, "spam", "ham")
    model = LR(random_state=0)
    only_ham = labels == "ham"
    model.partial_fit(X[only_ham], labels[only_ham], classes=["spam", "ham"])
    np.testing.assert_array_equal(model.classes_, ["ham", "spam"])
    model.partial_fit(X, labels)
    assert set(model.predict(X)) <= {"ham", "spam"}


def test_partial_fit_after_fit_continues_from_the_fitted_model() -> None:
    X, y = make_classification(2000, 4, seed=2)
    model = LR(solver="newton", backend="numpy").fit(X, y)
    before = _params(model)
    model.set_params(eta0=1e-4)
    model.partial_fit(X, y)
    after = _params(model)
    assert np.linalg.norm(after - before) < 0.05 * np.linalg.norm(before)
    model.fit(X, y)  # fit starts afresh and forgets the partial_fit state
    assert "_partial_state" not in model.__dict__


def test_partial_fit_on_arrays_keeps_the_fitted_feature_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    X, y = make_classification(1000, 3, seed=4)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = LR(solver="lbfgs", backend="numpy").fit(frame, y)
    model.partial_fit(X, y)
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    model.save(tmp_path / "m.glr")
    loaded = gpulogreg.load(tmp_path / "m.glr")
    loaded.partial_fit(X, y)
    assert list(loaded.feature_names_in_) == ["a", "b", "c"]


def test_minibatch_refuses_dask_arrays_before_reading_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    da = pytest.importorskip("dask.array")
    from gpulogreg import _fit

    def no_validation(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the Dask array was validated (computed) before the refusal")

    monkeypatch.setattr(_fit, "prepare_fit_data", no_validation)
    X, y = make_classification(400, 3, seed=1)
    with pytest.raises(ValueError, match="takes no Dask arrays"):
        LR(solver="minibatch").fit(da.from_array(X, chunks=100), y)


# --------------------------------------------------------------------------- checkpoints
class _KilledError(Exception):
    """Stands for the job being killed right after a checkpoint was written."""


def _kill_after_saves(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    import gpulogreg.checkpoint as ckpt

    real = ckpt.save_checkpoint
    calls = {"n": 0}

    def save(path, state):  # type: ignore[no-untyped-def]
        real(path, state)
        calls["n"] += 1
        if calls["n"] == n:
            raise _KilledError

    monkeypatch.setattr(ckpt, "save_checkpoint", save)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_resumed_run_ends_where_the_uninterrupted_run_ends(
    tmp_path, monkeypatch, optimizer: str, early_stopping: bool
) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(3000, 5, seed=11)
    kw = {
        "solver": "minibatch",
        "optimizer": optimizer,
        "learning_rate": "cosine",
        "max_iter": 6,
        "eta0": 0.02,
        "early_stopping": early_stopping,
        "n_iter_no_change": 10,
        "random_state": None,  # the seed is drawn, stored, and reused on resume
    }
    path = str(tmp_path / "run.ckpt.npz")
    _kill_after_saves(monkeypatch, 2)  # killed after epoch 4 (checkpoints every 2)
    with pytest.raises(_KilledError):
        LR(checkpoint_path=path, checkpoint_every=2, **kw).fit(X, y)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state.meta["epoch"] == 4
    assert not state.meta["finished"]
    resumed = LR(checkpoint_path=path, checkpoint_every=2, **kw).fit(X, y)
    seed = state.meta["seed"]
    straight = LR(**{**kw, "random_state": seed}).fit(X, y)
    np.testing.assert_array_equal(_params(resumed), _params(straight))
    assert resumed.n_iter_[0] == straight.n_iter_[0] == 6
    np.testing.assert_array_equal(resumed.history_.objective, straight.history_.objective)
    np.testing.assert_array_equal(
        resumed.history_.validation_loss, straight.history_.validation_loss
    )
    # The finished checkpoint: a further fit returns the same model at once.
    again = LR(checkpoint_path=path, checkpoint_every=2, **kw).fit(X, y)
    np.testing.assert_array_equal(_params(again), _params(straight))
    assert load_checkpoint(path).meta["finished"]


@pytest.mark.parametrize("multi_class", ["auto", "ovr"])
def test_a_model_resumed_from_a_checkpoint_round_trips_bit_exactly(
    tmp_path, monkeypatch, multi_class: str
) -> None:  # type: ignore[no-untyped-def]
    """Issue 10, principle 4: a resumed fit saves and loads bit-exactly, and continues alike."""
    X, y = make_classification(1500, 4, n_classes=3, seed=12)
    kw = {
        "solver": "minibatch",
        "multi_class": multi_class,
        "max_iter": 4,
        "eta0": 0.02,
        "early_stopping": True,
        "n_iter_no_change": 10,
        "checkpoint_path": str(tmp_path / "run.ckpt"),
        "random_state": None,
    }
    _kill_after_saves(monkeypatch, 1)
    with pytest.raises(_KilledError):
        LR(**kw).fit(X, y)
    monkeypatch.undo()
    resumed = _quiet_fit(LR(**kw), X, y)
    resumed.save(tmp_path / "m.glr")
    loaded = gpulogreg.load(tmp_path / "m.glr")
    assert_same_fit(loaded, resumed)
    assert loaded.predict_proba(X).tobytes() == resumed.predict_proba(X).tobytes()
    for model in (resumed, loaded):
        model.set_params(random_state=5)
        model.partial_fit(X[:500], y[:500])
    assert_same_fit(loaded, resumed)


def test_checkpoint_file_is_pickle_free_and_written_atomically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(1000, 3, seed=1)
    path = tmp_path / "c.npz"
    LR(solver="minibatch", max_iter=3, learning_rate="cosine", checkpoint_path=str(path)).fit(X, y)
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # no temporary file left
    with np.load(path, allow_pickle=False) as npz:
        assert {"arrays/params", "arrays/adam_m", "arrays/adam_v", "metadata.json"} <= set(
            npz.files
        )
        meta = json.loads(npz["metadata.json"])
    assert meta["format"] == "gpulogreg-checkpoint"
    assert meta["epoch"] == 3
    assert meta["rng_state"]["bit_generator"] == "PCG64"


def test_checkpoint_for_another_problem_or_corrupt_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(1000, 3, seed=1)
    path = str(tmp_path / "c.npz")
    LR(solver="minibatch", max_iter=2, checkpoint_path=path).fit(X, y)
    with pytest.raises(CheckpointError, match=r"different fit.*batch_size"):
        LR(solver="minibatch", max_iter=2, batch_size=64, checkpoint_path=path).fit(X, y)
    with pytest.raises(CheckpointError, match="n_features"):
        LR(solver="minibatch", max_iter=2, checkpoint_path=path).fit(X[:, :2], y)
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        LR(solver="minibatch", max_iter=2, checkpoint_path=path).fit(X, y)
    np.savez(path, params=np.zeros(4))
    with pytest.raises(CheckpointError, match="not a gpulogreg checkpoint"):
        load_checkpoint(path)
    np.savez(path, params=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_a_checkpoint_of_other_data_with_the_same_shape_is_refused(tmp_path, source) -> None:  # type: ignore[no-untyped-def]
    """A finished checkpoint must not be handed back as the fit of different data."""
    X, y = make_classification(1000, 3, seed=1)
    X2, y2 = make_classification(1000, 3, seed=2)  # same shape, classes and settings
    if source == "dataset":
        data, other = (Dataset.from_arrays(X, y),), (Dataset.from_arrays(X2, y2),)
    else:
        data, other = (X, y), (X2, y2)
    path = str(tmp_path / "c.ckpt")
    kw = {"solver": "minibatch", "max_iter": 2, "checkpoint_path": path, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 epochs do not converge: not the point here
        first = LR(**kw).fit(*data)
        again = LR(**kw).fit(*data)  # the same data: the finished run is resumed as it is
        np.testing.assert_array_equal(again.coef_, first.coef_)
        with pytest.raises(CheckpointError, match=r"differs in: data"):
            LR(**kw).fit(*other)


def test_checkpoint_of_an_older_format_is_refused_with_advice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A version-1 checkpoint (an .npz with a ``__metadata__`` array): delete it, not resume."""
    path = tmp_path / "old.npz"
    meta = {"format": "gpulogreg-checkpoint", "format_version": 1, "epoch": 2}
    np.savez(
        path,
        params=np.zeros(4),
        __metadata__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    )
    with pytest.raises(CheckpointError, match=r"older gpulogreg.*delete it"):
        load_checkpoint(path)
    X, y = make_classification(500, 3, seed=1)
    with pytest.raises(CheckpointError, match=r"older gpulogreg.*delete it"):
        LR(solver="minibatch", max_iter=2, checkpoint_path=str(path)).fit(X, y)


# --------------------------------------------------------------------------- streaming a Dataset
def test_minibatch_streams_a_dataset_from_npy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(30_000, 8, seed=12, dtype=np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    ref = _quiet_fit(LR(solver="newton", tol=1e-8, backend="numpy"), X, y)
    f_opt = _objective(X, y, _params(ref))
    ds = Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", chunk_rows=4000)
    kw = {
        "solver": "minibatch",
        "learning_rate": "cosine",
        "eta0": 0.01,
        "max_iter": 10,
        "random_state": 0,
    }
    model = LR(**kw).fit(ds)
    assert (_objective(X, y, _params(model)) - f_opt) / f_opt < 1e-3
    assert model.objective_ == pytest.approx(_objective(X, y, _params(model)), rel=1e-6)
    assert model.backend_.startswith("chunked(")
    # a small shuffle window (one chunk) still converges
    old = batches.SHUFFLE_WINDOW_BYTES
    try:
        batches.SHUFFLE_WINDOW_BYTES = 1
        small = LR(**kw).fit(ds)
    finally:
        batches.SHUFFLE_WINDOW_BYTES = old
    assert (_objective(X, y, _params(small)) - f_opt) / f_opt < 1e-3
    # early stopping holds out whole chunks
    es = LR(
        solver="minibatch",
        early_stopping=True,
        n_iter_no_change=2,
        tol=1e-3,
        max_iter=200,
        random_state=0,
    ).fit(ds)
    assert es.converged_
    assert es.n_iter_[0] < 200
    assert np.isfinite(es.history_.validation_loss).all()


def test_dataset_minibatch_checkpoint_resume(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(8000, 4, seed=13)
    ds = Dataset.from_arrays(X, y, chunk_rows=1000)
    kw = {
        "solver": "minibatch",
        "learning_rate": "cosine",
        "max_iter": 4,
        "early_stopping": True,
        "n_iter_no_change": 10,
        "random_state": 5,
    }
    path = str(tmp_path / "d.npz")
    _kill_after_saves(monkeypatch, 2)
    with pytest.raises(_KilledError):
        LR(checkpoint_path=path, **kw).fit(ds)
    monkeypatch.undo()
    resumed = LR(checkpoint_path=path, **kw).fit(ds)
    straight = LR(**kw).fit(ds)
    np.testing.assert_array_equal(_params(resumed), _params(straight))


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"learning_rate": "optimal"}, "learning_rate"),
        ({"eta0": -1.0}, "eta0"),
        ({"momentum": 1.0}, "momentum"),
        ({"validation_fraction": 1.0, "early_stopping": True}, "validation_fraction"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
    ],
)
def test_invalid_minibatch_parameters(params: dict, message: str) -> None:  # type: ignore[type-arg]
    X, y = make_classification(100, 3)
    with pytest.raises(ValueError, match=message):
        LR(solver="minibatch", **params).fit(X, y)


def test_verbose_prints_epoch_progress(capsys) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(1000, 3)
    LR(solver="minibatch", max_iter=2, learning_rate="cosine", verbose=1).fit(X, y)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err
    assert "objective~" in err
    assert "cosine schedule" in err


# --------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_minibatch_and_streaming_match_the_cpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cupy = pytest.importorskip("cupy")
    X, y = make_classification(20_000, 10, seed=3)
    kw = {"solver": "minibatch", "learning_rate": "cosine", "max_iter": 3, "random_state": 0}
    cpu = LR(device="cpu", backend="numpy", **kw).fit(X, y)
    gpu = LR(device="gpu", **kw).fit(cupy.asarray(X), cupy.asarray(y))
    np.testing.assert_allclose(_params(gpu), _params(cpu), rtol=1e-6, atol=1e-9)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    ds = Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", chunk_rows=3000)
    ref = LR(solver="newton", tol=1e-10, backend="numpy").fit(X, y)
    streamed = LR(solver="newton", tol=1e-10, device="gpu").fit(ds)
    assert streamed.backend_ == "chunked(cupy)"
    np.testing.assert_allclose(_params(streamed), _params(ref), rtol=1e-6)
