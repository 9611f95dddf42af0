"""Data gaps per compartment on its device's clock, silent probes, clock jumps (docs/rules.md
section 4.6)."""

from __future__ import annotations

from datetime import UTC, datetime

from coldchain.contract import Position, Sample
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import (
    Change,
    CompartmentEvaluator,
    RulesEngine,
    evaluate,
    load_presets,
    make_observation,
)

from ._helpers import MIN, T0, at, only, profile, spec

GAP = {"name": "gap", "kind": "data_gap", "transport_min": 10, "storage_min": 30}
WALL = 5_000_000_000_000  # the ingest clock: far from device time, so a mix-up shows


def _truck(asset_id: str, *compartments: str) -> Asset:
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"{asset_id}-tcu",),
        compartments=tuple(
            Compartment(
                id=c,
                profile="frozen",
                sensors=(SensorSpec(id=f"{c}-air", probe="air"), SensorSpec(id=f"{c}-prod")),
            )
            for c in compartments
        ),
    )


def _sample(minute: float, temps: dict[str, float], position: bool = False) -> Sample:
    return Sample(
        ts=datetime.fromtimestamp(at(minute) / 1000, tz=UTC),
        seq=round(minute * 2),
        temps_c=temps,
        position=Position(lat=31.0, lon=121.0, speed_kmh=50.0) if position else None,
    )


def _drive(
    eng: RulesEngine, asset_id: str, samples: list[Sample], wall_per_min: int = MIN
) -> list[tuple[int, Change]]:
    """Feed samples as they come, ticking the asset's device clock every 30 s of device time
    like ingest does (device clock = newest device time heard; ingest clock = WALL + elapsed)."""
    out: list[tuple[int, Change]] = []
    for s in samples:
        t = int(s.ts.timestamp() * 1000)
        wall = WALL + (t - T0) // MIN * wall_per_min
        out += [(t, c) for c in eng.feed(asset_id, s, wall).changes]
        out += [(t, c) for c in eng.tick_asset(asset_id, t, wall)]
    return out


def test_positions_only_for_33_minutes_is_a_data_gap_detected_on_the_ingest_clock() -> None:
    asset = _truck("truck-nt-02", "main")
    eng = RulesEngine([asset], load_presets())
    both = {"main-air": -21.0, "main-prod": -20.0}
    samples = [_sample(m / 2, both, position=True) for m in range(0, 11)]  # 0 .. 5
    samples += [_sample(m / 2, {}, position=True) for m in range(11, 76)]  # 5.5 .. 37.5
    samples.append(_sample(38, both, position=True))
    changes = _drive(eng, "truck-nt-02", samples)
    gaps = [(t, c) for t, c in changes if c.excursion.kind == "data_gap"]
    assert [c.kind for _, c in gaps] == ["opened", "closed"]
    (t_open, opened), (_, closed) = gaps
    assert t_open == at(15.5)  # the first tick with the device clock past 5 + 10 min
    assert opened.excursion.start_ms == at(15)
    # detected on the ingest clock of that tick, not device time
    assert opened.excursion.detected_ms == WALL + 15 * MIN
    assert (closed.excursion.start_ms, closed.excursion.end_ms) == (at(15), at(38))
    assert closed.excursion.severity == "warning"


def test_silent_rear_compartment_has_a_gap_while_front_and_middle_report() -> None:
    asset = _truck("truck-gs-01", "front", "middle", "rear")
    eng = RulesEngine([asset], load_presets())
    every = {"front-air": -21.0, "front-prod": -20.0, "middle-air": -21.0, "middle-prod": -20.0}
    rear = {"rear-air": -21.0, "rear-prod": -20.0}
    samples = [_sample(0, every | rear)]
    samples += [_sample(m / 2, every) for m in range(1, 66)]  # 0.5 .. 32.5
    samples.append(_sample(33, every | rear))
    changes = _drive(eng, "truck-gs-01", samples)
    found = {(c.excursion.compartment_id, c.excursion.rule, c.kind) for _, c in changes}
    assert found == {("rear", "gap", "opened"), ("rear", "gap", "closed")}
    closed = next(c for _, c in changes if c.kind == "closed")
    assert (closed.excursion.start_ms, closed.excursion.end_ms) == (at(10), at(33))


