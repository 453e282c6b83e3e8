"""The mini-batch trainer: shuffled epochs, its state, checkpoints and stopping rules.

Unlike the full-batch solvers this one needs the data, not only the objective:
it is registered in :data:`gpulogreg.solvers.SOLVERS` as a *stochastic*
solver, and the fit plan hands it a :class:`MinibatchProblem`: a batch source
of the data layer (:mod:`gpulogreg.data.batches`), a factory for the fit's one
backend, the penalty and the configuration. The backend is built on the first
batch and bound to every later one (:meth:`NumpyBackend.bind`), so the batch
loss and gradient are one fused Numba pass on the CPU and the CUDA kernels of
the full-batch path on the GPU, without building a backend per batch.

The per-batch objective
-----------------------
For a batch ``B`` with effective weights ``s_i`` (sample x class weights)::

    f_B(w) = sum_{i in B} s_i l_i(w) / sum_{i in B} s_i  +  l2/2 ||w||^2  (+ l1 ||w||_1)

the batch's weighted *mean* loss plus exactly the penalty of the full
objective (:class:`gpulogreg.loss.Penalty`: ``l2 = (1 - r) / (C W)``,
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

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpulogreg._array import array_namespace, host_float64, host_scalars
from gpulogreg._errors import InputValueError
from gpulogreg._progress import Reporter
from gpulogreg._typing import Array, Callback, MinibatchHistory, SolverResult
from gpulogreg._typing import BatchBackend as BatchBackendProtocol
from gpulogreg.data.batches import Batch, BatchSource
from gpulogreg.loss import Penalty
from gpulogreg.solvers.stochastic.config import MinibatchConfig
from gpulogreg.solvers.stochastic.optimizers import make_optimizer, restore_optimizer
from gpulogreg.solvers.stochastic.schedules import learning_rate

__all__ = ["BoundBackend", "MinibatchProblem", "MinibatchTrainer", "solve_minibatch"]

#: What the progress bar of a mini-batch fit measures.
MEASURE = "epochs"

#: Builds the fit's backend on the rows of a batch: ``(X, y, sample_weight) -> Backend``.
BackendFactory = Callable[[Array, Array, Array], BatchBackendProtocol]


@dataclass
class MinibatchProblem:
    """What the mini-batch solver needs, from the fit plan.

    Attributes
    ----------
    source : BatchSource
        Training batches and validation rows.
    make_backend : callable
        ``(X, y, sample_weight) -> Backend`` for the rows of a batch; called
        once per fit, later batches are bound to the same backend.
    penalty : Penalty
        The full objective's penalty (strengths for the training weight).
    config : MinibatchConfig
    seed : int
        Seeds the shuffling RNG (the split is drawn by the caller).
    fingerprint : dict
        JSON-serialisable description of the problem; a checkpoint is resumed
        only when it was written with the same fingerprint.
    checkpoint_path : str or None
    """

    source: BatchSource
    make_backend: BackendFactory
    penalty: Penalty
    config: MinibatchConfig
    seed: int
    fingerprint: dict[str, Any] = field(default_factory=dict)
    checkpoint_path: str | None = None


class BoundBackend:
    """The one backend of a mini-batch fit, bound to each batch in turn."""

    def __init__(self, make: BackendFactory) -> None:
        self.make = make
        self._backend: BatchBackendProtocol | None = None

    def bind(self, batch: Batch) -> BatchBackendProtocol:
        """The backend over ``batch``'s rows (built on the first batch, rebound after)."""
        if self._backend is None:
            self._backend = self.make(batch.X, batch.y, batch.sample_weight)
        else:
            self._backend.bind(batch.X, batch.y, batch.sample_weight)
        return self._backend


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
        self.optimizer = make_optimizer(config.optimizer, xp, n, config.momentum)
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
        backend: BoundBackend,
        progress: Reporter | None = None,
    ) -> float:
        """One pass over the training batches; returns the objective estimate."""
        config = self.config
        xp = self.xp
        n_batches = max(source.n_batches(config.batch_size), 1)
        grad_sum = xp.zeros_like(self.params)
        batches = source.batches(self.rng, config.batch_size)
        total_obj, total_weight, lr = self._batches(batches, backend, n_batches, grad_sum, progress)
        self.epoch += 1
        if total_weight == 0:
            raise InputValueError("no training batch with a positive weight")
        # The epoch's scalars come to the host together, once per epoch.
        total, grad_norm = host_scalars(total_obj, self.xp.abs(grad_sum / total_weight).max())
        if not math.isfinite(total):
            raise FloatingPointError(
                f"the mini-batch objective became {total} during epoch {self.epoch}; "
                f"lower eta0 (now {config.eta0})"
            )
        self._last_lr = lr
        self._last_grad_norm = grad_norm
        return total / total_weight

    def _batches(
        self,
        batches: Iterator[Batch],
        backend: BoundBackend,
        n_batches: int,
        grad_sum: Array,
        progress: Reporter | None,
    ) -> tuple[Any, float, float]:
        """The updates of one epoch; returns (weighted objective sum, weight sum, last lr).

        Nothing crosses to the host per batch: the objective sum stays on the
        device (the progress bar fetches it only when it redraws).
        """
        config = self.config
        total_obj: Any = 0.0
        total_weight = 0.0
        lr = learning_rate(config, self.epoch)
        for k, batch in enumerate(batches):
            weight = batch.weight
            lr = learning_rate(config, self.epoch + k / n_batches)
            loss, grad = backend.bind(batch).loss_grad_lazy(self.params)
            loss, grad = self.penalty.add_smooth(self.params, loss, grad)
            loss = loss + self.penalty.l1_lazy(self.params)
            params, prox_step = self.optimizer.update(self.params, grad, lr)
            self.params = self.penalty.prox(params, prox_step)
            self.step += 1
            total_obj = total_obj + weight * loss
            total_weight += weight
            grad_sum += weight * grad
            if progress is not None and progress.detail_due():
                (running,) = host_scalars(total_obj)
                progress.detail(
                    f"epoch {self.epoch + 1}: batch {k + 1}/{n_batches}"
                    f"  objective~{running / total_weight:.6g}"
                )
        return total_obj, total_weight, lr

    def run_epoch_recorded(self, source: BatchSource, backend: BoundBackend) -> None:
        """One epoch, recorded in the history (``partial_fit``: no stopping rule)."""
        estimate = self.run_epoch(source, backend)
        self.history.record_epoch(estimate, self._last_grad_norm, self._last_lr, math.nan)
        self.message = f"partial_fit: {self.epoch} epoch(s)"

    # -- full fit --------------------------------------------------------------
    def fit(
        self,
        source: BatchSource,
        backend: BoundBackend,
        *,
        progress: Reporter | None = None,
        callback: Callback | None = None,
        save: Callable[[MinibatchTrainer], None] | None = None,
    ) -> SolverResult:
        """Epochs until a stopping rule (see the module docstring); ``save`` checkpoints.

        Every epoch is reported to ``progress``, whose listener may stop the
        fit as ``callback`` does; its bar counts the epochs out of ``max_iter``.
        """
        config = self.config
        progress = progress if progress is not None else Reporter()
        progress.begin("minibatch", MEASURE)
        validation = source.validation() if config.early_stopping else None
        val_backend = None if validation is None else BoundBackend(backend.make).bind(validation)
        while not self.finished:
            if self.epoch >= config.max_iter:
                self._finish(False, f"max_iter={config.max_iter} epochs reached")
                break
            estimate = self.run_epoch(source, backend, progress)
            val = math.nan if val_backend is None else float(val_backend.loss(self.params))
            self.history.record_epoch(estimate, self._last_grad_norm, self._last_lr, val)
            stop_requested = progress.watched and progress.iteration(
                self.history.entry(),
                fraction=self.epoch / config.max_iter,
                text=self._progress_text(estimate, val),
            )
            self._check_stop(val if config.early_stopping else estimate)
            if callback is not None:
                stop_requested = bool(callback(self.epoch, self.params, estimate)) or stop_requested
            if stop_requested and not self.finished:
                self._finish(False, "stopped by the callback")
            if save is not None and (self.finished or self.epoch % config.checkpoint_every == 0):
                save(self)
        progress.end(f"minibatch: {self.message}", converged=self.converged)
        return self.result()

    def _progress_text(self, estimate: float, validation_loss: float) -> str:
        """The bar's text after an epoch."""
        val = "" if math.isnan(validation_loss) else f"  val_loss {validation_loss:.6g}"
        return (
            f"epoch {self.epoch}/{self.config.max_iter}  objective~{estimate:.8g}{val}"
            f"  lr {self._last_lr:.3g}  {self.history.elapsed[-1]:.2f}s"
        )

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
        elif config.learning_rate == "cosine" and self.epoch >= config.max_iter:
            self._finish(True, f"converged: the cosine schedule ran its {config.max_iter} epochs")
        elif self.epoch >= config.max_iter:
            self._finish(False, f"max_iter={config.max_iter} epochs reached")

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

        arrays = {"params": host_float64(self.params)}
        for name, arr in self.optimizer.arrays().items():
            arrays[name] = host_float64(arr)
        if self.best_params is not None:
            arrays["best_params"] = host_float64(self.best_params)
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
            saved = meta.get("optimizer", {})
            n = int(self.params.shape[0])
            self.optimizer = restore_optimizer(saved, xp, n, self.optimizer)
            self.optimizer.load(state.arrays, saved)
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
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is incomplete or corrupt ({exc})") from None
        if self.params.shape[0] != self.penalty.mask.shape[0]:
            raise CheckpointError(f"checkpoint {path} holds parameters of the wrong size")


