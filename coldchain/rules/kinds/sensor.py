"""Sensor faults: implausible value, probes of one kind disagreeing, stuck value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.kinds.door import DelayedCondition
from coldchain.rules.profiles import SensorFaultRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["DisagreeKind", "ImplausibleKind", "StuckKind"]

_MIN = 60_000.0


class ImplausibleKind(DelayedCondition):
    """Any probe outside [min_c, max_c]: open at once; first all-plausible sample closes."""

    __slots__ = ("hi", "lo")

    def __init__(self, spec: SensorFaultRule) -> None:
        super().__init__(spec.name, "sensor_fault", spec.severity, 0, temp_hold=True)
        self.lo = spec.min_c
        self.hi = spec.max_c

    def judge(self, obs: Observation) -> tuple[bool, float] | None:
        amax = obs.amax
        if amax is None:
            return None
        if amax > self.hi:
            return True, amax
        amin = obs.amin
        assert amin is not None
        if amin < self.lo:
            return True, amin
        return False, amax

    def describe(self, value: float) -> str:
        return f"implausible reading {value:g} degC (plausible {self.lo:g}..{self.hi:g})"


class DisagreeKind(DelayedCondition):
    """Probes of the same kind (air/air, product/product) differ by more than max_spread_c."""

    __slots__ = ("spread",)

    def __init__(self, spec: SensorFaultRule) -> None:
        super().__init__(
            spec.name, "sensor_fault", spec.severity, round(spec.delay_min * _MIN), temp_hold=True
        )
        self.spread = spec.max_spread_c

    def judge(self, obs: Observation) -> tuple[bool, float] | None:
        if obs.hi is None:
            return None
        return obs.spread > self.spread, obs.spread

    def describe(self, value: float) -> str:
        return f"probes disagree by {value:g} degC (> {self.spread:g})"


class StuckKind(Rule):
    """A probe repeating the identical value for >= N samples and >= a duration.

    When the compartment has other probes, at least one of them must have changed value since
    the suspect one froze ("while others move"); a sole probe is judged on its own. The first
    changed value of the stuck probe closes the excursion.
    """

    __slots__ = ("count", "dur", "last", "n", "sensor", "since")

    def __init__(self, spec: SensorFaultRule) -> None:
        super().__init__(spec.name, "sensor_fault", spec.severity)
        self.n = spec.stuck_samples
        self.dur = round(spec.stuck_min * _MIN)
        self.last: list[float | None] = []
        self.since: list[int] = []
        self.count: list[int] = []
        self.sensor = -1

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        if obs.hi is None:
            return
        temps = obs.temps
        last = self.last
        if not last:
            k = len(temps)
            self.last = last = [None] * k
            self.since = [0] * k
            self.count = [0] * k
        since = self.since
        count = self.count
        candidate = -1
        for i, v in enumerate(temps):
            if v is None:
                continue
            if v == last[i]:
                count[i] += 1
                if count[i] >= self.n and candidate < 0:
                    candidate = i
            else:
                last[i] = v
                since[i] = obs.ts
                count[i] = 1
                if i == self.sensor:
                    self.sensor = -1
                    self._close(c, obs.ts)
        if candidate < 0 or self.tr is not None:
            return
        ts = obs.ts
        for i in range(candidate, len(temps)):
            if count[i] < self.n or ts - since[i] < self.dur:
                continue
            s = since[i]
            if len(temps) > 1 and not any(
                since[j] > s and last[j] is not None for j in range(len(temps)) if j != i
            ):
                continue
            self.sensor = i
            sid = c.spec.sensor_ids[i]
            self._open(
                c,
                Track(
                    s,
                    self.severity,
                    c.now,
                    last[i],
                    0.0,
                    0.0,
                    f"sensor {sid} stuck at {last[i]:g} degC",
                ),
            )
            return

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = [self.last, self.since, self.count, self.sensor]
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        last, since, count, self.sensor = d["s"]
        self.last = list(last)
        self.since = [int(x) for x in since]
        self.count = [int(x) for x in count]
