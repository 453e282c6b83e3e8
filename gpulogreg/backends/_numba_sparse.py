"""Numba kernels over CSR matrices: one pass over ``(data, indices, indptr)`` per evaluation.

The sparse counterpart of :mod:`gpulogreg.backends._numba_kernels` (whose
formulas, scalar math and output layouts it shares). Conventions:

* ``X`` is a canonical CSR matrix given by its three arrays: ``data``
  float32 or float64 of shape (nnz,), ``indices`` (nnz,) and ``indptr``
  (m + 1,), both int32 or both int64, sorted column indices without
  duplicates within each row, every index in ``[0, n)`` (what
  :func:`gpulogreg.data.check_X` guarantees). The arrays are used as given,
  never copied; every dot product, loss and gradient entry is accumulated in
  float64.
* Indices are cast to ``uintp`` before they index an array. Numba wraps
  negative indices around (a compare and a select per access) unless the
  index is unsigned; the casts halved the time of the gather and the
  scatter below (2-core Xeon, CTR-like 300,000 x 2^20, 9e6 nonzeros, one
  thread: scatter 46 -> 20 ms, gather 38 -> 20 ms, as fast as SciPy's C++).
* Rows go in **fixed chunks** of :data:`CHUNK_ROWS` rows. Per-row scalars
  (the loss, the intercept's gradient) are summed per chunk, and the chunk
  partials in chunk order.
* The gradient ``X^T r`` is a scatter (``g[indices[k]] += r_i data[k]``).
  It goes into **lanes**: the rows are split into ``L`` contiguous lanes of
  whole chunks; lane ``l`` scatters its rows, in row order, into its own
  float64 buffer ``work[l]``; the buffers are then summed in lane order
  (``((work[0] + work[1]) + work[2]) ...``, the sum itself parallel over
  column blocks). ``L`` and the lanes' rows are fixed by the data (rows,
  stored values and the model's width ``n K``, :func:`lane_bounds`), never
  by the thread count, so results are bitwise identical for any number of
  threads. ``prange`` runs over the lanes: a pass uses at most ``L`` threads.
* A lane buffer holds one **slot** per column: the column's inputs, then its
  gradient entries (``[w_j, g_j]``; ``[v_j, g_j]`` for the binary
  Hessian-vector product, :func:`gram_matvec` with the rows' curvature
  weights of :func:`curvature_weights`; ``[d_j]`` for the binary Hessian's
  diagonal, :func:`weighted_squares`, a scatter only; ``[W_j, V_j, G_j]``
  for the multinomial Hessian-vector product; ``K`` values each for the
  multinomial model). The
  lane copies the inputs in first; the row's gather then brings in the very
  cache line its scatter updates. Measured on the 2-core Xeon, one thread:
  CTR-like 2^20 columns float32 34.5 -> 28.3 ms, float64 44.1 -> 28.2 ms per
  loss and gradient against separate ``w`` and ``g`` arrays; text-like
  100,000 columns (in L2) 35.9 -> 33.4 ms. Each gather also prefetches
  the slot :data:`PREFETCH_VALUES` stored values ahead.
* Lane count (:func:`n_lanes`): a lane costs a first touch of every slot
  it uses (measured, one thread: 0.8 ms per extra lane at 100,000 columns,
  11 ms at 2^20, against 35 and 31 ms for the whole one-lane pass), so
  lanes are few: at most :data:`LANE_MAX`, at least
  :data:`LANE_NNZ_PER_COLUMN` stored values per lane and gradient entry, at
  least :data:`LANE_MIN_NNZ` stored values per lane, and all buffers within
  :data:`LANE_BYTES` (one lane whatever the width: a gradient needs one
  buffer). The CTR-like 300,000 x 2^20 set with 9e6 values gets 2 lanes
  (32 MiB of ``[w_j, g_j]`` slots), the text-like 200,000 x 100,000 with 2e7
  values 8 (13 MiB).
* Inside a lane, rows go in blocks of ``BLOCK_ROWS``: the gathers
  ``x_i . w`` of the block, then the pointwise math over the block
  (branch-free polynomials that vectorise), then the block's scatter, whose
  rows are still in L1.
* Models (``y`` int32, ``s`` normalised float64 weights), as in the dense
  kernels: binary ``z_i = x_i . w + b``, ``r_i = s_i (p_i - y_i)``;
  multinomial ``Z_ik = x_i . W_k + b_k``, ``R_ik = s_i (softmax(Z_i)_k -
  [y_i == k])``. Multinomial coefficients are passed **feature-major**,
  ``Wt`` of shape (n, K), so that one gather reads a row's K coefficients
  from one cache line.
* **Slots and columns.** The lane kernels take ``columns`` (u,): slot ``j``
  of a lane buffer belongs to column ``columns[j]``, and ``indices`` hold
  slot numbers. With ``columns = arange(n)`` they are the column indices
  themselves; the backend passes, on wide data, the columns that hold
  stored values ordered by popularity with ``indices`` renumbered to match
  (:class:`~gpulogreg.backends.sparse_numba.ColumnOrder`), so that a
  row's slots share cache lines. The lane fill gathers the inputs through
  ``columns`` and the sum over lanes scatters back through it (columns
  without a slot get zero); within a row the slot numbers need no order.
* Output layout of the gradient kernels: for each output ``k`` the ``n``
  coefficient entries, then the intercept entry (``out[k * (n + 1) + j]``);
  the loss, where there is one, last.
* The small-``n`` Hessian ``A^T diag(h) A`` (``A = [X, 1]``) and the meat are
  built without lanes: column ranges of the output are **owned** by one
  thread each (:func:`column_parts`); the owner of column ``j1`` scans every
  row and adds ``h_i x_ij1 x_ij2`` for the row's ``j2 >= j1`` (indices are
  sorted) in row order. Each entry is thus a sum over the rows in row order,
  whatever the partition and the thread count; the lower triangle is a
  mirror of the upper one (exactly symmetric). Work is ``sum_i nnz_i^2 / 2``
  instead of the dense ``m n^2``, and no ``n x n`` buffer is duplicated.

fastmath is limited to ``{"reassoc", "contract"}``; ``error_model="numpy"``
as in the dense kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uintp

from gpulogreg._numba_read import (
    _INLINE,
    _PARALLEL,
    _SERIAL,
    _prefetch,
    _prefetch_write,
    _sum_rows,
)
from gpulogreg._typing import CERTAIN_LOSS
from gpulogreg.backends._numba_kernels import (
    _binary_pointwise,
    _prefer_wide_vectors,
    _softmax_block,
    exp_nonpos,
)

__all__ = [
    "CHUNK_ROWS",
    "LANE_BYTES",
    "LANE_MAX",
    "binary_decision",
    "binary_gram",
    "binary_gram_weights",
    "binary_loss",
    "binary_loss_grad",
    "column_counts",
    "column_parts",
    "curvature_weights",
    "gram_matvec",
    "lane_bounds",
    "multinomial_decision",
    "multinomial_gram",
    "multinomial_gram_weights",
    "multinomial_hessian_diagonal",
    "multinomial_hvp",
    "multinomial_loss",
    "multinomial_loss_grad",
    "n_lanes",
    "renumbered",
    "weighted_squares",
]

#: Rows per partial-sum chunk (a constant, never derived from the thread count).
#: Smaller than the dense kernels' 4096: a sparse row is cheap, and lanes are
#: made of whole chunks, so a few thousand rows already give several lanes.
CHUNK_ROWS = 1024
#: Rows per block inside a lane: the block's gathered lines are still in L1
#: when its scatter runs, and the pointwise math over the block vectorises.
#: 16 rather than the dense kernels' 32 (2-core Xeon, one thread, CTR-like
#: float32: 28.3 ms at 16, 29.4 at 32, 29.6 at 8).
BLOCK_ROWS = 16
#: Most lanes of a scatter. Past about 8 threads a pass is bound by memory
#: bandwidth anyway (one lane streams the text-like set's data at 4.6 GB/s
#: per thread here), and every lane adds the first touch of its buffer.
LANE_MAX = 8
#: Most bytes of all lane buffers of one pass together (256 MiB), counting the
#: widest slots (three float64 per gradient entry, the Hessian-vector
#: product's): two lanes up to 5.6 million gradient entries; wider data gets
#: one lane, which any gradient needs.
LANE_BYTES = 256 * 2**20
#: Fewest nonzeros per lane: below, the parallel region costs more than it
#: saves (a lane of 16,384 nonzeros takes about 30 us on one thread).
LANE_MIN_NNZ = 16384
#: Fewest stored values per lane and gradient entry. A lane's first touch of
#: a slot costs 1.5-2.5x the work of a stored value (measured: 5.5 against
#: 3.4 ns on the CTR-like set, 4 against 1.75 ns on the text-like one), so at
#: 4 values per entry a lane spends at most 40-60 % over its values' work:
#: worth it with a thread per lane (CTR-like, 2 threads: 2 lanes 21 ms
#: against 1 lane 31 ms), not with more lanes than threads.
LANE_NNZ_PER_COLUMN = 4
#: Cost of a row in nonzeros when lanes are balanced: the pointwise math of a
#: row (an exp and a log1p) takes about as long as four gather-scatter pairs.
ROW_COST_NNZ = 4
#: Software prefetch distance of the gathers, in stored values: while the
#: gather reads entry ``k`` it prefetches (for writing: the block's scatter
#: updates the same line) the slot of entry ``k + PREFETCH_VALUES``, 8 rows
#: ahead on the CTR-like set. Without it a row's misses on a slot buffer
#: beyond L2 are hardly overlapped. Measured on a 2-core AMD EPYC (Zen 3),
#: one thread, CTR-like float32, a gather and scatter over ``[w_j, g_j]``
#: slots: 106-124 ms without, 50-59 at 128, 38 at 256, 42-57 at 512.
PREFETCH_VALUES = 256
#: Entries per block of the parallel sum over lanes (64 KiB of float64 per
#: lane buffer: the L lanes' blocks stay within L2).
COLUMN_BLOCK = 8192
#: Stored values per block of the parallel renumbering (:func:`renumbered`).
RENUMBER_BLOCK = 65536


# -----------------------------------------------------------------------------
# Lanes: how rows are grouped for the scatters (fixed by the data).
# -----------------------------------------------------------------------------
def n_chunks(n_rows: int) -> int:
    """Number of :data:`CHUNK_ROWS`-row chunks of ``n_rows`` rows."""
    return (int(n_rows) + CHUNK_ROWS - 1) // CHUNK_ROWS


def n_lanes(n_rows: int, nnz: int, width: int) -> int:
    """Number of lanes of the scatters into ``width`` gradient entries (see the module docstring).

    Parameters
    ----------
    n_rows, nnz : int
        Rows and stored entries of ``X``.
    width : int
        Gradient entries (``n_features``, ``n_features * K`` multinomial).

    Returns
    -------
    int
        ``min(LANE_MAX, chunks, nnz // LANE_MIN_NNZ, LANE_BYTES // (24 width),
        nnz // (LANE_NNZ_PER_COLUMN width))`` rounded down to a power of two,
        at least 1. Thread counts are mostly even: 3 lanes on 2 threads would
        leave one thread with two lanes' work.
    """
    width = max(int(width), 1)
    nnz = int(nnz)
    lanes = min(
        LANE_MAX,
        n_chunks(n_rows),
        nnz // LANE_MIN_NNZ,
        LANE_BYTES // (3 * 8 * width),  # slots of up to 3 float64 per entry
        nnz // (LANE_NNZ_PER_COLUMN * width),
    )
    return 1 << (max(lanes, 1).bit_length() - 1)


def lane_bounds(indptr: np.ndarray, width: int) -> np.ndarray:
    """Row bounds of the lanes of the scatters into ``width`` entries: whole chunks, balanced.

    Lane ``l`` holds rows ``[bounds[l], bounds[l + 1])``; every bound but the
    last is a multiple of :data:`CHUNK_ROWS`. The chunks are split so that
    each lane's cost, ``nnz + ROW_COST_NNZ * rows``, is about equal. Depends on
    ``indptr`` and ``width`` only.

    Parameters
    ----------
    indptr : ndarray of shape (m + 1,), int32 or int64
    width : int

    Returns
    -------
    bounds : ndarray of shape (L + 1,), int64
    """
    m = int(indptr.shape[0]) - 1
    lanes = n_lanes(m, int(indptr[-1]), width)
    chunks = n_chunks(m)
    starts = np.arange(0, chunks + 1, dtype=np.int64) * CHUNK_ROWS
    starts[-1] = m
    cost = indptr[starts].astype(np.int64) + ROW_COST_NNZ * starts
    targets = cost[-1] * np.arange(1, lanes, dtype=np.int64) // lanes
    # Lane k starts at the first chunk whose cost reaches its target, kept
    # after the previous lane's start and early enough for the lanes after it:
    # every lane gets at least one chunk.
    first = [0]
    for k, cut in enumerate(np.searchsorted(cost, targets, side="left").tolist(), start=1):
        first.append(min(max(int(cut), first[-1] + 1), chunks - (lanes - k)))
    return np.append(starts[first], m).astype(np.int64)


def column_parts(column_work: np.ndarray, n_parts: int) -> np.ndarray:
    """Column ranges of about equal work for the owner-computes Gram kernels.

    The partition does not change any result (each entry is a sum over rows
    in row order whoever owns it), so ``n_parts`` may follow the thread count.

    Parameters
    ----------
    column_work : ndarray of shape (d,), int64
        Work of each output column (:func:`column_work`).
    n_parts : int

    Returns
    -------
    bounds : ndarray of shape (P + 1,), int64
        Part ``p`` owns columns ``[bounds[p], bounds[p + 1])``.
    """
    d = int(column_work.shape[0])
    total = np.cumsum(column_work, dtype=np.int64)
    parts = max(1, min(int(n_parts), d))
    targets = (int(total[-1]) if d else 0) * np.arange(1, parts, dtype=np.int64) // parts
    cut = np.unique(np.searchsorted(total, targets, side="right") + 1)
    cut = cut[(cut > 0) & (cut < d)]
    return np.concatenate([[0], cut, [d]]).astype(np.int64)


@njit(**_SERIAL)
def column_work(indices, indptr, n, fit_intercept):
    """Work of the Gram kernels per output column: the updates its owner makes.

    Entry ``t`` of a row of ``length`` entries owns ``length - t`` updates
    (itself and the entries after it in the row), plus one for the intercept
    column with ``fit_intercept``; the intercept column ``n`` owns one per row.

    Returns
    -------
    work : ndarray of shape (n + fit_intercept,), int64
    """
    m = indptr.shape[0] - 1
    extra = 1 if fit_intercept else 0
    work = np.zeros(n + extra, np.int64)
    for i in range(m):
        a = uintp(indptr[i])
        length = np.int64(indptr[i + 1] - indptr[i])
        for t in range(length):
            work[uintp(indices[a + uintp(t)])] += length - t + extra
    if fit_intercept:
        work[n] += m
    return work


@njit(**_SERIAL)
def column_counts(indices, n):
    """Stored values per column, shape (n,), int64 (one pass; no int64 copy of ``indices``)."""
    counts = np.zeros(n, np.int64)
    for k in range(indices.shape[0]):
        counts[uintp(indices[k])] += 1
    return counts


@njit(**_PARALLEL)
def renumbered(indices, rank):
    """``rank[indices]`` in the dtype of ``indices``, parallel over fixed blocks of values."""
    nnz = indices.shape[0]
    out = np.empty_like(indices)
    n_blocks = (nnz + RENUMBER_BLOCK - 1) // RENUMBER_BLOCK
    for p in prange(n_blocks):
        for k in range(p * RENUMBER_BLOCK, min((p + 1) * RENUMBER_BLOCK, nnz)):
            out[k] = rank[uintp(indices[k])]
    return out


# -----------------------------------------------------------------------------
# Row helpers: gathers and scatters over a block of rows. A lane buffer holds n
# slots of S float64 entries: slot j is [inputs of column j, gradient of column j]
# (S and the offsets are constants after inlining).
# -----------------------------------------------------------------------------
@njit(**_INLINE)
def _row(indptr, i):
    """``(start, length)`` of row ``i`` as unsigned integers (no wraparound checks)."""
    a = uintp(indptr[i])
    return a, uintp(indptr[i + 1]) - a


@njit(**_INLINE)
def _fill_slots(buf, src, S, columns):
    """Slot ``j`` of ``buf`` := ``[src[columns[j], :], 0, ..., 0]`` (``S`` entries), every ``j``."""
    p = src.shape[1]
    for j in range(columns.shape[0]):
        base = j * S
        c = uintp(columns[j])
        for q in range(p):
            buf[base + q] = src[c, q]
        for q in range(p, S):
            buf[base + q] = 0.0


@njit(**_INLINE)
def _ahead(indices, k, S):
    """Slot offset ``S * indices[k + PREFETCH_VALUES]`` (clipped to the last stored value)."""
    last = uintp(indices.shape[0] - 1)
    ahead = k + uintp(PREFETCH_VALUES)
    return uintp(S) * uintp(indices[ahead if ahead < last else last])


@njit(**_INLINE)
def _gather_block(data, indices, indptr, i0, nb, buf, S, off, b, z):
    """``z[r] = sum_j x_{i0 + r, j} buf[S j + off] + b`` for the block's rows, in float64.

    ``buf`` is a lane's own buffer, whose slots the block's scatter then
    updates: prefetched for writing.
    """
    for r in range(nb):
        a, length = _row(indptr, i0 + r)
        acc = 0.0
        for t in range(length):
            k = a + t
            _prefetch_write(buf, _ahead(indices, k, S))
            acc += np.float64(data[k]) * buf[uintp(S) * uintp(indices[k]) + uintp(off)]
        z[r] = acc + b


@njit(**_INLINE)
def _gather_shared_block(data, indices, indptr, i0, nb, w, b, z):
    """``z[r] = x_{i0 + r} . w + b`` from a ``w`` every thread reads: prefetched for reading.

    (A prefetch for writing would take each line exclusive, and two threads
    gathering from the same ``w`` would pull its lines back and forth: the
    CTR-like loss on 2 threads took 92 ms so, against 20 ms on one.)
    """
    for r in range(nb):
        a, length = _row(indptr, i0 + r)
        acc = 0.0
        for t in range(length):
            k = a + t
            _prefetch(w, _ahead(indices, k, 1))
            acc += np.float64(data[k]) * w[uintp(indices[k])]
        z[r] = acc + b


@njit(**_INLINE)
def _scatter_block(data, indices, indptr, i0, nb, res, buf, S, off, square):
    """``buf[S j + off] += res[r] x_{i0 + r, j}`` (``x^2`` with ``square``), rows in order."""
    for r in range(nb):
        a, length = _row(indptr, i0 + r)
        rr = res[r]
        for t in range(length):
            k = a + t
            x = np.float64(data[k])
            buf[uintp(S) * uintp(indices[k]) + uintp(off)] += rr * (x * x if square else x)


@njit(**_INLINE)
def _gather_block_multi(data, indices, indptr, i0, nb, buf, S, width, Z, acc, own):
    """``Z[q, r] = sum_j x_{i0 + r, j} buf[S j + q]`` for ``q < width`` (class-major ``Z``).

    ``acc`` is scratch of ``width`` entries; no bias added. ``own``: ``buf``
    is the lane's own (prefetched for writing), else shared by the threads
    (for reading, as in :func:`_gather_shared_block`).
    """
    for r in range(nb):
        a, length = _row(indptr, i0 + r)
        for q in range(width):
            acc[q] = 0.0
        for t in range(length):
            k = a + t
            ahead = _ahead(indices, k, S)
            if own:
                _prefetch_write(buf, ahead)
                _prefetch_write(buf, ahead + uintp(S - 1))
            else:
                _prefetch(buf, ahead)
                _prefetch(buf, ahead + uintp(S - 1))
            x = np.float64(data[k])
            j = uintp(S) * uintp(indices[k])
            for q in range(width):
                acc[q] += x * buf[j + uintp(q)]
        for q in range(width):
            Z[q, r] = acc[q]


@njit(**_INLINE)
def _scatter_block_multi(data, indices, indptr, i0, nb, R, buf, S, off, square, acc):
    """``buf[S j + off + q] += R[q, r] x_{i0 + r, j}`` (``x^2`` with ``square``), rows in order."""
    K = R.shape[0]
    for r in range(nb):
        a, length = _row(indptr, i0 + r)
        for q in range(K):
            acc[q] = R[q, r]
        for t in range(length):
            k = a + t
            x = np.float64(data[k])
            xx = x * x if square else x
            j = uintp(S) * uintp(indices[k]) + uintp(off)
            for q in range(K):
                buf[j + uintp(q)] += acc[q] * xx


# -----------------------------------------------------------------------------
# The sum over lanes (fixed order, parallel over column blocks).
# -----------------------------------------------------------------------------
@njit(**_PARALLEL)
def _reduce_lanes(work, lanes, K, n, S, off, out, columns):
    """``out[q (n + 1) + columns[j]] = sum_l work[l, S j + off + q]``, lanes in order.

    The gradient of slot ``j`` (column ``columns[j]``) and output ``q`` is
    entry ``off + q`` of slot ``j``; ``out`` is the flat ``(K, n + 1)``
    layout (intercept entries and columns without a slot untouched).
    Parallel over blocks of slots; each entry is summed over the lanes in
    lane order.
    """
    u = columns.shape[0]
    block = (COLUMN_BLOCK + K - 1) // K
    n_blocks = (u + block - 1) // block
    for p in prange(n_blocks):
        j0 = p * block
        j1 = min(j0 + block, u)
        for j in range(j0, j1):
            c = columns[j]
            for q in range(K):
                out[q * (n + 1) + c] = work[0, S * j + off + q]
        for lane in range(1, lanes):
            for j in range(j0, j1):
                c = columns[j]
                for q in range(K):
                    out[q * (n + 1) + c] += work[lane, S * j + off + q]


# -----------------------------------------------------------------------------
# Binary (sigmoid) model. Lane slots: [inputs (1 or 2 values), gradient].
# -----------------------------------------------------------------------------
@njit(**_SERIAL)
def _binary_loss_grad_lane(
    data, indices, indptr, y, s, src, b, decisions, start, stop, buf, part, columns
):
    """Rows ``[start, stop)``; slots ``[w_j, g_j]``; ``part[c] = [sum r_i, loss]`` per chunk."""
    _prefer_wide_vectors()
    _fill_slots(buf, src, 2, columns)
    res = np.empty(BLOCK_ROWS)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        loss = 0.0
        gb = 0.0
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            z = decisions[i0 : i0 + nb]
            _gather_block(data, indices, indptr, i0, nb, buf, 2, 0, b, z)
            yb = y[i0 : i0 + nb]
            sb = s[i0 : i0 + nb]
            for r in range(nb):
                li, ri = _binary_pointwise(z[r], np.float64(yb[r]), sb[r])
                loss += li
                gb += ri
                res[r] = ri
            _scatter_block(data, indices, indptr, i0, nb, res, buf, 2, 1, False)
        chunk = part[c0 // CHUNK_ROWS]
        chunk[0] = gb
        chunk[1] = loss


@njit(**_PARALLEL)
def binary_loss_grad(data, indices, indptr, y, s, w, b, decisions, bounds, work, columns):
    """Weighted mean log-loss and its gradient in one pass over the CSR arrays.

    The rows' decision values are written to ``decisions`` on the way: the
    curvature weights at ``w`` (:func:`curvature_weights`) then need no
    pass over ``X``.

    Parameters
    ----------
    data : ndarray of shape (nnz,), float32 or float64
    indices : ndarray of shape (nnz,), int32 or int64
    indptr : ndarray of shape (m + 1,), same dtype as ``indices``
    y : ndarray of shape (m,), int32, values in {0, 1}
    s : ndarray of shape (m,), float64, normalised sample weights
    w : ndarray of shape (n,), float64
    b : float
    decisions : ndarray of shape (m,), float64
        Output: ``X @ w + b``.
    bounds : ndarray of shape (L + 1,), int64
        Lane row bounds (:func:`lane_bounds`).
    work : ndarray of shape (>= L, >= 2 u), float64
        Lane buffers (overwritten): slots ``[w_j, g_j]``.
    columns : ndarray of shape (u,), intp
        The column of each slot (every column once: ``arange(n)``; or the
        columns that hold stored values, when ``indices`` are renumbered
        to slots). Columns without a slot get a zero gradient.

    Returns
    -------
    out : ndarray of shape (n + 2,), float64
        ``[grad_w (n), grad_b, loss]``.
    """
    m = indptr.shape[0] - 1
    n = w.shape[0]
    src = w.reshape((n, 1))
    lanes = bounds.shape[0] - 1
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, 2))
    for lane in prange(lanes):
        _binary_loss_grad_lane(
            data,
            indices,
            indptr,
            y,
            s,
            src,
            b,
            decisions,
            bounds[lane],
            bounds[lane + 1],
            work[lane],
            part,
            columns,
        )
    out = np.zeros(n + 2)
    _reduce_lanes(work, lanes, 1, n, 2, 1, out, columns)
    totals = _sum_rows(part)
    out[n] = totals[0]
    out[n + 1] = totals[1]
    return out


@njit(**_SERIAL)
def _binary_loss_chunk(data, indices, indptr, y, s, w, b, start, stop):
    z = np.empty(BLOCK_ROWS)
    loss = 0.0
    for i0 in range(start, stop, BLOCK_ROWS):
        nb = min(BLOCK_ROWS, stop - i0)
        _gather_shared_block(data, indices, indptr, i0, nb, w, b, z)
        yb = y[i0 : i0 + nb]
        sb = s[i0 : i0 + nb]
        for r in range(nb):
            loss += _binary_pointwise(z[r], np.float64(yb[r]), sb[r])[0]
    return loss


@njit(**_PARALLEL)
def binary_loss(data, indices, indptr, y, s, w, b):
    """Weighted mean log-loss only: parallel over the fixed chunks (no scatter, no lanes)."""
    m = indptr.shape[0] - 1
    nc = (m + CHUNK_ROWS - 1) // CHUNK_ROWS
    part = np.zeros((nc, 1))
    for c in prange(nc):
        part[c, 0] = _binary_loss_chunk(
            data, indices, indptr, y, s, w, b, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, m)
        )
    return _sum_rows(part)[0]


@njit(**_PARALLEL)
def curvature_weights(decisions, s):
    """Curvature weights ``s_i p_i (1 - p_i)`` of the rows from their decision values, shape (m,).

    With them the Hessian-vector product at ``w`` is :func:`gram_matvec`
    with these row weights, and the Hessian's diagonal is
    :func:`weighted_squares`: Newton-CG computes them once per outer
    iteration, from the decisions of its last :func:`binary_loss_grad`, and
    its products then gather ``v`` only (slots ``[v_j, g_j]``).
    """
    m = decisions.shape[0]
    out = np.empty(m)
    for i in prange(m):
        e = exp_nonpos(-abs(decisions[i]))
        d = 1.0 / (1.0 + e)
        out[i] = s[i] * (e * d * d)
    return out


@njit(**_PARALLEL)
def binary_decision(data, indices, indptr, w, b):
    """Decision values ``X @ w + b`` in float64, shape (m,); parallel over the fixed chunks."""
    m = indptr.shape[0] - 1
    out = np.empty(m)
    nc = (m + CHUNK_ROWS - 1) // CHUNK_ROWS
    for c in prange(nc):
        c0 = c * CHUNK_ROWS
        c1 = min(c0 + CHUNK_ROWS, m)
        _gather_shared_block(data, indices, indptr, c0, c1 - c0, w, b, out[c0:c1])
    return out


@njit(**_SERIAL)
def _gram_matvec_lane(data, indices, indptr, s, src, c, start, stop, buf, part, columns):
    """Slots ``[v_j, g_j]``: ``g = sum_i s_i (x_i . v + c) x_i``."""
    _prefer_wide_vectors()
    _fill_slots(buf, src, 2, columns)
    z = np.empty(BLOCK_ROWS)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        gb = 0.0
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            _gather_block(data, indices, indptr, i0, nb, buf, 2, 0, c, z)
            sb = s[i0 : i0 + nb]
            for r in range(nb):
                ri = sb[r] * z[r]
                gb += ri
                z[r] = ri
            _scatter_block(data, indices, indptr, i0, nb, z, buf, 2, 1, False)
        part[c0 // CHUNK_ROWS, 0] = gb


@njit(**_PARALLEL)
def gram_matvec(data, indices, indptr, s, v, c, bounds, work, columns):
    """``A^T diag(s) A [v; c]`` with ``A = [X, 1]`` in one pass.

    ``work``: (>= L, >= 2 n) lane buffers, slots ``[v_j, g_j]``.

    Returns
    -------
    out : ndarray of shape (n + 1,), float64
    """
    m = indptr.shape[0] - 1
    n = v.shape[0]
    src = v.reshape((n, 1))
    lanes = bounds.shape[0] - 1
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, 1))
    for lane in prange(lanes):
        _gram_matvec_lane(
            data,
            indices,
            indptr,
            s,
            src,
            c,
            bounds[lane],
            bounds[lane + 1],
            work[lane],
            part,
            columns,
        )
    out = np.zeros(n + 1)
    _reduce_lanes(work, lanes, 1, n, 2, 1, out, columns)
    out[n] = _sum_rows(part)[0]
    return out


@njit(**_SERIAL)
def _weighted_squares_lane(data, indices, indptr, h, start, stop, buf, part):
    """Slots ``[d_j]``: ``d = sum_i h_i x_ij^2``; ``part[c, 0] = sum h_i`` per chunk."""
    buf[:] = 0.0
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            _scatter_block(data, indices, indptr, i0, nb, h[i0 : i0 + nb], buf, 1, 0, True)
        hb = 0.0
        for i in range(c0, c1):
            hb += h[i]
        part[c0 // CHUNK_ROWS, 0] = hb


@njit(**_PARALLEL)
def weighted_squares(data, indices, indptr, h, n, bounds, work, columns):
    """``[sum_i h_i x_ij^2 (n), sum_i h_i]``: the binary Hessian's diagonal for ``h = s p (1 - p)``.

    A scatter only: the rows' weights are given (:func:`curvature_weights`),
    nothing is gathered.

    Parameters
    ----------
    data, indices, indptr : the CSR arrays (see :func:`binary_loss_grad`)
    h : ndarray of shape (m,), float64
        Row weights.
    n : int
        Columns of ``X``.
    bounds : ndarray of shape (L + 1,), int64
        Lane row bounds (:func:`lane_bounds`).
    work : ndarray of shape (>= L, >= u), float64
        Lane buffers (overwritten): slots ``[d_j]``.
    columns : ndarray of shape (u,), intp
        The column of each slot (see :func:`binary_loss_grad`).

    Returns
    -------
    out : ndarray of shape (n + 1,), float64
    """
    m = indptr.shape[0] - 1
    lanes = bounds.shape[0] - 1
    u = columns.shape[0]
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, 1))
    for lane in prange(lanes):
        _weighted_squares_lane(
            data, indices, indptr, h, bounds[lane], bounds[lane + 1], work[lane, :u], part
        )
    out = np.zeros(n + 1)
    _reduce_lanes(work, lanes, 1, n, 1, 0, out, columns)
    out[n] = _sum_rows(part)[0]
    return out


@njit(**_SERIAL)
def _binary_gram_weights_lane(
    data, indices, indptr, y, s, src, b, meat, start, stop, h, buf, part, columns
):
    _prefer_wide_vectors()
    _fill_slots(buf, src, 2, columns)
    z = np.empty(BLOCK_ROWS)
    res = np.empty(BLOCK_ROWS)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        loss = 0.0
        certain = 0.0
        gb = 0.0
        hb = 0.0
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            _gather_block(data, indices, indptr, i0, nb, buf, 2, 0, b, z)
            yb = y[i0 : i0 + nb]
            sb = s[i0 : i0 + nb]
            hblk = h[i0 : i0 + nb]
            for r in range(nb):
                zi = z[r]
                e = exp_nonpos(-abs(zi))
                d = 1.0 / (1.0 + e)
                li, ri = _binary_pointwise(zi, np.float64(yb[r]), 1.0)
                loss += sb[r] * li
                if li < CERTAIN_LOSS:
                    certain += sb[r]
                res[r] = sb[r] * ri
                gb += sb[r] * ri
                hi = sb[r] * (ri * ri) if meat else sb[r] * (e * d * d)
                hb += hi
                hblk[r] = hi
            _scatter_block(data, indices, indptr, i0, nb, res, buf, 2, 1, False)
        chunk = part[c0 // CHUNK_ROWS]
        chunk[0] = loss
        chunk[1] = certain
        chunk[2] = gb
        chunk[3] = hb


@njit(**_PARALLEL)
def binary_gram_weights(data, indices, indptr, y, s, w, b, meat, bounds, work, columns):
    """Row weights of the binary Hessian (or meat) and what inference needs, in one pass.

    ``h_i = s_i p_i (1 - p_i)`` or, with ``meat``, ``h_i = s_i (p_i - y_i)^2``;
    ``work``: (>= L, >= 2 n) lane buffers, slots ``[w_j, g_j]``.

    Returns
    -------
    h : ndarray of shape (m,), float64
    stats : ndarray of shape (n + 4,), float64
        ``[loss, certain, grad_w (n), grad_b, sum_i h_i]``: the weighted mean
        log-loss, the weight of the rows whose loss is below
        :data:`~gpulogreg._typing.CERTAIN_LOSS`, the gradient and the
        weights' sum (the Gram matrix's intercept entry).
    """
    m = indptr.shape[0] - 1
    n = w.shape[0]
    src = w.reshape((n, 1))
    lanes = bounds.shape[0] - 1
    h = np.empty(m)
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, 4))
    for lane in prange(lanes):
        _binary_gram_weights_lane(
            data,
            indices,
            indptr,
            y,
            s,
            src,
            b,
            meat,
            bounds[lane],
            bounds[lane + 1],
            h,
            work[lane],
            part,
            columns,
        )
    stats = np.zeros(n + 4)
    _reduce_lanes(work, lanes, 1, n, 2, 1, stats[2:], columns)
    totals = _sum_rows(part)
    stats[0] = totals[0]
    stats[1] = totals[1]
    stats[n + 2] = totals[2]
    stats[n + 3] = totals[3]
    return h, stats


# -----------------------------------------------------------------------------
# Multinomial (softmax) model. Coefficients come feature-major, Wt of shape (n, K);
# lane slots [W_j (K), G_j (K)] (hvp: [W_j, V_j, G_j]); per block, class-major
# scratch arrays (K, BLOCK_ROWS) as in the dense kernels.
# -----------------------------------------------------------------------------
@njit(**_INLINE)
def _add_bias(Z, bias, nb):
    for q in range(bias.shape[0]):
        for r in range(nb):
            Z[q, r] += bias[q]


@njit(**_SERIAL)
def _multi_loss_grad_lane(
    data, indices, indptr, y, s, Wt, bias, start, stop, with_grad, buf, part, columns
):
    """Rows ``[start, stop)``; ``part[c] = [sum R (K), loss]`` per chunk.

    With ``with_grad``, ``buf`` holds slots ``[W_j, G_j]`` and gets
    ``G = R^T X`` (feature-major); without, ``buf`` is ``Wt`` itself
    (slots of ``K``, read only).
    """
    K = bias.shape[0]
    S = 2 * K if with_grad else K
    if with_grad:
        _fill_slots(buf, Wt, S, columns)
    Z = np.empty((K, BLOCK_ROWS))
    E = np.empty((K, BLOCK_ROWS))
    lse = np.empty(BLOCK_ROWS)
    tot = np.empty(BLOCK_ROWS)
    acc = np.empty(K)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        chunk = part[c0 // CHUNK_ROWS]
        loss = 0.0
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            yb = y[i0 : i0 + nb]
            sb = s[i0 : i0 + nb]
            _gather_block_multi(data, indices, indptr, i0, nb, buf, S, K, Z, acc, with_grad)
            _add_bias(Z, bias, nb)
            _softmax_block(Z, nb, E, lse, tot)
            for r in range(nb):
                loss += sb[r] * (lse[r] - Z[yb[r], r])
            if with_grad:
                for r in range(nb):
                    E[yb[r], r] -= 1.0
                for q in range(K):
                    Eq = E[q]
                    gq = 0.0
                    for r in range(nb):
                        rq = sb[r] * Eq[r]
                        Eq[r] = rq
                        gq += rq
                    chunk[q] += gq
                _scatter_block_multi(data, indices, indptr, i0, nb, E, buf, S, K, False, acc)
        chunk[K] = loss


@njit(**_PARALLEL)
def multinomial_loss_grad(data, indices, indptr, y, s, Wt, bias, bounds, work, columns):
    """Weighted mean multinomial cross-entropy and its gradient in one pass.

    Parameters
    ----------
    data, indices, indptr : the CSR arrays (see :func:`binary_loss_grad`)
    y : ndarray of shape (m,), int32 class indices in ``0 .. K - 1``
    s : ndarray of shape (m,), float64
    Wt : ndarray of shape (n, K), float64, C-contiguous (feature-major coefficients)
    bias : ndarray of shape (K,), float64
    bounds : ndarray of shape (L + 1,), int64
        Lane row bounds (:func:`lane_bounds`).
    work : ndarray of shape (>= L, >= 2 u K), float64
        Lane buffers: slots ``[W_j (K), G_j (K)]``.
    columns : ndarray of shape (u,), intp
        The column of each slot (see :func:`binary_loss_grad`).

    Returns
    -------
    out : ndarray of shape (K * (n + 1) + 1,), float64
        Gradient in the (K, n + 1) layout (intercepts last), then the loss.
    """
    m = indptr.shape[0] - 1
    n, K = Wt.shape
    lanes = bounds.shape[0] - 1
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, K + 1))
    for lane in prange(lanes):
        _multi_loss_grad_lane(
            data,
            indices,
            indptr,
            y,
            s,
            Wt,
            bias,
            bounds[lane],
            bounds[lane + 1],
            True,
            work[lane],
            part,
            columns,
        )
    out = np.zeros(K * (n + 1) + 1)
    _reduce_lanes(work, lanes, K, n, 2 * K, K, out, columns)
    totals = _sum_rows(part)
    for q in range(K):
        out[q * (n + 1) + n] = totals[q]
    out[K * (n + 1)] = totals[K]
    return out


@njit(**_PARALLEL)
def multinomial_loss(data, indices, indptr, y, s, Wt, bias):
    """Weighted mean multinomial cross-entropy only: parallel over the fixed chunks."""
    m = indptr.shape[0] - 1
    K = Wt.shape[1]
    flat = Wt.ravel()
    no_slots = np.empty(0, np.intp)  # the lanes' fill is not used without the gradient
    nc = (m + CHUNK_ROWS - 1) // CHUNK_ROWS
    part = np.zeros((nc, K + 1))
    for c in prange(nc):
        _multi_loss_grad_lane(
            data,
            indices,
            indptr,
            y,
            s,
            Wt,
            bias,
            c * CHUNK_ROWS,
            min((c + 1) * CHUNK_ROWS, m),
            False,
            flat,
            part,
            no_slots,
        )
    return _sum_rows(part)[K]


@njit(**_PARALLEL)
def multinomial_decision(data, indices, indptr, Wt, bias):
    """Decision values ``X @ W.T + bias`` in float64, shape (m, K)."""
    m = indptr.shape[0] - 1
    K = Wt.shape[1]
    flat = Wt.ravel()
    out = np.empty((m, K))
    nc = (m + CHUNK_ROWS - 1) // CHUNK_ROWS
    for c in prange(nc):
        Z = np.empty((K, BLOCK_ROWS))
        acc = np.empty(K)
        c1 = min((c + 1) * CHUNK_ROWS, m)
        for i0 in range(c * CHUNK_ROWS, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            _gather_block_multi(data, indices, indptr, i0, nb, flat, K, K, Z, acc, False)
            for r in range(nb):
                for q in range(K):
                    out[i0 + r, q] = Z[q, r] + bias[q]
    return out


@njit(**_SERIAL)
def _multi_hvp_lane(data, indices, indptr, s, WVt, bias, vbias, start, stop, buf, part, columns):
    """Slots ``[W_j, V_j, G_j]``: one read per entry gives both linear predictors."""
    K = bias.shape[0]
    S = 3 * K
    _fill_slots(buf, WVt, S, columns)
    ZZ = np.empty((2 * K, BLOCK_ROWS))
    Z = ZZ[:K]
    ZV = ZZ[K:]
    P = np.empty((K, BLOCK_ROWS))
    lse = np.empty(BLOCK_ROWS)
    tot = np.empty(BLOCK_ROWS)
    mean = np.empty(BLOCK_ROWS)
    acc = np.empty(2 * K)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        chunk = part[c0 // CHUNK_ROWS]
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            sb = s[i0 : i0 + nb]
            _gather_block_multi(data, indices, indptr, i0, nb, buf, S, 2 * K, ZZ, acc, True)
            _add_bias(Z, bias, nb)
            _add_bias(ZV, vbias, nb)
            _softmax_block(Z, nb, P, lse, tot)
            for r in range(nb):
                mean[r] = 0.0
            for q in range(K):
                for r in range(nb):
                    mean[r] += P[q, r] * ZV[q, r]
            for q in range(K):
                Pq = P[q]
                gq = 0.0
                for r in range(nb):
                    rq = sb[r] * Pq[r] * (ZV[q, r] - mean[r])
                    Pq[r] = rq
                    gq += rq
                chunk[q] += gq
            _scatter_block_multi(data, indices, indptr, i0, nb, P, buf, S, 2 * K, False, acc)


@njit(**_PARALLEL)
def multinomial_hvp(data, indices, indptr, s, WVt, bias, vbias, bounds, work, columns):
    """Hessian-vector product of the multinomial loss in one pass.

    With ``P = softmax(Z)`` and ``ZV = X V^T + vbias``:
    ``R_ik = s_i P_ik (ZV_ik - sum_l P_il ZV_il)``, result ``[R^T X, sum_i R_i]``
    in the (K, n + 1) layout.

    Parameters
    ----------
    WVt : ndarray of shape (n, 2 K), float64
        ``[W^T, V^T]`` side by side (feature-major).
    bias, vbias : ndarray of shape (K,), float64
    work : ndarray of shape (>= L, >= 3 u K), float64
        Lane buffers: slots ``[W_j, V_j, G_j]``.

    Returns
    -------
    out : ndarray of shape (K * (n + 1),), float64
    """
    m = indptr.shape[0] - 1
    K = bias.shape[0]
    n = WVt.shape[0]
    lanes = bounds.shape[0] - 1
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, K))
    for lane in prange(lanes):
        _multi_hvp_lane(
            data,
            indices,
            indptr,
            s,
            WVt,
            bias,
            vbias,
            bounds[lane],
            bounds[lane + 1],
            work[lane],
            part,
            columns,
        )
    out = np.zeros(K * (n + 1))
    _reduce_lanes(work, lanes, K, n, 3 * K, 2 * K, out, columns)
    totals = _sum_rows(part)
    for q in range(K):
        out[q * (n + 1) + n] = totals[q]
    return out


@njit(**_SERIAL)
def _multi_hessian_diagonal_lane(
    data, indices, indptr, s, Wt, bias, start, stop, buf, part, columns
):
    K = bias.shape[0]
    S = 2 * K
    _fill_slots(buf, Wt, S, columns)
    Z = np.empty((K, BLOCK_ROWS))
    P = np.empty((K, BLOCK_ROWS))
    lse = np.empty(BLOCK_ROWS)
    tot = np.empty(BLOCK_ROWS)
    acc = np.empty(K)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        chunk = part[c0 // CHUNK_ROWS]
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            sb = s[i0 : i0 + nb]
            _gather_block_multi(data, indices, indptr, i0, nb, buf, S, K, Z, acc, True)
            _add_bias(Z, bias, nb)
            _softmax_block(Z, nb, P, lse, tot)
            for q in range(K):
                Pq = P[q]
                hq = 0.0
                for r in range(nb):
                    h = sb[r] * Pq[r] * (1.0 - Pq[r])
                    Pq[r] = h
                    hq += h
                chunk[q] += hq
            _scatter_block_multi(data, indices, indptr, i0, nb, P, buf, S, K, True, acc)


@njit(**_PARALLEL)
def multinomial_hessian_diagonal(data, indices, indptr, s, Wt, bias, bounds, work, columns):
    """Diagonal of the multinomial Hessian, in the (K, n + 1) layout.

    Entry ``(k, j)``: ``sum_i s_i P_ik (1 - P_ik) x_ij^2``; intercept entry
    ``(k, n)``: ``sum_i s_i P_ik (1 - P_ik)`` (the diagonals of the blocks
    ``H_kk``). ``work``: (>= L, >= 2 n K) lane buffers, slots ``[W_j, D_j]``.

    Returns
    -------
    out : ndarray of shape (K * (n + 1),), float64
    """
    m = indptr.shape[0] - 1
    n, K = Wt.shape
    lanes = bounds.shape[0] - 1
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, K))
    for lane in prange(lanes):
        _multi_hessian_diagonal_lane(
            data,
            indices,
            indptr,
            s,
            Wt,
            bias,
            bounds[lane],
            bounds[lane + 1],
            work[lane],
            part,
            columns,
        )
    out = np.zeros(K * (n + 1))
    _reduce_lanes(work, lanes, K, n, 2 * K, K, out, columns)
    totals = _sum_rows(part)
    for q in range(K):
        out[q * (n + 1) + n] = totals[q]
    return out


@njit(**_SERIAL)
def _multi_gram_weights_lane(
    data, indices, indptr, y, s, Wt, bias, start, stop, P, buf, part, columns
):
    K = bias.shape[0]
    S = 2 * K
    _fill_slots(buf, Wt, S, columns)
    Z = np.empty((K, BLOCK_ROWS))
    E = np.empty((K, BLOCK_ROWS))
    lse = np.empty(BLOCK_ROWS)
    tot = np.empty(BLOCK_ROWS)
    acc = np.empty(K)
    for c0 in range(start, stop, CHUNK_ROWS):
        c1 = min(c0 + CHUNK_ROWS, stop)
        chunk = part[c0 // CHUNK_ROWS]
        for i0 in range(c0, c1, BLOCK_ROWS):
            nb = min(BLOCK_ROWS, c1 - i0)
            yb = y[i0 : i0 + nb]
            sb = s[i0 : i0 + nb]
            _gather_block_multi(data, indices, indptr, i0, nb, buf, S, K, Z, acc, True)
            _add_bias(Z, bias, nb)
            _softmax_block(Z, nb, E, lse, tot)
            for r in range(nb):
                li = lse[r] - Z[yb[r], r]
                chunk[0] += sb[r] * li
                if li < CERTAIN_LOSS:
                    chunk[1] += sb[r]
                for q in range(K):
                    P[i0 + r, q] = E[q, r]
                E[yb[r], r] -= 1.0
            for q in range(K):
                Eq = E[q]
                gq = 0.0
                for r in range(nb):
                    rq = sb[r] * Eq[r]
                    Eq[r] = rq
                    gq += rq
                chunk[2 + q] += gq
            _scatter_block_multi(data, indices, indptr, i0, nb, E, buf, S, K, False, acc)


@njit(**_PARALLEL)
def multinomial_gram_weights(data, indices, indptr, y, s, Wt, bias, bounds, work, columns):
    """Probabilities and what inference needs besides the Hessian, in one pass.

    ``work``: (>= L, >= 2 n K) lane buffers, slots ``[W_j, G_j]``.

    Returns
    -------
    P : ndarray of shape (m, K), float64
        ``softmax(Z_i)`` per row (the Gram kernel's row weights come from it).
    stats : ndarray of shape (2 + K * (n + 1),), float64
        ``[loss, certain, gradient in the (K, n + 1) layout]`` (see
        :func:`binary_gram_weights`).
    """
    m = indptr.shape[0] - 1
    n, K = Wt.shape
    lanes = bounds.shape[0] - 1
    P = np.empty((m, K))
    part = np.zeros(((m + CHUNK_ROWS - 1) // CHUNK_ROWS, K + 2))
    for lane in prange(lanes):
        _multi_gram_weights_lane(
            data,
            indices,
            indptr,
            y,
            s,
            Wt,
            bias,
            bounds[lane],
            bounds[lane + 1],
            P,
            work[lane],
            part,
            columns,
        )
    stats = np.zeros(2 + K * (n + 1))
    _reduce_lanes(work, lanes, K, n, 2 * K, K, stats[2:], columns)
    totals = _sum_rows(part)
    stats[0] = totals[0]
    stats[1] = totals[1]
    for q in range(K):
        stats[2 + q * (n + 1) + n] = totals[2 + q]
    return P, stats


# -----------------------------------------------------------------------------
# Small-n Gram matrices A^T diag(h) A: owner-computes over column ranges.
# -----------------------------------------------------------------------------
@njit(**_INLINE)
def _first_at_least(indices, a, length, c0):
    """First ``t`` in ``[0, length)`` with ``indices[a + t] >= c0`` (``length`` if none)."""
    lo = uintp(0)
    hi = length
    while lo < hi:
        mid = (lo + hi) >> uintp(1)
        if np.int64(indices[a + mid]) < c0:
            lo = mid + uintp(1)
        else:
            hi = mid
    return lo


@njit(**_SERIAL)
def _binary_gram_part(data, indices, indptr, h, n, fit_intercept, c0, c1, H):
    """Rows ``[c0, c1)`` of the upper triangle of ``A^T diag(h) A``, over all rows of X in order."""
    m = indptr.shape[0] - 1
    owns_intercept = fit_intercept and c0 <= n < c1
    for i in range(m):
        hi = h[i]
        if hi == 0.0:
            continue  # zero-weight rows (masked CV folds) add nothing
        a, length = _row(indptr, i)
        t = _first_at_least(indices, a, length, c0)
        while t < length and np.int64(indices[a + t]) < c1:
            x1 = hi * np.float64(data[a + t])
            row = H[uintp(indices[a + t])]
            for u in range(t, length):
                k = a + u
                row[uintp(indices[k])] += x1 * np.float64(data[k])
            if fit_intercept:
                row[n] += x1
            t += uintp(1)
        if owns_intercept:
            H[n, n] += hi


@njit(**_PARALLEL)
def _mirror(H, K, d):
    """``H[q2 d + j2, q1 d + j1] = H[q1 d + j1, q2 d + j2]`` for all class pairs, ``j1 < j2``."""
    for row in prange(K * d):
        j2 = row % d
        for q1 in range(K):
            for j1 in range(j2):
                H[row, q1 * d + j1] = H[q1 * d + j1, row]


@njit(**_PARALLEL)
def binary_gram(data, indices, indptr, h, n, fit_intercept, parts):
    """``A^T diag(h) A`` with ``A = [X, 1]`` (``X`` without an intercept), exactly symmetric.

    Parameters
    ----------
    data, indices, indptr : the CSR arrays; indices sorted within rows
    h : ndarray of shape (m,), float64
        Row weights (:func:`binary_gram_weights`).
    n : int
    fit_intercept : bool
    parts : ndarray of shape (P + 1,), int64
        Column ranges owned by one task each (:func:`column_parts`); any
        partition of ``[0, n + fit_intercept)`` gives the same matrix.

    Returns
    -------
    H : ndarray of shape (d, d), float64, ``d = n + fit_intercept``
    """
    d = n + (1 if fit_intercept else 0)
    H = np.zeros((d, d))
    for p in prange(parts.shape[0] - 1):
        _binary_gram_part(data, indices, indptr, h, n, fit_intercept, parts[p], parts[p + 1], H)
    _mirror(H, 1, d)
    return H


@njit(**_INLINE)
def _pair_weights(Pi, yi, si, meat, hk):
    """``hk[q1, q2]``: ``s P_q1 (delta - P_q2)`` (Hessian) or ``s R_q1 R_q2`` (meat), symmetric."""
    K = Pi.shape[0]
    for q1 in range(K):
        for q2 in range(q1, K):
            if meat:
                r1 = Pi[q1] - (1.0 if q1 == yi else 0.0)
                r2 = Pi[q2] - (1.0 if q2 == yi else 0.0)
                v = si * r1 * r2
            else:
                v = si * Pi[q1] * ((1.0 if q1 == q2 else 0.0) - Pi[q2])
            hk[q1, q2] = v
            hk[q2, q1] = v


@njit(**_SERIAL)
def _multi_gram_part(data, indices, indptr, y, s, P, meat, n, fit_intercept, c0, c1, H):
    m = indptr.shape[0] - 1
    K = P.shape[1]
    d = n + (1 if fit_intercept else 0)
    owns_intercept = fit_intercept and c0 <= n < c1
    hk = np.empty((K, K))
    for i in range(m):
        if s[i] == 0.0:
            continue  # zero-weight rows (masked CV folds) add nothing
        a, length = _row(indptr, i)
        t0 = _first_at_least(indices, a, length, c0)
        t1 = t0
        while t1 < length and np.int64(indices[a + t1]) < c1:
            t1 += uintp(1)
        if t1 == t0 and not owns_intercept:
            continue
        _pair_weights(P[i], y[i], s[i], meat, hk)
        for t in range(t0, t1):
            j1 = uintp(indices[a + t])
            x1 = np.float64(data[a + t])
            for u in range(t, length):
                k = a + u
                j2 = uintp(indices[k])
                x = x1 * np.float64(data[k])
                for q1 in range(K):
                    row = H[q1 * d + j1]
                    for q2 in range(K):
                        row[q2 * d + j2] += hk[q1, q2] * x
            if fit_intercept:
                for q1 in range(K):
                    row = H[q1 * d + j1]
                    for q2 in range(K):
                        row[q2 * d + n] += hk[q1, q2] * x1
        if owns_intercept:
            for q1 in range(K):
                for q2 in range(K):
                    H[q1 * d + n, q2 * d + n] += hk[q1, q2]


@njit(**_PARALLEL)
def multinomial_gram(data, indices, indptr, y, s, P, meat, n, fit_intercept, parts):
    """The multinomial Hessian (or the meat) ``[A^T diag(h_kj) A]_kj``, exactly symmetric.

    ``h_kj = s P_k (delta_kj - P_j)`` (Hessian) or ``s R_k R_j`` with
    ``R = P - onehot(y)`` (meat); blocks in the parameter layout, index
    ``k * d + j`` with ``d = n + fit_intercept``.

    Parameters
    ----------
    y : ndarray of shape (m,), int32
    s : ndarray of shape (m,), float64
    P : ndarray of shape (m, K), float64
        Probabilities (:func:`multinomial_gram_weights`).
    meat : bool
    parts : ndarray of shape (P + 1,), int64
        As in :func:`binary_gram`.

    Returns
    -------
    H : ndarray of shape (K d, K d), float64
    """
    K = P.shape[1]
    d = n + (1 if fit_intercept else 0)
    H = np.zeros((K * d, K * d))
    for p in prange(parts.shape[0] - 1):
        _multi_gram_part(
            data, indices, indptr, y, s, P, meat, n, fit_intercept, parts[p], parts[p + 1], H
        )
    _mirror(H, K, d)
    return H
