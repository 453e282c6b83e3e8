"""The backend protocol over Dask arrays: per-block kernels on the workers, sums on the client.

Users who outgrow one machine keep ``X`` (NumPy or CuPy chunks), ``y`` and the
sample weights in Dask arrays on a Dask cluster. ``X`` is split in row blocks
(one column chunk) that stay on the workers, persisted once; every protocol
method is a sum over blocks of the same method of an *inner* backend that each
block builds where it lives (:func:`_block_call`), so
the fused Numba kernels (NumPy chunks) or our CUDA kernels (CuPy chunks) do
the work. With the weights normalised over the whole data
(``s_i = w_i c_{y_i} / W``) the weighted mean loss is additive over blocks::

    loss = sum_b loss_b,  grad = sum_b grad_b,  H = sum_b H_b, ...

(:class:`~gpulogreg.backends.sum_of_parts.SumOfParts`, shared with the chunked
backend for data on disk). Per evaluation only the parameter vector travels to the workers (one
graph key, shared by all blocks) and each block sends back a float and a
vector (``hessian`` and ``meat``: a ``p x p`` matrix; ``cluster_scores``: an
``n_groups x p`` matrix, for which each block's task also carries its slice
of the group indices). The client adds the block results in
block order whatever order they finish in, so a fit is reproducible run to
run and independent of the scheduler. Parameters and gradients stay NumPy on
the client (``xp`` is NumPy): the solvers run unchanged.

Distribution is Dask's own: ``dask.persist`` and ``dask.compute`` over
``dask.delayed`` block tasks, which run on the active scheduler (threads,
processes, or the ``distributed.Client`` in use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name, array_namespace, is_sparse, to_host
from gpulogreg._errors import InputValueError
from gpulogreg._layout import ParamLayout
from gpulogreg._typing import Array
from gpulogreg.backends._registry import get_backend_class
from gpulogreg.backends.sum_of_parts import SumOfParts
from gpulogreg.data.dask import _as_row_blocks, _known_rows
from gpulogreg.data.validation import _first_nonfinite, _nonfinite_message

__all__ = ["DaskBackend", "chunk_module", "decision_blocks", "place_blocks", "take_classes"]


def chunk_module(a: Any) -> str:
    """Array library of a Dask array's chunks: ``"cupy"`` or ``"numpy"``."""
    return array_module_name(a._meta)


def place_blocks(
    X: Any, y: Any, sample_weight: Any, device: str, *, move: Callable[[Any, str], Any]
) -> tuple[Any, Any, Any]:
    """Move the blocks of Dask arrays to ``device`` ("cpu" or "gpu") once, where they live.

    Blocks already there are left alone; otherwise every block is converted on
    its worker by ``move(block, device)`` (the registry's ``to_device``:
    ``cupy.asarray`` or ``.get()``) and the result persisted, so the move
    happens once per fit, not once per evaluation.
    """
    import dask

    rows = X.chunks[0]
    arrays = (X, _as_row_blocks(y, rows, "y"), _as_row_blocks(sample_weight, rows, "sample_weight"))
    placed = [(chunk_module(a) == "cupy") == (device == "gpu") for a in arrays]
    if all(placed):
        return arrays
    moved = [
        a if there else a.map_blocks(move, device, meta=move(a._meta, device))
        for a, there in zip(arrays, placed, strict=True)
    ]
    X, y, sample_weight = dask.persist(*moved)
    return X, y, sample_weight


