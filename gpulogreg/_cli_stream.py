"""The command line in bounded memory: the memory budget, files as Datasets, streamed metrics.

``gpulogreg fit`` reads its data whole when that fits the memory budget, and
otherwise trains on a :class:`gpulogreg.Dataset` that reads the file a chunk
at a time on every pass (the full-batch solvers see the exact objective, so
the model is the in-memory one up to rounding). ``predict`` and ``evaluate``
need one pass, so they always read by chunks, whatever the size.

The budget
----------
``--memory-budget SIZE`` (``500M``, ``2G``: powers of 1024), by default
:data:`DEFAULT_BUDGET_FRACTION` of the memory available when the command
starts (:func:`available_memory`). It is the memory the data may take; the
interpreter, NumPy, Numba's compiled kernels and pyarrow take 300-400 MB
besides. A file read whole is estimated to take :data:`IN_MEMORY_FACTOR`
times the bytes of its features (rows x features x itemsize, from the
file's metadata: :func:`gpulogreg.io.estimate_size`). A streamed command
holds about :data:`STREAM_FACTOR` chunks' worth of ``X`` (the reader's
buffers, the chunk being converted, the chunks in flight), so its chunks are
sized to a tenth of the budget, at most :data:`STREAM_CHUNK_BYTES`.

Sparse files
------------
svmlight files and ``scipy.sparse.save_npz`` archives are read as CSR
matrices, never densified. ``fit`` sizes them exactly first (an svmlight
file by one structural pass, :func:`gpulogreg.io.svmlight_survey`, which also
settles the width and the index base; an archive by its headers): read whole,
they take :data:`SPARSE_IN_MEMORY_FACTOR` times their CSR bytes; over the
budget they stream as CSR chunks like any other file. ``predict`` and
``evaluate`` size svmlight chunks by the text's bytes per line
(:data:`SVMLIGHT_CSR_PER_TEXT`: a byte of text is at most that many bytes of
CSR).

What cannot stream
------------------
Dense ``.npz`` files are unzipped whole (their rows are not laid out to be
read in ranges), and standard input is read whole by ``fit`` (the solvers
read the data many times; a pipe can be read once). These are read whole
even when over the budget, with a warning on stderr: refusing would leave no
way to train on them at all, and the budget is a default fraction of the
memory, not a hard limit.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpulogreg import io
from gpulogreg.data import check_sample_weight, encode_labels
from gpulogreg.data.dataset import Dataset
from gpulogreg.data.sparse import index_dtype

__all__ = [
    "DEFAULT_BUDGET_FRACTION",
    "IN_MEMORY_FACTOR",
    "STREAM_CHUNK_BYTES",
    "STREAM_FACTOR",
    "MetricsAccumulator",
    "TrainingData",
    "available_memory",
    "csr_bytes",
    "default_budget",
    "load_training_data",
    "parse_size",
    "rows_per_chunk",
    "scoring_row_bytes",
    "stream_chunk_rows",
]

#: Share of the available memory that is the default budget: the other half
#: is left to the rest of the machine (and to the estimate's errors).
DEFAULT_BUDGET_FRACTION = 0.5
#: Budget when the available memory cannot be found (no /proc/meminfo, no psutil).
FALLBACK_BUDGET = 2 * 2**30
#: Peak memory of a fit on a file read whole, in multiples of its features'
#: bytes (measured on 1,000,000 x 50 float32 Parquet files, less the 375 MB of
#: a fit on a tiny file: 2.9x written without dictionaries, 3.8x with them;
#: the reader's Arrow table and ``X`` coexist while it converts).
IN_MEMORY_FACTOR = 4
#: Peak memory of a streamed command, in chunks of ``X`` (measured on the same
#: files: 8-10x at 33 MB and 13 MB chunks; the reader's buffers per column,
#: the Arrow batch and its conversion, and the read-ahead chunks).
STREAM_FACTOR = 10
#: Most bytes of ``X`` per streamed chunk (84,000 rows of 50 float32 values;
#: larger chunks are no faster once a pass costs a file read and decode).
STREAM_CHUNK_BYTES = 16 * 2**20
#: Fewest rows per streamed chunk (very wide data or a tiny budget).
MIN_CHUNK_ROWS = 1024
#: Peak memory of a fit on a sparse file read whole, in multiples of its CSR
#: bytes: the parsed blocks and the joined matrix coexist while they are
#: joined, then the backend's work arrays (measured: a 100,000-row svmlight
#: file of 3,950,000 values over 1,000,000 features, 47.8 MB of CSR, peaked
#: 93 MB above a 2,000-row file of the same width, 1.95x; 3 leaves a margin).
SPARSE_IN_MEMORY_FACTOR = 3
#: The most bytes of CSR one byte of svmlight text becomes: the shortest pair,
#: ``"1:1 "``, is 4 bytes of text and 12 of CSR (a float64 value, an int32 index).
SVMLIGHT_CSR_PER_TEXT = 3
#: Positives per block of ROC AUC's binary searches (8 MB of int64 counts).
_AUC_BLOCK = 1 << 20
#: A cgroup memory limit at least this large means "no limit" (cgroup v1 says 2**63 - 4096).
_UNLIMITED = 2**60
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


# --------------------------------------------------------------------------- the budget
def parse_size(text: str) -> int:
    """Bytes of a size such as ``500M``, ``2G``, ``1.5GiB`` or ``800000`` (K, M, G, T: 1024^n).

    Raises
    ------
    ValueError
        Not a size, or not positive.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a size such as 500M or 2G, got {text!r}")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 1:
        raise ValueError(f"expected a positive size, got {text!r}")
    return size


