"""The generated sparse benchmark problems: shapes, canonical CSR, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from gpulogreg.sparse_problems import make_sparse_problem


@pytest.mark.parametrize(("kind", "per_row"), [("ctr", 30), ("text", 40)])
def test_problems_are_canonical_deterministic_csr(kind: str, per_row: int) -> None:
    X, y = make_sparse_problem(kind, 3000, 5000, per_row=per_row, dtype="float32", seed=3)
    again, y_again = make_sparse_problem(kind, 3000, 5000, per_row=per_row, dtype="float32", seed=3)
    assert X.format == "csr"
    assert X.has_canonical_format
    assert X.dtype == np.float32
    assert X.indices.dtype == np.int32
    np.testing.assert_array_equal(X.indices, again.indices)
    np.testing.assert_array_equal(X.data, again.data)
    np.testing.assert_array_equal(y, y_again)
    assert set(np.unique(y)) == {0, 1}
    assert np.isfinite(X.data).all()
    per = np.diff(X.indptr)
    if kind == "ctr":
        assert per.max() == per_row
        assert per.mean() > 0.95 * per_row
        np.testing.assert_array_equal(X.data, 1.0)
    else:
        assert abs(per.mean() - per_row) < 0.1 * per_row
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
        assert (X.data > 0).all()


def test_other_seeds_give_other_data() -> None:
    a, _ = make_sparse_problem("ctr", 500, 1000, per_row=10, seed=0)
    b, _ = make_sparse_problem("ctr", 500, 1000, per_row=10, seed=1)
    assert (a != b).nnz > 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        make_sparse_problem("clicks", 10, 10, per_row=2)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        make_sparse_problem("ctr", 10, 10, per_row=2, dtype="int8")
