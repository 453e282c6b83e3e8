"""The benchmark harness behind ``gpulogreg bench``.

What it measures, all in one process and one run (bandwidth varies between
runs on the same machine, so only figures from the same run are compared):

1. **Read floor**: one read of ``X`` (:func:`gpulogreg._numba_read.read_once`,
   a parallel Numba sum) on the CPU, a device-side sum on the GPU. A
   loss-and-gradient evaluation is memory-bound: it cannot beat this.
2. **Loss and gradient** per backend (``numpy`` baseline, ``numba``, ``cupy``
   when a GPU is usable, scikit-learn's ``LinearModelLoss`` when installed):
   median time over ``repeat`` calls after a warm-up, GB/s (bytes of ``X`` /
   time), the ratio to the read floor and the speed-up over the NumPy baseline.
   The CPU floor and the Numba kernel are timed round-robin, the BLAS users
   after them (see :func:`measure_loss_grad`).
3. **Time to the optimum** per backend and solver on a well- and an
   ill-conditioned problem: the reference optimum ``f*`` is a tight Newton fit
   in float64 on the same values (and never above the best objective any run
   reached); each run is ``LogisticRegression(tol=1e-8)`` on the benchmark's
   dtype. Its final objective is re-evaluated in float64 and its relative gap
   ``(f - f*) / |f*|`` reported; the time to the optimum is the wall time
   from calling ``fit`` until the first iteration whose objective is within
   ``1e-8`` relative of ``f*`` (the solver history's objectives, calibrated to
   the exact float64 value at the end). scikit-learn has no history: its time
   is the whole fit, counted only when it ended within ``1e-8``.
4. **Peak memory**: the resident set size during each fit (psutil sampling
   when installed, else the process's lifetime peak from ``resource``).

Outputs: a terminal table, JSON lines (``--json-out``: one record per
measurement, ``kind`` in {"config", "read_floor", "loss_grad", "reference",
"fit"}) and a PNG plot of the objective gap against time per backend and
solver (``--plot``; needs matplotlib, the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError
from gpulogreg._version import __version__
from gpulogreg.sparse_problems import KINDS

__all__ = [
    "BenchConfig",
    "Reference",
    "add_arguments",
    "make_loss_grad",
    "make_problem",
    "round_robin",
    "run",
    "run_from_args",
]

#: Relative objective gap that counts as "at the optimum".
TARGET_GAP = 1e-8
#: Stopping tolerance of the float64 Newton reference: far below what the
#: 1e-8 relative gap needs, so the reference is the optimum to rounding.
REFERENCE_TOL = 1e-12
#: Rows generated per block: each block has its own random stream and one
#: thread, so the data do not depend on the thread count; the block bounds
#: the generator's temporaries (two float32 halves of a block).
_GENERATE_BLOCK_ROWS = 65536
#: Smallest and largest feature scale of the ill-conditioned problem.
ILL_SCALES = (0.03, 30.0)
#: Seconds between RSS samples of the peak-memory sampler.
_RSS_SAMPLE_S = 0.005
DEFAULT_SOLVERS = ("newton", "lbfgs", "gd")
#: Iteration cap of the timed fits. A first-order solver that has not reached
#: the optimum of the ill-conditioned problem after 300 iterations is far from
#: it (relative gap about 1e-2 at 1,000 iterations was measured), and a cap of
#: 1,000 made the default run take 24 minutes, mostly in such runs.
DEFAULT_MAX_ITER = 300
SKLEARN_SOLVERS = ("lbfgs", "newton-cholesky")
#: scikit-learn's solvers on sparse problems: newton-cholesky would form the
#: n_features^2 Hessian (8 TB at 2^20 features); newton-cg does not.
SKLEARN_SPARSE_SOLVERS = ("lbfgs", "newton-cg")
#: scikit-learn's solvers on multinomial problems: newton-cholesky would build the
#: (K (n + 1))^2 Hessian from K (K + 1) / 2 weighted Gram products per iteration
#: (over 5 minutes a fit at 300,000 x 200, K = 10, on the 2-core EPYC); newton-cg
#: uses Hessian-vector products.
SKLEARN_MULTINOMIAL_SOLVERS = ("lbfgs", "newton-cg")


# --------------------------------------------------------------------------- data
def make_problem(
    n_rows: int,
    n_cols: int,
    *,
    dtype: Any = "float32",
    conditioning: str = "well",
    seed: int = 0,
    n_classes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Generated logistic data: binary, or multinomial with ``n_classes`` classes.

    Parameters
    ----------
    n_rows, n_cols : int
    dtype : {"float32", "float64"}
    conditioning : {"well", "ill"}
        "well": independent standard normal features. "ill": correlated
        features (a random mixing) on scales log-spaced from 0.03 to 30, the
        hard case of the issue's acceptance test.
    seed : int
        The data are a function of ``seed``, the shape, ``dtype``,
        ``conditioning`` and ``n_classes`` only: the same on every machine and
        for any thread count.
    n_classes : int, default=2
        More than 2: labels drawn from a softmax model (one coefficient row and
        intercept per class, the Gumbel-max trick).

    Returns
    -------
    X : ndarray of shape (n_rows, n_cols), C-contiguous, ``dtype``
    y : ndarray of shape (n_rows,), int64 in {0, ..., n_classes - 1}
        Drawn from the logistic (softmax) model with logits of standard
        deviation about 2.

    Notes
    -----
    Rows are made in blocks of :data:`_GENERATE_BLOCK_ROWS`, on all cores,
    each block from its own stream (``SeedSequence(seed).spawn``). Features
    are standard normal in float32 by the Box-Muller transform (NumPy's
    vectorised float32 ``log``, ``sin`` and ``cos``; its tails end at 5.8
    standard deviations), about four times faster per value than NumPy's
    ziggurat and without float64 temporaries.
    """
    if conditioning not in ("well", "ill"):
        raise InputValueError(f"conditioning must be 'well' or 'ill', got {conditioning!r}")
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise InputValueError(f"dtype must be float32 or float64, got {dt}")
    if n_rows < 2 or n_cols < 1:
        raise InputValueError(f"need at least 2 rows and 1 column, got {n_rows} x {n_cols}")
    if n_classes < 2 or n_rows < n_classes:
        raise InputValueError(
            f"need 2 <= n_classes <= n_rows, got {n_classes} classes for {n_rows} rows"
        )
    root = np.random.SeedSequence(seed)
    rng = np.random.default_rng(root)
    if conditioning == "ill":
        mixing = np.eye(n_cols) + 0.9 * rng.normal(size=(n_cols, n_cols)) / np.sqrt(n_cols)
        scales = np.logspace(np.log10(ILL_SCALES[0]), np.log10(ILL_SCALES[1]), n_cols)
        col_std = scales * np.sqrt((mixing**2).sum(axis=0))
    else:
        mixing = None
        scales = np.ones(n_cols)
        col_std = scales
    # Logit standard deviation about 2 (each feature contributes equally).
    shape = n_cols if n_classes == 2 else (n_classes, n_cols)
    w = 2.0 * rng.normal(size=shape) / (np.sqrt(n_cols) * col_std)
    # A slightly unbalanced problem: the intercepts matter.
    intercept = 0.3 if n_classes == 2 else 0.3 * rng.normal(size=n_classes)
    model = _BlockModel(
        coef=w.astype(dt),
        intercept=intercept,
        mixing=None if mixing is None else (mixing * scales).astype(dt),
    )
    X = np.empty((n_rows, n_cols), dtype=dt)
    y = np.empty(n_rows, dtype=np.int64)
    starts = range(0, n_rows, _GENERATE_BLOCK_ROWS)
    streams = root.spawn(len(starts))

    def fill(block: int) -> None:
        rows = slice(starts[block], starts[block] + _GENERATE_BLOCK_ROWS)
        model.fill(np.random.default_rng(streams[block]), X[rows], y[rows])

    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    workers = min(len(starts), _usable_cpus())
    # One BLAS thread per block (X @ coef, the mixing): the blocks run in parallel.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        list(pool.map(fill, range(len(starts))))
    if len(np.unique(y)) < n_classes:  # a degenerate tiny draw: make every class present
        y[:n_classes] = np.arange(n_classes)
    return X, y


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class _BlockModel:
    """The logistic (softmax) model :func:`make_problem` draws blocks of rows from."""

    #: (n_cols,) for the binary model, (n_classes, n_cols) for the softmax model.
    coef: np.ndarray
    intercept: float | np.ndarray
    #: Feature mixing with the scales folded in (ill-conditioned problems), or None.
    mixing: np.ndarray | None

    def fill(self, rng: np.random.Generator, X: np.ndarray, y: np.ndarray) -> None:
        """Draw the rows of ``X`` (C-contiguous) and their labels ``y`` from ``rng``."""
        if self.mixing is None and X.dtype == np.float32:
            _standard_normal_f32(rng, X)
        else:
            Z = np.empty(X.shape, dtype=np.float32)
            _standard_normal_f32(rng, Z)
            if self.mixing is None:
                X[...] = Z
            else:
                np.matmul(Z.astype(X.dtype, copy=False), self.mixing, out=X)
        if self.coef.ndim == 1:
            logits = (X @ self.coef).astype(np.float64) + self.intercept
            y[...] = rng.random(len(y)) < 1.0 / (1.0 + np.exp(-logits))
            return
        scores = (X @ self.coef.T).astype(np.float64) + self.intercept
        y[...] = np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)


