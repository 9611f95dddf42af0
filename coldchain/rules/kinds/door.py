"""Door open too long, and the generic "condition held for >= delay" rules (setpoint).

Door: open continuously (door state held, capped at the gap limit) for longer than
``max_open_min`` - or ``loading_max_open_min`` while the vehicle is at a stop (slower than
3 km/h; a store is always "at a stop") - opens an excursion starting when the door opened; the
first sample with the door closed closes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.profiles import DoorRule, SetpointRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["DelayedCondition", "DoorKind", "SetpointKind"]

_MIN = 60_000.0


class DoorKind(Rule):
    __slots__ = ("limit", "loading", "since")

    def __init__(self, spec: DoorRule) -> None:
        super().__init__(spec.name, "door_open", spec.severity)
        self.limit = round(spec.max_open_min * _MIN)
        lo = spec.loading_max_open_min
        self.loading = self.limit if lo is None else round(lo * _MIN)
        self.since = -1

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        since = self.since
        if since >= 0 and self.tr is None and held_any > 0:
            limit = self.loading if c.stationary else self.limit
            if c.ts + held_any - since >= limit:
                self._open(
                    c,
                    Track(
                        since,
                        self.severity,
                        c.now,
                        detail=f"door open longer than {limit / _MIN:g} min",
                    ),
                )
        d = obs.door
        if d is None:
            return
        if d:
            if since < 0:
                self.since = obs.ts
        else:
            self.since = -1
            if self.tr is not None:
                self._close(c, obs.ts)

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = self.since
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        self.since = int(d["s"])


class DelayedCondition(Rule):
    """A bad condition held (capped) for >= ``delay`` ms opens; the first good sample closes.

    Subclasses implement ``judge(obs)``: None when ``obs`` does not report the value, else
    (bad, value). ``temp_hold`` picks the temperature hold (``held``) over the state hold.
    """

    __slots__ = ("bad", "delay", "run_ms", "run_start", "temp_hold", "val")

    def __init__(self, name: str, kind: Any, severity: Any, delay_ms: int, temp_hold: bool) -> None:
        super().__init__(name, kind, severity)
        self.delay = delay_ms
        self.temp_hold = temp_hold
        self.bad = False
        self.val = 0.0
        self.run_start = -1
        self.run_ms = 0

    def judge(self, obs: Observation) -> tuple[bool, float] | None:
        raise NotImplementedError

    def describe(self, value: float) -> str:
        return ""

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        h = held if self.temp_hold else held_any
        if self.bad and h > 0 and self.tr is None and self.run_start >= 0:
            self.run_ms += h
            if self.run_ms >= self.delay:
                self._open_now(c)
        j = self.judge(obs)
        if j is None:
            return
        bad, value = j
        self.bad = bad
        tr = self.tr
        if bad:
            self.val = value
            if tr is not None:
                return
            if self.run_start < 0:
                self.run_start = obs.ts
                self.run_ms = 0
            if self.run_ms >= self.delay:
                self._open_now(c)
        else:
            self.run_start = -1
            if tr is not None:
                self._close(c, obs.ts)

    def _open_now(self, c: CompartmentEvaluator) -> None:
        self._open(
            c,
            Track(
                self.run_start, self.severity, c.now, self.val, 0.0, 0.0, self.describe(self.val)
            ),
        )
        self.run_start = -1

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = [self.bad, self.val, self.run_start, self.run_ms]
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        self.bad, self.val, self.run_start, self.run_ms = d["s"]


class SetpointKind(DelayedCondition):
    __slots__ = ("hi", "lo")

    def __init__(self, spec: SetpointRule) -> None:
        super().__init__(
            spec.name, "setpoint", spec.severity, round(spec.delay_min * _MIN), temp_hold=False
        )
        self.lo = -1e9 if spec.min_c is None else spec.min_c
        self.hi = 1e9 if spec.max_c is None else spec.max_c

    def judge(self, obs: Observation) -> tuple[bool, float] | None:
        sp = obs.setpoint
        if sp is None:
            return None
        return (sp < self.lo or sp > self.hi), sp

    def describe(self, value: float) -> str:
        return f"setpoint {value:g} degC outside the profile's [{self.lo:g}, {self.hi:g}]"
