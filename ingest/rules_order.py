"""The rules stage of a rules worker: forwarded items in ingest receive-time order.

Items of one asset reach its worker from several ingest processes, each after its own InfluxDB
write, so their arrival order is not the order the devices were heard in. One ingest process
with its rules in process evaluates in receive order and judges silence on its clock; the
worker reproduces that with a watermark. Every ingest process sends each partition, after the
items it forwarded, heartbeats "everything I received before T is forwarded" (its clock; in
order on the same topic). The watermark W is the lowest T of the ingest processes heard from in
the last ``expire_s`` (a process that stopped for good stops holding it back). Items wait in a
reorder buffer and are evaluated in (receive time, arrival) order once their receive time is at
or below W; data gaps are judged on receive times at W, never past an item still waiting. So
the outcome does not depend on forwarding delays or on which process received what.

Without heartbeats (none heard for ``expire_s``) items leave the buffer after ``reorder_s`` of
wall time and silence is judged ``lag_ms`` behind the clock.

Guarantees (on top of ``EvaluateStage``'s): an item is acknowledged only once it has left the
buffer and a checkpoint covers it (``fed_through`` stops below the buffer); what waits in the
buffer comes back from the broker after a crash. A heartbeat is acknowledged when received
(a lost one only delays the watermark until the next).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from typing import Any

from ingest.evaluate import EvaluateStage
from ingest.rules_inbox import Item
from ingest.rules_io import Accepted, FleetUpdate, Heartbeat

__all__ = ["OrderedStage"]


class OrderedStage(EvaluateStage):
    """``EvaluateStage`` with a watermark and a reorder buffer (see the module docstring)."""

    def __init__(
        self, *args: Any, reorder_s: float, lag_ms: int, expire_s: float = 10.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._reorder_s = reorder_s
        self._lag_ms = lag_ms
        self._expire_s = expire_s
        # (receive time, arrival number, arrival monotonic time, item)
        self._heap: list[tuple[int, int, float, Item | FleetUpdate]] = []
        self._arrival = itertools.count()
        self._last_received = 0  # for items without a receive time (custody, recompute)
        self._beats: deque[Heartbeat] = deque()  # appended by paho's thread
        self._beats_lock = threading.Lock()
        self._marks: dict[str, tuple[int, float]] = {}  # source -> (T, monotonic when heard)
        self._watermark: int | None = None
        self._feeding: Accepted | None = None

    def heartbeat(self, hb: Heartbeat) -> None:
        """paho's thread, in delivery order with ``submit``."""
        with self._beats_lock:
            self._beats.append(hb)
        self._wake.set()

    def buffered_min_row(self) -> int | None:
        """The smallest row id still in the buffer (not evaluated: not to be acknowledged)."""
        return min((entry[3].row_id for entry in self._heap), default=None)

    def _state(self) -> dict[str, object]:
        state = super()._state()
        buffered = self.buffered_min_row()
        fed = state.get("fed_through")
        if buffered is not None and isinstance(fed, int):
            state["fed_through"] = min(fed, buffered - 1)
        return state

    def idle(self) -> bool:
        return not self._heap and super().idle()

    def stats(self) -> dict[str, object]:
        return super().stats() | {
            "rules_reorder_buffered": len(self._heap),
            "rules_watermark_sources": len(self._marks),
        }

    def _update_watermark(self, mono: float) -> None:
        # Heartbeats first, then the inbox: an item delivered before a heartbeat is then
        # always in the buffer before the heartbeat moves the watermark past it.
        with self._beats_lock:
            beats, self._beats = self._beats, deque()
        for hb in beats:
            old = self._marks.get(hb.source)
            t = hb.received_ms if old is None else max(old[0], hb.received_ms)
            self._marks[hb.source] = (t, mono)
        live = [t for t, at in self._marks.values() if mono - at <= self._expire_s]
        self._watermark = min(live) if live else None

    def _take(self, max_items: int = 500) -> list[Item | FleetUpdate | None]:
        mono = time.monotonic()
        self._update_watermark(mono)
        taken = super()._take(max_items=1_000_000)
        stop = bool(taken) and taken[-1] is None
        for item in taken:
            if item is None:
                continue
            rec = item.received_ms if isinstance(item, Accepted) else None
            if rec is None:
                rec = self._last_received
            self._last_received = max(self._last_received, rec)
            heapq.heappush(self._heap, (rec, next(self._arrival), mono, item))
        out: list[Item | FleetUpdate | None] = []
        heap, wm, ripe = self._heap, self._watermark, mono - self._reorder_s
        while heap and len(out) < max_items:
            rec, _, arrived, _ = heap[0]
            if not (stop or (rec <= wm if wm is not None else arrived <= ripe)):
                break
            out.append(heapq.heappop(heap)[3])
        if stop:
            out.append(None)
        return out

    def _silence_clock_ms(self) -> int:
        now = self._clock_ms()
        t = now - self._lag_ms if self._watermark is None else min(now, self._watermark)
        return min(t, self._heap[0][0]) if self._heap else t

    def _feed(self, item: Item) -> list[Any]:
        self._feeding = item if isinstance(item, Accepted) else None
        ref = self._feeding.ref_ms if self._feeding is not None else None
        self.engine.clocks.external_reference_ms = ref
        try:
            return super()._feed(item)
        finally:
            self._feeding = None

    def _hear(self, asset_id: str, newest_ms: int, now: int) -> None:
        # Heard when the ingest process received it, as a process with its rules in process.
        rec = self._feeding.received_ms if self._feeding is not None else None
        super()._hear(asset_id, newest_ms, now if rec is None else min(rec, now))
