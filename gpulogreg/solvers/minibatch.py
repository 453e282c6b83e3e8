"""Mini-batch training: shuffled epochs, SGD with momentum or Adam, learning-rate schedules.

Unlike the full-batch solvers this one needs the data, not only the objective,
so it is not in the :data:`gpulogreg.solvers.SOLVERS` registry; the estimator
calls it with a *batch source*:

* :class:`ArrayBatches`: in-memory arrays (NumPy or CuPy); each epoch is a
  fresh permutation of the training rows cut into ``batch_size`` batches;
* :class:`DatasetBatches`: a :class:`~gpulogreg.dataset.Dataset` streamed
  from disk; rows are shuffled within a window of chunks, and the chunk order
  itself is permuted every epoch when the source can read chunks in any order
  (``.npy`` files, arrays; CSV and Parquet are read in file order), so memory
  stays bounded.

Each batch becomes a small backend built by
:func:`gpulogreg.backends.make_backend` on the gathered rows, so the batch loss
and gradient are one fused Numba pass on the CPU and the CUDA kernels of the
full-batch path on the GPU.

The per-batch objective
-----------------------
For a batch ``B`` with effective weights ``s_i`` (sample x class weights)::

    f_B(w) = sum_{i in B} s_i l_i(w) / sum_{i in B} s_i  +  l2/2 ||w||^2  (+ l1 ||w||_1)

the batch's weighted *mean* loss plus exactly the penalty of
:class:`gpulogreg.loss.LogisticObjective` (``l2 = (1 - r) / (C W)``,
``l1 = r / (C W)``, ``W`` the sum of the training weights), so the expected
batch objective is the full objective and the minimiser is the same. The L1
part is applied by a proximal step (soft thresholding, per coordinate scaled
by Adam's preconditioner).

Steps of an epoch
-----------------
1. Draw the batch order from the shuffling RNG (its state is checkpointed).
2. For every batch: learning rate from the schedule at the fractional epoch
   ``e = epoch + k / n_batches`` (``constant``: ``eta0``; ``invscaling``:
   ``eta0 / sqrt(1 + e)``; ``cosine``: ``eta0 (1 + cos(pi e / max_iter)) / 2``),
   fused loss and gradient, penalty, optimiser update, L1 prox.
3. Record the epoch in the history: the objective *estimate* (weighted mean of
   the batch objectives seen during the epoch), the max-norm of the mean batch
   gradient, the last learning rate, the validation log loss (with
   ``early_stopping``) and the elapsed seconds.
4. Stop when the monitored value (validation log loss with
   ``early_stopping``, else the objective estimate) has not improved by more
   than ``tol`` for ``n_iter_no_change`` epochs (converged; with early
   stopping the best parameters are restored), when the cosine schedule is
   complete (converged), or at ``max_iter`` epochs (not converged).
5. Save a checkpoint every ``checkpoint_every`` epochs and at the end.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gpulogreg._progress import ProgressLine
from gpulogreg._typing import Array, Backend, History, SolverResult
from gpulogreg.data import array_namespace

__all__ = [
    "ArrayBatches",
    "DatasetBatches",
    "MinibatchConfig",
    "MinibatchHistory",
    "MinibatchTrainer",
    "Penalty",
    "resolve_seed",
    "solve_minibatch",
    "split_validation",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "invscaling", "cosine")
#: Adam's moment decay rates and denominator guard (Kingma & Ba's defaults,
#: also scikit-learn's and PyTorch's).
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8
#: Exponent of the inverse-scaling schedule eta0 / (1 + e)^power (e in epochs):
#: 0.5 is the classical Robbins-Monro-compatible rate for convex problems.
INVSCALING_POWER = 0.5
#: Validation rows kept in memory at most when streaming a Dataset (bytes of X):
#: held-out chunks are subsampled beyond this so memory stays bounded.
VALIDATION_MAX_BYTES = 256 * 2**20
#: Rows shuffled together when streaming a Dataset (bytes of X per window; at
#: least one chunk): larger windows mix better, smaller ones use less memory.
SHUFFLE_WINDOW_BYTES = 128 * 2**20


# --------------------------------------------------------------------------- configuration
@dataclass
class MinibatchConfig:
    """Hyper-parameters of a mini-batch fit (see ``LogisticRegression``)."""

    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: str = "constant"
    eta0: float = 0.001
    momentum: float = 0.9
    max_epochs: int = 100
    tol: float = 1e-6
    early_stopping: bool = False
    validation_fraction: float = 0.1
    n_iter_no_change: int = 5
    checkpoint_path: str | None = None
    checkpoint_every: int = 1

    def validate(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(
                f"learning_rate must be one of {SCHEDULES}, got {self.learning_rate!r}"
            )
        if not _is_real(self.eta0) or not self.eta0 > 0 or not math.isfinite(self.eta0):
            raise ValueError(f"eta0 must be a positive number, got {self.eta0!r}")
        if not _is_real(self.momentum) or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not _is_real(self.validation_fraction) or not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if not _is_int(self.n_iter_no_change) or self.n_iter_no_change < 1:
            raise ValueError(
                f"n_iter_no_change must be a positive integer, got {self.n_iter_no_change!r}"
            )
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise ValueError(
                f"checkpoint_every must be a positive integer, got {self.checkpoint_every!r}"
            )
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping must be a bool, got {self.early_stopping!r}")

    def fingerprint(self) -> dict[str, Any]:
        """Settings that shape the trajectory (a checkpoint must match them to resume)."""
        return {
            "batch_size": int(self.batch_size),
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "eta0": float(self.eta0),
            "momentum": float(self.momentum),
            "max_epochs": int(self.max_epochs),
            "tol": float(self.tol),
            "early_stopping": bool(self.early_stopping),
            "validation_fraction": float(self.validation_fraction),
            "n_iter_no_change": int(self.n_iter_no_change),
        }


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


def resolve_seed(random_state: Any) -> int:
    """An integer seed from ``random_state`` (None: fresh entropy; Generator: one draw)."""
    if random_state is None:
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        return entropy
    if _is_int(random_state):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    raise ValueError(
        f"random_state must be None, an int or a numpy random Generator, got {random_state!r}"
    )


@dataclass
class Penalty:
    """The penalty of :class:`gpulogreg.loss.LogisticObjective` for a parameter layout.

    Attributes
    ----------
    l2, l1 : float
        Strengths in the weight-normalised objective.
    mask : array of shape (n_params,)
        1 for penalised coefficients, 0 for intercepts.
    """

    l2: float
    l1: float
    mask: Array

    @classmethod
    def build(
        cls,
        xp: Any,
        *,
        C: float,
        l1_ratio: float,
        weight_sum: float,
        n_outputs: int,
        n_features: int,
        fit_intercept: bool,
    ) -> Penalty:
        alpha = 0.0 if math.isinf(C) else 1.0 / (C * weight_sum)
        mask = xp.ones((n_outputs, n_features + int(fit_intercept)), dtype=xp.float64)
        if fit_intercept:
            mask[:, -1] = 0.0
        return cls(l2=alpha * (1.0 - l1_ratio), l1=alpha * l1_ratio, mask=mask.ravel())

    def add(self, params: Array, loss: float, grad: Array) -> tuple[float, Array]:
        """Smooth penalty added to a batch's loss and gradient; the L1 value added to the loss."""
        if self.l2:
            pen = params * self.mask
            loss += 0.5 * self.l2 * float(pen @ pen)
            grad = grad + self.l2 * pen
        if self.l1:
            loss += self.l1 * float(abs(params * self.mask).sum())
        return loss, grad

    def prox(self, params: Array, step: Array | float, xp: Any) -> Array:
        """Soft thresholding by ``step * l1`` (``step`` may be per coordinate)."""
        if not self.l1:
            return params
        threshold = step * self.l1 * self.mask
        return xp.sign(params) * xp.maximum(xp.abs(params) - threshold, 0.0)