def _jsonable(d: dict[str, Any]) -> Any:
    return json.loads(json.dumps(d))


def solve_minibatch(
    problem: MinibatchProblem,
    params0: Array,
    *,
    tol: float,
    max_iter: int,
    callback: Callback | None = None,
    progress: Reporter | None = None,
) -> SolverResult:
    """Run a mini-batch fit, resuming from the problem's checkpoint when that file exists.

    Parameters
    ----------
    problem : MinibatchProblem
    params0 : array of shape (n_params,), float64
        Starting point (ignored when resuming).
    tol : float
        Improvement of the monitored value that resets the ``n_iter_no_change`` counter.
    max_iter : int
        Epochs at most.
    callback : callable(epoch, params, objective_estimate) -> bool, optional
        ``True`` stops after that epoch.
    progress : Reporter, optional
        Where every epoch is reported (the listener, the progress bar).

    Returns
    -------
    SolverResult
        ``n_iter`` counts epochs; ``history`` is a :class:`MinibatchHistory`.
    """
    from gpulogreg.checkpoint import load_checkpoint, save_checkpoint

    config = dataclasses.replace(problem.config, tol=float(tol), max_iter=int(max_iter))
    config.validate()
    fingerprint = dict(problem.fingerprint)
    fingerprint.update(config.fingerprint())
    trainer = MinibatchTrainer(
        params0,
        penalty=problem.penalty,
        config=config,
        seed=problem.seed,
        fingerprint=fingerprint,
    )
    path = problem.checkpoint_path
    if path is not None and os.path.exists(path):
        trainer.restore(load_checkpoint(path), path)
        if progress is not None:
            progress.note(f"minibatch: resuming from {path} after epoch {trainer.epoch}")
    save = None
    if path is not None:
        checkpoint = path

        def save(t: MinibatchTrainer) -> None:
            save_checkpoint(checkpoint, t.state())

    if trainer.finished:
        return trainer.result()
    backend = BoundBackend(problem.make_backend)
    return trainer.fit(problem.source, backend, progress=progress, callback=callback, save=save)
