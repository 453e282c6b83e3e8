"""Numba kernels of the CPU backend: one pass over the rows of ``X`` per evaluation.

Every kernel here is a flat module-level function with explicit loops. The
conventions they share:

* ``X`` is a C-contiguous float32 or float64 array of shape ``(m, n)`` used as
  given (never copied or converted). Every dot product, loss and gradient is
  accumulated in float64, with one exception: from
  :data:`FLOAT32_PRODUCTS_MIN_CLASSES` classes on, the multinomial loss,
  gradient and Hessian-vector kernels, compute-bound with K outputs, take their
  products ``X W^T`` and ``R^T X`` in ``X``'s arithmetic (a float32 GEMM for
  float32 data, ``W`` rounded to float32 once per evaluation) over feature
  segments and row blocks whose partial sums are added in float64; their
  softmax, loss and intercept sums stay float64.
* Rows are reduced over a **fixed chunking**: chunk ``c`` holds rows
  ``[c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m))``, whatever the number of
  threads. ``prange`` runs over the chunks; each chunk writes its partial sums
  into its own row of a ``(n_chunks, ...)`` array, and those rows are summed
  in chunk order afterwards. Results are therefore bitwise identical for any
  number of Numba threads (and run to run).
* Inside a chunk, rows are processed in blocks of ``BLOCK_ROWS`` rows, small
  enough to stay in L1: first the dot products of the block, then the
  transcendental math over the block (branch-free polynomial code the compiler
  vectorises: Numba has no SVML here, so ``math.exp``/``math.log1p`` calls are
  never vectorised), then the gradient accumulation over the same rows. Rows
  ``PREFETCH_ROWS`` ahead are software-prefetched a few at a time from inside
  both passes, so that memory traffic overlaps the arithmetic. The
  multinomial kernels with row-pair tiles (:func:`_dot_rows_multi`) go in
  blocks of :data:`PAIR_TILE_BLOCK_ROWS` and prefetch the next block from
  their dot products; their coefficient copies and block partials have rows
  aligned to 32 bytes (:func:`_aligned_zeros`).
* Kernels compile with ``error_model="numpy"``: Numba's default zero-division
  check puts a branch in every division, which stops the block loops from
  vectorising (measured: 16 ns instead of 3 ns of math per row).
* Binary model with ``y`` in {0, 1} and normalised weights ``s``::

      z_i    = x_i . w + b
      loss   = sum_i s_i [max(z_i, 0) - y_i z_i + log1p(exp(-|z_i|))]
      p_i    = sigmoid(z_i) = where(z_i >= 0, 1, e_i) / (1 + e_i),  e_i = exp(-|z_i|)
      r_i    = s_i (p_i - y_i),   grad_w = sum_i r_i x_i,   grad_b = sum_i r_i

* Multinomial model with ``K`` classes::

      Z_ik   = x_i . W_k + b_k,   M_i = max_k Z_ik,   E_ik = exp(Z_ik - M_i)
      loss   = sum_i s_i [M_i + log(sum_k E_ik) - Z_{i, y_i}]
      R_ik   = s_i (E_ik / sum_l E_il - [y_i == k]),   grad_W_k = sum_i R_ik x_i

* Output layout of the gradient kernels: a float64 vector holding, for each
  output ``k`` (1 for the binary model), ``n`` coefficient entries followed by
  the intercept entry, i.e. ``out[k * (n + 1) + j]``; the loss, where there is
  one, is the last entry. This is the parameter layout with an intercept.

fastmath is limited to ``{"reassoc", "contract"}`` (SIMD reductions and FMA);
never the no-NaN/no-inf flags.

The binary loss kernels carry the LLVM attribute ``"prefer-vector-width"="512"``
(:func:`_prefer_wide_vectors`): LLVM's tuning for AVX-512 CPUs otherwise
vectorises with 256-bit registers. Measured on the 2-core Xeon (AVX-512) of
this project, float32 1e6 x 100, both variants round-robin in one process
(medians of 50): loss_grad 18.75 ms with 256-bit vectors, 18.01 ms with
512-bit vectors, read floor 14.9 ms. Per row and thread with ``X`` in cache,
the 256-bit kernel spends about 12.9 ns on the dot products (10.1 ns from L1;
8.0 ns for float64 ``X``, without the conversions), 13.0 ns on the gradient
accumulation (9.1 ns from L1) and 3.9 ns on the pointwise math. Tried in the
same way and not kept (loss_grad medians, ms, against the kernel of the time):

* the gradient of block k fused into the dot-product loop of block k + 1:
  20.61 against 19.06;
* widening the block to a float64 scratch once (in the dot-product pass, or in
  a copy loop) so that the gradient pass reads float64: 23.79 against 18.79,
  21.62 against 18.54 (the widening stores cost more than the second
  conversion they save);
* 8-row tiles in the dot products (512-bit): 18.42 against 17.97 (25.4
  instead of 26.6 ns per row in cache; each tile prefetches 4 rows at once,
  and 2 rows per 8-row tile, with 3 per gradient tile, gave 19.80); 8-row
  tiles in the gradient pass: 9.7 instead of 9.1 ns per row in L1;
* prefetching into L2 only (``prefetcht1``): read floor 14.45 instead of 14.99,
  loss_grad 18.74 against 18.84; ``prefetcht1`` 32 to 56 rows further ahead plus
  ``prefetcht0`` near: 19.9 to 20.2; prefetching ``y`` and ``s`` too: 18.27
  against 18.15; part of the prefetches moved into the pointwise loop: 19.70
  against 19.29;
* BLOCK_ROWS 16, 48, 64 (2 prefetched rows per 4-row tile): 18.05, 18.22,
  19.47 against 17.83 at 32.

Measured on the 2-core AMD EPYC (Zen 3, AVX2) of this project, float32
1e6 x 100, round-robin in one process against the read floor (medians of
40): no software prefetching, 1.86x the floor against 1.40x; a prefetch
distance of 2 or 4 blocks, 1.16x and 1.16x against 1.17x (float64: 1.33x and
1.46x against 1.27x); widening the block to a float64 scratch in the
dot-product pass, 1.52x against 1.24x (41.3 instead of 29.3 ns per row with
``X`` in cache). Kept from there: the polynomials of :func:`exp_nonpos` and
:func:`log1p_unit` in Estrin form (31.0 -> 28.5 ns per row in cache).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from gpulogreg._numba_read import (
    _INLINE,
    _PARALLEL,
    _SERIAL,
    BLOCK_ROWS,
    CACHE_LINE,
    CHUNK_ROWS,
    PREFETCH_ROWS,
    _n_chunks_jit,
    _prefetch_rows,
    _sum_rows,
)
from gpulogreg._typing import CERTAIN_LOSS

__all__ = [
    "BLOCK_ROWS",
    "CHUNK_ROWS",
    "FLOAT32_PRODUCTS_MIN_CLASSES",
    "binary_decision",
    "binary_gram_weights",
    "binary_hessian_diagonal",
    "binary_hvp",
    "binary_loss",
    "binary_loss_grad",
    "exp_nonpos",
    "gram_matvec",
    "log1p_unit",
    "log_pos",
    "multinomial_decision",
    "multinomial_hessian_diagonal",
    "multinomial_hvp",
    "multinomial_loss",
    "multinomial_loss_grad",
]

#: Rows prefetched per 4-row tile when two passes (dot products, then gradient)
#: share the prefetching of one block's worth of rows, and when one pass does:
#: a pass has BLOCK_ROWS / 4 tiles, so these keep pace with the rows computed
#: for any BLOCK_ROWS (BLOCK_ROWS // 16 and // 8, the same values at 32, did
#: not: half the rows at 16, twice as many at 64).
_PF_TWO_PASSES = 2
_PF_ONE_PASS = 4
#: Rows prefetched per 4-row tile by the light one-pass binary kernels (loss
#: only, decision values): half of what keeps pace, the hardware prefetcher
#: fetching the rest. Fewer prefetch instructions won there (2-core EPYC,
#: 1e6 x 100, round-robin against the read floor, medians of 30: float32 loss
#: 1.26 / 1.24 -> 1.17 / 1.17x the floor, decision 1.22 / 1.19 -> 1.13 / 1.11x;
#: float64 loss 1.35 -> 1.32x, decision 1.34 -> 1.31x); 1 and 3 rows were
#: slower than 2, and in the two passes of loss_grad 1 row instead of 2 was
#: slower too (1.32 / 1.44x against 1.17 / 1.19x).
_PF_LIGHT_PASS = 2


# -----------------------------------------------------------------------------
# LLVM intrinsics: bit casts (to build 2^k from integer bits) and prefetch.
# -----------------------------------------------------------------------------
@intrinsic
def _bits_to_float_intrinsic(typingctx, bits):
    """Reinterpret the bits of an int64 as a float64 (a no-op bit cast)."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.bitcast(value, ir.DoubleType())

    return sig, codegen


@intrinsic
def _float_to_bits_intrinsic(typingctx, value):
    """Reinterpret the bits of a float64 as an int64 (a no-op bit cast)."""
    if not isinstance(value, types.Float):
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.float64)
        return builder.bitcast(value, ir.IntType(64))

    return sig, codegen


# Typed as Any for mypy, whose numba stubs see the typing-context argument of
# the intrinsics' Python signature; inside kernels they take the arguments shown.
_bits_to_float: Any = _bits_to_float_intrinsic
_float_to_bits: Any = _float_to_bits_intrinsic


