"""Stage 6, deliver alerts: the registry's alert outbox, routed (docs/alerts.md) and delivered to
every configured channel, in its own thread. The same class runs on its own as
``coldchain alerts deliver`` (cli/alerts.py), so acknowledgements recorded by the API or the
CLI are delivered without ingest.

Guarantees (docs/alerts.md):
- At least once, per channel. Whoever records a change (the rules stage, the API, the CLI)
  queues its alert in the same transaction. This stage *routes* each due entry once, in one
  transaction that creates its per-channel delivery rows and any escalation timers, then sends
  each row and marks it delivered only once the channel acknowledged it (MQTT PUBACK, HTTP 2xx,
  SMTP accepted). A crash anywhere in between leaves the row pending and the next round sends it
  again: a receiver may see a repeat, always under the same idempotency ``key``, never a loss.
- No two deliverers send the same row at once: a round *claims* rows with a lease
  (``lease_owner``/``lease_until_ms``) longer than the channel can take for the batch; a
  deliverer that died leaves its lease to run out, and the row is claimed again (at once by
  the same deliverer restarted: it releases the leases of its own name as it starts).
- Retries: a failed delivery is due again after ``retry_base_s`` doubling per attempt up to
  ``retry_max_s``; the attempts and the last error stay on the row. Channels are delivered in
  parallel, so a dead receiver delays only its own channel.
- Escalation: an ``unacknowledged`` timer that comes due is routed to its escalation's channels
  unless the excursion was acknowledged (or superseded, or is gone) by then - then it is
  routed nowhere (cancelled) and nothing is sent.
- Stopping never waits for a receiver: sends run in daemon threads, the rest of a batch is
  not attempted once ``stop()`` was called (retried after the restart, like a request that was
  in flight), and an MQTT batch stops waiting for PUBACKs.
- Bounded: at most ``batch`` rows per channel and round; waits for work on ``wake()`` or
  ``idle_s``. The registry failing is logged and retried; it never touches the ingest pipeline.
- Bounded on disk: once an hour, finished notifications (routed, no delivery pending) older
  than ``alerts.retention_days`` are deleted with their delivery rows (``Registry.prune_alerts``);
  the excursions and acknowledgements they told of stay in the registry.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from coldchain.alerts.config import MqttChannel, RoutingConfig, load_routing
from coldchain.alerts.payload import escalation_alert
from coldchain.alerts.routing import escalations_started, route_alert
from coldchain.exceptions import ColdchainError
from coldchain.rules import Change
from coldchain.settings import AlertSettings
from ingest.channels import AlertChannel, MqttSender, PublishHandle, build_channels
from ingest.rules_io import alert_key, alert_payload
from registry import Fanout, OutboxEntry, OutboxMessage, Registry
from registry.outbox import Routing

__all__ = ["PRUNE_EVERY_S", "AlertDelivery", "alert_message", "backoff_s", "build_alert_delivery"]

PRUNE_EVERY_S = 3600.0  # how often finished notifications past the retention are deleted
_PRUNE_BATCH = 5000

log = logging.getLogger("coldchain.ingest.alerts")


def alert_message(change: Change) -> OutboxMessage:
    """The outbox entry of a change: its idempotency key and the alert JSON."""
    return OutboxMessage(key=alert_key(change), payload=alert_payload(change).decode())


def backoff_s(attempts: int, retry_max_s: float, retry_base_s: float = 1.0) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (base, 2 x base, 4 x
    base, ... capped at ``retry_max_s``)."""
    return float(min(retry_max_s, retry_base_s * 2.0 ** max(0, attempts - 1)))