class DaskBackend(SumOfParts):
    """Sums over the row blocks of Dask arrays of inner backends built on the workers.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), float32 or float64
        Validated features (see :func:`gpulogreg.data.prepare_fit_data`): one
        column chunk, C-contiguous NumPy or CuPy blocks.
    y : array of shape (n_samples,), int32
        Class indices; a Dask array with the row chunks of ``X`` (anything
        else is wrapped with those chunks).
    sample_weight : array of shape (n_samples,), float64
        Non-negative weights summing to one, chunked like ``y``.
    n_classes : int
        2 selects the binary (sigmoid) loss, more the multinomial (softmax) loss.
    fit_intercept : bool

    Attributes
    ----------
    device : {"cpu", "gpu"}
        Where the blocks are computed on (CuPy chunks: the workers' GPUs).
    n_blocks : int
    """

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int = 2,
        fit_intercept: bool = True,
    ) -> None:
        import dask

        if array_module_name(X) != "dask" or X.ndim != 2:
            raise TypeError("the dask backend needs a 2-D Dask array X")
        X = _known_rows(X)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        rows = X.chunks[0]
        y = _as_row_blocks(y, rows, "y")
        sample_weight = _as_row_blocks(sample_weight, rows, "sample_weight")
        # Computed once, held by the workers: evaluations never rerun the graph.
        self.X, self.y, self.sample_weight = dask.persist(X, y, sample_weight)
        self.xp: ModuleType = np
        self.dtype = np.dtype(X.dtype)
        self.n_samples, self.n_features = (int(d) for d in X.shape)
        self.n_classes = int(n_classes)
        self.layout = ParamLayout.for_classes(self.n_features, self.n_classes, fit_intercept)
        self.device = "gpu" if chunk_module(self.X) == "cupy" else "cpu"
        #: CSR blocks (validated canonical, see gpulogreg.data.dask) or dense ones.
        self.format = "csr" if is_sparse(self.X._meta) else "dense"
        self.name = f"dask({'cupy' if self.device == 'gpu' else 'numba'})"
        offsets = np.cumsum((0, *rows)).tolist()
        blocks = zip(
            self.X.to_delayed().ravel(),
            self.y.to_delayed(),
            self.sample_weight.to_delayed(),
            offsets[:-1],
            offsets[1:],
            strict=True,
        )
        # Empty blocks add nothing (and some kernels want at least one row).
        kept = [(Xb, yb, sb, slice(a, b)) for Xb, yb, sb, a, b in blocks if b > a]
        self._blocks = [block[:3] for block in kept]
        #: Each kept block's rows in the whole data (its slice of per-row arrays).
        self._block_rows = [block[3] for block in kept]
        self.n_blocks = len(self._blocks)

    def map_parts(self, method: str, *vectors: Array) -> Sequence[Any]:
        """``method(*vectors)`` of every block's inner backend, in block order."""
        import dask

        # One graph key per vector: sent to the workers once, shared by all blocks.
        shared = [dask.delayed(np.asarray(v, dtype=np.float64)) for v in vectors]
        return self._compute(method, [shared] * self.n_blocks)

    def map_parts_with_rows(
        self, method: str, params: Array, rows: Array, *options: Any
    ) -> Sequence[Any]:
        """Each block's ``method(params, its slice of rows, *options)``, in block order.

        ``rows`` is a NumPy array on the client (the parameters' namespace);
        each block's slice travels with its task, and CuPy blocks move it to
        their device.
        """
        import dask

        shared = dask.delayed(np.asarray(params, dtype=np.float64))
        rows = np.asarray(rows)
        return self._compute(method, [[shared, rows[r]] for r in self._block_rows], options)

    def _compute(
        self, method: str, arguments: Sequence[Sequence[Any]], options: tuple[Any, ...] = ()
    ) -> Sequence[Any]:
        """``method(*arguments[b], *options)`` of block ``b``'s inner backend, for every block.

        The results come back in block order, whatever order they finish in.
        """
        import dask

        call = dask.delayed(_block_call)
        tasks = [
            call(method, Xb, yb, sb, self.n_classes, self.fit_intercept, *args, options=options)
            for (Xb, yb, sb), args in zip(self._blocks, arguments, strict=True)
        ]
        results: Sequence[Any] = dask.compute(*tasks)
        return results

    def decision(self, params: Array, X: Array) -> Array:
        """Decision values; lazy (a Dask array) for a Dask ``X``."""
        coef, intercept = self.layout.to_estimator(params)
        if array_module_name(X) == "dask":
            return decision_blocks(X, coef, intercept)
        return _block_decision(X, coef, intercept)


