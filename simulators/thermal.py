"""Thermal model of a reefer compartment or cold-store zone. Pure functions, no state.

Two heat-carrying nodes: the air (plus the liner, racks and evaporator coil that exchange heat
with it within seconds) and the load (the product itself). Heat flows, in watts::

    ambient --wall_ua--> air <--load_ua--> load
    outside --door_ua--> air                         (only while the door is open)
    air --cooling_w--> evaporator                    (compressor running)
    heater --heating_w / defrost_heat_w--> air       (heating mode / defrost)

and each node integrates ``dT/dt = net_w / capacity_j_per_k``. The air probe reads the air. The
product probe is a buffered product-simulation probe (a sensor in a glycol bottle or between
cartons, as loggers use): a first-order lag of the air with ``product_probe_tau_s`` (tens of
minutes), so it filters the spikes of door openings and defrosts but follows a real warm-up,
while the bulk load itself moves over hours. docs/simulators.md argues each default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "STORE_ZONE",
    "TRUCK_COMPARTMENT",
    "ControlMode",
    "ThermalInputs",
    "ThermalParams",
    "ThermalState",
    "ambient_c",
    "cooling_capacity_w",
    "step",
]

ControlMode = Literal["cooling", "heating", "defrost", "null", "off"]


@dataclass(frozen=True, slots=True)
class ThermalParams:
    """Lumped parameters of one compartment. Defaults: a ~20 m3 reefer compartment, 1.5 t load."""

    # Air alone is ~25 kJ/K for 20 m3; the liner, racks and coil it touches add the rest.
    air_capacity_j_per_k: float = 200_000.0
    # ~1.5 t of food at ~3 kJ/(kg K).
    load_capacity_j_per_k: float = 4_500_000.0
    # ATP class IR bodies: K <= 0.4 W/(m2 K) over ~60 m2 of walls.
    wall_ua_w_per_k: float = 25.0
    # An open rear door exchanges ~0.2 m3/s of air: 1.2 kg/m3 * 1005 J/(kg K) * 0.2 m3/s.
    door_ua_w_per_k: float = 250.0
    # Forced air over stacked pallets.
    load_ua_w_per_k: float = 150.0
    # Net refrigeration at 0 degC box temperature; falls as the box gets colder.
    cooling_w_at_0c: float = 5_000.0
    heating_w: float = 1_500.0
    defrost_heat_w: float = 2_000.0
    # Full width of the thermostat's dead band: on at setpoint + band/2, off at setpoint - band/2.
    hysteresis_k: float = 2.0
    # Supply air leaves the evaporator this much colder than the return air while cooling.
    supply_delta_k: float = 5.0
    # Most reefer units stop their evaporator fans when a door switch opens.
    stops_on_door_open: bool = True
    # A 0.5 L glycol product-simulation probe in moving air responds in ~30 min.
    product_probe_tau_s: float = 1800.0


TRUCK_COMPARTMENT = ThermalParams()

# A ~400 m3 cold-store room with racked pallets, a strip-curtained door and a big evaporator.
STORE_ZONE = ThermalParams(
    air_capacity_j_per_k=2_000_000.0,
    load_capacity_j_per_k=60_000_000.0,
    wall_ua_w_per_k=150.0,
    door_ua_w_per_k=500.0,
    load_ua_w_per_k=2_000.0,
    cooling_w_at_0c=30_000.0,
    heating_w=6_000.0,
    defrost_heat_w=5_000.0,
    hysteresis_k=2.0,
    supply_delta_k=4.0,
    stops_on_door_open=False,
    product_probe_tau_s=2400.0,
)


@dataclass(frozen=True, slots=True)
class ThermalState:
    air_c: float
    load_c: float
    # The product probe's own temperature; None starts it at the load's.
    probe_c: float | None = None
    # The thermostat's memory: which side of the dead band it is working from.
    mode: ControlMode = "null"


@dataclass(frozen=True, slots=True)
class ThermalInputs:
    """What acts on a compartment during one step."""

    setpoint_c: float
    ambient_c: float
    door_open: bool = False
    # Air on the other side of the door: outdoors for trucks, the ante-room for a store zone.
    door_outside_c: float | None = None
    # 1.0 healthy, 0.0 a dead compressor (or no power), in between a weak one.
    cooling_fraction: float = 1.0
    powered: bool = True
    defrosting: bool = False


def cooling_capacity_w(params: ThermalParams, box_c: float) -> float:
    """Refrigeration falls ~1.5 %/K as suction pressure drops: ~70 % at -20 degC."""
    return params.cooling_w_at_0c * max(0.2, 1.0 + 0.015 * box_c)


def ambient_c(
    hour_local: float, mean_c: float, amplitude_c: float, peak_hour_local: float = 15.0
) -> float:
    """Diurnal cycle: warmest mid-afternoon, coolest before dawn (a cosine is close enough)."""
    return mean_c + amplitude_c * math.cos(2.0 * math.pi * (hour_local - peak_hour_local) / 24.0)


def _control(state: ThermalState, inputs: ThermalInputs, params: ThermalParams) -> ControlMode:
    """On/off thermostat with a dead band: cools against a warm ambient, heats against cold."""
    if not inputs.powered:
        return "off"
    if inputs.defrosting:
        return "defrost"
    half = params.hysteresis_k / 2.0
    air, sp = state.air_c, inputs.setpoint_c
    if inputs.ambient_c >= sp:
        if air >= sp + half:
            return "cooling"
        # A box far below its setpoint (a too-cold load, a corrected wrong setpoint) is heated
        # back to the band; normal cycling never reaches a whole band below setpoint.
        if air <= sp - 2 * half or (state.mode == "heating" and air < sp):
            return "heating"
        if air <= sp - half:
            return "null"
        return "cooling" if state.mode == "cooling" else "null"
    if air <= sp - half:
        return "heating"
    if air >= sp + half:
        return "null"
    return "heating" if state.mode == "heating" else "null"


def step(
    state: ThermalState, inputs: ThermalInputs, params: ThermalParams, dt_s: float
) -> ThermalState:
    """Advance one explicit-Euler step. Stable while dt_s << capacity/ua (minutes); use ~5 s."""
    mode = _control(state, inputs, params)
    air, load = state.air_c, state.load_c
    q_air = params.wall_ua_w_per_k * (inputs.ambient_c - air)
    q_air += params.load_ua_w_per_k * (load - air)
    if inputs.door_open:
        outside = inputs.ambient_c if inputs.door_outside_c is None else inputs.door_outside_c
        q_air += params.door_ua_w_per_k * (outside - air)
    unit_running = not (inputs.door_open and params.stops_on_door_open)
    if unit_running:
        if mode == "cooling":
            q_air -= cooling_capacity_w(params, air) * max(0.0, inputs.cooling_fraction)
        elif mode == "heating":
            q_air += params.heating_w
        elif mode == "defrost":
            q_air += params.defrost_heat_w
    q_load = params.load_ua_w_per_k * (air - load)
    probe = load if state.probe_c is None else state.probe_c
    # Exact for a constant air temperature over the step, so any tau is stable.
    probe += (air - probe) * (1.0 - math.exp(-dt_s / params.product_probe_tau_s))
    return ThermalState(
        air_c=air + q_air * dt_s / params.air_capacity_j_per_k,
        load_c=load + q_load * dt_s / params.load_capacity_j_per_k,
        probe_c=probe,
        mode=mode,
    )
