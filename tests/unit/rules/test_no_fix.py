"""Without a GNSS fix speed is unknown: the vehicle counts as moving (docs/rules.md section 1)."""

from __future__ import annotations

from datetime import UTC, datetime

from coldchain.contract import Position, Sample
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import load_presets, make_observation, observations_from_sample

from ._helpers import T0, at, only, run, spec

TRUCK = Asset(
    id="truck-1",
    kind="vehicle",
    devices=("d",),
    compartments=(Compartment(id="main", profile="chilled", sensors=(SensorSpec(id="p1"),)),),
)


def _sample(position: Position) -> Sample:
    return Sample(
        ts=datetime.fromtimestamp(T0 / 1000, tz=UTC), seq=1, temps_c={"p1": 3.0}, position=position
    )


def test_a_position_without_fix_has_no_speed_whatever_it_says() -> None:
    for pos in (
        Position(fix="none", speed_kmh=0.0),
        Position(fix="none"),
        Position(fix="none", lat=0.0, lon=0.0, speed_kmh=0.0),
    ):
        o = observations_from_sample(TRUCK, _sample(pos))["main"]
        assert (o.stationary, o.nofix) == (None, True), pos
    # With a fix, speed 0 is a stop; without a position the state is held (None).
    with_fix = observations_from_sample(TRUCK, _sample(Position(speed_kmh=0.0)))["main"]
    assert (with_fix.stationary, with_fix.nofix) == (True, False)
    sp = spec()
    assert make_observation(sp, T0, {"p1": 3.0}, speed_kmh=0.0, fix="none").nofix
    assert make_observation(sp, T0, {"p1": 3.0}).stationary is None
    store = spec(kind="store")
    o = make_observation(store, T0, {"p1": 3.0}, fix="none")
    assert (o.stationary, o.nofix) == (True, False)


def test_door_open_twelve_minutes_on_the_road_without_fix_uses_the_moving_limit() -> None:
    # docs/rules.md section 1: moving with a fix, then no fix (speed 0 or absent), door open
    # from 0 to 12. Chilled preset: door 5 min moving, 20 min at a stop.
    sp = spec()
    chilled = load_presets()["chilled"]
    for speed in (0.0, None):
        series = [make_observation(sp, at(0), {"p1": 3.0}, door_open=True, speed_kmh=60.0)]
        series += [
            make_observation(sp, at(m), {"p1": 3.0}, door_open=True, speed_kmh=speed, fix="none")
            for m in range(1, 12)
        ]
        series.append(make_observation(sp, at(12), {"p1": 3.0}, door_open=False, fix="none"))
        [door] = only(run(sp, chilled, series), "door")
        assert (door.start_ms, door.detected_ms, door.end_ms) == (at(0), at(5), at(12))
        assert door.detail == "door open longer than 5 min"
    # The same with a fix and speed 0 is a loading stop: nothing before 20 min.
    stop = [make_observation(sp, at(0), {"p1": 3.0}, door_open=True, speed_kmh=60.0)]
    stop += [
        make_observation(sp, at(m), {"p1": 3.0}, door_open=True, speed_kmh=0.0, fix="3d")
        for m in range(1, 12)
    ]
    stop.append(make_observation(sp, at(12), {"p1": 3.0}, door_open=False))
    assert only(run(sp, chilled, stop), "door") == []
    # A fix lost for a moment at the stop keeps the stop.
    blink = [*stop[:6], make_observation(sp, at(6), {"p1": 3.0}, door_open=True, fix="none")]
    assert only(run(sp, chilled, [*blink, *stop[7:]]), "door") == []
    # Lost for longer: held 10 min after the last fix (minute 2), moving from the sample at 13.
    lost = [*stop[:3]]
    lost += [
        make_observation(sp, at(m), {"p1": 3.0}, door_open=True, speed_kmh=0.0, fix="none")
        for m in range(3, 20)
    ]
    lost.append(make_observation(sp, at(20), {"p1": 3.0}, door_open=False))
    [door] = only(run(sp, chilled, lost), "door")
    assert (door.start_ms, door.detected_ms, door.end_ms) == (at(0), at(13), at(20))
