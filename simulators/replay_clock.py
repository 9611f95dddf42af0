"""The clock a replay gives ingest, bounded by what the pipeline has actually seen.

A replay at 1440x turns every wall second into a simulated day's minute: a publisher or an
ingest process stalled for 0.4 s (a busy machine) is ten simulated minutes, the data-gap limit
(docs/rules.md 4.6). A clock driven by the wall clock alone keeps running through such a stall,
and the rules, judging silence per asset on its device clock (newest device time heard plus
the ingest time since), open data gaps that never happened.

``ReplayProgress`` is the replay's watermark, shared in one process by the publisher and the
clock given to ingest (``ReplayClock(progress=...)``), as forward mode's heartbeats give the
rules workers theirs (ingest/rules_order.py):

- the publisher reports, before waiting for each message, that everything due before that
  message's time was published (``advance``), and each message ingest subscribes to
  (``published``); it publishes a message only while its time is at most ``ahead_s`` past what
  ingest has processed (``may_publish``: a stalled ingest holds the publisher back);
- ingest's progress is a count of messages it has taken in and handed to the rules
  (``follow(ingest_progress(service))``): the n first published messages are processed once
  the count reaches n (a bound, not an identity: MQTT may reorder across connections).

The clock then never runs ahead of ``min(published, processed + ahead_s) + slack_s``: a stall on
either side stops it, so nobody's silence grows during it. A device that really goes silent
while the rest of the fleet talks (a coverage hole) is still seen as silent, on the same clock
as before: the others' messages move the watermark. When the whole fleet is silent the
publisher is idle, waiting for the next message, so everything before it counts as published
and the clock runs on the wall clock's pace as before.

Production runs on the wall clock; this is for the demo and the tests.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

__all__ = ["IngestLike", "ReplayClock", "ReplayProgress", "ingest_progress"]

log = logging.getLogger(__name__)

# Ingest subscribes to these kinds (rules on): the messages its count includes.
INGESTED_KINDS = frozenset({"telemetry", "events"})


class _Metrics(Protocol):
    @property
    def received_messages(self) -> int: ...


class _Rules(Protocol):
    def stats(self) -> dict[str, object]: ...


class IngestLike(Protocol):
    """What ``ingest_progress`` reads of an ``ingest.service.IngestService``."""

    @property
    def metrics(self) -> _Metrics: ...

    @property
    def evaluate(self) -> _Rules | None: ...


def ingest_progress(service: IngestLike) -> Callable[[], int]:
    """Messages ``service`` took in (spooled and acknowledged, or dead-lettered) minus those
    still queued for its rules: what its rules have seen (one rules item per message)."""

    def processed() -> int:
        # The count before the queue: a group counted as received but not queued yet for the
        # rules (its acks go first) is then at worst counted late, not early - unless both
        # reads fall between the two (at most one group early: ``ahead_s`` bounds a group).
        received = service.metrics.received_messages
        depth = 0
        if service.evaluate is not None:
            queued = service.evaluate.stats().get("rules_queue_depth", 0)
            depth = queued if isinstance(queued, int) else 0
        return received - depth

    return processed


class ReplayProgress:
    """A replay's watermark: what was published and what ingest processed, in epoch ms of
    simulated time. Thread-safe; the publisher writes, ingest's clock reads.

    ``ahead_s``: how far (simulated seconds) publishing may run ahead of what ingest processed.
    The silence the rules may see at worst is ``2 x ahead_s`` (in flight, plus one group counted
    as processed while it is being queued for the rules) plus the clock's slack plus the device's
    own interval: 180 s keeps it at 8 of the data gap's 10 min with 60 s samples.
    ``patience_s``: after this long (wall seconds) without ingest's count moving while the
    publisher waits, the missing messages are taken as lost (a warning; ``lost``) so that a
    message the broker never delivered does not hold the replay for ever.
    """

    def __init__(
        self, start: datetime, *, ahead_s: float = 180.0, patience_s: float = 10.0
    ) -> None:
        self.ahead_ms = ahead_s * 1000.0
        self.patience_s = patience_s
        self._lock = threading.Lock()
        self._published_ms = start.timestamp() * 1000.0  # everything due before it is out
        self._times: list[float] = []  # pace time (ms) of each ingested message, in order
        self._processed: Callable[[], int] = lambda: 0
        self._base = 0  # the count when followed
        self._seen = 0  # the highest count read (the count may dip while a group is queued)
        self.lost = 0

    def follow(self, processed: Callable[[], int]) -> None:
        """Take ingest's progress from ``processed()`` (a count, see ``ingest_progress``),
        counting from its value now."""
        with self._lock:
            self._processed = processed
            self._base = processed()
            self._seen = 0

    def advance(self, sim_ms: float) -> None:
        """Publisher: everything due before ``sim_ms`` has been published."""
        with self._lock:
            self._published_ms = max(self._published_ms, sim_ms)

    def published(self, sim_ms: float, kind: str) -> None:
        """Publisher: one message of ``kind`` at simulated time ``sim_ms`` is out."""
        with self._lock:
            self._published_ms = max(self._published_ms, sim_ms)
            if kind in INGESTED_KINDS:
                last = self._times[-1] if self._times else -math.inf
                self._times.append(max(last, sim_ms))

    def close(self) -> None:
        """Publisher: the stream is over; only ingest's progress bounds the clock now."""
        self.advance(math.inf)

    def processed_count(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        self._seen = max(self._seen, self._processed() - self._base)
        return self._seen + self.lost

    def processed_ms(self) -> float:
        """Everything published before this simulated time (ms) has been processed."""
        with self._lock:
            return self._processed_ms()

    def _processed_ms(self) -> float:
        n = self._count()
        return self._times[n] if n < len(self._times) else self._published_ms

    def bound_ms(self) -> float:
        """The newest simulated time (ms) ingest's clock may show, before slack."""
        with self._lock:
            return min(self._published_ms, self._processed_ms() + self.ahead_ms)

    def may_publish(self, sim_ms: float) -> bool:
        """Whether a message at ``sim_ms`` is within ``ahead_s`` of what ingest processed."""
        with self._lock:
            return sim_ms <= self._processed_ms() + self.ahead_ms

    def hold(
        self,
        sim_ms: float,
        wait: Callable[[float], None],
        stop: threading.Event | None = None,
    ) -> float:
        """Publisher: return once a message at ``sim_ms`` may go out (``may_publish``), calling
        ``wait(seconds)`` meanwhile (the publisher's socket pump), or once ``stop`` is set.
        Gives up on messages ingest's count has not moved for in ``patience_s``. Returns the
        wall seconds it held."""
        if self.may_publish(sim_ms):
            return 0.0
        t0 = last_move = time.monotonic()
        count = self.processed_count()
        while not self.may_publish(sim_ms) and not (stop is not None and stop.is_set()):
            wait(0.002)
            now = time.monotonic()
            if self.processed_count() != count:
                count, last_move = self.processed_count(), now
            elif now - last_move > self.patience_s:
                self.give_up_waiting()
        return time.monotonic() - t0

    def give_up_waiting(self) -> int:
        """Take every message not yet processed as lost; returns how many."""
        with self._lock:
            missing = max(0, len(self._times) - self._count())
            self.lost += missing
        if missing:
            log.warning("replay: %d published messages never reached ingest; going on", missing)
        return missing

    def in_flight_at(self, sim_ms: float) -> int:
        """Messages published up to ``sim_ms`` not yet processed (for reports and tests)."""
        with self._lock:
            return max(0, bisect_right(self._times, sim_ms) - self._count())


class ReplayClock:
    """Epoch ms on a replay's accelerated clock: the simulated time being published now. Give
    it to ingest (``IngestService(clock_ms=...)``) so the rules judge silence on that clock.

    Before ``begin`` it reads the window's start; it never runs ahead of the wall clock, nor
    past ``end`` (the window's end) when given: a replay of a past window stops there instead
    of racing on at ``speedup`` while ingest drains, which would make every device look silent
    for hours and open data gaps that never happened.

    With ``progress`` it also never runs more than ``slack_s`` (one sample interval) past
    ``progress.bound_ms()``: what was published and what ingest processed (module docstring).
    It never goes back.
    """

    def __init__(
        self,
        start: datetime,
        speedup: float,
        end: datetime | None = None,
        wall: Callable[[], float] | None = None,
        *,
        progress: ReplayProgress | None = None,
        slack_s: float = 60.0,
    ) -> None:
        """``wall``: epoch seconds (a test passes one it can pause, as it does to the
        publisher's ``SimClock``)."""
        self._start_ms = start.timestamp() * 1000.0
        self._end_ms = math.inf if end is None else end.timestamp() * 1000.0
        self._speedup = speedup
        self._wall = wall if wall is not None else lambda: time.time()
        self._wall0: float | None = None
        self.progress = progress
        self._slack_ms = slack_s * 1000.0
        self._last = -math.inf

    def begin(self, at_s: float | None = None) -> None:
        """Start the replay now, or at wall-clock epoch second ``at_s`` (processes that share
        one replay pass the same origin)."""
        self._wall0 = self._wall() if at_s is None else at_s

    def paced_ms(self) -> float:
        """The wall clock's part alone: start + elapsed x speedup, capped at ``end`` and the
        wall clock (ms)."""
        wall = self._wall()
        if self._wall0 is None:
            return self._start_ms
        sim_ms = self._start_ms + (wall - self._wall0) * 1000.0 * self._speedup
        return min(sim_ms, self._end_ms, wall * 1e3)

    def __call__(self) -> int:
        now = self.paced_ms()
        if self.progress is not None and self._wall0 is not None:
            now = min(now, self.progress.bound_ms() + self._slack_ms)
        # Several threads read it; a count that dips while a group is queued must not move
        # the clock back.
        now = max(now, self._last)
        self._last = now
        return int(now)
