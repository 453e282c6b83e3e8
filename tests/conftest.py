"""Shared fixtures and the ``gpu`` marker's skip rule."""

from __future__ import annotations

import numpy as np
import pytest


def _gpu_reason() -> str:
    from gpulogreg.backends import gpu_status

    available, reason = gpu_status()
    return "" if available else reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests, with the reason, when no CUDA device is usable."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = _gpu_reason()
    if reason:
        skip = pytest.mark.skip(reason=f"no usable GPU: {reason}")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
