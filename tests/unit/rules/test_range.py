"""Range and hard-limit rules at their boundaries (1-minute samples unless stated)."""

from __future__ import annotations

import pytest

from ._helpers import MIN, at, kinds, obs, only, profile, run, series, spec

RANGE = {"name": "range", "kind": "range", "min_c": 2.0, "max_c": 8.0, "delay_min": 5}


def test_outside_exactly_for_the_delay_opens() -> None:
    sp = spec()
    # 9 degC at minutes 1..5 held until the 5 degC sample at minute 6: exactly 5 min outside.
    res = run(sp, profile(RANGE), series(sp, [5, 9, 9, 9, 9, 9, 5]))
    [exc] = only(res)
    assert exc.start_ms == at(1)
    # clear_delay_min = 0, so the in-range sample at minute 6 also closes it in the same step:
    # opened and closed at once are reported as one change, "closed".
    assert (exc.status, exc.end_ms, exc.detected_ms) == ("closed", at(6), at(6))
    assert kinds(res) == ["closed"]


def test_clear_delay_zero_closes_at_first_inside_sample() -> None:
    sp = spec()
    res = run(sp, profile(RANGE), series(sp, [5, 9, 9, 9, 9, 9, 9, 5]))
    [exc] = only(res)
    assert (exc.start_ms, exc.end_ms, exc.status) == (at(1), at(7), "closed")
    assert kinds(res) == ["opened", "closed"]
    assert exc.detected_ms == at(6)  # the sample that proved 5 min had passed
    assert exc.degree_minutes == pytest.approx(6.0)  # 6 min x 1 degC beyond 8
    assert exc.peak_c == 9


def test_one_sample_short_of_the_delay_does_not_open() -> None:
    sp = spec()
    res = run(sp, profile(RANGE), series(sp, [5, 9, 9, 9, 9, 5, 5, 5]))
    assert only(res) == []
    assert res.changes == []


def test_one_sample_past_the_delay_opens_with_the_run_start() -> None:
    sp = spec()
    res = run(sp, profile(RANGE), series(sp, [5, 9, 9, 9, 9, 9, 9]))
    [exc] = only(res)
    assert (exc.start_ms, exc.status, exc.detected_ms) == (at(1), "open", at(6))


def test_irregular_sampling_counts_held_time_not_samples() -> None:
    sp = spec()
    # 2 samples 4.999 min apart: held 4.999 min -> no; 5 min apart -> yes
    short = [obs(sp, 0, 9), obs(sp, 4.999, 5)]
    exact = [obs(sp, 0, 9), obs(sp, 5, 5)]
    assert only(run(sp, profile(RANGE), short)) == []
    [exc] = only(run(sp, profile(RANGE), exact))
    assert exc.start_ms == at(0) and exc.end_ms == at(5)


def test_low_side_and_peak_is_the_coldest() -> None:
    sp = spec()
    res = run(sp, profile(RANGE), series(sp, [5, 1, 0.5, 1, 1, 1, 1, 5]))
    [exc] = only(res)
    assert exc.peak_c == 0.5
    # beyond-limit per minute: 1, 1.5, 1, 1, 1, 1 -> 6.5 degree-minutes
    assert exc.degree_minutes == pytest.approx(6.5)


def test_clear_delay_boundary() -> None:
    sp = spec()
    rule = {**RANGE, "clear_delay_min": 3}
    # outside minutes 0..5 (opens at 5), inside from minute 6
    vals = [9] * 6 + [5, 5, 5]
    res = run(sp, profile(rule), series(sp, vals))
    assert only(res)[0].status == "open"  # inside 6..8 held only 2 min so far
    res = run(sp, profile(rule), series(sp, [*vals, 5]))
    [exc] = only(res)
    assert exc.status == "closed" and exc.end_ms == at(6)  # end = back inside, not the clear time


def test_flapping_around_the_limit_gives_one_excursion() -> None:
    sp = spec()
    rule = {**RANGE, "clear_delay_min": 5, "hysteresis_c": 0.5}
    vals = [9.0] * 6  # opens
    vals += [7.9, 8.1, 7.9, 8.2, 7.8, 8.05] * 5  # flapping: within the hysteresis band or out
    vals += [6.0] * 6  # clearly back: closes after 5 min
    res = run(sp, profile(rule), series(sp, vals))
    excs = only(res)
    assert len(excs) == 1
    assert kinds(res) == ["opened", "closed"]
    assert excs[0].end_ms == at(36)


def test_hysteresis_band_does_not_clear_even_after_the_clear_delay() -> None:
    sp = spec()
    rule = {**RANGE, "clear_delay_min": 2, "hysteresis_c": 0.5}
    res = run(sp, profile(rule), series(sp, [9.0] * 6 + [7.7] * 20))
    assert only(res)[0].status == "open"


def test_flapping_without_delay_would_open_many_with_hysteresis_once() -> None:
    sp = spec()
    rule = {"name": "range", "kind": "range", "max_c": 8.0, "delay_min": 0, "clear_delay_min": 2}
    res = run(sp, profile(rule), series(sp, [8.1, 7.9] * 10 + [5.0] * 5))
    assert len(only(res)) == 1


