"""Door open too long, setpoint mismatch, sensor faults (implausible, disagree, stuck)."""

from __future__ import annotations

import random

import pytest

from coldchain.rules import Observation, evaluate, make_observation

from ._helpers import (
    ALL_RULES,
    T0,
    TWO_PROBES,
    at,
    kinds,
    obs,
    only,
    preset,
    profile,
    run,
    series,
    spec,
)

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


def test_stuck_air_probe_while_the_other_moves() -> None:
    sp = spec(sensors=(("a1", "air"), ("p1", "product")))
    seq = [obs(sp, m, 4.2, 3.0 + 0.1 * m) for m in range(6)] + [obs(sp, 6, 4.3, 3.6)]
    res = run(sp, profile(STUCK), seq)
    [exc] = only(res)
    assert exc.start_ms == at(0) and exc.detected_ms == at(4) and exc.end_ms == at(6)
    assert "a1" in exc.detail and kinds(res) == ["opened", "closed"]
    # both identical (a quiet, well-controlled compartment): not a fault
    both = [obs(sp, m, 4.2, 3.0) for m in range(10)]
    assert only(run(sp, profile(STUCK), both)) == []
    # 4 identical samples only: not yet
    assert only(run(sp, profile(STUCK), seq[:4])) == []


def test_sole_air_probe_stuck_on_its_own() -> None:
    sp = spec(sensors=(("a1", "air"),))
    assert len(only(run(sp, profile(STUCK), series(sp, [4.2] * 5)))) == 1
    assert only(run(sp, profile(STUCK), series(sp, [4.2] * 4))) == []


# -- issue 9, item 6: a steady product probe is not stuck unless the product must have moved --


def store_zone(
    air: list[float], product: list[float], mode: list[str] | None = None
) -> list[Observation]:
    """One sample a minute of a frozen store zone with an air and a product probe."""
    sp = spec(kind="store", sensors=AIR_PRODUCT)
    return [
        obs(sp, m, a, p, mode=None if mode is None else mode[m])
        for m, (a, p) in enumerate(zip(air, product, strict=True))
    ]


CYCLE = [-21.5, -21.0, -20.5, -20.0, -19.5, -20.0, -20.5, -21.0]  # air, 8-minute period


def test_steady_product_probe_while_the_air_cycles_is_not_stuck() -> None:
    # docs/rules.md 4.9: frozen store zone for 2 h, product steady at -20.0.
    sp = spec(kind="store", sensors=AIR_PRODUCT)
    air = [CYCLE[m % 8] for m in range(121)]
    res = run(sp, preset("frozen", "stuck"), store_zone(air, [-20.0] * 121))
    assert res.changes == []


def test_product_probe_frozen_through_a_defrost_is_stuck() -> None:
    # docs/rules.md 4.9: defrost 30..60 with the air at -8.0: the product must have moved.
    sp = spec(kind="store", sensors=AIR_PRODUCT)
    air = [-8.0 if 30 <= m < 60 else CYCLE[m % 8] for m in range(121)]
    mode = ["defrost" if 30 <= m < 60 else "cooling" for m in range(121)]
    res = run(sp, preset("frozen", "stuck"), store_zone(air, [-20.0] * 121, mode=mode))
    [change] = res.changes
    e = change.excursion
    assert (change.kind, e.rule, e.status, e.start_ms, e.detected_ms) == (
        "opened",
        "stuck",
        "open",
        at(0),
        at(60),
    )
    assert e.peak_c == -20.0
    assert e.detail == (
        "sensor p1 stuck at -20 degC although the air was more than 3 degC away for 30 min"
    )
    # 29 minutes of evidence are not enough
    air29 = [-8.0 if 31 <= m < 60 else CYCLE[m % 8] for m in range(121)]
    assert run(sp, preset("frozen", "stuck"), store_zone(air29, [-20.0] * 121)).changes == []
    # its next different value closes it
    moved = [-20.0] * 70 + [-19.9] * 51
    res = run(sp, preset("frozen", "stuck"), store_zone(air, moved))
    assert [(c.kind, c.excursion.end_ms) for c in res.changes] == [
        ("opened", None),
        ("closed", at(70)),
    ]
    # a product value that changed as the defrost ended restarts the evidence: nothing
    moved = [-20.0] * 59 + [-19.9] * 62
    assert run(sp, preset("frozen", "stuck"), store_zone(air, moved)).changes == []


