"""The ingest service: wires MQTT source -> decode -> validate -> spool -> ack, the writer and
the rules engine. This module is the bootstrap: it builds every stage from ``Settings``.

Threads: paho's network loop (enqueues deliveries), the pipeline (group commit per batch, then
acks), the writer (drains the spool to InfluxDB) and the evaluator (rules over what was
acknowledged). Work in flight is bounded by the delivery queue (``mqtt.max_inflight``): when it
is full paho's thread waits, and so does the broker, until the pipeline has made a batch durable
and acknowledged it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NamedTuple

from coldchain.contract import Limits, PointEncoder, Sample, ts_ms
from coldchain.exceptions import TelemetryRejected
from coldchain.fleet import Fleet
from coldchain.rules import ProfileAssignment, RulesEngine, load_presets
from coldchain.settings import Settings
from ingest.consumer import Delivery, MqttSource
from ingest.decode import decode
from ingest.evaluate import Accepted, CustodyChange, EvaluateStage
from ingest.events import process_event
from ingest.metrics import IngestMetrics, MetricsServer
from ingest.spool import DeadLetter, Spool, SpooledMessage
from ingest.validate import validate
from ingest.write import SpoolDrainer
from registry import Registry, open_registry
from timeseries.client import InfluxClient

__all__ = ["IngestService", "Processed", "process_delivery"]

log = logging.getLogger("coldchain.ingest")


class Processed(NamedTuple):
    """What one delivery became: points to spool, dead letters, samples for the rules."""

    spooled: SpooledMessage | None
    dead: list[DeadLetter]
    asset_id: str | None = None
    samples: Sequence[Sample] = ()


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
    from_ms = min(ts_ms(s) for s in validated.samples)  # for the rules journal
    return Processed(
        SpooledMessage(d.received_ms, validated.device_id, lines, from_ms),
        dead,
        validated.asset.id,
        validated.samples,
    )


def build_engine(settings: Settings, fleet: Fleet, registry: Registry) -> RulesEngine:
    profiles = load_presets(settings.profiles_path)
    assignments = [
        ProfileAssignment(
            a.asset_id, a.compartment_id, a.profile, a.from_ms, a.assigned_by, a.reason
        )
        for a in registry.profile_history()
    ]
    return RulesEngine(fleet, profiles, assignments)


class IngestService:
    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        *,
        rules: bool = True,
    ) -> None:
        self.settings = settings
        self.fleet = fleet
        self._clock_ms = clock_ms
        # The bound on messages in flight inside this process. MQTT 5 Receive Maximum asks the
        # broker for the same bound, but mosquitto 2.0 honours it only for the first window, so
        # a full queue blocks paho's network thread and TCP backpressure does the rest.
        self._queue: queue.Queue[Delivery | None] = queue.Queue(settings.mqtt.max_inflight)
        self._encoder = PointEncoder(fleet)
        v = settings.validation
        self._limits = Limits(v.max_future_skew_s, v.max_sample_age_s)
        self._enqueued = 0  # written only by paho's thread
        kinds = ("telemetry", "events") if rules else ("telemetry",)
        self._source = MqttSource(settings.mqtt, self._enqueue, kinds)
        self._writer = InfluxClient(settings.influx)
        spool_args = (settings.spool.path, settings.spool.synchronous, v.dead_letter_retention_days)
        self._drain_spool = Spool(*spool_args)
        self._drainer = SpoolDrainer(
            self._drain_spool, self._writer, settings.influx, self._on_written, self._on_write_error
        )
        self._threads: list[threading.Thread] = []
        self._metrics_server: MetricsServer | None = None
        backlog_rows, _ = self._drain_spool.depth()
        self.metrics = IngestMetrics(spool_backlog_messages=backlog_rows)
        self.registry: Registry | None = None
        self.evaluate: EvaluateStage | None = None
        if rules:
            self.registry = open_registry(settings.registry_url)
            self._annotation_spool = Spool(*spool_args)  # used by the evaluator thread only
            self.evaluate = EvaluateStage(
                build_engine(settings, fleet, self.registry),
                fleet,
                self.registry,
                self._writer,
                publish=self._source.publish,
                annotate=self._annotate,
                written_through=lambda: self._drainer.written_through,
                clock_ms=clock_ms,
                journal_since=self._drain_spool.journal_since,
                prune_journal=self._annotation_spool.prune_journal,
            )
            self.evaluate.resume(self._drain_spool.last_id())
            self.metrics.sources.append(self.evaluate.stats)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, wait_connected_s: float = 10.0) -> None:
        try:
            self._writer.create_database()
        except Exception as exc:  # InfluxDB may be down at start; the writer retries later.
            log.warning("could not ensure database: %s", exc)
        self._threads = [
            threading.Thread(target=self._pipeline, name="ingest-pipeline", daemon=True),
            threading.Thread(target=self._drainer.run, name="ingest-writer", daemon=True),
        ]
        if self.evaluate is not None:
            self._threads.append(
                threading.Thread(target=self.evaluate.run, name="ingest-rules", daemon=True)
            )
        for t in self._threads:
            t.start()
        if self.settings.metrics_port:
            self._metrics_server = MetricsServer(self.metrics, self.settings.metrics_port)
            self._metrics_server.start()
        self._source.start()
        if wait_connected_s and not self._source.wait_connected(wait_connected_s):
            log.warning("MQTT not connected after %.0f s; paho keeps retrying", wait_connected_s)

    def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Stop intake; spool what was received; optionally let the writer drain the spool."""
        self._source.stop()
        self._queue.put(None)
        self._threads[0].join(30)
        if drain_timeout_s:
            self.wait_drained(drain_timeout_s)
        if self.evaluate is not None:
            self.evaluate.stop()
            self._threads[2].join(60)
        self._drainer.stop()
        self._threads[1].join(30)
        if self._metrics_server:
            self._metrics_server.stop()
        self._writer.close()
        self._drain_spool.close()
        if self.registry is not None:
            self._annotation_spool.close()
            self.registry.close()

    def _enqueue(self, delivery: Delivery) -> None:
        self._enqueued += 1
        self._queue.put(delivery)

    def wait_drained(self, timeout_s: float) -> bool:
        """True once every message received so far is in InfluxDB (or dead-lettered) and the
        rules engine has evaluated it."""
        deadline = time.monotonic() + timeout_s
        m = self.metrics
        while time.monotonic() < deadline:
            idle = self.evaluate is None or self.evaluate.idle()
            if m.received_messages == self._enqueued and m.spool_depth_messages == 0 and idle:
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, object]:
        data = self.metrics.snapshot()
        if self.evaluate is not None:
            data |= self.evaluate.stats()
        return data

    # -- threads ----------------------------------------------------------------------------
    def _pipeline(self) -> None:
        s = self.settings
        spool = Spool(
            s.spool.path,
            s.spool.synchronous,
            s.validation.dead_letter_retention_days,
            rules_journal=self.evaluate is not None,
        )
        batch_max, linger_s = s.spool.batch_max_messages, s.spool.linger_ms / 1000.0
        running = True
        while running:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            if linger_s:
                time.sleep(linger_s)
            while len(batch) < batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    running = False
                    break
                batch.append(item)
            self._commit(spool, batch)
        spool.close()

    def _process(self, d: Delivery) -> tuple[Processed, CustodyChange | None]:
        max_bytes = self.settings.validation.max_payload_bytes
        if not d.topic.endswith("/events"):
            return process_delivery(d, self.fleet, self._encoder, self._limits, max_bytes), None
        try:
            out = process_event(
                d.topic, d.payload, self.fleet, self.registry, max_bytes, d.received_ms
            )
        except TelemetryRejected as exc:
            return Processed(None, [_dead(d, exc, d.payload)]), None
        device = d.topic.split("/")[-2]
        custody = CustodyChange(*out.custody) if out.custody else None
        return Processed(SpooledMessage(d.received_ms, device, out.lines), []), custody

    def _commit(self, spool: Spool, batch: list[Delivery]) -> None:
        m = self.metrics
        messages: list[SpooledMessage] = []
        dead: list[DeadLetter] = []
        # (index of the message's spool row in this group, what the rules get)
        to_rules: list[tuple[int, tuple[str, Sequence[Sample], str] | CustodyChange]] = []
        for d in batch:
            processed, custody = self._process(d)
            if processed.spooled is not None:
                messages.append(processed.spooled)
            idx = len(messages) - 1
            if processed.asset_id is not None and processed.spooled is not None:
                to_rules.append(
                    (idx, (processed.asset_id, processed.samples, processed.spooled.device_id))
                )
            if custody is not None:
                to_rules.append((idx, custody))
            dead.extend(processed.dead)
        while True:
            try:
                last_row = spool.append(messages, dead)
                break
            except Exception as exc:  # disk full or locked: hold the acks and retry
                log.error("spool append failed, retrying: %s", exc)
                time.sleep(1.0)
        # Only now is everything durable: acknowledge.
        m.received_messages += len(batch)
        m.accepted_messages += len(messages)
        m.accepted_samples += sum(len(x[1]) for _, x in to_rules if isinstance(x, tuple))
        m.spooled_points += sum(len(x.lines) for x in messages)
        for dl in dead:
            m.dead_letters[dl.reason] += 1
        for d in batch:
            if self._source.ack(d):
                m.acked_messages += 1
            else:
                m.stale_acks_dropped += d.qos > 0
        if messages:
            m.receive_lag_s = (self._clock_ms() - messages[-1].received_ms) / 1000.0
            self._drainer.wake()
        if self.evaluate is not None:
            # Each message's points are in InfluxDB once the writer passes its own row (rows
            # of one group commit are consecutive). Receive time on the ingest clock: the
            # clock the rules judge device clocks against.
            first_row = last_row - len(messages) + 1
            received = self._clock_ms()
            self.evaluate.submit_many(
                Accepted(x[0], x[1], first_row + i, x[2], received)
                if isinstance(x, tuple)
                else replace(x, row_id=first_row + i)
                for i, x in to_rules
            )

    def _annotate(self, lines: list[str]) -> None:
        self._annotation_spool.append([SpooledMessage(self._clock_ms(), "rules", lines)], [])
        self.metrics.annotation_messages += 1
        self._drainer.wake()

    def _on_written(self, messages: int, points: int) -> None:
        self.metrics.written_messages += messages
        self.metrics.written_points += points

    def _on_write_error(self, exc: Exception) -> None:
        self.metrics.write_errors += 1

    def dead_letters(self, limit: int = 1000) -> list[dict[str, object]]:
        spool = Spool(self.settings.spool.path)
        try:
            return spool.dead_letters(limit)
        finally:
            spool.close()
