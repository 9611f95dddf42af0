"""The ingest service: wires MQTT source -> pipeline (decode, validate, spool, ack) -> the
writer and the rules engine. This module is the bootstrap: it builds every stage from
``Settings``.

Threads: paho's network loop (enqueues deliveries), the pipeline (``ingest.pipeline``: group
commit per batch, then acks), the writer (drains the spool to InfluxDB), the evaluator (rules
over what was acknowledged) and housekeeping. Work in flight is bounded by the delivery queue
(``mqtt.max_inflight``): when it is full paho's thread waits, and so does the broker, until the
pipeline has made a batch durable and acknowledged it.

Guarantees (docs/operations.md, "Failures and recovery"):
- Nothing is acknowledged that is not durable (``ingest.pipeline``).
- A thread that dies raises ``pipeline_dead``/``writer_dead``/``rules_dead`` (ingest.watchdog).
- At start the spool is checked (damaged: moved aside, ``spool_corrupt``) and compared with
  the identity the registry recorded (deleted or replaced: ``spool_replaced``); both stay raised
  until an operator accepts them (``coldchain spool accept``).
- The fleet file reloads on change or SIGHUP (ingest.fleet_watch); a checked new fleet is
  swapped in between two groups, for validation, encoding, events and the rules alike.
- ``stop()`` returns within ``timeout_s`` (default ``STOP_TIMEOUT_S``): it finishes the group
  being committed and its acks, checkpoints the rules without letting them catch up, lets the
  writer flush until the deadline and leaves the rest in the spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from coldchain.exceptions import SpoolError, StoreError
from coldchain.fleet import Fleet
from coldchain.rules import ProfileAssignment, RulesEngine, load_presets
from coldchain.settings import Settings
from ingest.consumer import Delivery, MqttSource
from ingest.evaluate import EvaluateStage
from ingest.fleet_watch import FleetWatch, check_profiles
from ingest.forward import RulesForwarder
from ingest.metrics import IngestMetrics, MetricsServer
from ingest.mirror import RegistryMirror
from ingest.outbox import AlertDelivery, build_alert_delivery
from ingest.pipeline import Pipeline
from ingest.rules_child import RulesChild
from ingest.spool import Spool, SpooledMessage
from ingest.spool_guard import DiskReserve, SpoolWatch, check_identity, open_spool
from ingest.watchdog import guarded
from ingest.write import SpoolDrainer
from registry import Registry, open_registry, wall_clock_ms
from timeseries.client import InfluxClient

__all__ = ["STOP_TIMEOUT_S", "IngestService", "build_engine"]

log = logging.getLogger("coldchain.ingest")

STOP_TIMEOUT_S = 8.0  # stop() returns within this (a container runtime's default grace is 10 s)
_CHILD_READY_S = 120.0  # rules.mode=subprocess: start() waits this long for the child at most
HOUSEKEEPING_S = 5.0  # spool high-water to the registry, operator acceptance, disk reserve


def build_engine(settings: Settings, fleet: Fleet, registry: Registry) -> RulesEngine:
    """The rules engine with the profiles (presets + ``profiles_path``) and the registry's
    profile assignment history."""
    profiles = load_presets(settings.profiles_path)
    assignments = [
        ProfileAssignment(
            asset=a.asset_id,
            compartment=a.compartment_id,
            profile=a.profile,
            from_ms=a.from_ms,
            by=a.assigned_by,
            reason=a.reason,
        )
        for a in registry.profile_history()
    ]
    return RulesEngine(fleet, profiles, assignments)


class IngestService:
    """One ingest process: ``start()``, then ``stop()`` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        clock_ms: Callable[[], int] = wall_clock_ms,
        *,
        rules: bool = True,
    ) -> None:
        self.settings = settings
        self.fleet = fleet
        self._clock_ms = clock_ms
        v = settings.validation
        self._stopping = threading.Event()
        self.metrics = IngestMetrics()
        health = self.metrics.health
        # Always opened, rules or not: it records the spool's identity (run `coldchain init`).
        self.registry: Registry = open_registry(settings.registry_url)
        sp = settings.spool
        spool_args = (sp.path, sp.synchronous, v.dead_letter_retention_days)
        self._drain_spool, recovery = open_spool(*spool_args)
        self.metrics.spool_corrupt += recovery is not None
        self._spool_id = self._drain_spool.spool_id
        verdict = check_identity(
            self.registry, settings.mqtt.client_id, self._drain_spool, recovery
        )
        self._spool_problem = verdict.problem
        if verdict.problem is not None:
            self.metrics.spool_replaced += verdict.problem == "spool_replaced" and recovery is None
            health.raise_problem(verdict.problem, verdict.detail)
        self._recorded_row = self._drain_spool.high_water()
        self._reserve = DiskReserve(
            sp.path.with_name(sp.path.name + ".reserve"), sp.reserve_mb << 20
        )
        self._watch = SpoolWatch(self.metrics, self._reserve)
        if not self._reserve.take():
            self._watch.waiting()
        pipeline_spool = Spool(*spool_args, rules_journal=rules)
        self._annotation_spool = Spool(*spool_args)  # used by the evaluator thread only
        # The bound on messages in flight inside this process is the pipeline's queue. MQTT 5
        # Receive Maximum asks the broker for the same bound, but mosquitto 2.0 honours it only
        # for the first window, so a full queue blocks paho's network thread and TCP
        # backpressure does the rest.
        self.pipeline = Pipeline(
            settings,
            fleet,
            pipeline_spool,
            self.registry,
            self.metrics,
            self._watch,
            self._stopping,
            clock_ms,
            ack_many=self._ack_many,
            committed=self._committed,
            take_fleet=self._fleet_taken,
            on_fleet=self._on_fleet,
            last_row=self._recorded_row,
        )
        kinds = ("telemetry", "events") if rules else ("telemetry",)
        self._source = MqttSource(settings.mqtt, self.pipeline.enqueue, kinds, clock_ms=clock_ms)
        self._writer = InfluxClient(settings.influx)
        self._drainer = SpoolDrainer(
            self._drain_spool,
            self._writer,
            settings.influx,
            self._on_written,
            self._on_write_error,
            on_spool_error=self._watch.failed,
        )
        self._threads: dict[str, threading.Thread] = {}
        self._metrics_server: MetricsServer | None = None
        self.metrics.spool_backlog_messages = self._drain_spool.depth()[0]
        self._source.health = self.metrics.health  # mqtt_not_receiving, mqtt_disconnected
        self.metrics.sources.append(self._source.stats)
        self.evaluate: EvaluateStage | RulesChild | None = None
        self.alerts: AlertDelivery | None = None
        # rules.mode "forward": no rules here; accepted samples go to the partitions' workers.
        self.forwarder: RulesForwarder | None = None
        # A spool that is not the one the checkpoint's row ids refer to (deleted or replaced; a
        # salvaged one keeps its rows): recompute every asset from its checkpoint time instead
        # of trusting the journal.
        replaced = verdict.problem == "spool_replaced" and recovery is None
        if rules and settings.rules.mode == "forward":
            self.forwarder = RulesForwarder(
                fleet,
                self._source.publish,
                partitions=settings.rules.partitions,
                written_through=lambda: self._drainer.written_through,
                connected=self._source.connected.is_set,
                journal_since=self._drain_spool.journal_since,
                journal_newest_since=self._drain_spool.journal_newest_since,
                prune_journal=self._annotation_spool.prune_journal,
                source=settings.mqtt.client_id,
            )
            self.forwarder.resume(self._drain_spool.last_id(), spool_replaced=replaced)
            self.metrics.sources.append(self.forwarder.stats)
            forwarder = self.forwarder
            self.pipeline.sink = forwarder
            self.pipeline.heartbeat = lambda q, row: forwarder.pulse(q, clock_ms, row)
        elif rules:
            a = settings.alerts
            self.alerts = build_alert_delivery(
                a,
                self.registry,
                publish=self._source.publish,
                connected=self._source.connected.is_set,
                # The registry's clock, which stamps the rows: not the (injectable) ingest clock.
                clock_ms=wall_clock_ms,
                owner=settings.mqtt.client_id,
            )
            self.metrics.sources.append(self.alerts.stats)
            if settings.rules.mode == "subprocess":
                if clock_ms is not wall_clock_ms:
                    raise ValueError(
                        "rules.mode=subprocess runs the rules on the wall clock; with another "
                        "clock (a replay) use rules.mode=inprocess"
                    )
                # Its receiving thread alone uses the annotation spool's handle (the child asks
                # for the journal after the writer thread started on the drain spool's).
                self.evaluate = RulesChild(
                    settings,
                    fleet,
                    annotate=self._annotate,
                    journal_since=self._annotation_spool.journal_since,
                    journal_newest_since=self._annotation_spool.journal_newest_since,
                    prune_journal=self._annotation_spool.prune_journal,
                    alerts_queued=self.alerts.wake,
                )
            else:
                self.evaluate = EvaluateStage(
                    build_engine(settings, fleet, self.registry),
                    fleet,
                    self.registry,
                    self._writer,
                    annotate=self._annotate,
                    written_through=lambda: self._drainer.written_through,
                    clock_ms=clock_ms,
                    journal_since=self._drain_spool.journal_since,
                    journal_newest_since=self._drain_spool.journal_newest_since,
                    prune_journal=self._annotation_spool.prune_journal,
                    alerts_queued=self.alerts.wake,
                )
            self.evaluate.resume(self._drain_spool.last_id(), spool_replaced=replaced)
            self.metrics.sources.append(self.evaluate.stats)
            self.pipeline.sink = self.evaluate
        self.mirror: RegistryMirror | None = None
        self._spools = [self._drain_spool, pipeline_spool, self._annotation_spool]
        if rules and settings.mirror_interval_s > 0:  # registry facts for the dashboards
            self._spools.append(Spool(*spool_args))  # its own handle: its own thread
            counts = self._spools[-1].dead_letter_counts
            self.mirror = RegistryMirror(
                self.registry,
                fleet,
                self._writer.write,
                load_presets(settings.profiles_path),
                clock_ms=wall_clock_ms,
                interval_s=settings.mirror_interval_s,
                dead_letter_counts=counts,
            )
            self.metrics.sources.append(self.mirror.stats)
        profiles = (
            self.evaluate.engine.profiles
            if isinstance(self.evaluate, EvaluateStage)
            else load_presets(settings.profiles_path)
        )
        self._fleet_watch = FleetWatch(
            settings.fleet_path,
            health,
            self._stopping,
            current=fleet,
            interval_s=settings.fleet_reload_s,
            check=lambda new: check_profiles(new, profiles),
        )
        self.metrics.sources.append(self._fleet_watch.stats)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, wait_connected_s: float = 10.0) -> None:
        try:
            self._writer.create_database()
        except Exception as exc:  # InfluxDB may be down at start; the writer retries later.
            log.warning("could not ensure database: %s", exc)
        health, stopping = self.metrics.health, self._stopping
        targets: dict[str, Callable[[], None]] = {
            "pipeline": self.pipeline.run,
            "writer": self._drainer.run,
            "housekeeping": self._housekeeping,
            "fleet": self._fleet_watch.run,
        }
        if self.evaluate is not None:
            targets["rules"] = self.evaluate.run
        if self.alerts is not None:
            targets["alerts"] = self.alerts.run
        if self.mirror is not None:
            targets["mirror"] = lambda: self.mirror.run(stopping) if self.mirror else None
        if self.forwarder is not None:
            targets["forward"] = self.forwarder.run
        self._threads = {n: guarded(n, t, health, stopping) for n, t in targets.items()}
        for t in self._threads.values():
            t.start()
        if self.settings.metrics_port:
            self._metrics_server = MetricsServer(self.metrics, self.settings.metrics_port)
            self._metrics_server.start()
        if isinstance(self.evaluate, RulesChild) and not self.evaluate.wait_ready(_CHILD_READY_S):
            # Correct anyway (what does not fit in the inbox is recomputed), just slower.
            log.warning("rules child not ready after %.0f s; receiving anyway", _CHILD_READY_S)
        self._source.start()
        if wait_connected_s and not self._source.wait_connected(wait_connected_s):
            log.warning("MQTT not connected after %.0f s; paho keeps retrying", wait_connected_s)

    def stop(self, drain_timeout_s: float = 0.0, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop within ``timeout_s`` (after waiting up to ``drain_timeout_s`` for everything
        received to be written and evaluated, when given).

        In order: the pipeline finishes the group it is committing and acknowledges it, taking
        nothing more (deliveries still queued are not acknowledged: the broker redelivers them);
        the MQTT connection closes; the rules stop after their current round and checkpoint
        (what they had queued becomes recomputes a restart runs); the writer flushes until the
        deadline and the rest stays in the spool.
        """
        if drain_timeout_s:
            self.wait_drained(drain_timeout_s)
        deadline = time.monotonic() + timeout_s

        def left(keep_s: float = 0.0) -> float:
            return max(0.05, deadline - keep_s - time.monotonic())

        self._stopping.set()
        self._fleet_watch.request()  # wakes its thread to see the stop
        threads = self._threads
        if "pipeline" in threads:
            threads["pipeline"].join(left(keep_s=min(3.0, timeout_s / 2)))
        self.pipeline.discard_queued()
        if self.alerts is not None:  # what is not acknowledged yet is sent after the restart
            self.alerts.stop()
            if "alerts" in threads:
                threads["alerts"].join(left(keep_s=min(3.0, timeout_s / 2)))
        if self.forwarder is not None:  # the rest is in the rules journal: recomputes later
            self.forwarder.stop()
            if "forward" in threads:
                threads["forward"].join(left(keep_s=min(3.0, timeout_s / 2)))
        self._source.stop()
        self.pipeline.discard_queued()
        if self.evaluate is not None:
            self.evaluate.stop(catch_up=False)
            if "rules" in threads:
                threads["rules"].join(left(keep_s=min(1.0, timeout_s / 4)))
        # Flush while the writer makes progress (not into an InfluxDB that is down).
        writer, m = threads.get("writer"), self.metrics
        written, progressed_at = m.written_messages, time.monotonic()
        while writer is not None and writer.is_alive() and m.spool_depth_messages > 0:
            now = time.monotonic()
            if m.written_messages != written:
                written, progressed_at = m.written_messages, now
            if now >= deadline - 0.3 or now - progressed_at > 1.0:
                break
            time.sleep(0.05)
        self._drainer.stop()
        for name in ("writer", "housekeeping", "mirror", "fleet"):
            if name in threads:
                threads[name].join(left())
        if self._metrics_server:
            self._metrics_server.stop()
        alive = sorted(n for n, t in threads.items() if t.is_alive())
        if alive:  # let the process exit; what they hold stays in the spool or the broker
            log.warning("stopped with threads still busy after %.1f s: %s", timeout_s, alive)
            return
        self._writer.close()
        for spool in self._spools:
            spool.close()
        self.registry.close()

    def reload_fleet(self) -> None:
        """Re-read the fleet file now (SIGHUP); it applies from the next group if it checks."""
        self._fleet_watch.request()

    def _fleet_taken(self) -> Fleet | None:
        return self._fleet_watch.take()

    def _on_fleet(self, fleet: Fleet) -> None:
        """Pipeline thread, between groups: put a reloaded fleet in force everywhere."""
        self.fleet = fleet
        if self.evaluate is not None:
            self.evaluate.update_fleet(fleet)
        if self.mirror is not None:  # read once per pass: a reference swap is enough
            self.mirror.fleet = fleet

    def wait_drained(self, timeout_s: float) -> bool:
        """True once every message received so far is in InfluxDB (or dead-lettered) and the
        rules engine has evaluated it."""
        deadline = time.monotonic() + timeout_s
        m = self.metrics
        while time.monotonic() < deadline:
            idle = self.evaluate is None or self.evaluate.idle()
            idle = idle and (self.forwarder is None or self.forwarder.idle())
            if (
                m.received_messages == self.pipeline.enqueued
                and m.spool_depth_messages == 0
                and idle
            ):
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, object]:
        """The metrics snapshot (counters, health, the rules stage's gauges)."""
        return self.metrics.snapshot()

    def _housekeeping(self) -> None:
        """Every ``HOUSEKEEPING_S``: record the spool's high-water mark in the registry, clear
        an accepted spool problem, take the disk reserve back once space returned."""
        client = self.settings.mqtt.client_id
        while not self._stopping.wait(HOUSEKEEPING_S):
            self._watch.poll()
            try:
                row = self.pipeline.last_row
                if row > self._recorded_row:
                    self.registry.advance_spool_high_water(client, self._spool_id, row)
                    self._recorded_row = row
                if self._spool_problem is not None:
                    record = self.registry.spool_identity(client)
                    if record is not None and record.problem is None:
                        log.warning("spool problem accepted by an operator: %s", client)
                        self.metrics.health.clear(self._spool_problem)
                        self._spool_problem = None
            except StoreError as exc:
                log.warning("housekeeping: registry unavailable, retrying: %s", exc)

    # -- callbacks ------------------------------------------------------------------------------
    def _ack_many(self, deliveries: Sequence[Delivery]) -> int:
        return self._source.ack_many(deliveries)

    def _committed(self) -> None:
        self._drainer.wake()

    def _annotate(self, lines: list[str]) -> None:
        try:
            self._annotation_spool.append([SpooledMessage(self._clock_ms(), "rules", lines)], [])
        except SpoolError as exc:  # the rules thread retries; the spool's state is reported
            self._watch.failed(exc, "annotation")
            self._annotation_spool.reopen()
            raise
        self._watch.ok("annotation")
        self.metrics.annotation_messages += 1
        self._drainer.wake()

    def _on_written(self, messages: int, points: int) -> None:
        self.metrics.written_messages += messages
        self.metrics.written_points += points
        if self.forwarder is not None:
            self.forwarder.wake()
        if isinstance(self.evaluate, RulesChild):
            self.evaluate.written(self._drainer.written_through)
        self._watch.ok("writer")
        self.metrics.health.clear("influx_unavailable")

    def _on_write_error(self, exc: Exception) -> None:
        # Readings stay in the spool and are acknowledged; what is red is the record's
        # freshness in InfluxDB (dashboards, traces, recomputes wait).
        self.metrics.write_errors += 1
        self.metrics.health.raise_problem(
            "influx_unavailable",
            f"InfluxDB write failed, retrying; the spool holds the rest: {exc}",
        )

    def dead_letters(self, limit: int = 1000) -> list[dict[str, object]]:
        spool = Spool(self.settings.spool.path)
        try:
            return spool.dead_letters(limit)
        finally:
            spool.close()
