"""The GPU path, checked without a GPU.

* The ``__host__ __device__`` math header compiled for the host (g++) against
  an extended-precision NumPy reference on extreme and random inputs.
* The CUDA kernels themselves, compiled for the host with the emulation in
  ``cuda_host_emulation.hpp`` (blocks of real threads, real barriers), against
  NumPy -- and the CuPy backend's own code driving them on NumPy arrays.
* The host-side logic of ``gpulogreg.backends._cuda``: finding and assembling
  the sources (``#line`` mapping), the Python signatures against the .cu,
  entry-point names, argument conversion, launch sizes.
* NVRTC, as CuPy uses it at run time, compiles the assembled source for
  several architectures and reports errors in the real file and line.

Everything skips cleanly only when no C++ compiler exists (or, for the NVRTC
part, when NVRTC is not installed).
"""

from __future__ import annotations

import re
import subprocess
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpulogreg.backends import _cuda
from gpulogreg.backends.cupy_backend import CupyBackend, sigmoid, softmax
from gpulogreg.backends.numpy_backend import NumpyBackend
from tests._cuda_emulator import KERNEL_DIR, EmulatedKernels, find_cxx
from tests._helpers import make_classification

CXX = find_cxx()
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++, c++ or clang++) found")

#: Reference precision: long double is 80-bit on x86-64 Linux; elsewhere it
#: may equal double, and the float64 comparisons are then loosened.
LONG = np.longdouble
EXTENDED = np.finfo(LONG).eps < np.finfo(np.float64).eps


# ================================================================================
# The math header on the host
# ================================================================================
MATH_DRIVER = r"""
#include "gpulogreg_math.cuh"
using namespace gpulogreg;

#define GPULOGREG_HOST_WRAPPERS(R, SUF)                                                      \
  extern "C" void host_sigmoid_##SUF(const R* z, R* out, long n) {                          \
    for (long i = 0; i < n; ++i) out[i] = sigmoid<R>(z[i]);                                  \
  }                                                                                          \
  extern "C" void host_log1pexp_##SUF(const R* z, R* out, long n) {                         \
    for (long i = 0; i < n; ++i) out[i] = log1pexp<R>(z[i]);                                 \
  }                                                                                          \
  extern "C" void host_loss_##SUF(const R* z, const R* y, R* out, long n) {                 \
    for (long i = 0; i < n; ++i) out[i] = logistic_loss<R>(z[i], y[i]);                      \
  }                                                                                          \
  extern "C" void host_residual_##SUF(const R* z, const R* y, R* out, long n) {             \
    for (long i = 0; i < n; ++i) out[i] = logistic_residual<R>(z[i], y[i]);                  \
  }                                                                                          \
  extern "C" void host_newton_##SUF(const R* z, const R* s, R* out, long n) {               \
    for (long i = 0; i < n; ++i) out[i] = logistic_newton_weight<R>(z[i], s[i]);             \
  }                                                                                          \
  extern "C" void host_weighted_##SUF(const R* z, const R* y, const R* s, R* loss, R* res,  \
                                      long n) {                                              \
    for (long i = 0; i < n; ++i) {                                                           \
      const LossResidual<R> lr = weighted_logistic<R>(z[i], y[i], s[i]);                     \
      loss[i] = lr.loss;                                                                     \
      res[i] = lr.residual;                                                                  \
    }                                                                                        \
  }                                                                                          \
  extern "C" void host_softmax_loss_##SUF(const R* zy, const R* zmax, const R* others,      \
                                          R* out, long n) {                                  \
    for (long i = 0; i < n; ++i) out[i] = softmax_loss<R>(zy[i], zmax[i], others[i]);        \
  }                                                                                          \
  extern "C" void host_softmax_residual_##SUF(const R* term, const R* sumexp,               \
                                              const R* others, const int* is_true, R* out,   \
                                              long n) {                                      \
    for (long i = 0; i < n; ++i)                                                             \
      out[i] = softmax_residual<R>(term[i], sumexp[i], others[i], is_true[i] != 0);          \
  }

GPULOGREG_HOST_WRAPPERS(float, f32)
GPULOGREG_HOST_WRAPPERS(double, f64)
"""