def _standard_normal_f32(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fill ``out`` (float32, C-contiguous) with standard normal values (Box-Muller).

    Two uniform draws ``u``, ``v`` give the independent pair ``r cos(2 pi v)``,
    ``r sin(2 pi v)`` with ``r = sqrt(-2 log(1 - u))``; the cosines fill the
    first half of ``out``, the sines the second.
    """
    flat = out.reshape(-1)
    half = (flat.size + 1) // 2
    radius = rng.random(half, dtype=np.float32)
    np.subtract(np.float32(1), radius, out=radius)  # (0, 1]: log is finite
    np.log(radius, out=radius)
    np.multiply(radius, np.float32(-2), out=radius)
    np.sqrt(radius, out=radius)
    angle = rng.random(half, dtype=np.float32)
    np.multiply(angle, np.float32(2 * np.pi), out=angle)
    first, second = flat[:half], flat[half:]
    np.cos(angle, out=first)
    np.multiply(first, radius, out=first)
    rest = second.size
    np.sin(angle[:rest], out=second)
    np.multiply(second, radius[:rest], out=second)


# --------------------------------------------------------------------------- timing helpers
def _median_time(
    fn: Callable[[], Any], repeat: int, sync: Callable[[], None] | None = None
) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls, after one warm-up call."""
    return _round_robin({"fn": fn}, repeat, sync)["fn"]


def _round_robin(
    fns: dict[str, Callable[[], Any]], repeat: int, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """Median seconds of each function over ``repeat`` interleaved calls (:func:`round_robin`)."""
    return {name: statistics.median(t) for name, t in round_robin(fns, repeat, sync).items()}


def round_robin(
    fns: dict[str, Callable[[], Any]],
    repeat: int,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of each call of each function, over ``repeat`` interleaved rounds.

    One warm-up call each, then ``repeat`` rounds that call every function
    once: noise from other processes on a shared machine hits all of them
    alike, so their ratios are steadier than those of back-to-back series.
    ``sync`` runs after each call (a device synchronisation); ``clock`` is
    the timer (wall time by default).
    """
    for fn in fns.values():
        fn()
    if sync:
        sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = clock()
            fn()
            if sync:
                sync()
            times[name].append(clock() - start)
    return times


class PeakRSS:
    """Peak resident set size (bytes) while the ``with`` block runs.

    Samples the process RSS every few milliseconds with psutil when it is
    installed; otherwise reports the lifetime peak from ``resource`` (which
    can only grow, so later stages inherit earlier peaks: ``exact`` says which).
    """

    def __init__(self) -> None:
        self.peak = 0
        self.exact = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None

    def __enter__(self) -> PeakRSS:
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is not None:
            self._process = psutil.Process()
            self.exact = True
            self.peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(_RSS_SAMPLE_S):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._process.memory_info().rss)
        else:
            self.peak = _lifetime_peak_rss()


def _lifetime_peak_rss() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, kB on Linux


# --------------------------------------------------------------------------- configuration
@dataclass
class BenchConfig:
    """What ``gpulogreg bench`` runs (see :func:`add_arguments` for the meaning)."""

    rows: int = 1_000_000
    cols: int = 100
    dtype: str = "float32"
    conditioning: Sequence[str] = ("well", "ill")
    C: float = 1.0
    #: Timed calls per measurement: on the shared 2-core development machine the
    #: medians of 5 calls moved by almost 20 % between two runs.
    repeat: int = 20
    backends: Sequence[str] | None = None
    solvers: Sequence[str] = DEFAULT_SOLVERS
    sklearn: bool = True
    tol: float = 1e-8
    max_iter: int = DEFAULT_MAX_ITER
    seed: int = 0
    fit: bool = True
    #: A sparse problem kind (:data:`gpulogreg.sparse_problems.KINDS`) instead of dense ones.
    sparse: str | None = None
    #: Ids (ctr) or mean words (text) per row of the sparse problem.
    per_row: int = 30
    #: Classes of the dense problems (more than 2: multinomial fits).
    classes: int = 2


@dataclass
class BenchResult:
    """All records of one run (JSON-ready dicts) and the traces for the plot."""

    records: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]


def available_backends(requested: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Backends that can run here, and why the others cannot.

    Returns
    -------
    names : list of str
        Among "numpy", "numba", "cupy", "sklearn", in that order.
    skipped : dict
        name -> reason, for requested or default backends that cannot run.
    """
    import importlib

    from gpulogreg.backends import BACKENDS, gpu_status

    wanted = list(requested) if requested else ["numpy", "numba", "cupy", "sklearn"]
    unknown = [b for b in wanted if b not in (*BACKENDS, "sklearn")]
    if unknown:
        raise InputValueError(
            f"unknown backend {unknown[0]!r}; choose among numpy, numba, cupy, sklearn"
        )
    names: list[str] = []
    skipped: dict[str, str] = {}
    for name in ("numpy", "numba", "cupy", "sklearn"):
        if name not in wanted:
            continue
        if name == "cupy":
            ok, reason = gpu_status()
            if not ok:
                skipped[name] = reason
                continue
        elif name == "sklearn":
            try:
                importlib.import_module("sklearn.linear_model")
            except ImportError:
                skipped[name] = "scikit-learn is not installed"
                continue
        else:
            module_name = BACKENDS[name].partition(":")[0]
            try:
                importlib.import_module(module_name)
            except ImportError as exc:
                skipped[name] = f"cannot import {module_name} ({exc})"
                continue
        names.append(name)
    return names, skipped


def _nbytes(X: Any) -> int:
    """Bytes of ``X``: a dense array's, or a CSR matrix's data, indices and row pointers."""
    from gpulogreg._array import is_sparse

    if is_sparse(X):
        return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
    return int(X.nbytes)


def _system_record(cfg: BenchConfig, X: Any) -> dict[str, Any]:
    versions: dict[str, Any] = {"gpulogreg": __version__, "numpy": np.__version__}
    for name in ("numba", "sklearn", "cupy"):
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", None) if module else None
    threads = None
    with contextlib.suppress(Exception):
        import numba

        threads = int(numba.get_num_threads())
    return {
        "kind": "config",
        "rows": cfg.rows,
        "cols": cfg.cols,
        "dtype": cfg.dtype,
        "X_bytes": _nbytes(X),
        "sparse": cfg.sparse,
        "classes": cfg.classes,
        "nnz": int(X.nnz) if cfg.sparse else None,
        "C": cfg.C,
        "repeat": cfg.repeat,
        "tol": cfg.tol,
        "seed": cfg.seed,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "numba_threads": threads,
        "versions": versions,
        "openblas_env": {
            k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
        },
    }


# --------------------------------------------------------------------------- measurements
def _cpu_read_floor(X: Any) -> tuple[Callable[[], Any] | None, str]:
    """The CPU read floor as a callable (``None`` when the Numba kernels are missing)."""
    from gpulogreg._array import is_sparse

    try:
        from gpulogreg._numba_read import read_csr_once, read_once
    except ImportError:
        return None, "unavailable (gpulogreg._numba_read missing)"
    if is_sparse(X):
        return (lambda: read_csr_once(X.data, X.indices)), "parallel Numba sum over data, indices"
    return (lambda: read_once(X)), "parallel Numba sum over X"


def _gpu_sync() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def _gpu_read_floor(Xd: Any, repeat: int) -> float:
    import cupy

    return _median_time(lambda: cupy.sum(Xd), repeat, sync=_gpu_sync)


def _n_classes(y: np.ndarray) -> int:
    """Classes of generated labels ``0 .. K - 1`` (2 for binary ones)."""
    return max(int(y.max()) + 1, 2)


def _backend_for(name: str, X: Any, y: np.ndarray) -> Any:
    from gpulogreg.backends import make_backend

    n = X.shape[0]
    sw = np.full(n, 1.0 / n)
    device = "gpu" if name == "cupy" else "cpu"
    return make_backend(
        X,
        y.astype(np.int32),
        sw,
        n_classes=_n_classes(y),
        fit_intercept=True,
        backend=name,
        device=device,
    )


def _params0(backend: Any, seed: int) -> Any:
    """A non-trivial parameter vector (zeros would make exp/log trivial to predict)."""
    rng = np.random.default_rng(seed + 1)
    n = backend.n_features + 1
    size = backend.layout.n_params
    return backend.xp.asarray(0.1 * rng.standard_normal(size) / math.sqrt(n))


def make_loss_grad(name: str, X: Any, y: np.ndarray, seed: int = 0) -> Callable[[], Any]:
    """A call of backend ``name``'s fused loss and gradient on ``(X, y)`` at fixed parameters.

    The backend is built once (for "cupy", ``X`` is moved to the GPU once);
    each call returns ``(loss, grad)`` with the loss a host float, so timing
    it synchronises a GPU.
    """
    backend = _backend_for(name, X, y)
    params = _params0(backend, seed)
    return lambda: backend.loss_grad(params)


def _sklearn_loss_grad(X: np.ndarray, y: np.ndarray, C: float) -> Callable[[], Any] | None:
    """scikit-learn's loss and gradient (what its lbfgs solver calls), or None."""
    try:
        from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
        from sklearn.linear_model._linear_loss import LinearModelLoss
    except ImportError:
        return None
    K = _n_classes(y)
    base = HalfBinomialLoss() if K == 2 else HalfMultinomialLoss(n_classes=K)
    loss = LinearModelLoss(base_loss=base, fit_intercept=True)
    n = X.shape[0]
    shape = X.shape[1] + 1 if K == 2 else (K, X.shape[1] + 1)
    coef = np.full(shape, 0.01, dtype=X.dtype)
    yf = y.astype(X.dtype)
    sw = np.full(n, 1.0 / n, dtype=X.dtype)
    l2 = 0.0 if math.isinf(C) else 1.0 / (C * n)
    threads = os.cpu_count() or 1
    return lambda: loss.loss_gradient(coef, X, yf, sw, l2_reg_strength=l2, n_threads=threads)


def measure_loss_grad(
    X: np.ndarray, y: np.ndarray, backends: Sequence[str], cfg: BenchConfig, result: BenchResult
) -> None:
    """Read floors and loss-and-gradient timings (see the module docstring).

    The CPU read floor and the Numba kernel are timed round-robin (see
    :func:`_round_robin`); the BLAS users (``numpy``, ``sklearn``) come after
    them, because OpenBLAS threads keep spinning after each call and slow a
    Numba kernel that follows at once (measured: the read floor went from 15
    to 35 ms right after the baseline), which is not a property of either.
    """
    floor_fn, how = _cpu_read_floor(X)
    numba_first: dict[str, Callable[[], Any]] = {}
    if floor_fn is not None:
        numba_first["floor"] = floor_fn
    if "numba" in backends:
        numba_first["numba"] = make_loss_grad("numba", X, y, cfg.seed)
    times = _round_robin(numba_first, cfg.repeat)
    floor_cpu = times.pop("floor", None)
    result.records.append(
        {
            "kind": "read_floor",
            "device": "cpu",
            "method": how,
            "seconds": floor_cpu,
            "gb_per_s": _nbytes(X) / floor_cpu / 1e9 if floor_cpu else None,
        }
    )
    floors: dict[str, float | None] = {}
    for name in backends:
        floors[name] = floor_cpu
        if name == "numba":
            continue
        if name == "sklearn":
            fn = _sklearn_loss_grad(X, y, cfg.C)
            if fn is None:
                continue
            times[name] = _median_time(fn, cfg.repeat)
        elif name == "cupy":
            import cupy

            floor_gpu = _gpu_read_floor(cupy.asarray(X), cfg.repeat)
            result.records.append(
                {
                    "kind": "read_floor",
                    "device": "gpu",
                    "method": "cupy.sum over X on the device",
                    "seconds": floor_gpu,
                    "gb_per_s": X.nbytes / floor_gpu / 1e9,
                }
            )
            floors[name] = floor_gpu
            times[name] = _median_time(make_loss_grad(name, X, y, cfg.seed), cfg.repeat, _gpu_sync)
        else:
            times[name] = _median_time(make_loss_grad(name, X, y, cfg.seed), cfg.repeat)
    for name in backends:
        if name not in times:
            continue
        seconds, floor = times[name], floors[name]
        result.records.append(
            {
                "kind": "loss_grad",
                "backend": name,
                "dtype": str(X.dtype),
                "seconds": seconds,
                "gb_per_s": _nbytes(X) / seconds / 1e9,
                "x_floor": seconds / floor if floor else None,
                "speedup_vs_numpy": times["numpy"] / seconds if "numpy" in times else None,
            }
        )


class Reference:
    """The optimum of a benchmark problem, found in float64, and exact objective gaps.

    A tight Newton fit (``tol=REFERENCE_TOL``) on the problem's values in
    float64; :meth:`objective` evaluates any solution's penalised objective in
    float64 on the same values, so solutions from float32 and float64 fits
    are compared exactly.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), labels in {0, ..., K - 1}
        Two labels: the binary model; more: the multinomial one.
    C : float
    backend : {"numba", "numpy"}
        CPU backend of the reference fit and of the evaluations.

    Attributes
    ----------
    value : float
        Objective at the reference solution.
    seconds : float
        Time of the reference fit.
    n_iter : int
    X64 : ndarray
        The problem's values in float64 (``X`` itself when it is float64).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, C: float, backend: str = "numba") -> None:
        from gpulogreg.estimator import LogisticRegression
        from gpulogreg.loss import LogisticObjective

        self.X64 = X if X.dtype == np.float64 else X.astype(np.float64)
        X64 = self.X64
        n = X64.shape[0]
        self._objective = LogisticObjective(_backend_for(backend, X64, y), C=C, weight_sum=float(n))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(
                C=C,
                solver="newton",
                tol=REFERENCE_TOL,
                max_iter=200,
                backend=backend,
                device="cpu",
            ).fit(X64, y)
        self.seconds = time.perf_counter() - start
        self.n_iter = int(np.sum(model.n_iter_))
        self.value = self.objective(model.coef_, model.intercept_)

    def objective(self, coef: np.ndarray, intercept: np.ndarray) -> float:
        """Penalised, weight-normalised objective of ``(coef, intercept)`` in float64."""
        layout = self._objective.layout
        params = layout.from_estimator(
            np.atleast_2d(np.asarray(coef, dtype=np.float64)),
            np.ravel(np.asarray(intercept, dtype=np.float64)),
        )
        return float(self._objective.value(params))

    def gap(self, coef: np.ndarray, intercept: np.ndarray) -> float:
        """Relative objective gap ``(f - f_ref) / |f_ref|`` of a solution."""
        return (self.objective(coef, intercept) - self.value) / abs(self.value)


def _fit_ours(
    X: np.ndarray, y: np.ndarray, backend: str, solver: str, cfg: BenchConfig
) -> tuple[Any, float, int, bool]:
    from gpulogreg.estimator import LogisticRegression

    model = LogisticRegression(
        C=cfg.C,
        solver=solver,
        tol=cfg.tol,
        max_iter=cfg.max_iter,
        backend=backend,
        device="gpu" if backend == "cupy" else "cpu",
    )
    with PeakRSS() as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning is reported as a gap
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return model, seconds, mem.peak, mem.exact


def _fit_sklearn(
    X: np.ndarray, y: np.ndarray, solver: str, cfg: BenchConfig
) -> tuple[Any, float, int, bool]:
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    model = SkLogisticRegression(C=cfg.C, solver=solver, tol=1e-10, max_iter=cfg.max_iter)
    with PeakRSS() as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return model, seconds, mem.peak, mem.exact


def measure_fits(
    problem: str,
    X: np.ndarray,
    y: np.ndarray,
    backends: Sequence[str],
    cfg: BenchConfig,
    result: BenchResult,
    log: Callable[[str], None] | None = None,
) -> None:
    """Reference optimum, then every backend x solver fit (see the module docstring)."""
    say = log or (lambda _msg: None)
    eval_backend = "numba" if "numba" in backends else "numpy"
    say(f"  float64 newton reference ({eval_backend})")
    ref = Reference(X, y, cfg.C, eval_backend)
    f64 = ref.objective
    X64 = ref.X64
    runs: list[dict[str, Any]] = []
    for backend in backends:
        if backend == "sklearn":
            for solver in _sklearn_solvers(cfg):
                for data in _sklearn_inputs(X, X64):
                    say(f"  sklearn {solver} ({data.dtype})")
                    model, seconds, peak, exact = _fit_sklearn(data, y, solver, cfg)
                    runs.append(
                        {
                            "backend": "sklearn",
                            "solver": solver,
                            "dtype": str(data.dtype),
                            "seconds": seconds,
                            "n_iter": int(np.max(model.n_iter_)),
                            "final": f64(model.coef_, model.intercept_),
                            "history": None,
                            "peak_rss": peak,
                            "rss_exact": exact,
                        }
                    )
            continue
        for solver in cfg.solvers:
            say(f"  {backend} {solver}")
            model, seconds, peak, exact = _fit_ours(X, y, backend, solver, cfg)
            history = model.history_
            runs.append(
                {
                    "backend": backend,
                    "solver": solver,
                    "dtype": str(X.dtype),
                    "seconds": seconds,
                    "n_iter": int(np.sum(model.n_iter_)),
                    "final": f64(model.coef_, model.intercept_),
                    "history": (list(history.elapsed), list(history.objective)),
                    "peak_rss": peak,
                    "rss_exact": exact,
                }
            )
    # The optimum: the reference, unless a run found a (rounding-level) lower value.
    f_star = min([ref.value, *(r["final"] for r in runs)])
    result.records.append(
        {
            "kind": "reference",
            "problem": problem,
            "solver": "newton",
            "dtype": "float64",
            "tol": REFERENCE_TOL,
            "seconds": ref.seconds,
            "n_iter": ref.n_iter,
            "objective": ref.value,
            "optimum": f_star,
        }
    )
    for run in runs:
        gap = (run["final"] - f_star) / abs(f_star)
        t_opt = _time_to_optimum(run, f_star) if gap <= TARGET_GAP else None
        record = {
            "kind": "fit",
            "problem": problem,
            "backend": run["backend"],
            "solver": run["solver"],
            "dtype": run["dtype"],
            "seconds": run["seconds"],
            "time_to_optimum": t_opt,
            "n_iter": run["n_iter"],
            "objective": run["final"],
            "gap": gap,
            "peak_rss_mb": run["peak_rss"] / 2**20,
            "peak_rss_exact": run["rss_exact"],
        }
        result.records.append(record)
        result.traces.append(
            {
                "problem": problem,
                "label": f"{run['backend']} {run['solver']} ({run['dtype']})",
                "points": _gap_trace(run, f_star),
            }
        )


def _sklearn_solvers(cfg: BenchConfig) -> tuple[str, ...]:
    """scikit-learn's solvers timed on the problem (its fastest candidates there)."""
    if cfg.sparse:
        return SKLEARN_SPARSE_SOLVERS
    return SKLEARN_MULTINOMIAL_SOLVERS if cfg.classes > 2 else SKLEARN_SOLVERS


def _sklearn_inputs(X: np.ndarray, X64: np.ndarray) -> list[np.ndarray]:
    """scikit-learn gets the same values in float32 and in float64 (it is fastest on either)."""
    return [X] if X.dtype == np.float64 else [X, X64]


def _calibrated_objectives(run: dict[str, Any]) -> tuple[list[float], list[float]]:
    """History times (shifted to count from ``fit`` being called) and float64-calibrated values."""
    elapsed, objective = run["history"]
    if not objective:
        return [], []
    offset = run["final"] - objective[-1]
    overhead = max(run["seconds"] - elapsed[-1], 0.0)
    return [t + overhead for t in elapsed], [f + offset for f in objective]


def _time_to_optimum(run: dict[str, Any], f_star: float) -> float:
    if run["history"] is None:
        return float(run["seconds"])
    times, values = _calibrated_objectives(run)
    for t, f in zip(times, values, strict=True):
        if (f - f_star) / abs(f_star) <= TARGET_GAP:
            return t
    return float(run["seconds"])


def _gap_trace(run: dict[str, Any], f_star: float) -> list[tuple[float, float]]:
    if run["history"] is None:
        return [(float(run["seconds"]), (run["final"] - f_star) / abs(f_star))]
    times, values = _calibrated_objectives(run)
    return [(t, (f - f_star) / abs(f_star)) for t, f in zip(times, values, strict=True)]


# --------------------------------------------------------------------------- driver
def run(cfg: BenchConfig, *, log: Callable[[str], None] | None = None) -> BenchResult:
    """Run the benchmark described by ``cfg`` and return every record."""
    if cfg.rows < 2 or cfg.cols < 1 or cfg.repeat < 1:
        raise InputValueError("need --rows >= 2, --cols >= 1 and --repeat >= 1")
    if cfg.classes != 2 and cfg.sparse:
        raise InputValueError("--classes takes the dense problems (the sparse ones are binary)")
    backends, skipped = available_backends(cfg.backends)
    if not cfg.sklearn and "sklearn" in backends:
        backends.remove("sklearn")
    if "numpy" not in backends and cfg.backends is None:
        raise RuntimeError("the numpy baseline backend is unavailable")
    result = BenchResult()
    problems = [cfg.sparse] if cfg.sparse else list(dict.fromkeys(cfg.conditioning))
    say = log or (lambda _msg: None)
    if cfg.sparse and "cupy" in backends:
        backends.remove("cupy")
        skipped["cupy"] = "sparse problems on the GPU: bench/bench_sparse_gpu.py"
    for index, problem in enumerate(problems):
        X: Any
        if cfg.sparse:
            from gpulogreg.sparse_problems import make_sparse_problem

            say(f"generating {cfg.rows:,} x {cfg.cols} sparse {cfg.dtype} ({problem})")
            X, y = make_sparse_problem(
                problem, cfg.rows, cfg.cols, per_row=cfg.per_row, dtype=cfg.dtype, seed=cfg.seed
            )
        else:
            say(f"generating {cfg.rows:,} x {cfg.cols} {cfg.dtype} ({problem}-conditioned)")
            X, y = make_problem(
                cfg.rows,
                cfg.cols,
                dtype=cfg.dtype,
                conditioning=problem,
                seed=cfg.seed + index,
                n_classes=cfg.classes,
            )
        if index == 0:
            config = _system_record(cfg, X)
            config["backends"] = backends
            config["skipped"] = skipped
            config["problems"] = problems
            result.records.insert(0, config)
            say("timing loss and gradient")
            measure_loss_grad(X, y, backends, cfg, result)
        if cfg.fit:
            say(f"fitting to the optimum ({problem})")
            measure_fits(problem, X, y, backends, cfg, result, log=log)
        del X, y
    return result


# --------------------------------------------------------------------------- report
def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def format_table(result: BenchResult) -> str:
    """The terminal report: read floors, loss and gradient, time to the optimum."""
    lines: list[str] = []
    cfg = result.of_kind("config")[0]
    kind = f"sparse {cfg['sparse']} ({cfg['nnz']:,} values) " if cfg.get("sparse") else ""
    if cfg.get("classes", 2) > 2:
        kind += f"{cfg['classes']} classes (multinomial) "
    lines.append(
        f"gpulogreg bench: {cfg['rows']:,} x {cfg['cols']} {kind}{cfg['dtype']} "
        f"(X = {cfg['X_bytes'] / 1e6:.1f} MB), C={cfg['C']}, median of {cfg['repeat']}, "
        f"{cfg['cpu_count']} CPUs, {cfg['numba_threads']} Numba threads"
    )
    for name, reason in cfg["skipped"].items():
        lines.append(f"  skipped {name}: {reason}")
    for rec in result.of_kind("read_floor"):
        lines.append(
            f"read floor {rec['device']}: {_fmt(_ms(rec['seconds']), '.2f')} ms = "
            f"{_fmt(rec['gb_per_s'], '.1f')} GB/s ({rec['method']})"
        )
    lines.append("")
    lines.append("loss and gradient (one evaluation)")
    header = f"{'backend':<10}{'ms':>10}{'GB/s':>9}{'x floor':>9}{'x faster than numpy':>21}"
    lines.append(header)
    lines.append("-" * len(header))
    for rec in result.of_kind("loss_grad"):
        lines.append(
            f"{rec['backend']:<10}{_fmt(_ms(rec['seconds']), '.2f'):>10}"
            f"{_fmt(rec['gb_per_s'], '.1f'):>9}{_fmt(rec['x_floor'], '.2f'):>9}"
            f"{_fmt(rec['speedup_vs_numpy'], '.2f'):>21}"
        )
    fits = result.of_kind("fit")
    if fits:
        lines.append("")
        lines.append(
            f"time to the optimum (objective within {TARGET_GAP:g} relative of a float64 "
            "Newton reference; '-': not reached)"
        )
        header = (
            f"{'problem':<8}{'backend':<9}{'solver':<16}{'dtype':<9}{'fit s':>9}"
            f"{'t_opt s':>9}{'iters':>7}{'final gap':>11}{'peak RSS MB':>13}"
        )
        lines.append(header)
        lines.append("-" * len(header))
        for rec in fits:
            lines.append(
                f"{rec['problem']:<8}{rec['backend']:<9}{rec['solver']:<16}{rec['dtype']:<9}"
                f"{rec['seconds']:>9.3f}{_fmt(rec['time_to_optimum'], '.3f'):>9}"
                f"{rec['n_iter']:>7}{max(rec['gap'], 0.0):>11.1e}{rec['peak_rss_mb']:>13.0f}"
            )
        for ref in result.of_kind("reference"):
            lines.append(
                f"reference ({ref['problem']}): float64 newton, {ref['n_iter']} iterations, "
                f"{ref['seconds']:.3f} s, objective {ref['objective']:.12g}"
            )
    return "\n".join(lines)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def write_json_lines(path: str, result: BenchResult) -> None:
    """One JSON object per record, written atomically."""
    import json

    from gpulogreg._files import atomic_write
    from gpulogreg._jsonlines import jsonable

    with atomic_write(path, "w") as handle:
        for record in result.records:
            handle.write(json.dumps(jsonable(record), allow_nan=False) + "\n")


def plot(path: str, result: BenchResult) -> None:
    """Objective gap against time, one line per backend and solver, one panel per problem.

    The figure is built without pyplot (the user's matplotlib backend is left
    as it is) and written atomically as a PNG.
    """
    from gpulogreg._plot import new_figure
    from gpulogreg.plots import save_png

    cfg = result.of_kind("config")[0]
    problems = list(dict.fromkeys(t["problem"] for t in result.traces))
    if not problems:
        raise ValueError("nothing to plot: the run made no fits")
    fig = new_figure("--plot", figsize=(6.5 * len(problems), 4.8))
    axes = fig.subplots(1, len(problems), squeeze=False)
    floor = 1e-16  # plotted in place of a gap of zero (log scale)
    for ax, problem in zip(axes[0], problems, strict=True):
        for trace in (t for t in result.traces if t["problem"] == problem):
            pts = trace["points"]
            times = [p[0] for p in pts]
            gaps = [max(p[1], floor) for p in pts]
            style = "o" if len(pts) == 1 else ".-"
            ax.plot(times, gaps, style, label=trace["label"], markersize=4)
        ax.axhline(TARGET_GAP, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("seconds since fit() was called")
        ax.set_ylabel("relative objective gap")
        ax.set_title(problem if cfg.get("sparse") else f"{problem}-conditioned")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"gpulogreg bench: {cfg['rows']:,} x {cfg['cols']} {cfg['dtype']}")
    fig.tight_layout()
    save_png(fig, path)


# --------------------------------------------------------------------------- CLI glue
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gpulogreg bench``."""
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of X (default 1e6)")
    parser.add_argument("--cols", type=int, default=100, help="features (default 100)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--conditioning",
        choices=("well", "ill", "both"),
        default="both",
        help="problem(s) for the time-to-optimum runs (default both)",
    )
    parser.add_argument("-C", "--C", dest="C", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument(
        "--repeat", type=int, default=BenchConfig.repeat, help="timed calls per measurement"
    )
    parser.add_argument(
        "--backends",
        help="comma-separated subset of numpy,numba,cupy,sklearn (default: all available)",
    )
    parser.add_argument(
        "--solvers",
        default=",".join(DEFAULT_SOLVERS),
        help=f"our solvers to time (default {','.join(DEFAULT_SOLVERS)})",
    )
    parser.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn out")
    parser.add_argument("--no-fit", action="store_true", help="time loss and gradient only")
    parser.add_argument("--tol", type=float, default=1e-8, help="tol of the timed fits")
    parser.add_argument(
        "--max-iter",
        type=int,
        default=DEFAULT_MAX_ITER,
        help=f"iteration cap of every timed fit, ours and sklearn's (default {DEFAULT_MAX_ITER})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sparse",
        choices=KINDS,
        help="a generated sparse CSR problem of this kind instead of the dense ones: ctr "
        "(hashed ids, Zipf popularity, values 1) or text (tf-idf rows); --cols is "
        "n_features",
    )
    parser.add_argument(
        "--per-row",
        type=int,
        default=BenchConfig.per_row,
        help="ids (ctr) or mean words (text) per row of --sparse (default 30)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        default=BenchConfig.classes,
        help="classes of the dense problems (default 2; more: multinomial, softmax labels)",
    )
    parser.add_argument("--json-out", metavar="FILE", help="write JSON lines to FILE")
    parser.add_argument("--plot", metavar="FILE.png", help="plot objective gap vs time")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    def split(text: str | None) -> list[str] | None:
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    return BenchConfig(
        rows=args.rows,
        cols=args.cols,
        dtype=args.dtype,
        conditioning=("well", "ill") if args.conditioning == "both" else (args.conditioning,),
        C=args.C,
        repeat=args.repeat,
        backends=split(args.backends),
        solvers=split(args.solvers) or list(DEFAULT_SOLVERS),
        sklearn=not args.no_sklearn,
        tol=args.tol,
        max_iter=args.max_iter,
        seed=args.seed,
        fit=not args.no_fit,
        sparse=args.sparse,
        per_row=args.per_row,
        classes=args.classes,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """``gpulogreg bench``: run, print the table, write the JSON lines and the plot.

    ``args`` also holds the command line's common options: ``quiet`` or
    ``progress`` False silence the progress messages on stderr, ``json``
    prints the records as one JSON object on stdout instead of the table.
    """
    from gpulogreg._plot import require_matplotlib

    cfg = config_from_args(args)
    if args.plot:
        require_matplotlib("--plot")  # fail before the benchmark runs, not after
    if args.plot and not cfg.fit:
        raise InputValueError("--plot needs the fits (drop --no-fit)")

    def log(message: str) -> None:
        if not args.quiet and args.progress is not False:
            print(f"gpulogreg bench: {message} ...", file=sys.stderr, flush=True)

    result = run(cfg, log=log)
    if args.json:
        import json

        from gpulogreg._jsonlines import jsonable

        records = {"command": "bench", "records": jsonable(result.records)}
        print(json.dumps(records, allow_nan=False))
    else:
        print(format_table(result))
    if args.json_out:
        write_json_lines(args.json_out, result)
    if args.plot:
        plot(args.plot, result)
    return 0
