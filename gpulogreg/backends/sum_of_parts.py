"""The "sum of parts" backend: the protocol over data split in row blocks, summed in order.

With the sample weights normalised over the whole data (``s_i = w_i c_{y_i} / W``)
the weighted mean loss is additive over any split of the rows into parts::

    loss = sum_p loss_p,   grad = sum_p grad_p,   H = sum_p H_p,
    Hv = sum_p H_p v,      diag(H) = sum_p diag(H_p),
    A^T S A v = sum_p A_p^T S_p A_p v,
    meat = sum_p meat_p,   S_c = sum_p S_{p,c}   (cluster scores)

so a backend over parts only has to evaluate an *inner* backend per part and
add the results. The parts are the chunks of a
:class:`~gpulogreg.data.dataset.Dataset` streamed from disk
(:class:`~gpulogreg.backends.chunked.ChunkedBackend`) or the row blocks of
Dask arrays on a cluster (:class:`~gpulogreg.backends.dask_backend.DaskBackend`);
each subclass says only how to run one method on every part
(:meth:`SumOfParts.map_parts`), and how to give each part its own slice of an
array aligned with the rows (:meth:`SumOfParts.map_parts_with_rows`, for the
cluster scores' group indices). The results are added in part order, whatever
order they are computed in, so a pass is reproducible bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np

from gpulogreg._array import array_module_name
from gpulogreg._layout import HasLayout, ParamLayout
from gpulogreg._typing import Array, Information

__all__ = ["SumOfParts", "ordered_sum"]


def ordered_sum(parts: Iterable[Array]) -> Array:
    """Sum of arrays in the given order (a fixed order: reproducible), as a new array."""
    total = None
    for part in parts:
        if total is None:
            total = part.astype(part.dtype, copy=True)
        else:
            total += part
    if total is None:
        raise ValueError("no part to sum: the data have no rows")
    return total


def _ordered_total(values: list[Any]) -> Any:
    """Sum of the parts' losses in part order: ``math.fsum`` of host floats, else on the device."""
    if all(array_module_name(v) != "cupy" for v in values):
        return math.fsum(float(v) for v in values)
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


class SumOfParts(HasLayout):
    """Base of the backends whose data are row parts: every method is a sum over parts.

    Subclasses set ``name``, ``xp``, ``dtype``, ``n_samples``, ``n_features`` and
    ``layout`` and implement :meth:`map_parts`.
    """

    name: str
    #: The storage of the parts' ``X``: ``"dense"`` or ``"csr"`` (as the in-memory backends').
    format = "dense"
    xp: ModuleType
    dtype: np.dtype[Any]
    n_samples: int
    n_features: int
    layout: ParamLayout

    def map_parts(self, method: str, *vectors: Array) -> Iterable[Any]:
        """``method(*vectors)`` of every part's inner backend, in part order."""
        raise NotImplementedError

    def map_parts_with_rows(
        self, method: str, params: Array, rows: Array, *options: Any
    ) -> Iterable[Any]:
        """``method(params, rows[part], *options)`` of every part's inner backend, in part order.

        ``rows`` is an array aligned with the backend's rows (``n_samples``
        entries in the data's row order); each part receives the slice of its
        own rows. ``options`` are plain Python values, passed as they are.
        """
        raise NotImplementedError

    # -- protocol ---------------------------------------------------------------
    def loss(self, params: Array) -> float:
        return math.fsum(self.map_parts("loss", params))

    def loss_grad(self, params: Array) -> tuple[float, Array]:
        loss, grad = self.loss_grad_lazy(params)
        return float(loss), grad

    def loss_grad_lazy(self, params: Array) -> tuple[Any, Array]:
        """The parts' losses added in part order where they are (no transfer per part)."""
        losses: list[Any] = []

        def gradients() -> Iterable[Array]:
            for loss, grad in self.map_parts("loss_grad_lazy", params):
                losses.append(loss)
                yield grad

        grad = ordered_sum(gradients())
        return _ordered_total(losses), grad

    def hessian(self, params: Array) -> Array:
        return ordered_sum(self.map_parts("hessian", params))

    def hvp(self, params: Array, v: Array) -> Array:
        return ordered_sum(self.map_parts("hvp", params, v))

    def hessian_diagonal(self, params: Array) -> Array:
        return ordered_sum(self.map_parts("hessian_diagonal", params))

    def information(self, params: Array) -> Information:
        """The parts' information summed in part order (each field), from one pass.

        The parts' Hessians are added as they come (one held at a time).
        """
        rest: list[Information] = []

        def hessians() -> Iterable[Array]:
            for part in self.map_parts("information", params):
                rest.append(part)
                yield part.hessian
                part.hessian = None

        hessian = ordered_sum(hessians())
        return Information(
            hessian=hessian,
            loss=math.fsum(p.loss for p in rest),
            gradient=ordered_sum(p.gradient for p in rest),
            certain=math.fsum(p.certain for p in rest),
        )

    def meat(self, params: Array) -> Array:
        return ordered_sum(self.map_parts("meat", params))

    def cluster_scores(self, params: Array, groups: Array, n_groups: int) -> Array:
        """Per-group score sums of every part (its slice of ``groups``), added in part order.

        ``groups`` must be an array in memory with one entry per row of the
        whole data, in the data's row order (a Dataset's chunk order, Dask's
        block order); each part checks its slice.
        """
        shape = getattr(groups, "shape", None)
        if shape != (self.n_samples,):
            raise ValueError(
                f"cluster scores need the groups in memory: an array of one group index per "
                f"row ({self.n_samples} rows, in the data's row order), got "
                f"{type(groups).__name__} of shape {shape}"
            )
        return ordered_sum(
            self.map_parts_with_rows("cluster_scores", params, groups, int(n_groups))
        )

    def gram_matvec(self, v: Array) -> Array:
        return ordered_sum(self.map_parts("gram_matvec", v))

    def decision(self, params: Array, X: Array) -> Array:
        """Decision values of in-memory ``X`` (float64): (m,) binary, (m, K) multinomial."""
        xp = self.xp
        coef, intercept = self.layout.split(params)
        z = (X @ coef.T.astype(X.dtype, copy=False)).astype(xp.float64) + intercept
        return z[:, 0] if self.n_outputs == 1 else z
