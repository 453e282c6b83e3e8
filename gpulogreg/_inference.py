"""The inference pass and its statistics: one pass at the fitted parameters, then small algebra.

One pass over the data per task (binary model, multinomial model, or each
one-vs-rest class), through the same sources and backends as a fit
(:mod:`gpulogreg._fit`): the backend's :meth:`~gpulogreg._typing.Backend.information`
(the Hessian, log-likelihood, gradient and the weight of rows fitted with
certainty), and for robust covariances the sum of the rows' score outer
products (HC) or the per-group score sums (cluster). The backends work with
normalised weights ``s_i = w_i / W``; the sums are scaled back by ``W`` here.
The algebra after the pass (matrices of the parameters' size) runs where the
sums are, on the GPU for CuPy data, and the result comes back as NumPy.

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

Honesty checks
--------------
Besides a singular or ill-conditioned information, the result is flagged
(an :class:`~gpulogreg.inference.InferenceWarning`) when rows are fitted with
certainty in an unpenalised fit (separation: the maximum-likelihood estimate
does not exist), and when the parameters are not at the optimum of the data
given (a Newton step of more than :data:`OFF_OPTIMUM_SE` standard errors).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, host_float64, to_host
from gpulogreg._errors import InputValueError
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
from gpulogreg.inference import COV_TYPES, InferenceResult, InferenceWarning, PredictionState

__all__ = ["MAX_PARAMS", "run_inference"]

#: Most parameters per model that inference takes on: the information matrix
#: and its eigendecomposition hold a few ``n_params^2`` float64 (10,000: about
#: 3 GB in all).
MAX_PARAMS = 10_000
#: Directions of the scaled information matrix whose eigenvalue is below this
#: fraction of the largest are singular: their parameters get NaN standard
#: errors. float64 resolves eigenvalues to about ``k eps`` of the largest, so
#: this keeps near-collinear but identified parameters (flagged as
#: ill-conditioned instead).
SINGULAR_RTOL = 1e-13
#: Above this condition number (of the scaled information) the standard errors
#: are computed but flagged as unreliable.
ILL_CONDITIONED = 1e8
#: A parameter whose loading on a singular direction exceeds this is undefined.
_LOADING_TOL = 1e-6
#: A Newton step from the given parameters longer than this many standard
#: errors means they are not the optimum for these data.
OFF_OPTIMUM_SE = 0.01
#: Parameter names listed in a warning before "and N more".
_NAMES_SHOWN = 10


@dataclass(frozen=True)
class _Request:
    """What was asked: the covariance type and the encoded groups of a cluster covariance."""

    cov_type: str
    groups: np.ndarray | None
    n_groups: int


@dataclass(frozen=True)
class _Sums:
    """One task's sums over the data, in the backend's layout and namespace, weights unnormalised.

    ``information`` is the Hessian of ``-llf``, ``gradient`` its gradient,
    ``meat`` the HC meat ``sum_i w_i g_i g_i^T`` (HC types only), ``scores``
    the per-group score sums ``S_c`` (cluster only), ``certain`` the fraction
    of the weight on rows fitted with certainty.
    """

    information: Any
    gradient: Any
    loglike: float
    certain: float
    meat: Any = None
    scores: Any = None


@dataclass(frozen=True)
class Covariance:
    """A covariance matrix and what inverting the information found (host arrays).

    Attributes
    ----------
    matrix : ndarray of shape (k, k)
        NaN in the rows and columns of undefined parameters.
    condition : float
        Condition number of the scaled information (inf when singular).
    undefined : ndarray of bool, shape (k,)
        Parameters in a singular direction (collinear columns, a constant
        column besides the intercept).
    rank : int
        Directions of the information that were inverted.
    weakest : ndarray of shape (k,)
        Eigenvector of the smallest eigenvalue (the suspects of ill-conditioning).
    step_se : ndarray of shape (k,)
        The Newton step from the parameters, in standard errors (0 at the optimum).
    """

    matrix: np.ndarray
    condition: float
    undefined: np.ndarray
    rank: int
    weakest: np.ndarray
    step_se: np.ndarray


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
        raise InputValueError("inference needs a fitted model")
    _check_settings(spec, cov_type)
    if groups is not None and cov_type != "cluster":
        raise InputValueError(f"groups are for cov_type='cluster', not {cov_type!r}")
    source = _source(X, y, sample_weight, spec, fitted)
    request = _encode_groups(cov_type, groups, source.n_samples)
    positives, n_model_classes = plan_tasks(len(source.classes), spec.multi_class)
    layout = ParamLayout.for_classes(source.n_features, n_model_classes, spec.fit_intercept)
    if layout.n_params > MAX_PARAMS:
        raise InputValueError(
            f"inference on {layout.n_params:,} parameters would hold {layout.n_params:,}^2 "
            f"matrices; it is limited to {MAX_PARAMS:,} parameters per model"
        )
    starts = warm_start_params(fitted, source.classes, source.n_features, layout, len(positives))
    assert starts is not None  # classes and features were checked against the model
    totals = source.class_totals()
    caveats: list[str] = []
    if math.isfinite(spec.C):
        caveats.append(_penalised_caveat(spec.C, cov_type))
    results = []
    with source.device_context():
        device_groups = _on_data_device(request.groups, source)
        for positive, params in zip(positives, starts, strict=True):
            sums = _task_sums(source, positive, layout, params, request, device_groups)
            result, found = _result(
                sums,
                params,
                context=_Context(
                    layout=layout,
                    spec=spec,
                    request=request,
                    totals=totals if positive is None else _one_vs_rest(totals, positive),
                    weight_sum=source.weight_sum,
                    n_rows=source.n_samples,
                    classes=source.classes,
                    positive=None if positive is None else source.classes[positive],
                    feature_names=fitted.feature_names,
                ),
            )
            results.append(result)
            caveats += [c for c in found if c not in caveats]
    for caveat in caveats:
        warnings.warn(caveat, InferenceWarning, stacklevel=3)
    return results[0] if len(results) == 1 else results


# --------------------------------------------------------------------------- checks and data
def _check_settings(spec: FitSpec, cov_type: str) -> None:
    if cov_type not in COV_TYPES:
        raise InputValueError(f"cov_type must be one of {COV_TYPES}, got {cov_type!r}")
    if spec.l1_ratio > 0 and math.isfinite(spec.C):
        raise InputValueError(
            "inference is not defined for an L1 or elastic-net penalty: the L1 term has "
            "no curvature, so the fit has no Hessian-based covariance (refit with "
            "l1_ratio=0 or C=numpy.inf)"
        )
    if spec.intercept_scaling is not None and spec.fit_intercept and math.isfinite(spec.C):
        raise InputValueError(
            "inference is not available for solver='liblinear': its objective penalises "
            "the intercept (intercept_scaling), which the covariance does not model; refit "
            "with another solver"
        )
    if spec.class_weight is not None:
        raise InputValueError(
            "inference is not available for a model fitted with class_weight: class weights "
            "are importance weights, under which neither the inverse information nor the "
            "frequency-weight counts are valid; refit without class_weight (rows that stand "
            "for several observations go in sample_weight, as frequency weights)"
        )


def _source(X: Any, y: Any, sample_weight: Any, spec: FitSpec, fitted: PreviousFit) -> Source:
    """The data validated against the fitted model (its classes, features and names)."""
    owner = "LogisticRegression"
    if isinstance(X, Dataset):
        if y is not None or sample_weight is not None:
            raise InputValueError(
                "inference(dataset) takes the labels and weights from the Dataset; do not "
                "pass y or sample_weight"
            )
        names = None if X.feature_names is None else np.asarray(X.feature_names, dtype=object)
        known = fitted.feature_names
        if names is not None and known is not None and not np.array_equal(names, known):
            raise InputValueError(
                "The feature names should match those that were passed during fit."
            )
        source: Source = DatasetSource(X, spec, classes=fitted.classes)
    else:
        if y is None:
            raise InputValueError("inference needs the labels y of the rows of X")
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
        raise InputValueError(
            f"X has {source.n_features} features, but {owner} is expecting "
            f"{fitted.n_features} features as input"
        )
    return source


def _encode_groups(cov_type: str, groups: Any, n_rows: int) -> _Request:
    """Cluster labels (any hashable values) as indices ``0 .. G-1`` on the host.

    Missing labels (None, NaN, ``pd.NA``) are refused naming the row; labels
    keep their own type (large integer ids are not rounded through floats).
    """
    if cov_type != "cluster":
        return _Request(cov_type, None, 0)
    if groups is None:
        raise InputValueError("cov_type='cluster' needs groups: one cluster label per row")
    if array_module_name(groups) == "dask":
        groups = groups.compute()
    labels = np.asarray(to_host(groups))
    if labels.ndim != 1 or labels.shape[0] != n_rows:
        raise InputValueError(f"groups must have shape ({n_rows},), got {labels.shape}")
    if labels.dtype.kind == "O":
        index = _factorize_objects(labels)
    else:
        if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
            row = int(np.flatnonzero(~np.isfinite(labels))[0])
            raise InputValueError(
                f"groups holds a missing value ({shown(labels[row])}) at row {row}"
            )
        index = np.unique(labels, return_inverse=True)[1].ravel()
    n_groups = int(index.max()) + 1
    if n_groups < 2:
        raise InputValueError("cov_type='cluster' needs at least 2 groups")
    return _Request(cov_type, index.astype(np.int64), n_groups)


def _factorize_objects(labels: np.ndarray) -> np.ndarray:
    """Indices of object labels by first appearance (hashing: mixed types are fine)."""
    seen: dict[Any, int] = {}
    index = np.empty(labels.shape[0], dtype=np.int64)
    for row, label in enumerate(labels.tolist()):
        if _missing(label):
            raise InputValueError(f"groups holds a missing value ({label!r}) at row {row}")
        index[row] = seen.setdefault(label, len(seen))
    return index


def _missing(label: Any) -> bool:
    """None, a NaN, or a value whose self-comparison is undefined (``pd.NA``)."""
    if label is None:
        return True
    try:
        return bool(label != label)
    except TypeError:
        return True


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
    return array_namespace(source.X).asarray(groups)


def _one_vs_rest(totals: np.ndarray, positive: int) -> np.ndarray:
    """Class totals of a one-vs-rest task: (the rest, the class)."""
    return np.asarray([totals.sum() - totals[positive], totals[positive]])


def _penalised_caveat(C: float, cov_type: str) -> str:
    covariance = (
        "the inverse penalised Hessian"
        if cov_type == "nonrobust"
        else f"a {cov_type} sandwich around the penalised Hessian"
    )
    return (
        f"the model is penalised (C={C:g}): the covariance is {covariance}, the Laplace "
        "approximation of the posterior under the L2 penalty's Gaussian prior, and classical "
        "p-values do not apply (fit with C=numpy.inf for those)"
    )


# --------------------------------------------------------------------------- the pass
def _task_sums(
    source: Source,
    positive: int | None,
    layout: ParamLayout,
    params: np.ndarray,
    request: _Request,
    groups: Any,
) -> _Sums:
    """The task's sums at ``params``: one pass, a second for the HC meat."""
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    backend = source.backend(positive, n_classes)
    xp = backend.xp
    on_device = xp.asarray(params, dtype=xp.float64)
    weight = source.weight_sum
    info = backend.information(on_device)
    meat = scores = None
    if request.cov_type in ("HC0", "HC1"):
        meat = backend.meat(on_device) * weight
    elif request.cov_type == "cluster":
        scores = backend.cluster_scores(on_device, groups, request.n_groups) * weight
    source.done_with(backend)
    return _Sums(
        information=info.hessian * weight,
        gradient=info.gradient * weight,
        loglike=-float(info.loss) * weight,
        certain=float(info.certain),
        meat=meat,
        scores=scores,
    )


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class _Context:
    """What a task's statistics need besides its sums."""

    layout: ParamLayout
    spec: FitSpec
    request: _Request
    totals: np.ndarray
    weight_sum: float
    n_rows: int
    classes: np.ndarray
    positive: Any
    feature_names: np.ndarray | None


