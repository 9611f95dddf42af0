"""The MQTT source: paho-mqtt 2.x (MQTT 3.1.1 or 5), persistent session, shared subscription,
manual acks, batched socket I/O (``ingest.mqtt_client``), and a liveness probe
(``ingest.liveness``).

Guarantees:
- QoS 1 messages are acknowledged only by ``ack()``, which the pipeline calls after the spool
  committed them; a crash before that makes the broker redeliver.
- The session outlives the process: ``clean_session=False`` (3.1.1) or ``clean_start=False``
  with ``session_expiry_s`` (5); the broker queues for it while ingest is down.
- Every connection subscribes again, session present or not, and the source is ready
  (``wait_connected``) only at the SUBACK: mosquitto restores a persistent session after a
  restart but not its shared subscriptions, so a resumed session is not proof of a
  subscription. A repeated SUBSCRIBE of an existing subscription only updates it.
- With MQTT 5 the broker is asked for at most ``max_inflight`` unacknowledged messages (Receive
  Maximum); the service bounds its own queue with either protocol.
- Acks are tagged with the connection they came from: after a reconnect the broker redelivers
  everything unacknowledged, and packet ids may be reused, so acks for a previous connection
  are dropped rather than sent (the redelivered copy is spooled again, which is idempotent).
  Acks of the current connection are written in order with the SUBSCRIBE; one the broker did
  not act on leaves its message unacknowledged, so it comes back on the next connection: a
  duplicate, never a loss. ``stop()`` returns once the broker has read the acks queued before
  it (a QoS 1 publish after them is acknowledged), so a clean stop leaves nothing to redeliver.
- Liveness: see ``ingest.liveness``; problems go to ``health`` (the service passes its own).
  Probes never reach ``deliver``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from coldchain.contract import device_topic, shared_subscription
from coldchain.settings import MqttSettings
from ingest.health import Health
from ingest.liveness import ProbeAction, ProbeMonitor, probe_subscription, probe_topic
from ingest.mqtt_client import BatchedClient, use_tls

__all__ = ["Delivery", "MqttSource"]

log = logging.getLogger("coldchain.ingest.mqtt")


class Delivery(NamedTuple):
    """One message as paho delivered it: ``received_ms`` on the ingest clock (epoch ms),
    ``generation`` of the connection that must acknowledge it. (A NamedTuple: one is made per
    message on paho's thread, ~0.4 us cheaper than a frozen dataclass.)"""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    generation: int


def _wall_ms() -> int:
    return int(time.time() * 1000)


class MqttSource:
    """One MQTT connection delivering telemetry (and events) to ``deliver`` on paho's thread.

    ``connected`` is set while the current connection is subscribed (SUBACK received) and
    cleared when it drops. ``health`` receives ``mqtt_not_receiving``/``mqtt_disconnected``;
    assign the service's before ``start()``.
    """

    def __init__(
        self,
        settings: MqttSettings,
        deliver: Callable[[Delivery], None],
        kinds: tuple[str, ...] = ("telemetry",),
        health: Health | None = None,
        clock_ms: Callable[[], int] | None = None,
        topics: tuple[str, ...] = (),
    ) -> None:
        """``clock_ms``: the ingest clock stamped on each delivery as ``received_ms`` (epoch
        ms; default the wall clock; a replay passes its simulated clock). ``topics``: topic
        filters to subscribe to instead of the devices' ``kinds`` (a rules worker's
        partition topic)."""
        self.settings = settings
        self._clock_ms = clock_ms if clock_ms is not None else _wall_ms
        self.kinds = kinds
        self.health = health if health is not None else Health()
        self._deliver = deliver
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.session_present: bool | None = None
        self.probe_rtt_s: float | None = None
        self._probe_topic = probe_topic(settings.client_id)
        self._probe_subscription = probe_subscription(settings.client_id)
        # One SUBSCRIBE: the telemetry kinds through the share group, then the probe.
        group = settings.share_group
        self._subscriptions = [
            *(shared_subscription(group, k) if group else device_topic("+", k) for k in kinds),
            self._probe_subscription,
        ]
        if topics:
            self._subscriptions = [*topics, self._probe_subscription]
        self._messages = 0  # every message read, probes included; written by paho's thread
        self._delivering = False  # paho's thread is inside deliver() (pipeline backpressure)
        self._monitor: ProbeMonitor | None = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._v5 = settings.protocol == "5"
        client = BatchedClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            # MQTT 3.1.1 keeps the session by clean_session=False; MQTT 5 by clean_start below.
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        use_tls(client, settings)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish_raw = self._on_publish_raw
        client.on_subscribe = self._on_subscribe
        # Back quickly after a broker restart: until this process has subscribed again, the
        # broker drops what devices publish (shared subscriptions are not restored). At most
        # one connection attempt a second while the broker is away.
        client.reconnect_delay_set(0.05, 1)  # type: ignore[arg-type]  # paho says int; floats work
        self._client = client

    def start(self) -> None:
        s = self.settings
        self._monitor = ProbeMonitor(
            self.health,
            interval_s=s.probe_interval_s,
            missed_intervals=s.probe_missed_intervals,
            disconnected_grace_s=s.disconnected_grace_s,
            endpoint=f"{s.host}:{s.port}",
            now_s=time.monotonic(),
        )
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.session_expiry_s
            props.ReceiveMaximum = s.max_inflight
            self._client.connect_async(
                s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
            )
        else:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._client.loop_start()
        self._watchdog = threading.Thread(target=self._watch, name="mqtt-liveness", daemon=True)
        self._watchdog.start()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """True once connected and subscribed."""
        return self.connected.wait(timeout_s)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connect refused: %s", reason)
            if self._monitor is not None:
                self._monitor.disconnected(time.monotonic(), f"connect refused: {reason}")
            return
        with self._lock:
            self._generation += 1
        self._closed.clear()
        self.session_present = bool(getattr(flags, "session_present", False))
        if self._monitor is not None:
            self._monitor.connected(time.monotonic())
        # Subscribe on every connection, even when the session is resumed: mosquitto restores
        # a persistent session after a restart but not its shared subscriptions, and without
        # them nothing new arrives (issue 8). A resumed session's backlog may come ahead of
        # the SUBACK; it is delivered and acknowledged as usual meanwhile.
        self._subscribe()
        log.info(
            "connected to MQTT %s:%d (session present: %s); subscribing",
            self.settings.host,
            self.settings.port,
            self.session_present,
        )

    def _subscribe(self) -> None:
        *telemetry, probe = self._subscriptions
        if self._v5:
            opts = SubscribeOptions(qos=1)
            self._client.subscribe([*((t, opts) for t in telemetry), (probe, SubscribeOptions())])
        else:
            self._client.subscribe([*((t, 1) for t in telemetry), (probe, 0)])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [
            topic
            for topic, rc in zip(self._subscriptions, reason_codes, strict=False)
            if rc.is_failure
        ]
        if refused:
            log.error("MQTT subscription refused: %s (%s)", refused, reason_codes)
            if self._monitor is not None:
                self._monitor.refused(", ".join(refused))
        if self._probe_subscription in refused and len(refused) == 1:
            refused = []  # telemetry flows; health stays red until the ACL allows the probe
        if refused:
            return
        # Ready only once subscribed: what is published before then has nowhere to go.
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        self.connected.clear()
        self._closed.set()
        if self._monitor is not None:
            self._monitor.disconnected(time.monotonic(), str(reason))
        log.warning("MQTT disconnected: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # paho types the payload bytes | bytearray; it reads bytes off the socket.
        self._on_publish_raw(msg.topic, cast(bytes, msg.payload), msg.mid, msg.qos)

    def _on_publish_raw(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """One message, from ``BatchedClient``'s fast path or (through ``_on_message``) paho's
        reader: a liveness probe's echo, or a delivery for the pipeline."""
        self._messages += 1
        if topic == self._probe_topic:
            self._probe_returned(payload)
            return
        d = Delivery(topic, payload, mid, qos, self._clock_ms(), self._generation)
        self._delivering = True  # a full pipeline queue blocks here: backpressure, not deafness
        try:
            self._deliver(d)
        finally:
            self._delivering = False

    # -- liveness ----------------------------------------------------------------------------
    def _probe_returned(self, payload: bytes) -> None:
        now_ns = time.monotonic_ns()
        try:
            self.probe_rtt_s = (now_ns - int(payload)) / 1e9
        except ValueError:
            log.warning("unexpected payload on %s: %r", self._probe_topic, payload[:64])
            return
        if self._monitor is not None:
            self._monitor.probe_returned(now_ns / 1e9)

    def _watch(self) -> None:
        monitor = self._monitor
        assert monitor is not None
        while not self._stopping.wait(monitor.interval_s):
            if self._client.is_connected():
                # QoS 0: a probe lost on a dropped connection is simply not counted, and none
                # is queued for a session while the process is away.
                self._client.publish(self._probe_topic, str(time.monotonic_ns()).encode(), qos=0)
            action = monitor.tick(time.monotonic(), self._messages, self._delivering)
            if action is ProbeAction.RESUBSCRIBE and self._client.is_connected():
                self._subscribe()

    def stats(self) -> dict[str, object]:
        """Liveness figures: probes returned, resubscriptions, last probe round trip (s)."""
        m = self._monitor
        return {
            "mqtt_probes_returned": m.probes_returned if m else 0,
            "mqtt_resubscribes": m.resubscribes if m else 0,
            "mqtt_probe_rtt_s": self.probe_rtt_s,
            "mqtt_session_present": int(bool(self.session_present)),
        }

    # -- acks and publishing -----------------------------------------------------------------
    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a durable delivery; False if its connection is gone (broker redelivers)."""
        if delivery.qos == 0 or delivery.generation != self._generation:
            return False
        self._client.ack(delivery.mid, delivery.qos)
        return True

    def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Acknowledge a group of durable deliveries with one queued write; returns how many
        were acknowledged (the others: QoS 0, or their connection is gone and the broker
        redelivers them)."""
        generation = self._generation
        mids = [d.mid for d in deliveries if d.qos == 1 and d.generation == generation]
        self._client.ack_many(mids)
        others = [d for d in deliveries if d.qos > 1 and d.generation == generation]
        for d in others:  # QoS 2: paho's own handshake
            self._client.ack(d.mid, d.qos)
        return len(mids) + len(others)

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """QoS 1 publish on this connection (alerts); paho queues it while disconnected. The
        handle tells when the broker acknowledged it (``is_published``, ``wait_for_publish``)."""
        return self._client.publish(topic, payload, qos=1)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect once the broker has processed every ack queued so far (up to
        ``timeout_s``); acks it never read make it redeliver those messages next time.

        mosquitto reads one packet per connection per turn of its event loop and, when the
        same client id connects again, drops the old connection with whatever it had not read
        yet: the acks and the DISCONNECT of a process stopped and started within
        milliseconds were lost that way. So a QoS 1 publish goes out after the acks, and its
        PUBACK, sent once the broker has read everything before it, is awaited first."""
        self._stopping.set()
        if self._client.is_connected():
            barrier = self._client.publish(
                self._probe_topic, str(time.monotonic_ns()).encode(), qos=1
            )
            with contextlib.suppress(RuntimeError, ValueError):
                barrier.wait_for_publish(timeout_s)
        if self._client.disconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._closed.wait(timeout_s)
        self._client.loop_stop()
        if self._watchdog is not None:
            self._watchdog.join(timeout_s)
