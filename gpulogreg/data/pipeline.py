"""Read-ahead of chunks on a background thread, through numbered slots.

:class:`SlotPipeline` reads the next item of any iterable (a dataset's chunks)
while the caller computes on the previous one, with at most ``n_slots`` items
in flight. What "staging into a slot" means is a :class:`Stager`'s business:
:class:`HostStager` uses items where they are (the slots only bound the
read-ahead); the GPU's pinned-buffer stager
(:class:`gpulogreg.backends.staging.PinnedStager`) copies them to the device.
The ordering rules a device relies on are plain host logic here, tested
without a GPU through a fake stager.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

__all__ = ["HostStager", "SlotPipeline", "Stager"]


class Stager(Protocol):
    """Moves prepared host chunks into numbered slots and hands them to the compute side.

    ``stage`` runs on the reader thread, ``acquire`` and ``release`` on the
    compute thread, always in the order stage(i) -> acquire(i) -> release(i)
    for a given slot; a slot is staged again only after it was released.
    """

    n_slots: int

    def stage(self, slot: int, item: Any) -> Any: ...

    def acquire(self, slot: int, staged: Any) -> Any: ...

    def release(self, slot: int) -> None: ...


class HostStager:
    """No device: chunks are used where they are (slots only bound the read-ahead)."""

    def __init__(self, n_slots: int = 2) -> None:
        self.n_slots = n_slots

    def stage(self, slot: int, item: Any) -> Any:
        return item

    def acquire(self, slot: int, staged: Any) -> Any:
        return staged

    def release(self, slot: int) -> None:
        return None


class SlotPipeline:
    """Read ahead and stage chunks on a background thread, ``n_slots`` in flight at most.

    Slot ``i % n_slots`` holds item ``i``. The reader thread takes a free slot
    (blocking until the compute side released it), reads the next item,
    prepares it (``prepare``, e.g. label encoding) and stages it; the compute
    side receives items in order, ``acquire`` makes them usable (on a GPU: the
    compute stream waits for the slot's copy) and ``release`` frees the slot
    after the caller is done with it (the caller's computation has finished:
    every inner backend call ends with a host scalar, which synchronises).

    With ``threaded=False`` the same protocol runs inline (no overlap).
    Exceptions raised while reading are re-raised on the compute side; leaving
    the loop early stops the reader.
    """

    def __init__(
        self,
        items: Iterable[Any],
        stager: Stager,
        *,
        prepare: Callable[[Any], Any] | None = None,
        threaded: bool = True,
    ) -> None:
        self.items = items
        self.stager = stager
        self.prepare = prepare or (lambda item: item)
        self.threaded = threaded

    def __iter__(self) -> Iterator[Any]:
        if not self.threaded:
            yield from self._inline()
            return
        yield from self._threaded()

    def _inline(self) -> Iterator[Any]:
        n = self.stager.n_slots
        for i, item in enumerate(self.items):
            slot = i % n
            staged = self.stager.stage(slot, self.prepare(item))
            try:
                yield self.stager.acquire(slot, staged)
            finally:
                self.stager.release(slot)

    def _threaded(self) -> Iterator[Any]:
        n = self.stager.n_slots
        free = threading.Semaphore(n)
        ready: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        stop = threading.Event()

        def reader() -> None:
            try:
                iterator = iter(self.items)
                i = 0
                while True:
                    free.acquire()
                    if stop.is_set():
                        return
                    try:
                        item = next(iterator)
                    except StopIteration:
                        ready.put(("end", -1, None))
                        return
                    slot = i % n
                    ready.put(("item", slot, self.stager.stage(slot, self.prepare(item))))
                    i += 1
            except BaseException as exc:
                ready.put(("error", -1, exc))

        thread = threading.Thread(target=reader, name="gpulogreg-chunk-reader", daemon=True)
        thread.start()
        try:
            while True:
                kind, slot, payload = ready.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                try:
                    yield self.stager.acquire(slot, payload)
                finally:
                    self.stager.release(slot)
                    free.release()
        finally:
            stop.set()
            for _ in range(n):  # wake the reader wherever it waits for a slot
                free.release()
            thread.join(timeout=60)
