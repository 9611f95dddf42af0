"""The time loop every simulated asset shares: scheduled actions, physics steps, samples.

At each instant the loop first applies the actions due (doors, custody scans, alarms: each
published as an event at its exact time), then takes the sample due, then integrates the
physics up to the next instant of interest (at most ``STEP_S`` ahead).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulators.compartment import CompartmentSim
from simulators.device import Device, SimMessage
from simulators.scenario import Scenario
from simulators.thermal import ambient_c
from simulators.truth import TruthRecorder

__all__ = ["STEP_S", "Action", "AssetSim"]

# Physics step: the fastest time constant (open door, ~6 min) is ~70 steps; thermostat overshoot
# past the band edge is one step of pull-down, ~0.07 K.
STEP_S = 5.0


@dataclass(frozen=True, slots=True, order=True)
class Action:
    t_s: float
    order: int
    # (compartment_id, opens, at_a_dock) for a door; the event body to publish, if any.
    door: tuple[str, bool, bool] | None = field(default=None, compare=False)
    event: dict[str, Any] | None = field(default=None, compare=False)


class AssetSim:
    """Base of TruckSim and StoreSim: owns a Device and the compartments, yields messages."""

    def __init__(
        self,
        asset_id: str,
        device_id: str,
        scenario: Scenario,
        start: datetime,
        interval_s: float,
        compartments: list[CompartmentSim],
        actions: list[Action],
        truth: TruthRecorder,
        rng: random.Random,
    ) -> None:
        self.asset_id = asset_id
        self.scenario = scenario
        self.start = start
        self.interval_s = interval_s
        self.compartments = compartments
        self.truth = truth
        self.rng = rng
        self._actions = list(actions)
        heapq.heapify(self._actions)
        faults = scenario.faults_for(asset_id)
        self.device = Device(
            device_id, start, scenario.duration_s, faults, rng, status=scenario.status_messages
        )
        self.power_cuts = [f for f in faults if f.kind == "power_cut"]
        # Devices are not synchronised: each starts sampling at its own phase.
        self.phase_s = math.floor(rng.uniform(0.0, min(interval_s, 60.0)) * 10.0) / 10.0
        self._start_hour_utc = start.hour + start.minute / 60.0 + start.second / 3600.0

    def hour_local(self, t_s: float) -> float:
        return (self._start_hour_utc + self.scenario.utc_offset_h + t_s / 3600.0) % 24.0

    def ambient_c(self, t_s: float) -> float:
        a = self.scenario.ambient
        return ambient_c(self.hour_local(t_s), a.mean_c, a.amplitude_c, a.peak_hour_local)

    def powered(self, t_s: float) -> bool:
        return not any(f.active(t_s) for f in self.power_cuts)

    # Hooks for subclasses.
    def advance(self, t_s: float, dt_s: float) -> None:
        raise NotImplementedError

    def sample_body(self, t_s: float) -> dict[str, Any]:
        raise NotImplementedError

    def _apply(self, action: Action) -> list[SimMessage]:
        if action.door is not None:
            comp_id, opens, docked = action.door
            for c in self.compartments:
                if c.id == comp_id:
                    c.open_door(opens, docked)
            if not self.scenario.door_events:
                return []
        if action.event is None:
            return []
        return self.device.event(action.t_s, action.event)

    def _record_truth(self, t_s: float) -> None:
        for c in self.compartments:
            air, probe, load = c.true_temps()
            self.truth.temperature(self.asset_id, c.id, t_s, air, probe, load, c.setpoint_c(t_s))

    def messages(self) -> Iterator[SimMessage]:
        duration = self.scenario.duration_s
        t = 0.0
        next_sample = self.phase_s
        while t < duration:
            while self._actions and self._actions[0].t_s <= t:
                yield from self._apply(heapq.heappop(self._actions))
            if next_sample <= t:
                self._record_truth(t)
                yield from self.device.sample(t, self.sample_body(t))
                next_sample += self.interval_s
            t_next = min(t + STEP_S, next_sample, duration)
            if self._actions:
                t_next = min(t_next, self._actions[0].t_s)
            if t_next > t:
                self.advance(t, t_next - t)
            t = t_next
        yield from self.device.finish()
        self.truth.device(self.asset_id, self.device.device_id, self.device.counters)

    def signal_dbm(self, t_s: float) -> int:
        if self.device.offline(t_s):
            return -120
        return max(-115, min(-51, round(self.rng.gauss(-78.0, 7.0))))
