"""``parse_telemetry``: a bad value costs only the smallest unit it spoils; the rest is kept.

Units (coldchain/contract/salvage.py, docs/telemetry.md "Rejections"): a probe value; a field of
a compartment's state or of power; ``signal_dbm``; the position; a sample (ts, seq, an unknown
key); the message (envelope, undecodable bytes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldchain.contract import (
    REASONS,
    ParsedTelemetry,
    field_path,
    parse_accepted_whole,
    parse_telemetry,
)
from coldchain.exceptions import TelemetryRejected
from tests.unit.support import batch, dumps, sample, single


def parse(payload: dict[str, Any] | bytes | str) -> ParsedTelemetry:
    if isinstance(payload, dict):
        payload = dumps(payload)
    elif isinstance(payload, str):
        payload = payload.encode()
    return parse_telemetry(payload, "dev-1")


def whole(payload: dict[str, Any] | bytes | str) -> TelemetryRejected:
    with pytest.raises(TelemetryRejected) as info:
        parse(payload)
    return info.value


def letters(parsed: ParsedTelemetry) -> list[tuple[str, str, str]]:
    return [(r.reason, r.field, r.value) for r in parsed.rejected]


def good(seq: int, **extra: Any) -> dict[str, Any]:
    fields = {
        "temps_c": {"c1-air": -19.0 + seq / 100, "c1-prod": -18.5},
        "position": {"lat": 52.5, "lon": 13.4, "speed_kmh": 60.0},
        "compartments": {"c1": {"door_open": False, "setpoint_c": -20.0, "mode": "cooling"}},
    }
    return sample(-seq, seq, **(fields | extra))


def backlog(n: int) -> dict[str, Any]:
    return batch([good(i) for i in range(n)])


def test_a_good_message_takes_the_fast_path_and_keeps_everything() -> None:
    parsed = parse(backlog(3))
    assert parsed.batch and not parsed.rejected and parsed.device_id == "dev-1"
    assert [s.seq for s in parsed.samples] == [0, 1, 2]
    assert [parsed.where(k) for k in range(3)] == ["samples[0]", "samples[1]", "samples[2]"]
    one = parse(single(temps_c={"a": 1.0}))
    assert not one.batch and one.where(0) == "" and one.samples[0].temps_c == {"a": 1.0}


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("-127.0", "out_of_range"),  # a disconnected DS18B20
        ("400.0", "out_of_range"),
        ("NaN", "not_finite"),
        ("Infinity", "not_finite"),
        ("-Infinity", "not_finite"),
        ("1" + "0" * 400, "number_too_large"),
        ("1e400", "number_too_large"),
        ('"-18.5"', "wrong_type"),
        ("true", "wrong_type"),
    ],
)
def test_one_bad_probe_value_in_a_backlog_costs_that_value_only(literal: str, reason: str) -> None:
    payload = backlog(50)
    payload["samples"][17]["temps_c"]["c1-air"] = "__BAD__"
    parsed = parse(json.dumps(payload).replace('"__BAD__"', literal))
    assert [s.seq for s in parsed.samples] == list(range(50))
    s17 = parsed.samples[17]
    assert s17.temps_c == {"c1-prod": -18.5}
    assert s17.position is not None and s17.position.lat == 52.5
    assert s17.compartments["c1"].setpoint_c == -20.0
    [(got, field, _)] = letters(parsed)
    assert (got, field) == (reason, "samples[17].temps_c.c1-air")
    assert all(parsed.samples[k].temps_c["c1-air"] for k in range(50) if k != 17)


def test_the_bad_value_is_named_with_its_text() -> None:
    raw = json.dumps(backlog(3)).replace("-18.99", "1" + "0" * 400)
    [rej] = parse(raw).rejected
    assert rej.value.startswith("'1000") and len(rej.value) <= 120
    assert rej.device_id == "dev-1" and "64-bit float" in rej.detail
    [rej] = parse(json.dumps(backlog(3)).replace("-18.99", "NaN")).rejected
    assert rej.value == "'NaN'" and "RFC 8259" in rej.detail


def test_a_single_message_with_one_bad_probe_keeps_its_other_probes_and_position() -> None:
    parsed = parse(
        single(
            temps_c={"c1-air": -127.0, "c1-prod": -18.5},
            position={"lat": 52.5, "lon": 13.4},
            compartments={"c1": {"door_open": True}},
        )
    )
    [s] = parsed.samples
    assert s.temps_c == {"c1-prod": -18.5}
    assert s.position is not None and s.position.lat == 52.5
    assert s.compartments["c1"].door_open is True
    assert letters(parsed) == [("out_of_range", "temps_c.c1-air", "-127.0")]


def test_a_bad_lat_drops_the_position_not_the_temperatures() -> None:
    parsed = parse(batch([good(0), good(1, position={"lat": 123.0, "lon": 13.4}), good(2)]))
    s1 = parsed.samples[1]
    assert s1.position is None and s1.temps_c["c1-prod"] == -18.5
    assert s1.compartments["c1"].mode == "cooling"
    assert letters(parsed) == [("out_of_range", "samples[1].position.lat", "123.0")]


def test_a_bad_field_of_a_compartment_state_costs_that_field() -> None:
    comps = {"c1": {"door_open": True, "mode": "boost", "setpoint_c": -99.0}, "c2": {"x": 1}}
    parsed = parse(single(temps_c={"a": 1.0}, compartments=comps))
    [s] = parsed.samples
    assert s.compartments["c1"].door_open is True
    assert s.compartments["c1"].mode is None and s.compartments["c1"].setpoint_c is None
    # An unknown key makes the whole state of that compartment unreadable.
    assert "c2" not in s.compartments
    assert sorted(letters(parsed)) == [
        ("invalid_value", "compartments.c1.mode", "'boost'"),
        ("out_of_range", "compartments.c1.setpoint_c", "-99.0"),
        ("unknown_field", "compartments.c2.x", "1"),
    ]


def test_power_and_signal_are_their_own_units() -> None:
    parsed = parse(
        single(temps_c={"a": 1.0}, power={"source": "solar", "battery_pct": 50.0}, signal_dbm=3)
    )
    [s] = parsed.samples
    assert s.power is not None and s.power.battery_pct == 50.0 and s.power.source is None
    assert s.signal_dbm is None and s.temps_c == {"a": 1.0}
    assert sorted(r.field for r in parsed.rejected) == ["power.source", "signal_dbm"]


@pytest.mark.parametrize(
    ("bad", "reason", "field"),
    [
        ({"ts": "2026-11-23T18:00:00"}, "naive_timestamp", "samples[1].ts"),
        ({"ts": "2016-12-31T23:59:60Z"}, "leap_second", "samples[1].ts"),
        ({"ts": "٢٠٢٦-11-23T18:00:00Z"}, "invalid_timestamp", "samples[1].ts"),
        ({"ts": 1_795_000_000}, "wrong_type", "samples[1].ts"),
        ({"seq": -1}, "out_of_range", "samples[1].seq"),
        ({"debug": True}, "unknown_field", "samples[1].debug"),
    ],
)
def test_a_bad_ts_seq_or_unknown_key_drops_its_sample(
    bad: dict[str, Any], reason: str, field: str
) -> None:
    parsed = parse(batch([good(0), good(1) | bad, good(2)]))
    assert [s.seq for s in parsed.samples] == [0, 2]
    assert [parsed.where(k) for k in range(2)] == ["samples[0]", "samples[2]"]
    assert [(r.reason, r.field) for r in parsed.rejected] == [(reason, field)]


def test_a_sample_that_is_not_an_object_or_lacks_ts() -> None:
    parsed = parse(batch([good(0), 5, {"seq": 3}, good(3)]))  # type: ignore[list-item]
    assert [s.seq for s in parsed.samples] == [0, 3]
    assert letters(parsed) == [
        ("wrong_type", "samples[1]", "5"),
        ("missing_field", "samples[2].ts", "{'seq': 3}"),
    ]


def test_problems_inside_a_rejected_sample_are_covered_by_its_letter() -> None:
    bad = good(1, ts="2026-11-23T18:00:00", temps_c={"c1-air": 400.0})
    parsed = parse(batch([good(0), bad]))
    assert [(r.reason, r.field) for r in parsed.rejected] == [("naive_timestamp", "samples[1].ts")]


def test_every_sample_bad_keeps_nothing_but_names_each() -> None:
    parsed = parse(batch([good(0, ts="x"), good(1, ts="y")]))
    assert parsed.samples == [] and parsed.device_id == "dev-1"
    assert [r.field for r in parsed.rejected] == ["samples[0].ts", "samples[1].ts"]


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (batch([good(0)]) | {"v": 2}, "invalid_value", "v"),
        (batch([good(0)]) | {"device_id": "d" * 65}, "too_long", "device_id"),
        (batch([good(0)]) | {"extra": 1}, "unknown_field", "extra"),
        (batch([]), "too_short", "samples"),
        (batch([good(0)] * 5001), "too_long", "samples"),
        ({"v": 1, "device_id": "dev-1", "samples": {"0": good(0)}}, "wrong_type", "samples"),
        ({"device_id": "dev-1", "samples": [good(0)]}, "missing_field", "v"),
        # A bad envelope rejects the message even when its samples are bad too.
        (batch([good(0, ts="x")]) | {"v": 2}, "invalid_value", "v"),
        # In a single-sample message the sample is the message.
        (single(ts="2026-11-23T18:00:00"), "naive_timestamp", "ts"),
        (single(extra=1), "unknown_field", "extra"),
    ],
)
def test_the_envelope_and_a_single_sample_are_the_message(
    payload: dict[str, Any], reason: str, field: str
) -> None:
    exc = whole(payload)
    assert (exc.reason, exc.field, exc.device_id) == (reason, field, "dev-1")


def test_a_whole_rejection_counts_the_other_problems() -> None:
    exc = whole(single(ts="2026-11-23T18:00:00", seq=-1))
    assert exc.reason == "naive_timestamp" or exc.reason == "out_of_range"
    assert "1 more problem in the message" in exc.detail


# -- duplicate keys (issue 8, item 7) ----------------------------------------------------------


def test_a_repeated_probe_key_rejects_that_probe_with_both_values() -> None:
    raw = (
        '{"v":1,"device_id":"dev-1","ts":"2026-11-23T18:00:00Z","seq":7,'
        '"temps_c":{"c1-air":-18.5,"c1-prod":-18.0,"c1-air":99.0}}'
    )
    parsed = parse(raw)
    assert parsed.samples[0].temps_c == {"c1-prod": -18.0}
    [rej] = parsed.rejected
    assert (rej.reason, rej.field, rej.value) == (
        "duplicate_key",
        "temps_c.c1-air",
        "[-18.5, 99.0]",
    )


def test_a_repeated_key_in_one_sample_of_a_backlog_costs_that_unit_only() -> None:
    samples = [json.dumps(good(i)) for i in range(5)]
    samples[2] = samples[2].replace('"seq": 2', '"seq": 2, "seq": 3')
    samples[3] = samples[3].replace('"lat": 52.5', '"lat": 52.5 , "lat": 0.0')
    raw = '{"v": 1, "device_id": "dev-1", "samples": [' + ", ".join(samples) + "]}"
    parsed = parse(raw)
    assert [s.seq for s in parsed.samples] == [0, 1, 3, 4]
    assert parsed.samples[2].position is None and parsed.samples[2].temps_c
    assert letters(parsed) == [
        ("duplicate_key", "samples[2].seq", "[2, 3]"),
        ("duplicate_key", "samples[3].position.lat", "[52.5, 0.0]"),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        '{"v":1,"v":1,"device_id":"dev-1","samples":[{"ts":"2026-11-23T18:00:00Z","seq":1}]}',
        '{"v":1,"device_id":"dev-1","samples":[],"samples":[{"ts":"2026-11-23T18:00:00Z","seq":1}]}',
        '{"v":1,"device_id":"dev-1","ts":"2026-11-23T18:00:00Z","ts":"2026-11-23T18:01:00Z","seq":1}',
    ],
)
def test_a_repeated_envelope_key_rejects_the_message(raw: str) -> None:
    assert whole(raw).reason == "duplicate_key"


def test_whitespace_before_the_colon_does_not_hide_a_repeated_key() -> None:
    raw = (
        '{"v":1,"device_id":"dev-1","ts":"2026-11-23T18:00:00Z","seq":1,"temps_c":{"a" :1,"a"\n:2}}'
    )
    [rej] = parse(raw).rejected
    assert (rej.reason, rej.field) == ("duplicate_key", "temps_c.a")


def test_keys_written_with_escapes_are_still_keys() -> None:
    head = '{"v":1,"device_id":"dev-1","ts":"2026-11-23T18:00:00Z","seq":1,'
    raw = head + '"temps_c":{"a":1,"\\u0061":2}}'
    assert [r.reason for r in parse(raw).rejected] == ["duplicate_key"]
    raw = head + '"temps_c":{"\\u0061":2}}'
    assert parse(raw).samples[0].temps_c == {"a": 2.0}


def test_a_lone_surrogate_costs_its_unit_and_the_path_stays_storable() -> None:
    raw = (
        '{"v":1,"device_id":"dev-1","ts":"2026-11-23T18:00:00Z","seq":1,'
        '"temps_c":{"a\\ud800":1.0,"b":2.0}}'
    )
    parsed = parse(raw)
    assert parsed.samples[0].temps_c == {"b": 2.0}
    [rej] = parsed.rejected
    assert rej.reason == "invalid_unicode"
    assert rej.field == "temps_c.a\\ud800"
    rej.field.encode("utf-8")
    rej.value.encode("utf-8")


# -- no fix ------------------------------------------------------------------------------------


def test_a_position_without_fix_is_not_a_place() -> None:
    parsed = parse(single(position={"lat": 0, "lon": 0, "speed_kmh": 0, "fix": "none"}))
    pos = parsed.samples[0].position
    assert pos is not None and pos.fix == "none"
    assert (pos.lat, pos.lon, pos.speed_kmh, pos.heading_deg) == (None, None, None, None)
    assert not parsed.rejected


# -- properties --------------------------------------------------------------------------------

BAD_VALUES = st.sampled_from(
    ["-127.0", "400.0", "NaN", "Infinity", "1" + "0" * 400, '"x"', "null", "[]", "{}", "true"]
)
FIELDS = st.sampled_from(
    [
        ("temps_c", "c1-air"),
        ("position", "lat"),
        ("compartments", "c1", "setpoint_c"),
        ("ts",),
        ("seq",),
    ]
)


def _units_of(loc: tuple[str, ...]) -> tuple[str, ...]:
    return loc if loc[0] in ("temps_c", "compartments") else loc[:1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 39), FIELDS, BAD_VALUES)
def test_one_bad_value_anywhere_costs_its_unit_and_nothing_else(
    index: int, loc: tuple[str, ...], literal: str
) -> None:
    payload = backlog(40)
    marker = "__BAD__"
    node: Any = payload["samples"][index]
    for key in loc[:-1]:
        node = node[key]
    node[loc[-1]] = marker
    raw = json.dumps(payload).replace(f'"{marker}"', literal)
    parsed = parse(raw)
    reference = parse(backlog(40))
    if loc[0] in ("ts", "seq"):
        assert [s.seq for s in parsed.samples] == [i for i in range(40) if i != index]
    else:
        assert [s.seq for s in parsed.samples] == list(range(40))
    for s in parsed.samples:
        if s.seq != index:
            assert s == reference.samples[s.seq]
    if literal == "null" and loc[-1] in ("lat", "setpoint_c"):
        assert not parsed.rejected  # optional fields may be null
        return
    [rej] = parsed.rejected
    assert rej.field == field_path(("samples", index, *loc))
    assert rej.reason in REASONS
    kept = next((s for s in parsed.samples if s.seq == index), None)
    if kept is not None:
        dumped = kept.model_dump()
        unit = _units_of(loc)
        node = dumped
        for key in unit[:-1]:
            node = node[key]
        assert node.get(unit[-1]) is None or node[unit[-1]] == {}


def _sample_of(field: str) -> str:
    match = re.match(r"samples\[\d+\]", field)
    assert match is not None, field
    return match.group()


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_ish = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_ish, max_size=4), st.integers(0, 5))
def test_arbitrary_samples_only_ever_reject_with_a_documented_reason(
    junk: list[Any], where: int
) -> None:
    samples: list[Any] = [good(i) for i in range(5)]
    samples[where:where] = junk
    parsed = parse(json.dumps(batch(samples)).encode())  # junk samples never cost the message
    assert [s.seq for s in parsed.samples] == list(range(5))
    assert all(r.reason in REASONS for r in parsed.rejected)
    rejected_samples = {_sample_of(r.field) for r in parsed.rejected}
    assert rejected_samples == {f"samples[{where + i}]" for i in range(len(junk))}


def test_a_false_alarm_of_the_byte_count_still_keeps_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path's repeated-key count may only err towards the exact check; that check
    then finds nothing and the message is kept whole."""
    import coldchain.contract.salvage as salvage

    monkeypatch.setattr(salvage, "has_duplicate_keys", lambda payload, message: True)
    parsed = parse(backlog(3))
    assert [s.seq for s in parsed.samples] == [0, 1, 2] and not parsed.rejected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_ish, max_size=2), st.integers(0, 5), st.booleans())
def test_a_payload_accepted_whole_reads_again_to_the_same_samples(
    junk: list[Any], where: int, single_sample: bool
) -> None:
    """What a rules child process relies on (ingest.rules_child): ``parse_accepted_whole`` of a
    payload ``parse_telemetry`` accepted whole gives exactly its samples."""
    samples: list[Any] = [good(i) for i in range(5)]
    samples[where:where] = junk
    one = {"v": 1, "device_id": "dev-1", **good(7)}
    payload = json.dumps(one if single_sample else batch(samples)).encode()
    try:
        parsed = parse(payload)
    except TelemetryRejected:
        return
    if parsed.rejected:
        return  # ingest sends the kept samples themselves for such a message
    assert parsed.samples and list(parse_accepted_whole(payload)) == list(parsed.samples)


def test_parse_accepted_whole_refuses_what_does_not_validate_strictly() -> None:
    with pytest.raises(TelemetryRejected) as info:
        parse_accepted_whole(json.dumps(batch([good(0), {"ts": "nope", "seq": 1}])).encode())
    assert info.value.reason in REASONS
    with pytest.raises(TelemetryRejected):
        parse_accepted_whole(b"not json")
