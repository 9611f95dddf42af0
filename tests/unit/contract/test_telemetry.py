"""Payload parsing: single and batch forms, and strictness of every rule the contract states."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from coldchain.contract import BatchMessage, SingleMessage, parse_message
from coldchain.contract.telemetry import MAX_BATCH_SAMPLES
from tests.unit.support import NOW, batch, dumps, sample, single


def errors(payload: bytes | str) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        parse_message(payload)
    return [dict(e) for e in info.value.errors(include_url=False)]


def first_type(payload: bytes | str) -> str:
    return str(errors(payload)[0]["type"])


def test_single_sample_parses_every_section() -> None:
    msg = parse_message(
        dumps(
            single(
                temps_c={"t-front-air": 3.5, "t-rear-air": -18},
                position={"lat": 52.5, "lon": 13.4, "speed_kmh": 80.0, "heading_deg": 359.9},
                compartments={"front": {"door_open": False, "setpoint_c": 2.0, "mode": "cooling"}},
                power={"source": "vehicle", "battery_pct": 88.0},
                signal_dbm=-71,
            )
        )
    )
    assert isinstance(msg, SingleMessage)
    assert msg.device_id == "dev-1"
    assert msg.ts == NOW and msg.ts.utcoffset() == timedelta(0)
    assert msg.temps_c == {"t-front-air": 3.5, "t-rear-air": -18.0}
    assert isinstance(msg.temps_c["t-rear-air"], float)  # an int is a valid JSON number
    assert msg.position is not None and msg.position.fix == "3d"
    assert msg.compartments["front"].door_open is False
    assert msg.power is not None and msg.power.battery_pct == 88.0
    assert msg.samples_list() == [msg]


def test_batch_keeps_order_and_samples() -> None:
    msg = parse_message(dumps(batch([sample(-60, 1), sample(-30, 2), sample(0, 3)])))
    assert isinstance(msg, BatchMessage)
    assert [s.seq for s in msg.samples_list()] == [1, 2, 3]
    assert msg.samples[0].ts == NOW - timedelta(seconds=60)


def test_non_utc_offset_is_kept_exact() -> None:
    msg = parse_message(dumps(single() | {"ts": "2026-11-23T19:00:00+01:00"}))
    assert msg.samples_list()[0].ts == NOW
    assert msg.samples_list()[0].ts.tzinfo == timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", "1"), ("temps_c", {"p1": "3.5"}), ("signal_dbm", -70.0), ("seq", True)],
)
def test_no_coercion_between_strings_numbers_and_bools(field: str, value: object) -> None:
    kind = first_type(dumps(single() | {field: value}))
    assert kind.endswith("_type"), kind


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_rejected(literal: str) -> None:
    raw = dumps(single()).decode()[:-1] + f', "temps_c": {{"p1": {literal}}}}}'
    assert first_type(raw) == "finite_number"


@pytest.mark.parametrize(
    "payload",
    [
        single(extra=1),
        single(position={"lat": 1.0, "alt": 3}),
        batch([sample() | {"v": 1}]),
        single(compartments={"front": {"doors": True}}),
    ],
)
def test_unknown_keys_rejected(payload: dict[str, Any]) -> None:
    assert first_type(dumps(payload)) == "extra_forbidden"


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        (single(temps_c={"p1": 400.0}), ("temps_c", "p1")),
        (single(temps_c={"p1": -100.5}), ("temps_c", "p1")),
        (single(position={"lat": 123.0}), ("position", "lat")),
        (single(position={"lon": -180.01}), ("position", "lon")),
        (single(position={"heading_deg": 360.0}), ("position", "heading_deg")),
        (single(signal_dbm=1), ("signal_dbm",)),
        (single(seq=-1), ("seq",)),
        (single(seq=2**53 + 1), ("seq",)),
        (single(compartments={"front": {"alarm_code": 65536}}), ("compartments", "front")),
        (single(power={"battery_pct": 100.1}), ("power", "battery_pct")),
    ],
)
def test_physically_impossible_values_rejected(
    payload: dict[str, Any], loc: tuple[str, ...]
) -> None:
    err = errors(dumps(payload))[0]
    assert str(err["type"]) in {"less_than_equal", "greater_than_equal", "less_than"}
    assert tuple(str(p) for p in err["loc"] if p not in ("single", "batch"))[: len(loc)] == loc


def test_bounds_are_inclusive_where_stated() -> None:
    ok = single(
        temps_c={"p1": 100.0, "p2": -100.0}, position={"lat": -90.0, "lon": 180.0}, seq=2**53
    )
    assert parse_message(dumps(ok)).samples_list()[0].seq == 2**53


@pytest.mark.parametrize("ts", ["2026-11-23T18:00:00", "2026-11-23 18:00:00"])
def test_naive_timestamp_rejected(ts: str) -> None:
    assert first_type(dumps(single() | {"ts": ts})) == "timezone_aware"


def test_epoch_number_timestamp_rejected() -> None:
    assert first_type(dumps(single() | {"ts": 1_795_000_000})).endswith("_type")


def test_oversize_collections_rejected() -> None:
    temps = {f"p{i}": 1.0 for i in range(33)}
    assert first_type(dumps(single(temps_c=temps))) == "too_long"
    assert parse_message(dumps(single(temps_c=dict(list(temps.items())[:32]))))
    comps: dict[str, dict[str, Any]] = {f"c{i}": {} for i in range(9)}
    assert first_type(dumps(single(compartments=comps))) == "too_long"
    too_many = [sample(seq=i) for i in range(MAX_BATCH_SAMPLES + 1)]
    assert first_type(json.dumps(batch(too_many))) == "too_long"
    assert first_type(dumps(batch([]))) == "too_short"


@pytest.mark.parametrize(
    "bad_id", ["x" * 65, "", "-leading-dash", "has space", "dev/1", "dev-1\n", "温度"]
)
def test_identifiers_are_bounded_and_plain(bad_id: str) -> None:
    kinds = {first_type(dumps(single(device_id=bad_id)))}
    kinds.add(first_type(dumps(single(temps_c={bad_id: 1.0}))))
    assert kinds <= {"string_pattern_mismatch", "string_too_long"}, kinds


def test_identifier_at_max_length_accepted() -> None:
    ident = "a" * 64
    assert parse_message(dumps(single(temps_c={ident: 1.0}))).samples_list()[0].temps_c == {
        ident: 1.0
    }


@pytest.mark.parametrize(
    "payload",
    [b"[]", b'"sample"', b"42", b"null", single() | {"v": 2}],
)
def test_not_a_v1_message(payload: bytes | dict[str, Any]) -> None:
    raw = payload if isinstance(payload, bytes) else dumps(payload)
    errors(raw)


def test_missing_required_fields() -> None:
    for field in ("v", "device_id", "ts", "seq"):
        payload = single()
        del payload[field]
        err = errors(dumps(payload))[0]
        assert err["type"] == "missing" and err["loc"][-1] == field


def test_models_are_frozen() -> None:
    s = parse_message(dumps(single())).samples_list()[0]
    with pytest.raises(ValidationError):
        s.seq = 5


def test_timestamps_far_from_1970_are_exact() -> None:
    msg = parse_message(dumps(single() | {"ts": "2262-04-11T23:47:16.854Z"}))
    assert msg.samples_list()[0].ts == datetime(2262, 4, 11, 23, 47, 16, 854000, tzinfo=UTC)


def test_a_repeated_key_is_an_error_not_last_one_wins() -> None:
    raw = dumps(single(temps_c={"p1": -18.5})).replace(b'"p1": -18.5', b'"p1": -18.5, "p1": 99.0')
    [err] = errors(raw)
    assert (err["type"], err["loc"], err["input"]) == (
        "duplicate_key",
        ("temps_c", "p1"),
        [-18.5, 99.0],
    )


@pytest.mark.parametrize(
    "position",
    [
        {"lat": 0, "lon": 0, "speed_kmh": 0, "fix": "none"},
        {"lat": 48.1, "lon": 11.6, "speed_kmh": 72.0, "heading_deg": 90.0, "fix": "none"},
        {"lat": 0.0, "lon": 0.0, "speed_kmh": 0.0},  # 0/0 without a fix flag: no fix either
        {"fix": "none", "hdop": 99.9},
    ],
)
def test_a_position_without_a_fix_is_not_a_place_and_its_speed_is_unknown(
    position: dict[str, Any],
) -> None:
    pos = parse_message(dumps(single(position=position))).samples_list()[0].position
    assert pos is not None and pos.fix == "none"
    assert (pos.lat, pos.lon, pos.speed_kmh, pos.heading_deg) == (None, None, None, None)
    assert pos.hdop == position.get("hdop")


def test_a_fix_at_a_real_place_is_kept() -> None:
    for position in ({"lat": 0.0, "lon": 13.4, "fix": "2d"}, {"lat": 52.5, "lon": 0.0}):
        pos = parse_message(dumps(single(position=position))).samples_list()[0].position
        assert pos is not None and (pos.lat, pos.lon) == (position["lat"], position["lon"])
        assert pos.fix == position.get("fix", "3d")
