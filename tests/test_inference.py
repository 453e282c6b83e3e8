"""Coefficient inference against statsmodels: Logit, GLM(freq_weights), MNLogit, predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gpulogreg import Dataset, InferenceWarning, LogisticRegression

sm = pytest.importorskip("statsmodels.api")

#: statsmodels' own fits converge to about 1e-10; llnull is numerical there.
RTOL = 1e-6


def _rel(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))


def _unpenalised(**kwargs) -> LogisticRegression:
    return LogisticRegression(C=np.inf, solver="newton", tol=1e-12, max_iter=200, **kwargs)


@pytest.fixture(scope="module")
def spector():
    data = sm.datasets.spector.load_pandas()
    return data.exog.to_numpy(float), data.endog.to_numpy()


@pytest.fixture(scope="module")
def clustered():
    """Generated binary data with a cluster random effect (the cluster tests' data)."""
    rng = np.random.default_rng(7)
    n, k, g = 3000, 5, 40
    groups = rng.integers(0, g, size=n)
    X = rng.normal(size=(n, k))
    effect = rng.normal(scale=0.8, size=g)[groups]
    z = X @ np.linspace(-1, 1, k) + 0.3 + effect
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return X, y, groups


def _assert_matches(ours, theirs) -> None:
    assert _rel(ours.params, theirs.params) < RTOL
    assert _rel(ours.bse, theirs.bse) < RTOL
    assert _rel(ours.tvalues, theirs.tvalues) < RTOL
    assert _rel(ours.pvalues, theirs.pvalues) < RTOL
    assert _rel(ours.conf_int(0.1), theirs.conf_int(0.1)) < RTOL
    assert _rel(ours.cov_params(), theirs.cov_params()) < 1e-5  # element-wise, near-zero terms
    assert _rel(ours.llf, theirs.llf) < RTOL
    assert _rel(ours.aic, theirs.aic) < RTOL
    # statsmodels' GLM calls the log-likelihood BIC bic_llf (its bic is the same in 0.15).
    assert _rel(ours.bic, getattr(theirs, "bic_llf", None) or theirs.bic) < RTOL
    assert _rel(ours.llnull, theirs.llnull) < RTOL
    # GLM results have no prsquared or llr: McFadden's and the LR statistic.
    prsquared = getattr(theirs, "prsquared", None) or theirs.pseudo_rsquared(kind="mcf")
    assert _rel(ours.prsquared, prsquared) < RTOL
    assert _rel(ours.llr, 2.0 * (theirs.llf - theirs.llnull)) < RTOL


# --------------------------------------------------------------------------- binary
@pytest.mark.parametrize("dataset", ["spector", "generated"])
def test_binary_nonrobust_equals_statsmodels_logit(spector, clustered, dataset):
    X, y = spector if dataset == "spector" else clustered[:2]
    result = _unpenalised().fit(X, y).inference(X, y)
    reference = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    _assert_matches(result, reference)
    assert _rel(result.bic, reference.bic) < RTOL
    assert result.llr_pvalue == pytest.approx(reference.llr_pvalue, rel=1e-5)
    assert (result.nobs, result.df_model, result.df_resid) == (
        reference.nobs,
        reference.df_model,
        reference.df_resid,
    )
    assert result.param_names == ["intercept", *(f"x{j}" for j in range(X.shape[1]))]
    assert not result.penalized


def test_float32_data_give_the_same_inference(spector):
    X, y = spector
    result = _unpenalised().fit(X.astype(np.float32), y).inference(X.astype(np.float32), y)
    reference = sm.Logit(y, sm.add_constant(X.astype(np.float32).astype(float))).fit(disp=0)
    assert _rel(result.bse, reference.bse) < 1e-5


def test_frequency_weights_equal_glm_freq_weights(clustered):
    X, y, _ = clustered
    w = np.random.default_rng(3).integers(1, 5, size=len(y)).astype(float)
    result = _unpenalised().fit(X, y, sample_weight=w).inference(X, y, sample_weight=w)
    reference = sm.GLM(y, sm.add_constant(X), family=sm.families.Binomial(), freq_weights=w).fit(
        tol=1e-13
    )
    _assert_matches(result, reference)
    assert _rel(result.bic, reference.bic_llf) < RTOL
    assert result.nobs == reference.nobs  # rows, as statsmodels' GLM
    assert result.df_resid == pytest.approx(reference.df_resid)
    # Integer weights are duplicated rows.
    rows = np.repeat(np.arange(len(y)), w.astype(int))
    duplicated = _unpenalised().fit(X[rows], y[rows]).inference(X[rows], y[rows])
    assert _rel(result.bse, duplicated.bse) < 1e-8


def test_without_intercept(spector):
    X, y = spector
    result = _unpenalised(fit_intercept=False).fit(X, y).inference(X, y)
    reference = sm.Logit(y, X).fit(disp=0)
    _assert_matches(result, reference)
    assert result.param_names == ["x0", "x1", "x2"]


def test_dataframe_names_the_parameters(spector):
    pd = pytest.importorskip("pandas")
    X, y = spector
    frame = pd.DataFrame(X, columns=["gpa", "tuce", "psi"])
    model = _unpenalised().fit(frame, y)
    result = model.inference(frame, y)
    assert result.param_names == ["intercept", "gpa", "tuce", "psi"]
    table = result.to_frame()
    assert list(table.index) == result.param_names
    np.testing.assert_allclose(table["std err"], result.bse)
    assert "gpa" in result.summary()
    with pytest.raises(ValueError, match="feature names"):
        model.inference(frame[["tuce", "gpa", "psi"]], y)


# --------------------------------------------------------------------------- penalised
def test_penalised_fit_gets_the_laplace_covariance_and_a_warning(spector):
    X, y = spector
    C = 0.5
    model = LogisticRegression(C=C, solver="newton", tol=1e-12).fit(X, y)
    with pytest.warns(InferenceWarning, match="Laplace approximation"):
        result = model.inference(X, y)
    A = np.column_stack([np.ones(len(y)), X])
    beta = np.r_[model.intercept_, model.coef_.ravel()]
    p = 1 / (1 + np.exp(-A @ beta))
    H = (A * (p * (1 - p))[:, None]).T @ A + np.diag([0.0, *([1 / C] * X.shape[1])])
    np.testing.assert_allclose(result.cov_params(), np.linalg.inv(H), rtol=1e-9)
    assert result.penalized
    assert "Laplace" in result.summary()


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_l1_penalties_are_refused(spector, l1_ratio):
    X, y = spector
    model = LogisticRegression(l1_ratio=l1_ratio, C=1.0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: does not matter here
        model.fit(X, y)
    with pytest.raises(ValueError, match="not defined for an L1 or elastic-net penalty"):
        model.inference(X, y)


# --------------------------------------------------------------------------- multinomial
@pytest.fixture(scope="module")
def anes96():
    data = sm.datasets.anes96.load_pandas()
    columns = ["logpopul", "selfLR", "age", "educ", "income"]
    return data.exog[columns].to_numpy(float), data.endog.to_numpy().astype(int)


def test_multinomial_equals_statsmodels_mnlogit(anes96):
    X, y = anes96
    result = _unpenalised().fit(X, y).inference(X, y)
    reference = sm.MNLogit(y, sm.add_constant(X)).fit(disp=0, maxiter=200)
    assert result.params.shape == reference.params.shape == (6, 6)
    assert _rel(result.params, reference.params) < 1e-6
    assert _rel(result.bse, reference.bse) < 1e-6
    assert _rel(result.cov_params(), reference.cov_params()) < 1e-4
    assert _rel(result.llf, reference.llf) < RTOL
    assert _rel(result.llnull, reference.llnull) < RTOL
    assert (result.df_model, result.df_resid) == (reference.df_model, reference.df_resid)
    assert _rel(result.aic, reference.aic) < RTOL
    assert result.to_frame().shape == (36, 6)


def test_penalised_multinomial_is_the_marginal_of_the_laplace_approximation(anes96):
    # The contrasts' covariance, by brute force: the full softmax Hessian plus
    # the penalty, the common intercept shift removed, inverted, transformed.
    X, y = anes96
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    C = 0.3
    model = LogisticRegression(C=C, solver="newton", tol=1e-12).fit(X, y)
    with pytest.warns(InferenceWarning):
        result = model.inference(X, y)
    K, k = 7, X.shape[1] + 1
    A = np.column_stack([np.ones(len(y)), X])
    B = np.column_stack([model.intercept_, model.coef_])  # (K, k), intercept first
    Z = A @ B.T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    H = np.zeros((K * k, K * k))
    for a in range(K):
        for b in range(K):
            h = P[:, a] * ((a == b) - P[:, b])
            H[a * k : (a + 1) * k, b * k : (b + 1) * k] = (A * h[:, None]).T @ A
    H += np.diag(np.tile(np.r_[0.0, np.full(k - 1, 1 / C)], K))
    keep = np.arange(1, K * k)  # fix the first class's intercept: the flat direction
    Sigma = np.zeros((K * k, K * k))
    Sigma[np.ix_(keep, keep)] = np.linalg.inv(H[np.ix_(keep, keep)])
    T = np.hstack([-np.tile(np.eye(k), (K - 1, 1)), np.eye((K - 1) * k)])
    expected = T @ Sigma @ T.T
    np.testing.assert_allclose(result.cov_params(), expected, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(result.params, (B[1:] - B[0]).T, rtol=1e-12)


def test_one_vs_rest_gives_one_binary_result_per_class(anes96):
    X, y = anes96
    labels = np.where(y < 2, "left", np.where(y < 5, "centre", "right"))
    results = _unpenalised(multi_class="ovr").fit(X, labels).inference(X, labels)
    assert [r.positive_class for r in results] == ["centre", "left", "right"]
    for result in results:
        target = (labels == result.positive_class).astype(int)
        reference = sm.Logit(target, sm.add_constant(X)).fit(disp=0)
        _assert_matches(result, reference)


# --------------------------------------------------------------------------- other data
def test_dataset_equals_arrays(clustered):
    X, y, _ = clustered
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    model = _unpenalised().fit(X, y, sample_weight=w)
    expected = model.inference(X, y, sample_weight=w)
    dataset = Dataset.from_arrays(X, y, sample_weight=w, chunk_rows=700)
    result = model.inference(dataset)
    np.testing.assert_allclose(result.bse, expected.bse, rtol=1e-10)
    assert result.llf == pytest.approx(expected.llf, rel=1e-12)
    assert result.llnull == pytest.approx(expected.llnull, rel=1e-12)


def test_dask_equals_numpy(clustered):
    da = pytest.importorskip("dask.array")
    X, y, _ = clustered
    model = _unpenalised().fit(X, y)
    expected = model.inference(X, y)
    result = model.inference(da.from_array(X, chunks=(700, -1)), da.from_array(y, chunks=700))
    np.testing.assert_allclose(result.bse, expected.bse, rtol=1e-10)
    assert result.llf == pytest.approx(expected.llf, rel=1e-12)


# --------------------------------------------------------------------------- singular
def test_collinear_columns_get_nan_and_a_warning_naming_them(spector):
    X, y = spector
    X = np.column_stack([X, 2.0 * X[:, 0]])
    model = LogisticRegression(C=np.inf, solver="lbfgs", tol=1e-8).fit(X, y)
    with pytest.warns(InferenceWarning, match="singular") as record:
        result = model.inference(X, y)
    assert "x0, x3" in str(record[0].message)
    assert np.isnan(result.bse[[1, 4]]).all()
    assert np.isfinite(result.bse[[0, 2, 3]]).all()


def test_a_well_posed_fit_warns_nothing(spector):
    X, y = spector
    model = _unpenalised().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.inference(X, y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cov_type": "HC9"}, "cov_type must be one of"),
        ({"cov_type": "cluster"}, "needs groups"),
        ({"groups": np.zeros(32)}, "groups are for cov_type='cluster'"),
        ({"cov_type": "cluster", "groups": np.zeros(31)}, r"groups must have shape \(32,\)"),
        ({"cov_type": "cluster", "groups": np.zeros(32)}, "at least 2 groups"),
    ],
)
def test_bad_requests_are_refused(spector, kwargs, message):
    X, y = spector
    model = _unpenalised().fit(X, y)
    with pytest.raises(ValueError, match=message):
        model.inference(X, y, **kwargs)


def test_unfitted_and_mismatched_data_are_refused(spector):
    X, y = spector
    with pytest.raises(Exception, match="not fitted"):
        LogisticRegression().inference(X, y)
    model = _unpenalised().fit(X, y)
    with pytest.raises(ValueError, match="expecting 3 features"):
        model.inference(X[:, :2], y)
    with pytest.raises(ValueError, match="labels y"):
        model.inference(X)


# --------------------------------------------------------------------------- robust
@pytest.mark.parametrize("dataset", ["spector", "generated"])
def test_hc0_equals_statsmodels(spector, clustered, dataset):
    X, y = spector if dataset == "spector" else clustered[:2]
    result = _unpenalised().fit(X, y).inference(X, y, cov_type="HC0")
    reference = sm.Logit(y, sm.add_constant(X)).fit(disp=0, cov_type="HC0")
    _assert_matches(result, reference)
    assert result.cov_type == "HC0"


def test_hc1_is_hc0_with_the_small_sample_factor(spector):
    # statsmodels' discrete models return HC0 for "HC1" (its issue #7798); ours
    # is the textbook (and Stata) HC1: HC0 times n / (n - k).
    X, y = spector
    model = _unpenalised().fit(X, y)
    hc0 = model.inference(X, y, cov_type="HC0")
    hc1 = model.inference(X, y, cov_type="HC1")
    n, k = len(y), X.shape[1] + 1
    np.testing.assert_allclose(hc1.cov_params(), hc0.cov_params() * n / (n - k), rtol=1e-12)


def test_weighted_hc0_equals_glm_and_duplicated_rows(clustered):
    X, y, _ = clustered
    w = np.random.default_rng(5).integers(1, 4, size=len(y)).astype(float)
    result = (
        _unpenalised().fit(X, y, sample_weight=w).inference(X, y, sample_weight=w, cov_type="HC0")
    )
    reference = sm.GLM(y, sm.add_constant(X), family=sm.families.Binomial(), freq_weights=w).fit(
        tol=1e-13, cov_type="HC0"
    )
    assert _rel(result.bse, reference.bse) < RTOL


@pytest.mark.parametrize("labels", ["integers", "strings"])
def test_cluster_equals_statsmodels(clustered, labels):
    X, y, groups = clustered
    groups = groups if labels == "integers" else np.asarray([f"g{g:03d}" for g in groups])
    result = _unpenalised().fit(X, y).inference(X, y, cov_type="cluster", groups=groups)
    reference = sm.Logit(y, sm.add_constant(X)).fit(
        disp=0, cov_type="cluster", cov_kwds={"groups": np.unique(groups, return_inverse=True)[1]}
    )
    _assert_matches(result, reference)


def test_multinomial_hc0_equals_mnlogit(anes96):
    X, y = anes96
    result = _unpenalised().fit(X, y).inference(X, y, cov_type="HC0")
    reference = sm.MNLogit(y, sm.add_constant(X)).fit(disp=0, maxiter=200, cov_type="HC0")
    assert _rel(result.bse, reference.bse) < 1e-6


def test_robust_inference_on_a_dataset_and_dask_equals_arrays(clustered):
    da = pytest.importorskip("dask.array")
    X, y, groups = clustered
    model = _unpenalised().fit(X, y)
    expected = model.inference(X, y, cov_type="HC0")
    dataset = model.inference(Dataset.from_arrays(X, y, chunk_rows=512), cov_type="HC0")
    np.testing.assert_allclose(dataset.bse, expected.bse, rtol=1e-10)
    Xd, yd = da.from_array(X, chunks=(512, -1)), da.from_array(y, chunks=512)
    dask = model.inference(Xd, yd, cov_type="HC0")
    np.testing.assert_allclose(dask.bse, expected.bse, rtol=1e-10)
    expected = model.inference(X, y, cov_type="cluster", groups=groups)
    dask = model.inference(Xd, yd, cov_type="cluster", groups=groups)
    np.testing.assert_allclose(dask.bse, expected.bse, rtol=1e-10)
    chunks = Dataset.from_arrays(X, y, chunk_rows=512)
    dataset = model.inference(chunks, cov_type="cluster", groups=groups)
    np.testing.assert_allclose(dataset.bse, expected.bse, rtol=1e-10)


# --------------------------------------------------------------------------- prediction
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0"])
def test_prediction_intervals_equal_glm_get_prediction(clustered, cov_type):
    X, y, _ = clustered
    result = _unpenalised().fit(X, y).inference(X, y, cov_type=cov_type)
    reference = sm.GLM(y, sm.add_constant(X), family=sm.families.Binomial()).fit(
        tol=1e-13, cov_type=cov_type
    )
    new = np.random.default_rng(9).normal(size=(500, X.shape[1]))
    frame = reference.get_prediction(sm.add_constant(new)).summary_frame(alpha=0.1)
    proba, lower, upper = result.predict_interval(new, alpha=0.1)
    assert _rel(proba, frame["mean"]) < 1e-9
    assert _rel(lower, frame["mean_ci_lower"]) < 1e-6
    assert _rel(upper, frame["mean_ci_upper"]) < 1e-6
    linear = reference.get_prediction(sm.add_constant(new), which="linear")
    assert _rel(result.predict_se(new), linear.se) < 1e-6


def test_prediction_intervals_of_a_dataframe_model_check_the_names(spector):
    pd = pytest.importorskip("pandas")
    X, y = spector
    frame = pd.DataFrame(X, columns=["gpa", "tuce", "psi"])
    result = _unpenalised().fit(frame, y).inference(frame, y)
    proba, lower, upper = result.predict_interval(frame)
    assert np.all((lower <= proba) & (proba <= upper))
    with pytest.raises(ValueError, match="feature names"):
        result.predict_interval(frame[["psi", "gpa", "tuce"]])


def test_multinomial_results_have_no_prediction_intervals(anes96):
    X, y = anes96
    result = _unpenalised().fit(X, y).inference(X, y)
    with pytest.raises(ValueError, match="binary models"):
        result.predict_interval(X)


def test_too_many_parameters_are_refused_before_the_pass(spector, monkeypatch):
    import gpulogreg._inference

    X, y = spector
    model = _unpenalised().fit(X, y)
    monkeypatch.setattr(gpulogreg._inference, "MAX_PARAMS", 3)
    with pytest.raises(ValueError, match="limited to 3 parameters per model"):
        model.inference(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_statistics_run_where_the_sums_are(monkeypatch, anes96, n_classes):
    # A CuPy backend hands back device matrices: the parameter reordering, the
    # contrasts and the eigendecomposition run on them (here a fake CuPy that
    # runs NumPy), and the result is host NumPy equal to the host computation.
    from gpulogreg import _inference
    from gpulogreg._layout import ParamLayout
    from tests import _fake_cupy

    X, y = anes96
    y = y % n_classes
    model = _unpenalised().fit(X, y)
    layout = ParamLayout.for_classes(X.shape[1], n_classes, True)
    params = layout.from_estimator(model.coef_, model.intercept_)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(layout.n_params, layout.n_params))
    H, g = A @ A.T, np.zeros(layout.n_params)
    context = _inference._Context(
        layout=layout,
        spec=model._spec(),
        request=_inference._Request("nonrobust", None, 0),
        totals=np.bincount(y).astype(float),
        weight_sum=float(len(y)),
        n_rows=len(y),
        classes=np.arange(n_classes),
        positive=None,
        feature_names=None,
    )
    host = _inference._Sums(information=H, gradient=g, loglike=-1.0, certain=0.0)
    expected, _ = _inference._result(host, params, context=context)
    _fake_cupy.install(monkeypatch)
    device = _inference._Sums(
        information=_fake_cupy.on_device(H, 0),
        gradient=_fake_cupy.on_device(g, 0),
        loglike=-1.0,
        certain=0.0,
    )
    result, _ = _inference._result(device, params, context=context)
    assert type(result.bse) is np.ndarray
    np.testing.assert_allclose(result.cov_params(), expected.cov_params(), rtol=1e-12)


# --------------------------------------------------------------------------- honesty (review cases)
def _caught(call):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in record if w.category is InferenceWarning]


@pytest.mark.parametrize("kind", ["complete", "quasi"])
def test_separated_classes_are_named_as_such(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    if kind == "quasi":  # an indicator of ten rows, all of class 1; the rest overlap
        X[:, 1] = np.arange(200) < 10
        y = np.where(X[:, 1] > 0, 1, rng.integers(0, 2, size=200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _unpenalised().fit(X, y)
    _, messages = _caught(lambda: model.inference(X, y))
    assert any("(quasi-)separated" in m for m in messages), messages


def test_a_penalised_fit_of_separated_classes_is_not_flagged_as_separated():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression(C=1.0).fit(X, y)
    _, messages = _caught(lambda: model.inference(X, y))
    assert not any("separated" in m for m in messages)


def test_parameters_off_the_optimum_are_named(spector, clustered):
    X, y = spector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=np.inf, max_iter=3).fit(X, y)
    _, messages = _caught(lambda: model.inference(X, y))
    assert any("not at the optimum" in m for m in messages), messages
    # Other data than the fit's: the same warning.
    fitted = _unpenalised().fit(X, y)
    rng = np.random.default_rng(1)
    other = rng.permutation(len(y))
    _, messages = _caught(lambda: fitted.inference(X, y[other]))
    assert any("not at the optimum" in m for m in messages), messages


def test_class_weights_are_refused(spector):
    X, y = spector
    model = _unpenalised(class_weight={0: 1.0, 1: 3.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        model.inference(X, y)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (np.array([1.0, np.nan] * 16, dtype=object), r"missing value \(nan\) at row 1"),
        (np.array(["a", "b", None, "a"] * 8, dtype=object), r"missing value \(None\) at row 2"),
        (np.array([1.0, np.nan] * 16), "missing value"),
    ],
)
def test_missing_group_labels_are_refused_naming_the_row(spector, groups, message):
    X, y = spector
    model = _unpenalised().fit(X, y)
    with pytest.raises(ValueError, match=message):
        model.inference(X, y, cov_type="cluster", groups=groups)


def test_group_labels_keep_their_type(spector):
    X, y = spector
    model = _unpenalised().fit(X, y)
    mixed = np.array([1, "b"] * 16, dtype=object)  # two groups of mixed types
    ids = np.array([2**60, 2**60 + 1] * 16, dtype=np.int64)  # distinct only as integers
    by_mixed = model.inference(X, y, cov_type="cluster", groups=mixed)
    by_ids = model.inference(X, y, cov_type="cluster", groups=ids)
    by_index = model.inference(X, y, cov_type="cluster", groups=np.arange(32) % 2)
    np.testing.assert_allclose(by_mixed.bse, by_index.bse, rtol=1e-12)
    np.testing.assert_allclose(by_ids.bse, by_index.bse, rtol=1e-12)


def test_rank_deficient_design_counts_identified_parameters_as_statsmodels(spector):
    X, y = spector
    X = np.column_stack([X, 2 * X[:, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = LogisticRegression(C=np.inf, solver="lbfgs", tol=1e-10).fit(X, y)
        result = result.inference(X, y)
        reference = sm.Logit(y, sm.add_constant(X)).fit(
            disp=0, method="bfgs", maxiter=2000, gtol=1e-10
        )
    assert (result.df_model, result.df_resid) == (reference.df_model, reference.df_resid)
    assert result.aic == pytest.approx(reference.aic, rel=1e-6)
    assert result.bic == pytest.approx(reference.bic, rel=1e-6)
    with pytest.raises(ValueError, match=r"undefined parameters \(x0, x3\)"):
        result.predict_interval(X[:3])


def test_near_collinear_columns_stay_identified_and_are_flagged(spector):
    rng = np.random.default_rng(0)
    n = 2000
    X = rng.normal(size=(n, 3))
    X = np.column_stack([X, X[:, 0] + 1e-5 * rng.normal(size=n)])
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 1]))).astype(int)
    model = _unpenalised().fit(X, y)
    result, messages = _caught(lambda: model.inference(X, y))
    reference = sm.Logit(y, sm.add_constant(X)).fit(disp=0, maxiter=200)
    assert np.isfinite(result.bse).all()
    assert _rel(result.bse, reference.bse) < 1e-3  # the ill-conditioned parameters: 3 digits
    assert any("ill-conditioned" in m for m in messages)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_multinomial_and_cluster_p_values_equal_statsmodels(dtype):
    rng = np.random.default_rng(1)
    n = 30_000
    X = (rng.normal(size=(n, 4)) * 3 + 5).astype(dtype)
    Xd = X.astype(np.float64)
    Z = np.column_stack(
        [np.zeros(n), (Xd - 5) @ [0.5, -0.5, 0.2, 0], (Xd - 5) @ [-0.3, 0.1, 0.4, 0.6]]
    )
    P = np.exp(Z)
    P /= P.sum(1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(P, 1)).sum(1)
    result = _unpenalised().fit(X, y).inference(X, y)
    reference = sm.MNLogit(y, sm.add_constant(Xd)).fit(disp=0, maxiter=200)
    assert _rel(result.pvalues, reference.pvalues) < 1e-6
    assert result.conf_int().shape == reference.conf_int().shape == (2, 5, 2)
    np.testing.assert_allclose(result.conf_int(), reference.conf_int(), rtol=1e-6)
    groups = rng.integers(0, 50, n)
    yb = (y > 0).astype(int)
    result = _unpenalised().fit(X, yb).inference(X, yb, cov_type="cluster", groups=groups)
    reference = sm.Logit(yb, sm.add_constant(Xd)).fit(
        disp=0, cov_type="cluster", cov_kwds={"groups": groups}
    )
    assert _rel(result.pvalues, reference.pvalues) < 1e-6


def test_a_nearly_unpenalised_multinomial_warns_only_of_the_penalty(anes96):
    X, y = anes96
    model = LogisticRegression(C=1e12, solver="newton", tol=1e-12, max_iter=200).fit(X, y)
    _, messages = _caught(lambda: model.inference(X, y))
    assert len(messages) == 1
    assert "penalised" in messages[0]


def test_hopeless_inputs_get_clear_errors(spector):
    X, y = spector
    Xt, yt = X[:4], np.array([0, 1, 0, 1])  # 4 rows, 4 parameters
    model = LogisticRegression(C=1.0).fit(Xt, yt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InferenceWarning)
        with pytest.raises(ValueError, match="HC1' needs more observations"):
            model.inference(Xt, yt, cov_type="HC1")
        with pytest.raises(ValueError, match="cluster' needs more rows"):
            model.inference(Xt, yt, cov_type="cluster", groups=[0, 0, 1, 1])
        Xb = X.copy()
        Xb[:, 1] *= 1e160
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow, before our error
        warnings.simplefilter("ignore", UserWarning)
        big = LogisticRegression(C=1.0, max_iter=5).fit(Xb, y)
        with pytest.raises(ValueError, match="not finite"):
            big.inference(Xb, y)


def test_the_summary_shows_plain_labels(anes96):
    X, y = anes96
    labels = np.asarray(["a", "b", "c"])[y % 3]
    text = _unpenalised().fit(X, labels).inference(X, labels).summary()
    assert "class 'b' vs 'a'" in text
    assert "np.str_" not in text