def _vector_width_hint(bits: int) -> Any:
    """An intrinsic that gives the LLVM function being compiled ``"prefer-vector-width"="bits"``.

    Called once at the top of a kernel, or of an ``inline="always"`` helper
    inlined into one (Numba inlines in its own IR, before lowering): the
    attribute goes to the function whose body the call is lowered into. A
    preference of the loop vectorizer only: on CPUs without vectors that wide
    the widest legal ones are used. LLVM's x86 tunings differ: it prefers
    256-bit vectors on Intel's AVX-512 CPUs (Skylake-X and later) and 512-bit
    ones on AMD Zen 4, so a kernel that was measured faster one way says so.
    """
    attribute = f'"prefer-vector-width"="{bits}"'

    @intrinsic
    def prefer_vector_width(typingctx):
        sig = types.void()

        def codegen(context, builder, signature, args):
            # llvmlite's FunctionAttributes only accepts keyword attributes; it
            # writes its entries verbatim after the prototype, where LLVM's
            # parser takes string attributes too, so the check of ``add`` is
            # bypassed. It is a speed hint only: an llvmlite whose attribute
            # store is not a set (checked with numba 0.68 / llvmlite 0.50)
            # compiles without it.
            attributes = builder.function.attributes
            if isinstance(attributes, set):
                set.add(attributes, attribute)
            return context.get_dummy_value()

        return sig, codegen

    return prefer_vector_width


#: 512-bit vectors for the binary loss kernels. Measured on the 2-core Xeon
#: (AVX-512) of this project, float32 1e6 x 100, medians of round-robin runs in
#: one process: binary loss_grad 18.75 ms with 256-bit vectors, 18.01 ms with
#: 512-bit vectors (the float32 to float64 conversions, two per entry of ``X``,
#: take half the instructions).
_prefer_wide_vectors: Any = _vector_width_hint(512)
#: 256-bit vectors for the multinomial kernels (see :func:`_multi_loss_grad_chunk`).
_prefer_ymm_vectors: Any = _vector_width_hint(256)


# -----------------------------------------------------------------------------
# Scalar math, written to vectorise when called in a loop over a block.
# -----------------------------------------------------------------------------
#: log2(e), to find k = round(x / ln 2) in exp's range reduction.
_LOG2E = 1.4426950408889634
#: ln 2 split into a high part with 32 trailing zero bits (k * _LN2_HI is exact
#: for |k| < 2^20) and the low remainder (Cody-Waite reduction, fdlibm values).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: exp(x) rounds to 0 in float64 below about -745.13; clamping x at -746 keeps
#: k in int range and still gives exactly 0.0 there.
_EXP_MIN = -746.0
#: sqrt(2): mantissas above it are halved so that log's argument is in
#: [sqrt(1/2), sqrt(2)).
_SQRT2 = 1.4142135623730951
#: Masks of the IEEE-754 binary64 layout.
_MANTISSA_MASK = 0x000FFFFFFFFFFFFF
_EXPONENT_ONE = 0x3FF0000000000000


@njit(**_INLINE)
def exp_nonpos(x):
    """``exp(x)`` for ``x <= 0`` (any finite or -inf x), to about 1 ulp.

    ``x = k ln2 + r`` with ``k = round(x / ln2)`` and ``|r| <= ln2 / 2``;
    ``exp(r)`` by its Taylor polynomial of degree 13 (truncation error
    ``r^14 / 14! < 5e-18``) in Estrin form; ``2^k`` built from integer
    exponent bits in two halves so that the subnormal range (k down to -1076)
    rounds correctly and everything below -745.13 gives exactly 0.
    """
    x = max(x, _EXP_MIN)
    kf = np.floor(x * _LOG2E + 0.5)
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    # Estrin's scheme: the same polynomial in pairs, then powers r^2, r^4, r^8,
    # a dependency chain of 5 operations instead of Horner's 13 (the loops over
    # a block are latency-bound on this chain; measured 31.0 -> 28.5 ns per row
    # for loss_grad with the atanh series below, 2-core EPYC, X in L1).
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    c01 = 1.0 + r  # 1/0! + r/1!
    c23 = 0.5 + r * (1.0 / 6.0)  # 1/2! + r/3!
    c45 = 1.0 / 24.0 + r * (1.0 / 120.0)  # 1/4! + r/5!
    c67 = 1.0 / 720.0 + r * (1.0 / 5040.0)  # 1/6! + r/7!
    c89 = 1.0 / 40320.0 + r * (1.0 / 362880.0)  # 1/8! + r/9!
    c1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0)  # 1/10! + r/11!
    c1213 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0)  # 1/12! + r/13!
    p = ((c01 + r2 * c23) + r4 * (c45 + r2 * c67)) + r8 * ((c89 + r2 * c1011) + r4 * c1213)
    k = np.int64(kf)
    k_half = k >> 1  # arithmetic shift: floor(k / 2), in [-538, 0]
    scale_1 = _bits_to_float((k_half + 1023) << 52)
    scale_2 = _bits_to_float((k - k_half + 1023) << 52)
    return (p * scale_1) * scale_2


@njit(**_INLINE)
def _atanh_series(u):
    """``2 atanh(u) = log((1 + u) / (1 - u))`` for ``|u| <= 1/3``, to about 1 ulp.

    ``2 u sum_{j=0}^{16} u^(2j) / (2j + 1)``; the first omitted term is below
    ``(1/9)^17 / 35 < 2e-18`` relative at ``|u| = 1/3``.
    """
    # Estrin's scheme (see exp_nonpos): pairs a_j = 1/(4j+1) + v/(4j+3), then
    # powers v^2, v^4, v^8, v^16.
    v = u * u
    v2 = v * v
    v4 = v2 * v2
    v8 = v4 * v4
    a0 = 1.0 + v * (1.0 / 3.0)
    a1 = 1.0 / 5.0 + v * (1.0 / 7.0)
    a2 = 1.0 / 9.0 + v * (1.0 / 11.0)
    a3 = 1.0 / 13.0 + v * (1.0 / 15.0)
    a4 = 1.0 / 17.0 + v * (1.0 / 19.0)
    a5 = 1.0 / 21.0 + v * (1.0 / 23.0)
    a6 = 1.0 / 25.0 + v * (1.0 / 27.0)
    a7 = 1.0 / 29.0 + v * (1.0 / 31.0)
    low = (a0 + v2 * a1) + v4 * (a2 + v2 * a3)
    high = (a4 + v2 * a5) + v4 * (a6 + v2 * a7)
    q = (low + v8 * high) + (v8 * v8) * (1.0 / 33.0)
    return 2.0 * u * q


@njit(**_INLINE)
def log1p_unit(t):
    """``log(1 + t)`` for ``0 <= t <= 1``, without forming ``1 + t``.

    ``log1p(t) = 2 atanh(t / (2 + t))`` with ``t / (2 + t)`` in ``[0, 1/3]``.
    """
    return _atanh_series(t / (2.0 + t))


@njit(**_INLINE)
def log_pos(x):
    """``log(x)`` for a positive normal float64 ``x``, to about 1 ulp.

    ``x = 2^e f`` with ``f`` in ``[sqrt(1/2), sqrt(2))`` (exponent and mantissa
    from the bits, branch-free), ``log(x) = e ln2 + 2 atanh((f - 1) / (f + 1))``.
    """
    bits = _float_to_bits(x)
    e = ((bits >> 52) & 0x7FF) - 1023
    f = _bits_to_float((bits & _MANTISSA_MASK) | _EXPONENT_ONE)  # in [1, 2)
    big = f > _SQRT2
    f = f * 0.5 if big else f
    ef = np.float64(e + 1) if big else np.float64(e)
    return ef * _LN2_HI + (_atanh_series((f - 1.0) / (f + 1.0)) + ef * _LN2_LO)


# -----------------------------------------------------------------------------
# Block helpers: dot products and gradient accumulation over rows of a block.
# -----------------------------------------------------------------------------
@njit(**_INLINE)
def _dot_block(Xb, w, b, z, X, pf, pf_per_tile):
    """``z[r] = Xb[r] . w + b`` for every row ``r`` of the block, accumulated in float64.

    Four rows share each load of ``w`` and keep four independent accumulators.
    Each 4-row tile first prefetches ``pf_per_tile`` rows of ``X`` from row
    ``pf`` on; returns the next row to prefetch.
    """
    nb, n = Xb.shape
    r = 0
    while r + 4 <= nb:
        pf = _prefetch_rows(X, pf, pf + pf_per_tile)
        x0 = Xb[r]
        x1 = Xb[r + 1]
        x2 = Xb[r + 2]
        x3 = Xb[r + 3]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for j in range(n):
            wj = w[j]
            a0 += x0[j] * wj
            a1 += x1[j] * wj
            a2 += x2[j] * wj
            a3 += x3[j] * wj
        z[r] = a0 + b
        z[r + 1] = a1 + b
        z[r + 2] = a2 + b
        z[r + 3] = a3 + b
        r += 4
    while r < nb:
        x0 = Xb[r]
        a0 = 0.0
        for j in range(n):
            a0 += x0[j] * w[j]
        z[r] = a0 + b
        r += 1
    return pf


@njit(**_INLINE)
def _dot2_block(Xb, w, b, v, c, z, zv, X, pf, pf_per_tile):
    """``z[r] = Xb[r] . w + b`` and ``zv[r] = Xb[r] . v + c`` in one pass over the block.

    Prefetching as in :func:`_dot_block`, per 2-row tile.
    """
    nb, n = Xb.shape
    r = 0
    while r + 2 <= nb:
        pf = _prefetch_rows(X, pf, pf + pf_per_tile)
        x0 = Xb[r]
        x1 = Xb[r + 1]
        a0 = 0.0
        a1 = 0.0
        c0 = 0.0
        c1 = 0.0
        for j in range(n):
            wj = w[j]
            vj = v[j]
            a0 += x0[j] * wj
            a1 += x1[j] * wj
            c0 += x0[j] * vj
            c1 += x1[j] * vj
        z[r] = a0 + b
        z[r + 1] = a1 + b
        zv[r] = c0 + c
        zv[r + 1] = c1 + c
        r += 2
    while r < nb:
        x0 = Xb[r]
        a0 = 0.0
        c0 = 0.0
        for j in range(n):
            a0 += x0[j] * w[j]
            c0 += x0[j] * v[j]
        z[r] = a0 + b
        zv[r] = c0 + c
        r += 1
    return pf


