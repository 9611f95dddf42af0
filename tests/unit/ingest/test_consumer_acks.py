"""``MqttSource.ack_many``: a group's acks for the current connection only, QoS 0 never.

No broker: the source is built but not started (tests/integration/test_mqtt_source.py runs it
against mosquitto, where a redelivery after a reconnect shows the same rule end to end)."""

from __future__ import annotations

from coldchain.settings import MqttSettings
from ingest.consumer import Delivery, MqttSource


def _delivery(mid: int, qos: int, generation: int) -> Delivery:
    return Delivery("coldchain/v1/devices/d1/telemetry", b"{}", mid, qos, 0, generation)


def test_only_qos1_deliveries_of_the_current_connection_are_acknowledged() -> None:
    source = MqttSource(MqttSettings(), lambda d: None, ("telemetry",))
    source._generation = 3  # the connection that is up now
    group = [
        _delivery(1, 1, 3),
        _delivery(2, 1, 2),  # received on an earlier connection: its packet id means nothing now
        _delivery(3, 0, 3),  # QoS 0: nothing to acknowledge
        _delivery(4, 1, 3),
    ]
    assert source.ack_many(group) == 2
    sent = b"".join(bytes(p["packet"]) for p in source._client._out_packet)
    assert sent == bytes([0x40, 2, 0, 1, 0x40, 2, 0, 4])
    assert source.ack_many([]) == 0
