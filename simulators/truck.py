"""Reefer trucks: a trip planned from the route (speeds, arrivals, dwell), then the truck's
compartments, GPS and device simulated along it.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.asset import STEP_S, Action, AssetSim
from simulators.compartment import CompartmentSim
from simulators.routes import CITIES, GpsReceiver, LatLon, Route, road_path
from simulators.scenario import Scenario, TruckSpec
from simulators.thermal import TRUCK_COMPARTMENT
from simulators.truth import TruthRecorder

__all__ = ["TripPlan", "TruckSim", "plan_trip"]

_ACCEL_KMH_PER_S = 1.8  # ~0.5 m/s2, a loaded truck
_BRAKE_M_PER_S2 = 0.6
_URBAN_KM = 6.0
_URBAN_KMH = 40.0


@dataclass(frozen=True, slots=True)
class Leg:
    """Driving from stop ``index`` to stop ``index + 1``: a track sampled every STEP_S."""

    index: int
    route: Route
    t0_s: float
    t1_s: float
    s_km: tuple[float, ...]
    speed_kmh: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class TripPlan:
    origin: LatLon
    arrive_s: tuple[float, ...]  # per stop; stop 0's is 0
    depart_s: tuple[float, ...]  # per stop; inf for the last (parked at the end)
    legs: tuple[Leg, ...]

    def state_at(self, t_s: float) -> tuple[LatLon, float, float]:
        """True position, heading (deg) and speed (km/h) at t_s."""
        for leg in self.legs:
            if leg.t0_s <= t_s < leg.t1_s:
                k = (t_s - leg.t0_s) / STEP_S
                i = min(int(k), len(leg.s_km) - 2)
                f = k - i
                s = leg.s_km[i] + f * (leg.s_km[i + 1] - leg.s_km[i])
                v = leg.speed_kmh[i] + f * (leg.speed_kmh[i + 1] - leg.speed_kmh[i])
                pos, heading = leg.route.locate(s)
                return pos, heading, v
        stop = max(0, bisect.bisect_right(self.arrive_s, t_s) - 1)
        if stop == 0:
            return self.origin, 0.0, 0.0
        route = self.legs[stop - 1].route
        # Parked facing the way it came in.
        return route.points[-1], route.locate(route.length_km)[1], 0.0


def plan_trip(spec: TruckSpec, duration_s: float, rng: random.Random) -> TripPlan:
    """Drive the route in STEP_S steps: cruise with slow speed variation, city speeds near the
    ends, a braking curve into each stop. Stops after the scenario ends are never reached."""
    stops = spec.route.stops
    arrive = [0.0]
    depart = [spec.route.depart_s]
    legs: list[Leg] = []
    t = spec.route.depart_s
    for i in range(len(stops) - 1):
        if t >= duration_s:
            break
        route = Route(road_path(stops[i].city, stops[i + 1].city))
        s, v, x = 0.0, 0.0, 0.0
        s_list, v_list = [0.0], [0.0]
        t0 = t
        rho = math.exp(-STEP_S / 300.0)
        # Planning stops with the scenario: a scale run of a few minutes plans a few minutes.
        while route.length_km - s > 0.002 and t < duration_s + STEP_S:
            x = rho * x + rng.gauss(0.0, 0.08 * math.sqrt(1.0 - rho * rho))
            target = spec.route.cruise_speed_kmh * (1.0 + max(-0.35, min(0.12, x)))
            remaining_km = route.length_km - s
            if s < _URBAN_KM or remaining_km < _URBAN_KM:
                target = min(target, _URBAN_KMH)
            brake_kmh = 3.6 * math.sqrt(2.0 * _BRAKE_M_PER_S2 * remaining_km * 1000.0)
            target = max(4.0, min(target, brake_kmh))
            dv = max(-_ACCEL_KMH_PER_S * 2 * STEP_S, min(_ACCEL_KMH_PER_S * STEP_S, target - v))
            v_new = max(0.0, v + dv)
            s = min(route.length_km, s + (v + v_new) / 2.0 * STEP_S / 3600.0)
            v = v_new
            s_list.append(s)
            v_list.append(v)
            t += STEP_S
        v_list[-1] = 0.0
        legs.append(Leg(i, route, t0, t, tuple(s_list), tuple(v_list)))
        arrive.append(t)
        t += stops[i + 1].dwell_s
        depart.append(t)
    depart[-1] = math.inf
    return TripPlan(CITIES[stops[0].city], tuple(arrive), tuple(depart), tuple(legs))


class TruckSim(AssetSim):
    def __init__(
        self,
        spec: TruckSpec,
        scenario: Scenario,
        start: datetime,
        trip: TripPlan,
        actions: list[Action],
        truth: TruthRecorder,
        rng: random.Random,
    ) -> None:
        faults = scenario.faults_for(spec.id)
        comps = [
            CompartmentSim(c, TRUCK_COMPARTMENT, faults, scenario.duration_s, rng)
            for c in spec.compartments
        ]
        interval = spec.sample_interval_s or scenario.sample_interval_s
        super().__init__(
            spec.id, spec.device_id, scenario, start, interval, comps, actions, truth, rng
        )
        self.spec = spec
        self.trip = trip
        self.gps = GpsReceiver(random.Random(rng.random()))
        self._last_sample_s = 0.0
        self._battery_pct = 100.0

    def advance(self, t_s: float, dt_s: float) -> None:
        amb = self.ambient_c(t_s)
        powered = self.powered(t_s)
        for c in self.compartments:
            c.advance(t_s, dt_s, amb, powered, door_outside_c=c.door_outside_c(amb))

    def sample_body(self, t_s: float) -> dict[str, Any]:
        pos, heading, speed = self.trip.state_at(t_s)
        fix = self.gps.read(pos, max(1.0, t_s - self._last_sample_s))
        self._last_sample_s = t_s
        position: dict[str, Any] = {"fix": fix.fix}
        if fix.lat is not None:
            # A receiver reports its own speed and course; noisy at a crawl, steady at speed.
            noisy_speed = max(0.0, speed + self.rng.gauss(0.0, 0.5)) if speed > 0 else 0.0
            position.update(
                lat=fix.lat,
                lon=fix.lon,
                speed_kmh=round(noisy_speed, 1),
                heading_deg=round(heading, 1) % 360.0,
                hdop=fix.hdop,
            )
        temps: dict[str, float] = {}
        states: dict[str, Any] = {}
        for c in self.compartments:
            temps.update(c.read_probes(t_s))
            states[c.id] = c.report(t_s)
        return {
            "temps_c": temps,
            "position": position,
            "compartments": states,
            "power": {"source": "vehicle", "battery_pct": round(self._battery_pct, 1)},
            "signal_dbm": self.signal_dbm(t_s),
        }
