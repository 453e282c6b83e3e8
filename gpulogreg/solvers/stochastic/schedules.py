"""Learning-rate schedules of the mini-batch solver, at fractional epoch ``e``.

``constant``: ``eta0``; ``invscaling``: ``eta0 / sqrt(1 + e)``; ``cosine``:
``eta0 (1 + cos(pi e / max_iter)) / 2`` (``max_iter`` counts epochs).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpulogreg.solvers.stochastic.config import MinibatchConfig

__all__ = ["SCHEDULES", "learning_rate"]

SCHEDULES = ("constant", "invscaling", "cosine")
#: Exponent of the inverse-scaling schedule eta0 / (1 + e)^power (e in epochs):
#: 0.5 is the classical Robbins-Monro-compatible rate for convex problems.
INVSCALING_POWER = 0.5


def learning_rate(config: MinibatchConfig, epoch_progress: float) -> float:
    """The schedule's learning rate at fractional epoch ``epoch_progress``."""
    eta0 = float(config.eta0)
    if config.learning_rate == "constant":
        return eta0
    if config.learning_rate == "invscaling":
        return eta0 / (1.0 + epoch_progress) ** INVSCALING_POWER
    fraction = min(epoch_progress / max(config.max_iter, 1), 1.0)
    return eta0 * 0.5 * (1.0 + math.cos(math.pi * fraction))
