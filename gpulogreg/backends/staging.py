"""Staging of prepared chunks on a GPU: pinned host buffers and a copy stream.

GPU streaming (``device="gpu"`` with host data): each chunk is copied into a
*pinned* host buffer and from there to a device buffer by an asynchronous copy
on a dedicated non-blocking copy stream; two slots (pinned + device buffer
each) alternate, so the copy of chunk ``i + 1`` overlaps the kernels of chunk
``i``. The compute stream waits on the copy's event before it reads a slot,
and a slot is refilled only after the compute that read it has finished. The
read-ahead thread and the slot ordering are the data layer's
(:class:`gpulogreg.data.pipeline.SlotPipeline`); :class:`PinnedStager` is the
:class:`~gpulogreg.data.pipeline.Stager` that moves a slot to the device.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["PinnedStager"]


class PinnedStager:
    """Host chunk -> pinned buffer -> device buffer on a copy stream, double buffered.

    Each slot owns a pinned host buffer and a device buffer for X (and small
    ones for the labels and weights), sized for the largest chunk. ``stage``
    (reader thread) waits until the slot's previous copy has finished with the
    pinned buffer, copies the chunk into it (a host memcpy), starts the
    asynchronous host-to-device copy on ``copy_stream`` and records an event.
    ``acquire`` (compute thread) makes the compute stream wait on that event,
    so kernels never read a half-copied slot; ``release`` records an event on
    the compute stream, which the next ``stage`` of the slot waits on before
    overwriting the device buffer.

    The copy stream is created non-blocking, so it does not serialise with
    the legacy default stream the kernels run on.
    """

    def __init__(
        self, cupy: ModuleType, max_rows: int, n_features: int, dtype: Any, n_slots: int = 2
    ) -> None:
        import cupyx

        self.cp = cupy
        self.n_slots = n_slots
        self.device_id = cupy.cuda.Device().id
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        shape = (max_rows, n_features)
        self.pinned_X = [cupyx.empty_pinned(shape, dtype=dtype) for _ in range(n_slots)]
        self.pinned_y = [cupyx.empty_pinned((max_rows,), dtype=np.int32) for _ in range(n_slots)]
        self.pinned_s = [cupyx.empty_pinned((max_rows,), dtype=np.float64) for _ in range(n_slots)]
        self.dev_X = [cupy.empty(shape, dtype=dtype) for _ in range(n_slots)]
        self.dev_y = [cupy.empty((max_rows,), dtype=cupy.int32) for _ in range(n_slots)]
        self.dev_s = [cupy.empty((max_rows,), dtype=cupy.float64) for _ in range(n_slots)]
        self.copied: list[Any] = [None] * n_slots
        self.computed: list[Any] = [None] * n_slots

    def stage(self, slot: int, item: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Any:
        X, y, s = item
        m = X.shape[0]
        with self.cp.cuda.Device(self.device_id):
            if self.copied[slot] is not None:
                self.copied[slot].synchronize()  # the pinned buffer is free again
            if self.computed[slot] is not None:
                self.computed[slot].synchronize()  # the device buffer is free again
            np.copyto(self.pinned_X[slot][:m], X)
            self.pinned_y[slot][:m] = y
            self.pinned_s[slot][:m] = s
            dX, dy, ds = self.dev_X[slot][:m], self.dev_y[slot][:m], self.dev_s[slot][:m]
            dX.set(self.pinned_X[slot][:m], stream=self.copy_stream)
            dy.set(self.pinned_y[slot][:m], stream=self.copy_stream)
            ds.set(self.pinned_s[slot][:m], stream=self.copy_stream)
            event = self.cp.cuda.Event(disable_timing=True)
            event.record(self.copy_stream)
            self.copied[slot] = event
        return dX, dy, ds

    def acquire(self, slot: int, staged: Any) -> Any:
        self.cp.cuda.get_current_stream().wait_event(self.copied[slot])
        return staged

    def release(self, slot: int) -> None:
        event = self.cp.cuda.Event(disable_timing=True)
        event.record(self.cp.cuda.get_current_stream())
        self.computed[slot] = event
