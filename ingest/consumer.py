"""The MQTT source: paho-mqtt 2.x (MQTT 3.1.1 or 5), persistent session, shared subscription,
manual acks, batched socket I/O (``ingest.mqtt_client``).

Guarantees:
- QoS 1 messages are acknowledged only by ``ack()``, which the pipeline calls after the spool
  committed them; a crash before that makes the broker redeliver.
- The session outlives the process: ``clean_session=False`` (3.1.1) or ``clean_start=False``
  with ``session_expiry_s`` (5); the broker queues for it while ingest is down.
- With MQTT 5 the broker is asked for at most ``max_inflight`` unacknowledged messages (Receive
  Maximum); the service bounds its own queue with either protocol.
- Acks are tagged with the connection they came from: after a reconnect the broker redelivers
  everything unacknowledged, and packet ids may be reused, so acks for a previous connection
  are dropped rather than sent (the redelivered copy is spooled again, which is idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from coldchain.contract import shared_subscription
from coldchain.settings import MqttSettings
from ingest.mqtt_client import BatchedClient

__all__ = ["Delivery", "MqttSource"]

log = logging.getLogger("coldchain.ingest.mqtt")


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    generation: int


class MqttSource:
    def __init__(
        self,
        settings: MqttSettings,
        deliver: Callable[[Delivery], None],
        kinds: tuple[str, ...] = ("telemetry",),
    ) -> None:
        self.settings = settings
        self.kinds = kinds
        self._deliver = deliver
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
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
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # paho's hint says int; its reconnect loop takes float seconds.
        client.reconnect_delay_set(0.2, 10)  # type: ignore[arg-type]
        self._client = client

    def start(self) -> None:
        s = self.settings
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
            return
        with self._lock:
            self._generation += 1
        if getattr(flags, "session_present", False):
            # A resumed session holds its subscriptions. Subscribing again is not harmless:
            # with mosquitto 2.0.11, acks sent while a repeated shared SUBSCRIBE was in flight
            # were lost and those messages came back (tests/integration/test_mqtt_source.py).
            # And the backlog would be sent ahead of the SUBACK, holding readiness back.
            # (So the subscriptions are those made when the session began.)
            self.connected.set()
            return
        group = self.settings.share_group
        topics = [shared_subscription(group, kind) for kind in self.kinds]
        if self._v5:
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in topics])
        else:
            client.subscribe([(t, 1) for t in topics])
        log.info("connected to MQTT %s:%d", self.settings.host, self.settings.port)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(getattr(rc, "is_failure", False) for rc in reason_codes):
            log.error("MQTT subscription refused: %s", reason_codes)
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
        log.warning("MQTT disconnected: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # paho types payload as bytes | bytearray; a received PUBLISH's is always bytes.
        payload = cast(bytes, msg.payload)
        self._deliver(
            Delivery(
                msg.topic, payload, msg.mid, msg.qos, int(time.time() * 1000), self._generation
            )
        )

    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a durable delivery; False if its connection is gone (broker redelivers)."""
        if delivery.qos == 0 or delivery.generation != self._generation:
            return False
        self._client.ack(delivery.mid, delivery.qos)
        return True

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1 publish on this connection (alerts); paho queues it while disconnected."""
        self._client.publish(topic, payload, qos=1)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