@njit(**_INLINE)
def _axpy_block(Xb, res, g, X, pf, pf_per_tile):
    """``g += sum_r res[r] Xb[r]`` over the block's rows in float64, four rows per pass over ``g``.

    Prefetching as in :func:`_dot_block`; returns the next row to prefetch.
    """
    nb, n = Xb.shape
    r = 0
    while r + 4 <= nb:
        pf = _prefetch_rows(X, pf, pf + pf_per_tile)
        x0 = Xb[r]
        x1 = Xb[r + 1]
        x2 = Xb[r + 2]
        x3 = Xb[r + 3]
        r0 = res[r]
        r1 = res[r + 1]
        r2 = res[r + 2]
        r3 = res[r + 3]
        for j in range(n):
            g[j] += (r0 * x0[j] + r1 * x1[j]) + (r2 * x2[j] + r3 * x3[j])
        r += 4
    while r < nb:
        x0 = Xb[r]
        r0 = res[r]
        for j in range(n):
            g[j] += r0 * x0[j]
        r += 1
    return pf


@njit(**_INLINE)
def _axpy2_block(Xb, res0, res1, g0, g1):
    """:func:`_axpy_block` for two outputs at once: ``g0 += sum_r res0[r] Xb[r]``, ``g1`` alike.

    Each entry of four rows of ``Xb`` is loaded once for both (multinomial
    classes in pairs).
    """
    nb, n = Xb.shape
    r = 0
    while r + 4 <= nb:
        x0 = Xb[r]
        x1 = Xb[r + 1]
        x2 = Xb[r + 2]
        x3 = Xb[r + 3]
        a0 = res0[r]
        a1 = res0[r + 1]
        a2 = res0[r + 2]
        a3 = res0[r + 3]
        b0 = res1[r]
        b1 = res1[r + 1]
        b2 = res1[r + 2]
        b3 = res1[r + 3]
        for j in range(n):
            u0 = x0[j]
            u1 = x1[j]
            u2 = x2[j]
            u3 = x3[j]
            g0[j] += (a0 * u0 + a1 * u1) + (a2 * u2 + a3 * u3)
            g1[j] += (b0 * u0 + b1 * u1) + (b2 * u2 + b3 * u3)
        r += 4
    while r < nb:
        x0 = Xb[r]
        a0 = res0[r]
        b0 = res1[r]
        for j in range(n):
            g0[j] += a0 * x0[j]
            g1[j] += b0 * x0[j]
        r += 1


@njit(**_INLINE)
def _axpy_multi(Xb, R, G):
    """``G[k] += sum_r R[k, r] Xb[r]`` for every output ``k``, in pairs (:func:`_axpy2_block`)."""
    K = G.shape[0]
    nb = Xb.shape[0]
    k = 0
    while k + 2 <= K:
        _axpy2_block(Xb, R[k, :nb], R[k + 1, :nb], G[k], G[k + 1])
        k += 2
    if k < K:
        _axpy_block(Xb, R[k, :nb], G[k], Xb, 0, 0)


@njit(**_INLINE)
def _axpy_sq_block(Xb, h, g, X, pf, pf_per_tile):
    """``g += sum_r h[r] Xb[r]^2`` (elementwise squares) over the block's rows, in float64.

    ``h[r] * x * x`` multiplies left to right, so a float32 value is squared in
    float64. Four rows per pass over ``g`` and prefetching as in :func:`_axpy_block`.
    """
    nb, n = Xb.shape
    r = 0
    while r + 4 <= nb:
        pf = _prefetch_rows(X, pf, pf + pf_per_tile)
        x0 = Xb[r]
        x1 = Xb[r + 1]
        x2 = Xb[r + 2]
        x3 = Xb[r + 3]
        h0 = h[r]
        h1 = h[r + 1]
        h2 = h[r + 2]
        h3 = h[r + 3]
        for j in range(n):
            g[j] += (h0 * x0[j] * x0[j] + h1 * x1[j] * x1[j]) + (
                h2 * x2[j] * x2[j] + h3 * x3[j] * x3[j]
            )
        r += 4
    while r < nb:
        x0 = Xb[r]
        h0 = h[r]
        for j in range(n):
            g[j] += h0 * x0[j] * x0[j]
        r += 1
    return pf


@njit(**_INLINE)
def _binary_pointwise(z, y, s):
    """Weighted loss ``s [max(z,0) - y z + log1p(e)]`` and residual ``s (p - y)``.

    ``e = exp(-|z|)``, ``p = where(z >= 0, 1, e) / (1 + e)``.
    """
    e = exp_nonpos(-abs(z))
    loss = s * (max(z, 0.0) - y * z + log1p_unit(e))
    p = (1.0 if z >= 0.0 else e) / (1.0 + e)
    return loss, s * (p - y)


# -----------------------------------------------------------------------------
# Binary (sigmoid) model. Inside a chunk, Xb, yb, sb are the views of the block's
# rows: indices from range() are provably non-negative, so Numba's negative-index
# wraparound does not turn the loads into gathers.
# -----------------------------------------------------------------------------
@njit(**_SERIAL)
def _binary_loss_grad_chunk(X, y, s, w, b, start, stop, out):
    """Rows ``[start, stop)``: ``out[:n] = sum r_i x_i``, ``out[n] = sum r_i``, then the loss."""
    _prefer_wide_vectors()
    n = X.shape[1]
    g = np.zeros(n)
    z = np.empty(BLOCK_ROWS)
    res = np.empty(BLOCK_ROWS)
    loss = 0.0
    gb = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        yb = y[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        pf = _dot_block(Xb, w, b, z, X, i0 + PREFETCH_ROWS, _PF_TWO_PASSES)
        for r in range(nb):
            li, ri = _binary_pointwise(z[r], np.float64(yb[r]), sb[r])
            loss += li
            gb += ri
            res[r] = ri
        _axpy_block(Xb, res, g, X, pf, _PF_TWO_PASSES)
    for j in range(n):
        out[j] = g[j]
    out[n] = gb
    out[n + 1] = loss


@njit(**_PARALLEL)
def binary_loss_grad(X, y, s, w, b):
    """Weighted mean log-loss and its gradient in one pass over ``X``.

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous
    y : ndarray of shape (m,), int32, values in {0, 1}
    s : ndarray of shape (m,), float64, normalised sample weights
    w : ndarray of shape (n,), float64
    b : float

    Returns
    -------
    out : ndarray of shape (n + 2,), float64
        ``[grad_w (n), grad_b, loss]``.
    """
    m, n = X.shape
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, n + 2))
    for c in prange(nc):
        _binary_loss_grad_chunk(
            X, y, s, w, b, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m), part[c]
        )
    return _sum_rows(part)


@njit(**_SERIAL)
def _binary_loss_chunk(X, y, s, w, b, start, stop):
    _prefer_wide_vectors()
    z = np.empty(BLOCK_ROWS)
    loss = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        yb = y[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        _dot_block(X[i0 : i0 + nb], w, b, z, X, i0 + PREFETCH_ROWS, _PF_LIGHT_PASS)
        for r in range(nb):
            zi = z[r]
            e = exp_nonpos(-abs(zi))
            loss += sb[r] * (max(zi, 0.0) - np.float64(yb[r]) * zi + log1p_unit(e))
    return loss


@njit(**_PARALLEL)
def binary_loss(X, y, s, w, b):
    """Weighted mean log-loss only (same pass as :func:`binary_loss_grad` without the gradient)."""
    m = X.shape[0]
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, 1))
    for c in prange(nc):
        part[c, 0] = _binary_loss_chunk(X, y, s, w, b, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m))
    return _sum_rows(part)[0]


@njit(**_SERIAL)
def _binary_hvp_chunk(X, s, w, b, v, c, start, stop, out):
    n = X.shape[1]
    g = np.zeros(n)
    z = np.empty(BLOCK_ROWS)
    zv = np.empty(BLOCK_ROWS)
    res = np.empty(BLOCK_ROWS)
    gb = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        # 2-row tiles in the first pass: half the per-tile rows of a 4-row tile.
        pf = _dot2_block(Xb, w, b, v, c, z, zv, X, i0 + PREFETCH_ROWS, _PF_TWO_PASSES // 2)
        for r in range(nb):
            e = exp_nonpos(-abs(z[r]))
            d = 1.0 / (1.0 + e)
            ri = sb[r] * (e * d * d) * zv[r]
            gb += ri
            res[r] = ri
        _axpy_block(Xb, res, g, X, pf, _PF_TWO_PASSES)
    for j in range(n):
        out[j] = g[j]
    out[n] = gb


@njit(**_PARALLEL)
def binary_hvp(X, s, w, b, v, c):
    """Hessian-vector product ``A^T diag(s p (1 - p)) A [v; c]``, ``A = [X, 1]``, one pass.

    ``p (1 - p) = e / (1 + e)^2`` with ``e = exp(-|z|)`` (stable for any finite z).

    Returns
    -------
    out : ndarray of shape (n + 1,), float64
        ``[coef part (n), intercept part]``.
    """
    m, n = X.shape
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, n + 1))
    for k in prange(nc):
        _binary_hvp_chunk(X, s, w, b, v, c, k * CHUNK_ROWS, min((k + 1) * CHUNK_ROWS, m), part[k])
    return _sum_rows(part)