@pytest.fixture(scope="session")
def math_lib(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The math header compiled for the host (warnings are errors)."""
    import ctypes

    if CXX is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) found")
    folder = tmp_path_factory.mktemp("math_host")
    src = folder / "math_host.cpp"
    src.write_text(MATH_DRIVER)
    lib = folder / "libgpulogreg_math_host.so"
    cmd = [
        CXX,
        "-std=c++17",
        "-O2",
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{KERNEL_DIR}",
        str(src),
        "-o",
        str(lib),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"host compile of the math header failed:\n{result.stderr}"
    return ctypes.CDLL(str(lib))


def _call(lib: Any, name: str, dtype: Any, *arrays: np.ndarray, outputs: int = 1) -> Any:
    """Call host_<name>_<suffix>(inputs..., outputs..., n) on contiguous arrays."""
    import ctypes

    suffix = "f32" if np.dtype(dtype) == np.float32 else "f64"
    n = len(arrays[0])
    outs = [np.empty(n, dtype=dtype) for _ in range(outputs)]
    pointers = [ctypes.c_void_p(np.ascontiguousarray(a).ctypes.data) for a in arrays]
    pointers += [ctypes.c_void_p(o.ctypes.data) for o in outs]
    getattr(lib, f"host_{name}_{suffix}")(*pointers, ctypes.c_long(n))
    return outs[0] if outputs == 1 else outs


def z_values(dtype: Any, *, limit: float | None = None, seed: int = 0) -> np.ndarray:
    """Decision values: zero, tiny, around every exp/log1p threshold, huge; both signs; random."""
    fi = np.finfo(dtype)
    specials = [
        0.0, 1e-45, 1e-300, 1e-8, 0.5, 1.0, 2.0, 10.0, 16.6, 17.0, 20.0, 30.0, 36.7, 40.0,
        80.0, 87.3, 88.8, 100.0, 103.9, 104.0, 500.0, 709.0, 710.0, 745.0, 746.0, 1000.0,
        1e4, 1e6, 1e30, 1e300, float(fi.max),
    ]  # fmt: skip
    rng = np.random.default_rng(seed)
    random = np.concatenate(
        [rng.normal(scale=s, size=500) for s in (1.0, 10.0, 100.0, 1e3)]
        + [rng.uniform(-1e4, 1e4, size=500)]
    )
    with np.errstate(over="ignore"):
        values = np.concatenate([specials, -np.asarray(specials), random]).astype(dtype)
    values = values[np.isfinite(values)]
    if limit is not None:
        values = values[np.abs(values) <= limit]
    return values


def _ref_e(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.abs(z.astype(LONG)))


def ref_sigmoid(z: np.ndarray) -> np.ndarray:
    zl = z.astype(LONG)
    e = _ref_e(z)
    return np.where(zl >= 0, 1 / (1 + e), e / (1 + e))


def ref_log1pexp(z: np.ndarray) -> np.ndarray:
    return np.maximum(z.astype(LONG), 0) + np.log1p(_ref_e(z))


def ref_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    zl, yl = z.astype(LONG), y.astype(LONG)
    return (np.maximum(zl, 0) - yl * zl) + np.log1p(_ref_e(z))


def ref_residual(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    zl, yl = z.astype(LONG), y.astype(LONG)
    e = _ref_e(z)
    eq = e / (1 + e)
    return np.where(zl >= 0, (1 - yl) - eq, eq - yl)


def ref_newton(z: np.ndarray, s: np.ndarray) -> np.ndarray:
    e = _ref_e(z)
    return s.astype(LONG) * e / (1 + e) ** 2


def _rtol(dtype: Any, ulps: float) -> float:
    eps = float(np.finfo(dtype).eps)
    if np.dtype(dtype) == np.float64 and not EXTENDED:
        ulps *= 4  # the reference itself is only float64
    return ulps * eps


def assert_close(
    out: np.ndarray, ref: np.ndarray, dtype: Any, ulps: float, what: str, cond: Any = 1.0
) -> None:
    """|out - ref| <= ulps * cond * eps * |ref| + tiny, and out finite everywhere.

    ``cond`` is the condition number of the inputs' own rounding (1 when the
    inputs are exact; ``1 + |x|`` for ``exp(x)`` of a rounded ``x``).
    """
    assert np.isfinite(out).all(), (
        f"{what}: non-finite output at {np.flatnonzero(~np.isfinite(out))}"
    )
    tiny = float(np.finfo(dtype).tiny)
    err = np.abs(out.astype(LONG) - ref)
    bound = _rtol(dtype, ulps) * np.asarray(cond) * np.abs(ref) + 4 * tiny
    bad = np.flatnonzero(err > bound)
    assert bad.size == 0, (
        f"{what}: {bad.size} values out of tolerance; worst index {bad[np.argmax(err[bad])]}: "
        f"got {out[bad[np.argmax(err[bad])]]!r}, expected {float(ref[bad[np.argmax(err[bad])]])!r}"
    )


def test_reference_formulas_agree_with_naive_ones() -> None:
    """The stable reference forms equal the textbook ones where those are safe (|z| < 30)."""
    z = np.linspace(-30, 30, 601)
    y = np.tile([0.0, 1.0], z.size)[: z.size]
    zl = z.astype(LONG)
    naive_p = 1 / (1 + np.exp(-zl))
    np.testing.assert_allclose(ref_sigmoid(z), naive_p, rtol=1e-15)
    np.testing.assert_allclose(ref_log1pexp(z), np.log1p(np.exp(zl)), rtol=1e-15)
    np.testing.assert_allclose(
        ref_loss(z, y), np.log1p(np.exp(zl)) - y * zl, rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(ref_residual(z, y), naive_p - y, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        ref_newton(z, np.ones_like(z)), naive_p * (1 - naive_p), rtol=1e-12, atol=1e-18
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_log1pexp_host(math_lib: Any, dtype: Any) -> None:
    z = z_values(dtype)  # the whole range of the float, not only |z| <= 1e4
    assert_close(_call(math_lib, "sigmoid", dtype, z), ref_sigmoid(z), dtype, 4, "sigmoid")
    p = _call(math_lib, "sigmoid", dtype, z)
    assert ((p >= 0) & (p <= 1)).all()
    assert_close(_call(math_lib, "log1pexp", dtype, z), ref_log1pexp(z), dtype, 4, "log1pexp")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_logistic_loss_and_residual_host(math_lib: Any, dtype: Any, label: float) -> None:
    z = z_values(dtype)
    y = np.full_like(z, label)
    loss = _call(math_lib, "loss", dtype, z, y)
    assert (loss >= 0).all()
    assert_close(loss, ref_loss(z, y), dtype, 8, f"loss(y={label})")
    residual = _call(math_lib, "residual", dtype, z, y)
    assert_close(residual, ref_residual(z, y), dtype, 8, f"residual(y={label})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_loss_residual_and_newton_weight_host(math_lib: Any, dtype: Any) -> None:
    """The fused per-row form with sample weights, for |z| up to 1e4."""
    z = z_values(dtype, limit=1e4)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=z.size).astype(dtype)
    s = rng.choice([0.0, 1e-3, 0.5, 1.0, 3.7], size=z.size).astype(dtype)
    loss, residual = _call(math_lib, "weighted", dtype, z, y, s, outputs=2)
    sl = s.astype(LONG)
    assert_close(loss, sl * ref_loss(z, y), dtype, 8, "weighted loss")
    assert_close(residual, sl * ref_residual(z, y), dtype, 8, "weighted residual")
    weight = _call(math_lib, "newton", dtype, z, s)
    assert (weight >= 0).all()
    assert (weight <= 0.25 * s.astype(np.float64) * (1 + 1e-6)).all()
    assert_close(weight, ref_newton(z, s), dtype, 8, "newton weight")


def _softmax_inputs(dtype: Any, n_classes: int, scale: float, seed: int) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    Z = (rng.normal(size=(400, n_classes)) * scale).astype(dtype)
    Z[:50] = np.clip(Z[:50] * 1e4 / max(scale, 1), -1e4, 1e4).astype(dtype)  # extreme rows
    Z[50:60] = Z[50:60, :1]  # ties
    y = rng.integers(0, n_classes, size=Z.shape[0])
    y[:100] = Z[:100].argmax(axis=1)  # true class holds the maximum (tiny losses)
    return Z, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n_classes", "scale"), [(2, 1.0), (3, 10.0), (5, 100.0), (4, 1e3)])
def test_softmax_loss_and_residual_host(
    math_lib: Any, dtype: Any, n_classes: int, scale: float
) -> None:
    Z, y = _softmax_inputs(dtype, n_classes, scale, seed=n_classes)
    rows = np.arange(Z.shape[0])
    # What the kernel computes per row, in the data's precision.
    zmax = Z.max(axis=1)
    terms = np.exp(Z - zmax[:, None])
    zy = Z[rows, y]
    others = np.array([np.sum(np.delete(terms[i], y[i]), dtype=dtype) for i in rows], dtype=dtype)
    loss = _call(math_lib, "softmax_loss", dtype, zy, zmax, others)
    # Reference: log(sum_k exp(z_k)) - z_y in extended precision, written as
    # log1p(sum_{k != y} exp(z_k - z_y)) so that tiny losses keep their digits.
    ZL = Z.astype(LONG)
    mL = ZL.max(axis=1)
    lse = mL + np.log(np.exp(ZL - mL[:, None]).sum(axis=1))
    rel = np.exp(ZL - ZL[rows, y][:, None])
    rel[rows, y] = 0
    ref = np.where(ZL[rows, y] >= mL, np.log1p(rel.sum(axis=1)), lse - ZL[rows, y])
    assert (loss >= 0).all()
    # The terms exp(z - zmax) were computed in the data's precision: their
    # rounded arguments make them accurate to (1 + |z - zmax|) ulps only.
    spread = np.abs(Z - zmax[:, None]).astype(np.float64)
    cond_rows = 1 + spread.max(axis=1)
    assert_close(loss, ref, dtype, 4 * n_classes + 8, "softmax loss", cond=cond_rows)

    sumexp = (terms[rows, y] + others).astype(dtype)
    flat_terms = terms.ravel()
    flat_sum = np.repeat(sumexp, n_classes)
    flat_others = np.repeat(others, n_classes)
    is_true = (np.arange(n_classes)[None, :] == y[:, None]).ravel().astype(np.int32)
    residual = _call(
        math_lib, "softmax_residual", dtype, flat_terms, flat_sum, flat_others, is_true
    )
    P = np.exp(ZL - lse[:, None])
    # p_y - 1 = -sum_{k != y} p_k (exact in extended precision, unlike P - 1).
    R = P.copy()
    R[rows, y] = 0
    R[rows, y] = -R.sum(axis=1)
    ref = R.ravel()
    cond = np.repeat(cond_rows, n_classes)
    assert_close(residual, ref, dtype, 4 * n_classes + 8, "softmax residual", cond=cond)


# ================================================================================
# The kernels, emulated on the host
# ================================================================================
@pytest.fixture(scope="session")
def kernels(emulated_kernels: EmulatedKernels) -> EmulatedKernels:
    return emulated_kernels


GUARD = 37  # elements of canary on each side of every buffer


def guarded(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(buffer, inner view): the view holds ``values``; the guards hold NaN (or -7 for ints)."""
    values = np.asarray(values)
    fill = -7 if values.dtype.kind == "i" else np.nan
    buf = np.full(values.size + 2 * GUARD, fill, dtype=values.dtype)
    inner = buf[GUARD : GUARD + values.size]
    inner[...] = values.ravel()
    return buf, inner.reshape(values.shape)


def assert_guards_intact(buf: np.ndarray) -> None:
    head, tail = buf[:GUARD], buf[buf.size - GUARD :]
    if buf.dtype.kind == "f":
        intact = bool(np.isnan(head).all() and np.isnan(tail).all())
    else:
        intact = bool((head == -7).all() and (tail == -7).all())
    assert intact, "a kernel wrote out of bounds"


def _binary_case(dtype: Any, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    xw = (rng.normal(size=n) * 5).astype(dtype)
    xw[: min(n, 8)] = np.array([1e4, -1e4, 745.5, -745.5, 40, -40, 0, 1e-30])[: min(n, 8)]
    y = rng.integers(0, 2, size=n).astype(np.int32)
    s = rng.random(n)
    s /= s.sum()
    return xw, y, s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 200, 256, 1500, 5000])
@pytest.mark.parametrize("has_intercept", [0, 1])
def test_logistic_loss_grad_kernel(
    kernels: EmulatedKernels, dtype: Any, n: int, has_intercept: int
) -> None:
    xw_v, y_v, s_v = _binary_case(dtype, n, seed=n)
    b_value = -0.37
    (xw_b, xw), (y_b, y), (s_b, s) = guarded(xw_v), guarded(y_v), guarded(s_v)
    b_b, b = guarded(np.array([b_value]))
    grid = kernels.grid("logistic_loss_grad", dtype, n)
    r_b, r = guarded(np.zeros(n, dtype=dtype))
    p_b, partials = guarded(np.zeros(2 * grid))
    kernels.launch(
        "logistic_loss_grad", dtype, grid, (xw, b, has_intercept, y, s, r, 1, partials, n)
    )
    for buf in (r_b, p_b, xw_b, y_b, s_b, b_b):
        assert_guards_intact(buf)
    z = xw_v.astype(np.float64) + (b_value if has_intercept else 0.0)
    ref_l = s_v * ref_loss(z, y_v.astype(np.float64)).astype(np.float64)
    ref_r = s_v * ref_residual(z, y_v.astype(np.float64)).astype(np.float64)
    np.testing.assert_allclose(
        r, ref_r.astype(dtype), rtol=2e-7 if dtype == np.float32 else 1e-14, atol=1e-30
    )
    np.testing.assert_allclose(partials[:grid].sum(), ref_l.sum(), rtol=1e-13)
    np.testing.assert_allclose(partials[grid:].sum(), ref_r.sum(), rtol=1e-12, atol=1e-17)

    # Second stage: the per-block partials reduced in a fixed order.
    o_b, out = guarded(np.zeros(2))
    kernels.launch("sum_partials", np.float64, 2, (partials, grid, out))
    assert_guards_intact(o_b)
    np.testing.assert_allclose(out, [ref_l.sum(), ref_r.sum()], rtol=1e-12, atol=1e-17)

    # Loss only: the residual buffer is left untouched.
    r2_b, r2 = guarded(np.full(n, 5.0, dtype=dtype))
    partials2 = np.zeros(2 * grid)
    kernels.launch(
        "logistic_loss_grad", dtype, grid, (xw, b, has_intercept, y, s, r2, 0, partials2, n)
    )
    assert (r2 == 5.0).all()
    assert_guards_intact(r2_b)
    assert np.array_equal(partials2, partials)


