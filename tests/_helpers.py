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