def test_hard_limit_is_critical_at_once_and_closes_inside() -> None:
    sp = spec()
    hard = {"name": "hard_high", "kind": "hard_limit", "max_c": 15.0}
    res = run(sp, profile(hard), series(sp, [5, 15, 15.01, 14, 5]))
    [exc] = only(res)
    assert exc.severity == "critical" and exc.kind == "hard_limit"
    assert (exc.start_ms, exc.end_ms, exc.detected_ms) == (at(2), at(3), at(2))
    assert exc.peak_c == 15.01


def test_inclusive_limit_counts_equality_as_outside() -> None:
    sp = spec()
    who = {"name": "heat", "kind": "range", "max_c": 45.0, "inclusive": True, "delay_min": 60}
    assert only(run(sp, profile(who), series(sp, [45.0] * 61)))[0].start_ms == at(0)
    not_incl = {**who, "inclusive": False}
    assert only(run(sp, profile(not_incl), series(sp, [45.0] * 61))) == []
    assert only(run(sp, profile(who), series(sp, [45.0] * 60))) == []  # 59 min held


def test_escalation_by_duration_is_one_event() -> None:
    sp = spec()
    rule = {**RANGE, "escalate": {"after_min": 10}}
    res = run(sp, profile(rule), series(sp, [9] * 12 + [5]))
    assert kinds(res) == ["opened", "escalated", "closed"]
    esc = res.changes[1].excursion
    assert esc.severity == "critical" and esc.status == "open"
    assert esc.detected_ms == at(5)  # escalation keeps the first detection time


def test_escalation_by_degree_minutes_and_by_peak() -> None:
    sp = spec()
    by_dm = {**RANGE, "escalate": {"degree_minutes": 12}}
    # 11 degC = 3 beyond: 5 min before opening = 15 degree-minutes -> opens critical at once
    res = run(sp, profile(by_dm), series(sp, [11] * 6))
    assert kinds(res) == ["opened"] and res.changes[0].excursion.severity == "critical"
    by_peak = {**RANGE, "escalate": {"peak_beyond_c": 2.0}}
    res = run(sp, profile(by_peak), series(sp, [9] * 7 + [10.5, 9]))
    assert kinds(res) == ["opened", "escalated"]
    assert res.changes[1].excursion.peak_c == 10.5


def test_gap_caps_the_held_time() -> None:
    sp = spec()  # vehicle: cap 10 min
    rule = {**RANGE, "delay_min": 15}
    # one reading of 9 degC, then nothing for 30 min, then 9 again: only 10 min held -> no open
    res = run(sp, profile(rule), [obs(sp, 0, 9), obs(sp, 30, 9)])
    assert only(res, "range") == []
    # ...the next 5 minutes outside complete the 15 min of known time: opens
    res = run(sp, profile(rule), [obs(sp, 0, 9), obs(sp, 30, 9), obs(sp, 35, 9)])
    [exc] = only(res, "range")
    assert exc.start_ms == at(0)


def test_defrost_suppresses_range_time_for_up_to_n_minutes() -> None:
    sp = spec()
    rule = {**RANGE, "defrost_suppress_min": 20}
    defrost = [obs(sp, m, 9, mode="defrost") for m in range(0, 20)]
    after = [obs(sp, m, 9, mode="cooling") for m in range(20, 24)] + [obs(sp, 24, 5)]
    assert only(run(sp, profile(rule), defrost + after)) == []  # only 4 min count
    long = [obs(sp, m, 9, mode="defrost") for m in range(0, 26)]
    [exc] = only(run(sp, profile(rule), long))  # 20 suppressed + 5 counted at minute 25
    assert exc.start_ms == at(0) and exc.detected_ms == at(25)
    unsuppressed = {**RANGE}
    assert only(run(sp, profile(unsuppressed), defrost))[0].detected_ms == at(5)


def test_door_open_at_a_stop_extends_the_delay() -> None:
    sp = spec()
    rule = {**RANGE, "door_extra_delay_min": 10}
    door = [obs(sp, m, 9, door=m < 3, speed=0.0) for m in range(0, 14)]
    res = run(sp, profile(rule), door)
    assert only(res) == []  # 13 min < 5 + 10
    [exc] = only(run(sp, profile(rule), [*door, obs(sp, 15, 9)]))
    assert exc.detected_ms == at(15)
    no_door = [obs(sp, m, 9, door=False, speed=0.0) for m in range(0, 6)]
    assert only(run(sp, profile(rule), no_door))[0].detected_ms == at(5)
    # door open while driving is no loading stop: no extension
    driving = [obs(sp, m, 9, door=m < 3, speed=60.0) for m in range(0, 6)]
    assert only(run(sp, profile(rule), driving))[0].detected_ms == at(5)


def test_product_probe_controls_when_present_air_otherwise() -> None:
    sp = spec(sensors=(("p1", "product"), ("a1", "air")))
    # air warm, product fine: no range excursion
    res = run(sp, profile(RANGE), [obs(sp, m, 5, 12) for m in range(10)])
    assert only(res) == []
    # product missing: air controls
    res = run(sp, profile(RANGE), [obs(sp, m, None, 12) for m in range(10)])
    assert len(only(res)) == 1


def test_unit_minute_constant() -> None:
    assert MIN == 60_000
