"""MQTT topic contract, v1.

``coldchain/v1/devices/{device_id}/telemetry``  QoS 1, one sample or a ``samples`` backlog batch
``coldchain/v1/devices/{device_id}/status``     retained, last will ``offline``
``coldchain/v1/devices/{device_id}/events``     door, custody scans, reefer alarms
``coldchain/v1/alerts/{asset_id}``              alerts out, QoS 1
"""

from __future__ import annotations

__all__ = [
    "PREFIX",
    "alert_topic",
    "device_id_from_topic",
    "device_topic",
    "shared_subscription",
]

PREFIX = "coldchain/v1"
_DEVICES = PREFIX + "/devices/"
_KINDS = frozenset({"telemetry", "status", "events"})


def device_topic(device_id: str, kind: str = "telemetry") -> str:
    if kind not in _KINDS:
        raise ValueError(f"topic kind {kind!r} is not one of {sorted(_KINDS)}")
    return f"{_DEVICES}{device_id}/{kind}"


def alert_topic(asset_id: str) -> str:
    return f"{PREFIX}/alerts/{asset_id}"


def shared_subscription(group: str, kind: str = "telemetry") -> str:
    """Shared subscription so several ingest processes split the devices' load."""
    return f"$share/{group}/{_DEVICES}+/{kind}"


def device_id_from_topic(topic: str) -> str | None:
    """The device id of a ``.../devices/{id}/{kind}`` topic, or None if it does not match."""
    if not topic.startswith(_DEVICES):
        return None
    rest = topic[len(_DEVICES) :]
    device_id, sep, kind = rest.partition("/")
    if not sep or not device_id or kind not in _KINDS:
        return None
    return device_id
