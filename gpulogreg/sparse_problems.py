"""Generated sparse logistic problems that look like the real thing (the sparse benchmarks).

Two kinds, after issue 9's benchmark set:

* ``"ctr"``: hashed click logs. Each row holds ``per_row`` feature ids drawn
  from a Zipf popularity law over ranks (exponent :data:`CTR_ZIPF`), the ranks
  scattered over the ``n_features`` hash buckets by a fixed random permutation;
  values 1.0 (an id repeated in a row is stored once). Labels from a logistic
  model whose weights fall with popularity, with a negative intercept (a
  click rate of about 20 %).
* ``"text"``: bag of words. About ``per_row`` distinct words per row (a
  Poisson number of draws from a Zipf law over the vocabulary, exponent
  :data:`TEXT_ZIPF`), tf-idf values ``(1 + log tf) * idf`` with the rows
  L2-normalised; labels from a logistic model on a random tenth of the words.

Rows are drawn in blocks of :data:`BLOCK_ROWS`, each block from its own
stream (``SeedSequence(seed).spawn``), so the data are a function of the
arguments only, on every machine and for any thread count. The result is a
canonical ``scipy.sparse.csr_matrix`` (sorted, no duplicates, int32 indices).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError

__all__ = ["CTR_ZIPF", "KINDS", "TEXT_ZIPF", "make_sparse_problem"]

KINDS = ("ctr", "text")
#: Zipf exponent of the feature ids' popularity in click logs: the head ids
#: appear in most rows, most of the 2^20 buckets in a handful.
CTR_ZIPF = 1.1
#: Zipf exponent of word frequencies (Zipf's law for text is close to 1).
TEXT_ZIPF = 1.05
#: Rows per generated block (its own random stream).
BLOCK_ROWS = 16384


def make_sparse_problem(
    kind: str,
    n_rows: int,
    n_features: int,
    *,
    per_row: int,
    dtype: Any = "float64",
    seed: int = 0,
) -> tuple[Any, np.ndarray]:
    """Generated sparse binary logistic data.

    Parameters
    ----------
    kind : {"ctr", "text"}
    n_rows, n_features : int
    per_row : int
        Ids drawn per row ("ctr"; the stored values are a little fewer after
        repeated ids are merged) or the mean number of words ("text").
    dtype : {"float32", "float64"}
    seed : int

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_rows, n_features), canonical, ``dtype``
    y : ndarray of shape (n_rows,), int64 in {0, 1}
    """
    import scipy.sparse as sp

    if kind not in KINDS:
        raise InputValueError(f"kind must be one of {KINDS}, got {kind!r}")
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise InputValueError(f"dtype must be float32 or float64, got {dt}")
    if n_rows < 2 or n_features < 2 or per_row < 1:
        raise InputValueError(
            f"need at least 2 rows, 2 features and 1 id per row, got {n_rows} x {n_features}, "
            f"{per_row}"
        )
    root = np.random.SeedSequence(seed)
    rng = np.random.default_rng(root)
    buckets = rng.permutation(n_features)  # popularity rank -> feature id
    if kind == "ctr":
        # Weights fall with popularity: rare ids matter less (and are seen less).
        rank_scale = 1.0 / np.sqrt(1.0 + np.arange(n_features) / 100.0)
        coef = np.empty(n_features)
        coef[buckets] = rng.normal(size=n_features) * rank_scale
        intercept = -1.5
    else:
        coef = np.where(rng.random(n_features) < 0.1, 4.0 * rng.normal(size=n_features), 0.0)
        intercept = 0.0
    starts = range(0, n_rows, BLOCK_ROWS)
    blocks = []
    for start, stream in zip(starts, root.spawn(len(starts)), strict=True):
        block_rng = np.random.default_rng(stream)
        m = min(BLOCK_ROWS, n_rows - start)
        if kind == "ctr":
            counts = np.full(m, per_row)
            exponent = CTR_ZIPF
        else:
            counts = np.maximum(block_rng.poisson(per_row, size=m), 1)
            exponent = TEXT_ZIPF
        ids = _distinct_ids(block_rng, exponent, counts, buckets)
        rows = np.repeat(np.arange(m), counts)
        values = np.ones(rows.size) if kind == "ctr" else block_rng.geometric(0.7, rows.size)
        block = sp.csr_matrix((values, (rows, ids[ids >= 0])), shape=(m, n_features))
        blocks.append(block)
    X = sp.vstack(blocks, format="csr")
    X.sum_duplicates()
    if kind == "text":
        document_frequency = np.bincount(X.indices, minlength=n_features)
        idf = np.log((1.0 + n_rows) / (1.0 + document_frequency)) + 1.0
        X.data = (1.0 + np.log(X.data)) * idf[X.indices]
        norms = np.sqrt(np.add.reduceat(X.data**2, X.indptr[:-1])) if X.nnz else np.ones(0)
        X.data /= np.repeat(norms, np.diff(X.indptr))
    logits = X @ coef + intercept
    if kind == "text":
        logits = (logits - logits.mean()) * (2.0 / max(float(logits.std()), 1e-12))
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int64)
    if y.min() == y.max():  # a degenerate tiny draw: make both classes present
        y[0], y[-1] = 0, 1
    X = sp.csr_matrix(
        (X.data.astype(dt), X.indices.astype(np.int32), X.indptr.astype(np.int32)),
        shape=X.shape,
    )
    return X, y


#: Candidates drawn per wanted id: enough for the Zipf head's repeats (a row
#: that still has too few distinct ids after them keeps fewer).
_CANDIDATES_PER_ID = 3


def _distinct_ids(
    rng: np.random.Generator, exponent: float, counts: np.ndarray, buckets: np.ndarray
) -> np.ndarray:
    """The first ``counts[i]`` distinct Zipf-drawn feature ids of each row, in draw order.

    Returns an array of shape (rows, max(counts)) flattened row by row with
    ``-1`` past each row's count (the caller keeps the ``>= 0`` entries), so
    that ``counts`` is updated in place to the ids found.
    """
    m, width = counts.shape[0], int(counts.max())
    c = _CANDIDATES_PER_ID * width
    candidates = buckets[_zipf_ranks(rng, exponent, m * c, buckets.shape[0])].reshape(m, c)
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeat = np.zeros((m, c), dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]  # not the first draw of its id
    first = np.empty((m, c), dtype=bool)
    np.put_along_axis(first, order, ~repeat, axis=1)
    kept = first & (np.cumsum(first, axis=1) <= counts[:, None])
    counts[:] = kept.sum(axis=1)
    out = np.full((m, width), -1, dtype=np.int64)
    position = np.cumsum(kept, axis=1) - 1
    rows, cols = np.nonzero(kept)
    out[rows, position[rows, cols]] = candidates[rows, cols]
    return out.ravel()


def _zipf_ranks(rng: np.random.Generator, exponent: float, size: int, n: int) -> np.ndarray:
    """``size`` ranks in ``[0, n)`` drawn with probability proportional to ``(1 + rank)^-exponent``.

    By inverting the cumulative distribution of the truncated law (a search in
    its table), so that every rank is possible and none falls outside.
    """
    weights = (1.0 + np.arange(n)) ** -exponent
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    ranks = np.searchsorted(cumulative, rng.random(size), side="right")
    return np.minimum(ranks, n - 1)
