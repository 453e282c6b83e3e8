"""Errors any layer may raise (this module imports nothing)."""

from __future__ import annotations

__all__ = ["MissingDependencyError"]


class MissingDependencyError(ImportError):
    """An optional dependency is needed (the message says which extra installs it)."""
