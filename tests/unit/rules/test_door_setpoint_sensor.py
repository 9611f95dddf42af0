"""Door open too long, setpoint mismatch, sensor faults (implausible, disagree, stuck)."""

from __future__ import annotations

from ._helpers import at, kinds, obs, only, profile, run, series, spec

DOOR = {"name": "door", "kind": "door_open", "max_open_min": 5, "loading_max_open_min": 20}


def test_door_open_exactly_the_limit_opens_start_is_the_opening() -> None:
    sp = spec()
    seq = [obs(sp, m, 5, door=True, speed=60) for m in range(2, 8)] + [obs(sp, 8, 5, door=False)]
    [exc] = only(run(sp, profile(DOOR), [obs(sp, 0, 5, door=False), *seq]))
    assert (exc.start_ms, exc.detected_ms, exc.end_ms) == (at(2), at(7), at(8))
    short = [obs(sp, m, 5, door=True, speed=60) for m in range(2, 7)] + [obs(sp, 7, 5, door=False)]
    # closes at minute 7 after 5 min open: held until the closing sample = exactly 5 -> opens
    assert len(only(run(sp, profile(DOOR), short))) == 1
    shorter = [obs(sp, m, 5, door=True, speed=60) for m in range(2, 6)] + [
        obs(sp, 6.99, 5, door=False)
    ]
    assert only(run(sp, profile(DOOR), shorter)) == []


def test_door_at_a_loading_stop_gets_the_longer_limit() -> None:
    sp = spec()
    stop = [obs(sp, m, 5, door=True, speed=0) for m in range(0, 15)] + [obs(sp, 15, 5, door=False)]
    assert only(run(sp, profile(DOOR), stop)) == []
    store = spec(kind="store")
    stop = [obs(store, m, 5, door=True) for m in range(0, 22)]
    assert only(run(store, profile(DOOR), stop))[0].detected_ms == at(20)


def test_door_state_is_held_when_not_reported() -> None:
    sp = spec()
    seq = [obs(sp, 0, 5, door=True, speed=50)] + [obs(sp, m, 5, speed=50) for m in range(1, 7)]
    assert len(only(run(sp, profile(DOOR), seq))) == 1


SETPOINT = {"name": "setpoint", "kind": "setpoint", "min_c": 2.0, "max_c": 8.0, "delay_min": 5}


def test_setpoint_mismatch_after_the_delay() -> None:
    sp = spec()
    bad = [obs(sp, m, 5, setpoint=-18.0) for m in range(0, 5)] + [obs(sp, 5, 5, setpoint=5.0)]
    assert only(run(sp, profile(SETPOINT), bad[:-1])) == []
    res = run(sp, profile(SETPOINT), [*bad[:-1], obs(sp, 5, 5, setpoint=-18.0), bad[-1]])
    [exc] = only(res)
    assert exc.kind == "setpoint" and exc.peak_c == -18.0
    assert (exc.start_ms, exc.end_ms) == (at(0), at(5))
    assert "setpoint -18" in exc.detail


IMPL = {"name": "implausible", "kind": "sensor_fault", "check": "implausible", "max_c": 60.0}


def test_implausible_reading_opens_at_once_and_closes_at_the_next_good_one() -> None:
    sp = spec(sensors=(("p1", "product"), ("a1", "air")))
    res = run(sp, profile(IMPL), [obs(sp, 0, 5, 5), obs(sp, 1, 5, 85.0), obs(sp, 2, 5, 5)])
    [exc] = only(res)
    assert exc.kind == "sensor_fault" and exc.peak_c == 85.0
    assert (exc.start_ms, exc.end_ms) == (at(1), at(2))
    assert only(run(sp, profile(IMPL), [obs(sp, 0, 5, 60.0)])) == []  # the limit itself is fine


DIS = {
    "name": "disagree",
    "kind": "sensor_fault",
    "check": "disagree",
    "max_spread_c": 3.0,
    "delay_min": 5,
}


def test_probes_of_the_same_kind_disagreeing() -> None:
    sp = spec(sensors=(("a1", "air"), ("a2", "air"), ("p1", "product")))
    res = run(sp, profile(DIS), [obs(sp, m, 5, 8.5, 5) for m in range(7)])
    [exc] = only(res)
    assert exc.start_ms == at(0) and exc.detected_ms == at(5) and exc.peak_c == 3.5
    # air vs product differing is normal: no fault
    assert only(run(sp, profile(DIS), [obs(sp, m, 5, 5, 12) for m in range(7)])) == []
    # exactly the allowed spread: no fault
    assert only(run(sp, profile(DIS), [obs(sp, m, 5, 8, 5) for m in range(7)])) == []


STUCK = {
    "name": "stuck",
    "kind": "sensor_fault",
    "check": "stuck",
    "stuck_samples": 5,
    "stuck_min": 4,
}


def test_stuck_probe_while_the_other_moves() -> None:
    sp = spec(sensors=(("p1", "product"), ("a1", "air")))
    seq = [obs(sp, m, 4.2, 3.0 + 0.1 * m) for m in range(6)] + [obs(sp, 6, 4.3, 3.6)]
    res = run(sp, profile(STUCK), seq)
    [exc] = only(res)
    assert exc.start_ms == at(0) and exc.detected_ms == at(4) and exc.end_ms == at(6)
    assert "p1" in exc.detail and kinds(res) == ["opened", "closed"]
    # both identical (a quiet, well-controlled compartment): not a fault
    both = [obs(sp, m, 4.2, 3.0) for m in range(10)]
    assert only(run(sp, profile(STUCK), both)) == []
    # 4 identical samples only: not yet
    assert only(run(sp, profile(STUCK), seq[:4])) == []


def test_sole_probe_stuck_on_its_own() -> None:
    sp = spec()
    assert len(only(run(sp, profile(STUCK), series(sp, [4.2] * 5)))) == 1
    assert only(run(sp, profile(STUCK), series(sp, [4.2] * 4))) == []