@njit(**_SERIAL)
def _binary_hessian_diagonal_chunk(X, s, w, b, start, stop, out):
    n = X.shape[1]
    g = np.zeros(n)
    z = np.empty(BLOCK_ROWS)
    h = np.empty(BLOCK_ROWS)
    hb = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        pf = _dot_block(Xb, w, b, z, X, i0 + PREFETCH_ROWS, _PF_TWO_PASSES)
        for r in range(nb):
            e = exp_nonpos(-abs(z[r]))
            d = 1.0 / (1.0 + e)
            hi = sb[r] * (e * d * d)
            hb += hi
            h[r] = hi
        _axpy_sq_block(Xb, h, g, X, pf, _PF_TWO_PASSES)
    for j in range(n):
        out[j] = g[j]
    out[n] = hb


@njit(**_PARALLEL)
def binary_hessian_diagonal(X, s, w, b):
    """Diagonal of the binary Hessian ``A^T diag(s p (1 - p)) A``, ``A = [X, 1]``, in one pass.

    ``out_j = sum_i s_i p_i (1 - p_i) x_ij^2`` and ``out_n = sum_i s_i p_i (1 - p_i)``,
    with ``p (1 - p) = e / (1 + e)^2``, ``e = exp(-|z|)`` (as in :func:`binary_hvp`).

    Returns
    -------
    out : ndarray of shape (n + 1,), float64
        ``[coef part (n), intercept part]``.
    """
    m, n = X.shape
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, n + 1))
    for k in prange(nc):
        _binary_hessian_diagonal_chunk(
            X, s, w, b, k * CHUNK_ROWS, min((k + 1) * CHUNK_ROWS, m), part[k]
        )
    return _sum_rows(part)


@njit(**_SERIAL)
def _gram_matvec_chunk(X, s, v, c, start, stop, out):
    n = X.shape[1]
    g = np.zeros(n)
    z = np.empty(BLOCK_ROWS)
    gb = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        pf = _dot_block(Xb, v, c, z, X, i0 + PREFETCH_ROWS, _PF_TWO_PASSES)
        for r in range(nb):
            ri = sb[r] * z[r]
            gb += ri
            z[r] = ri
        _axpy_block(Xb, z, g, X, pf, _PF_TWO_PASSES)
    for j in range(n):
        out[j] = g[j]
    out[n] = gb


@njit(**_PARALLEL)
def gram_matvec(X, s, v, c):
    """``A^T diag(s) A [v; c]`` with ``A = [X, 1]`` in one pass over ``X``.

    Returns
    -------
    out : ndarray of shape (n + 1,), float64
    """
    m, n = X.shape
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, n + 1))
    for k in prange(nc):
        _gram_matvec_chunk(X, s, v, c, k * CHUNK_ROWS, min((k + 1) * CHUNK_ROWS, m), part[k])
    return _sum_rows(part)


@njit(**_SERIAL)
def _binary_gram_weights_chunk(X, y, s, w, b, meat, start, stop, q, out, stats):
    n = X.shape[1]
    g = np.zeros(n)
    grad = np.zeros(n)
    z = np.empty(BLOCK_ROWS)
    h = np.empty(BLOCK_ROWS)
    res = np.empty(BLOCK_ROWS)
    hb = 0.0
    loss = 0.0
    certain = 0.0
    gb = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        yb = y[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        qb = q[i0 : i0 + nb]
        pf = _dot_block(Xb, w, b, z, X, i0 + PREFETCH_ROWS, _PF_TWO_PASSES)
        for r in range(nb):
            zi = z[r]
            e = exp_nonpos(-abs(zi))
            d = 1.0 / (1.0 + e)
            li = max(zi, 0.0) - np.float64(yb[r]) * zi + log1p_unit(e)
            loss += sb[r] * li
            if li < CERTAIN_LOSS:
                certain += sb[r]
            # p - y as in the gradient (_binary_pointwise).
            ri = (1.0 if zi >= 0.0 else e) * d - np.float64(yb[r])
            res[r] = sb[r] * ri
            gb += sb[r] * ri
            hi = sb[r] * (ri * ri) if meat else sb[r] * (e * d * d)
            hb += hi
            h[r] = hi
            qb[r] = np.sqrt(hi)
        _axpy_block(Xb, h, g, X, pf, _PF_TWO_PASSES)
        _axpy_block(Xb, res[:nb], grad, X, pf, 0)
    for j in range(n):
        out[j] = g[j]
        stats[2 + j] = grad[j]
    out[n] = hb
    stats[0] = loss
    stats[1] = certain
    stats[2 + n] = gb


@njit(**_PARALLEL)
def binary_gram_weights(X, y, s, w, b, meat):
    """Row weights of the binary Hessian or meat and the matrix's intercept row, in one pass.

    ``h_i = s_i p_i (1 - p_i)`` (the Hessian) or, with ``meat``,
    ``h_i = s_i (p_i - y_i)^2`` (the meat ``sum_i s_i g_i g_i^T`` of the
    sandwich covariance, ``g_i = (p_i - y_i) a_i``); the matrix is
    ``A^T diag(h) A`` with ``A = [X, 1]``, whose last row is ``[X^T h, sum h]``.

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous
    y : ndarray of shape (m,), int32, values in {0, 1}
    s : ndarray of shape (m,), float64
    w : ndarray of shape (n,), float64
    b : float
    meat : bool

    Returns
    -------
    q : ndarray of shape (m,), float64
        ``sqrt(h_i)`` (``sqrt(s_i) |p_i - y_i|`` for the meat), so that
        ``X^T diag(h) X = (q X)^T (q X)`` (a SYRK).
    last : ndarray of shape (n + 1,), float64
        ``[X^T h, sum_i h_i]``.
    stats : ndarray of shape (n + 3,), float64
        What inference needs besides, from the same pass: ``[loss, certain,
        grad_w (n), grad_b]``: the weighted mean log-loss, the weight of the
        rows whose loss is below :data:`CERTAIN_LOSS` and the gradient.
    """
    m, n = X.shape
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, n + 1))
    stats = np.zeros((nc, n + 3))
    q = np.empty(m)
    for k in prange(nc):
        _binary_gram_weights_chunk(
            X,
            y,
            s,
            w,
            b,
            meat,
            k * CHUNK_ROWS,
            min((k + 1) * CHUNK_ROWS, m),
            q,
            part[k],
            stats[k],
        )
    return q, _sum_rows(part), _sum_rows(stats)


@njit(**_SERIAL)
def _binary_decision_chunk(X, w, b, start, stop, out):
    for i0 in range(start, stop, BLOCK_ROWS):
        i1 = min(i0 + BLOCK_ROWS, stop)
        _dot_block(X[i0:i1], w, b, out[i0:i1], X, i0 + PREFETCH_ROWS, _PF_LIGHT_PASS)


@njit(**_PARALLEL)
def binary_decision(X, w, b):
    """Decision values ``X @ w + b`` in float64, shape (m,)."""
    m = X.shape[0]
    out = np.empty(m)
    nc = _n_chunks_jit(m)
    for c in prange(nc):
        _binary_decision_chunk(X, w, b, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m), out)
    return out


# -----------------------------------------------------------------------------
# Multinomial (softmax) model. W is (K, n) C-contiguous, bias (K,); per block,
# class-major scratch arrays (K, rows per block) keep the loops over rows contiguous.
# -----------------------------------------------------------------------------
@njit(**_INLINE)
def _dot4_block(Xb, W, bias, Z, k0, k1, k2, k3, X, pf, pf_per_tile):
    """``Z[k, r] = Xb[r] . W[k] + bias[k]`` for the four classes ``k0 .. k3``, all rows ``r``.

    Two rows and four classes per tile: each entry of ``X`` is loaded (and
    widened) once for four classes, and eight independent accumulators hide
    the latency of the additions. The class indices may repeat (fewer than
    four classes left: the repeats compute the same values twice). Each
    2-row tile first prefetches ``pf_per_tile`` rows of ``X`` from row ``pf``
    on; returns the next row to prefetch. Measured on the 2-core EPYC,
    multinomial loss_grad on 1e6 x 100 float32, interleaved with the one-class
    passes it replaces: K = 3, 67.0 -> 56.0 ms; K = 5, 104.9 -> 88.0 ms.
    """
    nb, n = Xb.shape
    w0 = W[k0]
    w1 = W[k1]
    w2 = W[k2]
    w3 = W[k3]
    r = 0
    while r < nb:
        pf = _prefetch_rows(X, pf, pf + pf_per_tile)
        x0 = Xb[r]
        x1 = Xb[min(r + 1, nb - 1)]  # the last row twice when nb is odd
        a00 = 0.0
        a01 = 0.0
        a02 = 0.0
        a03 = 0.0
        a10 = 0.0
        a11 = 0.0
        a12 = 0.0
        a13 = 0.0
        for j in range(n):
            u = x0[j]
            v = x1[j]
            a00 += u * w0[j]
            a01 += u * w1[j]
            a02 += u * w2[j]
            a03 += u * w3[j]
            a10 += v * w0[j]
            a11 += v * w1[j]
            a12 += v * w2[j]
            a13 += v * w3[j]
        Z[k0, r] = a00 + bias[k0]
        Z[k1, r] = a01 + bias[k1]
        Z[k2, r] = a02 + bias[k2]
        Z[k3, r] = a03 + bias[k3]
        if r + 1 < nb:
            Z[k0, r + 1] = a10 + bias[k0]
            Z[k1, r + 1] = a11 + bias[k1]
            Z[k2, r + 1] = a12 + bias[k2]
            Z[k3, r + 1] = a13 + bias[k3]
        r += 2
    return pf


