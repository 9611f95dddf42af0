"""Is this ingest process really receiving? A probe through its own share group, and the health
problems ``mqtt_not_receiving`` and ``mqtt_disconnected``.

Why a probe: mosquitto restores a persistent session after a restart but not its shared
subscriptions, and a subscription can be lost in other ways; a process that is subscribed in
its own eyes then receives nothing, which looks exactly like an idle fleet. Each process
publishes a small QoS 0 probe on its own topic, ``coldchain/v1/ingest/{client}/probe``, and
subscribes to it through a share group of its own, ``$share/{client}-probe/...``: the probe
crosses the same shared-subscription machinery the broker forgets, and reaches exactly this
process (a probe through the telemetry share group would reach only one member of it).

Guarantees (``ProbeMonitor``, pure: the clock is passed in, the consumer drives it):
- ``mqtt_not_receiving`` is raised after ``missed_intervals`` probe intervals in which the
  connection was up and nothing at all arrived (no probe and no message) while the network
  thread was not held up by the pipeline (backpressure is not deafness); it is cleared when a
  probe comes back. Each such window asks the consumer to subscribe again.
- ``mqtt_disconnected`` is raised when the connection has been down longer than
  ``disconnected_grace_s`` (a broker restart takes a second or two) and cleared on CONNACK.
- Probes are never delivered to the pipeline: they are not telemetry, so they are neither
  stored nor dead-lettered.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

from coldchain.contract.topics import PREFIX
from ingest.health import Health

__all__ = [
    "MQTT_DISCONNECTED",
    "MQTT_NOT_RECEIVING",
    "ProbeAction",
    "ProbeMonitor",
    "probe_subscription",
    "probe_topic",
]

MQTT_NOT_RECEIVING = "mqtt_not_receiving"
MQTT_DISCONNECTED = "mqtt_disconnected"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _probe_name(client_id: str) -> str:
    """The client id as one topic level and share-group name (no ``/ + # $``); a short hash
    keeps two ids that differ only in replaced characters apart."""
    safe = _UNSAFE.sub("_", client_id)
    if safe != client_id:
        safe += "-" + hashlib.sha256(client_id.encode()).hexdigest()[:8]
    return safe


def probe_topic(client_id: str) -> str:
    """``coldchain/v1/ingest/{client}/probe``: where the process with ``client_id`` probes."""
    return f"{PREFIX}/ingest/{_probe_name(client_id)}/probe"


def probe_subscription(client_id: str) -> str:
    """``$share/{client}-probe/coldchain/v1/ingest/{client}/probe``: a share group with this
    process as its only member, so the probe takes the shared-subscription path."""
    return f"$share/{_probe_name(client_id)}-probe/{probe_topic(client_id)}"


class ProbeAction(Enum):
    NONE = "none"
    RESUBSCRIBE = "resubscribe"


@dataclass
class _State:
    connected: bool = False
    since_s: float = 0.0  # when ``connected`` last changed
    reason: str = "not connected yet"
    last_heard_s: float = 0.0
    seen_messages: int = 0  # the consumer counts from 0
    windows_missed: int = 0


class ProbeMonitor:
    """The liveness state machine of one MQTT source. Times are monotonic seconds.

    The consumer calls ``connected``/``disconnected`` from its callbacks, ``probe_returned``
    when a probe arrives, and ``tick`` every ``interval_s`` with its message counter and whether
    its network thread is inside the pipeline's (blocking) delivery call.
    """

    def __init__(
        self,
        health: Health,
        *,
        interval_s: float,
        missed_intervals: int,
        disconnected_grace_s: float,
        endpoint: str,
        now_s: float,
    ) -> None:
        if interval_s <= 0 or missed_intervals < 1 or disconnected_grace_s < 0:
            raise ValueError("interval_s > 0, missed_intervals >= 1, disconnected_grace_s >= 0")
        self.health = health
        self.interval_s = interval_s
        self.missed_intervals = missed_intervals
        self.disconnected_grace_s = disconnected_grace_s
        self.endpoint = endpoint
        self._s = _State(since_s=now_s, last_heard_s=now_s)
        self.probes_returned = 0
        self.resubscribes = 0

    def connected(self, now_s: float) -> None:
        s = self._s
        s.connected, s.since_s, s.last_heard_s, s.windows_missed = True, now_s, now_s, 0
        self.health.clear(MQTT_DISCONNECTED)

    def disconnected(self, now_s: float, reason: str) -> None:
        s = self._s
        if s.connected:
            s.since_s = now_s
        s.connected, s.reason = False, reason

    def probe_returned(self, now_s: float) -> None:
        self.probes_returned += 1
        self._s.last_heard_s, self._s.windows_missed = now_s, 0
        self.health.clear(MQTT_NOT_RECEIVING)

    def tick(self, now_s: float, messages_seen: int, delivering: bool) -> ProbeAction:
        """Judge the last interval; what the consumer should do about it."""
        s = self._s
        if not s.connected:
            down_s = now_s - s.since_s
            if down_s > self.disconnected_grace_s:
                self.health.raise_problem(
                    MQTT_DISCONNECTED,
                    f"no connection to the broker at {self.endpoint} for {down_s:.0f} s "
                    f"({s.reason})",
                )
            return ProbeAction.NONE
        if messages_seen != s.seen_messages or delivering:
            # Messages arrived, or the pipeline holds the network thread (backpressure):
            # receiving, even if a probe is stuck behind a backlog.
            s.seen_messages, s.last_heard_s = messages_seen, now_s
            return ProbeAction.NONE
        silent_s = now_s - s.last_heard_s
        window_s = self.interval_s * self.missed_intervals
        if silent_s < window_s * (s.windows_missed + 1):
            return ProbeAction.NONE
        s.windows_missed += 1
        self.health.raise_problem(
            MQTT_NOT_RECEIVING,
            f"connected to {self.endpoint} but nothing received for {silent_s:.0f} s, not even "
            f"this process's own probe (the broker may have lost its subscriptions); "
            f"subscribing again",
        )
        self.resubscribes += 1
        return ProbeAction.RESUBSCRIBE

    def refused(self, what: str) -> None:
        """The broker refused a subscription: receiving is impossible until that is fixed."""
        self.health.raise_problem(
            MQTT_NOT_RECEIVING, f"the broker at {self.endpoint} refused the subscription {what}"
        )