# --------------------------------------------------------------------------- history
@dataclass
class MinibatchHistory(History):
    """Per-epoch record: :class:`History` plus the validation log loss.

    ``objective`` is the epoch's *estimate* (mean of the batch objectives seen
    during the epoch); ``optimality`` the max-norm of the mean batch
    gradient; ``step`` the learning rate at the end of the epoch;
    ``validation_loss`` NaN when there is no validation set.
    """

    validation_loss: list[float] = field(default_factory=list)

    def record_epoch(
        self, objective: float, optimality: float, step: float, validation_loss: float
    ) -> None:
        self.record(objective, optimality, step)
        self.validation_loss.append(float(validation_loss))

    def as_dict(self) -> dict[str, list[float]]:
        out = super().as_dict()
        out["validation_loss"] = list(self.validation_loss)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> MinibatchHistory:
        h = cls()
        h.objective = [float(v) for v in data.get("objective", [])]
        # Checkpoints written before the field was renamed call it "grad_max_norm".
        optimality = data.get("optimality", data.get("grad_max_norm", []))
        h.optimality = [float(v) for v in optimality]
        h.step = [float(v) for v in data.get("step", [])]
        h.elapsed = [float(v) for v in data.get("elapsed", [])]
        h.validation_loss = [float(v) for v in data.get("validation_loss", [])]
        if h.elapsed:
            h._start = time.perf_counter() - h.elapsed[-1]
        return h