@njit(**_INLINE)
def _dot5_block(Xb, W, bias, Z, k0, K, X, pf, pf_per_tile):
    """:func:`_dot4_block` for the five classes ``k0 .. k0 + 4`` (those past ``K - 1`` repeat it).

    Two rows and five classes per tile: ten independent accumulators. With
    :func:`_axpy2_block` for the gradient, measured on the 2-core EPYC (Zen 3),
    this code against the four-class groups and one-class gradient sums before
    it, round-robin in one process (medians of 15; results bitwise equal), in
    the multinomial kernels of the time (float64 products; they now use
    :func:`_dot_rows_multi`, this code serves the decision values, the Hessian
    diagonal and the sigmoid fold models):
    multinomial loss_grad on 300,000 x 200 float32, K = 10, 54.7 -> 44.0 ms
    (read floor 7.2 ms), its hvp 70.5 -> 59.6 ms; on 1e6 x 100 float32, K = 3
    37.3 -> 34.6 ms and K = 5 55.1 -> 48.0 ms.
    """
    nb, n = Xb.shape
    k1 = min(k0 + 1, K - 1)
    k2 = min(k0 + 2, K - 1)
    k3 = min(k0 + 3, K - 1)
    k4 = min(k0 + 4, K - 1)
    w0 = W[k0]
    w1 = W[k1]
    w2 = W[k2]
    w3 = W[k3]
    w4 = W[k4]
    r = 0
    while r < nb:
        pf = _prefetch_rows(X, pf, pf + pf_per_tile)
        x0 = Xb[r]
        x1 = Xb[min(r + 1, nb - 1)]  # the last row twice when nb is odd
        a00 = 0.0
        a01 = 0.0
        a02 = 0.0
        a03 = 0.0
        a04 = 0.0
        a10 = 0.0
        a11 = 0.0
        a12 = 0.0
        a13 = 0.0
        a14 = 0.0
        for j in range(n):
            u = x0[j]
            v = x1[j]
            a00 += u * w0[j]
            a01 += u * w1[j]
            a02 += u * w2[j]
            a03 += u * w3[j]
            a04 += u * w4[j]
            a10 += v * w0[j]
            a11 += v * w1[j]
            a12 += v * w2[j]
            a13 += v * w3[j]
            a14 += v * w4[j]
        Z[k0, r] = a00 + bias[k0]
        Z[k1, r] = a01 + bias[k1]
        Z[k2, r] = a02 + bias[k2]
        Z[k3, r] = a03 + bias[k3]
        Z[k4, r] = a04 + bias[k4]
        if r + 1 < nb:
            Z[k0, r + 1] = a10 + bias[k0]
            Z[k1, r + 1] = a11 + bias[k1]
            Z[k2, r + 1] = a12 + bias[k2]
            Z[k3, r + 1] = a13 + bias[k3]
            Z[k4, r + 1] = a14 + bias[k4]
        r += 2
    return pf