@dataclass(frozen=True)
class _Reported:
    """A task's parameters and sums in the coordinates inverted, statsmodels' order."""

    theta: np.ndarray
    information: Any
    gradient: Any
    meat: Any
    kept: np.ndarray
    reported: np.ndarray


def _result(
    sums: _Sums, params: np.ndarray, *, context: _Context
) -> tuple[InferenceResult, list[str]]:
    """A task's result and the caveats it found (warned once by :func:`run_inference`)."""
    layout = context.layout
    coords = _coordinates(sums, params, context)
    names = _param_names(context.feature_names, layout)
    coordinate_names = _coordinate_names(names, context.classes, layout)
    cov = covariance(*_marginal(coords))
    k_params = cov.rank
    factor = _small_sample_factor(context, k_params)
    matrix = cov.matrix * factor
    values = coords.theta[coords.reported]
    bse = np.sqrt(np.diag(matrix))
    outputs = max(1, layout.n_outputs - 1)
    if layout.n_outputs > 1:
        shape = (layout.n_outputs - 1, layout.n_cols)
        values, bse = values.reshape(shape).T.copy(), bse.reshape(shape).T.copy()
    present = context.totals[context.totals > 0]
    weight_sum = context.weight_sum
    reported_names = [coordinate_names[i] for i in coords.reported]
    undefined = [name for name, u in zip(reported_names, cov.undefined, strict=True) if u]
    prediction = None
    if layout.n_outputs == 1:
        prediction = _prediction_state(layout, params, matrix, undefined, context.feature_names)
    result = InferenceResult(
        params=values,
        bse=bse,
        cov=matrix,
        param_names=names,
        classes=np.asarray(context.classes),
        cov_type=context.request.cov_type,
        nobs=float(context.n_rows),
        weight_sum=weight_sum,
        k_params=k_params,
        df_model=float(k_params - outputs),
        df_resid=weight_sum - k_params,
        llf=sums.loglike,
        llnull=float(np.sum(present * np.log(present / weight_sum))),
        penalized=math.isfinite(context.spec.C),
        C=float(context.spec.C),
        positive_class=_python_value(context.positive),
        prediction=prediction,
    )
    return result, _caveats(sums, cov, reported_names, result)


