"""Cumulative time beyond a threshold against a budget (e.g. WHO: >= 30 degC for 10 h in total).

The budget is spent by held time beyond the threshold; it resets at each window boundary
(``window_h``, aligned to the epoch so streaming and batch agree) or, without a window, at a
custody change (an observation with ``custody=True``). Once spent, an excursion opens at the exact
instant the budget ran out and stays open while the value stays beyond the threshold; each later
run beyond it in the same period opens a new excursion at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.profiles import CumulativeRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["CumulativeKind"]

_MIN = 60_000.0


class CumulativeKind(Rule):
    limits = True
    __slots__ = (
        "above",
        "budget",
        "incl",
        "out",
        "over",
        "period",
        "thr",
        "used",
        "val",
        "window",
    )

    def __init__(self, spec: CumulativeRule) -> None:
        super().__init__(spec.name, "cumulative", spec.severity)
        self.above = spec.above_c is not None
        thr = spec.above_c if spec.above_c is not None else spec.below_c
        assert thr is not None
        self.thr = thr
        self.incl = spec.inclusive
        self.budget = round(spec.budget_min * _MIN)
        self.window = 0 if spec.window_h is None else round(spec.window_h * 3_600_000)
        self.out = False
        self.over = 0.0
        self.val = 0.0
        self.used = 0
        self.period = -1

    def _spend(self, c: CompartmentEvaluator, t0: int, part: int) -> None:
        tr = self.tr
        if tr is not None:
            tr.dm += self.over * part / _MIN
            tr.oor += part
            return
        self.used += part
        if self.used >= self.budget:
            excess = self.used - self.budget
            tr = Track(
                t0 + part - excess,
                self.severity,
                c.now,
                self.val,
                self.over,
                self.over * excess / _MIN,
                f"budget of {self.budget / _MIN:g} min beyond {self.thr:g} degC used up",
            )
            tr.oor = excess
            self._open(c, tr)

    def _reset(self, c: CompartmentEvaluator, at: int) -> None:
        self._close(c, at)
        self.used = 0

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        w = self.window
        if held > 0 and self.out:
            t0 = c.ts
            if w:
                boundary = (t0 // w + 1) * w
                while t0 + held > boundary:
                    part = boundary - t0
                    self._spend(c, t0, part)
                    self._reset(c, boundary)
                    self.period = boundary // w
                    t0 = boundary
                    held -= part
                    boundary += w
            self._spend(c, t0, held)
        if w:
            p = obs.ts // w
            if p != self.period:
                if self.period >= 0:
                    self._reset(c, p * w)
                self.period = p
        if obs.custody:
            self._reset(c, obs.ts)
        v = obs.hi if self.above else obs.lo
        if v is None:
            return
        if self.above:
            out = v > self.thr or (self.incl and v == self.thr)
        else:
            out = v < self.thr or (self.incl and v == self.thr)
        self.out = out
        tr = self.tr
        if out:
            self.over = abs(v - self.thr)
            self.val = v
            if tr is not None:
                if self.over > tr.over:
                    tr.over = self.over
                    tr.peak = v
            elif self.used >= self.budget:
                self._open(
                    c,
                    Track(obs.ts, self.severity, c.now, v, self.over, 0.0, "budget already used"),
                )
        elif tr is not None:
            tr.ret = obs.ts
            self._close(c, obs.ts)

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = [self.out, self.over, self.val, self.used, self.period]
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        self.out, self.over, self.val, self.used, self.period = d["s"]
