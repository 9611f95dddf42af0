"""One simulated compartment or zone: its thermal state, thermostat, probes and the faults on it.

Shared by trucks and stores. The owner advances it in small steps and reads it at sample times.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from simulators.scenario import CompartmentSpec, Fault
from simulators.thermal import ThermalInputs, ThermalParams, ThermalState, step

__all__ = ["DOCK_AIR_C", "CompartmentSim", "defrost_windows"]

# Refrigerated loading docks in food logistics are held around +10 degC.
DOCK_AIR_C = 10.0

# Logger resolution; real probes report tenths of a degree.
_RESOLUTION_C = 0.1
_NOISE_C = 0.06
_BIAS_C = 0.15


def defrost_windows(spec: CompartmentSpec, duration_s: float) -> list[tuple[float, float]]:
    """Timed defrosts, (start_s, end_s), as a controller's defrost timer schedules them."""
    d = spec.defrost
    if d is None:
        return []
    out: list[tuple[float, float]] = []
    t = d.first_s
    while t < duration_s:
        out.append((t, t + d.duration_s))
        t += d.interval_s
    return out


class CompartmentSim:
    def __init__(
        self,
        spec: CompartmentSpec,
        base: ThermalParams,
        faults: tuple[Fault, ...],
        duration_s: float,
        rng: random.Random,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        overrides = {k: v for k, v in spec.thermal.model_dump().items() if v is not None}
        self.params = replace(base, **overrides)
        sp = self._setpoint_c = spec.effective_setpoint_c
        # Start settled: pre-cooled box and product, as a driver or store manager would.
        self.state = ThermalState(air_c=sp, load_c=sp, mode="null")
        self._doors_open = 0
        self._doors_open_undocked = 0
        self._faults = [f for f in faults if f.compartment in (None, spec.id)]
        self._defrosts = defrost_windows(spec, duration_s)
        self._sensors = [(spec.sensor_id(p), p) for p in spec.probes]
        self._bias = {sid: rng.gauss(0.0, _BIAS_C) for sid, _ in self._sensors}
        self._rng = rng
        self._last_reading: dict[str, float] = {}

    @property
    def door_open(self) -> bool:
        return self._doors_open > 0

    def open_door(self, opens: bool, docked: bool) -> None:
        """Doors nest: a fault door inside a stop's door window keeps it open past the stop."""
        delta = 1 if opens else -1
        self._doors_open = max(0, self._doors_open + delta)
        if not docked:
            self._doors_open_undocked = max(0, self._doors_open_undocked + delta)

    def door_outside_c(self, outdoor_c: float) -> float:
        """A truck door at a refrigerated dock opens onto dock air, otherwise onto the yard."""
        return outdoor_c if self._doors_open_undocked > 0 else DOCK_AIR_C

    def _active(self, kind: str, t_s: float) -> list[Fault]:
        if not self._faults:  # the common case, and scale mode's hot path
            return []
        return [f for f in self._faults if f.kind == kind and f.active(t_s)]

    def setpoint_c(self, t_s: float) -> float:
        wrong = self._active("wrong_setpoint", t_s)
        if wrong and wrong[-1].setpoint_c is not None:
            return wrong[-1].setpoint_c
        return self._setpoint_c

    def cooling_fraction(self, t_s: float) -> float:
        failed = self._active("compressor_failure", t_s)
        return min((f.capacity_fraction for f in failed), default=1.0)

    def alarm_code(self, t_s: float) -> int:
        for f in self._active("compressor_failure", t_s):
            if f.alarm_code is not None:
                return f.alarm_code
        return 0

    def defrosting(self, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self._defrosts)

    def advance(
        self,
        t_s: float,
        dt_s: float,
        ambient_c: float,
        powered: bool,
        door_outside_c: float | None = None,
    ) -> None:
        inputs = ThermalInputs(
            setpoint_c=self.setpoint_c(t_s),
            ambient_c=ambient_c,
            door_open=self.door_open,
            door_outside_c=door_outside_c,
            cooling_fraction=self.cooling_fraction(t_s),
            powered=powered,
            defrosting=self.defrosting(t_s),
        )
        self.state = step(self.state, inputs, self.params, dt_s)

    @property
    def probe_c(self) -> float:
        """True temperature at the product probe (before bias, noise and faults)."""
        p = self.state.probe_c
        return self.state.load_c if p is None else p

    def true_temps(self) -> tuple[float, float, float]:
        """(air, product probe, bulk load)."""
        return self.state.air_c, self.probe_c, self.state.load_c

    def read_probes(self, t_s: float) -> dict[str, float]:
        """What the probes report: bias + noise at logger resolution, stuck or missing if faulty."""
        out: dict[str, float] = {}
        for sid, probe in self._sensors:
            if any(f.sensor == sid for f in self._active("sensor_dead", t_s)):
                continue
            stuck = [f for f in self._active("sensor_stuck", t_s) if f.sensor == sid]
            if stuck:
                value = stuck[0].value_c
                if value is None:
                    value = self._last_reading.get(sid, self.spec.effective_setpoint_c)
                out[sid] = value
                continue
            true_c = self.state.air_c if probe == "air" else self.probe_c
            noisy = true_c + self._bias[sid] + self._rng.gauss(0.0, _NOISE_C)
            value = round(round(noisy / _RESOLUTION_C) * _RESOLUTION_C, 1)
            self._last_reading[sid] = value
            out[sid] = value
        return out

    def report(self, t_s: float) -> dict[str, Any]:
        """The reefer controller's view: door, setpoint, mode, supply/return air, alarm."""
        mode = self.state.mode
        air = self.state.air_c
        running = not (self.door_open and self.params.stops_on_door_open)
        if mode == "cooling" and running:
            supply = air - self.params.supply_delta_k * max(0.1, self.cooling_fraction(t_s))
        elif mode in ("heating", "defrost") and running:
            supply = air + 3.0
        else:
            supply = air
        return {
            "door_open": self.door_open,
            "setpoint_c": round(self.setpoint_c(t_s), 1),
            "mode": mode,
            "supply_air_c": round(supply, 1),
            "return_air_c": round(air, 1),
            "alarm_code": self.alarm_code(t_s),
        }