def available_memory() -> int | None:
    """Bytes of memory this process can still get, or None when nothing says.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, bounded by the headroom of
    the process's cgroup (its memory limit less its usage, cgroup v2 or v1),
    which is what a container is allowed, whatever the host has. Elsewhere:
    psutil's ``virtual_memory().available`` when psutil is installed.
    """
    known = [m for m in (_meminfo_available(), _cgroup_headroom()) if m is not None]
    if known:
        return min(known)
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def default_budget() -> int:
    """:data:`DEFAULT_BUDGET_FRACTION` of :func:`available_memory` (or :data:`FALLBACK_BUDGET`)."""
    available = available_memory()
    if available is None:
        return FALLBACK_BUDGET
    return max(1, int(available * DEFAULT_BUDGET_FRACTION))


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """The memory limit of this process's cgroup less its usage (None: no limit)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            files = ("/sys/fs/cgroup", "memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            files = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        headroom = _headroom(files, path)
        if headroom is not None:
            return headroom
    return None


def _headroom(files: tuple[str, str, str], path: str) -> int | None:
    """Limit less usage in the cgroup's directory (or the mount's root, inside a container)."""
    mount, limit_file, usage_file = files
    for directory in (mount + path.rstrip("/"), mount):
        try:
            with open(os.path.join(directory, limit_file)) as f:
                limit_text = f.read().strip()
            with open(os.path.join(directory, usage_file)) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= _UNLIMITED:
            return None
        return max(0, int(limit_text) - usage)
    return None


def stream_chunk_rows(n_features: int, itemsize: int, budget: int) -> int:
    """Rows per streamed chunk: ``budget / STREAM_FACTOR`` of X, at most STREAM_CHUNK_BYTES."""
    return rows_per_chunk(n_features * itemsize, budget)


def rows_per_chunk(row_bytes: float, budget: int) -> int:
    """Rows per streamed chunk of rows of ``row_bytes`` each (dense or CSR), as above."""
    chunk_bytes = min(STREAM_CHUNK_BYTES, budget // STREAM_FACTOR)
    return max(MIN_CHUNK_ROWS, int(chunk_bytes // max(1.0, row_bytes)))


def csr_bytes(n_rows: int, nnz: int, n_features: int, itemsize: int) -> int:
    """Bytes of a canonical CSR matrix: values, indices and row pointers (int32 or int64)."""
    index = index_dtype(nnz, n_features).itemsize
    return nnz * (itemsize + index) + (n_rows + 1) * index


def scoring_row_bytes(path: str, fmt: str, itemsize: int) -> float | None:
    """Bytes of one row of X when ``predict`` or ``evaluate`` reads a sparse file, or None.

    svmlight: at most :data:`SVMLIGHT_CSR_PER_TEXT` times the text's bytes per
    line (from its first MiB); a ``save_npz`` archive: its average CSR row.
    None for dense formats (a row is ``n_features`` values).
    """
    if fmt == "svmlight":
        return SVMLIGHT_CSR_PER_TEXT * io.line_bytes(path)
    if fmt == "npz" and path != io.STDIO and io.is_sparse_npz(path):
        header = io.sparse_npz_header(path)
        total = csr_bytes(header.n_rows, header.nnz, header.n_features, itemsize)
        return total / max(header.n_rows, 1)
    return None


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError  # pragma: no cover


# --------------------------------------------------------------------------- fit data
@dataclass
class TrainingData:
    """What ``fit`` trains on: the file read whole (``table``) or streamed (``dataset``).

    Attributes
    ----------
    table : gpulogreg.io.Table or None
    dataset : gpulogreg.Dataset or None
        Scanned (validated, counted) already.
    chunk_rows : int or None
        Rows per chunk of the dataset.
    note : str
        Why the data are streamed, for stderr ("" when read whole).
    """

    table: io.Table | None = None
    dataset: Dataset | None = None
    chunk_rows: int | None = None
    note: str = ""
    source: _FileChunks | None = field(default=None, repr=False)
    #: The reading options the streamed reads settled (svmlight: the index base).
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def streamed(self) -> bool:
        return self.dataset is not None

    def fit_args(self) -> tuple[Any, Any, Any]:
        """The data arguments of ``fit`` and ``inference``.

        ``(X, y, sample_weight)`` of the table, or ``(dataset, None, None)``:
        a Dataset's chunks carry their labels and weights.
        """
        if self.dataset is not None:
            return self.dataset, None, None
        table = self._table()
        return table.X, table.y, table.weights

    @property
    def feature_names(self) -> list[str]:
        if self.source is not None:
            return list(self.source.feature_names)
        return list(self._table().feature_names)

    @property
    def reading_options(self) -> dict[str, Any]:
        return dict(self.options if self.table is None else self.table.reading_options)

    @property
    def n_rows(self) -> int:
        return self.dataset.n_samples if self.dataset is not None else self._table().n_rows

    @property
    def n_features(self) -> int:
        return self.dataset.n_features if self.dataset is not None else self._table().X.shape[1]

    @property
    def dtype(self) -> np.dtype[Any]:
        if self.dataset is not None:
            return self.dataset.info().dtype
        return self._table().X.dtype

    def _table(self) -> io.Table:
        assert self.table is not None, "streamed data have no table"
        return self.table


class _FileChunks:
    """A data file's chunks as a Dataset reads them: one ``iter_batches`` pass per call.

    Remembers the feature names the reader resolved (known after the first chunk).
    """

    def __init__(self, path: str, read: dict[str, Any]) -> None:
        self.path = path
        self.read = read
        self.feature_names: list[str] = []

    def __call__(self) -> Iterator[tuple[Any, ...]]:
        for table in io.iter_batches(self.path, **self.read):
            if table.y is None:
                raise io.DataError(f"{self.path}: no labels; name the target column with --target")
            self.feature_names = table.feature_names
            yield table.X, table.y, table.weights


def load_training_data(
    path: str,
    fmt: str,
    *,
    budget: int,
    chunk_rows: int | None,
    read: dict[str, Any],
) -> TrainingData:
    """The training data of ``fit``: read whole when they fit ``budget``, else a scanned Dataset.

    Parameters
    ----------
    path : str
        The data file, or ``"-"`` (standard input: always read whole).
    fmt : str
        Its format (:func:`gpulogreg.io.detect_format`).
    budget : int
        Bytes the data may take.
    chunk_rows : int, optional
        Stream in chunks of this many rows, whatever the size.
    read : dict
        Keyword arguments of :func:`gpulogreg.io.read_data` (target,
        features, id_column, weight_column, dtype, format, zero_based,
        delimiter).

    Warns
    -----
    UserWarning
        The file is over the budget (or ``chunk_rows`` was given) but its
        format cannot be streamed: it is read whole.
    """
    if fmt == "svmlight" and path != io.STDIO:
        return _load_svmlight(path, budget=budget, chunk_rows=chunk_rows, read=read)
    if fmt == "npz" and path != io.STDIO and io.is_sparse_npz(path):
        header = io.sparse_npz_header(path)
        itemsize = np.dtype(read.get("dtype") or np.float64).itemsize
        size = csr_bytes(header.n_rows, header.nnz, header.n_features, itemsize)
        return _load_sparse(
            path, fmt, size, header.n_rows, budget=budget, chunk_rows=chunk_rows, read=read
        )
    roles = (read.get("target"), read.get("id_column"), read.get("weight_column"))
    estimate = io.estimate_size(
        path,
        format=fmt,
        features=read.get("features"),
        exclude=[c for c in roles if c is not None],
        delimiter=read.get("delimiter"),
    )
    if estimate is None:
        _warn_if_over(path, fmt, budget, forced=chunk_rows is not None)
        return TrainingData(table=io.read_data(path, **read))
    itemsize = np.dtype(read["dtype"]).itemsize if read.get("dtype") else estimate.itemsize
    in_memory = estimate.rows * estimate.features * itemsize * IN_MEMORY_FACTOR
    if chunk_rows is None and in_memory <= budget:
        return TrainingData(table=io.read_data(path, **read))
    rows = chunk_rows or stream_chunk_rows(estimate.features, itemsize, budget)
    note = ""
    if chunk_rows is None:
        about = "" if estimate.exact else "about "
        note = (
            f"{path}: streaming in chunks of {rows:,} rows (read whole it would take "
            f"{about}{_size(in_memory)}, over the memory budget of {_size(budget)})"
        )
    chunks = _FileChunks(path, {**read, "chunk_rows": rows})
    dataset = Dataset(chunks, description=f"{path} ({fmt})")
    dataset.scan(read.get("dtype"))
    return TrainingData(dataset=dataset, chunk_rows=rows, note=note, source=chunks)


def _load_svmlight(
    path: str, *, budget: int, chunk_rows: int | None, read: dict[str, Any]
) -> TrainingData:
    """An svmlight file: sized, its width and index base settled, by one structural pass."""
    found = io.svmlight_survey(path)
    base = found.zero_based(read.get("zero_based", "auto"))
    width = read.get("n_features") or found.width(base)
    itemsize = np.dtype(read.get("dtype") or np.float64).itemsize
    size = csr_bytes(found.n_rows, found.nnz, width, itemsize)
    settled = {**read, "zero_based": base, "n_features": width}
    return _load_sparse(
        path, "svmlight", size, found.n_rows, budget=budget, chunk_rows=chunk_rows, read=settled
    )


def _load_sparse(
    path: str,
    fmt: str,
    size: int,
    n_rows: int,
    *,
    budget: int,
    chunk_rows: int | None,
    read: dict[str, Any],
) -> TrainingData:
    """A sparse file of ``size`` CSR bytes: read whole when it fits ``budget``, else streamed."""
    in_memory = size * SPARSE_IN_MEMORY_FACTOR
    if chunk_rows is None and in_memory <= budget:
        return TrainingData(table=io.read_data(path, **read))
    rows = chunk_rows or rows_per_chunk(size / max(n_rows, 1), budget)
    note = ""
    if chunk_rows is None:
        note = (
            f"{path}: streaming in chunks of {rows:,} rows (read whole it would take "
            f"{_size(in_memory)}, over the memory budget of {_size(budget)})"
        )
    chunks = _FileChunks(path, {**read, "chunk_rows": rows})
    dataset = Dataset(chunks, description=f"{path} ({fmt})")
    dataset.scan(read.get("dtype"))
    options = {"zero_based": read["zero_based"]} if fmt == "svmlight" else {}
    return TrainingData(dataset=dataset, chunk_rows=rows, note=note, source=chunks, options=options)


def _warn_if_over(path: str, fmt: str, budget: int, *, forced: bool) -> None:
    what = "standard input" if path == io.STDIO else f"{fmt} files"
    if forced:
        warnings.warn(f"{what} cannot be streamed: reading {path} whole", stacklevel=3)
        return
    if path == io.STDIO:
        return
    # Unzipped whole: at least the file's size times the factor.
    size = os.path.getsize(path) * IN_MEMORY_FACTOR
    if size > budget:
        warnings.warn(
            f"{what} cannot be streamed: reading {path} whole (it may take over "
            f"{_size(size)}, more than the memory budget of {_size(budget)})",
            stacklevel=3,
        )


# --------------------------------------------------------------------------- metrics
class MetricsAccumulator:
    """Log loss, accuracy, ROC AUC and confusion counts, added up chunk by chunk.

    Log loss, accuracy and the confusion counts are running sums. ROC AUC
    ranks every row's score, so the scores are kept: the positive class's
    probability (binary, 8 bytes per row) or every class's (``n_classes x 8``
    bytes per row), the label's index (1-4 bytes) and, when the rows are
    weighted, the weight (8 bytes): 45 MB for 5,000,000 binary rows, where
    the features were 1 GB. With sample weights every metric is weighted as
    scikit-learn's ``sample_weight`` weights it (a row of weight 2 counts as
    two rows); every chunk has them, or none.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        The model's classes, in its order.
    """

    def __init__(self, classes: Any) -> None:
        self.classes = np.asarray(classes)
        k = len(self.classes)
        self.rows = 0
        self.weight_sum = 0.0
        self.neg_log_sum = 0.0
        self.correct = 0.0
        self.confusion = np.zeros((k, k))
        self.weighted: bool | None = None
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._index_dtype = np.min_scalar_type(max(k - 1, 0))

    def add(
        self, y: Any, proba: np.ndarray, predicted: Any, sample_weight: Any = None
    ) -> np.ndarray:
        """Count one chunk: labels, ``predict_proba`` (columns in class order), ``predict``.

        Returns
        -------
        ndarray of shape (n_rows,)
            The labels' indices in ``classes`` (e.g. for the ROC curves of ``evaluate --plot``).
        """
        if self.weighted is None:
            self.weighted = sample_weight is not None
        elif self.weighted != (sample_weight is not None):
            raise ValueError("sample weights must be given with every chunk or with none")
        _, y_index = encode_labels(y, classes=self.classes)
        _, pred_index = encode_labels(predicted, classes=self.classes)
        n, k = proba.shape
        weight = None if sample_weight is None else check_sample_weight(sample_weight, n)
        eps = np.finfo(proba.dtype).eps
        log_p = np.log(np.clip(proba[np.arange(n), y_index], eps, 1 - eps))
        right = y_index == pred_index
        if weight is None:
            self.weight_sum += n
            self.neg_log_sum -= float(np.sum(log_p))
            self.correct += int(np.sum(right))
            np.add.at(self.confusion, (y_index, pred_index), 1)
        else:
            self.weight_sum += float(weight.sum())
            self.neg_log_sum -= float(np.sum(weight * log_p))
            self.correct += float(np.sum(weight * right))
            np.add.at(self.confusion, (y_index, pred_index), weight)
            self._weights.append(weight)
        self.rows += n
        scores = proba[:, 1] if k == 2 else proba
        self._scores.append(np.array(scores, dtype=np.float64))
        self._labels.append(y_index.astype(self._index_dtype))
        return y_index

    def result(self) -> dict[str, Any]:
        """The metrics of every row added (see :func:`gpulogreg.cli.evaluate_predictions`)."""
        if self.rows == 0:
            raise io.DataError("no rows to evaluate")
        labels = np.concatenate(self._labels)
        scores = np.concatenate(self._scores)
        weight = np.concatenate(self._weights) if self.weighted else None
        # The chunks' copies can go.
        self._labels, self._scores = [labels], [scores]
        self._weights = [] if weight is None else [weight]
        k = len(self.classes)
        if k == 2:
            auc = _roc_auc(labels == 1, scores, weight)
        else:
            per_class = [_roc_auc(labels == j, scores[:, j], weight) for j in range(k)]
            known = [a for a in per_class if a is not None]
            auc = float(np.mean(known)) if len(known) == k else None
        confusion = self.confusion if self.weighted else self.confusion.astype(np.int64)
        return {
            "rows": self.rows,
            "weight_sum": float(self.weight_sum),
            "log_loss": self.neg_log_sum / self.weight_sum,
            "accuracy": self.correct / self.weight_sum,
            "roc_auc": auc,
            "confusion": {"labels": self.classes.tolist(), "matrix": confusion.tolist()},
        }


def _roc_auc(
    positive: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None
) -> float | None:
    """Area under the ROC curve: the (weighted) share of (positive, negative) pairs ranked right.

    A pair with tied scores counts one half (Mann-Whitney's U over n_pos x
    n_neg when unweighted). The negatives' scores are sorted (with their
    cumulative weights), and every positive finds the negatives below it and
    those not above it by binary search, in blocks: the temporaries are the
    sorted copies, not the order, rank and tie-run arrays of a rank sum.
    Unweighted, the counts are exact integers. None when a class has no
    weight (or no row).
    """
    negative = ~positive
    pos = score[positive]
    if weight is None:
        neg = np.sort(score[negative])
        cumulative = None
        pos_weight = None
        total_pos, total_neg = float(pos.size), float(neg.size)
    else:
        order = np.argsort(score[negative], kind="stable")
        neg = score[negative][order]
        # cumulative[i]: the weight of the i lowest-scored negatives.
        cumulative = np.concatenate([[0.0], np.cumsum(weight[negative][order])])
        pos_weight = weight[positive]
        total_pos, total_neg = float(pos_weight.sum()), float(cumulative[-1])
    if total_pos == 0 or total_neg == 0:
        return None
    pairs = 0.0  # twice the weight of the pairs ranked right, ties once
    for start in range(0, pos.size, _AUC_BLOCK):
        block = slice(start, start + _AUC_BLOCK)
        below = np.searchsorted(neg, pos[block], side="left")
        not_above = np.searchsorted(neg, pos[block], side="right")
        if cumulative is None:
            pairs += int(below.sum()) + int(not_above.sum())
        else:
            assert pos_weight is not None
            pairs += float(pos_weight[block] @ (cumulative[below] + cumulative[not_above]))
    return pairs / (2.0 * total_pos * total_neg)
