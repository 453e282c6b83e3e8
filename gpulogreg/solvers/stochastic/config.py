"""Configuration of a mini-batch fit: hyper-parameters, their validation, and the seed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError
from gpulogreg.solvers.stochastic.optimizers import OPTIMIZERS
from gpulogreg.solvers.stochastic.schedules import SCHEDULES

__all__ = ["MinibatchConfig", "resolve_seed"]


@dataclass
class MinibatchConfig:
    """Hyper-parameters of a mini-batch fit (see ``LogisticRegression``)."""

    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: str = "constant"
    eta0: float = 0.001
    momentum: float = 0.9
    max_iter: int = 100
    tol: float = 1e-6
    early_stopping: bool = False
    validation_fraction: float = 0.1
    n_iter_no_change: int = 5
    checkpoint_path: str | None = None
    checkpoint_every: int = 1

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MinibatchConfig:
        """The validated configuration named by an estimator's parameters (``get_params()``)."""
        names = [f.name for f in dataclasses.fields(cls)]
        config = cls(**{name: params[name] for name in names if name in params})
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise InputValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.learning_rate not in SCHEDULES:
            raise InputValueError(
                f"learning_rate must be one of {SCHEDULES}, got {self.learning_rate!r}"
            )
        if not _is_real(self.eta0) or not self.eta0 > 0 or not math.isfinite(self.eta0):
            raise InputValueError(f"eta0 must be a positive number, got {self.eta0!r}")
        if not _is_real(self.momentum) or not 0.0 <= self.momentum < 1.0:
            raise InputValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not _is_real(self.validation_fraction) or not 0.0 < self.validation_fraction < 1.0:
            raise InputValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if not _is_int(self.n_iter_no_change) or self.n_iter_no_change < 1:
            raise InputValueError(
                f"n_iter_no_change must be a positive integer, got {self.n_iter_no_change!r}"
            )
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise InputValueError(
                f"checkpoint_every must be a positive integer, got {self.checkpoint_every!r}"
            )
        if not _is_int(self.max_iter) or self.max_iter < 0:
            raise InputValueError(f"max_iter must be a non-negative integer, got {self.max_iter!r}")
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise InputValueError(f"early_stopping must be a bool, got {self.early_stopping!r}")

    def fingerprint(self) -> dict[str, Any]:
        """Settings that shape the trajectory (a checkpoint must match them to resume)."""
        return {
            "batch_size": int(self.batch_size),
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "eta0": float(self.eta0),
            "momentum": float(self.momentum),
            "max_iter": int(self.max_iter),
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
    raise InputValueError(
        f"random_state must be None, an int or a numpy random Generator, got {random_state!r}"
    )
