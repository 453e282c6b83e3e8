"""scikit-learn's estimator checks on LogisticRegression."""

from __future__ import annotations

import pytest

from gpulogreg import LogisticRegression

estimator_checks = pytest.importorskip("sklearn.utils.estimator_checks")

#: Checks we expect to fail, with the reason (scikit-learn reports them as xfail).
EXPECTED_FAILURES: dict[str, str] = {}


@estimator_checks.parametrize_with_checks(
    [LogisticRegression(tol=1e-12)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILURES,
)
def test_scikit_learn_compatible(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]
