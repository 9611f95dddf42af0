"""The MQTT source against a real mosquitto: manual acks, redelivery, the in-flight bound."""

from __future__ import annotations

import threading
import time
from typing import Literal

import pytest

from coldchain.contract import device_topic
from coldchain.settings import MqttSettings
from deploy.launcher import Services
from ingest.consumer import Delivery, MqttSource
from simulators.loadgen import LoadPublisher
from tests.harness import wait_for

pytestmark = pytest.mark.integration


class _Collector:
    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self._lock = threading.Lock()

    def __call__(self, d: Delivery) -> None:
        with self._lock:
            self.items.append(d)

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [d.payload for d in self.items]


PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


def _source(
    services: Services,
    name: str,
    sink: _Collector,
    inflight: int = 100,
    protocol: Literal["3.1.1", "5"] = "3.1.1",
) -> MqttSource:
    settings = MqttSettings(
        port=services.mosquitto.port,
        client_id=name,
        share_group=name,
        max_inflight=inflight,
        protocol=protocol,
    )
    src = MqttSource(settings, sink)
    src.start()
    assert src.wait_connected(10)
    return src


@PROTOCOLS
def test_unacknowledged_messages_come_back_after_reconnect(
    services: Services, unique_name: str, protocol: Literal["3.1.1", "5"]
) -> None:
    first = _Collector()
    src = _source(services, unique_name, first, protocol=protocol)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    for i in range(10):
        pub.publish(device_topic("dev-1"), f"m{i}".encode())
    assert pub.flush(10)
    assert wait_for(lambda: len(first.items) == 10, 10)
    for d in first.items[:6]:
        assert src.ack(d)
    time.sleep(0.5)  # let the PUBACKs leave before the disconnect; paho does not wait for them
    src.stop()

    second = _Collector()
    src2 = _source(services, unique_name, second, protocol=protocol)
    try:
        assert wait_for(lambda: len(second.items) >= 4, 10)
        assert sorted(second.payloads()) == sorted(f"m{i}".encode() for i in range(6, 10))
        for d in second.items:
            assert src2.ack(d)
    finally:
        src2.stop()
        pub.close()

    third = _Collector()
    src3 = _source(services, unique_name, third, protocol=protocol)
    try:
        assert not wait_for(lambda: len(third.items) > 0, 1.0), (
            third.payloads(),
            second.payloads(),
        )
    finally:
        src3.stop()


@PROTOCOLS
def test_acks_of_a_previous_connection_are_dropped(
    services: Services, unique_name: str, protocol: Literal["3.1.1", "5"]
) -> None:
    sink = _Collector()
    src = _source(services, unique_name, sink, protocol=protocol)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        for i in range(4):
            pub.publish(device_topic("dev-1"), f"m{i}".encode())
        assert pub.flush(10)
        assert wait_for(lambda: len(sink.items) == 4, 10)
        old = list(sink.items)
        src.connected.clear()
        src._client.reconnect()  # a dropped connection, as a flaky network would cause
        assert src.wait_connected(10)
        # Packet ids may be reused on the new connection: an old ack must not be sent there.
        assert not any(src.ack(d) for d in old)
        # The broker redelivers the four, now acknowledgeable.
        assert wait_for(lambda: len(sink.items) == 8, 10)
        assert all(src.ack(d) for d in sink.items[4:])
        assert sorted(d.payload for d in sink.items[4:]) == sorted(d.payload for d in old)
    finally:
        src.stop()
        pub.close()


def test_the_first_window_is_bounded_by_receive_maximum(
    services: Services, unique_name: str
) -> None:
    sink = _Collector()
    src = _source(services, unique_name, sink, inflight=3, protocol="5")
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        for i in range(10):
            pub.publish(device_topic("dev-1"), f"m{i}".encode())
        assert pub.flush(10)
        assert wait_for(lambda: len(sink.items) == 3, 5)
        assert not wait_for(lambda: len(sink.items) > 3, 0.5)
        # mosquitto 2.0 sends the rest of its queue once the first window is acknowledged,
        # ignoring Receive Maximum from then on; IngestService bounds its own queue for that.
    finally:
        src.stop()
        pub.close()