class AlertDelivery:
    """Run ``run()`` in its own thread; ``wake()`` after alerts were queued; ``stop()``.

    ``clock_ms`` must be the registry's clock (it stamps ``created_ms`` and the due times);
    tests inject one to drive escalations. ``channels`` are the routing file's channels by name
    (ingest.channels.build_channels). ``hold_s`` (fault tests only) delays routing an entry
    until it has been queued that long. ``owner`` names this process in leases.
    """

    def __init__(
        self,
        registry: Registry,
        routing: RoutingConfig,
        channels: Mapping[str, AlertChannel],
        *,
        clock_ms: Callable[[], int],
        owner: str = "",
        retry_base_s: float = 1.0,
        retry_max_s: float = 300.0,
        hold_s: float = 0.0,
        batch: int = 20,
        idle_s: float = 1.0,
        retention_days: float = 0.0,
    ) -> None:
        self._registry = registry
        self._routing = routing
        self._channels = dict(channels)
        self._clock_ms = clock_ms
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._hold_ms = round(hold_s * 1000)
        self._batch = batch
        self._idle_s = idle_s
        self._retention_ms = round(retention_days * 86_400_000)
        self._next_prune = 0.0  # monotonic: the first round prunes
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.delivered_total = 0
        self.failed_attempts_total = 0
        self.errors_total = 0
        self.routed_total = 0
        self.cancelled_escalations_total = 0
        self.pruned_total = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current round (waits for acknowledgements cut short); what is not
        acknowledged stays queued. ``run()`` closes the channels as it returns."""
        self._stop.set()
        self._wake.set()
        for ch in self._channels.values():
            ch.interrupt()

    def close(self) -> None:
        """Release the channels' connections (after the last round; ``run()`` does it)."""
        for ch in self._channels.values():
            ch.close()

    def stats(self) -> dict[str, object]:
        return {
            "alerts_delivered": self.delivered_total,
            "alerts_failed_attempts": self.failed_attempts_total,
            "alerts_errors": self.errors_total,
            "alerts_routed": self.routed_total,
            "alerts_escalations_cancelled": self.cancelled_escalations_total,
            "alerts_pruned": self.pruned_total,
        }

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.close()

    def _run(self) -> None:
        try:  # our own name's leases are a previous incarnation's: due again now
            if released := self._registry.release_alert_leases(self._owner):
                log.info("alert delivery: released %d leases of a previous run", released)
        except ColdchainError as exc:  # not needed for correctness: they run out anyway
            log.warning("alert delivery: could not release old leases: %s", exc)
        while not self._stop.is_set():
            try:
                self._prune()
                busy = self.deliver_round() > 0
            except ColdchainError as exc:  # the registry: retried, rows stay queued
                self.errors_total += 1
                log.error("alert delivery failed (retrying in 5 s): %s", exc)
                self._stop.wait(5.0)
                continue
            if not busy:
                # The hold (tests) makes rows due without a wake-up: look again by then.
                self._wake.wait(min(self._idle_s, self._hold_ms / 1000 or self._idle_s))
                self._wake.clear()

    def _prune(self) -> None:
        """Once an hour (``PRUNE_EVERY_S``): finished notifications older than the retention,
        a batch at a time so no transaction grows large. Raises StoreError (registry)."""
        if not self._retention_ms or time.monotonic() < self._next_prune:
            return
        cutoff = self._clock_ms() - self._retention_ms
        while not self._stop.is_set():
            n = self._registry.prune_alerts(cutoff, limit=_PRUNE_BATCH)
            self.pruned_total += n
            if n < _PRUNE_BATCH:
                break
        self._next_prune = time.monotonic() + PRUNE_EVERY_S

    def deliver_round(self) -> int:
        """Route the due entries, then deliver the due rows of every ready channel (in
        parallel). Returns the number of entries routed plus rows attempted. Raises
        StoreError (registry)."""
        routed = self.route_due()
        if self._stop.is_set():
            return routed
        # One daemon thread per channel and round: a slow receiver delays only its channel,
        # and a process that stops never waits for a send in flight (it is retried later).
        counts: list[int] = []
        errors: list[BaseException] = []

        def deliver(ch: AlertChannel) -> None:
            try:
                counts.append(self._deliver_channel(ch))
            except BaseException as exc:  # re-raised in this thread below
                errors.append(exc)

        threads = [
            threading.Thread(target=deliver, args=(ch,), name=f"alert-{ch.name}", daemon=True)
            for ch in self._channels.values()
            if ch.ready()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return routed + sum(counts)

    def route_due(self) -> int:
        """Route every entry due (and held ``hold_s``), a batch per transaction; returns how
        many this deliverer routed."""
        now = self._clock_ms()
        count = 0
        while not self._stop.is_set():
            due = self._registry.unrouted_alerts(now_ms=now - self._hold_ms, limit=self._batch)
            routed = self._registry.route_alerts([self._decide(e, now) for e in due], now_ms=now)
            count += len(routed)
            self.routed_total += len(routed)
            if len(due) < self._batch:
                break
        return count

    def _decide(self, entry: OutboxEntry, now: int) -> Routing:
        try:
            alert = json.loads(entry.payload)
        except ValueError:
            alert = {}
        if not isinstance(alert, dict):
            alert = {}
        follow_ups: list[OutboxMessage] = []
        if alert.get("change") == "unacknowledged" and not self._escalation_still_due(alert):
            decisions = []
            self.cancelled_escalations_total += 1
            log.info("escalation %s cancelled: acknowledged in time", entry.key)
        else:
            decisions = route_alert(self._routing, alert, now)
            for esc in escalations_started(self._routing, alert):
                key, payload = escalation_alert(alert, esc.name, esc.after_min)
                due = entry.created_ms + round(esc.after_min * 60_000)
                follow_ups.append(OutboxMessage(key, payload, route_after_ms=due))
        fanout = [Fanout(d.channel, d.at_ms, d.dropped) for d in decisions]
        unknown = [f.channel for f in fanout if f.channel not in self._channels]
        if unknown:  # the routing file names channels this process lacks: logged, kept pending
            log.error("alert %s routed to channels not configured here: %s", entry.key, unknown)
        return Routing(entry.id, fanout, follow_ups)

    def _escalation_still_due(self, alert: Mapping[str, object]) -> bool:
        record = self._registry.get_excursion(str(alert.get("id")))
        if record is None or record.excursion.superseded:
            return False
        return record.ack_count == 0 and record.ack_ms is None

    def _deliver_channel(self, ch: AlertChannel) -> int:
        now = self._clock_ms()
        lease_ms = round((ch.timeout_s * self._batch + 30) * 1000)
        claimed = self._registry.claim_alert_deliveries(
            ch.name, owner=self._owner, lease_ms=lease_ms, now_ms=now, limit=self._batch
        )
        if not claimed:
            return 0
        try:
            results = ch.send(claimed)
        except Exception as exc:  # a channel's bug must not stop the others: retried later
            log.exception("channel %s failed unexpectedly", ch.name)
            results = [f"{type(exc).__name__}: {exc}"[:300]] * len(claimed)
        delivered = [d for d, err in zip(claimed, results, strict=True) if not err]
        failed = []
        for d, err in zip(claimed, results, strict=True):
            if err:
                wait_s = backoff_s(d.attempts, self._retry_max_s, self._retry_base_s)
                failed.append((d, err, self._clock_ms() + round(1000 * wait_s)))
                log.warning(
                    "alert %s to %s not delivered (attempt %d): %s",
                    d.key,
                    ch.name,
                    d.attempts,
                    err,
                )
        self._registry.finish_alert_deliveries(delivered, failed, now_ms=self._clock_ms())
        with self._lock:
            self.delivered_total += len(delivered)
            self.failed_attempts_total += len(failed)
        return len(claimed)


def build_alert_delivery(
    settings: AlertSettings,
    registry: Registry,
    *,
    publish: Callable[[str, bytes], PublishHandle],
    connected: Callable[[], bool],
    clock_ms: Callable[[], int],
    owner: str = "",
    routing: RoutingConfig | None = None,
) -> AlertDelivery:
    """The delivery stage from ``settings`` (its routing file, or MQTT only; ``routing`` when
    already loaded), sending MQTT alerts with ``publish`` while ``connected()``. ConfigError
    for a bad routing file or a secret's unset environment variable."""
    if routing is None:
        routing = load_routing(settings.routing_path, settings.ack_timeout_s)

    def mqtt(name: str, config: MqttChannel) -> AlertChannel:
        return MqttSender(name, publish, connected, config.ack_timeout_s)

    return AlertDelivery(
        registry,
        routing,
        build_channels(routing, mqtt=mqtt),
        clock_ms=clock_ms,
        owner=owner,
        retry_base_s=settings.retry_base_s,
        retry_max_s=settings.retry_max_s,
        hold_s=settings.hold_s,
        batch=settings.batch,
        retention_days=settings.retention_days,
    )
