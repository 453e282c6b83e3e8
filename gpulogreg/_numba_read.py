"""The read of ``X`` every CPU kernel shares: fixed chunking, software prefetch, one parallel sum.

Kept apart from the loss kernels (:mod:`gpulogreg.backends._numba_kernels`,
which build on it) because the data layer needs it too: its finite check is
one parallel sum over ``X`` (:func:`read_once`), and the same sum is the
memory-read floor every benchmark compares a loss-and-gradient evaluation
with. This module imports nothing from the project.

Rows are reduced over a **fixed chunking**: chunk ``c`` holds rows
``[c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m))``, whatever the number of
threads; ``prange`` runs over the chunks, each writes its own row of partial
sums, and the rows are summed in chunk order, so results are bitwise identical
for any number of threads. Inside a chunk rows go in blocks of ``BLOCK_ROWS``,
with rows ``PREFETCH_ROWS`` ahead software-prefetched a few at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = [
    "BLOCK_ROWS",
    "CHUNK_ROWS",
    "CSR_CHUNK_VALUES",
    "FASTMATH",
    "PREFETCH_ROWS",
    "read_csr_once",
    "read_once",
]

#: Fast-math flags of every kernel: reassociation (vectorised reductions) and
#: FMA contraction only. NaN and infinity keep their IEEE semantics.
FASTMATH = {"reassoc", "contract"}

#: Rows per reduction chunk. A constant (never derived from the thread count),
#: so that partial sums, and hence results, do not depend on the threads.
#: 4096 rows keep the per-chunk partial arrays small (n_chunks x (n + 2)) while
#: giving hundreds of chunks to balance over the threads at a million rows.
CHUNK_ROWS = 4096

#: Rows per block inside a chunk: the block (BLOCK_ROWS x n values) stays in
#: L1 between the dot-product pass and the gradient pass over it. 32 rows of
#: 100 float32 features are 12.8 kB of a 48 kB L1.
BLOCK_ROWS = 32

#: Software prefetch distance in rows. The prefetches are spread over the
#: computation instead of issued in one burst per block: each 4-row tile of a
#: pass over the block prefetches a few rows this far ahead, so that a steady
#: stream of misses is in flight while the block is computed (measured on the
#: 2-core Xeon of this project, float32 1e6 x 100, one thread: the fused
#: loss_grad went from 48.6 ms with one burst per block to 38.5 ms).
PREFETCH_ROWS = BLOCK_ROWS
#: Bytes per cache line (one prefetch instruction per line).
CACHE_LINE = 64

#: Options of the kernels. ``error_model="numpy"``: IEEE semantics for division
#: (no zero-division check, whose branch would stop the block loops from
#: vectorising; no divisor here can be zero).
_SERIAL: dict[str, Any] = {
    "cache": True,
    "fastmath": FASTMATH,
    "nogil": True,
    "error_model": "numpy",
}
_PARALLEL: dict[str, Any] = {**_SERIAL, "parallel": True}
_INLINE: dict[str, Any] = {**_SERIAL, "inline": "always"}


# -----------------------------------------------------------------------------
# Software prefetch.
# -----------------------------------------------------------------------------
def _prefetch_hint(rw: int) -> Any:
    """An intrinsic ``prefetch(array, offset)``: the line of ``array.flat[offset]`` into all caches.

    ``rw`` 0 prefetches for reading, 1 for writing (the line arrives
    exclusive, so a following read-modify-write does not upgrade it). A hint
    only: prefetch instructions never fault, and callers keep ``offset``
    inside the array.
    """

    @intrinsic
    def prefetch(typingctx, array, offset):
        if not isinstance(array, types.Array) or not isinstance(offset, types.Integer):
            return None
        sig = types.void(array, types.intp)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.gep(ary.data, [args[1]])
            i8_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8_ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # (address, rw, locality=3 keep in all levels, cache type=1 data)
            builder.call(fn, [i8_ptr, i32(rw), i32(3), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


# Typed as Any for mypy, whose numba stubs see the typing-context argument of
# the intrinsic's Python signature; inside kernels they take the arguments shown.
_prefetch: Any = _prefetch_hint(0)
_prefetch_write: Any = _prefetch_hint(1)


@njit(**_INLINE)
def _prefetch_rows(X, start, stop):
    """Prefetch rows ``[start, stop)`` of C-contiguous ``X`` (clipped to its rows).

    Returns ``stop``, the next row to prefetch.
    """
    m, n = X.shape
    step = max(CACHE_LINE // X.itemsize, 1)
    for q in range(start * n, min(stop, m) * n, step):
        _prefetch(X, q)
    return stop


def _n_chunks(m):
    return (m + CHUNK_ROWS - 1) // CHUNK_ROWS


_n_chunks_jit = njit(**_INLINE)(_n_chunks)


@njit(**_SERIAL)
def _sum_rows(part):
    """Sum the rows of ``part`` in order (the fixed-order reduction over chunks)."""
    out = np.zeros(part.shape[1])
    for c in range(part.shape[0]):
        for j in range(part.shape[1]):
            out[j] += part[c, j]
    return out


# -----------------------------------------------------------------------------
# The memory-read floor.
# -----------------------------------------------------------------------------
@njit(**_SERIAL)
def _read_chunk(X, start, stop):
    n = X.shape[1]
    total = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        Xb = X[i0 : i0 + nb]
        for r in range(nb):
            _prefetch_rows(X, i0 + r + PREFETCH_ROWS, i0 + r + PREFETCH_ROWS + 1)
            row = Xb[r]
            for j in range(n):
                total += row[j]
    return total


@njit(**_PARALLEL)
def read_once(X):
    """Sum of all entries of ``X``: one parallel read of ``X``, the memory floor.

    Same chunking, blocking and prefetching as the loss kernels, float64
    accumulation; benchmarks compare one loss-and-gradient evaluation with it.

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous

    Returns
    -------
    float
    """
    m = X.shape[0]
    nc = _n_chunks_jit(m)
    part = np.zeros((nc, 1))
    for c in prange(nc):
        part[c, 0] = _read_chunk(X, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m))
    return _sum_rows(part)[0]


#: Stored values per chunk of the sparse read floor (a constant, never derived
#: from the thread count, like :data:`CHUNK_ROWS`): 2^16 values of float32 data
#: and int32 indices are 512 kB, hundreds of chunks at ten million values.
CSR_CHUNK_VALUES = 65536


@njit(**_SERIAL)
def _read_values_chunk(data, indices, start, stop):
    # Loops over slices: indexing with range(start, stop) keeps Numba's
    # negative-index wraparound check in the loop, which stops LLVM from
    # vectorising it (measured: 13.6 ms against 1.3 ms for 9e6 float32 values).
    values = data[start:stop]
    columns = indices[start:stop]
    total = 0.0
    for k in range(values.shape[0]):
        total += values[k] + np.float64(columns[k])
    return total


@njit(**_PARALLEL)
def read_csr_once(data, indices):
    """Sum of ``data + indices`` of a CSR matrix: one parallel read of both, the sparse floor.

    A loss-and-gradient evaluation on CSR data must stream the stored values
    and their column indices at least once; benchmarks compare it with this.
    Fixed chunks of :data:`CSR_CHUNK_VALUES` values, float64 accumulation.

    Parameters
    ----------
    data : ndarray of shape (nnz,), float32 or float64
    indices : ndarray of shape (nnz,), int32 or int64

    Returns
    -------
    float
    """
    nnz = data.shape[0]
    nc = (nnz + CSR_CHUNK_VALUES - 1) // CSR_CHUNK_VALUES
    part = np.zeros((nc, 1))
    for c in prange(nc):
        start = c * CSR_CHUNK_VALUES
        part[c, 0] = _read_values_chunk(data, indices, start, min(start + CSR_CHUNK_VALUES, nnz))
    return _sum_rows(part)[0]
