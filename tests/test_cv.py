"""LogisticRegressionCV: scikit-learn's results and layout, folds as weights, every data kind."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gpulogreg import LogisticRegression, LogisticRegressionCV
from gpulogreg._cv import MeanScorer, stratified_folds
from gpulogreg._layout import ParamLayout
from gpulogreg.backends import _numba_kernels as nk
from gpulogreg.backends._numba_folds import folds_loss_grad
from gpulogreg.backends.folds import ArrayFolds, FoldWeights, NumbaFolds, hash_folds

sklearn = pytest.importorskip("sklearn", minversion="1.8")
from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV as SklearnCV  # noqa: E402
from sklearn.model_selection import KFold, PredefinedSplit, StratifiedKFold  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def _standardised(loader):  # type: ignore[no-untyped-def]
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _sklearn_fit(X, y, sample_weight=None, **params):  # type: ignore[no-untyped-def]
    """scikit-learn's LogisticRegressionCV fitted to 1e-10, in its 1.10 layout by default."""
    defaults = {
        "l1_ratios": (0.0,),
        "use_legacy_attributes": False,
        "tol": 1e-10,
        "max_iter": 10000,
        "scoring": None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its solver's ConvergenceWarnings at weak penalties
        return SklearnCV(**{**defaults, **params}).fit(X, y, sample_weight=sample_weight)


def _problem(n=600, p=6, k=2, seed=0, dtype=np.float64):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(dtype)
    W = rng.standard_normal((k, p))
    y = (X @ W.T + rng.gumbel(size=(n, k))).argmax(axis=1) if k > 2 else (X @ W[0] > 0)
    flip = rng.random(n) < 0.1
    y = np.where(flip, rng.integers(0, max(k, 2), n), y.astype(int))
    return X, y


# --------------------------------------------------------------------------- acceptance
@pytest.mark.parametrize("loader", [load_breast_cancer, load_iris])
def test_same_choice_and_coefficients_as_sklearn(loader) -> None:  # type: ignore[no-untyped-def]
    X, y = _standardised(loader)
    folds = list(StratifiedKFold(5).split(X, y))
    theirs = _sklearn_fit(X, y, Cs=10, cv=folds, scoring="neg_log_loss")
    ours = LogisticRegressionCV(Cs=10, cv=folds, scoring="neg_log_loss", tol=1e-10).fit(X, y)
    assert ours.C_ == theirs.C_
    assert ours.l1_ratio_ == theirs.l1_ratio_ == 0.0
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, atol=1e-4)
    np.testing.assert_array_equal(ours.Cs_, theirs.Cs_)
    np.testing.assert_array_equal(ours.l1_ratios_, theirs.l1_ratios_)
    for name in ("scores_", "coefs_paths_", "n_iter_"):
        assert getattr(ours, name).shape == getattr(theirs, name).shape, name
    np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=1e-3)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_legacy_attributes_have_sklearns_layout() -> None:
    for loader in (load_breast_cancer, load_iris):
        X, y = _standardised(loader)
        params = {"Cs": 3, "cv": 4, "use_legacy_attributes": True}
        theirs = _sklearn_fit(X, y, **params)
        ours = LogisticRegressionCV(**params, tol=1e-10).fit(X, y)
        for name in ("scores_", "coefs_paths_"):
            mine, sk = getattr(ours, name), getattr(theirs, name)
            assert list(mine) == list(sk)
            assert all(mine[k].shape == sk[k].shape for k in sk), name
        assert ours.n_iter_.shape == theirs.n_iter_.shape
        assert ours.C_.shape == theirs.C_.shape
        assert ours.l1_ratio_.shape == theirs.l1_ratio_.shape
        key = next(iter(theirs.scores_))
        np.testing.assert_allclose(ours.scores_[key], theirs.scores_[key], atol=1e-3)


