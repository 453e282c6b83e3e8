"""Mini-batch update rules: SGD with heavy-ball momentum, and Adam.

Each optimiser keeps its state in the parameters' array namespace ``xp`` and
returns, with the updated parameters, the step it took per coordinate (a
scalar for SGD, Adam's preconditioned vector), which scales the L1 proximal
step that follows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpulogreg._errors import InputValueError
from gpulogreg._typing import Array

__all__ = ["OPTIMIZERS", "SGD", "Adam", "make_optimizer", "restore_optimizer"]

OPTIMIZERS = ("sgd", "adam")
#: Adam's moment decay rates and denominator guard (Kingma & Ba's defaults,
#: also scikit-learn's and PyTorch's).
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


class SGD:
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
        return {"name": "sgd", "momentum": self.momentum}


class Adam:
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
        return {"name": "adam", "adam_t": self.t}


def make_optimizer(name: str, xp: Any, n_params: int, momentum: float) -> SGD | Adam:
    """The optimiser called ``name`` ("adam" or "sgd") for ``n_params`` parameters."""
    return Adam(xp, n_params) if name == "adam" else SGD(xp, n_params, momentum)


def restore_optimizer(
    meta: dict[str, Any], xp: Any, n_params: int, default: SGD | Adam
) -> SGD | Adam:
    """The optimiser a saved state names (its ``meta()``), or ``default`` when it names none.

    A trainer keeps the optimiser it was built with even when ``optimizer`` or
    ``momentum`` changes between ``partial_fit`` calls, so its state says
    which one it is (states written before it did are read with ``default``).
    """
    name = meta.get("name")
    if name is None:
        return default
    if name not in OPTIMIZERS:
        raise InputValueError(f"unknown optimizer {name!r}")
    return make_optimizer(name, xp, n_params, float(meta.get("momentum", 0.0)))