def test_loss_kernel_is_deterministic_and_grid_independent(kernels: EmulatedKernels) -> None:
    n = 20000
    xw, y, s = _binary_case(np.float32, n, seed=3)
    b = np.array([0.1])

    def run(grid: int) -> np.ndarray:
        r = np.empty(n, dtype=np.float32)
        partials = np.empty(2 * grid)
        kernels.launch("logistic_loss_grad", np.float32, grid, (xw, b, 1, y, s, r, 1, partials, n))
        out = np.empty(2)
        kernels.launch("sum_partials", np.float64, 2, (partials, grid, out))
        return out

    first = run(4)
    assert np.array_equal(run(4), first)  # bit-identical run to run
    for grid in (1, 3, 7):  # another grid: another (fixed) order, same sum within rounding
        np.testing.assert_allclose(run(grid), first, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("n_partials", [1, 255, 256, 257, 5000])
def test_sum_partials_kernel(kernels: EmulatedKernels, n_partials: int) -> None:
    rng = np.random.default_rng(n_partials)
    series = rng.normal(size=(3, n_partials)) * np.array([[1.0], [1e-10], [1e10]])
    o_b, out = guarded(np.zeros(3))
    kernels.launch("sum_partials", np.float64, 3, (np.ascontiguousarray(series), n_partials, out))
    assert_guards_intact(o_b)
    import math

    np.testing.assert_allclose(out, [math.fsum(row) for row in series], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("has_intercept", [0, 1])
def test_softmax_loss_grad_kernel(
    kernels: EmulatedKernels, dtype: Any, n_classes: int, has_intercept: int
) -> None:
    n, n_features = 2500, 4
    rng = np.random.default_rng(n_classes)
    xw_v = (rng.normal(size=(n, n_classes)) * 3).astype(dtype)
    xw_v[:3] = np.array([1e4, -1e4, 0.0] * n_classes)[: 3 * n_classes].reshape(3, n_classes)
    y_v = rng.integers(0, n_classes, size=n).astype(np.int32)
    s_v = rng.random(n)
    s_v /= s_v.sum()
    # Intercepts sit in the last column of the (K, n_features + 1) parameter matrix.
    params = rng.normal(size=(n_classes, n_features + 1))
    stride = n_features + 1
    flat_params = params.ravel()
    intercept_view = flat_params[n_features:]
    (xw_b, xw), (y_b, y), (s_b, s) = guarded(xw_v), guarded(y_v), guarded(s_v)
    grid = kernels.grid("softmax_loss_grad", dtype, n)
    r_b, R = guarded(np.zeros((n, n_classes), dtype=dtype))
    p_b, partials = guarded(np.zeros(grid))
    kernels.launch(
        "softmax_loss_grad",
        dtype,
        grid,
        (xw, intercept_view, stride, has_intercept, y, s, R, 1, partials, n, n_classes),
    )
    for buf in (r_b, p_b, xw_b, y_b, s_b):
        assert_guards_intact(buf)
    Z = xw_v.astype(LONG) + (params[:, -1].astype(LONG) if has_intercept else 0)
    m = Z.max(axis=1)
    lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))
    rows = np.arange(n)
    ref_loss_rows = (s_v * (lse - Z[rows, y_v])).astype(np.float64)
    P = np.exp(Z - lse[:, None])
    P[rows, y_v] = 0
    P[rows, y_v] = -P.sum(axis=1)  # p_y - 1 = -sum_{k != y} p_k, without cancellation
    ref_R = (s_v[:, None] * P).astype(np.float64)
    np.testing.assert_allclose(partials.sum(), ref_loss_rows.sum(), rtol=1e-12)
    # Rounding: R's own dtype, plus exp of rounded double decisions (condition 1 + |z - zmax|).
    spread = np.abs(Z - Z.max(axis=1, keepdims=True)).astype(np.float64).max(axis=1)
    rtol = 2 * np.finfo(dtype).eps + 1e-15 * (1 + spread[:, None])
    assert np.isfinite(R).all()
    assert (np.abs(R - ref_R) <= rtol * np.abs(ref_R) + 1e-30).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_newton_weights_kernel(kernels: EmulatedKernels, dtype: Any) -> None:
    n = 3000
    xw_v, _, s_v = _binary_case(dtype, n, seed=9)
    b = np.array([0.25])
    (_xw_b, xw), (w_b, w) = guarded(xw_v), guarded(np.zeros(n))
    kernels.launch(
        "logistic_newton_weights", dtype, kernels.grid("logistic_newton_weights", dtype, n),
        (xw, b, 1, s_v, w, n),
    )  # fmt: skip
    assert_guards_intact(w_b)
    ref = ref_newton(xw_v.astype(np.float64) + 0.25, s_v).astype(np.float64)
    np.testing.assert_allclose(w, ref, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prediction_kernels(kernels: EmulatedKernels, dtype: Any) -> None:
    z = z_values(dtype)
    p = sigmoid(z, kernels=kernels)
    assert p.dtype == dtype
    assert_close(p, ref_sigmoid(z), dtype, 4, "sigmoid kernel")
    # In place is allowed.
    zc = z.copy()
    kernels.launch("sigmoid", dtype, kernels.grid("sigmoid", dtype, z.size), (zc, zc, z.size))
    np.testing.assert_array_equal(zc, p)

    rng = np.random.default_rng(5)
    Z = (rng.normal(size=(1000, 4)) * 50).astype(dtype)
    Z[0] = [1e4, -1e4, 0, 1e4]
    P = softmax(Z, kernels=kernels)
    assert P.dtype == dtype
    assert np.isfinite(P).all()
    ZL = Z.astype(LONG)
    ref = np.exp(ZL - ZL.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    # In T: exp of the rounded z - zmax is accurate to (1 + |z - zmax|) ulps.
    cond = 1 + np.abs(Z - Z.max(axis=1, keepdims=True)).astype(np.float64).max(axis=1)
    assert_close(P.ravel(), ref.ravel(), dtype, 16, "softmax kernel", cond=np.repeat(cond, 4))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=8 * np.finfo(dtype).eps)


#: Values this close (relative) to float32's smallest normal may round to either side of it.
_FTZ_BOUNDARY = 1e-5


def _assert_flushed_like_the_device(out: np.ndarray, ref: np.ndarray, what: str) -> None:
    """float32 ``out`` equals the FTZ model of ``ref``: 0 below 2^-126, else within 8 ulps."""
    tiny = float(np.finfo(np.float32).tiny)
    ref = np.abs(ref.astype(np.float64))
    got = np.abs(out.astype(np.float64))
    clear = np.abs(ref - tiny) > _FTZ_BOUNDARY * tiny
    below = clear & (ref < tiny)
    assert below.any(), f"{what}: no value in the subnormal range"
    assert (got[below] == 0).all(), f"{what}: a subnormal float32 result was not flushed"
    above = clear & (ref >= tiny)
    rtol = 8 * float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(got[above], ref[above], rtol=rtol, atol=0, err_msg=what)


def test_float32_kernels_flush_subnormals_to_zero_like_the_device(
    kernels: EmulatedKernels,
) -> None:
    """-ftz=true: float32 results below 2^-126 are 0 on the device, double ones are not."""
    z32 = np.linspace(-110.0, -80.0, 3001).astype(np.float32)
    z = z32.astype(np.float64)  # the same values in double: the references are exact for them
    ref = ref_sigmoid(z)
    ieee_subnormal = (ref > 0) & (ref < np.finfo(np.float32).tiny)
    assert ieee_subnormal.sum() > 1000  # z from about -103.9 to -87.3
    _assert_flushed_like_the_device(sigmoid(z32, kernels=kernels), ref, "sigmoid")
    assert (sigmoid(z, kernels=kernels) > 0).all()  # float64: IEEE, subnormals kept

    # Softmax of rows (0, z): the second class's probability.
    Z = np.stack([np.zeros_like(z), z], axis=1)
    P = softmax(Z.astype(np.float32), kernels=kernels)  # exact: the values are float32
    _assert_flushed_like_the_device(P[:, 1], ref, "softmax")

    # Residuals s (p - y) of label 0: computed in double, flushed when stored as float32;
    # the double partial sums keep them.
    n = z.size
    y, s, b = np.zeros(n, np.int32), np.ones(n), np.zeros(1)
    r = np.empty(n, np.float32)
    grid = kernels.grid("logistic_loss_grad", np.float32, n)
    partials = np.empty(2 * grid)
    kernels.launch(
        "logistic_loss_grad",
        np.float32,
        grid,
        (z32, b, 0, y, s, r, 1, partials, n),
    )
    ref_r = ref_residual(z, np.zeros(n))
    _assert_flushed_like_the_device(r, ref_r, "residual")
    np.testing.assert_allclose(partials[grid:].sum(), float(ref_r.sum()), rtol=1e-12)


# ================================================================================
# The CuPy backend's code, on NumPy arrays through the emulated kernels
# ================================================================================
def _backends(
    kernels: EmulatedKernels,
    dtype: Any,
    n_classes: int,
    fit_intercept: bool,
    *,
    n_samples: int = 2600,
    n_features: int = 6,
    weighted: bool = True,
) -> tuple[NumpyBackend, CupyBackend, NumpyBackend]:
    X, y = make_classification(n_samples, n_features, dtype=dtype, n_classes=n_classes, seed=7)
    y = y.astype(np.int32)
    rng = np.random.default_rng(11)
    sw = rng.random(n_samples) if weighted else np.ones(n_samples)
    sw /= sw.sum()
    kw = {"n_classes": n_classes, "fit_intercept": fit_intercept}
    gpu = CupyBackend(X, y, sw, kernels=kernels, **kw)
    gpu.grad_chunk_rows = 256  # several chunks plus a remainder,
    gpu.grad_max_batch = 4  # in several batched products
    gpu.hessian_chunk_bytes = 8 * (n_features + 1) * 700  # several Hessian chunks too
    exact = NumpyBackend(X.astype(np.float64), y, sw, **kw)  # same values, float64 maths
    baseline = NumpyBackend(X, y, sw, **kw)
    return exact, gpu, baseline


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_cupy_backend_code_on_emulated_kernels(
    kernels: EmulatedKernels, dtype: Any, n_classes: int, fit_intercept: bool
) -> None:
    """CupyBackend's loss, gradient, Hessian and HVP equal the float64 baseline's."""
    exact, gpu, baseline = _backends(kernels, dtype, n_classes, fit_intercept)
    rng = np.random.default_rng(2)
    params = rng.normal(size=gpu.n_params) * 0.5
    v = rng.normal(size=gpu.n_params)
    rtol = 1e-12 if dtype == np.float64 else 2e-6

    loss_ref, grad_ref = exact.loss_grad(params)
    kernels.calls.clear()
    loss, grad = gpu.loss_grad(params)
    # One fused kernel and one reduction per evaluation.
    assert [entry.rsplit("_", 1)[0] for entry, _ in kernels.calls] == [
        f"gpulogreg_{gpu._loss_kernel}",
        "gpulogreg_sum_partials",
    ]
    assert isinstance(loss, float)
    assert grad.dtype == np.float64
    assert grad.shape == (gpu.n_params,)
    np.testing.assert_allclose(loss, loss_ref, rtol=rtol)
    scale = np.abs(grad_ref).max()
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=rtol * scale)
    assert gpu.loss(params) == loss  # the loss-only path sums identically

    H_ref, H = exact.hessian(params), gpu.hessian(params)
    np.testing.assert_allclose(H, H_ref, rtol=0, atol=rtol * np.abs(H_ref).max())
    hv_ref, hv = exact.hvp(params, v), gpu.hvp(params, v)
    np.testing.assert_allclose(hv, hv_ref, rtol=0, atol=rtol * np.abs(hv_ref).max())
    # The baseline's own methods the GPU backend inherits still agree.
    np.testing.assert_allclose(
        gpu.decision(params, gpu.X), baseline.decision(params, baseline.X), rtol=1e-6
    )
    # Bit-identical on a repeat.
    loss2, grad2 = gpu.loss_grad(params)
    assert loss2 == loss
    assert np.array_equal(grad2, grad)


