"""The steps of ``.ci/gpu_check.sh``, gpulogreg's one-command check on a machine with a GPU.

Each subcommand is one step; the shell script runs them in order, each under
its own time limit, and keeps their output. Nothing here installs anything or
uses the network::

    python bench/gpu_check.py facts       # device, driver, versions; exit 2: no usable GPU
    python bench/gpu_check.py kernels     # compile every entry point: registers, grid, spills
    python bench/gpu_check.py solvers     # every solver on the GPU against the CPU
    python bench/gpu_check.py testfiles   # the test files with gpu-marked tests that import here
    python bench/gpu_check.py big         # 30,000,000 x 100 float32 X (> 2^31 elements)

Every step but ``facts`` and ``testfiles`` needs a usable GPU. A step exits
non-zero when a check fails, after printing what it measured. Times printed
here are for the record of that run only (README figures come from
``bench/bench_gpu.py``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import platform
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: Exit status of ``facts`` when gpulogreg cannot use a GPU (the script then stops).
NOT_USABLE = 2
#: Rows and features of the solver comparison (small: every solver, two dtypes, 2 and 4 classes).
SOLVER_ROWS, SOLVER_FEATURES = 50_000, 20
#: Largest relative coefficient difference GPU vs CPU accepted per dtype (full-batch solvers,
#: same data, same iterations): float32 rounds differently on the two devices.
SOLVER_RTOL = {"float64": 1e-5, "float32": 1e-3}
#: Mini-batch runs see the same batches but accumulate rounding over many small steps.
MINIBATCH_RTOL = 1e-2
#: Epochs of the mini-batch runs (each is ~200 batches of 256 rows here: a few seconds).
MINIBATCH_EPOCHS = 5
#: Iterations of the full-batch solvers (gd stops there, the others converge before).
FULL_BATCH_ITERATIONS = 300
#: The large check: 30,000,000 x 100 float32 is 3e9 elements (> 2^31 = 2.1e9), 12 GB.
BIG_ROWS, BIG_FEATURES, BIG_BLOCK = 30_000_000, 100, 5_000_000
#: Full-matrix results against sums over blocks: the loss (float64 partial sums) and the
#: gradient and HVP (float32 products over 1,024-row chunks summed in float64).
BIG_LOSS_RTOL, BIG_GRAD_RTOL = 1e-6, 1e-5


def _print_exception(what: str) -> None:
    print(f"{what}: {traceback.format_exc(limit=2).strip().splitlines()[-1]}")


def facts() -> int:
    """Print the machine's GPU facts; exit :data:`NOT_USABLE` when gpulogreg has no GPU."""
    print(f"python {platform.python_version()} on {platform.platform()}")
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,memory.total,driver_version,clocks.max.sm,compute_cap"
        result = subprocess.run(
            [smi, query, "--format=csv"], capture_output=True, text=True, check=False
        )
        print(result.stdout.strip() or result.stderr.strip())
    else:
        print("nvidia-smi: not found")
    for name in ("numpy", "numba", "cupy", "scipy", "sklearn", "gpulogreg"):
        try:
            module = __import__(name)
            print(f"{name} {getattr(module, '__version__', '?')}")
        except Exception:
            _print_exception(name)
    from gpulogreg.backends import gpu_status

    available, reason = gpu_status()
    print(f"gpu_status: {available} {reason}".rstrip())
    if not available:
        return NOT_USABLE
    import cupy as cp

    runtime = cp.cuda.runtime
    print(f"CUDA runtime {runtime.runtimeGetVersion()}, driver {runtime.driverGetVersion()}")
    for device_id in range(runtime.getDeviceCount()):
        props = runtime.getDeviceProperties(device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        free, total = cp.cuda.Device(device_id).mem_info
        print(
            f"GPU {device_id}: {name}, compute capability {props['major']}.{props['minor']}, "
            f"{props['multiProcessorCount']} SMs, {total / 2**30:.1f} GiB "
            f"({free / 2**30:.1f} free)"
        )
    return 0


def kernels() -> int:
    """Compile every entry point through CuPy; print registers, shared memory and grids."""
    from gpulogreg.backends import _cuda

    start = time.perf_counter()
    compiled = _cuda.get_kernels()
    failures = 0
    print(f"GPU {compiled.device_id}: {compiled.limits}")
    for name, spec in _cuda.KERNELS.items():
        for suffix in spec.suffixes:
            entry = f"gpulogreg_{name}_{suffix}"
            function = compiled.function(entry)
            dtype, index_dtype = _cuda.suffix_dtypes(suffix)
            grid = compiled.grid(name, dtype, 10**8, index_dtype)
            local = int(function.local_size_bytes)
            print(
                f"  {entry:<42} {function.num_regs:3d} registers, "
                f"{function.shared_size_bytes:5d} B shared, {local} B local; "
                f"grid for 1e8 rows: {grid}"
            )
            failures += local != 0
    print(f"compiled and looked up in {time.perf_counter() - start:.1f} s")
    if failures:
        print(f"FAIL: {failures} entry point(s) use local memory (register spills)")
    return int(failures > 0)


def _labels(rng: np.random.Generator, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Labels drawn from a softmax model on X (two classes: a logistic one)."""
    W = rng.standard_normal((n_classes, X.shape[1])) / 3
    Z = X @ W.T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return (P.cumsum(axis=1) > rng.random((X.shape[0], 1))).argmax(axis=1)


def solvers() -> int:
    """Every solver, float32 and float64, 2 and 4 classes: GPU fit against CPU fit."""
    import cupy as cp

    from gpulogreg import LogisticRegression
    from gpulogreg.solvers import SOLVERS

    warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is expected for gd
    rng = np.random.default_rng(0)
    names = [*SOLVERS, "minibatch"]
    failures = 0
    for n_classes in (2, 4):
        X = rng.standard_normal((SOLVER_ROWS, SOLVER_FEATURES))
        y = _labels(rng, X, n_classes)
        for dtype in ("float64", "float32"):
            Xd = X.astype(dtype)
            for solver in names:
                kw: dict[str, Any] = {"solver": solver, "tol": 1e-8, "random_state": 0}
                kw["max_iter"] = (
                    MINIBATCH_EPOCHS if solver == "minibatch" else FULL_BATCH_ITERATIONS
                )
                try:
                    cpu = LogisticRegression(device="cpu", **kw).fit(Xd, y)
                    start = time.perf_counter()
                    gpu = LogisticRegression(device="gpu", **kw).fit(cp.asarray(Xd), cp.asarray(y))
                    cp.cuda.Device().synchronize()
                    seconds = time.perf_counter() - start
                    scale = float(np.abs(cpu.coef_).max())
                    diff = float(np.abs(np.asarray(gpu.coef_) - cpu.coef_).max()) / scale
                    rtol = MINIBATCH_RTOL if solver == "minibatch" else SOLVER_RTOL[dtype]
                    ok = gpu.backend_ == "cupy" and type(gpu.coef_) is np.ndarray and diff <= rtol
                    print(
                        f"K={n_classes} {dtype} {solver:<9} rel coef diff {diff:.1e} "
                        f"(<= {rtol:.0e}) gpu fit {seconds:.2f} s backend {gpu.backend_} "
                        f"{'ok' if ok else 'FAIL'}"
                    )
                except Exception:
                    ok = False
                    _print_exception(f"K={n_classes} {dtype} {solver}: FAIL")
                failures += not ok
    print(f"{failures} failure(s)")
    return int(failures > 0)


def _imports_resolve(path: Path) -> bool:
    """Whether every top-level import of a test file is installed here (Dask may be absent)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [
        alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names
    ]
    names += [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    ]
    return all(importlib.util.find_spec(name.split(".")[0]) is not None for name in names)


def _is_gpu_mark(node: ast.expr) -> bool:
    """``pytest.mark.gpu`` (the marker's expression)."""
    return ast.unparse(node) == "pytest.mark.gpu"


def _has_gpu_tests(tree: ast.Module) -> bool:
    """A module-level ``pytestmark = pytest.mark.gpu`` or a test decorated with the mark."""
    for node in tree.body:
        marks_module = isinstance(node, ast.Assign) and _is_gpu_mark(node.value)
        if marks_module and "pytestmark" in ast.unparse(node).split(" = ")[:-1]:
            return True
        if isinstance(node, ast.FunctionDef) and any(map(_is_gpu_mark, node.decorator_list)):
            return True
    return False


def testfiles() -> int:
    """Print the test files that hold gpu-marked tests and import on this machine."""
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if _has_gpu_tests(ast.parse(path.read_text(encoding="utf-8"))) and _imports_resolve(path):
            print(path.relative_to(REPO))
    return 0


def _rel(a: Any, b: Any) -> float:
    import cupy as cp

    return float(cp.abs(a - b).max() / cp.abs(b).max())


def big() -> int:
    """A 30,000,000 x 100 float32 X on the device: full-matrix results against block sums."""
    import cupy as cp

    from gpulogreg.backends import make_backend

    m, n, step = BIG_ROWS, BIG_FEATURES, BIG_BLOCK
    cp.random.seed(0)
    X = cp.random.standard_normal((m, n), dtype=cp.float32)  # made on the device: no host copy
    y = (cp.random.random(m) < 0.5).astype(cp.int32)
    s = cp.full(m, 1.0 / m)
    params = cp.asarray(np.random.default_rng(0).normal(size=n + 1) * 0.05)
    print(f"X: {m:,} x {n} float32 = {X.size:,} elements ({X.nbytes / 1e9:.1f} GB)")
    full = make_backend(X, y, s, backend="cupy")
    for label in ("first call, compile included", "second call"):
        start = time.perf_counter()
        loss, grad = full.loss_grad(params)
        cp.cuda.Device().synchronize()
        print(f"loss_grad ({label}): {time.perf_counter() - start:.3f} s")
    hvp = full.hvp(params, params)
    H = full.hessian(params)
    loss_sum, grad_sum, hvp_sum, H_sum = 0.0, cp.zeros_like(grad), cp.zeros_like(hvp), 0
    for first in range(0, m, step):
        rows = slice(first, min(first + step, m))
        block = make_backend(X[rows], y[rows], s[rows], backend="cupy")
        part, g = block.loss_grad(params)
        loss_sum += part
        grad_sum += g
        hvp_sum += block.hvp(params, params)
        H_sum = H_sum + block.hessian(params)
    checks = {
        "loss": (abs(loss - loss_sum) / abs(loss_sum), BIG_LOSS_RTOL),
        "gradient": (_rel(grad, grad_sum), BIG_GRAD_RTOL),
        "hvp": (_rel(hvp, hvp_sum), BIG_GRAD_RTOL),
        "hessian": (_rel(H, H_sum), BIG_GRAD_RTOL),
    }
    failures = 0
    for name, (diff, rtol) in checks.items():
        ok = diff <= rtol
        failures += not ok
        verdict = "ok" if ok else "FAIL"
        print(f"{name}: full vs block sums rel diff {diff:.1e} (<= {rtol:.0e}) {verdict}")
    finite = bool(cp.isfinite(grad).all()) and bool(cp.isfinite(H).all())
    print(f"finite gradient and Hessian: {finite}")
    failures += not finite
    print("big: ok" if failures == 0 else f"big: {failures} failure(s)")
    return int(failures > 0)


STEPS = {"facts": facts, "kernels": kernels, "solvers": solvers, "testfiles": testfiles, "big": big}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=sorted(STEPS))
    args = parser.parse_args(argv)
    return STEPS[args.step]()


if __name__ == "__main__":
    sys.exit(main())
