"""Stage 1, decode: topic + raw payload -> a typed telemetry message.

Guarantee: never raises anything but ``TelemetryRejected``; every rejection names a reason code,
the field, a bounded value and the device (from the topic when the payload is unreadable).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from coldchain.contract import BatchMessage, SingleMessage, device_id_from_topic, parse_message
from coldchain.exceptions import TelemetryRejected

__all__ = ["Decoded", "decode"]

_REASONS = {
    "json_invalid": "malformed_json",
    "json_type": "malformed_json",
    "model_type": "malformed_json",
    "union_tag_invalid": "malformed_json",
    "extra_forbidden": "unknown_field",
    "missing": "missing_field",
    "finite_number": "not_finite",
    "literal_error": "invalid_value",
    "timezone_aware": "naive_timestamp",
    "string_pattern_mismatch": "invalid_value",
}
# Path elements pydantic adds that are not keys of the payload: the union tag, the dict-key marker.
_NOT_IN_PAYLOAD = frozenset({"single", "batch", "[key]"})


@dataclass(frozen=True, slots=True)
class Decoded:
    device_id: str
    message: SingleMessage | BatchMessage


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
    try:
        message = parse_message(payload)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [str(p) for p in err["loc"] if p not in _NOT_IN_PAYLOAD]
        kind = err["type"]
        if kind == "model_type" and loc:
            reason = "wrong_type"  # e.g. "position": 5; only a non-object payload is malformed
        else:
            reason = _REASONS.get(kind, "wrong_type" if kind.endswith("_type") else "out_of_range")
        if kind == "json_invalid" and not _is_utf8(payload):
            reason = "invalid_utf8"
        raise TelemetryRejected(
            reason, err["msg"], device_id=device_id, field=".".join(loc), value=err.get("input")
        ) from None
    if message.device_id != device_id:
        raise TelemetryRejected(
            "device_mismatch",
            f"payload device_id differs from the topic's device {device_id!r}",
            device_id=device_id,
            field="device_id",
            value=message.device_id,
        )
    return Decoded(device_id, message)


def _is_utf8(payload: bytes) -> bool:
    # Only on the error path: the parser's message does not say whether UTF-8 was the problem.
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