def test_product_only_zone_counts_door_and_defrost_time() -> None:
    # docs/rules.md 4.9: no air probe: the door open from 30 to 60 is the evidence.
    sp = spec(kind="store")
    seq = [obs(sp, m, -20.0, door=30 <= m < 60) for m in range(121)]
    [exc] = only(run(sp, preset("frozen", "stuck"), seq))
    assert (exc.start_ms, exc.detected_ms, exc.status) == (at(0), at(60), "open")
    assert exc.detail == (
        "sensor p1 stuck at -20 degC although the door was open or the unit defrosting for 30 min"
    )
    quiet = [obs(sp, m, -20.0, door=False) for m in range(121)]
    assert only(run(sp, preset("frozen", "stuck"), quiet)) == []
    defrost = [obs(sp, m, -20.0, mode="defrost" if m < 40 else "cooling") for m in range(121)]
    assert len(only(run(sp, preset("frozen", "stuck"), defrost))) == 1


# -- issue 9, item 4: an implausible value feeds nothing but the sensor fault -----------------

AIR_PRODUCT = (("a1", "air"), ("p1", "product"))


def test_power_on_value_is_a_sensor_fault_not_an_excursion() -> None:
    # docs/rules.md 4.9: frozen product probe -19, -19, 85.0, -19, -19; air -21.0.
    sp = spec(sensors=AIR_PRODUCT)
    seq = [obs(sp, m, -21.0, p) for m, p in enumerate([-19.0, -19.0, 85.0, -19.0, -19.0])]
    res = run(sp, preset("frozen"), seq)
    got = [
        (c.excursion.rule, c.kind, c.excursion.start_ms, c.excursion.end_ms) for c in res.changes
    ]
    assert got == [("implausible", "opened", at(2), None), ("implausible", "closed", at(2), at(3))]
    assert only(res)[0].peak_c == 85.0
    assert res.evaluator is not None and res.evaluator.hi == -19.0  # held control value


def test_implausible_for_longer_than_the_gap_limit_is_a_data_gap() -> None:
    # docs/rules.md 4.9: product probe only (vehicle, gap limit 10 min).
    sp = spec()
    seq = [obs(sp, 0, -19.0)] + [obs(sp, m, 85.0) for m in range(1, 16)] + [obs(sp, 16, -19.0)]
    res = run(sp, preset("frozen"), seq)
    got = sorted((e.rule, e.start_ms, e.end_ms, e.status) for e in res.excursions.values())
    assert got == [("gap", at(10), at(16), "closed"), ("implausible", at(1), at(16), "closed")]


def test_implausible_values_are_as_if_the_probe_had_not_reported() -> None:
    # Every rule but the implausible one sees exactly what it would see had the probe been
    # silent at those instants - range, hard limits, cumulative, MKT, gap, stuck, disagree.
    sp = spec(sensors=TWO_PROBES)
    prof = profile(*ALL_RULES, name="all")
    rng = random.Random(4)
    silent, faulty = [], []
    t = T0
    for i in range(3000):
        warm = (i // 50) % 3 == 0
        values = {
            "p1": round(rng.uniform(9, 16) if warm else rng.uniform(-1, 8), 1),
            "a1": round(rng.uniform(0, 10), 1),
            "a2": 4.0 if rng.random() < 0.5 else round(rng.uniform(0, 10), 1),
        }
        bad = {k for k in values if rng.random() < 0.05}
        t += rng.choice([60_000, 60_000, 60_000, 300_000, 900_000])
        silent.append(make_observation(sp, t, {k: v for k, v in values.items() if k not in bad}))
        faulty.append(
            make_observation(sp, t, {k: (85.0 if k in bad else v) for k, v in values.items()})
        )
    quiet = evaluate(sp, prof, silent)
    noisy = evaluate(sp, prof, faulty)
    strip = [c for c in noisy.changes if c.excursion.rule != "implausible"]
    assert strip == quiet.changes
    assert {e.rule for e in quiet.excursions.values()} >= {"range", "hard_high", "mkt", "gap"}
    assert any(c.excursion.rule == "implausible" for c in noisy.changes)
    assert not any(c.excursion.rule == "implausible" for c in quiet.changes)


def test_mkt_ignores_an_implausible_spike() -> None:
    sp = spec()
    prof = profile(ALL_RULES[6], name="mkt")  # mkt over 1 h, 12 buckets
    assert ALL_RULES[6]["kind"] == "mkt"
    base = [5.0] * 110  # the last MKT evaluation, at minute 105, covers [45, 105)
    spiked = list(base)
    spiked[100] = 85.0
    impl = profile(ALL_RULES[6], ALL_RULES[11], name="mkt_impl")
    plain = run(sp, prof, series(sp, base))
    with_spike = run(sp, impl, series(sp, spiked))
    assert plain.evaluator is not None and with_spike.evaluator is not None
    mkt_plain = next(r for r in plain.evaluator.rules if r.name == "mkt")
    mkt_spike = next(r for r in with_spike.evaluator.rules if r.name == "mkt")
    assert mkt_plain.value() == pytest.approx(5.0)  # type: ignore[attr-defined]
    assert mkt_spike.value() == mkt_plain.value()  # type: ignore[attr-defined]
