"""Dead-letter reason codes: one stable code per kind of problem, named after what is wrong.

``REASONS`` is the complete list ingest can write (docs/telemetry.md's table is checked against
it by a test). ``reason_for`` maps a pydantic validation error to its code; ``detect_encoding``
names a payload's text encoding when it is not plain UTF-8 JSON (RFC 8259 §8.1: JSON exchanged
between systems is UTF-8 without a byte order mark).
"""

from __future__ import annotations

from typing import Any

__all__ = ["REASONS", "detect_encoding", "reason_for"]

REASONS: dict[str, str] = {
    "bad_topic": "not a `coldchain/v1/devices/{id}/{kind}` topic",
    "payload_too_large": "over the byte limit",
    "bad_encoding": "the payload is text in another encoding than UTF-8 (UTF-16, UTF-32) or "
    "starts with a byte order mark; the value names the encoding detected",
    "invalid_utf8": "the payload is not UTF-8 (and no other Unicode encoding was recognised)",
    "malformed_json": "not JSON (syntax error, or nested too deep)",
    "not_an_object": "valid JSON, but not an object (an array, a string, a number, null)",
    "duplicate_key": "a key appears twice in one object; the value lists every value given",
    "invalid_unicode": "a string holds a `\\uD800`-style escape that is not a character",
    "unknown_field": "a key the contract does not have",
    "missing_field": "a required key is absent",
    "wrong_type": "e.g. a string where a number belongs, a number where a time belongs",
    "not_finite": "a `NaN`, `Infinity` or `-Infinity` literal",
    "number_too_large": "a number beyond a 64-bit float's range (e.g. 10^400 written out)",
    "out_of_range": "a physically impossible number (400 degC, latitude 123, seq < 0)",
    "too_long": "a string, map or list over its bound (a 65-character id, 33 probes, "
    "5,001 samples)",
    "too_short": "an empty batch or identifier",
    "invalid_value": "not one of the allowed values, or a malformed identifier",
    "invalid_timestamp": "`ts` is not an RFC 3339 date-time (bad syntax, a non-ASCII digit, "
    "month 13)",
    "leap_second": "`ts` names second 60: a leap second has no instant in UTC milliseconds",
    "naive_timestamp": "a time without offset",
    "device_mismatch": "payload `device_id` differs from the topic's",
    "unknown_device": "the device is not registered",
    "unknown_sensor": "the probe is not registered on the device's asset",
    "unknown_compartment": "the compartment is not registered on the device's asset",
    "future_timestamp": "device time too far ahead of the ingest clock",
    "stale_timestamp": "device time older than the accepted window",
    "influx_rejected": "InfluxDB refused the point for good (found by bisecting the batch)",
    # Events (``.../events``, ingest/events.py): the event is the unit.
    "invalid_event": "an event payload breaks the event contract (field and pydantic message)",
    "unknown_asset": "the event names an asset that is not registered",
    "bad_timestamp": "event time outside the accepted window",
    "custody_rejected": "the registry refused the custody scan (unknown shipment, contradiction)",
}

_BY_TYPE = {
    "extra_forbidden": "unknown_field",
    "missing": "missing_field",
    "finite_number": "not_finite",
    "literal_error": "invalid_value",
    "enum": "invalid_value",
    "string_pattern_mismatch": "invalid_value",
    "value_error": "invalid_value",
    "assertion_error": "invalid_value",
    "timezone_aware": "naive_timestamp",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "too_long": "too_long",
    "string_too_long": "too_long",
    "too_short": "too_short",
    "string_too_short": "too_short",
    "datetime_parsing": "invalid_timestamp",
    "datetime_from_date_parsing": "invalid_timestamp",
    "datetime_object_invalid": "invalid_timestamp",
}


# Where NULs fall in the first four bytes of JSON text without a byte order mark.
_BY_NULS: dict[tuple[bool, ...], str] = {
    (True, True, True, False): "UTF-32BE",
    (False, True, True, True): "UTF-32LE",
    (True, False, True, False): "UTF-16BE",
    (False, True, False, True): "UTF-16LE",
}


def reason_for(error_type: str, value: Any, message: str) -> tuple[str, str]:
    """(reason code, detail) for one pydantic error of ``error_type`` on ``value``."""
    if error_type.startswith("datetime_") and isinstance(value, str):
        if not value.isascii():
            odd = next(c for c in value if not c.isascii())
            return "invalid_timestamp", f"RFC 3339 allows ASCII digits only, found {odd!r}"
        if "second value is outside" in message and ":60" in value:
            return "leap_second", "second 60 (a leap second) has no instant in UTC milliseconds"
    reason = _BY_TYPE.get(error_type)
    if reason is None:
        reason = "wrong_type" if error_type.endswith("_type") else "invalid_value"
    return reason, message


def detect_encoding(payload: bytes) -> str | None:
    """The Unicode encoding a payload is in when it is not BOM-less UTF-8, else None.

    By byte order mark, or for JSON without one by where the NUL bytes of the first two ASCII
    characters fall (RFC 4627 §3).
    """
    boms = (
        (b"\xef\xbb\xbf", "UTF-8 with byte order mark"),
        (b"\x00\x00\xfe\xff", "UTF-32BE"),
        (b"\xff\xfe\x00\x00", "UTF-32LE"),
        (b"\xfe\xff", "UTF-16BE"),
        (b"\xff\xfe", "UTF-16LE"),
    )
    for bom, name in boms:
        if payload.startswith(bom):
            return name
    head = payload[:4]
    if len(head) == 4:
        return _BY_NULS.get(tuple(b == 0 for b in head))
    if len(head) >= 2 and (head[0] == 0) != (head[1] == 0):
        return "UTF-16BE" if head[0] == 0 else "UTF-16LE"
    return None
