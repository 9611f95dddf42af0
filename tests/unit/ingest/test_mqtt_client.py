"""``BatchedClient``: paho's reads served from one buffer, PUBACKs written together, in order.

No broker here: the client's socket is one end of a socketpair (the integration tests in
tests/integration/test_mqtt_source.py run it against mosquitto).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from ingest.mqtt_client import BatchedClient

PUBACK, PUBLISH = 0x40, 0x30


@pytest.fixture
def pair() -> Iterator[tuple[BatchedClient, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = BatchedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t")
    client._sock = ours
    yield client, theirs
    client._sock = None
    ours.close()
    theirs.close()


def _packet(command: int, body: bytes, mid: int = 0) -> dict[str, object]:
    return {
        "command": command,
        "mid": mid,
        "qos": 1,
        "pos": 0,
        "to_process": len(body),
        "packet": body,
        "info": None,
    }


def test_the_paho_hooks_it_overrides_still_have_their_shape() -> None:
    # A paho upgrade that renames or reshapes these would silently bypass the batching.
    expect = {
        "_sock_recv": ["self", "bufsize"],
        "_packet_queue": ["self", "command", "packet", "mid", "qos", "info"],
        "_packet_write": ["self"],
        "loop_read": ["self", "max_packets"],
        "loop_write": ["self"],
        "reconnect": ["self"],
        "_handle_on_message": ["self", "message"],
        "ack": ["self", "mid", "qos"],
    }
    for name, params in expect.items():
        assert list(inspect.signature(getattr(mqtt.Client, name)).parameters) == params, name
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t")
    for attr in (
        "_out_packet",
        "_sockpairW",
        "_thread",
        "_sock",
        "_in_callback_mutex",
        "_manual_ack",
        "_in_packet",
        "_protocol",
        "_msgtime_mutex",
        "_last_bytes_received",
        "_loop_rc_handle",
        "_easy_log",
    ):
        assert hasattr(client, attr), attr
    assert client._in_packet["command"] == 0  # "no packet half read", what the fast path checks
    assert client._on_message_filtered._root._children == {}  # the trie it checks for filters


def test_small_reads_are_served_from_one_recv(pair: tuple[BatchedClient, socket.socket]) -> None:
    client, theirs = pair
    theirs.sendall(b"abcdefghij")
    assert client._sock_recv(1) == b"a"
    theirs.sendall(b"XYZ")  # arrives behind what is buffered, never ahead of it
    assert client._sock_recv(3) == b"bcd"
    assert client.buffered_bytes() == 6
    assert client._sock_recv(100) == b"efghij"
    assert client.buffered_bytes() == 0
    assert client._sock_recv(2) == b"XY"
    assert client._sock_recv(2) == b"Z"
    with pytest.raises(BlockingIOError):  # empty socket: paho reads this as "try later"
        client._sock_recv(1)


def test_a_closed_peer_still_reads_as_end_of_stream(
    pair: tuple[BatchedClient, socket.socket],
) -> None:
    client, theirs = pair
    theirs.sendall(b"ab")
    theirs.shutdown(socket.SHUT_WR)
    assert client._sock_recv(1) == b"a"
    assert client._sock_recv(1) == b"b"
    assert client._sock_recv(1) == b""  # paho turns this into "connection lost"


def test_consecutive_pubacks_leave_in_one_send_in_order(
    pair: tuple[BatchedClient, socket.socket],
) -> None:
    client, theirs = pair
    acks = [bytes([PUBACK, 2, 0, i]) for i in range(1, 6)]
    publish = bytes([PUBLISH | 2, 5, 0, 1, ord("t"), 0, 9])
    for body in acks[:3]:
        client._out_packet.append(_packet(PUBACK, body))
    client._out_packet.append(_packet(PUBLISH | 2, publish, mid=9))
    for body in acks[3:]:
        client._out_packet.append(_packet(PUBACK, body))
    client._packet_write()
    assert not client._out_packet
    received = b""
    while len(received) < 4 * 5 + len(publish):
        received += theirs.recv(4096)
    assert received == b"".join(acks[:3]) + publish + b"".join(acks[3:])


def test_acks_from_another_thread_wake_the_network_thread_once_per_batch(
    pair: tuple[BatchedClient, socket.socket],
) -> None:
    client, _ = pair
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    client._sockpairW, client._thread = wake_w, object()  # as under loop_start()
    try:
        for mid in range(1, 101):
            client._packet_queue(PUBACK, bytes([PUBACK, 2, 0, mid]), mid, 0)
        assert wake_r.recv(1000) == b"0"  # one byte for a hundred acks
        assert len(client._out_packet) == 100
        client.loop_write()  # the network thread drains: later acks wake it again
        client._packet_queue(PUBACK, bytes([PUBACK, 2, 0, 7]), 7, 0)
        assert wake_r.recv(1000) == b"0"
    finally:
        client._sockpairW, client._thread = None, None
        wake_r.close()
        wake_w.close()


def test_ack_queues_the_puback_paho_builds_and_only_with_manual_acks() -> None:
    fast = BatchedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="f", manual_ack=True)
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p", manual_ack=True)
    for client in (fast, plain):
        for mid in (1, 258, 65535):
            client.ack(mid, 1)
    queued = [(p["command"], bytes(p["packet"]), p["mid"], p["qos"]) for p in fast._out_packet]
    assert queued == [
        (p["command"], bytes(p["packet"]), p["mid"], p["qos"]) for p in plain._out_packet
    ]
    assert queued[1][1] == bytes([PUBACK, 2, 1, 2])
    auto = BatchedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="a")  # paho acks itself
    auto.ack(5, 1)
    fast.ack(6, 0)  # QoS 0 has no ack
    assert not auto._out_packet
    assert len(fast._out_packet) == 3


def test_reconnect_drops_bytes_of_the_old_connection(
    pair: tuple[BatchedClient, socket.socket],
) -> None:
    client, theirs = pair
    theirs.sendall(b"old-connection")
    assert client._sock_recv(3) == b"old"
    client._host = ""  # reconnect() fails fast after resetting the buffer
    with pytest.raises(ValueError):
        client.reconnect()
    assert client.buffered_bytes() == 0


def test_messages_reach_on_message_and_per_topic_callbacks_still_win() -> None:
    client = BatchedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t")
    seen: list[tuple[str, bytes]] = []
    client.on_message = lambda _c, _u, msg: seen.append(("any", msg.payload))
    msg = mqtt.MQTTMessage(mid=1, topic=b"coldchain/v1/devices/d1/telemetry")
    msg.payload = b"x"
    client._handle_on_message(msg)
    assert seen == [("any", b"x")]
    client.message_callback_add(
        "coldchain/v1/devices/+/telemetry", lambda _c, _u, m: seen.append(("filtered", m.payload))
    )
    client._handle_on_message(msg)
    assert seen[-1] == ("filtered", b"x") and len(seen) == 2  # paho's rule: filters only


def test_an_exception_in_on_message_is_raised_unless_suppressed() -> None:
    client = BatchedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t")

    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    client.on_message = boom
    msg = mqtt.MQTTMessage(mid=1, topic=b"t")
    with pytest.raises(RuntimeError):
        client._handle_on_message(msg)
    client.suppress_exceptions = True
    client._handle_on_message(msg)  # logged, not raised: as paho does


def test_ack_many_queues_the_pubacks_paho_builds_as_one_packet_and_one_wake_up(
    pair: tuple[BatchedClient, socket.socket],
) -> None:
    client, theirs = pair
    client._manual_ack = True
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p", manual_ack=True)
    mids = [1, 258, 65535, 7]
    for mid in mids:
        plain.ack(mid, 1)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    client._sockpairW, client._thread = wake_w, object()  # as under loop_start()
    try:
        client.ack_many(mids)
        assert wake_r.recv(1000) == b"0"
        assert len(client._out_packet) == 1
        expected = b"".join(bytes(p["packet"]) for p in plain._out_packet)
        assert bytes(client._out_packet[0]["packet"]) == expected
        client.ack_many([])  # nothing to send: nothing queued
        assert len(client._out_packet) == 1
        client.loop_write()
        assert theirs.recv(4096) == expected  # on the wire, in order
    finally:
        client._sockpairW, client._thread = None, None
        wake_r.close()
        wake_w.close()


def test_ack_many_without_the_network_thread_falls_back_to_one_ack_each() -> None:
    client = BatchedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="f", manual_ack=True)
    client.ack_many([3, 4])
    assert [bytes(p["packet"]) for p in client._out_packet] == [
        bytes([PUBACK, 2, 0, 3]),
        bytes([PUBACK, 2, 0, 4]),
    ]
