"""Range and hard-limit rules at their boundaries (1-minute samples unless stated)."""

from __future__ import annotations

import pytest

from coldchain.rules import Observation

from ._helpers import MIN, at, kinds, obs, only, preset, profile, run, series, spec

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
    hard = {"name": "hard_high", "kind": "hard_limit", "max_c": 15.0, "clear_delay_min": 0}
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


# -- issue 9, item 8: time out of range and the return, beside the alarm's end ---------------


def test_hysteresis_example_out_of_range_and_return() -> None:
    # docs/rules.md 4.1, hysteresis example: outside at 1, 2, 3, 5 (one minute each); 7.8 at 6
    # is the first value within the limits after the last one above 8.
    sp = spec()
    rule = {"name": "range", "kind": "range", "max_c": 8, "delay_min": 2}
    rule |= {"clear_delay_min": 3, "hysteresis_c": 0.5}
    vals = [7, 8.4, 8.6, 8.4, 7.9, 8.1, 7.8, 7.6, 7.2, 7.0, 7.1, 7.0]
    [exc] = only(run(sp, profile(rule), series(sp, vals)))
    assert (exc.start_ms, exc.end_ms) == (at(1), at(8))
    assert exc.out_of_range_s == 240.0
    assert exc.returned_ms == at(6)


def test_flapping_after_an_excursion_is_one_85_minute_excursion_55_minutes_out() -> None:
    # docs/rules.md 4.1, "Out-of-range time and return": the chilled preset's range rule.
    sp = spec()
    vals = [5.0] * 25 + [4.1, 3.9] * 30 + [3.5] * 11  # minutes 0..24, 25..84, 85..95
    res = run(sp, preset("chilled", "range"), series(sp, vals))
    opened, escalated, closed = res.changes
    assert [c.kind for c in res.changes] == ["opened", "escalated", "closed"]
    assert (opened.excursion.detected_ms, opened.excursion.severity) == (at(20), "warning")
    assert opened.excursion.out_of_range_s == 1200.0 and opened.excursion.returned_ms is None
    assert opened.excursion.degree_minutes == pytest.approx(20.0)
    e = escalated.excursion
    assert (e.severity, e.out_of_range_s, e.returned_ms) == ("critical", 2580.0, None)
    assert e.degree_minutes == pytest.approx(26.8)
    e = closed.excursion
    assert (e.start_ms, e.end_ms, e.status, e.severity) == (at(0), at(85), "closed", "critical")
    assert e.out_of_range_s == 55 * 60.0  # the product was above 4 degC 55 of the 85 minutes
    assert e.returned_ms == at(84)
    assert e.degree_minutes == pytest.approx(28.0)


def test_out_of_range_counts_defrost_time_but_not_unknown_time() -> None:
    sp = spec()  # vehicle: hold cap 10 min
    rule = {**RANGE, "defrost_suppress_min": 20}
    # 9 degC in defrost for 0..19, then cooling 20..25: the delay counts only 20..25, the
    # product was out of range all 25 minutes.
    seq = [obs(sp, m, 9, mode="defrost") for m in range(20)]
    seq += [obs(sp, m, 9, mode="cooling") for m in range(20, 26)] + [obs(sp, 26, 5)]
    [exc] = only(run(sp, profile(rule), seq))
    assert exc.detected_ms == at(25) and exc.out_of_range_s == 26 * 60.0
    assert exc.returned_ms == at(26) == exc.end_ms
    # a 30-min hole after a reading: only the 10 held minutes count
    seq = [obs(sp, m, 9) for m in range(6)] + [obs(sp, 35, 9), obs(sp, 36, 5)]
    [exc] = only(run(sp, profile(RANGE), seq))
    assert exc.out_of_range_s == (5 + 10 + 1) * 60.0


def test_non_limit_kinds_have_no_out_of_range_time() -> None:
    sp = spec()
    door = {"name": "door", "kind": "door_open", "max_open_min": 2}
    seq = [obs(sp, m, 9, door=True, speed=50) for m in range(4)] + [obs(sp, 4, 9, door=False)]
    [exc] = only(run(sp, profile(door), seq))
    assert exc.out_of_range_s is None and exc.returned_ms is None


def test_cumulative_out_of_range_from_the_opening() -> None:
    # docs/rules.md 4.4 example: budget out at 8, closed at 10 (values 33 at 9, 29 at 10).
    sp = spec()
    rule = {"name": "cum", "kind": "cumulative", "above_c": 30, "budget_min": 5}
    seq = [obs(sp, 0, 25), obs(sp, 1, 31), obs(sp, 4, 25), obs(sp, 6, 32), obs(sp, 9, 33)]
    [exc] = only(run(sp, profile(rule), [*seq, obs(sp, 10, 29)]))
    assert (exc.start_ms, exc.end_ms) == (at(8), at(10))
    assert exc.out_of_range_s == 120.0 and exc.returned_ms == at(10)


# -- issue 9, item 5: no alarm storm at a hard limit ------------------------------------------


def test_dithering_at_a_hard_limit_is_one_episode() -> None:
    # docs/rules.md 4.2: chilled truck-st-01/main, 8.2 / 7.8 every minute for 20 min, then 6.0.
    sp = spec(asset="truck-st-01", comp="main")
    vals = [8.2, 7.8] * 10 + [6.0] * 11  # minutes 0..19, 20..30
    res = run(sp, preset("chilled", "hard_high"), series(sp, vals))
    assert [(c.kind, c.excursion.detected_ms) for c in res.changes] == [
        ("opened", at(0)),
        ("closed", at(0)),
    ]
    opened, closed = (c.excursion for c in res.changes)
    assert (opened.start_ms, opened.severity, opened.out_of_range_s) == (at(0), "critical", 0.0)
    assert opened.peak_c == 8.2 and opened.returned_ms is None
    e = closed
    assert (e.start_ms, e.end_ms, e.status, e.severity, e.peak_c) == (
        at(0),
        at(20),
        "closed",
        "critical",
        8.2,
    )
    assert (e.out_of_range_s, e.returned_ms) == (600.0, at(19))
    assert e.degree_minutes == pytest.approx(2.0)
    # the closing change is reported by the sample 10 min after 6.0 came back
    assert [c.kind for c in res.changes] == ["opened", "closed"]
    closing_step = run(sp, preset("chilled", "hard_high"), series(sp, vals[:30]))
    assert [c.kind for c in closing_step.changes] == ["opened"]