def test_one_silent_probe_is_a_sensor_fault_not_a_gap() -> None:
    sp = spec(sensors=(("air", "air"), ("prod", "product")))
    series = [
        make_observation(sp, at(m), {"air": 3.0} | ({"prod": 3.5} if m <= 2 or m >= 20 else {}))
        for m in range(0, 31)
    ]
    res = evaluate(sp, profile(GAP), series)
    [fault] = only(res)
    assert (fault.kind, fault.rule, fault.severity) == ("sensor_fault", "silent.prod", "warning")
    assert (fault.start_ms, fault.detected_ms, fault.end_ms) == (at(12), at(13), at(20))
    assert "prod" in fault.detail
    # Every probe silent: a data gap and no probe fault.
    quiet = [make_observation(sp, at(m), {"air": 3.0, "prod": 3.5}) for m in (0, 1, 2, 25, 26)]
    assert [(e.kind, e.start_ms, e.end_ms) for e in only(evaluate(sp, profile(GAP), quiet))] == [
        ("data_gap", at(12), at(25))
    ]


def test_a_probe_that_never_reports_is_counted_from_the_first_recording() -> None:
    sp = spec(sensors=(("air", "air"), ("prod", "product")))
    series = [make_observation(sp, at(m), {"air": 3.0}) for m in range(0, 12)]
    [fault] = only(evaluate(sp, profile(GAP), series))
    assert (fault.rule, fault.start_ms, fault.detected_ms) == ("silent.prod", at(10), at(11))
    # A compartment with one probe has no probe faults: its silence is the data gap.
    single = spec()
    assert (
        only(evaluate(single, profile(GAP), [make_observation(single, at(0), {"p1": 1.0})])) == []
    )


def test_a_clock_jump_is_not_a_gap_in_streaming_and_in_batch() -> None:
    # docs/rules.md 4.6: last sample before the correction at device 239, next at 250 (J 600 s).
    sp = spec()
    series = [make_observation(sp, at(m), {"p1": -20.0}) for m in range(230, 240)]
    series += [make_observation(sp, at(m), {"p1": -20.0}) for m in range(250, 255)]
    jumps = [(at(250), 600_000)]
    assert only(evaluate(sp, profile(GAP), series, jumps=jumps)) == []
    [gap] = only(evaluate(sp, profile(GAP), series))  # the same without the jump
    assert (gap.start_ms, gap.end_ms) == (at(249), at(250))
    ev = CompartmentEvaluator(sp, profile(GAP))
    for o in series[:10]:
        ev.feed(o)
    ev.add_jump(600_000)
    assert ev.tick(at(259), WALL) == []  # 20 min since 239: within 10 + 10
    assert ev.feed(series[10]) == []
    assert ev.jump == 0  # the recording used it up
    # A jump does not excuse a real silence beyond it: gap from 239 + 10 + 10 = 259.
    ev2 = CompartmentEvaluator(sp, profile(GAP))
    for o in series[:10]:
        ev2.feed(o)
    ev2.add_jump(600_000)
    [opened] = ev2.tick(at(259) + 1, WALL)
    assert opened.excursion.start_ms == at(259) and opened.excursion.detected_ms == WALL


def test_the_jump_survives_a_checkpoint() -> None:
    sp = spec()
    ev = CompartmentEvaluator(sp, profile(GAP))
    ev.feed(make_observation(sp, at(0), {"p1": -20.0}))
    ev.add_jump(600_000)
    again = CompartmentEvaluator(sp, profile(GAP))
    again.load(ev.dump())
    assert again.jump == 600_000
    assert again.feed(make_observation(sp, at(19), {"p1": -20.0})) == []