def test_cupy_backend_unweighted_extreme_decisions(kernels: EmulatedKernels) -> None:
    """|z| up to ~1e4: loss and gradient finite and equal to the float64 baseline."""
    exact, gpu, _ = _backends(kernels, np.float32, 2, True, weighted=False)
    params = np.full(gpu.n_params, 2000.0)
    loss, grad = gpu.loss_grad(params)
    loss_ref, grad_ref = exact.loss_grad(params)
    assert np.isfinite(loss)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=1e-5 * np.abs(grad_ref).max())


def test_float32_gradient_accumulates_in_float64(kernels: EmulatedKernels) -> None:
    """On 100,000 float32 rows the chunked R^T X stays within 1e-6 of the exact gradient.

    (A single float32 product accumulates rounding over all rows; the chunks of
    1024 rows summed in float64 keep the error at the level of float32 inputs.)
    """
    n = 100_000
    X, y = make_classification(n, 8, dtype=np.float32, seed=4, ill_conditioned=True)
    y = y.astype(np.int32)
    sw = np.full(n, 1.0 / n)
    gpu = CupyBackend(X, y, sw, kernels=kernels)
    exact = NumpyBackend(X.astype(np.float64), y, sw)
    params = np.random.default_rng(0).normal(size=gpu.n_params) * 0.1
    _, grad = gpu.loss_grad(params)
    _, grad_ref = exact.loss_grad(params)
    assert np.abs(grad - grad_ref).max() <= 1e-6 * np.abs(grad_ref).max()


def test_cupy_backend_rejects_bad_params(kernels: EmulatedKernels) -> None:
    _, gpu, _ = _backends(kernels, np.float64, 2, True, n_samples=300)
    with pytest.raises(ValueError, match="params must have shape"):
        gpu.loss_grad(np.zeros(gpu.n_params + 1))


def test_cupy_backend_rejects_non_contiguous_x(kernels: EmulatedKernels) -> None:
    X = np.asfortranarray(np.ones((10, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        CupyBackend(X, np.zeros(10, np.int32), np.full(10, 0.1), kernels=kernels)


class _DeviceCheckingLauncher(_cuda.KernelLauncher):
    """The emulated kernels, recording which fake device is current at each launch."""

    def __init__(self, inner: EmulatedKernels, state: Any) -> None:
        self.inner, self.state, self.limits = inner, state, inner.limits
        self.launch_devices: list[int] = []

    def _kernel_attributes(self, entry: str) -> tuple[int, int]:
        return self.inner._kernel_attributes(entry)

    def _call(self, entry: str, grid: int, args: tuple[Any, ...]) -> None:
        self.launch_devices.append(self.state.current)
        self.inner._call(entry, grid, args)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_cupy_backend_runs_on_the_device_holding_x(
    kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, n_classes: int
) -> None:
    """Two fake devices: X on GPU 1 while GPU 0 is current; every operation must run on GPU 1."""
    from gpulogreg.backends import cupy_backend
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2**40, 2**40, "fake GPU 1")
    )
    X, y = make_classification(3000, 5, dtype=np.float32, n_classes=n_classes, seed=2)
    sw = np.full(X.shape[0], 1.0 / X.shape[0])
    launcher = _DeviceCheckingLauncher(kernels, state)
    on1 = [_fake_cupy.on_device(a, 1) for a in (X, y.astype(np.int32), sw)]
    assert state.current == 0
    gpu = CupyBackend(*on1, n_classes=n_classes, kernels=launcher)
    gpu.grad_chunk_rows = 256  # the chunked float32 R^T X, in batches
    gpu.grad_max_batch = 4
    rng = np.random.default_rng(0)
    params = _fake_cupy.on_device(rng.normal(size=gpu.n_params) * 0.3, 1)
    v = _fake_cupy.on_device(rng.normal(size=gpu.n_params), 1)
    gpu.loss(params)
    gpu.loss_grad(params)
    gpu.hessian(params)
    gpu.meat(params)
    gpu.cluster_scores(params, _fake_cupy.on_device(np.arange(X.shape[0]) % 7, 1), 7)
    gpu.hvp(params, v)
    gpu.hessian_diagonal(params)
    gpu.gram_matvec(v[: X.shape[1] + 1])
    Z = gpu.decision(params, gpu.X)
    if n_classes == 2:
        sigmoid(Z, kernels=launcher)
    else:
        softmax(Z, kernels=launcher)
    assert state.current == 0  # restored
    assert launcher.launch_devices
    assert set(launcher.launch_devices) == {1}, "a kernel was launched on another device"
    assert state.violations == [], f"ran on the current device, not X's: {state.violations[:5]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_memory_check_counts_what_the_backend_allocates(
    kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, dtype: Any, n_classes: int
) -> None:
    """device_memory_terms against the peak bytes each method of CupyBackend holds.

    The fake cupy counts every block an operation returns while it lives (as
    CuPy's pool would hand it out), so each term is pinned to the code: a new
    temporary in a method makes its measured peak exceed the term.
    """
    from gpulogreg.backends import cupy_backend
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    monkeypatch.setattr(cupy_backend, "_current_device_memory", lambda: (2**40, 2**40, "fake"))
    m, n = 40_000, 10  # several float32 gradient chunks; one Hessian chunk
    X, y = make_classification(m, n, dtype=dtype, n_classes=n_classes, seed=3)
    data = [_fake_cupy.on_device(a, 0) for a in (X, y.astype(np.int32), np.full(m, 1.0 / m))]
    before = state.reset_peak()
    gpu = CupyBackend(*data, n_classes=n_classes, kernels=kernels)
    measured = {"held": state.live - before}
    rng = np.random.default_rng(0)
    params = _fake_cupy.on_device(rng.normal(size=gpu.n_params) * 0.1, 0)
    v = _fake_cupy.on_device(rng.normal(size=gpu.n_params), 0)
    calls = {
        "loss_grad": lambda: gpu.loss_grad(params),
        "loss": lambda: gpu.loss(params),
        "hvp": lambda: gpu.hvp(params, v),
        "gram_matvec": lambda: gpu.gram_matvec(v[: n + 1]),
        "hessian": lambda: gpu.hessian(params),
        "hessian_diagonal": lambda: gpu.hessian_diagonal(params),
    }
    for name, call in calls.items():
        before = state.reset_peak()
        call()
        measured[name] = state.peak - before
    before = state.reset_peak()
    gpu.meat(params)
    assert state.peak - before == measured["hessian"], "the meat takes what the Hessian takes"
    n_outputs = 1 if n_classes == 2 else n_classes
    terms = cupy_backend.device_memory_terms(m, n, dtype, n_outputs)
    measured["loss_grad"] = max(measured["loss_grad"], measured.pop("loss"))
    small = 64 * 1024  # parameter-sized vectors, per-block partial sums: the headroom's part
    for name, got in measured.items():
        assert got <= terms[name] + small, f"{name}: allocates {got} B, counted {terms[name]}"
        assert terms[name] <= 1.01 * got + small, f"{name}: counted {terms[name]}, uses {got}"
    assert terms["data"] == X.nbytes + 4 * m + 8 * m
    need = cupy_backend.device_bytes_needed(m, n, dtype, n_outputs)
    working = max(terms[name] for name in calls if name != "loss")
    assert need == terms["data"] + terms["held"] + working + terms["headroom"]


