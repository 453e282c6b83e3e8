"""``--require-gpu`` / ``GPULOGREG_REQUIRE_GPU=1``: no GPU makes the gpu tests fail, not skip.

Each case runs pytest in a subprocess on a tiny project that uses this
directory's ``conftest.py``, with ``gpu_status`` faked to report no GPU (so the
test means the same on a machine that has one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent

TINY_TESTS = """
import pytest

@pytest.mark.gpu
def test_on_the_gpu():
    pass

def test_on_the_cpu():
    pass
"""
NO_GPU_PLUGIN = """
import gpulogreg.backends

gpulogreg.backends.gpu_status = lambda: (False, "no CUDA device found (faked)")
"""


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    shutil.copy(TESTS_DIR / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a CUDA device\n")
    (tmp_path / "test_tiny.py").write_text(TINY_TESTS)
    (tmp_path / "no_gpu_here.py").write_text(NO_GPU_PLUGIN)
    return tmp_path


def _pytest(project: Path, *args: str, require_env: str | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "GPULOGREG_REQUIRE_GPU"}
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(REPO)])
    if require_env is not None:
        env["GPULOGREG_REQUIRE_GPU"] = require_env
    cmd = [sys.executable, "-m", "pytest", "-p", "no_gpu_here", "-p", "no:cacheprovider"]
    cmd += ["-rA", *args]
    result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def test_without_the_option_gpu_tests_skip(tiny_project: Path) -> None:
    code, out = _pytest(tiny_project)
    assert code == 0, out
    assert "1 passed, 1 skipped" in out
    assert "no usable GPU: no CUDA device found (faked)" in out
    code, out = _pytest(tiny_project, require_env="0")
    assert code == 0, out


@pytest.mark.parametrize("how", ["option", "environment"])
def test_require_gpu_turns_the_skips_into_failures(tiny_project: Path, how: str) -> None:
    if how == "option":
        code, out = _pytest(tiny_project, "--require-gpu")
    else:
        code, out = _pytest(tiny_project, require_env="1")
    assert code == 1, out
    assert "1 passed, 1 error" in out  # it fails at setup, before the test runs
    assert "skipped" not in out
    assert "a GPU is required" in out
    assert "no CUDA device found (faked)" in out


def test_require_gpu_with_no_gpu_test_selected_is_an_error(tiny_project: Path) -> None:
    code, out = _pytest(tiny_project, "--require-gpu", "-m", "not gpu")
    assert code == 4, out  # pytest's usage error
    assert "no gpu-marked test was selected" in out
