"""The data layer's one Numba kernel: a parallel float64 sum that proves ``X`` finite.

NaN and infinity propagate through a sum, so a finite sum of all entries
proves every entry finite, in one parallel read of ``X`` and without an
``X``-sized boolean temporary. Only a non-finite (or overflowing) sum makes
the caller search for the entry. The rows are summed over fixed chunks, in
chunk order, so the value does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["finite_sum"]

#: Rows per chunk of the parallel sum: a constant, so the partial sums (and the
#: result) do not depend on the thread count; 4096 rows give hundreds of chunks
#: to balance at a million rows.
SUM_CHUNK_ROWS = 4096


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def finite_sum(X):
    """Sum of all entries of a C-contiguous float32/float64 ``X``, accumulated in float64.

    Parameters
    ----------
    X : ndarray of shape (m, n), float32 or float64, C-contiguous

    Returns
    -------
    float
    """
    m, n = X.shape
    flat = X.reshape(m * n)  # a view: X is C-contiguous
    n_chunks = (m + SUM_CHUNK_ROWS - 1) // SUM_CHUNK_ROWS
    part = np.zeros(n_chunks)
    for c in prange(n_chunks):
        # One long loop over the chunk's contiguous entries: the compiler
        # vectorises it with several accumulators (a loop per row of only n
        # entries ends in a horizontal sum per row: 1.5x slower, measured).
        total = 0.0
        for k in range(c * SUM_CHUNK_ROWS * n, min((c + 1) * SUM_CHUNK_ROWS, m) * n):
            total += flat[k]
        part[c] = total
    result = 0.0
    for c in range(n_chunks):
        result += part[c]
    return result