def _coordinates(sums: _Sums, params: np.ndarray, context: _Context) -> _Reported:
    """Sums in statsmodels' order, the penalty added, multinomial contrasts applied."""
    layout = context.layout
    xp = array_namespace(sums.information)
    order = _statsmodels_order(layout)
    theta = params[order]
    on_device = xp.asarray(order)
    information = _submatrix(sums.information, on_device)
    gradient = sums.gradient[on_device]
    meat = None if sums.meat is None else _submatrix(sums.meat, on_device)
    scores = None if sums.scores is None else sums.scores[:, on_device]
    penalized = math.isfinite(context.spec.C)
    if penalized:
        strength = layout.penalty_mask(np)[order] / context.spec.C
        information = information + xp.asarray(np.diag(strength))
        gradient = gradient + xp.asarray(strength * theta)
    if layout.n_outputs > 1:
        contrasts = _Contrasts(layout.n_outputs, layout.n_cols)
        theta = contrasts.vector(theta)
        information = contrasts.matrix(information)
        gradient = contrasts.rows(gradient[None, :])[0]
        meat = None if meat is None else contrasts.matrix(meat)
        scores = None if scores is None else contrasts.rows(scores)
        kept = contrasts.kept(penalized=penalized, fit_intercept=layout.fit_intercept)
        reported = np.arange(layout.n_cols, contrasts.size)
    else:
        kept = reported = np.arange(theta.size)
    if scores is not None:
        meat = scores.T @ scores
    return _Reported(theta, information, gradient, meat, kept, reported)


