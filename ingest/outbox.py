"""Stage 6, deliver alerts: the registry's alert outbox to the MQTT alert topic, in its own
thread.

Guarantees (docs/operations.md, "Alerts"):
- At least once. The rules stage queues each change's alert in the transaction that records
  the change (``alert_message``); this stage publishes due rows with QoS 1 and marks a row
  delivered only once the broker acknowledged it (PUBACK). A crash anywhere in between leaves
  the row undelivered, and the next start sends it again: a receiver may see a repeat, always
  under the same idempotency ``key`` (docs/rules.md 13), never a loss.
- Retries: a round not acknowledged within ``ack_timeout_s`` (broker down, disconnected) is
  retried with backoff per row, 1 s doubling up to ``retry_max_s``; the attempts and the last
  error stay on the row.
- One sender per row at a time: a round claims its rows in the registry for ``ack_timeout_s``
  plus ``CLAIM_MARGIN_MS`` (``Registry.claim_due_alerts``), so processes sharing a registry do
  not send the same row at once; a claim of a process that died runs out, and the row is sent
  again then.
- Bounded: at most ``batch`` rows per round; waits for work on a wake-up or ``idle_s``. The
  registry failing is logged and retried; it never touches the ingest pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from coldchain.contract import alert_topic
from coldchain.exceptions import ColdchainError
from coldchain.rules import Change
from ingest.rules_io import alert_key, alert_payload
from registry import OutboxEntry, OutboxMessage, Registry

__all__ = ["AlertDelivery", "PublishHandle", "alert_message", "backoff_s"]

log = logging.getLogger("coldchain.ingest.alerts")

# Beyond the PUBACK wait: the time to mark a round's rows once acknowledged.
CLAIM_MARGIN_MS = 5_000


class PublishHandle(Protocol):
    """What a QoS 1 publish returns (paho's ``MQTTMessageInfo``)."""

    def wait_for_publish(self, timeout: float | None = None) -> None: ...

    def is_published(self) -> bool: ...


def alert_message(change: Change) -> OutboxMessage:
    """The MQTT outbox row of a change: its key, the asset's alert topic, the alert JSON."""
    return OutboxMessage(
        key=alert_key(change),
        channel="mqtt",
        topic=alert_topic(change.excursion.asset_id),
        payload=alert_payload(change).decode(),
    )


def backoff_s(attempts: int, retry_max_s: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (1, 2, 4, ... capped)."""
    return float(min(retry_max_s, 2.0 ** max(0, attempts - 1)))


class AlertDelivery:
    """Run ``run()`` in its own thread; ``wake()`` after alerts were queued; ``stop()``.

    ``clock_ms`` must be the registry's clock (it stamps ``created_ms``/``next_attempt_ms``).
    ``publish(topic, payload)`` sends one QoS 1 message and returns its handle; nothing is
    attempted while ``connected()`` is false (paho would queue the message and send it on
    reconnect while the round counts it failed and sends it again later). ``hold_s`` (fault
    tests only) delays a row's first attempt after it was queued.
    """

    def __init__(
        self,
        registry: Registry,
        publish: Callable[[str, bytes], PublishHandle],
        *,
        clock_ms: Callable[[], int],
        connected: Callable[[], bool] = lambda: True,
        ack_timeout_s: float = 10.0,
        retry_max_s: float = 300.0,
        hold_s: float = 0.0,
        batch: int = 100,
        idle_s: float = 1.0,
    ) -> None:
        self._registry = registry
        self._publish = publish
        self._clock_ms = clock_ms
        self._connected = connected
        self._ack_timeout_s = ack_timeout_s
        self._retry_max_s = retry_max_s
        self._hold_ms = round(hold_s * 1000)
        self._batch = batch
        self._idle_s = idle_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.delivered_total = 0
        self.failed_attempts_total = 0
        self.errors_total = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current round; what is not acknowledged stays queued."""
        self._stop.set()
        self._wake.set()

    def stats(self) -> dict[str, object]:
        return {
            "alerts_delivered": self.delivered_total,
            "alerts_failed_attempts": self.failed_attempts_total,
            "alerts_errors": self.errors_total,
        }

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.deliver_round() == self._batch
            except ColdchainError as exc:  # the registry: retried, rows stay queued
                self.errors_total += 1
                log.error("alert delivery failed (retrying in 5 s): %s", exc)
                self._stop.wait(5.0)
                continue
            if not busy:
                # The hold (tests) makes rows due without a wake-up: look again by then.
                self._wake.wait(min(self._idle_s, self._hold_ms / 1000 or self._idle_s))
                self._wake.clear()

    def deliver_round(self) -> int:
        """Publish the due rows (at most ``batch``), wait for their PUBACKs up to
        ``ack_timeout_s`` in all, mark the acknowledged ones delivered and the rest failed with
        their retry time. Returns the number of rows attempted. Raises StoreError (registry)."""
        if not self._connected():
            return 0
        now = self._clock_ms()
        # Claimed for the round and a margin: a sibling process does not send them meanwhile;
        # if this one dies, they are due again when the claim runs out.
        lease_ms = round(1000 * self._ack_timeout_s) + CLAIM_MARGIN_MS
        due = self._registry.claim_due_alerts(
            "mqtt", now_ms=now - self._hold_ms, lease_until_ms=now + lease_ms, limit=self._batch
        )
        if not due:
            return 0
        sent: list[tuple[OutboxEntry, PublishHandle | None, str]] = []
        for entry in due:
            try:
                sent.append((entry, self._publish(entry.topic, entry.payload.encode()), ""))
            except (ValueError, RuntimeError, OSError) as exc:
                sent.append((entry, None, f"publish: {exc}"))
        deadline = time.monotonic() + self._ack_timeout_s
        delivered: list[int] = []
        failed: list[tuple[OutboxEntry, str]] = []
        for entry, handle, error in sent:
            if handle is not None:
                try:
                    # In slices, so that stop() cuts the wait short (the row is retried later).
                    while not handle.is_published() and not self._stop.is_set():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        handle.wait_for_publish(min(0.2, left))
                    if handle.is_published():
                        delivered.append(entry.id)
                        continue
                    error = f"no PUBACK within {self._ack_timeout_s:g} s"
                except (ValueError, RuntimeError) as exc:  # paho: not queued / not connected
                    error = f"publish: {exc}"
            failed.append((entry, error))
        self._registry.mark_alerts_delivered(delivered)
        self.delivered_total += len(delivered)
        for entry, error in failed:
            tries = entry.attempts + 1
            retry_ms = self._clock_ms() + round(1000 * backoff_s(tries, self._retry_max_s))
            self._registry.mark_alert_failed(entry.id, error, retry_ms)
            self.failed_attempts_total += 1
            log.warning("alert %s not delivered (attempt %d): %s", entry.key, tries, error)
        return len(due)
