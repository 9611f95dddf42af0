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
    """Any probe outside [min_c, max_c]: open at once; first all-plausible sample closes.

    The only rule that reads the observation as reported (``c.raw``): the evaluator drops the
    implausible values from what every other rule sees (coldchain.rules.plausible).
    """

    __slots__ = ("hi", "lo")

    def __init__(self, spec: SensorFaultRule) -> None:
        super().__init__(spec.name, "sensor_fault", spec.severity, 0, temp_hold=True)
        self.lo = spec.min_c
        self.hi = spec.max_c

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        raw = c.raw
        super().step(c, obs if raw is None else raw, held, held_any)

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
    """A probe repeating the identical value for >= N samples and >= a duration, judged by role.

    * An air probe (anything but ``product``) follows the reefer's cycling: it is stuck once
      another probe of the compartment has changed value since it froze ("while others move");
      a sole probe is judged on its own.
    * A product probe is buffered (thermal mass), so a steady reading is normal. It is stuck only
      when the product must have moved since it froze: the compartment's air (mean of its air
      probes, held at most the gap limit) was more than ``product_move_c`` away from the frozen
      value for ``product_move_min`` in total, or - with no air reading held - the door was
      open or the unit defrosting that long (docs/rules.md, section 4.9).

    The first changed value of the stuck probe closes the excursion.
    """

    __slots__ = (
        "air",
        "air_ts",
        "count",
        "dur",
        "ev_air",
        "ev_state",
        "last",
        "move_c",
        "move_ms",
        "n",
        "sensor",
        "since",
    )

    def __init__(self, spec: SensorFaultRule) -> None:
        super().__init__(spec.name, "sensor_fault", spec.severity)
        self.n = spec.stuck_samples
        self.dur = round(spec.stuck_min * _MIN)
        self.move_c = spec.product_move_c
        self.move_ms = round(spec.product_move_min * _MIN)
        self.last: list[float | None] = []
        self.since: list[int] = []
        self.count: list[int] = []
        # Per probe: ms since it froze that the air was far from its value / that the door was
        # open or the unit defrosting with no air reading held (used for product probes only).
        self.ev_air: list[int] = []
        self.ev_state: list[int] = []
        self.air: float | None = None  # latest mean of the air probes
        self.air_ts = -1
        self.sensor = -1

    def _evidence(self, c: CompartmentEvaluator, t1: int, held_any: int) -> None:
        """Account ``[c.ts, t1)`` for every product probe with a frozen value."""
        t0 = c.ts
        air = self.air
        air_end = self.air_ts + c.cap if air is not None else -1
        air_span = (t1 if t1 < air_end else air_end) - t0
        state = held_any if air_span <= 0 and (c.door or c.defrost_since >= 0) else 0
        last = self.last
        for i in c.spec.product_idx:
            v = last[i]
            if v is None:
                continue
            if air_span > 0:
                assert air is not None
                if abs(air - v) > self.move_c:
                    self.ev_air[i] += air_span
            elif state:
                self.ev_state[i] += state

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        if not self.last:
            k = len(c.spec.sensor_ids)
            self.last = [None] * k
            self.since = [0] * k
            self.count = [0] * k
            self.ev_air = [0] * k
            self.ev_state = [0] * k
        if c.ts >= 0 and c.spec.product_idx:
            self._evidence(c, obs.ts, held_any)
        if obs.hi is None:
            return
        temps = obs.temps
        last = self.last
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
                self.ev_air[i] = 0
                self.ev_state[i] = 0
                if i == self.sensor:
                    self.sensor = -1
                    self._close(c, obs.ts)
        air_idx = c.spec.air_idx
        if air_idx:
            total = 0.0
            k = 0
            for i in air_idx:
                v = temps[i]
                if v is not None:
                    total += v
                    k += 1
            if k:
                self.air = total / k
                self.air_ts = obs.ts
        if candidate < 0 or self.tr is not None:
            return
        ts = obs.ts
        probes = c.spec.probes
        for i in range(candidate, len(temps)):
            if count[i] < self.n or ts - since[i] < self.dur:
                continue
            s = since[i]
            if probes[i] == "product":
                if self.ev_air[i] + self.ev_state[i] < self.move_ms:
                    continue
                why = self._why(i)
            else:
                if len(temps) > 1 and not any(
                    since[j] > s and last[j] is not None for j in range(len(temps)) if j != i
                ):
                    continue
                why = ""
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
                    f"sensor {sid} stuck at {last[i]:g} degC{why}",
                ),
            )
            return

    def _why(self, i: int) -> str:
        parts = []
        if self.ev_air[i]:
            parts.append(
                f"the air was more than {self.move_c:g} degC away for {self.ev_air[i] / _MIN:g} min"
            )
        if self.ev_state[i]:
            parts.append(
                f"the door was open or the unit defrosting for {self.ev_state[i] / _MIN:g} min"
            )
        return " although " + " and ".join(parts)

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = [self.last, self.since, self.count, self.sensor]
        d["ev"] = [self.ev_air, self.ev_state, self.air, self.air_ts]
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        last, since, count, self.sensor = d["s"]
        self.last = list(last)
        self.since = [int(x) for x in since]
        self.count = [int(x) for x in count]
        k = len(self.last)
        ev_air, ev_state, self.air, air_ts = d.get("ev", [[0] * k, [0] * k, None, -1])
        self.ev_air = [int(x) for x in ev_air]
        self.ev_state = [int(x) for x in ev_state]
        self.air_ts = int(air_ts)