def _marginal(coords: _Reported) -> tuple[Any, Any, Any]:
    """Information, meat and gradient of the reported coordinates, the others eliminated.

    A penalised multinomial model keeps the reference class's coefficients
    (``a``, identified by the penalty alone) besides the reported contrasts
    (``r``): the reported block of ``H^-1`` is ``S^-1 R`` with the Schur
    complement ``S = H_rr - H_ra H_aa^-1 H_ar`` and ``R = [-H_ra H_aa^-1, I]``,
    so the sandwich's block is ``S^-1 (R M R^T) S^-1`` and the Newton step's
    ``S^-1 (R g)``. Inverting ``S`` alone keeps the weakly identified ``a``
    out of the conditioning that the reported parameters are judged by.
    """
    H, g, M = coords.information, coords.gradient, coords.meat
    rep, aux = coords.reported, coords.kept[: coords.kept.size - coords.reported.size]
    if aux.size == 0:
        return (
            _submatrix(H, rep),
            None if M is None else _submatrix(M, rep),
            g[_device_index(g, rep)],
        )
    xp = array_namespace(H)
    a, r = _device_index(H, aux), _device_index(H, rep)
    T = xp.linalg.solve(H[a][:, a], H[a][:, r])  # H_aa^-1 H_ar
    schur = H[r][:, r] - H[r][:, a] @ T
    gradient = g[r] - T.T @ g[a]
    meat = None
    if M is not None:
        meat = M[r][:, r] - T.T @ M[a][:, r] - M[r][:, a] @ T + T.T @ M[a][:, a] @ T
    return schur, meat, gradient


