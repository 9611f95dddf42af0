"""Stage 1, decode: topic + raw payload -> the payload's valid samples and its rejections.

Guarantees:
- never raises anything but ``TelemetryRejected``, and raises it only when the message as a
  whole is rejected (a bad topic, an oversize, undecodable or non-JSON payload, a bad envelope,
  a single-sample message whose sample is bad);
- otherwise every unit a problem spoils (a probe value, a position, a compartment's state, a
  sample: see ``coldchain.contract.salvage``) is one rejection naming its reason, field path
  (``samples[17].temps_c.c1-air``), value and device, and everything else is kept;
- a good message takes the strict fast path (one validation and a byte count for repeated keys).
"""

from __future__ import annotations

from coldchain.contract import ParsedTelemetry, device_id_from_topic, parse_telemetry
from coldchain.exceptions import TelemetryRejected

__all__ = ["Decoded", "decode"]


# What decode returns: the contract's parse result, its device_id checked against the topic's.
# ``samples[k]`` sits at field path ``where(k)`` of the payload; ``rejected`` are the units cut.
Decoded = ParsedTelemetry


def decode(topic: str, payload: bytes, max_payload_bytes: int) -> Decoded:
    device_id = device_id_from_topic(topic)
    if device_id is None:
        raise TelemetryRejected(
            "bad_topic", "topic is not a device topic", device_id=None, field="topic", value=topic
        )
    if len(payload) > max_payload_bytes:
        raise TelemetryRejected(
            "payload_too_large",
            f"{len(payload)} bytes exceeds the {max_payload_bytes}-byte limit",
            device_id=device_id,
            value=len(payload),
        )
    parsed = parse_telemetry(payload, device_id)
    if parsed.device_id != device_id:
        raise TelemetryRejected(
            "device_mismatch",
            f"payload device_id differs from the topic's device {device_id!r}",
            device_id=device_id,
            field="device_id",
            value=parsed.device_id,
        )
    return parsed
