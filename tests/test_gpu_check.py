"""The project's GPU check (``.ci/gpu_check.sh``) and what it calls, on a machine without a GPU.

Without a usable GPU the check must stop at once, cleanly, at its
"GPU NOT USABLE" line with a non-zero exit status, having written the device
facts to ``$OUT``. (On a GPU machine the check runs for minutes: run it
directly there, not through this test.)
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpulogreg.backends import gpu_status

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / ".ci" / "gpu_check.sh"
STEPS = REPO / "bench" / "gpu_check.py"


def _run(*cmd: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable)
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is usable here: run .ci/gpu_check.sh itself")
def test_gpu_check_stops_cleanly_without_a_gpu(tmp_path: Path) -> None:
    result = _run("bash", str(CHECK), out=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = [line for line in result.stdout.splitlines() if line.startswith("GPU NOT USABLE")]
    assert len(lines) == 1, output
    assert gpu_status()[1] in lines[0]  # the reason, as gpulogreg sees it
    assert "Traceback" not in output
    assert (tmp_path / "summary.txt").read_text().startswith("GPU NOT USABLE")
    facts = (tmp_path / "device.txt").read_text()
    assert "gpu_status: False" in facts
    assert "cupy" in facts or "CuPy" in facts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.txt", "summary.txt"]


def test_gpu_check_runs_every_step_the_shared_check_has() -> None:
    """Device facts, solvers GPU vs CPU, gpu tests (required), > 2^31 elements, benchmark."""
    script = CHECK.read_text()
    for needed in (
        "bench/gpu_check.py facts",
        "bench/gpu_check.py solvers",
        "-m pytest -m gpu --require-gpu",
        "bench/gpu_check.py big",
        "bench/bench_gpu.py --dtype float32 --json",
        "bench/bench_sparse_gpu.py --dtype float32 float64",
        "GPU NOT USABLE",
    ):
        assert needed in script, needed
    # The steps' limits add up to the whole budget (under 8 minutes with the device step).
    limits = [int(m) for m in re.findall(r"^step \S+ (\d+) ", script, flags=re.M)]
    budget = int(re.search(r"^TOTAL_SECONDS=(\d+)", script, flags=re.M).group(1))
    assert sum(limits) == budget <= 8 * 60 - 20
    tree = ast.parse(STEPS.read_text())
    big = next(  # BIG_ROWS, BIG_FEATURES, BIG_BLOCK = ...
        node
        for node in tree.body
        if isinstance(node, ast.Assign) and "BIG_ROWS" in ast.unparse(node.targets[0])
    )
    rows, features, _ = ast.literal_eval(big.value)
    assert rows * features > 2**31


def test_gpu_check_helpers_exist_and_list_the_gpu_tests() -> None:
    result = _run(sys.executable, str(STEPS), "testfiles")
    assert result.returncode == 0, result.stderr
    files = result.stdout.split()
    assert "tests/test_gpu.py" in files
    assert "tests/test_require_gpu.py" not in files  # gpu marks only inside a string there
    help_text = _run(sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--help").stdout
    assert "--json" in help_text  # also what ../shared/gpu-check.sh calls
    assert "--dtype" in help_text
    sparse = _run(sys.executable, str(REPO / "bench" / "bench_sparse_gpu.py"), "--help")
    assert sparse.returncode == 0, sparse.stderr
    assert "--json" in sparse.stdout
    assert "--dtype" in sparse.stdout
    assert "tests/test_sparse_gpu.py" in files
