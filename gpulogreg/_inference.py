"""The inference pass: the sums statistics need, at the fitted parameters, on the model's backend.

One pass over the data per task (binary model, multinomial model, or each
one-vs-rest class), through the same sources and backends as a fit
(:mod:`gpulogreg._fit`): the information matrix (the Hessian of the
log-likelihood), the log-likelihood, and for robust covariances the sum of the
rows' score outer products (HC) or the per-group score sums (cluster). The
backends work with normalised weights ``s_i = w_i / W``; the sums are scaled
back by ``W`` here. Everything after the pass is host arithmetic on matrices
of the parameters' size (:func:`gpulogreg.inference.covariance`).

Parameter order
---------------
The backends' layout has the intercept last in each class's block; inference
reports statsmodels' order, intercept first. A multinomial model is reported
in ``MNLogit``'s parametrisation: with ``theta_j = beta_0 + d_j`` the
coordinates become ``(beta_0, d_1, ..., d_{K-1})`` (gradients ``L^T g``,
information ``L^T H L``), the coordinates the objective does not depend on are
dropped (all of ``beta_0`` without a penalty; only its intercept with one,
since the penalty is on every class's coefficients), and the covariance of the
contrasts ``d`` is read off the inverse: ``MNLogit``'s exactly without a
penalty, the marginal of the Laplace approximation with one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, device_of, host_float64
from gpulogreg._fit import (
    ArraySource,
    DatasetSource,
    FitSpec,
    PreviousFit,
    Source,
    plan_tasks,
    warm_start_params,
)
from gpulogreg._layout import ParamLayout
from gpulogreg.data import check_feature_names, prepare_fit_data
from gpulogreg.data.dataset import Dataset
from gpulogreg.data.validation import shown
from gpulogreg.inference import COV_TYPES, InferenceResult, InferenceWarning, covariance

__all__ = ["MAX_PARAMS", "run_inference"]

#: Most parameters per model that inference takes on: the information matrix
#: and its eigendecomposition hold a few ``n_params^2`` float64 (10,000: about
#: 3 GB in all).
MAX_PARAMS = 10_000


@dataclass(frozen=True)
class _Request:
    """What was asked: the covariance type and the encoded groups of a cluster covariance."""

    cov_type: str
    groups: np.ndarray | None
    n_groups: int


@dataclass(frozen=True)
class _Sums:
    """One task's sums over the data: host float64, the backend's layout, weights unnormalised.

    ``meat`` is the HC meat (``sum_i w_i g_i g_i^T``) or, for a cluster
    covariance, ``sum_c S_c S_c^T`` of the per-group score sums; None for
    ``"nonrobust"``. ``scores`` keeps the per-group sums (cluster only).
    """

    information: np.ndarray
    scores: np.ndarray | None
    meat: np.ndarray | None
    loglike: float


def run_inference(
    X: Any,
    y: Any,
    sample_weight: Any,
    *,
    spec: FitSpec,
    fitted: PreviousFit,
    cov_type: str,
    groups: Any,
) -> InferenceResult | list[InferenceResult]:
    """Inference for a fitted model on the data ``(X, y, sample_weight)``.

    Parameters
    ----------
    X, y, sample_weight
        As for ``fit`` (a Dataset carries ``y`` and the weights).
    spec : FitSpec
        The model's settings (penalty, intercept, multi_class, backend, device).
    fitted : PreviousFit
        The fitted coefficients, classes and feature names.
    cov_type : {"nonrobust", "HC0", "HC1", "cluster"}
    groups : array-like of shape (n_samples,), optional
        Cluster labels (any values), for ``cov_type="cluster"``.

    Returns
    -------
    InferenceResult, or a list of them (one per class) for one-vs-rest
    """
    if fitted.coef is None or fitted.intercept is None:
        raise ValueError("inference needs a fitted model")
    _check_settings(spec, cov_type)
    if groups is not None and cov_type != "cluster":
        raise ValueError(f"groups are for cov_type='cluster', not {cov_type!r}")
    source = _source(X, y, sample_weight, spec, fitted)
    request = _encode_groups(cov_type, groups, source.n_samples)
    positives, n_model_classes = plan_tasks(len(source.classes), spec.multi_class)
    layout = ParamLayout.for_classes(source.n_features, n_model_classes, spec.fit_intercept)
    if layout.n_params > MAX_PARAMS:
        raise ValueError(
            f"inference on {layout.n_params:,} parameters would hold {layout.n_params:,}^2 "
            f"matrices; it is limited to {MAX_PARAMS:,} parameters per model"
        )
    starts = warm_start_params(fitted, source.classes, source.n_features, layout, len(positives))
    assert starts is not None  # classes and features were checked against the model
    totals = source.class_totals()
    if math.isfinite(spec.C):
        warnings.warn(
            f"the model is penalised (C={spec.C:g}): the covariance is the inverse penalised "
            "Hessian, the Laplace approximation of the posterior under the L2 penalty's "
            "Gaussian prior, and classical p-values do not apply (fit with penalty=None "
            "for those)",
            InferenceWarning,
            stacklevel=3,
        )
    results = []
    with source.device_context():
        device_groups = _on_data_device(request.groups, source)
        for positive, params in zip(positives, starts, strict=True):
            sums = _task_sums(source, positive, layout, params, request, device_groups)
            task_totals = totals if positive is None else _one_vs_rest(totals, positive)
            results.append(
                _result(
                    sums,
                    params,
                    layout=layout,
                    spec=spec,
                    request=request,
                    totals=task_totals,
                    weight_sum=source.weight_sum,
                    n_rows=source.n_samples,
                    classes=source.classes,
                    positive=None if positive is None else source.classes[positive],
                    feature_names=fitted.feature_names,
                )
            )
    return results[0] if len(results) == 1 else results


# --------------------------------------------------------------------------- checks and data
def _check_settings(spec: FitSpec, cov_type: str) -> None:
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}, got {cov_type!r}")
    if spec.l1_ratio > 0 and math.isfinite(spec.C):
        raise ValueError(
            "inference is not defined for an L1 or elastic-net penalty: the L1 term has "
            "no curvature, so the fit has no Hessian-based covariance (refit with "
            "penalty='l2' or penalty=None)"
        )


def _source(X: Any, y: Any, sample_weight: Any, spec: FitSpec, fitted: PreviousFit) -> Source:
    """The data validated against the fitted model (its classes, features and names)."""
    owner = "LogisticRegression"
    if isinstance(X, Dataset):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "inference(dataset) takes the labels and weights from the Dataset; do not "
                "pass y or sample_weight"
            )
        names = None if X.feature_names is None else np.asarray(X.feature_names, dtype=object)
        known = fitted.feature_names
        if names is not None and known is not None and not np.array_equal(names, known):
            raise ValueError("The feature names should match those that were passed during fit.")
        source: Source = DatasetSource(X, spec, classes=fitted.classes)
    else:
        if y is None:
            raise ValueError("inference needs the labels y of the rows of X")
        check_feature_names(X, fitted.feature_names, owner=owner)
        data = prepare_fit_data(
            X,
            y,
            sample_weight,
            class_weight=spec.class_weight,
            classes=fitted.classes,
            dtype=spec.dtype,
        )
        source = ArraySource(data, spec)
    if source.n_features != fitted.n_features:
        raise ValueError(
            f"X has {source.n_features} features, but {owner} is expecting "
            f"{fitted.n_features} features as input"
        )
    return source


def _encode_groups(cov_type: str, groups: Any, n_rows: int) -> _Request:
    """Cluster labels (any values) as indices ``0 .. G-1`` on the host."""
    if cov_type != "cluster":
        return _Request(cov_type, None, 0)
    if groups is None:
        raise ValueError("cov_type='cluster' needs groups: one cluster label per row")
    if array_module_name(groups) == "dask":
        groups = groups.compute()
    labels = np.asarray(host_float64(groups) if _is_cupy(groups) else groups)
    if labels.ndim != 1 or labels.shape[0] != n_rows:
        raise ValueError(f"groups must have shape ({n_rows},), got {labels.shape}")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        row = int(np.flatnonzero(~np.isfinite(labels))[0])
        raise ValueError(f"groups holds {shown(labels[row])} at row {row}")
    _, index = np.unique(labels, return_inverse=True)
    n_groups = int(index.max()) + 1
    if n_groups < 2:
        raise ValueError("cov_type='cluster' needs at least 2 groups")
    return _Request(cov_type, index.astype(np.int64).ravel(), n_groups)


def _is_cupy(a: Any) -> bool:
    return array_module_name(a) == "cupy"


def _on_data_device(groups: np.ndarray | None, source: Source) -> Any:
    """The group indices where the source's rows are.

    CuPy arrays get a device copy; NumPy, Dask (each block's slice travels
    with its task) and Dataset sources (each chunk's slice is staged with it)
    take the host array.
    """
    if groups is None or not isinstance(source, ArraySource):
        return groups
    if array_module_name(source.X) != "cupy":
        return groups
    with device_of(source.X):
        return array_namespace(source.X).asarray(groups)


def _one_vs_rest(totals: np.ndarray, positive: int) -> np.ndarray:
    """Class totals of a one-vs-rest task: (the rest, the class)."""
    return np.asarray([totals.sum() - totals[positive], totals[positive]])


# --------------------------------------------------------------------------- the pass
def _task_sums(
    source: Source,
    positive: int | None,
    layout: ParamLayout,
    params: np.ndarray,
    request: _Request,
    groups: Any,
) -> _Sums:
    """The task's information, log-likelihood and meat at ``params``, unnormalised."""
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    backend = source.backend(positive, n_classes)
    xp = backend.xp
    on_device = xp.asarray(params, dtype=xp.float64)
    weight = source.weight_sum
    hessian, loss = backend.hessian_loss(on_device)
    information = hessian * weight
    loglike = -float(loss) * weight
    scores = meat = None
    if request.cov_type in ("HC0", "HC1"):
        meat = backend.meat(on_device) * weight
    elif request.cov_type == "cluster":
        scores = backend.cluster_scores(on_device, groups, request.n_groups) * weight
    source.done_with(backend)
    return _Sums(information=information, scores=scores, meat=meat, loglike=loglike)


# --------------------------------------------------------------------------- statistics
def _result(
    sums: _Sums,
    params: np.ndarray,
    *,
    layout: ParamLayout,
    spec: FitSpec,
    request: _Request,
    totals: np.ndarray,
    weight_sum: float,
    n_rows: int,
    classes: np.ndarray,
    positive: Any,
    feature_names: np.ndarray | None,
) -> InferenceResult:
    """Statistics of one task from its sums (matrix algebra where the sums are, then host)."""
    xp = array_namespace(sums.information)
    order = _statsmodels_order(layout)
    theta = params[order]
    on_device = xp.asarray(order)
    information = _submatrix(sums.information, on_device)
    meat = None if sums.meat is None else _submatrix(sums.meat, on_device)
    scores = None if sums.scores is None else sums.scores[:, on_device]
    penalized = math.isfinite(spec.C)
    if penalized:
        strength = (1.0 - spec.l1_ratio) / spec.C
        information = information + xp.asarray(np.diag(strength * _coef_mask(layout)[order]))
    names = _param_names(feature_names, layout)
    k_class = layout.n_cols
    if layout.n_outputs > 1:
        transform = _Contrasts(layout.n_outputs, k_class)
        theta = transform.vector(theta)
        information = transform.matrix(information)
        meat = None if meat is None else transform.matrix(meat)
        scores = None if scores is None else transform.rows(scores)
        kept = transform.kept(penalized=penalized, fit_intercept=layout.fit_intercept)
        reported = np.arange(k_class, transform.size)
    else:
        kept = reported = np.arange(theta.size)
    if scores is not None:
        meat = scores.T @ scores
    n_reported = reported.size
    factor = 1.0
    if request.cov_type == "HC1":
        factor = weight_sum / (weight_sum - n_reported)
    elif request.cov_type == "cluster":
        g = request.n_groups
        factor = g / (g - 1) * (n_rows - 1) / (n_rows - n_reported)
    coordinate_names = _coordinate_names(names, classes, layout)
    kept_on_device = xp.asarray(kept)
    cov = covariance(
        _submatrix(information, kept_on_device),
        None if meat is None else _submatrix(meat, kept_on_device),
        names=[coordinate_names[i] for i in kept],
        factor=factor,
    )
    position = {int(c): i for i, c in enumerate(kept)}
    picked = np.asarray([position[int(c)] for c in reported])
    cov_reported = cov.matrix[np.ix_(picked, picked)]
    values = theta[reported]
    bse = np.sqrt(np.diag(cov_reported))
    if layout.n_outputs > 1:
        shape = (layout.n_outputs - 1, k_class)
        values, bse = values.reshape(shape).T.copy(), bse.reshape(shape).T.copy()
    present = totals[totals > 0]
    llnull = float(np.sum(present * np.log(present / weight_sum)))
    prediction = {}
    if layout.n_outputs == 1:
        prediction = _prediction_state(layout, params, cov_reported, order)
    return InferenceResult(
        params=values,
        bse=bse,
        cov=cov_reported,
        param_names=names,
        classes=np.asarray(classes),
        cov_type=request.cov_type,
        nobs=float(n_rows),
        weight_sum=weight_sum,
        df_model=float((k_class - 1) * max(1, layout.n_outputs - 1)),
        df_resid=weight_sum - n_reported,
        llf=sums.loglike,
        llnull=llnull,
        penalized=penalized,
        C=float(spec.C),
        positive_class=positive,
        _feature_names_in=feature_names,
        **prediction,
    )


def _prediction_state(
    layout: ParamLayout, params: np.ndarray, cov: np.ndarray, order: np.ndarray
) -> dict[str, Any]:
    """What a binary result needs to predict: coefficients and the covariance in our layout."""
    coef, intercept = layout.to_estimator(params)
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    return {
        "_coef": coef,
        "_intercept": intercept,
        "_layout_cov": np.ascontiguousarray(cov[np.ix_(back, back)]),
    }


def _submatrix(M: Any, index: Any) -> Any:
    """``M[index][:, index]`` (in the namespace of ``M``)."""
    return M[index][:, index]


def _statsmodels_order(layout: ParamLayout) -> np.ndarray:
    """Our flat index of each parameter in statsmodels' order (intercept first per class)."""
    n, d = layout.n_features, layout.n_cols
    within = np.r_[n, np.arange(n)] if layout.fit_intercept else np.arange(n)
    return np.concatenate([o * d + within for o in range(layout.n_outputs)])


def _coef_mask(layout: ParamLayout) -> np.ndarray:
    """1 for coefficients, 0 for intercepts, in our layout."""
    return np.asarray(layout.penalty_mask(np), dtype=np.float64)


def _param_names(feature_names: np.ndarray | None, layout: ParamLayout) -> list[str]:
    n = layout.n_features
    features = (
        [f"x{j}" for j in range(n)]
        if feature_names is None
        else [str(f) for f in feature_names.tolist()]
    )
    return (["intercept"] if layout.fit_intercept else []) + features


def _coordinate_names(names: list[str], classes: np.ndarray, layout: ParamLayout) -> list[str]:
    """Names of the coordinates inverted (multinomial: the reference class's, then contrasts)."""
    if layout.n_outputs == 1:
        return names
    out = [f"{name} ({shown(classes[0])})" for name in names]
    for c in classes[1:].tolist():
        out += [f"{name} ({shown(c)} vs {shown(classes[0])})" for name in names]
    return out


class _Contrasts:
    """The change to ``(beta_0, d_1, ..., d_{K-1})``, ``theta_j = beta_0 + d_j``, in blocks.

    Coordinates are ``K`` blocks of ``k`` (one per class, statsmodels' order
    within a block). Gradients transform with ``L^T`` (block 0 becomes the sum
    of all blocks), matrices with ``L^T . L``.
    """

    def __init__(self, n_classes: int, k: int) -> None:
        self.n_classes, self.k = n_classes, k
        self.size = n_classes * k

    def vector(self, theta: np.ndarray) -> np.ndarray:
        """Parameters in the new coordinates: ``beta_0`` then ``theta_j - beta_0``."""
        blocks = theta.reshape(self.n_classes, self.k)
        out = blocks - blocks[0]
        out[0] = blocks[0]
        return out.ravel()

    def rows(self, A: np.ndarray) -> np.ndarray:
        """``A L`` for gradient rows ``A`` (shape (m, size))."""
        blocks = A.reshape(A.shape[0], self.n_classes, self.k)
        out = blocks.copy()
        out[:, 0] = blocks.sum(axis=1)
        return out.reshape(A.shape)

    def matrix(self, M: np.ndarray) -> np.ndarray:
        """``L^T M L``."""
        return self.rows(self.rows(M).T).T

    def kept(self, *, penalized: bool, fit_intercept: bool) -> np.ndarray:
        """Coordinates the objective depends on (the others would make it singular)."""
        if not penalized:
            return np.arange(self.k, self.size)
        start = 1 if fit_intercept else 0
        return np.arange(start, self.size)
