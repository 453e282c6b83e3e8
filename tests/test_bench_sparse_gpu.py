"""``bench/bench_sparse_gpu.py`` runs end to end without a GPU, on tiny data.

A GPU session has minutes: a benchmark that fails there on a typo wastes
them. Here its measuring code runs on scipy matrices through the emulated
CUDA kernels, with a stand-in for the few ``cupy`` calls it makes (arrays,
copies, CUDA events timed by the host clock). The figures mean nothing; the
rows, their fields and the JSON lines are what is checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpulogreg.sparse_problems import make_sparse_problem
from tests._cuda_emulator import EmulatedKernels

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Event:
    def record(self) -> None:
        self.at = time.perf_counter()

    def synchronize(self) -> None:
        """Host work is synchronous."""


def _host_cupy() -> types.SimpleNamespace:
    """What the benchmark calls of ``cupy``, on host memory."""
    device = types.SimpleNamespace(synchronize=lambda: None)
    cuda = types.SimpleNamespace(
        Device=lambda: device,
        Event=_Event,
        get_elapsed_time=lambda start, stop: (stop.at - start.at) * 1e3,
    )
    return types.SimpleNamespace(
        cuda=cuda,
        asarray=np.asarray,
        asnumpy=np.asarray,
        empty=np.empty,
        empty_like=np.empty_like,
        full=np.full,
        copyto=np.copyto,
        int32=np.int32,
    )


@pytest.fixture
def bench(emulated_kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch) -> Any:
    from gpulogreg import backends
    from gpulogreg.backends import cupy_backend

    monkeypatch.setattr(backends, "gpu_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "to_device", lambda a, device: a)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: emulated_kernels)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2**40, 2**40, "emulated GPU")
    )
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "bench_gpu", raising=False)
    return _load("bench_sparse_gpu")


def test_the_sparse_gpu_benchmark_measures_every_row(bench: Any, tmp_path: Path) -> None:
    cp = _host_cupy()
    X, y = make_sparse_problem("ctr", 600, 2**12, per_row=8, seed=0)
    args = argparse.Namespace(repeat=2, no_lanes=False)
    rows = bench.measure(cp, X, y, args)
    rows += bench.fit_rows(cp, X, y, C=0.1)
    whats = [row["what"] for row in rows]
    for transpose in ("csc", "atomic", "cusparse"):
        assert f"loss_grad, transpose={transpose}" in whats
        assert f"  X^T R alone, transpose={transpose}" in whats
    by_what = {row["what"]: row for row in rows}
    assert by_what["loss_grad, transpose=csc"]["bitwise_repeatable"] is True
    assert by_what["loss_grad, transpose=csc"]["rel_diff_from_csc"] == 0.0
    assert by_what["loss_grad, transpose=atomic"]["rel_diff_from_csc"] < 1e-12
    assert by_what["loss_grad, scipy-like baseline on cupyx"]["rel_diff_from_csc"] < 1e-12
    copy = by_what["CSC copy: made in (once per fit)"]
    assert 0.5 < copy["copy_vs_csr"] < 2
    lanes = [row for row in rows if "fused_seconds" in row]
    assert [row["lanes"] for row in lanes] == list(bench.LANES)
    assert any("rule: rows" in row["what"] for row in lanes)
    fits = [row for row in rows if "seconds_to_target" in row]
    assert [row["solver"] for row in fits] == ["lbfgs", "newton-cg"]
    assert all(row["final_gap"] <= bench.TARGET_GAP for row in fits)
    bench.print_rows(rows)
    json.dumps(rows)  # every field is plain JSON
