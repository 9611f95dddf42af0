"""Physics of the two-node compartment model, run directly (no scenario)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simulators.thermal import (
    STORE_ZONE,
    TRUCK_COMPARTMENT,
    ThermalInputs,
    ThermalParams,
    ThermalState,
    ambient_c,
    step,
)

DT = 5.0


def run(
    params: ThermalParams,
    inputs: ThermalInputs,
    seconds: float,
    state: ThermalState | None = None,
) -> list[ThermalState]:
    state = state or ThermalState(air_c=inputs.setpoint_c, load_c=inputs.setpoint_c)
    out = [state]
    for _ in range(int(seconds / DT)):
        state = step(state, inputs, params, DT)
        out.append(state)
    return out


@pytest.mark.parametrize(
    ("params", "setpoint_c", "outside_c"),
    [
        (TRUCK_COMPARTMENT, -20.0, 35.0),
        (TRUCK_COMPARTMENT, 2.0, 35.0),
        (TRUCK_COMPARTMENT, 5.0, -10.0),  # winter: the unit heats
        (STORE_ZONE, -25.0, 30.0),
    ],
)
def test_closed_working_compartment_holds_setpoint_within_the_band(
    params: ThermalParams, setpoint_c: float, outside_c: float
) -> None:
    states = run(params, ThermalInputs(setpoint_c=setpoint_c, ambient_c=outside_c), 24 * 3600)
    half = params.hysteresis_k / 2
    airs = [s.air_c for s in states]
    # One Euler step of pull-down past the band edge is the most the thermostat can overshoot.
    assert min(airs) >= setpoint_c - half - 0.15
    assert max(airs) <= setpoint_c + half + 0.15
    modes = {s.mode for s in states}
    assert ("heating" in modes) == (outside_c < setpoint_c)
    # It really cycles: the air visits both halves of the band.
    assert min(airs) < setpoint_c - half / 2 and max(airs) > setpoint_c + half / 2
    assert abs(states[-1].load_c - setpoint_c) < half


def test_open_door_warms_air_fast_and_product_slowly() -> None:
    inputs = ThermalInputs(setpoint_c=2.0, ambient_c=30.0, door_open=True)
    states = run(TRUCK_COMPARTMENT, inputs, 25 * 60)
    after_1_min = states[int(60 / DT)].air_c - 2.0
    after_25_min = states[-1].air_c - 2.0
    # A rear door on a hot day: a few K in the first minute, most of the way to ambient in 25.
    assert 1.0 <= after_1_min <= 8.0
    assert 10.0 <= after_25_min <= 26.0
    assert 0.2 <= states[-1].load_c - 2.0 <= 2.0


def test_closing_the_door_recovers_the_setpoint() -> None:
    opened = run(TRUCK_COMPARTMENT, ThermalInputs(2.0, 30.0, door_open=True), 10 * 60)
    closed = run(TRUCK_COMPARTMENT, ThermalInputs(2.0, 30.0), 30 * 60, state=opened[-1])
    assert opened[-1].air_c > 10.0
    assert closed[-1].air_c <= 3.2


def test_failed_compressor_drifts_up_at_a_plausible_rate() -> None:
    inputs = ThermalInputs(setpoint_c=-20.0, ambient_c=30.0, cooling_fraction=0.0)
    states = run(TRUCK_COMPARTMENT, inputs, 3 * 3600)
    t_minutes = next(i for i, s in enumerate(states) if s.air_c > -18.0) * DT / 60
    assert 2.0 <= t_minutes <= 30.0
    # Loaded frozen box: the product gains roughly 0.3-2 K per hour, the air leads it by a few K.
    product_rise_per_h = (states[-1].load_c + 20.0) / 3.0
    assert 0.3 <= product_rise_per_h <= 2.0
    assert 2.0 <= states[-1].air_c - states[-1].load_c <= 12.0
    assert states[-1].mode == "cooling"  # the unit keeps trying; nothing comes out


def test_partial_failure_is_between_healthy_and_dead() -> None:
    def rise(frac: float) -> float:
        inputs = ThermalInputs(-20.0, 35.0, cooling_fraction=frac)
        return run(TRUCK_COMPARTMENT, inputs, 4 * 3600)[-1].air_c

    assert rise(1.0) < rise(0.3) < rise(0.0)


def test_power_off_stops_the_unit() -> None:
    states = run(TRUCK_COMPARTMENT, ThermalInputs(-20.0, 30.0, powered=False), 3600)
    assert all(s.mode == "off" for s in states[1:])
    assert states[-1].air_c > -17.0


def test_defrost_gives_a_short_rise_and_recovers() -> None:
    sp = -25.0
    settled = run(STORE_ZONE, ThermalInputs(sp, 28.0), 6 * 3600)[-1]
    defrost = run(STORE_ZONE, ThermalInputs(sp, 28.0, defrosting=True), 20 * 60, state=settled)
    after = run(STORE_ZONE, ThermalInputs(sp, 28.0), 45 * 60, state=defrost[-1])
    peak = max(s.air_c for s in defrost)
    assert 2.5 <= peak - sp <= 8.0
    assert all(s.mode == "defrost" for s in defrost[1:])
    assert after[-1].air_c <= sp + STORE_ZONE.hysteresis_k / 2 + 0.2
    # The product barely notices; that is why defrosts must not alarm.
    assert max(s.load_c for s in (*defrost, *after)) - settled.load_c < 0.5


def test_product_probe_lags_the_air_probe() -> None:
    start = ThermalState(air_c=2.0, load_c=2.0)
    params = replace(TRUCK_COMPARTMENT, cooling_w_at_0c=0.0)
    states = run(params, ThermalInputs(2.0, 12.0), 3600, state=start)

    def time_to(frac: float, attr: str) -> float:
        final = max(getattr(s, attr) for s in states)
        target = 2.0 + frac * (final - 2.0)
        return next(i for i, s in enumerate(states) if getattr(s, attr) >= target) * DT

    assert time_to(0.5, "air_c") < 1200  # air: minutes; product: hours
    assert all(s.load_c < s.air_c for s in states[1:])
    assert states[-1].air_c - 2.0 > 5 * (states[-1].load_c - 2.0)


def test_ambient_follows_the_time_of_day() -> None:
    temps = {h: ambient_c(h, 28.0, 5.0, 15.0) for h in range(24)}
    assert max(temps, key=lambda h: temps[h]) == 15
    assert min(temps, key=lambda h: temps[h]) == 3
    assert temps[15] == pytest.approx(33.0)


def test_product_probe_filters_a_door_spike_but_follows_a_warm_up() -> None:
    settled = ThermalState(air_c=2.0, load_c=2.0)
    spike = run(TRUCK_COMPARTMENT, ThermalInputs(2.0, 30.0, door_open=True), 5 * 60, settled)
    after = run(TRUCK_COMPARTMENT, ThermalInputs(2.0, 30.0), 20 * 60, state=spike[-1])
    air_peak = max(s.air_c for s in spike) - 2.0
    probe_peak = max((s.probe_c or 2.0) for s in (*spike, *after)) - 2.0
    assert air_peak > 4.0
    assert probe_peak < 0.35 * air_peak  # a 5 min door opening barely moves it

    # A compressor failure is another matter: within the hour the probe is well out of range.
    dead = run(TRUCK_COMPARTMENT, ThermalInputs(-20.0, 30.0, cooling_fraction=0.0), 3600)
    assert (dead[-1].probe_c or -20.0) > -18.0 > dead[-1].load_c


def test_product_probe_time_constant() -> None:
    params = replace(TRUCK_COMPARTMENT, air_capacity_j_per_k=1e12)  # hold the air still
    states = run(params, ThermalInputs(2.0, 30.0), 1800, ThermalState(air_c=12.0, load_c=2.0))
    # After one time constant a first-order lag has covered 63 % of the step.
    assert states[-1].probe_c == pytest.approx(2.0 + 10.0 * 0.632, abs=0.1)


def test_a_box_far_below_setpoint_is_heated_back_even_on_a_hot_day() -> None:
    # After a wrong setpoint is corrected: frozen lettuce, setpoint back to 2, 28 degC outside.
    cold = ThermalState(air_c=-18.0, load_c=-6.0)
    states = run(TRUCK_COMPARTMENT, ThermalInputs(2.0, 28.0), 2 * 3600, state=cold)
    assert "heating" in {s.mode for s in states}
    assert all(s.air_c >= 0.0 - 0.15 for s in states[len(states) // 2 :])
    assert states[-1].load_c > -6.0
