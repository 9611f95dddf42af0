"""``screen_sample``/``check_sample`` (registry and clock, per unit) and ``ts_ms`` exactness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from coldchain.contract import Limits, Sample, check_sample, screen_sample, ts_ms
from coldchain.fleet import Fleet
from tests.unit.support import NOW, NOW_MS, TRUCK, fleet

LIMITS = Limits(max_future_skew_s=300.0, max_sample_age_s=3600.0)


def make(offset_s: float = 0.0, **fields: object) -> Sample:
    return Sample.model_validate({"ts": NOW + timedelta(seconds=offset_s), "seq": 1, **fields})


def check(s: Sample, index: int = -1) -> str | None:
    problem = check_sample(s, index, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    return None if problem is None else problem.reason


def test_registered_sensors_and_compartments_pass() -> None:
    s = make(temps_c={"t-front-air": 3.0, "t-rear-air": -20.0}, compartments={"rear": {}})
    assert check(s) is None


def test_future_timestamp_beyond_skew() -> None:
    assert check(make(300.0)) is None  # exactly at the limit is allowed
    assert check(make(300.001)) == "future_timestamp"
    problem = check_sample(make(3600.0), 4, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert problem is not None
    assert (problem.field, problem.device_id) == ("samples[4].ts", "dev-1")
    assert "3600 s ahead" in problem.detail
    assert "2026-11-23T19:00:00+00:00" in problem.value


def test_stale_timestamp() -> None:
    assert check(make(-3600.0)) is None
    assert check(make(-3600.001)) == "stale_timestamp"
    problem = check_sample(make(-7200.0), -1, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert problem is not None and problem.field == "ts"


def test_unknown_sensor_names_it() -> None:
    # A sensor of another asset is unknown on this one.
    problem = check_sample(
        make(temps_c={"t-front-air": 3.0, "s-a": 5.0}), 2, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS
    )
    assert problem is not None
    assert (problem.reason, problem.field, problem.value) == (
        "unknown_sensor",
        "samples[2].temps_c.s-a",
        "5.0",
    )


def test_unknown_compartment_names_it() -> None:
    problem = check_sample(
        make(compartments={"zone-a": {}}), -1, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS
    )
    assert problem is not None
    assert (problem.reason, problem.field) == ("unknown_compartment", "compartments.zone-a")


def test_an_unregistered_probe_or_compartment_costs_only_its_value() -> None:
    s = make(
        temps_c={"t-front-air": 3.0, "s-a": 5.0, "ghost": 1.0},
        compartments={"front": {"door_open": True}, "zone-a": {"door_open": False}},
        position={"lat": 52.5, "lon": 13.4},
    )
    kept, problems = screen_sample(s, 7, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert kept is not None
    assert kept.temps_c == {"t-front-air": 3.0}
    assert list(kept.compartments) == ["front"]
    assert kept.position == s.position and kept.ts == s.ts and kept.seq == s.seq
    assert [(p.reason, p.field, p.value) for p in problems] == [
        ("unknown_sensor", "samples[7].temps_c.s-a", "5.0"),
        ("unknown_sensor", "samples[7].temps_c.ghost", "1.0"),
        ("unknown_compartment", "samples[7].compartments.zone-a", "'zone-a'"),
    ]
    # The original is untouched (models are frozen; the kept sample is a copy).
    assert set(s.temps_c) == {"t-front-air", "s-a", "ghost"}


def test_a_good_sample_is_returned_as_is() -> None:
    s = make(temps_c={"t-front-air": 3.0}, compartments={"rear": {}})
    kept, problems = screen_sample(s, -1, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert kept is s and not problems


def test_a_time_outside_the_window_costs_the_sample() -> None:
    s = make(3600.0, temps_c={"t-front-air": 3.0})
    kept, problems = screen_sample(s, 0, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert kept is None
    assert [(p.reason, p.field) for p in problems] == [("future_timestamp", "samples[0].ts")]


def test_clock_checks_come_before_registry_checks() -> None:
    assert check(make(10_000.0, temps_c={"nope": 1.0})) == "future_timestamp"


def test_ts_ms_examples() -> None:
    assert ts_ms(make()) == NOW_MS
    assert ts_ms(make(0.0015)) == NOW_MS + 1  # sub-millisecond part is floored
    epoch = Sample.model_validate({"ts": datetime(1970, 1, 1, tzinfo=UTC), "seq": 0})
    assert ts_ms(epoch) == 0
    before = Sample.model_validate(
        {"ts": datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC), "seq": 0}
    )
    assert ts_ms(before) == -1  # floor, not truncation toward zero


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # up to 9999-12-31
def test_ts_ms_is_exact_for_every_millisecond(ms: int) -> None:
    """Integer arithmetic: a float epoch (ts.timestamp() * 1000) loses the millisecond."""
    ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert ts_ms(Sample.model_validate({"ts": ts, "seq": 0})) == ms


def test_device_time_is_computed_once_and_never_stale() -> None:
    s = make(temps_c={"t-front-air": 3.0})
    assert s.ts_ms == ts_ms(s) == NOW_MS
    assert "ts_ms" not in s.model_dump() and "ts_ms" not in s.model_fields_set
    assert s == make(temps_c={"t-front-air": 3.0})  # the remembered value is not compared
    moved = s.model_copy(update={"ts": NOW + timedelta(seconds=1)})
    assert moved.ts_ms == NOW_MS + 1000  # a copy with another ts does not keep the old value
    assert s.model_copy(update={"seq": 2}).ts_ms == NOW_MS
    assert ts_ms(Sample.model_construct(ts=NOW, seq=1)) == NOW_MS  # read back from InfluxDB


def test_registered_ids_follow_a_reloaded_fleet() -> None:
    # The per-asset id sets are remembered for the fleet they came from, never for another.
    s = make(temps_c={"t-front-air": 3.0, "t-rear-air": -20.0})
    kept, problems = screen_sample(s, -1, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert kept is s and not problems
    rear = next(c for c in TRUCK.compartments if c.id == "rear")
    fewer = TRUCK.model_copy(update={"compartments": [rear]})
    smaller = Fleet([fewer])
    kept, problems = screen_sample(s, -1, "dev-1", fewer, smaller, NOW_MS, LIMITS)
    assert kept is not None and set(kept.temps_c) == {"t-rear-air"}
    assert [p.reason for p in problems] == ["unknown_sensor"]
    kept, problems = screen_sample(s, -1, "dev-1", TRUCK, fleet(), NOW_MS, LIMITS)
    assert kept is s and not problems