@njit(**_INLINE)
def _dot_block_multi(Xb, W, bias, Z, X, pf, pf_per_tile):
    """``Z[k, r] = Xb[r] . W[k] + bias[k]`` for every row ``r`` of the block and class ``k``.

    Classes go five at a time through :func:`_dot5_block` when that repeats
    fewer classes than groups of four would (K = 5, 9, 10, 15, ...), else four
    at a time through :func:`_dot4_block`; two or three left over make one more
    such pass (some classes repeated), a single one goes through
    :func:`_dot_block`. The first pass prefetches as :func:`_dot_block` does
    (half the rows per tile: its tiles have two rows, not four).
    """
    K = W.shape[0]
    k = 0
    if (-K) % 5 < (-K) % 4:
        while k < K:
            _dot5_block(Xb, W, bias, Z, k, K, X, pf, pf_per_tile // 2 if k == 0 else 0)
            k += 5
        return
    while K - k >= 2:
        _dot4_block(
            Xb,
            W,
            bias,
            Z,
            k,
            k + 1,
            min(k + 2, K - 1),
            min(k + 3, K - 1),
            X,
            pf,
            pf_per_tile // 2 if k == 0 else 0,
        )
        k += 4
    if k == K - 1:
        _dot_block(Xb, W[k], bias[k], Z[k], X, pf, pf_per_tile if k == 0 else 0)


@njit(**_INLINE)
def _softmax_block(Z, nb, E, lse, tot):
    """``E[k, r] = softmax(Z[:, r])_k`` and ``lse[r] = log(sum_k exp(Z[k, r]))``, stably.

    ``tot`` is scratch of at least ``nb`` entries.
    """
    K = Z.shape[0]
    for r in range(nb):
        lse[r] = Z[0, r]
        tot[r] = 0.0
    for k in range(1, K):
        for r in range(nb):
            lse[r] = max(lse[r], Z[k, r])
    for k in range(K):
        for r in range(nb):
            e = exp_nonpos(Z[k, r] - lse[r])
            E[k, r] = e
            tot[r] += e
    for r in range(nb):
        lse[r] = lse[r] + log_pos(tot[r])  # tot >= 1: the largest term is exp(0)
        tot[r] = 1.0 / tot[r]
    for k in range(K):
        for r in range(nb):
            E[k, r] *= tot[r]


#: Features per partial dot product of :func:`_dot_rows_multi`: each
#: segment's products are summed in the arithmetic of ``X`` (float32 for
#: float32 data), the segments' sums in float64, so that rounding grows with
#: the segment, not with ``n_features``.
_DOT_SEGMENT = 256


@njit(**_INLINE)
def _row_pair(p, half, nb):
    """The rows ``p`` and ``p + half`` of a block of ``nb`` rows (the last row twice if past it)."""
    return p, min(p + half, nb - 1)


@njit(**_INLINE)
def _dot10_rows(Xb, Wx, bias, Z, k0, K, zero, X, pf):
    """``Z[k, r] = Xb[r] . Wx[k] + bias[k]``, classes ``k0 .. k0 + 9``, two rows half a block apart.

    Classes past ``K - 1`` repeat it. Each entry of ``Wx`` is loaded once for
    the two rows ``p`` and ``p + ceil(nb / 2)`` (twenty accumulators): two
    adjacent rows interleaved defeated the hardware prefetcher, rows half a
    block apart with software prefetch did not. Each pair prefetches its rows
    ``pf`` rows on (``pf < 0``: none); ``zero`` (0 in ``Wx``'s dtype) sets the
    arithmetic of the products.
    """
    nb, n = Xb.shape
    half = (nb + 1) // 2
    k1 = min(k0 + 1, K - 1)
    k2 = min(k0 + 2, K - 1)
    k3 = min(k0 + 3, K - 1)
    k4 = min(k0 + 4, K - 1)
    k5 = min(k0 + 5, K - 1)
    k6 = min(k0 + 6, K - 1)
    k7 = min(k0 + 7, K - 1)
    k8 = min(k0 + 8, K - 1)
    k9 = min(k0 + 9, K - 1)
    for p in range(half):
        r, q = _row_pair(p, half, nb)
        if pf >= 0:
            _prefetch_rows(X, pf + r, pf + r + 1)
            _prefetch_rows(X, pf + q, pf + q + 1)
        x = Xb[r]
        xq = Xb[q]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = s9 = 0.0
        t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = t9 = 0.0
        for j0 in range(0, n, _DOT_SEGMENT):
            j1 = min(j0 + _DOT_SEGMENT, n)
            u = x[j0:j1]
            uq = xq[j0:j1]
            w0 = Wx[k0, j0:j1]
            w1 = Wx[k1, j0:j1]
            w2 = Wx[k2, j0:j1]
            w3 = Wx[k3, j0:j1]
            w4 = Wx[k4, j0:j1]
            w5 = Wx[k5, j0:j1]
            w6 = Wx[k6, j0:j1]
            w7 = Wx[k7, j0:j1]
            w8 = Wx[k8, j0:j1]
            w9 = Wx[k9, j0:j1]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = zero
            b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = b8 = b9 = zero
            for j in range(j1 - j0):
                v = u[j]
                vq = uq[j]
                c = w0[j]
                a0 += v * c
                b0 += vq * c
                c = w1[j]
                a1 += v * c
                b1 += vq * c
                c = w2[j]
                a2 += v * c
                b2 += vq * c
                c = w3[j]
                a3 += v * c
                b3 += vq * c
                c = w4[j]
                a4 += v * c
                b4 += vq * c
                c = w5[j]
                a5 += v * c
                b5 += vq * c
                c = w6[j]
                a6 += v * c
                b6 += vq * c
                c = w7[j]
                a7 += v * c
                b7 += vq * c
                c = w8[j]
                a8 += v * c
                b8 += vq * c
                c = w9[j]
                a9 += v * c
                b9 += vq * c
            s0 += a0
            s1 += a1
            s2 += a2
            s3 += a3
            s4 += a4
            s5 += a5
            s6 += a6
            s7 += a7
            s8 += a8
            s9 += a9
            t0 += b0
            t1 += b1
            t2 += b2
            t3 += b3
            t4 += b4
            t5 += b5
            t6 += b6
            t7 += b7
            t8 += b8
            t9 += b9
        # Row q first: when it repeats row r (the last row of an odd block),
        # both write the same values.
        Z[k0, q] = t0 + bias[k0]
        Z[k1, q] = t1 + bias[k1]
        Z[k2, q] = t2 + bias[k2]
        Z[k3, q] = t3 + bias[k3]
        Z[k4, q] = t4 + bias[k4]
        Z[k5, q] = t5 + bias[k5]
        Z[k6, q] = t6 + bias[k6]
        Z[k7, q] = t7 + bias[k7]
        Z[k8, q] = t8 + bias[k8]
        Z[k9, q] = t9 + bias[k9]
        Z[k0, r] = s0 + bias[k0]
        Z[k1, r] = s1 + bias[k1]
        Z[k2, r] = s2 + bias[k2]
        Z[k3, r] = s3 + bias[k3]
        Z[k4, r] = s4 + bias[k4]
        Z[k5, r] = s5 + bias[k5]
        Z[k6, r] = s6 + bias[k6]
        Z[k7, r] = s7 + bias[k7]
        Z[k8, r] = s8 + bias[k8]
        Z[k9, r] = s9 + bias[k9]


@njit(**_INLINE)
def _dot5_rows(Xb, Wx, bias, Z, k0, K, zero, X, pf):
    """:func:`_dot10_rows` for the five classes ``k0 .. k0 + 4`` (past ``K - 1``: repeated)."""
    nb, n = Xb.shape
    half = (nb + 1) // 2
    k1 = min(k0 + 1, K - 1)
    k2 = min(k0 + 2, K - 1)
    k3 = min(k0 + 3, K - 1)
    k4 = min(k0 + 4, K - 1)
    for p in range(half):
        r, q = _row_pair(p, half, nb)
        if pf >= 0:
            _prefetch_rows(X, pf + r, pf + r + 1)
            _prefetch_rows(X, pf + q, pf + q + 1)
        x = Xb[r]
        xq = Xb[q]
        s0 = s1 = s2 = s3 = s4 = 0.0
        t0 = t1 = t2 = t3 = t4 = 0.0
        for j0 in range(0, n, _DOT_SEGMENT):
            j1 = min(j0 + _DOT_SEGMENT, n)
            u = x[j0:j1]
            uq = xq[j0:j1]
            w0 = Wx[k0, j0:j1]
            w1 = Wx[k1, j0:j1]
            w2 = Wx[k2, j0:j1]
            w3 = Wx[k3, j0:j1]
            w4 = Wx[k4, j0:j1]
            a0 = a1 = a2 = a3 = a4 = zero
            b0 = b1 = b2 = b3 = b4 = zero
            for j in range(j1 - j0):
                v = u[j]
                vq = uq[j]
                c = w0[j]
                a0 += v * c
                b0 += vq * c
                c = w1[j]
                a1 += v * c
                b1 += vq * c
                c = w2[j]
                a2 += v * c
                b2 += vq * c
                c = w3[j]
                a3 += v * c
                b3 += vq * c
                c = w4[j]
                a4 += v * c
                b4 += vq * c
            s0 += a0
            s1 += a1
            s2 += a2
            s3 += a3
            s4 += a4
            t0 += b0
            t1 += b1
            t2 += b2
            t3 += b3
            t4 += b4
        Z[k0, q] = t0 + bias[k0]
        Z[k1, q] = t1 + bias[k1]
        Z[k2, q] = t2 + bias[k2]
        Z[k3, q] = t3 + bias[k3]
        Z[k4, q] = t4 + bias[k4]
        Z[k0, r] = s0 + bias[k0]
        Z[k1, r] = s1 + bias[k1]
        Z[k2, r] = s2 + bias[k2]
        Z[k3, r] = s3 + bias[k3]
        Z[k4, r] = s4 + bias[k4]


@njit(**_INLINE)
def _dot_rows_multi(Xb, Wx, bias, Z, zero, X, pf):
    """``Z[k, r] = Xb[r] . Wx[k] + bias[k]`` (float64), every row and class, ten classes at a time.

    Groups of ten while six or more classes are left, then groups of five
    (some classes computed twice where ``K`` is not a multiple); the first
    group prefetches the rows ``pf`` on (``pf < 0``: none).
    """
    K = Wx.shape[0]
    k = 0
    while K - k > 5:
        _dot10_rows(Xb, Wx, bias, Z, k, K, zero, X, pf if k == 0 else -1)
        k += 10
    while k < K:
        _dot5_rows(Xb, Wx, bias, Z, k, K, zero, X, pf if k == 0 else -1)
        k += 5


#: Rows per tile of :func:`_axpy8_rows`; the residual scratch of the
#: multinomial kernels has this many zero columns past the block.
_AXPY_TILE = 8


@njit(**_INLINE)
def _axpy8_rows(Xb, res0, res1, g0, g1, pair):
    """``g0 += sum_r res0[r] Xb[r]`` and, if ``pair``, ``g1 += sum_r res1[r] Xb[r]``, 8 rows a pass.

    In the arithmetic of ``g0`` (float32 for float32 data: the caller sums the
    block's partial into float64). ``res0``/``res1`` hold zeros past the
    block's ``nb`` rows up to the next multiple of eight; the rows past
    ``nb - 1`` of a last, partial tile read row ``nb - 1`` (times zero).
    """
    nb, n = Xb.shape
    last = nb - 1
    for r in range(0, nb, _AXPY_TILE):
        x0 = Xb[r]
        x1 = Xb[min(r + 1, last)]
        x2 = Xb[min(r + 2, last)]
        x3 = Xb[min(r + 3, last)]
        x4 = Xb[min(r + 4, last)]
        x5 = Xb[min(r + 5, last)]
        x6 = Xb[min(r + 6, last)]
        x7 = Xb[min(r + 7, last)]
        a0 = res0[r]
        a1 = res0[r + 1]
        a2 = res0[r + 2]
        a3 = res0[r + 3]
        a4 = res0[r + 4]
        a5 = res0[r + 5]
        a6 = res0[r + 6]
        a7 = res0[r + 7]
        if pair:
            b0 = res1[r]
            b1 = res1[r + 1]
            b2 = res1[r + 2]
            b3 = res1[r + 3]
            b4 = res1[r + 4]
            b5 = res1[r + 5]
            b6 = res1[r + 6]
            b7 = res1[r + 7]
            for j in range(n):
                u0 = x0[j]
                u1 = x1[j]
                u2 = x2[j]
                u3 = x3[j]
                u4 = x4[j]
                u5 = x5[j]
                u6 = x6[j]
                u7 = x7[j]
                g0[j] += ((a0 * u0 + a1 * u1) + (a2 * u2 + a3 * u3)) + (
                    (a4 * u4 + a5 * u5) + (a6 * u6 + a7 * u7)
                )
                g1[j] += ((b0 * u0 + b1 * u1) + (b2 * u2 + b3 * u3)) + (
                    (b4 * u4 + b5 * u5) + (b6 * u6 + b7 * u7)
                )
        else:
            for j in range(n):
                g0[j] += ((a0 * x0[j] + a1 * x1[j]) + (a2 * x2[j] + a3 * x3[j])) + (
                    (a4 * x4[j] + a5 * x5[j]) + (a6 * x6[j] + a7 * x7[j])
                )


@njit(**_INLINE)
def _axpy4x4_rows(Xb, R, k, g0, g1, g2, g3):
    """``g_q += sum_r R[k + q, r] Xb[r]`` for the four classes ``k .. k + 3``, four rows per pass.

    Each entry of four rows is loaded once for four classes (sixteen products
    per four loads of ``X`` and four of ``g``). Arithmetic and zero padding
    of ``R`` as in :func:`_axpy8_rows`.
    """
    nb, n = Xb.shape
    last = nb - 1
    for r in range(0, nb, 4):
        x0 = Xb[r]
        x1 = Xb[min(r + 1, last)]
        x2 = Xb[min(r + 2, last)]
        x3 = Xb[min(r + 3, last)]
        a0, a1, a2, a3 = R[k, r], R[k, r + 1], R[k, r + 2], R[k, r + 3]
        b0, b1, b2, b3 = R[k + 1, r], R[k + 1, r + 1], R[k + 1, r + 2], R[k + 1, r + 3]
        c0, c1, c2, c3 = R[k + 2, r], R[k + 2, r + 1], R[k + 2, r + 2], R[k + 2, r + 3]
        d0, d1, d2, d3 = R[k + 3, r], R[k + 3, r + 1], R[k + 3, r + 2], R[k + 3, r + 3]
        for j in range(n):
            u0 = x0[j]
            u1 = x1[j]
            u2 = x2[j]
            u3 = x3[j]
            g0[j] += (a0 * u0 + a1 * u1) + (a2 * u2 + a3 * u3)
            g1[j] += (b0 * u0 + b1 * u1) + (b2 * u2 + b3 * u3)
            g2[j] += (c0 * u0 + c1 * u1) + (c2 * u2 + c3 * u3)
            g3[j] += (d0 * u0 + d1 * u1) + (d2 * u2 + d3 * u3)


@njit(**_INLINE)
def _gradient_block(Xb, R, Gb, G):
    """``G[k] += sum_r R[k, r] Xb[r]``, every class: block sums in ``Gb``'s dtype, then float64.

    Classes go four at a time through :func:`_axpy4x4_rows`, a pair and a
    single one left over through :func:`_axpy8_rows`, into the block partial
    ``Gb`` (zero on entry, zero again on return), which is then added to the
    float64 ``G``: float32 arithmetic for float32 data over one block of rows,
    float64 across blocks. Measured on the 2-core EPYC (Zen 4), one 32 x 200
    float32 block in cache, K = 10: 46.4 ns per row against 56-59 with pairs of
    classes only.
    """
    K, n = G.shape
    k = 0
    while k + 4 <= K:
        _axpy4x4_rows(Xb, R, k, Gb[k], Gb[k + 1], Gb[k + 2], Gb[k + 3])
        k += 4
    if k + 2 <= K:
        _axpy8_rows(Xb, R[k], R[k + 1], Gb[k], Gb[k + 1], True)
        k += 2
    if k < K:
        _axpy8_rows(Xb, R[k], R[k], Gb[k], Gb[k], False)
    for k in range(K):
        gk = G[k]
        bk = Gb[k]
        for j in range(n):
            gk[j] += bk[j]
            bk[j] = 0


#: Rows per block of the multinomial kernels whose products go in the row-pair
#: tiles of :func:`_dot_rows_multi` (the two-row tiles keep ``BLOCK_ROWS``).
#: Measured on the 2-core EPYC (Zen 4), 300,000 x 200 float32, K = 10, loss
#: and gradient, two threads, ns per row and thread (round-robin, medians of
#: 9; the read floor 48): blocks of 32 rows 155, 48 rows 148, 64 rows 147,
#: 128 rows 143 (64 keeps a float64 block of 200 features in L2's share).
PAIR_TILE_BLOCK_ROWS = 64
#: Bytes to which the rows of the coefficient copies and block partials of the
#: multinomial kernels are padded (:func:`_aligned_zeros`): a 256-bit load at a
#: row's start never splits a cache line. Measured on the 2-core EPYC (Zen 4),
#: 300,000 x 200 float32, K = 10, one thread, in cache: the dot products 92 ns
#: per row with ``W`` as NumPy allocated it (16 bytes past a line) against 68
#: aligned.
_ROW_ALIGN_BYTES = 32


@njit(**_INLINE)
def _multi_block_rows(two_row_tiles):
    """Rows per block of the multinomial kernels for the tiles :func:`_two_row_tiles` picks."""
    return BLOCK_ROWS if two_row_tiles else PAIR_TILE_BLOCK_ROWS


@njit(**_INLINE)
def _aligned_zeros(rows, n, like):
    """Zeros in ``like``'s dtype, C-contiguous, of shape ``(rows, n_padded)``, on a cache line.

    ``n_padded`` is ``n`` rounded up to whole :data:`_ROW_ALIGN_BYTES`, so
    that every row starts aligned; kernels take ``n`` from ``X`` and never
    read the padding but as zeros.
    """
    step = _ROW_ALIGN_BYTES // like.itemsize
    width = (n + step - 1) // step * step
    slack = CACHE_LINE // like.itemsize
    buf = np.zeros(rows * width + slack, like.dtype)
    start = (CACHE_LINE - buf.ctypes.data % CACHE_LINE) % CACHE_LINE // like.itemsize
    return buf[start : start + rows * width].reshape((rows, width))


@njit(**_INLINE)
def _aligned_copy(W, like):
    """``W`` in ``like``'s dtype, in rows of :func:`_aligned_zeros` (zero padding)."""
    K, n = W.shape
    out = _aligned_zeros(K, n, like)
    for k in range(K):
        for j in range(n):
            out[k, j] = W[k, j]
    return out


@njit(**_INLINE)
def _block_decisions(Xb, Wx, bias, Z, zero, X, i0, two_row_tiles, prefetch):
    """``Z = Xb Wx^T + bias`` for the block of rows from ``i0``, in :func:`_two_row_tiles`' tiles.

    The row-pair tiles of :func:`_dot_rows_multi` prefetch the next block if
    ``prefetch`` (a second product with the same rows does not).
    """
    if two_row_tiles:
        _dot_block_multi(Xb, Wx, bias, Z, X, i0 + PREFETCH_ROWS, _PF_ONE_PASS)
    else:
        _dot_rows_multi(Xb, Wx, bias, Z, zero, X, i0 + Xb.shape[0] if prefetch else -1)


@njit(**_INLINE)
def _block_gradient(Xb, R, Gb, G, two_row_tiles):
    """``G += R^T Xb`` for a block: :func:`_gradient_block`, or :func:`_axpy_multi` into ``G``."""
    if two_row_tiles:
        _axpy_multi(Xb, R, G)
    else:
        _gradient_block(Xb, R, Gb, G)


@njit(**_INLINE)
def _multi_loss_grad_chunk(X, y, s, Wx, bias, start, stop, with_grad, two_row_tiles, out):
    """Loss (and gradient) of rows ``start .. stop - 1``; ``Wx``: the coefficients of the products.

    Inlined into one compiled kernel per tiling (:func:`_multi_loss_grad_pairs`,
    :func:`_multi_loss_grad_two_rows`), where ``two_row_tiles`` is a constant:
    with both tilings' code in one function the row-pair tiles ran 157 ns per
    row and thread instead of 144 (300,000 x 200 float32, K = 10, 2-core EPYC,
    Zen 4).

    The products run in ``Wx``'s arithmetic (float32 when the caller rounded
    ``W`` for float32 data) with float64 sums across feature segments and row
    blocks; the softmax, the loss and the intercept sums in float64. Measured
    on the 2-core AMD EPYC (Zen 4, AVX-512) of this project, 300,000 x 200
    float32, K = 10, one thread, ns per row (the read of ``X`` alone 32):
    float64 products with two-row tiles (the kernel before) 245; float32
    products with the same tiles 205, with one-row tiles 180 (two interleaved
    rows defeated the hardware prefetcher: the dot products alone took 130
    from memory against 58 from cache, one-row tiles 60 from both); 256-bit
    instead of 512-bit vectors 180 against 206 (medians of 15, two runs each).
    Then, two threads, ns per row and thread: 193 for those one-row tiles,
    177 with ``W`` and the block partials in aligned rows, 169 with rows half
    a block apart sharing each load of ``W``, 155 with the next block
    prefetched, 147 in 64-row blocks (the read floor 46-51).
    """
    _prefer_ymm_vectors()
    K = Wx.shape[0]
    n = X.shape[1]
    block = _multi_block_rows(two_row_tiles)
    zero = np.zeros(1, Wx.dtype)[0]
    G = np.zeros((K, n))
    Gb = _aligned_zeros(K, n, Wx)
    gb = np.zeros(K)
    Z = np.empty((K, block))
    E = np.empty((K, block))
    R = np.zeros((K, block + _AXPY_TILE), Wx.dtype)
    lse = np.empty(block)
    tot = np.empty(block)
    loss = 0.0
    for i0 in range(start, stop, block):
        nb = min(block, stop - i0)
        Xb = X[i0 : i0 + nb]
        yb = y[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        _block_decisions(Xb, Wx, bias, Z, zero, X, i0, two_row_tiles, True)
        _softmax_block(Z, nb, E, lse, tot)
        for r in range(nb):
            loss += sb[r] * (lse[r] - Z[yb[r], r])
        if with_grad:
            for k in range(K):
                Ek = E[k]
                Rk = R[k]
                total = 0.0
                for r in range(nb):
                    rk = sb[r] * (Ek[r] - (1.0 if yb[r] == k else 0.0))
                    Rk[r] = rk
                    total += rk
                gb[k] += total
                for r in range(nb, block + _AXPY_TILE):
                    Rk[r] = 0
            _block_gradient(Xb, R, Gb, G, two_row_tiles)
    if with_grad:
        for k in range(K):
            for j in range(n):
                out[k * (n + 1) + j] = G[k, j]
            out[k * (n + 1) + n] = gb[k]
    out[K * (n + 1)] = loss


#: Classes from which the multinomial kernels take float32 products on float32
#: data (fewer: float64 products, as the binary kernels). With K outputs a pass
#: is compute-bound; the float32 products cost coefficients of float32
#: precision (about 1e-7 relative) instead of float64 ones. Measured on the
#: 2-core AMD EPYC (Zen 4), 300,000 x 200 float32, loss and gradient with
#: float64 / float32 products (medians of 11, ms; reading X: 6.8): K = 3
#: 20.6 / 14.7, K = 5 22.5 / 18.9, K = 10 42.2 / 28.4.
FLOAT32_PRODUCTS_MIN_CLASSES = 5


@njit(**_INLINE)
def _products_in_x_dtype(n_classes):
    """Whether ``n_classes`` outputs take their products in ``X``'s dtype (else float64)."""
    return n_classes >= FLOAT32_PRODUCTS_MIN_CLASSES


@njit(**_INLINE)
def _two_row_tiles(X):
    """Whether float64 products on ``X`` go in the two-row tiles of :func:`_dot_block_multi`.

    For float32 data (with fewer than :data:`FLOAT32_PRODUCTS_MIN_CLASSES`
    classes): there, widening each entry once for two rows beat the one-row
    tiles. Measured on the 2-core EPYC (Zen 4), loss and gradient,
    round-robin, medians of 15, ms: 1e6 x 100, K = 3, two-row tiles 29.5-30.0
    (three runs) against 38.1 with one-row tiles and 33.3-34.1 for the kernel
    before (two-row tiles, 512-bit vectors); K = 4 33.2-34.0 against 40.4;
    300,000 x 200, K = 3, 14.5-22.1 against 19.5 (noisy). float64 data, 1e6 x
    100, K = 3: one-row tiles 49.5-51.9 against 54.4-57.2 before.
    """
    return X.itemsize == 4


@njit(**_SERIAL)
def _multi_loss_grad_pairs(X, y, s, Wx, bias, start, stop, with_grad, out):
    """:func:`_multi_loss_grad_chunk` with the row-pair tiles of :func:`_dot_rows_multi`."""
    _multi_loss_grad_chunk(X, y, s, Wx, bias, start, stop, with_grad, False, out)


@njit(**_SERIAL)
def _multi_loss_grad_two_rows(X, y, s, Wx, bias, start, stop, with_grad, out):
    """:func:`_multi_loss_grad_chunk` with the two-row tiles of :func:`_dot_block_multi`."""
    _multi_loss_grad_chunk(X, y, s, Wx, bias, start, stop, with_grad, True, out)


@njit(**_PARALLEL)
def _multi_loss_grad_rows(X, y, s, Wx, bias, with_grad, two_row_tiles):
    m, n = X.shape
    K = Wx.shape[0]
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, K * (n + 1) + 1))
    for c in prange(nc):
        start = c * CHUNK_ROWS
        stop = min(start + CHUNK_ROWS, m)
        if two_row_tiles:
            _multi_loss_grad_two_rows(X, y, s, Wx, bias, start, stop, with_grad, part[c])
        else:
            _multi_loss_grad_pairs(X, y, s, Wx, bias, start, stop, with_grad, part[c])
    return _sum_rows(part)


