"""A stand-in ``cupy`` module on NumPy memory, with several fake devices and allocation tracking.

Tests install it in ``sys.modules`` (see :func:`install`) and run the CuPy
backend's own code on it, with the host emulation of the kernels:

* :class:`DeviceArray` (the module's ``ndarray``) is NumPy memory that says
  which fake device holds it; ``a.device`` is a context manager that makes
  that device current, like ``cupy.cuda.Device``.
* Every array operation -- a function of the module (``xp.empty``,
  ``xp.matmul``, ...), a ufunc or an array function on a :class:`DeviceArray`
  (``X @ w``, ``r.sum()``) -- checks that the current device is the one
  holding its arrays (CuPy runs it on the current device, whatever device the
  arrays are on) and records a violation otherwise.
* Every new block of memory an operation returns is counted while it lives
  (NumPy frees arrays as soon as the last reference goes, as CuPy returns
  them to its pool), so a test can measure the bytes a method holds at its
  peak.
"""

from __future__ import annotations

import sys
import types
import weakref
from typing import Any

import numpy as np
import pytest


class FakeState:
    """What the fake module saw: the device stack, violations, live and peak bytes."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.violations: list[tuple[str, int, int]] = []
        self.live = 0
        self.peak = 0
        #: Device-to-host transfers: ``.get()``, ``float()``, ``bool()``, ``.item()``...
        self.transfers = 0

    @property
    def current(self) -> int:
        """The current device (0 unless a ``with device:`` block says otherwise)."""
        return self.stack[-1] if self.stack else 0

    def check(self, what: str, device_id: int) -> None:
        if self.current != device_id:
            self.violations.append((what, device_id, self.current))

    def allocated(self, a: np.ndarray) -> None:
        nbytes = int(a.nbytes)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(a, self._freed, nbytes)

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def reset_peak(self) -> int:
        """Start measuring a new peak; returns the bytes live now."""
        self.peak = self.live
        return self.live


STATE = FakeState()


class FakeDevice:
    """Context manager making a fake device current (``cupy.cuda.Device``)."""

    def __init__(self, device_id: int = 0) -> None:
        self.id = int(device_id)

    def __enter__(self) -> FakeDevice:
        STATE.stack.append(self.id)
        return self

    def __exit__(self, *exc: Any) -> None:
        STATE.stack.pop()


def _plain(value: Any) -> Any:
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _wrap(result: Any, device_id: int) -> Any:
    """Results as DeviceArrays on ``device_id``; count the memory of those that own it."""
    if isinstance(result, tuple):
        return tuple(_wrap(r, device_id) for r in result)
    if isinstance(result, np.generic):  # CuPy's reductions and indexing give 0-d arrays
        result = np.asarray(result)
    if not isinstance(result, np.ndarray):
        return result
    if isinstance(result, DeviceArray):
        return result
    if result.base is None:
        STATE.allocated(result)
    out = result.view(DeviceArray)
    out.device_id = device_id
    return out


def _device_of(values: Any, default: int) -> int:
    for value in values:
        if isinstance(value, DeviceArray):
            return value.device_id
    return default


class DeviceArray(np.ndarray):
    """NumPy memory on a fake device; operations check the current device."""

    device_id = 0

    def __array_finalize__(self, obj: Any) -> None:
        self.device_id = getattr(obj, "device_id", STATE.current)
        if self.base is None:  # new memory made as a DeviceArray (astype, copy)
            STATE.allocated(self)

    @property
    def device(self) -> FakeDevice:  # type: ignore[override]
        return FakeDevice(self.device_id)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(super().__getitem__(key), self.device_id)

    # -- what brings data to the host (each one synchronises on a real GPU) --------
    def get(self) -> np.ndarray:
        STATE.transfers += 1
        return np.array(self.view(np.ndarray))

    def __float__(self) -> float:
        STATE.transfers += 1
        return float(self.view(np.ndarray))

    def __bool__(self) -> bool:
        STATE.transfers += 1
        return bool(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        STATE.transfers += 1
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        STATE.transfers += 1
        return self.view(np.ndarray).tolist()

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        device_id = _device_of((*inputs, *kwargs.get("out", ())), self.device_id)
        STATE.check(f"{ufunc.__name__}.{method}", device_id)
        if "out" in kwargs:
            kwargs["out"] = _plain(kwargs["out"])
        result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        return _wrap(result, device_id)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        STATE.check(func.__name__, self.device_id)
        return _wrap(super().__array_function__(func, types_, args, kwargs), self.device_id)


class FakeCupyModule(types.ModuleType):
    """``cupy``: NumPy's functions, checked against the current device, returning DeviceArrays."""

    ndarray = DeviceArray

    def __init__(self) -> None:
        super().__init__("cupy")
        self.cuda = types.SimpleNamespace(Device=FakeDevice)

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if isinstance(value, type) or not callable(value):
            return value  # dtypes, constants

        def checked(*args: Any, **kwargs: Any) -> Any:
            device_id = _device_of(args, STATE.current)
            STATE.check(name, device_id)
            return _wrap(value(*args, **kwargs), device_id)

        return checked


def on_device(a: Any, device_id: int) -> DeviceArray:
    """A DeviceArray view of ``a`` on fake device ``device_id`` (no new memory)."""
    out = np.asarray(a).view(DeviceArray)
    out.device_id = device_id
    return out


def install(monkeypatch: pytest.MonkeyPatch) -> FakeState:
    """Put a fresh fake ``cupy`` in ``sys.modules`` for one test; returns its state."""
    global STATE
    STATE = FakeState()
    monkeypatch.setitem(sys.modules, "cupy", FakeCupyModule())
    return STATE