# ================================================================================
# The estimator with device="gpu", running the CuPy backend's code on the host
# ================================================================================
@pytest.fixture
def emulated_gpu(kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch) -> EmulatedKernels:
    """``device="gpu"`` picks the CuPy backend, run on NumPy arrays and the emulated kernels."""
    from gpulogreg import backends
    from gpulogreg.backends import cupy_backend

    monkeypatch.setattr(backends, "gpu_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "to_device", lambda a, device: a)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: kernels)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2**40, 2**40, "emulated GPU")
    )
    kernels.calls.clear()
    return kernels


def _fit_both(**kw: Any) -> tuple[Any, Any]:
    import warnings

    from gpulogreg import LogisticRegression

    X, y = kw.pop("data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is not the point here
        cpu = LogisticRegression(device="cpu", **kw).fit(X, y)
        gpu = LogisticRegression(device="gpu", **kw).fit(X, y)
    return cpu, gpu


def _solver_names() -> list[str]:
    from gpulogreg.solvers import SOLVERS

    # minibatch needs a random_state to be comparable: it has its own test.
    return sorted(name for name in SOLVERS if name != "minibatch")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", _solver_names())
def test_every_solver_runs_unchanged_through_the_cupy_backend(
    emulated_gpu: EmulatedKernels, dtype: Any, solver: str
) -> None:
    data = make_classification(3000, 6, dtype=dtype, seed=4)
    tol = 1e-8 if dtype == np.float64 else 1e-5
    cpu, gpu = _fit_both(data=data, solver=solver, tol=tol, max_iter=5000)
    assert gpu.backend_ == "cupy"
    assert cpu.backend_ != "cupy"
    assert emulated_gpu.calls, "the CuPy backend launched no kernel"
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    scale = np.abs(cpu.coef_).max()
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(gpu.intercept_, cpu.intercept_, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("solver", ["newton", "newton-cg", "lbfgs"])
def test_multinomial_runs_through_the_cupy_backend(
    emulated_gpu: EmulatedKernels, solver: str
) -> None:
    data = make_classification(3000, 6, n_classes=3, seed=5)
    cpu, gpu = _fit_both(data=data, solver=solver, tol=1e-8)
    assert gpu.backend_ == "cupy"
    assert gpu.coef_.shape == (3, 6)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=1e-6 * np.abs(cpu.coef_).max())


def test_minibatch_runs_through_the_cupy_backend(emulated_gpu: EmulatedKernels) -> None:
    data = make_classification(4000, 6, seed=6)
    cpu, gpu = _fit_both(data=data, solver="minibatch", random_state=0, max_iter=5)
    assert gpu.backend_ == "cupy"
    assert emulated_gpu.calls
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=1e-6 * np.abs(cpu.coef_).max())