@njit(**_SERIAL)
def multinomial_loss_grad(X, y, s, W, bias):
    """Weighted mean multinomial cross-entropy and its gradient in one pass.

    From :data:`FLOAT32_PRODUCTS_MIN_CLASSES` classes on, the products
    ``X W^T`` and ``R^T X`` run in ``X``'s arithmetic (float32 for float32
    data, with ``W`` rounded to float32 once, as a float32 GEMM does), their
    partial sums over feature segments and row blocks in float64; below, and
    everything else, in float64. A result that is not finite with float32
    products (``W`` or a product past float32's range) is computed again with
    float64 products, so that only float64 overflow (or non-finite input)
    gives inf or NaN; so is a ``W`` whose float32 copy holds an infinity (an
    entry past 3.4e38, whose product with a tiny entry of ``X`` may be finite).

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous
    y : ndarray of shape (m,), int32 class indices in ``0 .. K - 1``
    s : ndarray of shape (m,), float64
    W : ndarray of shape (K, n), float64, C-contiguous
    bias : ndarray of shape (K,), float64

    Returns
    -------
    out : ndarray of shape (K * (n + 1) + 1,), float64
        Gradient in the (K, n + 1) layout (intercepts last), then the loss.
    """
    if _products_in_x_dtype(W.shape[0]):
        Wx = _aligned_copy(W, X)
        if np.isfinite(Wx).all():
            out = _multi_loss_grad_rows(X, y, s, Wx, bias, True, False)
            if np.isfinite(out).all():
                return out
        # Past float32's range (W or a product over 3.4e38): float64 products.
    return _multi_loss_grad_rows(X, y, s, _aligned_copy(W, W), bias, True, _two_row_tiles(X))