def test_hard_limit_default_clear_delay_alone_stops_the_storm() -> None:
    sp = spec()
    bare = {"name": "hard_high", "kind": "hard_limit", "max_c": 8.0}  # clear_delay_min 10
    vals = [8.2, 7.8] * 10 + [6.0] * 11
    res = run(sp, profile(bare), series(sp, vals))
    [exc] = only(res)
    assert kinds(res) == ["opened", "closed"]
    assert (exc.start_ms, exc.end_ms, exc.returned_ms) == (at(0), at(19), at(19))
    # reported closed by the sample at 29, 10 min after the 7.8 at 19
    assert kinds(run(sp, profile(bare), series(sp, vals[:29]))) == ["opened"]
    # without a clear delay (explicitly 0): one excursion per crossing, as before issue 9
    storm = run(sp, profile({**bare, "clear_delay_min": 0}), series(sp, vals))
    assert len(only(storm)) == 10 and len(storm.changes) == 20


def test_hard_limit_hysteresis_on_the_low_side() -> None:
    sp = spec()
    rule = {"name": "hard_low", "kind": "hard_limit", "min_c": 0.0, "inclusive": True}
    rule |= {"clear_delay_min": 2, "hysteresis_c": 0.3}
    # 0.0 is beyond (inclusive); 0.2 is in the band; 0.5 clears after 2 min
    res = run(sp, profile(rule), series(sp, [1.0, 0.0, 0.2, 0.0, 0.2, 0.5, 0.5, 0.5]))
    [exc] = only(res)
    assert (exc.start_ms, exc.end_ms, exc.returned_ms, exc.status) == (
        at(1),
        at(5),
        at(4),
        "closed",
    )


# -- issue 9, item 2: the door allowance holds back the live alarm, not the record ------------


def door_stop_example() -> list[Observation]:
    """docs/rules.md 4.1: standing at a loading stop, door open 0..24, 25 min above 4 degC."""
    sp = spec(asset="truck-st-01", comp="main")
    out = [obs(sp, 0, 3.0, door=True, speed=0.0)]
    out += [obs(sp, m, 5.0, door=m < 25, speed=0.0) for m in range(1, 26)]
    out += [obs(sp, m, 3.5, door=False, speed=0.0) for m in range(26, 41)]
    return out


def test_door_allowance_run_that_ends_is_recorded_when_it_ends() -> None:
    sp = spec(asset="truck-st-01", comp="main")
    res = run(sp, preset("chilled", "range", "door"), door_stop_example())
    got = [(c.excursion.rule, c.kind, c.excursion.detected_ms) for c in res.changes]
    assert got == [
        ("door", "opened", at(20)),
        ("door", "closed", at(20)),
        ("range", "closed", at(26)),
    ]
    door = only(res, "door")[0]
    assert (door.start_ms, door.end_ms, door.severity) == (at(0), at(25), "warning")
    [rng] = only(res, "range")
    assert (rng.start_ms, rng.end_ms, rng.status, rng.severity) == (
        at(1),
        at(26),
        "closed",
        "warning",
    )
    assert (rng.out_of_range_s, rng.returned_ms, rng.peak_c) == (1500.0, at(26), 5.0)
    assert rng.degree_minutes == pytest.approx(25.0)
    assert rng.detail == "door open at a stop: the door allowance (10 min) held back the live alarm"


def test_door_allowance_still_delays_the_live_alarm_and_short_runs_are_nothing() -> None:
    sp = spec()
    rule = {**RANGE, "door_extra_delay_min": 10}  # delay 5 (+10 with the door at a stop)
    door = [obs(sp, m, 9, door=m < 3, speed=0.0) for m in range(0, 16)]
    # still outside at 14: no alert yet; at 15 the extended delay is reached: opened live
    assert only(run(sp, profile(rule), door[:15])) == []
    [exc] = only(run(sp, profile(rule), door))
    assert (exc.status, exc.detected_ms) == ("open", at(15))
    assert exc.detail == "door open at a stop: delay extended by 10 min"
    # back inside after 4 min outside (< delay 5): no excursion, door or not
    short = [obs(sp, m, 9, door=True, speed=0.0) for m in range(4)] + [obs(sp, 4, 5.0)]
    assert only(run(sp, profile(rule), short)) == []
    # exactly the plain delay, then back within the limits: recorded
    five = [obs(sp, m, 9, door=True, speed=0.0) for m in range(5)] + [obs(sp, 5, 5.0)]
    [exc] = only(run(sp, profile(rule), five))
    assert (exc.start_ms, exc.end_ms, exc.detected_ms) == (at(0), at(5), at(5))
    # back into the hysteresis band ends the run too (it is within the limits)
    band = {**rule, "hysteresis_c": 0.5}
    seq = [obs(sp, m, 9, door=True, speed=0.0) for m in range(6)] + [obs(sp, 6, 7.8)]
    [exc] = only(run(sp, profile(band), seq))
    assert (exc.end_ms, exc.returned_ms, exc.out_of_range_s) == (at(6), at(6), 360.0)
