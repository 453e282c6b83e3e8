"""The errors of device selection and device memory (raised by the registry and the GPU backend)."""

from __future__ import annotations

__all__ = ["GPUMemoryError", "GPUUnavailableError"]


class GPUUnavailableError(RuntimeError):
    """A GPU was asked for explicitly and none is usable (the message says why)."""


class GPUMemoryError(MemoryError):
    """The data do not fit in free GPU memory (the message points to the streaming path)."""