@njit(**_SERIAL)
def multinomial_loss(X, y, s, W, bias):
    """Weighted mean multinomial cross-entropy only (arithmetic: :func:`multinomial_loss_grad`)."""
    K, n = W.shape
    if _products_in_x_dtype(K):
        Wx = _aligned_copy(W, X)
        if np.isfinite(Wx).all():
            loss = _multi_loss_grad_rows(X, y, s, Wx, bias, False, False)[K * (n + 1)]
            if np.isfinite(loss):
                return loss
    Wx = _aligned_copy(W, W)
    return _multi_loss_grad_rows(X, y, s, Wx, bias, False, _two_row_tiles(X))[K * (n + 1)]


@njit(**_INLINE)
def _multi_hvp_chunk(X, s, Wx, bias, Vx, vbias, start, stop, two_row_tiles, out):
    """Rows ``start .. stop - 1`` of :func:`multinomial_hvp` (one compiled kernel per tiling)."""
    _prefer_ymm_vectors()
    K = Wx.shape[0]
    n = X.shape[1]
    block = _multi_block_rows(two_row_tiles)
    zero = np.zeros(1, Wx.dtype)[0]
    G = np.zeros((K, n))
    Gb = _aligned_zeros(K, n, Wx)
    gb = np.zeros(K)
    Z = np.empty((K, block))
    ZV = np.empty((K, block))
    P = np.empty((K, block))
    R = np.zeros((K, block + _AXPY_TILE), Wx.dtype)
    lse = np.empty(block)
    tot = np.empty(block)
    mean = np.empty(block)
    for i0 in range(start, stop, block):
        nb = min(block, stop - i0)
        Xb = X[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        _block_decisions(Xb, Wx, bias, Z, zero, X, i0, two_row_tiles, True)
        _block_decisions(Xb, Vx, vbias, ZV, zero, X, i0, two_row_tiles, False)
        _softmax_block(Z, nb, P, lse, tot)
        for r in range(nb):
            mean[r] = 0.0
        for k in range(K):
            for r in range(nb):
                mean[r] += P[k, r] * ZV[k, r]
        for k in range(K):
            Pk = P[k]
            Rk = R[k]
            total = 0.0
            for r in range(nb):
                rk = sb[r] * Pk[r] * (ZV[k, r] - mean[r])
                Rk[r] = rk
                total += rk
            gb[k] += total
            for r in range(nb, block + _AXPY_TILE):
                Rk[r] = 0
        _block_gradient(Xb, R, Gb, G, two_row_tiles)
    for k in range(K):
        for j in range(n):
            out[k * (n + 1) + j] = G[k, j]
        out[k * (n + 1) + n] = gb[k]


@njit(**_SERIAL)
def _multi_hvp_pairs(X, s, Wx, bias, Vx, vbias, start, stop, out):
    """:func:`_multi_hvp_chunk` with the row-pair tiles of :func:`_dot_rows_multi`."""
    _multi_hvp_chunk(X, s, Wx, bias, Vx, vbias, start, stop, False, out)


@njit(**_SERIAL)
def _multi_hvp_two_rows(X, s, Wx, bias, Vx, vbias, start, stop, out):
    """:func:`_multi_hvp_chunk` with the two-row tiles of :func:`_dot_block_multi`."""
    _multi_hvp_chunk(X, s, Wx, bias, Vx, vbias, start, stop, True, out)


@njit(**_PARALLEL)
def _multi_hvp_rows(X, s, Wx, bias, Vx, vbias, two_row_tiles):
    m, n = X.shape
    K = Wx.shape[0]
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, K * (n + 1)))
    for c in prange(nc):
        start = c * CHUNK_ROWS
        stop = min(start + CHUNK_ROWS, m)
        if two_row_tiles:
            _multi_hvp_two_rows(X, s, Wx, bias, Vx, vbias, start, stop, part[c])
        else:
            _multi_hvp_pairs(X, s, Wx, bias, Vx, vbias, start, stop, part[c])
    return _sum_rows(part)


@njit(**_SERIAL)
def multinomial_hvp(X, s, W, bias, V, vbias):
    """Hessian-vector product of the multinomial loss in one pass.

    With ``P = softmax(Z)`` and ``ZV = X V^T + vbias``:
    ``R_ik = s_i P_ik (ZV_ik - sum_l P_il ZV_il)``, result ``[R^T X, sum_i R_i]``
    in the (K, n + 1) layout; the products in the arithmetic of
    :func:`multinomial_loss_grad`.
    """
    if _products_in_x_dtype(W.shape[0]):
        Wx = _aligned_copy(W, X)
        Vx = _aligned_copy(V, X)
        if np.isfinite(Wx).all() and np.isfinite(Vx).all():
            out = _multi_hvp_rows(X, s, Wx, bias, Vx, vbias, False)
            if np.isfinite(out).all():
                return out
    Wx = _aligned_copy(W, W)
    return _multi_hvp_rows(X, s, Wx, bias, _aligned_copy(V, V), vbias, _two_row_tiles(X))


@njit(**_SERIAL)
def _multi_hessian_diagonal_chunk(X, s, W, bias, start, stop, out):
    K, n = W.shape
    G = np.zeros((K, n))
    gb = np.zeros(K)
    Z = np.empty((K, BLOCK_ROWS))
    P = np.empty((K, BLOCK_ROWS))
    lse = np.empty(BLOCK_ROWS)
    tot = np.empty(BLOCK_ROWS)
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        _dot_block_multi(Xb, W, bias, Z, X, i0 + PREFETCH_ROWS, _PF_ONE_PASS)
        _softmax_block(Z, nb, P, lse, tot)
        for k in range(K):
            Pk = P[k]
            for r in range(nb):
                hk = sb[r] * Pk[r] * (1.0 - Pk[r])
                Pk[r] = hk
                gb[k] += hk
            _axpy_sq_block(Xb, Pk, G[k], X, 0, 0)
    for k in range(K):
        for j in range(n):
            out[k * (n + 1) + j] = G[k, j]
        out[k * (n + 1) + n] = gb[k]


@njit(**_PARALLEL)
def multinomial_hessian_diagonal(X, s, W, bias):
    """Diagonal of the multinomial Hessian in one pass.

    With ``P = softmax(Z)``: ``out[k, j] = sum_i s_i P_ik (1 - P_ik) x_ij^2`` and
    the intercept entry ``sum_i s_i P_ik (1 - P_ik)``, in the (K, n + 1) layout.
    """
    m = X.shape[0]
    K, n = W.shape
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, K * (n + 1)))
    for c in prange(nc):
        _multi_hessian_diagonal_chunk(
            X, s, W, bias, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m), part[c]
        )
    return _sum_rows(part)


@njit(**_SERIAL)
def _multi_decision_chunk(X, W, bias, start, stop, out):
    K = W.shape[0]
    Z = np.empty((K, BLOCK_ROWS))
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        _dot_block_multi(X[i0 : i0 + nb], W, bias, Z, X, i0 + PREFETCH_ROWS, _PF_ONE_PASS)
        ob = out[i0 : i0 + nb]
        for r in range(nb):
            for k in range(K):
                ob[r, k] = Z[k, r]


@njit(**_PARALLEL)
def multinomial_decision(X, W, bias):
    """Decision values ``X @ W.T + bias`` in float64, shape (m, K)."""
    m = X.shape[0]
    K = W.shape[0]
    out = np.empty((m, K))
    nc = _n_chunks_jit(m)
    for c in prange(nc):
        _multi_decision_chunk(X, W, bias, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m), out)
    return out
