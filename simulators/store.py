"""Cold stores: zones (frozen, chilled, ante-room) behind one gateway device, forklift door
traffic in working hours, timed defrosts, mains power that can fail.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from simulators.asset import Action, AssetSim
from simulators.compartment import CompartmentSim
from simulators.scenario import Scenario, StoreSpec
from simulators.thermal import STORE_ZONE
from simulators.truth import TruthRecorder

__all__ = ["StoreSim", "door_traffic"]


def door_traffic(
    spec: StoreSpec,
    duration_s: float,
    start_hour_local: float,
    rng: random.Random,
) -> list[tuple[str, float, float]]:
    """(zone_id, open_s, close_s) of forklift passages: Poisson in working hours, 15-90 s each."""
    out: list[tuple[str, float, float]] = []
    open_h, close_h = spec.working_hours_local
    for zone in spec.zones:
        rate_per_s = zone.door_traffic_per_h / 3600.0
        if rate_per_s <= 0:
            continue
        t = rng.expovariate(rate_per_s)
        while t < duration_s:
            hour = (start_hour_local + t / 3600.0) % 24.0
            held = rng.uniform(15.0, 90.0)
            if open_h <= hour < close_h and t + held < duration_s:
                out.append((zone.id, t, t + held))
                t += held
            t += rng.expovariate(rate_per_s)
    return out


class StoreSim(AssetSim):
    def __init__(
        self,
        spec: StoreSpec,
        scenario: Scenario,
        start: datetime,
        actions: list[Action],
        truth: TruthRecorder,
        rng: random.Random,
    ) -> None:
        faults = scenario.faults_for(spec.id)
        zones = [
            CompartmentSim(z, STORE_ZONE, faults, scenario.duration_s, rng) for z in spec.zones
        ]
        interval = spec.sample_interval_s or scenario.sample_interval_s
        super().__init__(
            spec.id, spec.device_id, scenario, start, interval, zones, actions, truth, rng
        )
        self.spec = spec
        kinds = {z.id: z.kind for z in spec.zones}
        # The ante-room is integrated first: the other zones' doors open into it.
        self._ante = [c for c in zones if kinds[c.id] == "ante_room"]
        self._inner = [c for c in zones if kinds[c.id] != "ante_room"]
        self._battery_pct = 100.0

    def advance(self, t_s: float, dt_s: float) -> None:
        amb = self.ambient_c(t_s)
        powered = self.powered(t_s)
        for c in self._ante:
            c.advance(t_s, dt_s, amb, powered)
        dock_c = self._ante[0].state.air_c if self._ante else amb
        for c in self._inner:
            # Walls face the building (near ambient); the door faces the ante-room or dock.
            c.advance(t_s, dt_s, amb, powered, door_outside_c=dock_c)
        # A UPS keeps the gateway alive through a cut: ~8 h of battery.
        if powered:
            self._battery_pct = min(100.0, self._battery_pct + dt_s / 3600.0 * 25.0)
        else:
            self._battery_pct = max(0.0, self._battery_pct - dt_s / 3600.0 * 12.0)

    def sample_body(self, t_s: float) -> dict[str, Any]:
        temps: dict[str, float] = {}
        states: dict[str, Any] = {}
        for c in self.compartments:
            temps.update(c.read_probes(t_s))
            states[c.id] = c.report(t_s)
        powered = self.powered(t_s)
        return {
            "temps_c": temps,
            "compartments": states,
            "power": {
                "source": "mains" if powered else "battery",
                "battery_pct": round(self._battery_pct, 1),
            },
            "signal_dbm": self.signal_dbm(t_s),
        }