# --------------------------------------------------------------------------- batch sources
class BatchSource(Protocol):
    """Where batches come from."""

    xp: Any
    n_train: int
    has_validation: bool

    def n_batches(self, batch_size: int) -> int: ...

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[tuple[Backend, float]]:
        """Yield ``(batch backend, batch weight)``; the backend's weights sum to one."""
        ...

    def validation_loss(self, params: Array) -> float: ...


def split_validation(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split of row indices into (train, validation).

    Every class keeps ``round(fraction * count)`` rows for validation (at least
    one row in all, and at least one row left for training).
    """
    y = np.asarray(y)
    n = y.shape[0]
    if n < 2:
        raise ValueError("early_stopping needs at least 2 samples")
    val_parts = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        take = round(fraction * idx.size)
        if take:
            val_parts.append(rng.choice(idx, size=take, replace=False))
    val = np.concatenate(val_parts) if val_parts else np.empty(0, dtype=np.int64)
    if val.size == 0:
        val = rng.choice(n, size=1, replace=False)
    if val.size >= n:
        val = val[: n - 1]
    val = np.sort(val)
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


class ArrayBatches:
    """Batches gathered from in-memory arrays (NumPy or CuPy, already on the target device).

    Parameters
    ----------
    X : array of shape (n_samples, n_features), validated, on the target device
    y : array of shape (n_samples,), int32 class indices (0/1 for binary tasks)
    sample_weight : array of shape (n_samples,), float64, effective weights
        (any positive scale: batches are normalised).
    n_classes, fit_intercept, backend, device :
        Passed to :func:`gpulogreg.backends.make_backend` for every batch.
    train_idx, val_idx : host int arrays, optional
        Row split (all rows train when not given).
    """

    def __init__(
        self,
        X: Array,
        y: Array,
        sample_weight: Array,
        *,
        n_classes: int,
        fit_intercept: bool,
        backend: str,
        device: str,
        train_idx: np.ndarray | None = None,
        val_idx: np.ndarray | None = None,
    ) -> None:
        from gpulogreg.backends import make_backend

        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.xp = array_namespace(X)
        self.backend_name = backend
        self.kw: dict[str, Any] = {
            "n_classes": n_classes,
            "fit_intercept": fit_intercept,
            "backend": backend,
            "device": device,
        }
        n = int(X.shape[0])
        self.train_idx = np.arange(n) if train_idx is None else np.asarray(train_idx)
        self.n_train = int(self.train_idx.size)
        self.has_validation = val_idx is not None and len(val_idx) > 0
        self._val: Backend | None = None
        if self.has_validation:
            assert val_idx is not None
            xp = self.xp
            v = xp.asarray(val_idx)
            sv = sample_weight[v]
            self._val = make_backend(X[v], y[v], sv / sv.sum(), **self.kw)
        self._make = make_backend

    def n_batches(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[tuple[Backend, float]]:
        xp = self.xp
        order = self.train_idx[rng.permutation(self.n_train)]
        order_dev = xp.asarray(order)
        for start in range(0, self.n_train, batch_size):
            # Sorted rows gather with better locality; the order within a batch
            # does not change its (summed) gradient.
            idx = xp.sort(order_dev[start : start + batch_size])
            s = self.sample_weight[idx]
            total = float(s.sum())
            if total <= 0:
                continue
            backend = self._make(self.X[idx], self.y[idx], s / total, **self.kw)
            yield backend, total

    def validation_loss(self, params: Array) -> float:
        return math.nan if self._val is None else float(self._val.loss(params))


class DatasetBatches:
    """Batches streamed from a :class:`~gpulogreg.dataset.Dataset`, memory bounded.

    Rows are shuffled within windows of chunks (about
    :data:`SHUFFLE_WINDOW_BYTES` of X), the chunks taken in a fresh random order
    each epoch when the dataset allows it; rows left over at the end of a window
    join the next one, so every batch but the last of an epoch is full. With
    ``early_stopping`` whole chunks are held out (at least one, and at least
    one left for training), and their rows kept in memory up to
    :data:`VALIDATION_MAX_BYTES` (subsampled beyond).

    Parameters
    ----------
    chunked : ChunkedBackend
        Supplies the dataset, class encoding, weight normalisation and the
        inner backend/device choice.
    validation_fraction : float or None
    rng : Generator used for the split (chunk choice and subsampling).
    """

    def __init__(
        self,
        chunked: Any,
        *,
        validation_fraction: float | None,
        rng: np.random.Generator,
        window_bytes: int = SHUFFLE_WINDOW_BYTES,
    ) -> None:
        from gpulogreg.backends import make_backend, to_device

        self.chunked = chunked
        self.xp = chunked.xp
        self.backend_name = chunked.inner_name
        self._make = make_backend
        self._to_device = to_device
        self.kw: dict[str, Any] = {
            "n_classes": chunked.n_classes,
            "fit_intercept": chunked.fit_intercept,
            "backend": chunked.inner_name,
            "device": chunked.device,
        }
        info = chunked.info
        rows = info.chunk_rows
        row_bytes = info.n_features * np.dtype(info.dtype).itemsize
        self.window_rows = max(1, window_bytes // max(row_bytes, 1))
        self.val_chunks: set[int] = set()
        self._val: Backend | None = None
        if validation_fraction:
            if info.n_chunks < 2:
                raise ValueError(
                    "early_stopping on a Dataset holds out whole chunks, but this dataset has "
                    "a single chunk; build it with a smaller chunk_rows"
                )
            n_val = min(max(1, round(validation_fraction * info.n_chunks)), info.n_chunks - 1)
            self.val_chunks = {int(i) for i in rng.choice(info.n_chunks, n_val, replace=False)}
            self._collect_validation(rng, row_bytes)
        self.has_validation = self._val is not None
        self.n_train = int(sum(r for i, r in enumerate(rows) if i not in self.val_chunks))

    def _collect_validation(self, rng: np.random.Generator, row_bytes: int) -> None:
        info = self.chunked.info
        n_val_rows = sum(info.chunk_rows[i] for i in self.val_chunks)
        keep_fraction = min(1.0, VALIDATION_MAX_BYTES / max(n_val_rows * row_bytes, 1))
        Xs, ys, ss = [], [], []
        dataset = self.chunked.dataset
        order = sorted(self.val_chunks) if dataset.random_access else None
        for i, chunk in enumerate(dataset.iter_chunks(self.chunked._dtype_arg, order=order)):
            if order is None and i not in self.val_chunks:
                continue
            X, y, s = self.chunked._prepare(chunk)
            if keep_fraction < 1.0:
                rows = np.sort(
                    rng.choice(X.shape[0], int(keep_fraction * X.shape[0]) or 1, replace=False)
                )
                X, y, s = X[rows], y[rows], s[rows]
            Xs.append(np.array(X) if not hasattr(X, "get") else X)
            ys.append(y)
            ss.append(s)
        X = self._concat(Xs)
        s = np.concatenate(ss)
        dev = self.kw["device"]
        self._val = self._make(
            self._to_device(X, dev),
            self._to_device(np.concatenate(ys), dev),
            self._to_device(s / s.sum(), dev),
            **self.kw,
        )

    def _concat(self, arrays: list[Any]) -> Any:
        if len(arrays) == 1:
            return arrays[0]
        xp = array_namespace(arrays[0])
        return xp.concatenate(arrays)

    def n_batches(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[tuple[Backend, float]]:
        from gpulogreg.backends.chunked import HostStager, SlotPipeline

        chunked = self.chunked
        dev = self.kw["device"]
        dataset = chunked.dataset
        if dataset.random_access:
            # Chunks in a new random order every epoch, so that a window mixes
            # rows from all over the file (a file sorted by label would
            # otherwise give windows of a single class).
            train = [i for i in range(chunked.info.n_chunks) if i not in self.val_chunks]
            order = [train[i] for i in rng.permutation(len(train))]
            chunks: Iterator[Any] = dataset.iter_chunks(chunked._dtype_arg, order=order)
        else:
            chunks = (
                c
                for i, c in enumerate(dataset.iter_chunks(chunked._dtype_arg))
                if i not in self.val_chunks
            )
        pipeline = SlotPipeline(
            chunks, HostStager(), prepare=chunked._prepare, threaded=chunked.prefetch
        )
        pending: list[tuple[Any, np.ndarray, np.ndarray]] = []
        n_pending = 0
        for X, y, s in pipeline:
            # Copy out of the (possibly memory-mapped) chunk: the window outlives it.
            pending.append((np.array(X) if not hasattr(X, "get") else X.copy(), y, s))
            n_pending += X.shape[0]
            if n_pending >= self.window_rows:
                rest = yield from self._window(pending, rng, batch_size, dev, final=False)
                pending = [rest] if rest is not None else []
                n_pending = 0 if rest is None else rest[0].shape[0]
        if pending:
            yield from self._window(pending, rng, batch_size, dev, final=True)

    def _window(
        self,
        parts: list[tuple[Any, np.ndarray, np.ndarray]],
        rng: np.random.Generator,
        batch_size: int,
        dev: str,
        *,
        final: bool,
    ) -> Generator[tuple[Backend, float], None, tuple[Any, np.ndarray, np.ndarray] | None]:
        """Shuffle the rows of a window, yield full batches; return the left-over rows."""
        X = self._concat([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        s = np.concatenate([p[2] for p in parts])
        m = X.shape[0]
        order = rng.permutation(m)
        n_full = m if final else (m // batch_size) * batch_size
        Xd = self._to_device(X, dev)
        yd = self._to_device(y, dev)
        sd = self._to_device(s, dev)
        xp = self.xp
        order_dev = xp.asarray(order)
        for start in range(0, n_full, batch_size):
            idx = xp.sort(order_dev[start : min(start + batch_size, n_full)])
            sb = sd[idx]
            total = float(sb.sum())
            if total <= 0:
                continue
            yield self._make(Xd[idx], yd[idx], sb / total, **self.kw), total
        if n_full == m:
            return None
        rest = np.sort(order[n_full:])
        return X[rest], y[rest], s[rest]

    def validation_loss(self, params: Array) -> float:
        return math.nan if self._val is None else float(self._val.loss(params))


# --------------------------------------------------------------------------- optimisers
class _SGD:
    """Heavy-ball SGD: ``v <- momentum v - lr g``, ``w <- w + v``."""

    def __init__(self, xp: Any, n_params: int, momentum: float) -> None:
        self.xp = xp
        self.momentum = float(momentum)
        self.velocity = xp.zeros(n_params, dtype=xp.float64)

    def update(self, params: Array, grad: Array, lr: float) -> tuple[Array, Array | float]:
        if self.momentum:
            self.velocity = self.momentum * self.velocity - lr * grad
            return params + self.velocity, lr
        return params - lr * grad, lr

    def arrays(self) -> dict[str, Array]:
        return {"velocity": self.velocity}

    def load(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.velocity = self.xp.asarray(arrays["velocity"], dtype=self.xp.float64)

    def meta(self) -> dict[str, Any]:
        return {}


class _Adam:
    """Adam with bias correction (Kingma & Ba, 2015)."""

    def __init__(self, xp: Any, n_params: int) -> None:
        self.xp = xp
        self.m = xp.zeros(n_params, dtype=xp.float64)
        self.v = xp.zeros(n_params, dtype=xp.float64)
        self.t = 0

    def update(self, params: Array, grad: Array, lr: float) -> tuple[Array, Array | float]:
        xp = self.xp
        self.t += 1
        self.m = ADAM_BETA1 * self.m + (1.0 - ADAM_BETA1) * grad
        self.v = ADAM_BETA2 * self.v + (1.0 - ADAM_BETA2) * (grad * grad)
        m_hat = self.m / (1.0 - ADAM_BETA1**self.t)
        v_hat = self.v / (1.0 - ADAM_BETA2**self.t)
        scale = lr / (xp.sqrt(v_hat) + ADAM_EPSILON)
        return params - scale * m_hat, scale

    def arrays(self) -> dict[str, Array]:
        return {"adam_m": self.m, "adam_v": self.v}

    def load(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.m = self.xp.asarray(arrays["adam_m"], dtype=self.xp.float64)
        self.v = self.xp.asarray(arrays["adam_v"], dtype=self.xp.float64)
        self.t = int(meta["adam_t"])

    def meta(self) -> dict[str, Any]:
        return {"adam_t": self.t}


def learning_rate(config: MinibatchConfig, epoch_progress: float) -> float:
    """The schedule's learning rate at fractional epoch ``epoch_progress``."""
    eta0 = float(config.eta0)
    if config.learning_rate == "constant":
        return eta0
    if config.learning_rate == "invscaling":
        return eta0 / (1.0 + epoch_progress) ** INVSCALING_POWER
    fraction = min(epoch_progress / max(config.max_epochs, 1), 1.0)
    return eta0 * 0.5 * (1.0 + math.cos(math.pi * fraction))


# --------------------------------------------------------------------------- trainer
class MinibatchTrainer:
    """Iteration state of a mini-batch fit: parameters, optimiser, epoch, RNG, early stopping.

    ``fit`` runs whole epochs until a stopping rule; ``partial_fit`` runs one
    epoch and keeps the state for the next call. ``state`` / ``restore``
    convert to and from a :class:`~gpulogreg.checkpoint.CheckpointState`.
    """

    def __init__(
        self,
        params0: Array,
        *,
        penalty: Penalty,
        config: MinibatchConfig,
        seed: int,
        fingerprint: dict[str, Any] | None = None,
    ) -> None:
        self.xp = array_namespace(params0)
        xp = self.xp
        self.params = xp.asarray(params0, dtype=xp.float64).copy()
        self.penalty = penalty
        self.config = config
        self.seed = int(seed)
        self.rng = np.random.default_rng([self.seed, 1])
        n = int(self.params.shape[0])
        self.optimizer: _SGD | _Adam = (
            _Adam(xp, n) if config.optimizer == "adam" else _SGD(xp, n, config.momentum)
        )
        self.epoch = 0
        self.step = 0
        self.best = math.inf
        self.best_params: Array | None = None
        self.no_improve = 0
        self.history = MinibatchHistory()
        self.finished = False
        self.converged = False
        self.message = ""
        self.fingerprint = fingerprint or {}

    # -- one epoch -------------------------------------------------------------
    def run_epoch(
        self,
        source: BatchSource,
        progress: ProgressLine | None = None,
    ) -> float:
        """One pass over the training batches; returns the objective estimate."""
        config = self.config
        xp = self.xp
        n_batches = max(source.n_batches(config.batch_size), 1)
        grad_sum = xp.zeros_like(self.params)
        batches = source.batches(self.rng, config.batch_size)
        total_obj, total_weight, lr = self._batches(batches, n_batches, grad_sum, progress)
        self.epoch += 1
        if total_weight == 0:
            raise ValueError("no training batch with a positive weight")
        self._last_lr = lr
        self._last_grad_norm = float(xp.abs(grad_sum / total_weight).max())
        return total_obj / total_weight

    def _batches(
        self,
        batches: Iterator[tuple[Backend, float]],
        n_batches: int,
        grad_sum: Array,
        progress: ProgressLine | None,
    ) -> tuple[float, float, float]:
        """The updates of one epoch; returns (weighted objective sum, weight sum, last lr)."""
        config = self.config
        xp = self.xp
        total_obj = 0.0
        total_weight = 0.0
        lr = learning_rate(config, self.epoch)
        for k, (backend, weight) in enumerate(batches):
            lr = learning_rate(config, self.epoch + k / n_batches)
            loss, grad = backend.loss_grad(self.params)
            loss, grad = self.penalty.add(self.params, loss, grad)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the mini-batch objective became {loss} at epoch {self.epoch + 1}; "
                    f"lower eta0 (now {config.eta0})"
                )
            params, prox_step = self.optimizer.update(self.params, grad, lr)
            self.params = self.penalty.prox(params, prox_step, xp)
            self.step += 1
            total_obj += weight * loss
            total_weight += weight
            grad_sum += weight * grad
            if progress is not None:
                progress.update(
                    f"minibatch epoch {self.epoch + 1}/{config.max_epochs} "
                    f"{progress.bar((k + 1) / n_batches)} batch {k + 1}/{n_batches}"
                    f"  objective~{total_obj / total_weight:.6g}",
                    force=k + 1 == n_batches,
                    transient=True,
                )
        return total_obj, total_weight, lr

    # -- full fit --------------------------------------------------------------
    def fit(
        self,
        source: BatchSource,
        *,
        verbose: bool = False,
        callback: Callable[[int, Array, float], bool | None] | None = None,
        save: Callable[[MinibatchTrainer], None] | None = None,
    ) -> SolverResult:
        """Epochs until a stopping rule (see the module docstring); ``save`` checkpoints."""
        config = self.config
        progress = ProgressLine() if verbose else None
        while not self.finished:
            if self.epoch >= config.max_epochs:
                self._finish(False, f"max_iter={config.max_epochs} epochs reached")
                break
            estimate = self.run_epoch(source, progress)
            val = source.validation_loss(self.params) if config.early_stopping else math.nan
            self.history.record_epoch(estimate, self._last_grad_norm, self._last_lr, val)
            if progress is not None:
                val_text = "" if math.isnan(val) else f"  val_loss {val:.6g}"
                progress.update(
                    f"minibatch epoch {self.epoch}/{config.max_epochs}  objective~{estimate:.8g}"
                    f"{val_text}  lr {self._last_lr:.3g}  {self.history.elapsed[-1]:.2f}s",
                    force=True,
                )
            self._check_stop(val if config.early_stopping else estimate)
            stop_requested = (
                bool(callback(self.epoch, self.params, estimate)) if callback else False
            )
            if stop_requested and not self.finished:
                self._finish(False, "stopped by the callback")
            if save is not None and (self.finished or self.epoch % config.checkpoint_every == 0):
                save(self)
        if progress is not None:
            progress.close(f"minibatch: {self.message}")
        return self.result()

    def _check_stop(self, monitored: float) -> None:
        config = self.config
        if monitored < self.best - config.tol:
            self.best = monitored
            self.no_improve = 0
            if config.early_stopping:
                self.best_params = self.params.copy()
        else:
            self.no_improve += 1
        what = "validation log loss" if config.early_stopping else "objective estimate"
        if self.no_improve >= config.n_iter_no_change:
            if config.early_stopping and self.best_params is not None:
                self.params = self.best_params.copy()
            self._finish(
                True,
                f"converged: the {what} did not improve by more than tol={config.tol:g} "
                f"for {config.n_iter_no_change} epochs"
                + (" (best parameters restored)" if config.early_stopping else ""),
            )
        elif config.learning_rate == "cosine" and self.epoch >= config.max_epochs:
            self._finish(True, f"converged: the cosine schedule ran its {config.max_epochs} epochs")
        elif self.epoch >= config.max_epochs:
            self._finish(False, f"max_iter={config.max_epochs} epochs reached")

    def _finish(self, converged: bool, message: str) -> None:
        self.finished = True
        self.converged = converged
        self.message = f"{message} after {self.epoch} epoch{'s' if self.epoch != 1 else ''}"

    def result(self) -> SolverResult:
        return SolverResult(
            params=self.params,
            converged=self.converged,
            n_iter=self.epoch,
            history=self.history,
            message=self.message,
        )

    # -- checkpoint state --------------------------------------------------------
    def state(self) -> Any:
        from gpulogreg.checkpoint import CheckpointState

        arrays = {"params": _host(self.params)}
        for name, arr in self.optimizer.arrays().items():
            arrays[name] = _host(arr)
        if self.best_params is not None:
            arrays["best_params"] = _host(self.best_params)
        meta = {
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "rng_state": self.rng.bit_generator.state,
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "no_improve": self.no_improve,
            "finished": self.finished,
            "converged": self.converged,
            "message": self.message,
            "history": self.history.as_dict(),
            "optimizer": self.optimizer.meta(),
        }
        return CheckpointState(arrays=arrays, meta=meta)

    def restore(self, state: Any, path: str = "") -> None:
        """Continue from a checkpoint (its fingerprint must match this fit's)."""
        from gpulogreg.checkpoint import CheckpointError

        meta = state.meta
        saved = meta.get("fingerprint")
        if saved != _jsonable(self.fingerprint):
            diff = sorted(
                k
                for k in set(saved or {}) | set(self.fingerprint)
                if (saved or {}).get(k) != _jsonable(self.fingerprint).get(k)
            )
            raise CheckpointError(
                f"checkpoint {path} was written for a different fit (differs in: "
                f"{', '.join(diff)}); delete it or use another checkpoint_path"
            )
        xp = self.xp
        try:
            self.params = xp.asarray(state.arrays["params"], dtype=xp.float64)
            self.optimizer.load(state.arrays, meta.get("optimizer", {}))
            best = state.arrays.get("best_params")
            self.best_params = None if best is None else xp.asarray(best, dtype=xp.float64)
            self.seed = int(meta["seed"])
            self.rng = np.random.default_rng([self.seed, 1])
            self.rng.bit_generator.state = meta["rng_state"]
            self.epoch = int(meta["epoch"])
            self.step = int(meta["step"])
            self.best = float(meta["best"])
            self.no_improve = int(meta["no_improve"])
            self.finished = bool(meta["finished"])
            self.converged = bool(meta["converged"])
            self.message = str(meta["message"])
            self.history = MinibatchHistory.from_dict(meta["history"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is incomplete or corrupt ({exc})") from None
        if self.params.shape[0] != self.penalty.mask.shape[0]:
            raise CheckpointError(f"checkpoint {path} holds parameters of the wrong size")


def _host(a: Array) -> np.ndarray:
    return np.asarray(a.get() if hasattr(a, "get") else a, dtype=np.float64)


def _jsonable(d: dict[str, Any]) -> Any:
    import json

    return json.loads(json.dumps(d))


def solve_minibatch(
    source: BatchSource,
    params0: Array,
    *,
    penalty: Penalty,
    config: MinibatchConfig,
    seed: int,
    fingerprint: dict[str, Any] | None = None,
    checkpoint_path: str | None = None,
    callback: Callable[[int, Array, float], bool | None] | None = None,
    verbose: bool = False,
) -> SolverResult:
    """Run a mini-batch fit, resuming from ``checkpoint_path`` when that file exists.

    Parameters
    ----------
    source : ArrayBatches or DatasetBatches
    params0 : array of shape (n_params,), float64
        Starting point (ignored when resuming).
    penalty : Penalty
    config : MinibatchConfig
    seed : int
        Seeds the shuffling RNG (the split is drawn by the caller).
    fingerprint : dict
        JSON-serialisable description of the problem; a checkpoint is resumed
        only when it was written with the same fingerprint.
    checkpoint_path : str, optional
    callback : callable(epoch, params, objective_estimate) -> bool, optional
        ``True`` stops after that epoch.
    verbose : bool
        Progress line on stderr.

    Returns
    -------
    SolverResult
        ``n_iter`` counts epochs; ``history`` is a :class:`MinibatchHistory`.
    """
    import os

    from gpulogreg.checkpoint import load_checkpoint, save_checkpoint

    config.validate()
    full_fingerprint = dict(fingerprint or {})
    full_fingerprint.update(config.fingerprint())
    trainer = MinibatchTrainer(
        params0, penalty=penalty, config=config, seed=seed, fingerprint=full_fingerprint
    )
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        trainer.restore(load_checkpoint(checkpoint_path), checkpoint_path)
        if verbose:
            sys.stderr.write(
                f"minibatch: resuming from {checkpoint_path} after epoch {trainer.epoch}\n"
            )
    save = None
    if checkpoint_path is not None:
        path = checkpoint_path

        def save(t: MinibatchTrainer) -> None:
            save_checkpoint(path, t.state())

    if trainer.finished:
        return trainer.result()
    return trainer.fit(source, verbose=verbose, callback=callback, save=save)