def test_default_scores_are_sklearns_accuracy_on_the_same_folds() -> None:
    X, y = _standardised(load_breast_cancer)
    theirs = _sklearn_fit(X, y, Cs=4, cv=5)
    ours = LogisticRegressionCV(Cs=4, cv=5, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=1e-12)
    assert ours.C_ == theirs.C_


@pytest.mark.parametrize("weighted", [False, True])
def test_roc_auc_and_sample_weights_as_sklearn(weighted: bool) -> None:
    X, y = _problem(n=400, seed=3)
    w = np.random.default_rng(1).uniform(0.2, 3.0, X.shape[0]) if weighted else None
    params = {"Cs": [0.01, 0.1, 1.0], "cv": 3, "scoring": "roc_auc", "class_weight": "balanced"}
    theirs = _sklearn_fit(X, y, w, **params)
    ours = LogisticRegressionCV(**params, tol=1e-10).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=1e-8)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-5)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-8)


def test_a_scorer_name_of_sklearn_and_a_callable() -> None:
    X, y = _problem(n=300, k=3, seed=4)
    theirs = _sklearn_fit(X, y, Cs=3, cv=3, scoring="balanced_accuracy")
    ours = LogisticRegressionCV(Cs=3, cv=3, scoring="balanced_accuracy", tol=1e-10).fit(X, y)
    np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=1e-12)

    seen = []

    def scorer(estimator, X_test, y_test):  # type: ignore[no-untyped-def]
        seen.append(X_test.shape[0])
        return float((estimator.predict(X_test) == y_test).mean())

    by_callable = LogisticRegressionCV(Cs=3, cv=3, scoring=scorer, tol=1e-10).fit(X, y)
    default = LogisticRegressionCV(Cs=3, cv=3, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(by_callable.scores_, default.scores_, atol=1e-12)
    assert sorted(seen) == sorted([100] * 9)


# --------------------------------------------------------------------------- folds as weights
@pytest.mark.parametrize("k", [2, 3])
def test_each_path_point_is_the_plain_fit_on_the_training_rows(k: int) -> None:
    X, y = _problem(n=500, k=k, seed=5)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    Cs = [0.05, 1.0, 20.0]
    cv = LogisticRegressionCV(Cs=Cs, cv=folds, tol=1e-10, solver="lbfgs").fit(X, y)
    for f, (train, _) in enumerate(folds):
        for c, C in enumerate(Cs):
            plain = LogisticRegression(C=C, tol=1e-10, solver="lbfgs").fit(X[train], y[train])
            path = cv.coefs_paths_[f, 0, c]
            np.testing.assert_allclose(path[:, :-1], plain.coef_, atol=1e-7)
            np.testing.assert_allclose(path[:, -1], plain.intercept_, atol=1e-7)


def test_refit_starts_from_the_folds_mean_and_refit_false_is_that_mean() -> None:
    X, y = _problem(n=400, seed=6)
    cv = LogisticRegressionCV(Cs=[0.1, 1.0, 10.0], cv=3, refit=False, tol=1e-10).fit(X, y)
    best = [np.unravel_index(np.argmax(s), s.shape) for s in cv.scores_]
    mean = np.mean([cv.coefs_paths_[f, li, c] for f, (li, c) in enumerate(best)], axis=0)
    np.testing.assert_allclose(cv.coef_, mean[:, :-1])
    np.testing.assert_allclose(cv.intercept_, mean[:, -1])
    assert pytest.approx(np.mean([cv.Cs_[c] for _, c in best])) == cv.C_
    refitted = LogisticRegressionCV(Cs=[0.1, 1.0, 10.0], cv=3, tol=1e-10).fit(X, y)
    plain = LogisticRegression(C=refitted.C_, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(refitted.coef_, plain.coef_, atol=1e-7)


def test_repeated_training_rows_count_as_often_as_they_appear() -> None:
    X, y = _problem(n=200, seed=7)
    rows = np.arange(200)
    train = np.r_[rows[:150], rows[:20]]  # 20 rows twice
    cv = LogisticRegressionCV(Cs=[1.0], cv=[(train, rows[150:])], tol=1e-10).fit(X, y)
    plain = LogisticRegression(tol=1e-10).fit(X[train], y[train])
    np.testing.assert_allclose(cv.coefs_paths_[0, 0, 0, :, :-1], plain.coef_, atol=1e-7)


def test_elastic_net_grid_and_one_vs_rest() -> None:
    X, y = _problem(n=300, k=3, seed=8)
    folds = list(StratifiedKFold(3).split(X, y))
    cv = LogisticRegressionCV(Cs=[0.5, 5.0], l1_ratios=(0.0, 0.5, 1.0), cv=folds, tol=1e-9).fit(
        X, y
    )
    assert cv.scores_.shape == (3, 3, 2)
    assert cv.coefs_paths_.shape == (3, 3, 2, 3, 7)
    train = folds[1][0]
    plain = LogisticRegression(C=0.5, l1_ratio=1.0, tol=1e-9).fit(X[train], y[train])
    np.testing.assert_allclose(cv.coefs_paths_[1, 2, 0, :, :-1], plain.coef_, atol=1e-6)
    ovr = LogisticRegressionCV(Cs=[1.0], cv=folds, multi_class="ovr", tol=1e-10).fit(X, y)
    plain = LogisticRegression(multi_class="ovr", tol=1e-10).fit(X[train], y[train])
    np.testing.assert_allclose(ovr.coefs_paths_[1, 0, 0, :, :-1], plain.coef_, atol=1e-7)


def test_float32_data_give_float32_coefficients_at_the_float64_optimum() -> None:
    X, y = _problem(n=500, seed=9)
    ours = LogisticRegressionCV(Cs=[1.0], cv=3, tol=1e-9).fit(X.astype(np.float32), y)
    exact = LogisticRegressionCV(Cs=[1.0], cv=3, tol=1e-9).fit(X, y)
    assert ours.coef_.dtype == np.float32
    np.testing.assert_allclose(ours.coef_, exact.coef_, atol=1e-5)


# --------------------------------------------------------------------------- data kinds
@pytest.mark.parametrize("kind", ["numpy-backend", "csr", "dask", "newton"])
def test_every_data_kind_gives_the_dense_result(kind: str) -> None:
    X, y = _problem(n=400, k=3, seed=10)
    params = {"Cs": [0.1, 2.0], "cv": 3, "tol": 1e-10}
    dense = LogisticRegressionCV(**params).fit(X, y)
    data = X
    if kind == "numpy-backend":
        params["backend"] = "numpy"
    elif kind == "csr":
        scipy_sparse = pytest.importorskip("scipy.sparse")
        data = scipy_sparse.csr_matrix(X)
    elif kind == "dask":
        da = pytest.importorskip("dask.array")
        data = da.from_array(X, chunks=(150, -1))
    else:
        params["solver"] = "newton"
    other = LogisticRegressionCV(**params).fit(data, y)
    np.testing.assert_allclose(other.coefs_paths_, dense.coefs_paths_, atol=1e-7)
    np.testing.assert_allclose(other.scores_, dense.scores_, atol=1e-10)
    np.testing.assert_allclose(other.coef_, dense.coef_, atol=1e-7)


# --------------------------------------------------------------------------- the kernels
def _fold_weights(rng, m: int, F: int, counts_dtype=np.uint8):  # type: ignore[no-untyped-def]
    s = rng.random(m)
    s /= s.sum()
    counts = rng.integers(0, 3, (m, F)).astype(counts_dtype)  # 0: held out, 2: a repeated row
    return FoldWeights(s=s, counts=counts, scale=1.0 / (s @ counts))


@pytest.mark.parametrize("n_out", [1, 3, 10])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fold_kernel_is_the_single_model_kernel_per_fold(n_out: int, dtype) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    m, n, F = 5000, 7, 5
    X = rng.standard_normal((m, n)).astype(dtype)
    y = rng.integers(0, max(n_out, 2), m).astype(np.int32)
    weights = _fold_weights(rng, m, F, np.int32 if n_out == 3 else np.uint8)
    folds = np.array([4, 0, 2], dtype=np.int64)
    W = rng.standard_normal((len(folds) * n_out, n))
    bias = rng.standard_normal(len(folds) * n_out)
    out = folds_loss_grad(
        X, y, weights.s, weights.counts, weights.scale, folds, W, bias, n_out, True
    )
    A = len(folds)
    for a, f in enumerate(folds):
        s = weights.column(int(f), np)
        assert s.sum() == pytest.approx(1.0)
        rows = slice(a * n_out, (a + 1) * n_out)
        if n_out == 1:
            single = nk.binary_loss_grad(X, y, s, W[a], float(bias[a]))
        else:
            single = nk.multinomial_loss_grad(X, y, s, W[rows].copy(), bias[rows].copy())
        grad = out[a * n_out * (n + 1) : (a + 1) * n_out * (n + 1)]
        # Softmax models on float32 data take their products in float32 (float64
        # partial sums): a fold's weights, rounded otherwise than the single
        # model's column, can round a residual to the next float32, and the two
        # kernels may order a float32 dot product's terms differently.
        float32_sums = n_out >= nk.FLOAT32_PRODUCTS_MIN_CLASSES and dtype == np.float32
        rtol, atol, loss_rtol = (2e-6, 1e-8, 1e-8) if float32_sums else (1e-10, 1e-13, 1e-12)
        np.testing.assert_allclose(grad, single[:-1], rtol=rtol, atol=atol)
        assert out[A * n_out * (n + 1) + a] == pytest.approx(single[-1], rel=loss_rtol)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_array_evaluator_agrees_with_the_numba_one(n_classes: int) -> None:
    rng = np.random.default_rng(13)
    m, n, F = 3000, 5, 3
    X = rng.standard_normal((m, n))
    y = rng.integers(0, n_classes, m)
    weights = _fold_weights(rng, m, F)
    layout = ParamLayout.for_classes(n, n_classes, True)
    params = [rng.standard_normal(layout.n_params) for _ in range(2)]
    fused = NumbaFolds(X, y, weights, layout).evaluate([2, 0], params, with_grad=True)
    plain = ArrayFolds(X, y, weights, layout).evaluate([2, 0], params, with_grad=True)
    for (l1, g1), (l2, g2) in zip(fused, plain, strict=True):
        assert float(l1) == pytest.approx(float(l2), rel=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-13)


def test_stratified_folds_are_sklearns() -> None:
    rng = np.random.default_rng(14)
    for n_splits, counts in ((5, [40, 23, 7]), (3, [10, 10]), (4, [4, 9, 30, 5])):
        y = rng.permutation(np.repeat(np.arange(len(counts)), counts))
        y = np.r_[y[y == len(counts) - 1][:1], y[y != len(counts) - 1], y[y == len(counts) - 1][1:]]
        assert y[0] == y.max()  # scikit-learn numbers the classes by first appearance
        ours = stratified_folds(y, n_splits)
        theirs = list(StratifiedKFold(n_splits).split(np.zeros((len(y), 1)), y))
        for (a, b), (c, d) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


# --------------------------------------------------------------------------- persistence, errors
def test_save_writes_the_final_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gpulogreg

    X, y = _problem(n=300, k=3, seed=15)
    cv = LogisticRegressionCV(Cs=3, cv=3).fit(X, y)
    cv.save(tmp_path / "m.glr")
    loaded = gpulogreg.load(tmp_path / "m.glr")
    assert type(loaded) is LogisticRegression
    assert loaded.C == cv.C_
    np.testing.assert_array_equal(loaded.predict_proba(X), cv.predict_proba(X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"Cs": 0}, "Cs must be a positive int"),
        ({"Cs": [1.0, -2.0]}, "Cs must hold positive numbers"),
        ({"l1_ratios": (0.5, 2.0)}, "l1_ratios must be an array-like of numbers between 0 and 1"),
        ({"l1_ratios": (0.5,), "solver": "lbfgs"}, "supports only"),
        ({"solver": "minibatch"}, "stochastic"),
        (
            {"cv": [(np.arange(10), np.arange(10, 400))], "Cs": [1.0], "class_weight": {0: 0.0}},
            None,
        ),
        ({"cv": [(np.arange(390), np.arange(400, 410))]}, "out of range"),
        ({"cv": "three"}, "cv must be"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(params, message) -> None:  # type: ignore[no-untyped-def]
    X, y = _problem(n=400, seed=16)
    if message is None:  # the only training rows weigh nothing
        y = np.r_[np.zeros(10, int), y[10:]]
        message = "sum to 0"
    with pytest.raises(ValueError, match=message):
        LogisticRegressionCV(**params).fit(X, y)


def test_roc_auc_for_more_classes_is_refused() -> None:
    X, y = _problem(n=200, k=3, seed=17)
    with pytest.raises(ValueError, match="roc_auc_ovr"):
        LogisticRegressionCV(scoring="roc_auc").fit(X, y)


@pytest.mark.parametrize(
    ("k", "multi_class", "weighted", "solver", "l1_ratios"),
    [
        (2, "auto", False, "auto", (0.0,)),
        (3, "auto", True, "lbfgs", (0.0,)),
        (3, "ovr", False, "newton", (0.0,)),
        (2, "auto", True, "auto", (0.0, 1.0)),
    ],
)
def test_a_dataset_is_the_in_memory_fit_on_its_hashed_folds(
    k: int, multi_class: str, weighted: bool, solver: str, l1_ratios: tuple[float, ...]
) -> None:
    import gpulogreg

    X, y = _problem(n=2500, k=k, seed=19)
    w = np.random.default_rng(2).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    dataset = gpulogreg.Dataset.from_arrays(X, y, sample_weight=w, chunk_rows=600)
    params = {
        "Cs": [0.02, 1.0],
        "scoring": "neg_log_loss",
        "tol": 1e-10,
        "multi_class": multi_class,
    }
    out_of_core = LogisticRegressionCV(**params, cv=4).fit(dataset)
    held_out = hash_folds(0, X.shape[0], 4)
    folds = [(np.flatnonzero(held_out != f), np.flatnonzero(held_out == f)) for f in range(4)]
    in_memory = LogisticRegressionCV(**params, cv=folds).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(out_of_core.coefs_paths_, in_memory.coefs_paths_, atol=1e-9)
    np.testing.assert_allclose(out_of_core.scores_, in_memory.scores_, atol=1e-12)
    assert out_of_core.C_ == in_memory.C_
    np.testing.assert_allclose(out_of_core.coef_, in_memory.coef_, atol=1e-9)
    assert out_of_core.backend_ == "chunked(numba)"
    assert out_of_core.n_cv_passes_ > 2
    assert 0 < out_of_core.n_passes_ < out_of_core.n_cv_passes_ - 2  # the refit's own passes
    assert np.bincount(held_out).min() > 500  # the hash deals the rows evenly


@pytest.mark.parametrize("points_per_pass", [None, 1])
def test_a_dataset_scores_roc_auc_as_the_in_memory_fit(
    points_per_pass: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpulogreg
    import gpulogreg._cv

    X, y = _problem(n=1500, seed=26)
    w = np.random.default_rng(6).uniform(0.5, 2.0, X.shape[0])
    test_fold = np.random.default_rng(7).choice([-1, 0, 1, 2], size=X.shape[0])
    if points_per_pass is not None:  # the buffer holds one path point: a pass per point
        monkeypatch.setattr(gpulogreg._cv, "ROC_AUC_BUFFER_BYTES", 8 * X.shape[0])
    dataset = gpulogreg.Dataset.from_arrays(X, y, sample_weight=w, chunk_rows=400)
    params = {"Cs": [0.001, 0.05, 1.0], "l1_ratios": [0.0, 0.5], "scoring": "roc_auc", "tol": 1e-10}
    out_of_core = LogisticRegressionCV(**params, cv=PredefinedSplit(test_fold)).fit(dataset)
    in_memory = LogisticRegressionCV(**params, cv=PredefinedSplit(test_fold)).fit(
        X, y, sample_weight=w
    )
    np.testing.assert_allclose(out_of_core.scores_, in_memory.scores_, atol=1e-12)
    assert len(np.unique(in_memory.scores_[0])) > 1  # the AUC tells the path points apart
    assert out_of_core.C_ == in_memory.C_
    assert out_of_core.l1_ratio_ == in_memory.l1_ratio_
    np.testing.assert_allclose(out_of_core.coef_, in_memory.coef_, atol=1e-9)
    score_passes = 1 if points_per_pass is None else 6  # 3 Cs x 2 l1_ratios
    assert out_of_core.n_cv_passes_ - score_passes == _passes_without_scores(
        dataset, params, test_fold
    )


def _passes_without_scores(dataset, params, test_fold):  # type: ignore[no-untyped-def]
    """The passes of the same Dataset CV scored by accuracy (one scoring pass)."""
    accuracy = {**params, "scoring": "accuracy"}
    return (
        LogisticRegressionCV(**accuracy, cv=PredefinedSplit(test_fold)).fit(dataset).n_cv_passes_
        - 1
    )


@pytest.mark.parametrize("k", [2, 3])
def test_a_dataset_takes_a_fold_column_as_predefined_split(k: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gpulogreg

    X, y = _problem(n=1500, k=k, seed=23)
    rng = np.random.default_rng(5)
    test_fold = rng.choice([-1, 3, 7, 11], size=X.shape[0])  # any labels; -1: never held out
    np.save(tmp_path / "folds.npy", test_fold)
    column = np.load(tmp_path / "folds.npy", mmap_mode="r")  # read by ranges, never whole
    dataset = gpulogreg.Dataset.from_arrays(X, y, chunk_rows=400)
    params = {"Cs": [0.05, 1.0], "scoring": "neg_log_loss", "tol": 1e-10}
    out_of_core = LogisticRegressionCV(**params, cv=PredefinedSplit(column)).fit(dataset)
    in_memory = LogisticRegressionCV(**params, cv=PredefinedSplit(test_fold)).fit(X, y)
    assert out_of_core.scores_.shape[0] == 3  # labels 3, 7, 11 in sorted order
    np.testing.assert_allclose(out_of_core.coefs_paths_, in_memory.coefs_paths_, atol=1e-9)
    np.testing.assert_allclose(out_of_core.scores_, in_memory.scores_, atol=1e-12)
    assert out_of_core.C_ == in_memory.C_
    np.testing.assert_allclose(out_of_core.coef_, in_memory.coef_, atol=1e-9)


@pytest.mark.parametrize(
    ("test_fold", "message"),
    [
        (np.zeros(299, dtype=int), r"shape \(299,\); a Dataset of 300 rows"),
        (np.full(300, 0.5), "fold labels are integers"),
        (np.full(300, -1), "only -1"),
        (np.full(300, 4), r"fold 0 \(test_fold label 4\): the training rows"),  # one fold
    ],
)
def test_a_bad_fold_column_is_named(test_fold, message) -> None:  # type: ignore[no-untyped-def]
    import gpulogreg

    X, y = _problem(n=300, seed=24)

    class Given:  # a splitter with a fold column, as PredefinedSplit (which checks less)
        def __init__(self, test_fold: np.ndarray) -> None:
            self.test_fold = test_fold

        def split(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError("a Dataset's folds are not split in memory")

    with pytest.raises(ValueError, match=message):
        LogisticRegressionCV(Cs=2, cv=Given(test_fold)).fit(gpulogreg.Dataset.from_arrays(X, y))


def test_a_given_fold_whose_held_out_rows_weigh_nothing_is_named() -> None:
    import gpulogreg

    X, y = _problem(n=300, seed=25)
    test_fold = np.arange(300) % 3 * 4  # labels 0, 4, 8
    w = np.where(test_fold == 4, 0.0, 1.0)
    dataset = gpulogreg.Dataset.from_arrays(X, y, sample_weight=w)
    message = (
        r"fold 1 \(test_fold label 4\): no held-out rows \(or their weights sum to 0\) "
        r"among the Dataset's 300 rows$"  # no "use fewer folds": the folds are given
    )
    with pytest.raises(ValueError, match=message):
        LogisticRegressionCV(Cs=2, cv=PredefinedSplit(test_fold)).fit(dataset)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cv": KFold(3)}, "cv=int"),
        (
            {"scoring": "balanced_accuracy"},
            r"'neg_log_loss' \(added up chunk by chunk\) or 'roc_auc'",
        ),
    ],
)
def test_what_a_dataset_takes(params, message) -> None:  # type: ignore[no-untyped-def]
    import gpulogreg

    X, y = _problem(n=300, seed=20)
    with pytest.raises(ValueError, match=message):
        LogisticRegressionCV(**params).fit(gpulogreg.Dataset.from_arrays(X, y))


def test_a_dataset_takes_any_integer_cv_and_names_an_empty_fold() -> None:
    import gpulogreg

    X, y = _problem(n=400, seed=21)
    fitted = LogisticRegressionCV(Cs=2, cv=np.int64(3)).fit(gpulogreg.Dataset.from_arrays(X, y))
    assert fitted.scores_.shape == (3, 1, 2)
    assert np.bincount(hash_folds(0, 10, 5), minlength=5)[1] == 0  # 10 rows leave fold 1 empty
    small = gpulogreg.Dataset.from_arrays(X[:10], np.r_[0, 1].repeat(5))
    with pytest.raises(ValueError, match="fold 1 of cv=5: no held-out rows"):
        LogisticRegressionCV(Cs=2, cv=5).fit(small)


def test_one_vs_rest_log_loss_does_not_underflow() -> None:
    scorer = MeanScorer("neg_log_loss", ovr=True)
    Z = np.full((4, 2, 3), -800.0)  # every sigmoid below the smallest double
    values = scorer.row_values(Z, np.array([0, 1, 2, 0]))
    np.testing.assert_allclose(values, np.log(1.0 / 3.0))  # normalised: a third each


def test_a_failing_pass_stops_every_fold_and_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _problem(n=300, seed=18)
    calls = []
    evaluate = NumbaFolds.evaluate

    def failing(self, folds, params, *, with_grad):  # type: ignore[no-untyped-def]
        calls.append(len(folds))
        if len(calls) == 5:
            raise MemoryError("the fifth pass failed")
        return evaluate(self, folds, params, with_grad=with_grad)

    monkeypatch.setattr(NumbaFolds, "evaluate", failing)
    with pytest.raises(MemoryError, match="fifth pass"):
        LogisticRegressionCV(Cs=2, cv=3).fit(X, y)
    assert len(calls) == 5
    assert calls[0] == 3


def test_sklearn_scorers_get_all_labels_and_the_positive_class() -> None:
    X, y = _problem(n=300, seed=21)
    labels = np.where(y == 1, "yes", "no")
    theirs = _sklearn_fit(X, labels, Cs=2, cv=3, scoring="f1")
    ours = LogisticRegressionCV(Cs=2, cv=3, scoring="f1", tol=1e-10).fit(X, labels)
    np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=1e-12)
    X3, y3 = _problem(n=60, k=3, seed=22)
    y3[:3] = 2  # class 2 only in the first fold's test rows
    y3[3:] = np.where(y3[3:] == 2, 1, y3[3:])
    folds = [(np.arange(3, 60), np.arange(3)), (np.arange(30), np.arange(30, 60))]
    theirs = _sklearn_fit(X3, y3, Cs=2, cv=folds, scoring="f1_macro")
    ours = LogisticRegressionCV(Cs=2, cv=folds, scoring="f1_macro", tol=1e-10).fit(X3, y3)
    np.testing.assert_allclose(ours.scores_, theirs.scores_, atol=1e-12)


def test_an_interrupt_stops_the_cross_validation_without_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    X, y = _problem(n=300, seed=23)
    calls = []
    evaluate = NumbaFolds.evaluate

    def interrupted(self, folds, params, *, with_grad):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return evaluate(self, folds, params, with_grad=with_grad)

    monkeypatch.setattr(NumbaFolds, "evaluate", interrupted)
    raised = []

    def run() -> None:
        try:
            LogisticRegressionCV(Cs=2, cv=3).fit(X, y)
        except KeyboardInterrupt:
            raised.append(True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the cross-validation hung after the interrupt"
    assert raised == [True]


def test_review_cases_scalar_weights_warnings_and_refusals() -> None:
    X, y = _problem(n=300, seed=24)
    plain = LogisticRegressionCV(Cs=2, cv=3, tol=1e-10).fit(X, y, sample_weight=np.full(300, 2.0))
    scalar = LogisticRegressionCV(Cs=2, cv=3, tol=1e-10).fit(X, y, sample_weight=2.0)
    np.testing.assert_allclose(scalar.coefs_paths_, plain.coefs_paths_, atol=1e-9)
    np.testing.assert_allclose(scalar.scores_, plain.scores_)
    with pytest.warns(FutureWarning) as caught:
        LogisticRegressionCV(Cs=2, cv=3, penalty="l2").fit(X, y)
    assert caught[0].filename == __file__
    assert not hasattr(plain, "partial_fit")
    for Cs in (2.5, True, ["a"]):
        with pytest.raises(ValueError, match="Cs must be"):
            LogisticRegressionCV(Cs=Cs).fit(X, y)
    with pytest.raises(ValueError, match="l1_ratios must be"):
        LogisticRegressionCV(l1_ratios=0.5).fit(X, y)
    with pytest.raises(ValueError, match="not a \\(train, test\\) pair"):
        LogisticRegressionCV(cv=[(np.arange(10), np.arange(10, 20), 3)]).fit(X, y)


def test_passes_count_the_reads_of_x() -> None:
    da = pytest.importorskip("dask.array")
    X, y = _problem(n=300, seed=25)
    shared = LogisticRegressionCV(Cs=2, cv=3, tol=1e-10).fit(X, y)
    per_fold = LogisticRegressionCV(Cs=2, cv=3, tol=1e-10).fit(da.from_array(X, chunks=100), y)
    assert per_fold.n_cv_passes_ > 2 * shared.n_cv_passes_  # no shared pass on Dask


def test_a_dataframe_keeps_its_names_for_a_sklearn_scorer() -> None:
    pd = pytest.importorskip("pandas")
    X, y = _problem(n=200, seed=26)
    frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cv = LogisticRegressionCV(Cs=2, cv=3, scoring="balanced_accuracy").fit(frame, y)
        cv.score(frame, y)


def test_lbfgs_carries_its_curvature_along_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs of the last C (the L2 part exchanged) start the next fit: the same
    solutions in fewer passes over X."""
    import gpulogreg._cv as cv_module
    from gpulogreg.solvers.lbfgs import CurvatureCarry

    X, y = _problem(n=2000, p=8, seed=27)
    params = {"Cs": 8, "cv": 3, "tol": 1e-10, "solver": "lbfgs"}
    carried = LogisticRegressionCV(**params).fit(X, y)

    class Forgetful(CurvatureCarry):
        def restore(self, pairs, objective):  # type: ignore[no-untyped-def]
            """Start every fit with an empty memory."""

    monkeypatch.setattr(cv_module, "CurvatureCarry", Forgetful)
    fresh = LogisticRegressionCV(**params).fit(X, y)
    np.testing.assert_allclose(carried.coefs_paths_, fresh.coefs_paths_, atol=1e-7)
    assert carried.n_cv_passes_ < fresh.n_cv_passes_
