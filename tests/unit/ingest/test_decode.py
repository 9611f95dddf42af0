"""Stage 1: every decode-time reason code, and the never-raises-anything-else guarantee."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldchain.contract import BatchMessage, SingleMessage
from coldchain.exceptions import TelemetryRejected
from ingest.decode import decode
from tests.unit.support import TOPIC, batch, dumps, sample, single

LIMIT = 1 << 20


def rejected(payload: bytes, topic: str = TOPIC, limit: int = LIMIT) -> TelemetryRejected:
    with pytest.raises(TelemetryRejected) as info:
        decode(topic, payload, limit)
    return info.value


def test_single_and_batch_decode() -> None:
    d = decode(TOPIC, dumps(single()), LIMIT)
    assert d.device_id == "dev-1" and isinstance(d.message, SingleMessage)
    d = decode(TOPIC, dumps(batch([sample(), sample(seq=2)])), LIMIT)
    assert isinstance(d.message, BatchMessage) and len(d.message.samples) == 2


def test_bad_topic() -> None:
    exc = rejected(dumps(single()), topic="coldchain/v1/alerts/truck-1")
    assert (exc.reason, exc.device_id, exc.field) == ("bad_topic", None, "topic")
    assert exc.value == "'coldchain/v1/alerts/truck-1'"


def test_payload_too_large_is_checked_before_parsing() -> None:
    payload = b"{" * (10 * 1024 * 1024)  # 10 MB, not even JSON
    exc = rejected(payload)
    assert (exc.reason, exc.device_id, exc.value) == ("payload_too_large", "dev-1", "10485760")
    assert rejected(dumps(single()), limit=10).reason == "payload_too_large"
    exact = dumps(single())
    assert decode(TOPIC, exact, len(exact)).device_id == "dev-1"


@pytest.mark.parametrize(
    "payload", [b"", b"{", b'{"v": 1,}', b"not json", b"[1]", b'"str"', b"null", b"{}" * 2]
)
def test_malformed_json(payload: bytes) -> None:
    exc = rejected(payload)
    assert (exc.reason, exc.device_id, exc.field) == ("malformed_json", "dev-1", "")


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe{}", b'{"v": 1, "device_id": "dev-\xe9"}', dumps(single())[:-1] + b"\x80}"],
)
def test_invalid_utf8(payload: bytes) -> None:
    exc = rejected(payload)
    assert exc.reason == "invalid_utf8" and exc.device_id == "dev-1"


def test_nested_json_too_deep_is_malformed_not_a_crash() -> None:
    assert rejected(b"[" * 100_000).reason == "malformed_json"
    assert rejected(b'{"a":' * 50_000).reason == "malformed_json"


@pytest.mark.parametrize(
    ("payload", "reason", "field", "value"),
    [
        (single(extra=1), "unknown_field", "extra", "1"),
        (batch([sample(), sample(debug=True)]), "unknown_field", "samples.1.debug", "True"),
        ({"v": 1, "device_id": "dev-1", "seq": 1}, "missing_field", "ts", None),
        (single(seq="1"), "wrong_type", "seq", "'1'"),
        (single(position=5), "wrong_type", "position", "5"),
        (single(temps_c=[1.0]), "wrong_type", "temps_c", "[1.0]"),
        (single(temps_c={"t-front-air": 400.0}), "out_of_range", "temps_c.t-front-air", "400.0"),
        (single(position={"lat": 123.0}), "out_of_range", "position.lat", "123.0"),
        (single() | {"ts": "2026-11-23T18:00:00"}, "naive_timestamp", "ts", None),
        (single(device_id="dev-2"), "device_mismatch", "device_id", "'dev-2'"),
        (single(compartments={"front": {"mode": "boost"}}), "invalid_value", None, "'boost'"),
        (single(temps_c={"bad key": 1.0}), "invalid_value", "temps_c.bad key", "'bad key'"),
        (single() | {"v": 2}, "invalid_value", "v", "2"),
    ],
)
def test_reason_field_and_value(
    payload: dict[str, Any], reason: str, field: str | None, value: str | None
) -> None:
    exc = rejected(dumps(payload))
    assert exc.reason == reason
    assert exc.device_id == "dev-1"
    if field is not None:
        assert exc.field == field
    if value is not None:
        assert exc.value == value
    assert reason in str(exc)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_not_finite(literal: str) -> None:
    raw = json.dumps(single(temps_c={"t-front-air": 1.0})).replace("1.0", literal).encode()
    exc = rejected(raw)
    assert (exc.reason, exc.field) == ("not_finite", "temps_c.t-front-air")


def test_value_is_bounded() -> None:
    exc = rejected(dumps(single(seq="9" * 10_000)))
    assert exc.reason == "wrong_type"
    assert len(exc.value) <= 120 and exc.value.endswith("...")
    exc = rejected(b"\xff" + b"x" * 500_000)
    assert len(exc.value) <= 120


def test_oversize_string_and_collections() -> None:
    assert rejected(dumps(single(device_id="d" * 65))).reason == "out_of_range"
    assert rejected(dumps(single(temps_c={f"p{i}": 1.0 for i in range(33)}))).reason == (
        "out_of_range"
    )


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_ish = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_ish,
    st.sampled_from(["2026-11-23T18:00:00Z", "2026-11-23T18:00:00", "dev-1", 1, 1.5, -1]),
)
message_ish = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None]),
        "device_id": st.sampled_from(["dev-1", "dev-2", "", None, 5]),
        "ts": field_values,
        "seq": field_values,
        "temps_c": st.dictionaries(st.text(max_size=6), field_values, max_size=3) | json_ish,
        "position": st.fixed_dictionaries(
            {}, optional={"lat": field_values, "lon": field_values, "fix": field_values}
        )
        | json_ish,
        "compartments": json_ish,
        "samples": st.lists(json_ish, max_size=3) | json_ish,
        "power": json_ish,
    },
).flatmap(lambda d: st.dictionaries(st.text(max_size=6), json_ish, max_size=2).map(d.__or__))

TOPICS = st.sampled_from([TOPIC, "coldchain/v1/devices/x/status", "nope", ""]) | st.text(
    max_size=40
)


def _decode_or_reject(topic: str, payload: bytes) -> None:
    try:
        decode(topic, payload, 4096)
    except TelemetryRejected as exc:
        assert exc.reason and isinstance(exc.value, str) and len(exc.value) <= 120


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOPICS, st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_reject(topic: str, payload: bytes) -> None:
    _decode_or_reject(topic, payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_ish)
def test_arbitrary_json_objects_only_ever_reject(payload: dict[str, Any]) -> None:
    _decode_or_reject(TOPIC, json.dumps(payload).encode())
