"""The MQTT topic contract."""

from __future__ import annotations

import pytest

from coldchain.contract import alert_topic, device_id_from_topic, device_topic, shared_subscription


def test_device_topics() -> None:
    assert device_topic("dev-1") == "coldchain/v1/devices/dev-1/telemetry"
    assert device_topic("dev-1", "status") == "coldchain/v1/devices/dev-1/status"
    assert device_topic("dev-1", "events") == "coldchain/v1/devices/dev-1/events"
    with pytest.raises(ValueError, match="alerts"):
        device_topic("dev-1", "alerts")


def test_alert_topic() -> None:
    assert alert_topic("truck-1") == "coldchain/v1/alerts/truck-1"


def test_shared_subscription() -> None:
    assert shared_subscription("g1") == "$share/g1/coldchain/v1/devices/+/telemetry"
    assert shared_subscription("g1", "events") == "$share/g1/coldchain/v1/devices/+/events"


@pytest.mark.parametrize("kind", ["telemetry", "status", "events"])
def test_round_trip(kind: str) -> None:
    assert device_id_from_topic(device_topic("dev.1_x-2", kind)) == "dev.1_x-2"


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "coldchain/v1/devices/",
        "coldchain/v1/devices//telemetry",
        "coldchain/v1/devices/dev-1",
        "coldchain/v1/devices/dev-1/",
        "coldchain/v1/devices/dev-1/telemetry/",
        "coldchain/v1/devices/dev-1/telemetry/extra",
        "coldchain/v1/devices/a/b/telemetry",
        "coldchain/v1/devices/dev-1/alerts",
        "coldchain/v1/devices/dev-1/Telemetry",
        "coldchain/v2/devices/dev-1/telemetry",
        "/coldchain/v1/devices/dev-1/telemetry",
        "coldchain/v1/alerts/truck-1",
        "$share/g/coldchain/v1/devices/dev-1/telemetry",
    ],
)
def test_non_device_topics(topic: str) -> None:
    assert device_id_from_topic(topic) is None
