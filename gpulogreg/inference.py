"""Coefficient inference: standard errors, tests, intervals, in statsmodels' names.

:meth:`gpulogreg.LogisticRegression.inference` makes one pass over the data at
the fitted parameters (the information matrix, and for robust covariances the
"meat") on the model's backend and returns an :class:`InferenceResult`, whose
attributes are those of a statsmodels results object (``params``, ``bse``,
``pvalues``, ``conf_int()``, ``llf``, ``aic``, ...). The numbers are
statsmodels' (see the README's "Uncertainty" section):

* binary models equal ``sm.Logit(y, sm.add_constant(X)).fit(cov_type=...)``;
  with sample weights, ``sm.GLM(..., family=Binomial(), freq_weights=w)``
  (sample weights are frequency weights);
* multinomial models equal ``sm.MNLogit``: the first class is the reference
  and ``params`` has shape ``(n_params, n_classes - 1)``;
* parameters are ordered intercept first (``param_names[0] == "intercept"``),
  then the features.

Covariance types: ``"nonrobust"`` (the inverse information), ``"HC0"`` (the
sandwich ``H^-1 M H^-1`` with ``M`` the sum of the rows' score outer products),
``"HC1"`` (HC0 times ``n / (n - k)``, the textbook and Stata convention; note
that statsmodels' discrete models return HC0 for HC1) and ``"cluster"``
(scores summed per group, times statsmodels' default small-sample factor
``G / (G - 1) * (n - 1) / (n - k)``). Tests and intervals use the normal
distribution, as statsmodels does by default.

A penalised fit (finite ``C``) gets the inverse of the *penalised* Hessian:
the Laplace approximation of the posterior under the Gaussian prior that the
L2 penalty is. The result says so (``penalized``) and warns that classical
p-values do not apply.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["COV_TYPES", "InferenceResult", "InferenceWarning"]

#: The covariance types :meth:`LogisticRegression.inference` computes.
COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")
#: Directions of the scaled information matrix whose eigenvalue is below this
#: fraction of the largest are treated as singular: their parameters get NaN
#: standard errors (double precision leaves about 1e-16; the margin covers the
#: float32 data a Hessian is accumulated from).
SINGULAR_RTOL = 1e-10
#: Above this condition number (of the scaled information) the standard errors
#: are computed but flagged as unreliable.
ILL_CONDITIONED = 1e8
#: A parameter whose loading on a singular direction exceeds this is undefined.
_LOADING_TOL = 1e-6


class InferenceWarning(UserWarning):
    """Inference that holds with a caveat: a penalised fit, or singular information."""


@dataclass(frozen=True)
class InferenceResult:
    """Coefficient inference for one fitted model (one class of a one-vs-rest model).

    Attributes
    ----------
    params : ndarray of shape (n_params,), or (n_params, n_classes - 1) multinomial
        Intercept first, then the features; multinomial: ``coef_k - coef_0``
        for every class ``k`` after the reference class ``classes[0]``.
    bse, tvalues, pvalues : ndarray, shaped like ``params``
        Standard errors, z statistics (statsmodels calls them tvalues) and
        two-sided normal p-values. NaN where the information is singular.
    param_names : list of str
        ``"intercept"`` (when fitted) and the feature names.
    classes : ndarray
        The model's classes; a multinomial ``params`` column ``j`` is class
        ``classes[j + 1]`` against ``classes[0]``. One-vs-rest: the class
        against the rest is ``positive_class``.
    cov_type : str
    nobs : float
        Rows (statsmodels' ``nobs``, also with frequency weights).
    weight_sum : float
        The sum of the frequency weights (``nobs`` without weights).
    df_model, df_resid : float
        ``df_model`` = (parameters per class - 1) x (classes - 1);
        ``df_resid`` = ``weight_sum`` - all parameters.
    llf, llnull : float
        Log-likelihood at the fit and of the intercept-only model.
    penalized : bool
        True for a finite ``C``: the covariance is the Laplace approximation.
    C : float
    positive_class : object or None
        One-vs-rest: the class this binary result is about.
    """

    params: np.ndarray
    bse: np.ndarray
    cov: np.ndarray = field(repr=False)
    param_names: list[str]
    classes: np.ndarray
    cov_type: str
    nobs: float
    weight_sum: float
    df_model: float
    df_resid: float
    llf: float
    llnull: float
    penalized: bool
    C: float
    positive_class: Any = None
    #: Prediction: coefficients, intercept and covariance in the model's own
    #: parameter layout (intercept last), for binary models.
    _coef: np.ndarray | None = field(default=None, repr=False)
    _intercept: np.ndarray | None = field(default=None, repr=False)
    _layout_cov: np.ndarray | None = field(default=None, repr=False)
    _feature_names_in: np.ndarray | None = field(default=None, repr=False)

    # -- tests and intervals ------------------------------------------------------
    @property
    def tvalues(self) -> np.ndarray:
        """z statistics ``params / bse`` (statsmodels' name)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.params / self.bse

    @property
    def pvalues(self) -> np.ndarray:
        """Two-sided p-values of the z statistics (normal distribution)."""
        z = np.abs(self.tvalues)
        erfc = np.vectorize(math.erfc, otypes=[np.float64])
        return np.where(np.isnan(z), np.nan, erfc(np.nan_to_num(z) / math.sqrt(2.0)))

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Normal confidence intervals, shape ``params.shape + (2,)`` (lower, upper)."""
        q = _normal_quantile(alpha)
        return np.stack([self.params - q * self.bse, self.params + q * self.bse], axis=-1)

    def cov_params(self) -> np.ndarray:
        """Covariance of the flattened parameters (multinomial: class by class)."""
        return self.cov.copy()

    # -- fit statistics -------------------------------------------------------------
    @property
    def llr(self) -> float:
        """Likelihood-ratio statistic against the intercept-only model."""
        return 2.0 * (self.llf - self.llnull)

    @property
    def llr_pvalue(self) -> float:
        """Chi-squared p-value of :attr:`llr` with :attr:`df_model` degrees of freedom."""
        from scipy import stats

        return float(stats.chi2.sf(self.llr, self.df_model))

    @property
    def prsquared(self) -> float:
        """McFadden's pseudo R-squared, ``1 - llf / llnull``."""
        return 1.0 - self.llf / self.llnull if self.llnull != 0 else float("nan")

    @property
    def aic(self) -> float:
        """``-2 llf + 2 k``, ``k`` all parameters."""
        return -2.0 * self.llf + 2.0 * self.params.size

    @property
    def bic(self) -> float:
        """``-2 llf + k log(weight_sum)`` (statsmodels' ``bic_llf``; ``log n`` unweighted)."""
        return -2.0 * self.llf + self.params.size * math.log(self.weight_sum)

    # -- output -------------------------------------------------------------------
    def to_frame(self) -> Any:
        """A pandas DataFrame: coef, std err, z, P>|z| and the 95% interval per parameter."""
        import pandas as pd

        ci = self.conf_int()
        columns = {
            "coef": self.params,
            "std err": self.bse,
            "z": self.tvalues,
            "P>|z|": self.pvalues,
            "[0.025": ci[..., 0],
            "0.975]": ci[..., 1],
        }
        if self.params.ndim == 1:
            return pd.DataFrame(columns, index=pd.Index(self.param_names, name="parameter"))
        index = pd.MultiIndex.from_product(
            [[str(c) for c in self.classes[1:].tolist()], self.param_names],
            names=["class", "parameter"],
        )
        flat = {name: np.asarray(values).T.ravel() for name, values in columns.items()}
        return pd.DataFrame(flat, index=index)

    def summary(self) -> str:
        """A text table like statsmodels' ``summary()``."""
        kind = "penalised (Laplace)" if self.penalized else "maximum likelihood"
        target = f" ({self.positive_class!r} vs rest)" if self.positive_class is not None else ""
        lines = [
            f"Logistic regression results{target}",
            f"  estimation: {kind}, C = {self.C:g}; covariance: {self.cov_type}",
            f"  observations {self.nobs:g}   df model {self.df_model:g}   "
            f"df resid {self.df_resid:g}",
            f"  log-likelihood {self.llf:.6g}   LL-null {self.llnull:.6g}   "
            f"pseudo R-squ. {self.prsquared:.4f}",
            f"  LLR p-value {self.llr_pvalue:.4g}   AIC {self.aic:.6g}   BIC {self.bic:.6g}",
        ]
        ci = self.conf_int()
        blocks = (
            [(None, slice(None))]
            if self.params.ndim == 1
            else [(c, j) for j, c in enumerate(self.classes[1:].tolist())]
        )
        width = max(12, *(len(n) for n in self.param_names))
        header = f"{'':<{width}} {'coef':>11} {'std err':>11} {'z':>9} {'P>|z|':>8} "
        header += f"{'[0.025':>11} {'0.975]':>11}"
        for label, column in blocks:
            lines.append("=" * len(header))
            if label is not None:
                lines.append(f"class {label!r} vs {self.classes[0]!r}")
            lines.append(header)
            lines.append("-" * len(header))
            values = [self.params, self.bse, self.tvalues, self.pvalues, ci[..., 0], ci[..., 1]]
            columns = [np.asarray(v)[:, column] if v.ndim == 2 else v for v in values]
            for i, name in enumerate(self.param_names):
                coef, se, z, p, lo, hi = (float(c[i]) for c in columns)
                lines.append(
                    f"{name:<{width}} {coef:>11.4g} {se:>11.4g} {z:>9.3f} {p:>8.3f} "
                    f"{lo:>11.4g} {hi:>11.4g}"
                )
        lines.append("=" * len(header))
        if self.penalized:
            lines.append(
                "The covariance is the inverse penalised Hessian (the Laplace approximation "
                "of the posterior); classical p-values do not apply."
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # -- prediction uncertainty ----------------------------------------------------
    def predict_se(self, X: Any) -> Any:
        """Standard error of the linear predictor ``x . coef + intercept``, per row.

        One quadratic form ``a^T Sigma a`` per row (``a = [x, 1]``), in a fused
        pass on the device of ``X``; binary models only.
        """
        X = self._checked_X(X)
        from gpulogreg.backends.quadratic import row_quadratic_forms

        assert self._layout_cov is not None
        xp = _namespace(X)
        forms = row_quadratic_forms(X, self._layout_cov, fit_intercept=self._has_intercept)
        return xp.sqrt(xp.maximum(forms, 0.0))

    def predict_interval(self, X: Any, alpha: float = 0.05) -> tuple[Any, Any, Any]:
        """``(proba, lower, upper)`` of the positive class, per row; binary models only.

        The delta method on the linear predictor, its interval transformed by
        the sigmoid: statsmodels' ``GLM(...).get_prediction(X).conf_int()``.
        """
        from gpulogreg._predict import decision_values

        se = self.predict_se(X)
        X = self._checked_X(X)
        assert self._coef is not None
        assert self._intercept is not None
        z = decision_values(X, self._coef, self._intercept)
        q = _normal_quantile(alpha)
        return _sigmoid(z), _sigmoid(z - q * se), _sigmoid(z + q * se)

    @property
    def _has_intercept(self) -> bool:
        return bool(self.param_names) and self.param_names[0] == "intercept"

    def _checked_X(self, X: Any) -> Any:
        from gpulogreg.data.validation import check_feature_names, check_X

        if self._coef is None:
            raise ValueError(
                "prediction intervals are for binary models (and each class of a "
                "one-vs-rest model); this result is multinomial"
            )
        owner = "InferenceResult"
        check_feature_names(X, self._feature_names_in, owner=owner)
        X, _ = check_X(X, n_features=self._coef.shape[1], owner=owner, lazy=True)
        return X


def _namespace(X: Any) -> Any:
    from gpulogreg._array import array_module_name, array_namespace

    if array_module_name(X) == "dask":
        import dask.array as da

        return da
    return array_namespace(X)


def _sigmoid(z: Any) -> Any:
    xp = _namespace(z)
    e = xp.exp(-abs(z))
    return xp.where(z >= 0, 1.0, e) / (1.0 + e)


def _normal_quantile(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


# --------------------------------------------------------------------------- covariance
@dataclass(frozen=True)
class Covariance:
    """A covariance matrix and what inverting the information found.

    Attributes
    ----------
    matrix : ndarray of shape (k, k)
        NaN in the rows and columns of undefined parameters.
    condition : float
        Condition number of the scaled information (inf when singular).
    undefined : ndarray of bool, shape (k,)
        Parameters in a singular direction (collinear columns, separation,
        a constant column besides the intercept).
    """

    matrix: np.ndarray
    condition: float
    undefined: np.ndarray


def covariance(
    information: Any,
    meat: Any = None,
    *,
    names: list[str],
    factor: float = 1.0,
) -> Covariance:
    """``inv(H)`` or the sandwich ``inv(H) meat inv(H)`` (times ``factor``), singularity-aware.

    ``H`` is scaled to unit diagonal and inverted through its eigenvectors:
    directions with an eigenvalue below :data:`SINGULAR_RTOL` of the largest
    are left out (a pseudo-inverse), and the parameters loading on them get
    NaN. A warning names them, and names the parameters of a merely
    ill-conditioned information (:data:`ILL_CONDITIONED`). The algebra runs
    where the matrices are (NumPy, or CuPy on the data's device); the result
    is a host array.
    """
    from gpulogreg._array import array_namespace, host_float64

    xp = array_namespace(information)
    k = int(information.shape[0])
    diagonal = xp.diag(information)
    zero = ~(diagonal > 0)
    scale = xp.where(zero, 1.0, xp.sqrt(xp.where(zero, 1.0, diagonal)))
    outer = xp.outer(scale, scale)
    scaled = information / outer
    scaled[zero, :] = 0.0
    scaled[:, zero] = 0.0
    eigenvalues, vectors = xp.linalg.eigh(scaled)
    top = float(eigenvalues[-1]) if k else 0.0
    keep = eigenvalues > SINGULAR_RTOL * top if top > 0 else xp.zeros(k, dtype=bool)
    inverse = (vectors[:, keep] / eigenvalues[keep]) @ vectors[:, keep].T / outer
    matrix = inverse if meat is None else inverse @ meat @ inverse
    matrix = host_float64(matrix) * factor
    keep_host = np.asarray(host_float64(keep) > 0)
    vectors_host = host_float64(vectors)
    loading = np.abs(vectors_host[:, ~keep_host]).max(axis=1) if (~keep_host).any() else np.zeros(k)
    undefined = np.asarray(host_float64(zero) > 0) | (loading > _LOADING_TOL)
    condition = float("inf") if not keep_host.all() else top / float(eigenvalues[0])
    matrix[undefined, :] = np.nan
    matrix[:, undefined] = np.nan
    _warn_conditioning(condition, undefined, vectors_host[:, 0], names)
    return Covariance(matrix=matrix, condition=condition, undefined=undefined)


def _warn_conditioning(
    condition: float, undefined: np.ndarray, weakest: np.ndarray, names: list[str]
) -> None:
    if undefined.any():
        shown = ", ".join(n for n, u in zip(names, undefined, strict=True) if u)
        warnings.warn(
            "the information matrix is singular (collinear columns, a column without "
            "variation, or classes that the columns separate): the standard errors of "
            f"{shown} are undefined (NaN)",
            InferenceWarning,
            stacklevel=4,
        )
    elif condition > ILL_CONDITIONED:
        order = np.argsort(-np.abs(weakest))
        suspects = [names[i] for i in order[:3] if abs(weakest[i]) > 0.1]
        warnings.warn(
            f"the information matrix is ill-conditioned (condition number {condition:.3g}): "
            f"the standard errors of {', '.join(suspects)} are unreliable (nearly collinear "
            "columns or near-separation)",
            InferenceWarning,
            stacklevel=4,
        )
