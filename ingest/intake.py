"""The delivery queue between paho's thread and the pipeline thread (``ingest.pipeline``).

``queue.Queue`` takes a lock and signals a condition on every ``put`` and every ``get``: ~4 %
of the interpreter's time at full load, in the two busiest threads (py-spy, bench/ingest.py).
``Intake`` is the same bounded FIFO for exactly one producer and one consumer on a ``deque``
(whose ``append`` and ``popleft`` are atomic in CPython) with an ``Event`` for "not empty":
a lock is taken only to wake a consumer that sleeps or a producer that waits for room.

Guarantees:
- FIFO; never more than ``maxsize`` items: ``put`` waits while the queue is full (paho's
  thread then stops reading the socket: TCP backpressure reaches the broker).
- A ``put`` never goes unseen by a waiting ``get``: the consumer clears the event and then looks
  at the deque again before it sleeps, and the producer sets the event after appending.
- The ``queue.Queue`` surface the pipeline and the forwarder use: ``put``, ``get(timeout)``,
  ``get_nowait`` (raising ``queue.Empty``), ``qsize``, and ``queue`` for the consumer's own
  peek at the oldest item (``RulesForwarder.pulse``, on the pipeline thread); and ``take(n)``,
  a group at once with one wake-up of the producer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Intake"]

T = TypeVar("T")


class Intake(Generic[T]):
    """A bounded FIFO for one producer thread and one consumer thread (module docstring)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.queue: deque[T] = deque()
        self._maxsize = maxsize
        self._nonempty = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._producer_waiting = False

    def qsize(self) -> int:
        return len(self.queue)

    def put(self, item: T) -> None:
        """Append ``item``, waiting while the queue holds ``maxsize`` items."""
        q = self.queue
        if len(q) >= self._maxsize:
            with self._room:
                self._producer_waiting = True
                while len(q) >= self._maxsize:
                    self._room.wait(0.1)  # a missed notify costs at most this
                self._producer_waiting = False
        q.append(item)
        if not self._nonempty.is_set():
            self._nonempty.set()

    def get_nowait(self) -> T:
        """The oldest item; ``queue.Empty`` if there is none."""
        try:
            item = self.queue.popleft()
        except IndexError:
            raise queue.Empty from None
        if self._producer_waiting:
            with self._room:
                self._room.notify()
        return item

    def take(self, max_items: int) -> list[T]:
        """Up to ``max_items`` of the oldest items (maybe none), with one wake-up of a waiting
        producer for all of them: taken one by one from a full queue, each would wake the
        producer to add one item and wait again, a thread switch per item."""
        q = self.queue
        n = min(max_items, len(q))
        items = [q.popleft() for _ in range(n)]
        if n and self._producer_waiting:
            with self._room:
                self._room.notify()
        return items

    def get(self, timeout: float) -> T:
        """The oldest item, waiting up to ``timeout`` seconds; ``queue.Empty`` after that."""
        deadline = time.monotonic() + timeout
        while True:
            if self.queue:
                return self.get_nowait()
            self._nonempty.clear()
            if self.queue:  # appended before the clear: its set() may have been erased
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not self._nonempty.wait(left):
                if self.queue:
                    continue
                raise queue.Empty