def _small_sample_factor(context: _Context, k_params: int) -> float:
    """HC1's ``W / (W - k)`` or the cluster correction ``G/(G-1) (n-1)/(n-k)``; else 1."""
    request = context.request
    if request.cov_type == "HC1":
        if context.weight_sum <= k_params:
            raise InputValueError(
                f"cov_type='HC1' needs more observations ({context.weight_sum:g}) than "
                f"parameters ({k_params})"
            )
        return context.weight_sum / (context.weight_sum - k_params)
    if request.cov_type == "cluster":
        if context.n_rows <= k_params:
            raise InputValueError(
                f"cov_type='cluster' needs more rows ({context.n_rows}) than parameters "
                f"({k_params})"
            )
        g = request.n_groups
        return g / (g - 1) * (context.n_rows - 1) / (context.n_rows - k_params)
    return 1.0


def _caveats(sums: _Sums, cov: Covariance, names: list[str], result: InferenceResult) -> list[str]:
    """What the user must be told about this result, in words."""
    found = []
    undefined = cov.undefined
    if undefined.any():
        shown_names = _list_names([n for n, u in zip(names, undefined, strict=True) if u])
        found.append(
            "the information matrix is singular (collinear columns, or a column without "
            f"variation): the standard errors of {shown_names} are undefined (NaN)"
        )
    elif cov.condition > ILL_CONDITIONED:
        weakest = np.abs(cov.weakest)
        suspects = [names[i] for i in np.argsort(-weakest)[:3]]
        found.append(
            f"the information matrix is ill-conditioned (condition number {cov.condition:.3g}): "
            f"the standard errors of {', '.join(suspects)} are unreliable (nearly collinear "
            "columns or near-separation)"
        )
    if sums.certain > 0 and not result.penalized:
        found.append(
            f"fitted probabilities are numerically 0 or 1 for {sums.certain:.3g} of the weight: "
            "the classes are (quasi-)separated, the maximum-likelihood estimate does not exist "
            "and the standard errors are not meaningful (fit with a penalty, a finite C)"
        )
    step = cov.step_se
    if step.size and np.nanmax(step) > OFF_OPTIMUM_SE:
        worst = int(np.nanargmax(step))
        found.append(
            "the coefficients are not at the optimum for these data (a Newton step moves "
            f"{names[worst]} by {step[worst]:.3g} standard errors): refit with a smaller tol "
            "or a larger max_iter, or pass the data the model was fitted on"
        )
    return found


def _list_names(names: list[str]) -> str:
    if len(names) <= _NAMES_SHOWN:
        return ", ".join(names)
    return ", ".join(names[:_NAMES_SHOWN]) + f" and {len(names) - _NAMES_SHOWN} more"


def _python_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _prediction_state(
    layout: ParamLayout,
    params: np.ndarray,
    cov: np.ndarray,
    undefined: list[str],
    feature_names: np.ndarray | None,
) -> PredictionState:
    """A binary result's prediction state: coefficients and the covariance in our layout."""
    order = _statsmodels_order(layout)
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    coef, intercept = layout.to_estimator(params)
    return PredictionState(
        coef=coef,
        intercept=intercept,
        cov=np.ascontiguousarray(cov[np.ix_(back, back)]),
        undefined=undefined,
        feature_names=feature_names,
    )


