"""Stage 1: every decode-time reason code, whole-message vs per-unit rejections, and the
never-raises-anything-else guarantee."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldchain.contract import REASONS, SingleMessage
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
    assert d.device_id == "dev-1" and not d.batch and not d.rejected and d.where(0) == ""
    assert isinstance(d.samples[0], SingleMessage)
    d = decode(TOPIC, dumps(batch([sample(), sample(seq=2)])), LIMIT)
    assert d.batch and [s.seq for s in d.samples] == [1, 2] and d.where(1) == "samples[1]"


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


@pytest.mark.parametrize("payload", [b"", b"{", b'{"v": 1,}', b"not json", b"{}" * 2, b"{'v': 1}"])
def test_malformed_json(payload: bytes) -> None:
    exc = rejected(payload)
    assert (exc.reason, exc.device_id, exc.field) == ("malformed_json", "dev-1", "")
    assert "JSON" in exc.detail


@pytest.mark.parametrize("payload", [b"[1]", b'"str"', b"42", b"null", b"[" * 10 + b"]" * 10])
def test_json_that_is_not_an_object(payload: bytes) -> None:
    exc = rejected(payload)
    assert (exc.reason, exc.device_id, exc.field) == ("not_an_object", "dev-1", "")


@pytest.mark.parametrize(
    "payload",
    [b'{"v": 1, "device_id": "dev-\xe9"}', dumps(single())[:-1] + b"\x80}", b"{\xc0\xaf}"],
)
def test_invalid_utf8(payload: bytes) -> None:
    exc = rejected(payload)
    assert exc.reason == "invalid_utf8" and exc.device_id == "dev-1"
    assert "byte" in exc.detail


@pytest.mark.parametrize(
    ("encode", "encoding"),
    [
        (lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"), "UTF-8 with byte order mark"),
        (lambda t: t.encode("utf-16"), "UTF-16LE"),  # Python writes a BOM, little-endian here
        (lambda t: t.encode("utf-16-le"), "UTF-16LE"),
        (lambda t: t.encode("utf-16-be"), "UTF-16BE"),
        (lambda t: b"\xfe\xff" + t.encode("utf-16-be"), "UTF-16BE"),
        (lambda t: t.encode("utf-32"), "UTF-32LE"),
        (lambda t: t.encode("utf-32-le"), "UTF-32LE"),
        (lambda t: t.encode("utf-32-be"), "UTF-32BE"),
    ],
)
def test_bad_encoding_names_the_encoding(encode: Any, encoding: str) -> None:
    """A UTF-8 BOM or UTF-16/32 text is not ``malformed_json`` (issue 8, item 8)."""
    exc = rejected(encode(dumps(single()).decode()))
    assert (exc.reason, exc.value, exc.device_id) == ("bad_encoding", repr(encoding), "dev-1")
    assert encoding in exc.detail


def test_nested_json_too_deep_is_malformed_not_a_crash() -> None:
    assert rejected(b"[" * 100_000).reason == "malformed_json"
    assert rejected(b'{"a":' * 50_000).reason == "malformed_json"
    assert rejected(b"[" * 300 + b"]" * 300).reason == "malformed_json"


@pytest.mark.parametrize(
    ("payload", "reason", "field", "value"),
    [
        (single(extra=1), "unknown_field", "extra", "1"),
        ({"v": 1, "device_id": "dev-1", "seq": 1}, "missing_field", "ts", None),
        (single(seq="1"), "wrong_type", "seq", "'1'"),
        (single() | {"ts": "2026-11-23T18:00:00"}, "naive_timestamp", "ts", None),
        (single(device_id="dev-2"), "device_mismatch", "device_id", "'dev-2'"),
        (single() | {"v": 2}, "invalid_value", "v", "2"),
        (single(device_id="d" * 65), "too_long", "device_id", None),
    ],
)
def test_whole_message_reason_field_and_value(
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


@pytest.mark.parametrize(
    ("payload", "reason", "field", "value"),
    [
        (batch([sample(), sample(debug=True)]), "unknown_field", "samples[1].debug", "True"),
        (single(position=5), "wrong_type", "position", "5"),
        (single(temps_c=[1.0]), "wrong_type", "temps_c", "[1.0]"),
        (single(temps_c={"t-front-air": 400.0}), "out_of_range", "temps_c.t-front-air", "400.0"),
        (single(position={"lat": 123.0}), "out_of_range", "position.lat", "123.0"),
        (single(compartments={"front": {"mode": "boost"}}), "invalid_value", None, "'boost'"),
        (single(temps_c={"bad key": 1.0}), "invalid_value", "temps_c.bad key", "'bad key'"),
        (single(temps_c={f"p{i}": 1.0 for i in range(33)}), "too_long", "temps_c", None),
    ],
)
def test_unit_reason_field_and_value(
    payload: dict[str, Any], reason: str, field: str | None, value: str | None
) -> None:
    d = decode(TOPIC, dumps(payload), LIMIT)
    [exc] = d.rejected
    assert (exc.reason, exc.device_id) == (reason, "dev-1")
    if field is not None:
        assert exc.field == field
    if value is not None:
        assert exc.value == value


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_not_finite_costs_the_value(literal: str) -> None:
    raw = dumps(single(temps_c={"t-front-air": 1.5, "t-rear-air": -20.0})).replace(
        b"1.5", literal.encode()
    )
    d = decode(TOPIC, raw, LIMIT)
    assert [(e.reason, e.field) for e in d.rejected] == [("not_finite", "temps_c.t-front-air")]
    assert d.samples[0].temps_c == {"t-rear-air": -20.0}


# -- every reason names what is wrong (issue 8, item 8) ---------------------------------------


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2016-12-31T23:59:60Z", "leap_second"),
        ("2016-12-31T23:59:60.500+00:00", "leap_second"),
        ("\u0662\u0660\u0662\u0666-11-23T18:00:00Z", "invalid_timestamp"),  # Arabic-Indic
        ("\uff12\uff10\uff12\uff16-11-23T18:00:00Z", "invalid_timestamp"),  # fullwidth
        ("2026-11-23T18:00:0\u0665Z", "invalid_timestamp"),
        ("2026-13-23T18:00:00Z", "invalid_timestamp"),
        ("yesterday", "invalid_timestamp"),
        ("2026-11-23", "invalid_timestamp"),
    ],
)
def test_timestamp_reasons_name_the_problem(ts: str, reason: str) -> None:
    raw = dumps(batch([sample(0, 1), sample(0, 2) | {"ts": ts}]))
    [exc] = decode(TOPIC, raw, LIMIT).rejected
    assert (exc.reason, exc.field) == (reason, "samples[1].ts")
    if not ts.isascii():
        assert "ASCII" in exc.detail
    if reason == "leap_second":
        assert "leap second" in exc.detail


@pytest.mark.parametrize(
    "literal", ["1" + "0" * 400, "-1" + "0" * 400, "1" + "0" * 5000, "1e400", "-2.5E+999"]
)
def test_a_number_beyond_a_double_is_too_large_not_not_finite(literal: str) -> None:
    raw = dumps(single(temps_c={"t-front-air": 1.5, "t-rear-air": -20.0})).replace(
        b"1.5", literal.encode()
    )
    d = decode(TOPIC, raw, LIMIT)
    [exc] = d.rejected
    assert (exc.reason, exc.field) == ("number_too_large", "temps_c.t-front-air")
    assert d.samples[0].temps_c == {"t-rear-air": -20.0}


def test_a_huge_integer_in_an_integer_field_is_too_large() -> None:
    raw = dumps(batch([sample(0, 1), sample(0, 2)])).replace(b'"seq": 2', b'"seq": 1' + b"0" * 400)
    d = decode(TOPIC, raw, LIMIT)
    assert [(e.reason, e.field) for e in d.rejected] == [("number_too_large", "samples[1].seq")]
    assert [s.seq for s in d.samples] == [1]


def test_a_duplicate_key_is_rejected_not_last_one_wins() -> None:
    """``"c1-air":-18.5,"c1-air":99.0`` used to store 99 (issue 8, item 7)."""
    raw = dumps(single(temps_c={"t-front-air": -18.5, "t-rear-air": -20.0})).replace(
        b'"t-rear-air"', b'"t-front-air": 99.0, "t-rear-air"'
    )
    d = decode(TOPIC, raw, LIMIT)
    assert [(e.reason, e.field, e.value) for e in d.rejected] == [
        ("duplicate_key", "temps_c.t-front-air", "[-18.5, 99.0]")
    ]
    assert d.samples[0].temps_c == {"t-rear-air": -20.0}


def test_value_is_bounded() -> None:
    exc = rejected(dumps(single(seq="9" * 10_000)))
    assert exc.reason == "wrong_type"
    assert len(exc.value) <= 120 and exc.value.endswith("...")
    exc = rejected(b"\xff" + b"x" * 500_000)
    assert len(exc.value) <= 120


def test_every_reason_is_documented() -> None:
    from coldchain.contract import REASONS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "telemetry.md").read_text()
    table = {m for m in re.findall(r"^\| `([a-z_0-9]+)`", doc, re.MULTILINE)}
    missing = set(REASONS) - table
    assert not missing, f"reasons missing from docs/telemetry.md's table: {sorted(missing)}"


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
        d = decode(topic, payload, 4096)
    except TelemetryRejected as exc:
        assert exc.reason in REASONS and isinstance(exc.value, str) and len(exc.value) <= 120
        return
    for exc in d.rejected:
        assert exc.reason in REASONS and len(exc.value) <= 120
        exc.field.encode("utf-8")  # storable


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOPICS, st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_reject(topic: str, payload: bytes) -> None:
    _decode_or_reject(topic, payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_ish)
def test_arbitrary_json_objects_only_ever_reject(payload: dict[str, Any]) -> None:
    _decode_or_reject(TOPIC, json.dumps(payload).encode())
