"""Data generators shared by the tests."""

from __future__ import annotations

import numpy as np


def make_classification(
    n_samples: int = 2000,
    n_features: int = 10,
    *,
    dtype: type = np.float64,
    seed: int = 0,
    ill_conditioned: bool = False,
    n_classes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Generated logistic data; ``ill_conditioned`` gives correlated features on scales 0.03-30."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n_samples, n_features))
    if ill_conditioned:
        mixing = np.eye(n_features) + 0.9 * rng.normal(size=(n_features, n_features)) / np.sqrt(
            n_features
        )
        Z = Z @ mixing
        Z *= np.logspace(np.log10(0.03), np.log10(30), n_features)
    W = rng.normal(size=(n_classes if n_classes > 2 else 1, n_features))
    W /= np.sqrt(n_features) * Z.std(axis=0)
    logits = Z @ W.T + 0.3
    if n_classes == 2:
        y = (rng.random(n_samples) < 1 / (1 + np.exp(-logits[:, 0]))).astype(np.int64)
    else:
        P = np.exp(logits - logits.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        y = np.array([rng.choice(n_classes, p=p) for p in P])
    return Z.astype(dtype), y


def assert_same_fit(a: object, b: object) -> None:
    """``a`` and ``b`` hold bit-identical fitted attributes (the models' FITTED_ATTRIBUTES).

    Arrays must agree in dtype and bytes (object arrays: in their elements and
    their types), scalars exactly, histories in every series but the elapsed
    seconds (wall-clock times).
    """
    names = type(a).FITTED_ATTRIBUTES  # type: ignore[attr-defined]
    assert [n for n in names if hasattr(a, n)] == [n for n in names if hasattr(b, n)]
    for name in names:
        if hasattr(a, name):
            _assert_same(getattr(a, name), getattr(b, name), name)


def _assert_same(x: object, y: object, name: str) -> None:
    from gpulogreg._typing import History

    assert type(x) is type(y), name
    if isinstance(x, np.ndarray):
        assert isinstance(y, np.ndarray)
        assert x.dtype == y.dtype, name
        assert x.shape == y.shape, name
        if x.dtype.kind == "O":
            assert [(type(v), v) for v in x.tolist()] == [(type(v), v) for v in y.tolist()], name
        else:
            assert x.tobytes() == y.tobytes(), name
    elif isinstance(x, History):
        left, right = x.as_dict(), y.as_dict()  # type: ignore[attr-defined]
        left.pop("elapsed"), right.pop("elapsed")
        assert left.keys() == right.keys(), name
        assert np.array(list(left.values())).tobytes() == np.array(list(right.values())).tobytes()
    elif isinstance(x, list):
        assert isinstance(y, list), name
        assert len(x) == len(y), name
        for u, v in zip(x, y, strict=True):
            _assert_same(u, v, name)
    else:
        assert x == y or (x != x and y != y), name  # NaN equals NaN here