# --------------------------------------------------------------------------- covariance
def covariance(information: Any, meat: Any, gradient: Any) -> Covariance:
    """``inv(H)`` or the sandwich ``inv(H) meat inv(H)``, singularity-aware, and the Newton step.

    ``H`` is scaled to unit diagonal and inverted through its eigenvectors:
    directions with an eigenvalue below :data:`SINGULAR_RTOL` of the largest
    are left out (a pseudo-inverse), and the parameters loading on them are
    undefined (NaN). The algebra runs where the matrices are (NumPy, or CuPy
    on the data's device); the result is on the host.

    Raises
    ------
    ValueError
        The information or the meat is not finite (features too large).
    """
    xp = array_namespace(information)
    finite = bool(xp.isfinite(information).all())
    if meat is not None:
        finite = finite and bool(xp.isfinite(meat).all())
    if not finite:
        raise InputValueError(
            "the information matrix is not finite: the features are too large for float64 "
            "products (scale them, e.g. to unit variance)"
        )
    diagonal = xp.diag(information)
    zero = ~(diagonal > 0)
    scale = xp.where(zero, 1.0, xp.sqrt(xp.where(zero, 1.0, diagonal)))
    outer = xp.outer(scale, scale)
    scaled = information / outer
    scaled[zero, :] = 0.0
    scaled[:, zero] = 0.0
    eigenvalues, vectors = xp.linalg.eigh(scaled)
    top = float(eigenvalues[-1])
    keep = eigenvalues > SINGULAR_RTOL * top if top > 0 else xp.zeros(eigenvalues.shape, dtype=bool)
    inverse = (vectors[:, keep] / eigenvalues[keep]) @ vectors[:, keep].T / outer
    matrix = inverse if meat is None else inverse @ meat @ inverse
    step = inverse @ gradient
    with np.errstate(divide="ignore", invalid="ignore"):
        step_se = np.abs(host_float64(step)) / np.sqrt(host_float64(xp.diag(inverse)))
    matrix = host_float64(matrix)
    keep_host = host_float64(keep) > 0
    vectors_host = host_float64(vectors)
    dropped = vectors_host[:, ~keep_host]
    loading = np.abs(dropped).max(axis=1) if dropped.size else np.zeros(matrix.shape[0])
    undefined = (host_float64(zero) > 0) | (loading > _LOADING_TOL)
    matrix[undefined, :] = np.nan
    matrix[:, undefined] = np.nan
    step_se[undefined] = np.nan
    rank = int(keep_host.sum())
    condition = float("inf") if rank < keep_host.size else top / float(eigenvalues[0])
    return Covariance(
        matrix=matrix,
        condition=condition,
        undefined=undefined,
        rank=rank,
        weakest=vectors_host[:, 0],
        step_se=step_se,
    )


# --------------------------------------------------------------------------- layout helpers
def _submatrix(M: Any, index: Any) -> Any:
    """``M[index][:, index]`` (in the namespace of ``M``)."""
    index = _device_index(M, index)
    return M[index][:, index]


def _device_index(M: Any, index: Any) -> Any:
    return array_namespace(M).asarray(index)


def _statsmodels_order(layout: ParamLayout) -> np.ndarray:
    """Our flat index of each parameter in statsmodels' order (intercept first per class)."""
    n, d = layout.n_features, layout.n_cols
    within = np.r_[n, np.arange(n)] if layout.fit_intercept else np.arange(n)
    return np.concatenate([o * d + within for o in range(layout.n_outputs)])


def _param_names(feature_names: np.ndarray | None, layout: ParamLayout) -> list[str]:
    n = layout.n_features
    if feature_names is None:
        features = [f"x{j}" for j in range(n)]
    else:
        features = [str(f) for f in feature_names.tolist()]
    return (["intercept"] if layout.fit_intercept else []) + features


def _coordinate_names(names: list[str], classes: np.ndarray, layout: ParamLayout) -> list[str]:
    """Names of the coordinates inverted (multinomial: the reference class's, then contrasts)."""
    if layout.n_outputs == 1:
        return names
    reference = shown(classes[0])
    out = [f"{name} ({reference})" for name in names]
    for c in classes[1:].tolist():
        out += [f"{name} ({shown(c)} vs {reference})" for name in names]
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

    def rows(self, A: Any) -> Any:
        """``A L`` for gradient rows ``A`` (shape (m, size))."""
        blocks = A.reshape(A.shape[0], self.n_classes, self.k)
        out = blocks.copy()
        out[:, 0] = blocks.sum(axis=1)
        return out.reshape(A.shape)

    def matrix(self, M: Any) -> Any:
        """``L^T M L``."""
        return self.rows(self.rows(M).T).T

    def kept(self, *, penalized: bool, fit_intercept: bool) -> np.ndarray:
        """Coordinates the objective depends on (the others would make it singular)."""
        if not penalized:
            return np.arange(self.k, self.size)
        start = 1 if fit_intercept else 0
        return np.arange(start, self.size)
