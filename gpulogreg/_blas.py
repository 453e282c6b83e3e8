"""OpenBLAS's threads next to Numba's: BLAS held to one thread where Numba kernels run.

OpenBLAS's worker threads keep spinning for a while after each call that
used them, and Numba's workers after each parallel region. On a machine with
as many cores as threads, whichever side runs next shares its cores with the
other side's spinning workers. Two places meet this:

* the BLAS parts of a Numba backend (the dense Hessian's chunked SYRK, the
  quadratic forms of ``predict_se``), which run their chunks single-threaded
  on a pool of Python threads instead (see
  :func:`gpulogreg.backends.numba_backend._weighted_syrk`);
* a solver driving Numba kernels: its vector arithmetic (CG's and L-BFGS's
  dot products) calls BLAS, and OpenBLAS threads a ``ddot`` above 10,000
  entries. Measured on a 2-core AMD EPYC (Zen 3), the text-like CSR set
  (200,000 x 100,000, 2e7 values, float32), Newton-CG on the Numba
  backend: each Hessian-vector product took 86-88 ms after CG's dot
  products against 44-49 ms alone, and the fit 6.2 s against 3.5 s with
  BLAS on one thread. A ``ddot`` of 100,000 entries takes about 20 us on
  one thread, so nothing is lost.

:func:`one_blas_thread` is the one switch both use.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any

__all__ = ["one_blas_thread"]


@lru_cache(maxsize=1)
def _controller() -> Any:
    import threadpoolctl

    return threadpoolctl.ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which every loaded BLAS library runs on one thread (threadpoolctl).

    Nests (the previous limits come back on exit) and costs tens of
    microseconds, so it can wrap a single call as well as a whole fit.
    """
    limiter: AbstractContextManager[Any] = _controller().limit(limits=1, user_api="blas")
    return limiter
