"""Stage 5 in scale-out mode, forward: accepted samples to the rules workers' partition topics.

With ``rules.mode = "forward"`` ingest runs no rules. After a message's points are in
InfluxDB, its samples (and custody changes) are published QoS 1 to ``coldchain/v1/rules/<k>``,
``k`` = ``partition_of(asset id)``; one ``coldchain rules`` worker owns each partition
(``ingest.rules_worker``).

Guarantees:
- Forwarded only once InfluxDB confirmed the message's spool row (the writer's high-water
  mark): a worker's recompute after late data reads every process's forwarded samples back.
- In spool-row order per process, so one device's samples through one process stay in order.
- At least once: the spool's rules journal names what was acknowledged to devices and not yet
  acknowledged by the broker (PUBACK) as forwarded; it is pruned only through what was. After a
  crash the restarted process sends, per asset in the journal, a recompute request (asset, oldest
  device time) once its spool backlog is in InfluxDB: the worker rebuilds the asset from
  InfluxDB. A spool that was replaced has no journal: every asset gets a request from its
  checkpointed time. Repeats are harmless (the worker drops exact redeliveries; a recompute is
  idempotent).
- Heartbeats: between groups the pipeline says how far this process has received (``pulse``);
  the heartbeat goes to every partition after the items submitted before it, so a worker
  knows every item this process received before that time has reached it (its watermark,
  ``ingest.rules_order``). Each item carries this process's fleet clock reference
  (``ClockReference``): clock skew is judged against the whole fleet, which a partition
  does not see.
- Never blocks the pipeline: items wait in memory (bounded by the spool's unwritten rows).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from coldchain.contract import Sample, ts_ms
from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet
from coldchain.rules import partition_of, rules_topic
from ingest.channels import PublishHandle
from ingest.intake import Intake
from ingest.rules_io import Accepted, CustodyChange, Heartbeat, RecomputeRequest

__all__ = [
    "ClockReference",
    "ForwardedItem",
    "RulesForwarder",
    "decode_forwarded",
    "encode_forwarded",
]

log = logging.getLogger("coldchain.ingest.forward")

ForwardedItem = Accepted | CustodyChange | RecomputeRequest | Heartbeat


class _Wire(BaseModel):
    """One forwarded item on a partition topic (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    kind: Literal["samples", "custody", "recompute", "heartbeat"]
    asset: str = ""
    device: str = ""
    received_ms: int | None = None
    ref_ms: int | None = None
    source: str = ""
    samples: list[Sample] = []
    compartment: str = ""
    ts_ms: int = 0  # custody: the scan's time; recompute: from this device time (< 0: checkpoint)
    to_ms: int | None = None  # recompute: up to at least this device time (absent: all stored)


def encode_forwarded(item: ForwardedItem) -> bytes:
    """The JSON payload of one item (its ``row_id`` is local to the sender and not sent)."""
    if isinstance(item, Accepted):
        w = _Wire(
            kind="samples",
            asset=item.asset_id,
            device=item.device_id,
            received_ms=item.received_ms,
            samples=list(item.samples),
            ref_ms=item.ref_ms,
        )
    elif isinstance(item, Heartbeat):
        w = _Wire(kind="heartbeat", source=item.source, received_ms=item.received_ms)
    elif isinstance(item, CustodyChange):
        w = _Wire(kind="custody", asset=item.asset_id, compartment=item.compartment_id)
        w = w.model_copy(update={"ts_ms": item.ts_ms})
    else:
        w = _Wire(kind="recompute", asset=item.asset_id, ts_ms=item.from_ms, to_ms=item.to_ms)
    return w.model_dump_json(exclude_defaults=True).encode()


def decode_forwarded(payload: bytes, row_id: int) -> ForwardedItem:
    """Parse a forwarded payload into the rules stage's item, numbered ``row_id`` by the
    receiver. Raises ValueError with pydantic's reason on a malformed payload."""
    try:
        w = _Wire.model_validate_json(payload)
    except ValidationError as exc:
        raise ValueError(f"malformed forwarded rules item: {exc}") from exc
    if w.kind != "heartbeat" and not w.asset:
        raise ValueError(f"malformed forwarded rules item: a {w.kind} item needs its asset")
    if w.kind == "samples":
        return Accepted(w.asset, w.samples, row_id, w.device, w.received_ms, w.ref_ms)
    if w.kind == "heartbeat":
        if not w.source or w.received_ms is None:
            raise ValueError("malformed forwarded rules item: a heartbeat needs its source/time")
        return Heartbeat(w.source, w.received_ms, row_id)
    if w.kind == "custody":
        return CustodyChange(w.asset, w.compartment, w.ts_ms, row_id)
    return RecomputeRequest(w.asset, w.ts_ms, row_id, w.to_ms)


class ClockReference:
    """The fleet's clock reference as one ingest process sees it: the median offset (device
    time - receive time, ms) of the devices heard live in the last ``window_ms`` of receive
    time, capped at 0; 0 with fewer than ``min_fleet`` devices. The same quantity
    ``coldchain.rules.ClockWatch`` computes over the whole fleet in a process with its rules in
    process; a rules worker sees only its partitions, so the receiving process sends it along.
    Recomputed at most every ``max_age_ms`` of receive time."""

    def __init__(
        self, window_ms: int = 600_000, min_fleet: int = 3, max_age_ms: int = 1_000
    ) -> None:
        self._window_ms, self._min_fleet, self._max_age_ms = window_ms, min_fleet, max_age_ms
        self._devices: dict[str, tuple[int, int]] = {}  # device -> (received, offset)
        self._ref, self._at = 0, -(2**62)

    def observe(self, device_id: str, device_ms: int, received_ms: int) -> int:
        """Record one live message; returns the reference at its receive time."""
        self._devices[device_id] = (received_ms, device_ms - received_ms)
        if received_ms - self._at >= self._max_age_ms or received_ms < self._at:
            since = received_ms - self._window_ms
            recent = [off for rec, off in self._devices.values() if rec >= since]
            ref = round(statistics.median(recent)) if len(recent) >= self._min_fleet else 0
            self._ref, self._at = min(0, ref), received_ms
        return self._ref


class RulesForwarder:
    """Run ``run()`` in its own thread; ``submit_many()`` from the pipeline after acks.

    ``publish(topic, payload)``: one QoS 1 publish, returning its handle; ``written_through()``:
    the writer's InfluxDB high-water spool row; ``journal_since(row)``/``prune_journal(row)``:
    the spool's rules journal.
    """

    def __init__(
        self,
        fleet: Fleet,
        publish: Callable[[str, bytes], PublishHandle],
        *,
        partitions: int,
        written_through: Callable[[], int],
        connected: Callable[[], bool] = lambda: True,
        journal_since: Callable[[int], dict[str, int]] = lambda row: {},
        journal_newest_since: Callable[[int], dict[str, int | None]] | None = None,
        prune_journal: Callable[[int], None] = lambda row: None,
        ack_timeout_s: float = 10.0,
        prune_s: float = 1.0,
        batch: int = 1000,
        source: str = "ingest",
        heartbeat_s: float = 0.1,
    ) -> None:
        self._fleet = fleet
        self._source = source
        self._clock_ref = ClockReference()
        self._heartbeat_s = heartbeat_s
        self._beat_at = 0.0
        self._publish = publish
        self._partitions = partitions
        self._written_through = written_through
        self._connected = connected
        self._journal_since = journal_since
        self._journal_newest_since = journal_newest_since
        self._prune_journal = prune_journal
        self._ack_timeout_s = ack_timeout_s
        self._prune_s = prune_s
        self._batch = batch
        self._queue: deque[ForwardedItem] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._submitted = 0
        self._forwarded_row = 0  # every row up to here is forwarded (PUBACK) or was not journaled
        self._pruned = (0, 0.0)
        self.forwarded_total = 0
        self.recompute_requests_total = 0
        self.republished_total = 0
        self.heartbeats_total = 0

    def resume(self, backlog_row: int, *, spool_replaced: bool = False) -> None:
        """Queue recompute requests for what was acknowledged and maybe not forwarded before
        this start: per asset in the journal from its oldest device time, or every asset of the
        fleet (from the worker's checkpoint) when the spool was replaced. They go out once the
        backlog (rows up to ``backlog_row``) is in InfluxDB."""
        oldest: dict[str, int] = {}
        newest: dict[str, int | None] = {}  # how far each must read (None: all stored)
        if spool_replaced:
            oldest = {a: -1 for a in self._fleet.assets}
        else:
            reached = self._journal_newest_since(0) if self._journal_newest_since else {}
            for device, from_ms in self._journal_since(0).items():
                found = self._fleet.asset_of(device)
                if found is not None:
                    oldest[found.id] = min(from_ms, oldest.get(found.id, from_ms))
                    to_ms, had = reached.get(device), newest.get(found.id, -1)
                    top = None if to_ms is None or had is None else max(to_ms, had)
                    newest[found.id] = top
        with self._lock:
            for asset, from_ms in sorted(oldest.items()):
                to = newest.get(asset)
                self._queue.append(RecomputeRequest(asset, from_ms, backlog_row, to))
                self.recompute_requests_total += 1
        if oldest:
            log.info("rules forward: %d assets to recompute after the restart", len(oldest))
            self._wake.set()

    def submit_many(self, items: Iterable[ForwardedItem]) -> None:
        """Never blocks; items are forwarded once their spool rows are in InfluxDB."""
        with self._lock:
            for item in items:
                self._queue.append(item)
                self._submitted += 1
        self._wake.set()

    def heartbeat(self, received_ms: int, row_id: int) -> None:
        """Everything received before ``received_ms`` (this process's clock) has been
        submitted, up to spool row ``row_id``: sent to every partition after those items (a
        newer heartbeat replaces one still queued)."""
        hb = Heartbeat(self._source, received_ms, row_id)
        with self._lock:
            if self._queue and isinstance(self._queue[-1], Heartbeat):
                self._queue[-1] = hb
            else:
                self._queue.append(hb)
        self._wake.set()

    def pulse(self, deliveries: Intake[Any], clock_ms: Callable[[], int], last_row: int) -> None:
        """The pipeline thread, between groups: a heartbeat (at most every ``heartbeat_s``)
        at the oldest receive time still in ``deliveries`` (the service's delivery queue), or
        the clock when it is empty; everything before it was submitted up to ``last_row``."""
        mono = time.monotonic()
        if mono - self._beat_at < self._heartbeat_s:
            return
        self._beat_at = mono
        try:  # a peek: paho's thread only appends, this thread is the one that takes
            head = deliveries.queue[0]
        except IndexError:
            head = None
        received = getattr(head, "received_ms", None)
        self.heartbeat(received if received is not None else clock_ms(), last_row)

    def wake(self) -> None:
        """The writer advanced: look at the queue again."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def idle(self) -> bool:
        """Nothing but a heartbeat waits to be forwarded."""
        with self._lock:
            return all(isinstance(i, Heartbeat) for i in self._queue)

    def stats(self) -> dict[str, object]:
        return {
            "rules_forward_queue_depth": len(self._queue),
            "rules_forwarded": self.forwarded_total,
            "rules_forward_recompute_requests": self.recompute_requests_total,
            "rules_forward_republished": self.republished_total,
            "rules_forward_heartbeats": self.heartbeats_total,
        }

    def run(self) -> None:
        while not self._stop.is_set():
            ready = self._ready()
            if not ready:
                self._maybe_prune()
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            if not self._connected():
                self._stop.wait(0.2)
                continue
            if self._forward(ready):
                with self._lock:
                    for _ in ready:
                        self._queue.popleft()
                self._forwarded_row = max(self._forwarded_row, max(i.row_id for i in ready))
                beats = sum(isinstance(i, Heartbeat) for i in ready)
                self.forwarded_total += len(ready) - beats
                self.heartbeats_total += beats
                self._maybe_prune()
        self._maybe_prune(force=True)

    def _ready(self) -> list[ForwardedItem]:
        """The head of the queue whose rows InfluxDB holds (in order, up to ``batch``)."""
        written = self._written_through()
        out: list[ForwardedItem] = []
        with self._lock:
            for item in self._queue:
                if item.row_id > written or len(out) >= self._batch:
                    break
                out.append(item)
        return out

    def _forward(self, items: list[ForwardedItem]) -> bool:
        """Publish and wait for every PUBACK; False (retried whole) when some did not come."""
        handles: list[PublishHandle] = []
        try:
            for item in items:
                if isinstance(item, Heartbeat):
                    payload = encode_forwarded(item)
                    for k in range(self._partitions):
                        handles.append(self._publish(rules_topic(k), payload))
                    continue
                if isinstance(item, Accepted) and item.received_ms is not None:
                    item = self._with_reference(item)
                topic = rules_topic(partition_of(item.asset_id, self._partitions))
                handles.append(self._publish(topic, encode_forwarded(item)))
        except (ValueError, RuntimeError, OSError) as exc:
            log.warning("rules forward: publish failed, retrying: %s", exc)
            self._stop.wait(0.5)
            return False
        deadline = time.monotonic() + self._ack_timeout_s
        for h in handles:
            while not h.is_published() and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    h.wait_for_publish(min(0.2, left))
                except (ValueError, RuntimeError):
                    break
            if not h.is_published():
                # Forwarded again whole (the worker drops the exact repeats).
                self.republished_total += len(items)
                log.warning("rules forward: no PUBACK within %g s, again", self._ack_timeout_s)
                return False
        return True

    def _with_reference(self, item: Accepted) -> Accepted:
        """The item with this process's fleet clock reference (live single-sample messages
        feed it, as they feed the clock watch)."""
        assert item.received_ms is not None
        if item.ref_ms is None:
            if len(item.samples) == 1 and item.device_id:
                ref = self._clock_ref.observe(
                    item.device_id, ts_ms(item.samples[0]), item.received_ms
                )
            else:
                ref = self._clock_ref._ref
            item = item._replace(ref_ms=ref)
        return item

    def _maybe_prune(self, force: bool = False) -> None:
        row, at = self._pruned
        mono = time.monotonic()
        fwd = self._forwarded_row
        if fwd > row and (force or mono - at >= self._prune_s):
            try:
                self._prune_journal(fwd)
                self._pruned = (fwd, mono)
            except ColdchainError as exc:  # only costs a larger recompute after a restart
                log.warning("rules journal prune failed: %s", exc)
