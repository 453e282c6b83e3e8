"""gpulogreg: fast logistic regression for large data on the CPU (Numba) and the GPU (CUDA).

Importing the package has no side effects: it imports neither CuPy nor Numba
and touches no device.
"""

from gpulogreg._version import __version__
from gpulogreg.loss import loss_and_gradient

__all__ = ["__version__", "loss_and_gradient"]