def _block_call(
    method: str,
    X: Array,
    y: Array,
    sample_weight: Array,
    n_classes: int,
    fit_intercept: bool,
    *vectors: np.ndarray,
    options: tuple[Any, ...] = (),
) -> Any:
    """Run ``method(*vectors, *options)`` of an inner backend built on one block (on a worker).

    The inner backend is chosen from the block, which is already where it is
    computed on: Numba kernels for NumPy blocks, the CUDA kernels for CuPy
    blocks; the vectors move to the block's namespace, the options are passed
    as they are. Results come back as NumPy.
    """
    name = "cupy" if array_module_name(X) == "cupy" else "numba"
    cls = get_backend_class(name, sparse=is_sparse(X))
    inner: Any = cls(X, y, sample_weight, n_classes=n_classes, fit_intercept=fit_intercept)
    out = getattr(inner, method)(*(inner.xp.asarray(v) for v in vectors), *options)
    if isinstance(out, tuple):
        return tuple(to_host(o) for o in out)
    return to_host(out)


# --------------------------------------------------------------------------- prediction
def decision_blocks(X: Any, coef: np.ndarray, intercept: np.ndarray, *, name: str = "X") -> Any:
    """Lazy decision values ``X @ coef.T + intercept`` of a Dask ``X``, block by block.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        One column chunk (see :func:`gpulogreg.data.check_X` with ``lazy=True``).
    coef : ndarray of shape (n_outputs, n_features)
    intercept : ndarray of shape (n_outputs,)

    Returns
    -------
    dask.array.Array of float64, shape (n_samples,) for one output, else
    (n_samples, n_outputs); blocks in the namespace of X's blocks. A block
    holding NaN or infinity raises a ValueError naming its global row when it
    is computed.
    """
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    n_outputs = coef.shape[0]
    # Decision values are dense whatever the blocks are (CSR blocks give arrays).
    meta = array_namespace(X._meta).empty((0, 0), dtype=np.float64)
    if n_outputs == 1:
        return X.map_blocks(
            _block_decision, coef, intercept, name, drop_axis=1, meta=meta.sum(axis=1)
        )
    return X.map_blocks(
        _block_decision, coef, intercept, name, chunks=(X.chunks[0], (n_outputs,)), meta=meta
    )


def _block_decision(
    X: Array,
    coef: np.ndarray,
    intercept: np.ndarray,
    name: str = "X",
    block_info: dict[Any, Any] | None = None,
) -> Array:
    """Decision values of one block, float64, in the block's namespace."""
    xp = array_namespace(X)
    # BLAS in X's dtype (X is never upcast), result widened to float64.
    z = (X @ xp.asarray(coef.T, dtype=X.dtype)).astype(xp.float64) + xp.asarray(intercept)
    if not bool(xp.isfinite(z).all()):
        # Else z overflowed on finite data: not an input error (CSR blocks are checked).
        bad = None if is_sparse(X) else _first_nonfinite(X)
        if bad is not None:
            offset = 0 if block_info is None else int(block_info[0]["array-location"][0][0])
            raise InputValueError(_nonfinite_message(name, bad[0] + offset, *bad[1:]))
    return z[:, 0] if coef.shape[0] == 1 else z


def take_classes(index: Any, classes: np.ndarray) -> Any:
    """Lazy ``classes[index]`` for a Dask array of class indices (predicted labels)."""
    on_gpu = chunk_module(index) == "cupy" and classes.dtype.kind in "biuf"
    meta = index._meta if on_gpu else np.empty(0)
    return index.map_blocks(
        _take_block, classes, dtype=classes.dtype, meta=meta.astype(classes.dtype)
    )


def _take_block(index: Array, classes: np.ndarray) -> Array:
    if array_module_name(index) == "cupy":
        if classes.dtype.kind in "biuf":  # numeric labels stay on the device
            return array_namespace(index).asarray(classes)[index]
        index = index.get()
    return classes[index]