def test_loss_and_gradient_with_backend_cupy_on_emulated_kernels(
    emulated_gpu: EmulatedKernels,
) -> None:
    import gpulogreg

    X, y = make_classification(2000, 5, seed=7)
    coef = np.random.default_rng(0).normal(size=5)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=2000)
    kw = {"sample_weight": weights, "C": 0.3}
    gpu = gpulogreg.loss_and_gradient(X, y, coef, 0.1, backend="cupy", **kw)
    ref = gpulogreg.loss_and_gradient(X, y, coef, 0.1, backend="numpy", **kw)
    assert emulated_gpu.calls
    np.testing.assert_allclose(gpu[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(gpu[1], ref[1], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(gpu[2], ref[2], rtol=1e-10, atol=1e-15)


# ================================================================================
# Host-side logic of _cuda.py
# ================================================================================
def test_kernel_dir_falls_back_to_the_repository() -> None:
    folder = _cuda.kernel_dir()
    assert (folder / _cuda.MAIN_SOURCE).is_file()
    assert (folder / _cuda.HEADER).is_file()


def test_kernel_dir_prefers_the_package_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel install (gpulogreg/_kernels, through importlib.resources) wins over the checkout."""
    package = tmp_path / "gpulogreg"
    (package / "_kernels").mkdir(parents=True)
    for name in (_cuda.MAIN_SOURCE, _cuda.HEADER):
        (package / "_kernels" / name).write_text((KERNEL_DIR / name).read_text())
    monkeypatch.setattr(_cuda.importlib.resources, "files", lambda _: package)
    assert Path(str(_cuda.kernel_dir())) == package / "_kernels"


def test_kernel_dir_candidates_and_error(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / _cuda.MAIN_SOURCE).write_text("// x\n")
    assert _cuda.kernel_dir([empty, full]) == full
    with pytest.raises(FileNotFoundError, match="looked in") as info:
        _cuda.kernel_dir([empty, tmp_path / "missing"])
    assert str(empty) in str(info.value)


def _map_lines(source: str) -> list[tuple[str, int, str]]:
    """Interpret #line directives: (file, line number, text) of every non-directive line."""
    mapped = []
    current_file, current_line = "<assembled>", 1
    for text in source.splitlines():
        match = re.match(r'#line (\d+) "(.*)"$', text)
        if match:
            current_line, current_file = int(match.group(1)), match.group(2)
            continue
        mapped.append((current_file, current_line, text))
        current_line += 1
    return mapped


def test_assembled_source_maps_every_line_to_its_file() -> None:
    source = _cuda.assemble_source()
    assert source.startswith(f'#line 1 "{KERNEL_DIR.as_posix()}/{_cuda.MAIN_SOURCE}"')
    assert '#include "gpulogreg_math.cuh"' not in source
    files: dict[str, list[str]] = {}
    seen = set()
    for file, line, text in _map_lines(source):
        if file not in files:
            files[file] = Path(file).read_text().splitlines()
        assert files[file][line - 1] == text, f"{file}:{line} does not match the assembled source"
        seen.add(file)
    assert seen == {
        f"{KERNEL_DIR.as_posix()}/{_cuda.MAIN_SOURCE}",
        f"{KERNEL_DIR.as_posix()}/{_cuda.HEADER}",
    }
    # Every line of both files is present exactly once, apart from the include.
    main_lines = (KERNEL_DIR / _cuda.MAIN_SOURCE).read_text().splitlines()
    header_lines = (KERNEL_DIR / _cuda.HEADER).read_text().splitlines()
    assert len(_map_lines(source)) == len(main_lines) - 1 + len(header_lines)


def test_assemble_source_needs_the_include(tmp_path: Path) -> None:
    (tmp_path / _cuda.MAIN_SOURCE).write_text("// no include\n")
    (tmp_path / _cuda.HEADER).write_text("// header\n")
    with pytest.raises(ValueError, match="does not #include"):
        _cuda.assemble_source(tmp_path)


_ENTRY_RE = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?'
    r"(gpulogreg_\w+)\s*\(([^)]*)\)",
    re.S,
)


def _parse_entry_points() -> dict[str, list[tuple[str, str]]]:
    text = (KERNEL_DIR / _cuda.MAIN_SOURCE).read_text()
    entries = {}
    for name, params in _ENTRY_RE.findall(text):
        parsed = []
        for param in params.split(","):
            param = " ".join(param.replace("__restrict__", "").split())
            match = re.match(r"(.*?)\s*(\w+)$", param)
            assert match, f"cannot parse parameter {param!r} of {name}"
            ctype = match.group(1).replace(" *", "*").strip()
            parsed.append((match.group(2), ctype))
        entries[name] = parsed
    return entries


def test_python_signatures_match_the_cuda_entry_points() -> None:
    entries = _parse_entry_points()
    declared = {}
    for name, spec in _cuda.KERNELS.items():
        for suffix in spec.suffixes:
            declared[f"gpulogreg_{name}_{suffix}"] = [
                (param, _cuda.c_type(ctype, suffix)) for param, ctype in spec.params
            ]
    assert sorted(entries) == sorted(declared), "entry points differ between .cu and KERNELS"
    for entry, params in declared.items():
        assert entries[entry] == params, f"{entry}: .cu has {entries[entry]}, KERNELS {params}"


def test_block_size_matches_the_source() -> None:
    text = (KERNEL_DIR / _cuda.MAIN_SOURCE).read_text()
    match = re.search(r"#define\s+GPULOGREG_BLOCK\s+(\d+)", text)
    assert match
    assert int(match.group(1)) == _cuda.BLOCK_SIZE
    assert _cuda.BLOCK_SIZE & (_cuda.BLOCK_SIZE - 1) == 0, "block reductions need a power of two"
    warp = re.search(r"#define\s+GPULOGREG_WARP\s+(\d+)", text)
    assert warp
    assert int(warp.group(1)) == _cuda.WARP_SIZE
    assert _cuda.BLOCK_SIZE % _cuda.WARP_SIZE == 0, "warps must not straddle blocks"


def test_entry_point_names() -> None:
    assert _cuda.entry_point("logistic_loss_grad", np.float32) == "gpulogreg_logistic_loss_grad_f32"
    assert _cuda.entry_point("softmax", np.dtype("float64")) == "gpulogreg_softmax_f64"
    assert _cuda.entry_point("sum_partials", np.float64) == "gpulogreg_sum_partials_f64"
    with pytest.raises(TypeError, match="float32 or float64"):
        _cuda.entry_point("sigmoid", np.float16)
    with pytest.raises(TypeError, match="float32 or float64"):
        _cuda.entry_point("sigmoid", np.int32)
    with pytest.raises(TypeError, match="no float32 entry point"):
        _cuda.entry_point("sum_partials", np.float32)
    with pytest.raises(KeyError, match="unknown kernel"):
        _cuda.entry_point("nope", np.float32)


def test_indexed_entry_point_names() -> None:
    """The CSR kernels have one entry point per value type and index type."""
    spec = _cuda.KERNELS["csr_matvecs"]
    assert spec.indexed
    assert not _cuda.KERNELS["sigmoid"].indexed
    assert spec.suffixes == ("f32_i32", "f32_i64", "f64_i32", "f64_i64")
    assert _cuda.KERNELS["segment_sums"].suffixes == ("f64_i32", "f64_i64")
    name = _cuda.entry_point("csr_matvecs", np.float32, np.int64)
    assert name == "gpulogreg_csr_matvecs_f32_i64"
    segments = _cuda.entry_point("segment_sums", np.float64, np.int32)
    assert segments == "gpulogreg_segment_sums_f64_i32"
    assert _cuda.suffix_dtypes("f32_i64") == (np.dtype(np.float32), np.dtype(np.int64))
    assert _cuda.suffix_dtypes("f64") == (np.dtype(np.float64), None)
    assert _cuda.c_type("const I*", "f64_i64") == "const long long*"
    assert _cuda.c_type("T*", "f32") == "float*"
    with pytest.raises(TypeError, match="needs the index dtype"):
        _cuda.entry_point("csr_matvecs", np.float32)
    with pytest.raises(TypeError, match="int32 or int64 indices"):
        _cuda.entry_point("csr_matvecs", np.float32, np.uint32)
    with pytest.raises(TypeError, match="takes no index dtype"):
        _cuda.entry_point("sigmoid", np.float32, np.int32)
    with pytest.raises(TypeError, match="no float32 entry point"):
        _cuda.entry_point("segment_sums", np.float32, np.int32)


def test_prepare_args_checks_the_index_type() -> None:
    data = np.zeros(3, np.float32)
    idx32, idx64 = np.zeros(3, np.int32), np.zeros(3, np.int64)
    # data, indices, indptr, dense, class/feature strides, intercept, has_intercept, square,
    # out, out strides, n_rows, n_outputs, lanes
    args: list[Any] = [data, idx64, idx64, np.zeros(1), 1, 0, np.zeros(1), 1, 0, np.zeros(3)]
    args += [1, 1, 3, 1, 1]
    prepared = _cuda.prepare_args("csr_matvecs", np.float32, args, index_dtype=np.int64)
    assert type(prepared[4]) is np.int64  # class_stride: long long
    args[1] = idx32  # indices int32, indptr int64: refused
    with pytest.raises(TypeError, match=r"'indices' .*expected dtype int64, got int32"):
        _cuda.prepare_args("csr_matvecs", np.float32, args, index_dtype=np.int64)
    with pytest.raises(TypeError, match="pass index_dtype"):
        _cuda.prepare_args("csr_matvecs", np.float32, args)


def test_prepare_args_converts_scalars_to_c_types() -> None:
    xw = np.zeros(4, np.float32)
    args = (xw, np.zeros(1), 1, np.zeros(4, np.int32), np.zeros(4), xw, True and 1, np.zeros(2), 4)
    out = _cuda.prepare_args("logistic_loss_grad", np.float32, args)
    assert out[0] is xw
    assert type(out[2]) is np.int32
    assert type(out[6]) is np.int32
    assert type(out[8]) is np.int64
    assert out[8] == 4


@pytest.mark.parametrize(
    ("position", "value", "error", "match"),
    [
        (0, np.zeros(4, np.float64), TypeError, "expected dtype float32"),
        (3, np.zeros(4, np.int64), TypeError, "expected dtype int32"),
        (0, np.zeros((4, 2), np.float32)[:, 0], ValueError, "C-contiguous"),
        (0, 3.0, TypeError, "expected an array"),
        (2, 2**31, ValueError, "does not fit in int"),
        (2, 1.0, TypeError, "expected an integer"),
        (2, True, TypeError, "expected an integer"),
    ],
)
def test_prepare_args_rejects(position: int, value: Any, error: type, match: str) -> None:
    args: list[Any] = [
        np.zeros(4, np.float32), np.zeros(1), 1, np.zeros(4, np.int32), np.zeros(4),
        np.zeros(4, np.float32), 1, np.zeros(2), 4,
    ]  # fmt: skip
    args[position] = value
    with pytest.raises(error, match=match):
        _cuda.prepare_args("logistic_loss_grad", np.float32, args)
    with pytest.raises(TypeError, match="takes 9 arguments"):
        _cuda.prepare_args("logistic_loss_grad", np.float32, args[:-1])


def test_launch_sizes() -> None:
    h100 = _cuda.DeviceLimits(multiprocessors=132, max_threads_per_sm=2048, max_blocks_per_sm=32)
    assert _cuda.blocks_per_sm(h100) == 8  # 2048 threads / 256
    assert _cuda.blocks_per_sm(h100, registers_per_thread=64) == 4  # 65536 / (64 * 256)
    assert _cuda.blocks_per_sm(h100, shared_bytes_per_block=48 * 1024) == 1
    assert _cuda.blocks_per_sm(h100, registers_per_thread=255) == 1  # never 0
    turing = _cuda.DeviceLimits(multiprocessors=40, max_threads_per_sm=1024, max_blocks_per_sm=16)
    assert _cuda.blocks_per_sm(turing) == 4
    # Small data: just enough blocks; large data: one wave of resident blocks.
    assert _cuda.grid_size(1, multiprocessors=132, blocks_per_sm=8) == 1
    assert _cuda.grid_size(0, multiprocessors=132, blocks_per_sm=8) == 1
    assert _cuda.grid_size(257, multiprocessors=132, blocks_per_sm=8) == 2
    assert _cuda.grid_size(10**9, multiprocessors=132, blocks_per_sm=8) == 1056
    assert _cuda.grid_size(10**12, multiprocessors=132, blocks_per_sm=4) == 528


class _FakeDeviceArray(np.ndarray):
    """Stands in for a cupy.ndarray: NumPy memory that says which (fake) device holds it."""

    device_id = 0

    def __array_finalize__(self, obj: Any) -> None:
        self.device_id = getattr(obj, "device_id", 0)

    @property
    def device(self) -> Any:
        return types.SimpleNamespace(id=self.device_id)


def _on_fake_device(a: np.ndarray, device_id: int) -> _FakeDeviceArray:
    out = np.asarray(a).view(_FakeDeviceArray)
    out.device_id = device_id
    return out


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A ``cupy`` module in ``sys.modules`` that compiles and launches nothing, recording calls."""
    import sys

    state = types.SimpleNamespace(calls=[], devices=[])

    class FakeFunction:
        num_regs = 40
        shared_size_bytes = 2048

        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self, grid: Any, block: Any, args: Any, **kwargs: Any) -> None:
            state.calls.append((self.name, grid, block, args, state.devices[-1], kwargs))

    class FakeModule:
        def __init__(self, code: str, options: tuple[str, ...]) -> None:
            self.code, self.options = code, options
            self.looked_up: list[str] = []

        def get_function(self, name: str) -> FakeFunction:
            self.looked_up.append(name)
            return FakeFunction(name)

    class FakeDevice:
        def __init__(self, device_id: int = 0) -> None:
            self.id = device_id

        def __enter__(self) -> FakeDevice:
            state.devices.append(self.id)
            return self

        def __exit__(self, *exc: Any) -> None:
            state.devices.pop()

    values = {"MultiProcessorCount": 132, "MaxThreadsPerMultiProcessor": 2048}
    values |= {"MaxBlocksPerMultiprocessor": 32, "MaxRegistersPerMultiprocessor": 65536}
    values["MaxSharedMemoryPerMultiprocessor"] = 233472
    codes = {f"cudaDevAttr{name}": i for i, name in enumerate(values)}
    runtime = types.SimpleNamespace(
        deviceGetAttribute=lambda code, device: list(values.values())[code], **codes
    )
    fake = types.ModuleType("cupy")
    fake.RawModule = FakeModule  # type: ignore[attr-defined]
    fake.ndarray = _FakeDeviceArray  # type: ignore[attr-defined]
    fake.cuda = types.SimpleNamespace(Device=FakeDevice, runtime=runtime)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_cuda, "_KERNELS_BY_DEVICE", {})
    return state


def test_cuda_kernels_glue_with_a_fake_cupy(fake_cupy: types.SimpleNamespace) -> None:
    """CudaKernels: device attributes, lazy compilation, per-device caching, launch arguments."""
    kernels = _cuda.get_kernels(1)
    assert _cuda.get_kernels(1) is kernels
    assert _cuda.get_kernels(0) is not kernels
    assert kernels.limits == _cuda.DeviceLimits(132, 2048, 32, 65536, 233472)
    module = kernels._module
    assert module.code == _cuda.assemble_source()
    assert module.options == _cuda.COMPILE_OPTIONS
    assert module.looked_up == []  # nothing compiled before the first use
    # 40 registers x 256 threads: 6 blocks per SM by registers (8 by threads).
    assert kernels.grid("logistic_loss_grad", np.float32, 10**9) == 132 * 6
    assert kernels.grid("logistic_loss_grad", np.float32, 1000) == 4
    z = _on_fake_device(np.zeros(10), 1)
    kernels.launch("sigmoid", np.float64, 3, (z, z, 10))
    kernels.launch("sigmoid", np.float64, 3, (z, z, 10))
    name, grid, block, args, device, kwargs = fake_cupy.calls[-1]
    assert name == "gpulogreg_sigmoid_f64"
    assert (grid, block, device, kwargs) == ((3,), (256,), 1, {})
    assert args[0] is z
    assert type(args[2]) is np.int64
    assert module.looked_up == ["gpulogreg_logistic_loss_grad_f32", "gpulogreg_sigmoid_f64"]


@pytest.mark.parametrize("size", [1, 10])
def test_cuda_launch_takes_only_device_arrays(fake_cupy: types.SimpleNamespace, size: int) -> None:
    """A NumPy array never reaches CuPy's launcher (size 1 would be passed by value)."""
    kernels = _cuda.get_kernels(1)
    z = _on_fake_device(np.zeros(size), 1)
    with pytest.raises(TypeError, match=r"kernel 'sigmoid', parameter 'p' .*expected a CuPy array"):
        kernels.launch("sigmoid", np.float64, 1, (z, np.zeros(size), size))
    with pytest.raises(ValueError, match=r"parameter 'z' .*on GPU 0, the kernels run on GPU 1"):
        kernels.launch("sigmoid", np.float64, 1, (_on_fake_device(np.zeros(size), 0), z, size))
    assert fake_cupy.calls == []
    # The host emulator is another launcher: it takes NumPy arrays (checked by the tests above).


def test_kernels_for_refuses_host_arrays(fake_cupy: types.SimpleNamespace) -> None:
    from gpulogreg.backends.cupy_backend import _kernels_for

    with pytest.raises(TypeError, match=r"CUDA kernels run on CuPy arrays, got numpy\.ndarray"):
        _kernels_for(np.zeros(3))  # NumPy 2: .device == "cpu", no .id
    with pytest.raises(TypeError, match=r"CUDA kernels run on CuPy arrays"):
        sigmoid(np.zeros(3))
    assert _kernels_for(_on_fake_device(np.zeros(3), 1)) is _cuda.get_kernels(1)


def _gpu_docs() -> dict[str, str]:
    """What describes the GPU path: docstrings, kernel comments, the README's GPU section."""
    import gpulogreg.backends.cupy_backend as cupy_backend
    import gpulogreg.backends.sparse_cupy as sparse_cupy

    readme = (KERNEL_DIR.parent / "README.md").read_text()
    start = readme.index("\n## GPU\n")
    gpu_section = readme[start : readme.index("\n## ", start + 1)]
    return {
        "README.md (GPU)": gpu_section,
        "cupy_backend.py": cupy_backend.__doc__ or "",
        "sparse_cupy.py": sparse_cupy.__doc__ or "",
        "_cuda.py": _cuda.__doc__ or "",
        _cuda.MAIN_SOURCE: (KERNEL_DIR / _cuda.MAIN_SOURCE).read_text(),
    }


def test_determinism_claims_name_what_they_depend_on() -> None:
    """The grid (hence the summation order) follows the register count NVRTC picks:
    every place that promises identical results says they hold for the same versions."""
    # The grid does change with the register count alone (same device, same rows).
    h100 = _cuda.DeviceLimits(multiprocessors=132)
    grids = {
        _cuda.grid_size(
            10**8,
            multiprocessors=132,
            blocks_per_sm=_cuda.blocks_per_sm(h100, registers_per_thread=r),
        )
        for r in (32, 40, 64)
    }
    assert len(grids) == 3
    claim = re.compile(r"identical|deterministic|reproducib", re.IGNORECASE)
    for where, text in _gpu_docs().items():
        flat = " ".join(text.replace("//", " ").split())
        if not claim.search(flat):
            continue
        assert "register count" in flat, f"{where} claims determinism without the register count"
        assert "NVRTC" in flat, f"{where} claims determinism without naming NVRTC"
        assert "version" in flat, f"{where} claims determinism without the versions it needs"
        assert "on the same GPU model)" not in flat


def test_launcher_rejects_bad_grid(kernels: EmulatedKernels) -> None:
    with pytest.raises(ValueError, match="grid must be"):
        kernels.launch("sigmoid", np.float64, 0, (np.zeros(2), np.zeros(2), 2))


# ================================================================================
# NVRTC, as CuPy compiles at run time
# ================================================================================
NVRTC_ARCHS = ("75", "80", "86", "90")
#: The options CuPy (14.x) adds for RawModule(code=...) on CUDA, plus the arch.
CUPY_NVRTC_OPTIONS = ("-std=c++17", "-ftz=true", "--device-as-default-execution-space")


def _nvrtc_program() -> Any:
    try:
        from cupy.cuda import compiler

        program = compiler._NVRTCProgram
        compiler._get_nvrtc_version()  # loads libnvrtc
    except Exception as exc:
        pytest.skip(f"NVRTC is not available through CuPy here ({type(exc).__name__}: {exc})")
    return program


def _nvrtc_compile(source: str, arch: str) -> bytes:
    program = _nvrtc_program()(source, "gpulogreg_kernels.cu", (), (), method="cubin")
    binary, _ = program.compile((*CUPY_NVRTC_OPTIONS, f"-arch=sm_{arch}"))
    return bytes(binary)


@pytest.mark.parametrize("arch", NVRTC_ARCHS)
def test_nvrtc_compiles_every_entry_point(arch: str) -> None:
    cubin = _nvrtc_compile(_cuda.assemble_source(), arch)
    for name, spec in _cuda.KERNELS.items():
        for suffix in spec.suffixes:
            assert f"gpulogreg_{name}_{suffix}".encode() in cubin, "entry point missing (mangled?)"


def test_cupy_appends_ftz_after_our_options() -> None:
    """The FTZ model rests on CuPy appending -ftz=true after our options (the last one wins)."""
    import inspect

    compiler = pytest.importorskip("cupy.cuda.compiler")
    source = inspect.getsource(compiler._compile_with_cache_cuda)
    assert "options += ('-ftz=true',)" in source, "CuPy changed how it sets -ftz: revisit the model"
    # NVRTC: a later -ftz overrides an earlier one (ours could not turn it off).
    _nvrtc_program()
    kernel = 'extern "C" __global__ void k(const float* a, float* b) { b[0] = a[0] * a[1]; }'
    for options, flushed in (((), False), (("-ftz=false", "-ftz=true"), True)):
        program = _nvrtc_program()(kernel, "k.cu", (), (), method="ptx")
        ptx, _ = program.compile((*options, "-arch=compute_80"))
        text = ptx.decode() if isinstance(ptx, bytes) else str(ptx)
        assert ("mul.ftz.f32" in text) is flushed, options


@pytest.mark.parametrize("target", [_cuda.MAIN_SOURCE, _cuda.HEADER])
def test_nvrtc_errors_point_into_the_real_file(tmp_path: Path, target: str) -> None:
    _nvrtc_program()
    for name in (_cuda.MAIN_SOURCE, _cuda.HEADER):
        (tmp_path / name).write_text((KERNEL_DIR / name).read_text())
    lines = (tmp_path / target).read_text().splitlines()
    # Break a line inside the namespace (after the include, away from the top).
    index = next(i for i, text in enumerate(lines) if text.startswith("namespace gpulogreg"))
    lines.insert(index + 1, "this_is_not_cuda x;")
    (tmp_path / target).write_text("\n".join(lines) + "\n")
    from cupy.cuda.compiler import CompileException

    with pytest.raises(CompileException) as info:
        _nvrtc_compile(_cuda.assemble_source(tmp_path), "80")
    assert f"{tmp_path.as_posix()}/{target}({index + 2})" in str(info.value)


@pytest.mark.parametrize("case", ["binary", "ovr", "minibatch", "dataset", "dataset-minibatch"])
def test_nothing_device_resident_outlives_a_gpu_fit(
    emulated_gpu: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """When the fit hands CuPy's cached blocks back, no backend, objective or data copy lives.

    Device copies are stood in for by an ndarray subclass whose instances made by
    ``to_device`` are watched through weak references; the fit plan's own objects
    (sources, backends, objectives, stagers) are looked for among all live objects.
    """
    import gc
    import warnings
    import weakref

    from gpulogreg import Dataset, LogisticRegression, _fit, backends
    from gpulogreg.backends import chunked
    from gpulogreg.backends.sum_of_parts import SumOfParts
    from gpulogreg.data.pipeline import HostStager
    from gpulogreg.loss import LogisticObjective

    class DeviceCopy(np.ndarray):
        pass

    copies: list[weakref.ref[Any]] = []

    def to_device(a: Any, device: str) -> Any:
        if device != "gpu" or a is None:
            return a
        copy = np.array(a, copy=True).view(DeviceCopy)
        copies.append(weakref.ref(copy))
        return copy

    owned = (NumpyBackend, SumOfParts, LogisticObjective, _fit.ArraySource, _fit.DatasetSource)
    at_release: list[tuple[list[str], int]] = []

    def release() -> None:
        alive = [type(o).__name__ for o in gc.get_objects() if isinstance(o, owned)]
        at_release.append((alive, sum(ref() is not None for ref in copies)))

    class DeviceStager(HostStager):
        def stage(self, slot: int, item: Any) -> Any:
            return tuple(to_device(a, "gpu") for a in item)

    monkeypatch.setattr(backends, "to_device", to_device)
    monkeypatch.setattr(backends, "release_device_memory", release)
    monkeypatch.setattr(chunked, "device_namespace", lambda device: np)
    monkeypatch.setattr(chunked, "make_device_stager", lambda *args: DeviceStager())
    X, y = make_classification(1200, 4, n_classes=3 if case == "ovr" else 2, seed=3)
    solver = "minibatch" if "minibatch" in case else "lbfgs"
    model = LogisticRegression(
        device="gpu", solver=solver, multi_class="ovr", max_iter=3, random_state=0
    )
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 3 iterations: not the point here
        if case.startswith("dataset"):
            model.fit(Dataset.from_arrays(X, y, chunk_rows=400))
        else:
            model.fit(X, y)
    assert model.device_ == "gpu"
    assert at_release == [([], 0)], "device-resident objects outlived the fit"


# ================================================================================
# Device-to-host transfers: one per evaluation, a fixed few per iteration
# ================================================================================
def _counted_gpu_objective(
    kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, *, n_classes: int, l1_ratio: float
) -> tuple[Any, Any, list[int]]:
    """A LogisticObjective over the CuPy backend on a fake CuPy that counts transfers."""
    from gpulogreg.loss import LogisticObjective
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    X, y = make_classification(2000, 5, n_classes=n_classes, seed=7)
    sw = np.full(X.shape[0], 1.0 / X.shape[0])
    on0 = [_fake_cupy.on_device(a, 0) for a in (X, y.astype(np.int32), sw)]
    backend = CupyBackend(*on0, n_classes=n_classes, kernels=kernels)
    evaluations = [0]
    lazy = backend.loss_grad_lazy

    def counted(params: Any) -> Any:
        evaluations[0] += 1
        return lazy(params)

    backend.loss_grad_lazy = counted  # type: ignore[method-assign]
    objective = LogisticObjective(backend, C=1.0, l1_ratio=l1_ratio, weight_sum=X.shape[0])
    return state, objective, evaluations


@pytest.mark.parametrize("n_classes", [2, 3])
def test_an_evaluation_brings_one_transfer_to_the_host(
    kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, n_classes: int
) -> None:
    """Loss, L2 penalty and slope come to the host together (C=1: the penalty is on)."""
    from tests import _fake_cupy

    state, objective, _ = _counted_gpu_objective(
        kernels, monkeypatch, n_classes=n_classes, l1_ratio=0.0
    )
    params = _fake_cupy.on_device(np.linspace(-0.5, 0.5, objective.n_params), 0)
    state.transfers = 0
    value, grad = objective.value_grad(params)
    assert state.transfers == 1
    value_s, _, slope = objective.value_grad_slope(params, -grad)
    assert state.transfers == 2
    assert value_s == value
    assert slope == pytest.approx(-float(np.asarray(grad.view(np.ndarray)) @ grad))


@pytest.mark.parametrize(("solver", "per_iteration"), [("lbfgs", 2), ("gd", 1)])
def test_solver_iterations_bring_a_fixed_few_transfers(
    kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, solver: str, per_iteration: int
) -> None:
    """Transfers = evaluations + a fixed few per iteration, not one per scalar.

    L-BFGS: per evaluation 1 (value and slope); per iteration 2 (s.y, y.y and the
    optimality together; the new direction's slope). FISTA: per evaluation 1 (the
    momentum point's included); per iteration 1 (every scalar of the step together).
    Before the loop: the starting value and optimality, and for FISTA the ten
    power-iteration steps of the Lipschitz bound.
    """
    from gpulogreg.loss import POWER_ITERATIONS
    from gpulogreg.solvers import get_solver
    from tests import _fake_cupy

    l1_ratio = 0.5 if solver == "gd" else 0.0
    state, objective, evaluations = _counted_gpu_objective(
        kernels, monkeypatch, n_classes=2, l1_ratio=l1_ratio
    )
    params0 = _fake_cupy.on_device(np.zeros(objective.n_params), 0)
    state.transfers = 0
    evaluations[0] = 0
    result = get_solver(solver)(objective, params0, tol=1e-7, max_iter=60)
    assert result.n_iter >= 3
    start = 2 if solver == "lbfgs" else 2 + POWER_ITERATIONS
    bound = start + evaluations[0] + per_iteration * result.n_iter
    assert state.transfers <= bound, (state.transfers, evaluations[0], result.n_iter)


def test_a_minibatch_epoch_brings_transfers_per_epoch_not_per_batch(
    kernels: EmulatedKernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpulogreg.data.batches import ArrayBatches
    from gpulogreg.loss import Penalty
    from gpulogreg.solvers.stochastic.config import MinibatchConfig
    from gpulogreg.solvers.stochastic.trainer import BoundBackend, MinibatchTrainer
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    X, y = make_classification(4096, 5, seed=8)
    sw = np.full(X.shape[0], 1.0 / X.shape[0])
    X_d, y_d, s_d = (_fake_cupy.on_device(a, 0) for a in (X, y.astype(np.int32), sw))
    counts = []
    for batch_size in (512, 64):
        source = ArrayBatches(X_d, y_d, s_d)
        backend = CupyBackend(X_d, y_d, s_d, kernels=kernels)
        layout = backend.layout
        trainer = MinibatchTrainer(
            _fake_cupy.on_device(np.zeros(layout.n_params), 0),
            penalty=Penalty.build(layout, sys_cupy(), C=1.0, l1_ratio=0.5, weight_sum=4096.0),
            config=MinibatchConfig(batch_size=batch_size),
            seed=0,
        )
        bound = BoundBackend(lambda X, y, s: CupyBackend(X, y, s, kernels=kernels))
        state.transfers = 0
        trainer.run_epoch(source, bound)
        counts.append(state.transfers)
    assert counts[0] == counts[1], f"transfers grow with the number of batches: {counts}"
    assert counts[0] <= 3


def sys_cupy() -> Any:
    import sys

    return sys.modules["cupy"]


def test_a_fit_on_another_gpu_runs_and_releases_memory_there(
    emulated_gpu: EmulatedKernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X on fake GPU 1 while GPU 0 is current: validation, solver and release all use GPU 1.

    CuPy runs work and keeps its memory pool per device, so labels and weights
    made on the current device, or an emptied pool of the current device,
    would be the wrong ones.
    """
    import warnings

    from gpulogreg import LogisticRegression, backends
    from gpulogreg.backends import cupy_backend
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    launcher = _DeviceCheckingLauncher(emulated_gpu, state)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: launcher)
    released_on: list[int] = []
    monkeypatch.setattr(
        backends, "release_device_memory", lambda: released_on.append(state.current)
    )
    X, y = make_classification(2000, 4, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(solver="lbfgs", max_iter=5).fit(_fake_cupy.on_device(X, 1), y)
    assert model.backend_ == "cupy"
    assert state.current == 0  # restored
    assert set(launcher.launch_devices) == {1}
    assert state.violations == [], f"ran on the current device, not X's: {state.violations[:5]}"
    assert released_on == [1], "the memory pool of another device was emptied"


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_drop_in_trains_cupy_data_on_its_gpu_and_predicts_there(
    emulated_gpu: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, n_classes: int
) -> None:
    """``gpulogreg.accel.LogisticRegression`` on (fake) CuPy data: the whole fit on our kernels.

    scikit-learn's own fit would not take CuPy data without its array-API
    mode; the drop-in hands it to gpulogreg's estimator on the data's device,
    and the predictions come back on the device.
    """
    import warnings

    pytest.importorskip("sklearn", minversion="1.8")
    from gpulogreg import accel
    from gpulogreg.backends import cupy_backend
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    launcher = _DeviceCheckingLauncher(emulated_gpu, state)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: launcher)
    X, y = make_classification(1500, 4, n_classes=n_classes, seed=3)
    X_gpu = _fake_cupy.on_device(X, 0)
    accel.reset_fit_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converges, no warning
        on_gpu = accel.LogisticRegression(tol=1e-8, max_iter=500).fit(X_gpu, y)
        on_cpu = accel.LogisticRegression(tol=1e-8, max_iter=500).fit(X, y)
    assert accel.fit_counts() == {"gpulogreg": 2, "scikit-learn": 0}
    assert launcher.launch_devices, "the fit did not run the CUDA kernels"
    np.testing.assert_allclose(on_gpu.coef_, on_cpu.coef_, atol=1e-6)
    np.testing.assert_allclose(on_gpu.intercept_, on_cpu.intercept_, atol=1e-6)
    assert isinstance(on_gpu.coef_, np.ndarray)
    np.testing.assert_array_equal(on_gpu.classes_, np.unique(y))
    proba = on_gpu.predict_proba(X_gpu)
    assert isinstance(proba, _fake_cupy.DeviceArray)
    np.testing.assert_allclose(np.asarray(proba), on_cpu.predict_proba(X), atol=1e-6)
    assert isinstance(on_gpu.predict(X_gpu), _fake_cupy.DeviceArray)
    np.testing.assert_array_equal(np.asarray(on_gpu.predict(X_gpu)), on_cpu.predict(X))
    assert on_gpu.score(X_gpu, y) == pytest.approx(on_cpu.score(X, y))
    assert on_gpu.decision_function(X_gpu).shape == on_cpu.decision_function(X).shape


@pytest.mark.parametrize("n_classes", [2, 3])
def test_cross_validation_of_cupy_data_runs_on_its_gpu(
    emulated_gpu: EmulatedKernels, monkeypatch: pytest.MonkeyPatch, n_classes: int
) -> None:
    """``LogisticRegressionCV`` on (fake) CuPy data: the folds' shared passes are device
    products, the refit runs our kernels, all on the data's device; the CPU's results."""
    from gpulogreg import LogisticRegressionCV
    from gpulogreg.backends import cupy_backend
    from tests import _fake_cupy

    state = _fake_cupy.install(monkeypatch)
    launcher = _DeviceCheckingLauncher(emulated_gpu, state)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: launcher)
    X, y = make_classification(900, 4, n_classes=n_classes, seed=5)
    params = {"Cs": [0.2, 5.0], "cv": 3, "tol": 1e-9}
    on_cpu = LogisticRegressionCV(**params).fit(X, y)
    on_gpu = LogisticRegressionCV(**params).fit(_fake_cupy.on_device(X, 0), y)
    assert on_gpu.device_ == "gpu"
    assert launcher.launch_devices, "the refit ran no CUDA kernel"
    assert state.violations == [], f"ran off the data's device: {state.violations[:5]}"
    np.testing.assert_allclose(on_gpu.coefs_paths_, on_cpu.coefs_paths_, atol=1e-6)
    np.testing.assert_allclose(on_gpu.scores_, on_cpu.scores_, atol=1e-9)
    np.testing.assert_allclose(on_gpu.coef_, on_cpu.coef_, atol=1e-6)
