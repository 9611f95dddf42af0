"""``BatchedClient``'s PUBLISH fast path: every message reaches the consumer once, in order,
whichever reader parsed it, and what the fast path must not parse goes to paho untouched.

No broker here: the client's socket is one end of a socketpair, fed with hand-built packets
(MQTT 3.1.1 section 3.3 and MQTT 5 section 3.3: fixed header, remaining length, topic, packet
id for QoS > 0, properties for MQTT 5, payload). tests/integration/test_mqtt_source.py runs the
client against mosquitto.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from ingest.mqtt_client import BatchedClient

Seen = tuple[str, str, bytes, int, int]  # (path, topic, payload, mid, qos)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: bytes, payload: bytes, qos: int = 1, mid: int = 0, props: bytes | None = None
) -> bytes:
    """A PUBLISH packet; ``props``: MQTT 5 properties with their length (``b"\\x00"``: none)."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    body += (props or b"") + payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


class _Peer:
    def __init__(self, protocol: int = mqtt.MQTTv311) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.client = BatchedClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=True
        )
        self.client._sock = self.ours
        self.seen: list[Seen] = []
        self.client.on_publish_raw = lambda t, p, m, q: self.seen.append(("fast", t, p, m, q))
        self.client.on_message = self._paho

    def _paho(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # paho's MQTTMessage raises on a topic that is not UTF-8
            topic = "<not UTF-8>"
        self.seen.append(("paho", topic, bytes(msg.payload), msg.mid, msg.qos))

    def send_and_read(self, data: bytes) -> mqtt.MQTTErrorCode:
        self.theirs.sendall(data)
        rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        for _ in range(200):  # a socketpair holds what was sent: each call reads some of it
            rc = self.client.loop_read()
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        return rc

    def close(self) -> None:
        self.client._sock = None
        self.ours.close()
        self.theirs.close()


@pytest.fixture
def peer() -> Iterator[_Peer]:
    p = _Peer()
    yield p
    p.close()


@pytest.fixture
def peer5() -> Iterator[_Peer]:
    p = _Peer(mqtt.MQTTv5)
    yield p
    p.close()


def test_complete_publishes_take_the_fast_path_in_order(peer: _Peer) -> None:
    peer.client._last_bytes_received = 0.0
    packets = [
        publish(b"coldchain/v1/devices/d1/telemetry", b'{"a":1}', qos=1, mid=1),
        publish(b"coldchain/v1/devices/d2/telemetry", b"", qos=0),
        publish(b"t/\xc3\xa9", b"x" * 300, qos=1, mid=65535),  # two-byte remaining length
    ]
    assert peer.send_and_read(b"".join(packets)) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert peer.seen == [
        ("fast", "coldchain/v1/devices/d1/telemetry", b'{"a":1}', 1, 1),
        ("fast", "coldchain/v1/devices/d2/telemetry", b"", 0, 0),
        ("fast", "t/\u00e9", b"x" * 300, 65535, 1),
    ]
    assert peer.client.buffered_bytes() == 0
    assert peer.client._last_bytes_received > 0.0  # the keepalive sees the traffic


def test_a_packet_split_across_reads_is_finished_by_paho_and_nothing_repeats(
    peer: _Peer,
) -> None:
    a, b = publish(b"t/a", b"first", mid=1), publish(b"t/b", b"second", mid=2)
    c = publish(b"t/c", b"third", mid=3)
    peer.send_and_read(a + b[:5])
    peer.send_and_read(b[5:] + c)
    assert [(s[1], s[2], s[3]) for s in peer.seen] == [
        ("t/a", b"first", 1),
        ("t/b", b"second", 2),
        ("t/c", b"third", 3),
    ]
    assert peer.seen[1][0] == "paho"  # the split one: paho had read part of it
    assert peer.client._in_packet["command"] == 0


def test_what_the_fast_path_must_not_parse_goes_to_paho(peer: _Peer) -> None:
    pingresp = bytes([0xD0, 0])
    qos2 = publish(b"t/q2", b"two", qos=2, mid=5)
    bad_topic = publish(b"t/\xff", b"latin", mid=6)
    peer.send_and_read(
        publish(b"t/1", b"1", mid=1) + pingresp + qos2 + bad_topic + publish(b"t/2", b"2", mid=7)
    )
    assert peer.seen == [
        ("fast", "t/1", b"1", 1, 1),
        ("paho", "<not UTF-8>", b"latin", 6, 1),
        ("fast", "t/2", b"2", 7, 1),
    ]  # QoS 2 waits for its PUBREL in paho's state, then goes to on_message
    assert 5 in peer.client._in_messages
    assert peer.theirs.recv(64) == bytes([0x50, 2, 0, 5])  # paho's PUBREC


def test_an_empty_topic_is_rejected_by_paho_as_a_protocol_error(peer: _Peer) -> None:
    rc = peer.send_and_read(publish(b"", b"x", mid=1))
    assert rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert peer.seen == []


def test_mqtt5_without_properties_is_fast_and_with_properties_is_paho(peer5: _Peer) -> None:
    user_property = b"\x26\x00\x01k\x00\x01v"  # MQTT 5 3.3.2.3.7
    peer5.send_and_read(
        publish(b"t/1", b"one", mid=1, props=b"\x00")
        + publish(b"t/2", b"two", mid=2, props=_varint(len(user_property)) + user_property)
        + publish(b"t/3", b"three", qos=0, props=b"\x00")
    )
    assert peer5.seen == [
        ("fast", "t/1", b"one", 1, 1),
        ("paho", "t/2", b"two", 2, 1),
        ("fast", "t/3", b"three", 0, 0),
    ]


def test_an_exception_in_the_handler_is_raised_unless_suppressed(peer: _Peer) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    peer.client.on_publish_raw = boom
    peer.theirs.sendall(publish(b"t/1", b"1", mid=1) + publish(b"t/2", b"2", mid=2))
    with pytest.raises(RuntimeError):
        peer.client.loop_read()
    assert peer.client.buffered_bytes() > 0  # the first was consumed, the second kept
    peer.client.suppress_exceptions = True
    peer.client.loop_read()
    assert peer.client.buffered_bytes() == 0


def test_per_topic_callbacks_turn_the_fast_path_off(peer: _Peer) -> None:
    peer.client.message_callback_add(
        "t/#", lambda _c, _u, m: peer.seen.append(("cb", "", b"", 0, 0))
    )
    peer.send_and_read(publish(b"t/1", b"1", mid=1))
    assert [s[0] for s in peer.seen] == ["cb"]


def test_a_closed_peer_is_a_lost_connection(peer: _Peer) -> None:
    peer.theirs.shutdown(socket.SHUT_WR)
    assert peer.client.loop_read() != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


@pytest.mark.parametrize("seed", range(20))
def test_any_split_of_any_stream_delivers_each_message_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    protocol = rng.choice([mqtt.MQTTv311, mqtt.MQTTv5])
    peer = _Peer(protocol)
    try:
        want: list[tuple[str, bytes, int, int]] = []
        stream = b""
        for k in range(rng.randint(1, 60)):
            qos = rng.choice([0, 1, 1, 1])
            mid = k + 1 if qos else 0
            topic = f"coldchain/v1/devices/d{k}/telemetry"
            payload = rng.randbytes(rng.choice([0, 5, 120, 200, 20_000]))
            props = b"\x00" if protocol == mqtt.MQTTv5 else None
            stream += publish(topic.encode(), payload, qos, mid, props)
            want.append((topic, payload, mid, qos))
            if rng.random() < 0.1:
                stream += bytes([0xD0, 0])  # PINGRESP between them
        cuts = sorted(rng.sample(range(1, len(stream)), min(8, len(stream) - 1)))
        for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            peer.send_and_read(stream[lo:hi])
        assert [s[1:] for s in peer.seen] == want
        assert peer.client.buffered_bytes() == 0
    finally:
        peer.close()