@PROTOCOLS
def test_every_batched_ack_reaches_the_broker(
    services: Services, unique_name: str, protocol: Literal["3.1.1", "5"]
) -> None:
    """Thousands of acks from another thread, written together: none is lost or misordered,
    so a restarted source gets nothing back; and nothing is delivered twice meanwhile."""
    n = 5000
    sink = _Collector()
    src = _source(services, unique_name, sink, inflight=n, protocol=protocol)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        for i in range(n):
            pub.publish(device_topic(f"dev-{i % 7}"), f"m{i}".encode())
        assert pub.flush(30)
        acked = 0
        deadline = time.monotonic() + 30
        while acked < n and time.monotonic() < deadline:
            with sink._lock:
                batch = sink.items[acked:]
            for d in batch:
                assert src.ack(d)
            acked += len(batch)
            time.sleep(0.005)
        assert acked == n
        assert sorted(sink.payloads()) == sorted(f"m{i}".encode() for i in range(n))
        time.sleep(0.5)  # let the last PUBACKs leave before the disconnect
    finally:
        src.stop()
        pub.close()
    again = _Collector()
    src2 = _source(services, unique_name, again, protocol=protocol)
    try:
        assert not wait_for(lambda: len(again.items) > 0, 1.5)
    finally:
        src2.stop()


@PROTOCOLS
def test_a_resumed_session_subscribes_again_and_the_acks_around_it_hold(
    services: Services, unique_name: str, protocol: Literal["3.1.1", "5"]
) -> None:
    """A resumed session is subscribed again (mosquitto forgets shared subscriptions across a
    restart). Its backlog comes ahead of the SUBACK and is acknowledged while the SUBSCRIBE is
    in flight: those acks hold (nothing comes back), readiness comes at the SUBACK, and what is
    published afterwards arrives."""
    _source(services, unique_name, _Collector(), protocol=protocol).stop()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    for i in range(500):
        pub.publish(device_topic("dev-1"), f"m{i}".encode())
    assert pub.flush(10)
    sink = _Collector()
    acked: list[bool] = []
    settings = MqttSettings(
        port=services.mosquitto.port,
        client_id=unique_name,
        share_group=unique_name,
        max_inflight=100,
        protocol=protocol,
    )

    def ack_at_once(d: Delivery) -> None:
        sink(d)
        acked.append(src.ack(d))

    src = MqttSource(settings, ack_at_once)
    src.start()
    try:
        assert src.wait_connected(10)
        assert src.session_present is True
        for i in range(500, 510):
            pub.publish(device_topic("dev-1"), f"m{i}".encode())
        assert pub.flush(10)
        assert wait_for(lambda: len(sink.items) >= 510, 10)
        assert sorted(sink.payloads()) == sorted(f"m{i}".encode() for i in range(510))
        assert all(acked)
    finally:
        src.stop()
        pub.close()
    again = _Collector()
    src2 = _source(services, unique_name, again, protocol=protocol)
    try:
        assert not wait_for(lambda: len(again.items) > 0, 1.5), len(again.items)
    finally:
        src2.stop()


def test_two_sources_in_one_share_group_split_the_load(
    services: Services, unique_name: str
) -> None:
    """Several ingest processes scale out by sharing the subscription: each message goes to
    exactly one of them."""
    sinks = [_Collector(), _Collector()]
    sources = []
    for i, sink in enumerate(sinks):
        settings = MqttSettings(
            port=services.mosquitto.port, client_id=f"{unique_name}-{i}", share_group=unique_name
        )
        src = MqttSource(settings, sink)
        src.start()
        assert src.wait_connected(10)
        sources.append(src)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    n = 400
    try:
        for i in range(n):
            pub.publish(device_topic(f"dev-{i % 13}"), f"m{i}".encode())
        assert pub.flush(10)
        assert wait_for(lambda: sum(len(s.items) for s in sinks) >= n, 10)
        assert not wait_for(lambda: sum(len(s.items) for s in sinks) > n, 0.5)
        got = sinks[0].payloads() + sinks[1].payloads()
        assert sorted(got) == sorted(f"m{i}".encode() for i in range(n))
        assert all(len(s.items) > n // 10 for s in sinks), [len(s.items) for s in sinks]
        for src, sink in zip(sources, sinks, strict=True):
            for d in sink.items:
                assert src.ack(d)
    finally:
        for src in sources:
            src.stop()
        pub.close()
