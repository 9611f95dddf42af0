"""Stages 1-4 in one thread, the pipeline: deliveries -> decode -> validate -> group commit in
the spool -> acknowledgements -> the rules (or the forwarder).

Guarantees:
- Work in flight is bounded by the delivery queue (``mqtt.max_inflight``): when it is full
  paho's thread waits in ``enqueue``, and so does the broker, until a group is durable and
  acknowledged.
- Nothing is acknowledged that is not durable: a group whose spool commit or custody
  registration fails is held (no ack) and retried with backoff while a health problem
  (``spool_unwritable``, ``registry_unavailable``) says so; it clears by itself on recovery.
  A group cut short by a stop is not acknowledged at all: the broker redelivers it.
- The messages of a group occupy consecutive spool rows; the rules get each accepted message
  (and custody scan) with the row that holds its points, only after the group is durable and
  acknowledged, so the rules add no latency to acknowledgement.
- A reloaded fleet (``take_fleet``) applies between two groups, for validation, encoding,
  events and (through ``on_fleet``) the rules alike.
- Dead letters queued by ``coldchain deadletters replay`` go through between groups, with their
  original receive time, each exactly once (``ingest.replay``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import NamedTuple, Protocol

from coldchain.contract import Limits, PointEncoder, Sample, ts_ms
from coldchain.exceptions import SpoolError, StoreError, TelemetryRejected
from coldchain.fleet import Fleet
from coldchain.settings import Settings
from ingest.consumer import Delivery
from ingest.decode import decode
from ingest.events import process_event
from ingest.intake import Intake
from ingest.metrics import IngestMetrics
from ingest.replay import outcome
from ingest.rules_io import Accepted, CustodyChange
from ingest.spool import DeadLetter, Spool, SpooledMessage
from ingest.spool_guard import SpoolWatch
from ingest.validate import validate
from registry import Registry

__all__ = ["Pipeline", "Processed", "RulesSink", "process_delivery"]

log = logging.getLogger("coldchain.ingest")

REPLAY_POLL_S = 1.0  # how often the pipeline looks for dead letters queued for replay
_RETRY_MAX_S = 5.0  # backoff ceiling while the spool or the registry fails (acks held)


class Processed(NamedTuple):
    """What one delivery became: points to spool, dead letters, samples for the rules."""

    spooled: SpooledMessage | None
    dead: list[DeadLetter]
    asset_id: str | None = None
    samples: Sequence[Sample] = ()


class RulesSink(Protocol):
    """Where accepted work goes after acknowledgement: ``EvaluateStage`` or ``RulesForwarder``.
    ``submit_many`` never blocks."""

    def submit_many(self, items: Iterable[Accepted | CustodyChange]) -> None: ...


def _dead(d: Delivery, exc: TelemetryRejected, payload: bytes) -> DeadLetter:
    return DeadLetter(
        d.received_ms, d.topic, exc.device_id, exc.reason, exc.field, exc.value, exc.detail, payload
    )


def process_delivery(
    d: Delivery, fleet: Fleet, encoder: PointEncoder, limits: Limits, max_payload_bytes: int
) -> Processed:
    """Decode, validate and encode one telemetry delivery. Never raises on bad input."""
    try:
        validated = validate(
            decode(d.topic, d.payload, max_payload_bytes), fleet, d.received_ms, limits
        )
    except TelemetryRejected as exc:
        return Processed(None, [_dead(d, exc, d.payload)])
    # Every letter of a message references its full payload (stored once by the spool).
    dead = [_dead(d, exc, d.payload) for exc in validated.rejected]
    if not validated.samples:
        return Processed(None, dead)
    lines = encoder.encode(validated.device_id, validated.asset, validated.samples, d.received_ms)
    times = [ts_ms(s) for s in validated.samples]  # for the rules journal
    return Processed(
        SpooledMessage(d.received_ms, validated.device_id, lines, min(times), max(times)),
        dead,
        validated.asset.id,
        validated.samples,
    )


class Pipeline:
    """The pipeline thread (``run``) and its intake (``enqueue``, from paho's thread).

    ``ack_many(deliveries)`` acknowledges a group and returns how many it acknowledged (the
    others' connection is gone, or they were QoS 0);
    ``committed()`` is called after each group commit that spooled points (wakes the writer);
    ``take_fleet()`` returns a reloaded fleet to apply, else None, and ``on_fleet(fleet)`` puts
    it in force elsewhere; ``heartbeat(queue, last_row)`` runs between groups (forward mode).
    ``last_row`` is the newest spool row committed; ``enqueued`` counts deliveries taken in.
    """

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        spool: Spool,
        registry: Registry,
        metrics: IngestMetrics,
        watch: SpoolWatch,
        stopping: threading.Event,
        clock_ms: Callable[[], int],
        *,
        ack_many: Callable[[Sequence[Delivery]], int],
        committed: Callable[[], None],
        take_fleet: Callable[[], Fleet | None],
        on_fleet: Callable[[Fleet], None],
        last_row: int = 0,
    ) -> None:
        self.queue: Intake[Delivery] = Intake(settings.mqtt.max_inflight)
        self.fleet = fleet
        self.sink: RulesSink | None = None
        self.heartbeat: Callable[[Intake[Delivery], int], None] | None = None
        self.last_row = last_row
        self.enqueued = 0  # written only by paho's thread
        self._encoder = PointEncoder(fleet)
        v = settings.validation
        self._limits = Limits(v.max_future_skew_s, v.max_sample_age_s)
        self._max_payload_bytes = v.max_payload_bytes
        self._batch_max = settings.spool.batch_max_messages
        self._linger_s = settings.spool.linger_ms / 1000.0
        self._spool = spool
        self._registry = registry
        self._metrics = metrics
        self._watch = watch
        self._stopping = stopping
        self._clock_ms = clock_ms
        self._ack_many = ack_many
        self._committed = committed
        self._take_fleet = take_fleet
        self._on_fleet = on_fleet

    # -- intake (paho's thread) -------------------------------------------------------------
    def enqueue(self, delivery: Delivery) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker redelivers it after the restart
        self.enqueued += 1
        self.queue.put(delivery)

    def discard_queued(self) -> None:
        """Drop deliveries not yet committed (never acknowledged: the broker redelivers them),
        so that paho's thread, maybe blocked on a full queue, can finish."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    # -- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        stopping, take, batch_max = self._stopping, self.queue.take, self._batch_max
        next_replay = 0.0
        while not stopping.is_set():
            self._swap_fleet()
            if time.monotonic() >= next_replay:
                self._replay(batch_max)
                next_replay = time.monotonic() + REPLAY_POLL_S
            if self.heartbeat is not None:  # forward mode: the rules workers' watermark
                self.heartbeat(self.queue, self.last_row)
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if self._linger_s:
                time.sleep(self._linger_s)
            batch = [first, *take(batch_max - 1)]
            self._swap_fleet()  # one reloaded while this group waited applies to it
            self.commit(batch)

    def _swap_fleet(self) -> None:
        fleet = self._take_fleet()
        if fleet is None:
            return
        self.fleet = fleet
        self._encoder = PointEncoder(fleet)
        self._on_fleet(fleet)

    def _replay(self, limit: int) -> None:
        """One group of dead letters queued for replay."""
        spool = self._spool
        try:
            items = spool.queued_replays(limit)
            known = [i for i in items if self.fleet.is_known_device(i.device_id)]
            why = "device not in the running ingest's fleet (reload pending?)"
            taken = {i.letter_id for i in known}
            spool.refuse_replays((i.letter_id, why) for i in items if i.letter_id not in taken)
        except SpoolError as exc:  # the spool's trouble shows in the next append
            log.warning("dead-letter replay: %s", exc)
            return
        if known:
            batch = [Delivery(i.topic, i.payload, 0, 0, i.received_ms, -1) for i in known]
            self.commit(batch, [i.letter_id for i in known])

    def _process(self, d: Delivery) -> tuple[Processed, CustodyChange | None] | None:
        """One delivery; None when the service stops while the registry is unavailable."""
        max_bytes = self._max_payload_bytes
        if not d.topic.endswith("/events"):
            return process_delivery(d, self.fleet, self._encoder, self._limits, max_bytes), None
        delay = 0.5
        health = self._metrics.health
        while True:
            try:
                out = process_event(
                    d.topic, d.payload, self.fleet, self._registry, max_bytes, d.received_ms
                )
                break
            except TelemetryRejected as exc:
                return Processed(None, [_dead(d, exc, d.payload)]), None
            except StoreError as exc:
                # The registry is locked or down: the scan is not recorded, so nothing of this
                # group may be acknowledged. Hold it and retry (paho's queue fills meanwhile).
                self._metrics.registry_errors += 1
                health.raise_problem(
                    "registry_unavailable",
                    f"custody scan not recorded ({exc}); acks held, retrying in {delay:.1f} s",
                )
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, _RETRY_MAX_S)
        if delay > 0.5:
            health.clear("registry_unavailable")
        device = d.topic.split("/")[-2]
        custody = CustodyChange(*out.custody) if out.custody else None
        return Processed(SpooledMessage(d.received_ms, device, out.lines), []), custody

    def _append(
        self,
        messages: list[SpooledMessage],
        dead: list[DeadLetter],
        replayed: Sequence[tuple[int, str, str]] = (),
    ) -> int:
        """Commit a group, retrying (acks held) while the spool fails; -1 when the service
        stops first (nothing of the group is acknowledged)."""
        spool, watch, delay = self._spool, self._watch, 0.5
        while True:
            if watch.ready():
                try:
                    last_row = spool.append(messages, dead, replayed)
                    watch.ok("append")
                    return last_row
                except SpoolError as exc:
                    watch.failed(exc, "append")
                    # After a failed write SQLite's connection may keep a stale state.
                    with contextlib.suppress(SpoolError):
                        spool.reopen()
            else:
                watch.waiting()
            if self._stopping.wait(delay):
                return -1
            delay = min(delay * 2, _RETRY_MAX_S)

    def commit(self, batch: list[Delivery], replays: Sequence[int] = ()) -> None:
        """Process, spool and acknowledge a group. ``replays``: the group is dead letters
        replayed (their ids, in order): marked replayed with it, nothing to acknowledge."""
        m = self._metrics
        outcomes: list[tuple[int, str, str]] = []
        messages: list[SpooledMessage] = []
        dead: list[DeadLetter] = []
        # Work for the rules: (index of its message's spool row in this group, what it is).
        to_rules: list[tuple[int, Processed | CustodyChange, Delivery]] = []
        samples = 0
        for d in batch:
            result = self._process(d)
            if result is None:
                return  # stopping: nothing of this group is acknowledged
            processed, custody = result
            spooled = processed.spooled
            if spooled is not None:
                messages.append(spooled)
                if processed.asset_id is not None:
                    samples += len(processed.samples)
                    to_rules.append((len(messages) - 1, processed, d))
            if custody is not None:
                to_rules.append((len(messages) - 1, custody, d))
            if processed.dead:
                dead.extend(processed.dead)
            if replays:
                what = outcome(spooled is not None, [x.reason for x in processed.dead])
                outcomes.append((replays[len(outcomes)], "replayed", what))
        last_row = self._append(messages, dead, outcomes)
        if last_row < 0:
            return
        self.last_row = max(self.last_row, last_row)
        if replays:
            m.replayed_messages += len(batch)
        else:  # only now is everything durable: acknowledge.
            m.received_messages += len(batch)
        m.accepted_messages += len(messages)
        m.accepted_samples += samples
        m.spooled_points += sum(len(x.lines) for x in messages)
        for dl in dead:
            m.dead_letters[dl.reason] += 1
        if not replays:
            acked = self._ack_many(batch)
            m.acked_messages += acked
            m.stale_acks_dropped += sum(d.qos > 0 for d in batch) - acked
        if messages:
            if not replays:
                m.receive_lag_s = (self._clock_ms() - messages[-1].received_ms) / 1000.0
            self._committed()
        if self.sink is not None and to_rules:
            # Each message's points are in InfluxDB once the writer passes its own row (rows of
            # one group commit are consecutive). Receive time on the ingest clock, taken when
            # the message arrived (not after the group commit, whose queueing and fsync would
            # read as device clock skew): the clock the rules judge device clocks by.
            first_row = last_row - len(messages) + 1
            self.sink.submit_many(_work(x, first_row + i, d) for i, x, d in to_rules)


def _work(x: Processed | CustodyChange, row_id: int, d: Delivery) -> Accepted | CustodyChange:
    if isinstance(x, CustodyChange):
        return replace(x, row_id=row_id)
    assert x.asset_id is not None and x.spooled is not None
    # The raw payload goes along only for a message accepted whole (no dead letter): a rules
    # child reads exactly its samples again with one strict validation (parse_accepted_whole).
    return Accepted(
        x.asset_id,
        x.samples,
        row_id,
        x.spooled.device_id,
        d.received_ms,
        None,
        b"" if x.dead else d.payload,
    )
