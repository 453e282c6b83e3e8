"""Shared fixtures and the ``gpu`` marker's skip rule.

Where no CUDA device is usable, ``gpu``-marked tests are skipped with the
reason. On a machine that is meant to have a GPU, pass ``--require-gpu`` (or
set ``GPULOGREG_REQUIRE_GPU=1``): they then fail instead, and a run that
selects no ``gpu`` test is an error, so a GPU run that tests nothing cannot
look green.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

#: Environment variable that, set to 1, does what ``--require-gpu`` does.
REQUIRE_GPU_ENV = "GPULOGREG_REQUIRE_GPU"
#: Why a gpu test must fail rather than skip (set on the items at collection).
_NO_GPU = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-gpu",
        action="store_true",
        default=False,
        help=(
            "fail the gpu-marked tests instead of skipping them when no CUDA device is "
            f"usable, and fail a run that selects none (also {REQUIRE_GPU_ENV}=1)"
        ),
    )


def gpu_required(config: pytest.Config) -> bool:
    """Whether ``--require-gpu`` or ``GPULOGREG_REQUIRE_GPU=1`` asks for a real GPU run."""
    return bool(config.getoption("--require-gpu")) or os.environ.get(REQUIRE_GPU_ENV) == "1"


def _gpu_reason() -> str:
    from gpulogreg.backends import gpu_status

    available, reason = gpu_status()
    return "" if available else reason


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: only the tests that will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests, with the reason, when no CUDA device is usable.

    With :func:`gpu_required` they are made to fail instead, and selecting no
    ``gpu`` test at all is a usage error.
    """
    required = gpu_required(config)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        if required:
            raise pytest.UsageError(
                f"--require-gpu / {REQUIRE_GPU_ENV}=1: no gpu-marked test was selected"
            )
        return
    reason = _gpu_reason()
    if not reason:
        return
    if required:
        for item in gpu_items:
            item.stash[_NO_GPU] = reason
        return
    skip = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a gpu test that cannot run on a run that requires the GPU."""
    reason = item.stash.get(_NO_GPU, None)
    if reason is not None:
        pytest.fail(
            f"a GPU is required (--require-gpu / {REQUIRE_GPU_ENV}=1) but none is usable: {reason}",
            pytrace=False,
        )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def emulated_kernels(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The CUDA kernels compiled for the host (``tests/_cuda_emulator.py``), once per session."""
    from tests._cuda_emulator import EmulatedKernels, build_emulator, find_cxx

    if find_cxx() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) found")
    return EmulatedKernels(build_emulator(tmp_path_factory.mktemp("emulator")))
