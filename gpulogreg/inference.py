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
  then the features; the degrees of freedom count the identified parameters
  (the rank of the design, as statsmodels).

Covariance types: ``"nonrobust"`` (the inverse information), ``"HC0"`` (the
sandwich ``H^-1 M H^-1`` with ``M`` the sum of the rows' score outer products),
``"HC1"`` (HC0 times ``n / (n - k)``, the textbook and Stata convention; note
that statsmodels' discrete models return HC0 for HC1) and ``"cluster"``
(scores summed per group, times statsmodels' default small-sample factor
``G / (G - 1) * (n - 1) / (n - k)``, ``n`` the rows, zero-weight rows
included). Tests and intervals use the normal distribution, as statsmodels
does by default.

A penalised fit (finite ``C``) gets the inverse of the *penalised* Hessian
(the bread of the sandwich for the robust types): the Laplace approximation
of the posterior under the Gaussian prior that the L2 penalty is. The result
says so (``penalized``) and warns that classical p-values do not apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError

__all__ = ["COV_TYPES", "InferenceResult", "InferenceWarning"]

#: The covariance types :meth:`LogisticRegression.inference` computes.
COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")


class InferenceWarning(UserWarning):
    """Inference that holds with a caveat: penalised, separated, unconverged or singular."""


@dataclass(frozen=True)
class PredictionState:
    """What a binary result predicts with: the model's own parameter layout (intercept last).

    Attributes
    ----------
    coef : ndarray of shape (1, n_features)
    intercept : ndarray of shape (1,)
    cov : ndarray of shape (n_features + fit_intercept,) * 2
        The covariance in that layout.
    undefined : list of str
        Parameters whose variance is undefined (the prediction errors then are).
    feature_names : ndarray or None
        The fitted feature names, checked against ``X`` as by ``predict``.
    """

    coef: np.ndarray
    intercept: np.ndarray
    cov: np.ndarray
    undefined: list[str]
    feature_names: np.ndarray | None


@dataclass(frozen=True)
class InferenceResult:
    """Coefficient inference for one fitted model (one class of a one-vs-rest model).

    Attributes
    ----------
    params : ndarray of shape (n_params,), or (n_params, n_classes - 1) multinomial
        Intercept first, then the features; multinomial: ``coef_k - coef_0``
        for every class ``k`` after the reference class ``classes[0]``.
    bse : ndarray, shaped like ``params``
        Standard errors; NaN where the information is singular.
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
        The sum of the frequency weights (GLM's ``wnobs``; ``nobs`` without
        weights).
    k_params : int
        Identified parameters: all of them, less those of a rank-deficient
        design (statsmodels' ``df_model + 1`` per class).
    df_model, df_resid : float
        ``k_params`` less one per class contrast, and ``weight_sum`` less
        ``k_params`` (a float with fractional weights, as GLM's).
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
    k_params: int
    df_model: float
    df_resid: float
    llf: float
    llnull: float
    penalized: bool
    C: float
    positive_class: Any = None
    prediction: PredictionState | None = field(default=None, repr=False)

    # -- tests and intervals ------------------------------------------------------
    @property
    def wnobs(self) -> float:
        """statsmodels GLM's name of :attr:`weight_sum`."""
        return self.weight_sum

    @property
    def tvalues(self) -> np.ndarray:
        """z statistics ``params / bse`` (statsmodels' name)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.params / self.bse

    @property
    def pvalues(self) -> np.ndarray:
        """Two-sided p-values of the z statistics (normal distribution)."""
        from scipy import special

        return 2.0 * special.ndtr(-np.abs(self.tvalues))

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Normal confidence intervals: ``(n_params, 2)``; multinomial as statsmodels'
        ``MNLogit``, ``(n_classes - 1, n_params, 2)``."""
        q = _normal_quantile(alpha)
        ci = np.stack([self.params - q * self.bse, self.params + q * self.bse], axis=-1)
        return ci if ci.ndim == 2 else np.moveaxis(ci, 1, 0)

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
        """``-2 llf + 2 k``, ``k`` the identified parameters."""
        return -2.0 * self.llf + 2.0 * self.k_params

    @property
    def bic(self) -> float:
        """``-2 llf + k log(weight_sum)`` (statsmodels' ``bic_llf``; ``log n`` unweighted)."""
        return -2.0 * self.llf + self.k_params * float(np.log(self.weight_sum))

    # -- output -------------------------------------------------------------------
    def coefficient_table(self, alpha: float = 0.05) -> dict[str, np.ndarray]:
        """The columns of :meth:`summary`'s table, each shaped like ``params``.

        ``coef``, ``std err``, ``z``, ``P>|z|`` and the interval's bounds
        ``[0.025`` and ``0.975]`` (named for the default ``alpha``).
        """
        q = _normal_quantile(alpha)
        return {
            "coef": self.params,
            "std err": self.bse,
            "z": self.tvalues,
            "P>|z|": self.pvalues,
            "[0.025": self.params - q * self.bse,
            "0.975]": self.params + q * self.bse,
        }

    def to_frame(self) -> Any:
        """A pandas DataFrame: coef, std err, z, P>|z| and the 95% interval per parameter."""
        import pandas as pd

        columns = self.coefficient_table()
        if self.params.ndim == 1:
            return pd.DataFrame(columns, index=pd.Index(self.param_names, name="parameter"))
        index = pd.MultiIndex.from_product(
            [[_plain(c) for c in self.classes[1:].tolist()], self.param_names],
            names=["class", "parameter"],
        )
        flat = {name: np.asarray(values).T.ravel() for name, values in columns.items()}
        return pd.DataFrame(flat, index=index)

    def summary(self) -> str:
        """A text table like statsmodels' ``summary()``."""
        kind = "penalised (Laplace)" if self.penalized else "maximum likelihood"
        target = (
            f" ({_plain(self.positive_class)} vs rest)" if self.positive_class is not None else ""
        )
        cov = "HC1 (HC0 x n/(n-k))" if self.cov_type == "HC1" else self.cov_type
        lines = [
            f"Logistic regression results{target}",
            f"  estimation: {kind}, C = {self.C:g}; covariance: {cov}",
            f"  observations {self.nobs:g}   df model {self.df_model:g}   "
            f"df resid {self.df_resid:g}",
            f"  log-likelihood {self.llf:.6g}   LL-null {self.llnull:.6g}   "
            f"pseudo R-squ. {self.prsquared:.4f}",
            f"  LLR p-value {self.llr_pvalue:.4g}   AIC {self.aic:.6g}   BIC {self.bic:.6g}",
        ]
        columns = list(self.coefficient_table().values())
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
                lines.append(f"class {_plain(label)} vs {_plain(self.classes[0])}")
            lines.append(header)
            lines.append("-" * len(header))
            picked = [c[:, column] if c.ndim == 2 else c for c in columns]
            for i, name in enumerate(self.param_names):
                coef, se, z, p, lo, hi = (float(c[i]) for c in picked)
                lines.append(
                    f"{name:<{width}} {coef:>11.4g} {se:>11.4g} {z:>9.3f} {p:>8.3f} "
                    f"{lo:>11.4g} {hi:>11.4g}"
                )
        lines.append("=" * len(header))
        if self.penalized:
            lines.append(
                "The covariance is built on the penalised Hessian (the Laplace approximation "
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
        state, X = self._checked(X)
        return self._linear_se(state, X)

    def predict_interval(self, X: Any, alpha: float = 0.05) -> tuple[Any, Any, Any]:
        """``(proba, lower, upper)`` of the positive class, per row; binary models only.

        The delta method on the linear predictor, its interval transformed by
        the sigmoid: statsmodels' ``GLM(...).get_prediction(X).conf_int()``.
        """
        from gpulogreg._predict import decision_values

        state, X = self._checked(X)  # once: X is validated (a finite check) a single time
        se = self._linear_se(state, X)
        z = decision_values(X, state.coef, state.intercept)
        q = _normal_quantile(alpha)
        return _sigmoid(z), _sigmoid(z - q * se), _sigmoid(z + q * se)

    def _linear_se(self, state: PredictionState, X: Any) -> Any:
        """``sqrt(a^T Sigma a)`` per row of a validated ``X``."""
        from gpulogreg.backends.quadratic import row_quadratic_forms

        xp = _namespace(X)
        forms = row_quadratic_forms(X, state.cov, fit_intercept=self._has_intercept)
        return xp.sqrt(xp.maximum(forms, 0.0))

    @property
    def _has_intercept(self) -> bool:
        return bool(self.param_names) and self.param_names[0] == "intercept"

    def _checked(self, X: Any) -> tuple[PredictionState, Any]:
        """The prediction state and ``X`` validated against the fitted features."""
        from gpulogreg.data.validation import check_feature_names, check_X

        state = self.prediction
        if state is None:
            raise InputValueError(
                "prediction intervals are for binary models (and each class of a "
                "one-vs-rest model); this result is multinomial"
            )
        if state.undefined:
            raise InputValueError(
                "the covariance has undefined parameters "
                f"({', '.join(state.undefined)}): prediction standard errors are not available"
            )
        owner = "InferenceResult"
        check_feature_names(X, state.feature_names, owner=owner)
        X, _ = check_X(
            X, n_features=state.coef.shape[1], owner=owner, lazy=True, accept_sparse=True
        )
        return state, X


def _plain(value: Any) -> str:
    """A label as users write it (``'a'``, ``3``), not NumPy's repr (``np.str_('a')``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


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
    from scipy import special

    if not 0.0 < alpha < 1.0:
        raise InputValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(special.ndtri(1.0 - alpha / 2.0))
