"""Range rule (delay, clear delay, hysteresis, escalation, defrost/door) and hard limit.

A hard limit is a range rule with no delay, severity critical and no escalation (it closes with
a clear delay and hysteresis like a range, so a value dithering at the limit is one episode);
the WHO "single event" indicators are one-sided range rules with ``inclusive: true``.

Every excursion also records the time actually out of range and the last return within the
limits (``Track.oor`` / ``Track.ret``), independent of the alarm's delays. The door allowance
only holds back the live alarm: a door-at-a-stop run that ends after ``delay_min`` but before
``delay_min + door_extra_delay_min`` is recorded when it ends (docs/rules.md, section 4.1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from coldchain.rules.excursion import RuleKind, Severity
from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.profiles import HardLimitRule, RangeRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["RangeKind"]

_UNKNOWN, _IN, _BAND, _OUT = 0, 1, 2, 3
_INF = math.inf
_MIN = 60_000.0


class RangeKind(Rule):
    limits = True
    __slots__ = (
        "clear",
        "clr_ms",
        "clr_start",
        "cond",
        "delay",
        "door_extra",
        "esc_after",
        "esc_dm",
        "esc_peak",
        "hi",
        "hi_incl",
        "hyst",
        "lo",
        "lo_incl",
        "over",
        "run_dm",
        "run_door",
        "run_ms",
        "run_oor",
        "run_over",
        "run_peak",
        "run_start",
        "supp",
        "val",
    )

    def __init__(self, spec: RangeRule | HardLimitRule) -> None:
        kind: RuleKind = "range" if spec.kind == "range" else "hard_limit"
        severity: Severity = spec.severity
        super().__init__(spec.name, kind, severity)
        self.lo = -_INF if spec.min_c is None else spec.min_c
        self.hi = _INF if spec.max_c is None else spec.max_c
        self.lo_incl = spec.inclusive and spec.min_c is not None
        self.hi_incl = spec.inclusive and spec.max_c is not None
        self.clear = round(spec.clear_delay_min * _MIN)
        if isinstance(spec, RangeRule):
            self.delay = round(spec.delay_min * _MIN)
            self.hyst = spec.hysteresis_c
            esc = spec.escalate
            self.esc_after = (
                -1 if esc is None or esc.after_min is None else round(esc.after_min * _MIN)
            )
            self.esc_dm = _INF if esc is None or esc.degree_minutes is None else esc.degree_minutes
            self.esc_peak = _INF if esc is None or esc.peak_beyond_c is None else esc.peak_beyond_c
            self.supp = round(spec.defrost_suppress_min * _MIN)
            self.door_extra = round(spec.door_extra_delay_min * _MIN)
        else:
            self.delay = 0
            self.hyst = spec.hysteresis_c
            self.esc_after = -1
            self.esc_dm = _INF
            self.esc_peak = _INF
            self.supp = 0
            self.door_extra = 0
        self.cond = _UNKNOWN
        self.over = 0.0
        self.val = 0.0
        self.run_start = -1
        self.run_ms = 0
        self.run_oor = 0  # known ms beyond the limits in the run (defrost time included)
        self.run_dm = 0.0
        self.run_peak = 0.0
        self.run_over = 0.0
        self.run_door = False
        self.clr_start = -1
        self.clr_ms = 0

    def _check_escalation(self, c: CompartmentEvaluator, tr: Track, at: int) -> None:
        if tr.severity != "critical" and (
            (self.esc_after >= 0 and at - tr.start >= self.esc_after)
            or tr.dm >= self.esc_dm
            or tr.over >= self.esc_peak
        ):
            self._escalate(c, tr)

    def _run_track(self, c: CompartmentEvaluator, detail: str) -> Track:
        tr = Track(self.run_start, self.severity, c.now, self.run_peak, self.run_over, self.run_dm)
        tr.detail = detail
        tr.oor = self.run_oor
        self.run_start = -1
        return tr

    def _open_run(self, c: CompartmentEvaluator, at: int) -> None:
        detail = ""
        if self.run_door:
            detail = f"door open at a stop: delay extended by {self.door_extra / _MIN:g} min"
        tr = self._run_track(c, detail)
        self._open(c, tr)
        self.clr_start = -1
        self.clr_ms = 0
        self._check_escalation(c, tr, at)

    def _record_held_back(self, c: CompartmentEvaluator, at: int) -> None:
        """A door-at-a-stop run outside for at least ``delay_min`` ended (at ``at``, back within
        the limits) before the door allowance ran out: no live alarm was raised, but it was an
        excursion by the rule, so it is reported now as one ``closed`` change."""
        tr = self._run_track(
            c,
            f"door open at a stop: the door allowance ({self.door_extra / _MIN:g} min) held back"
            " the live alarm",
        )
        tr.ret = at
        self._open(c, tr)
        self._check_escalation(c, tr, at)
        self._close(c, at)

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        # 1. advance over [c.ts, c.ts + held) with the held condition
        cond = self.cond
        if held > 0 and cond != _UNKNOWN:
            t0 = c.ts
            if cond == _OUT:  # actually out of range, whatever the defrost makes of the delay
                if self.tr is not None:
                    self.tr.oor += held
                else:
                    self.run_oor += held
            if self.supp and c.defrost_since >= 0:
                sup = c.defrost_since + self.supp - t0
                if sup > 0:
                    if sup >= held:
                        held = 0
                    else:
                        held -= sup
                        t0 += sup
            if held > 0:
                tr = self.tr
                if cond == _OUT:
                    dm = self.over * held / _MIN
                    if tr is not None:
                        tr.dm += dm
                        self._check_escalation(c, tr, t0 + held)
                    else:
                        self.run_ms += held
                        self.run_dm += dm
                        delay = self.delay + self.door_extra if self.run_door else self.delay
                        if self.run_ms >= delay:
                            self._open_run(c, t0 + held)
                elif cond == _IN and tr is not None:
                    self.clr_ms += held
                    if self.clr_ms >= self.clear:
                        self._close(c, self.clr_start)
        # 2. observe the new value
        h = obs.hi
        if h is None:
            return
        lo_v = obs.lo
        assert lo_v is not None
        if h > self.hi or (self.hi_incl and h == self.hi):
            cond = _OUT
            self.over = h - self.hi
            self.val = h
        elif lo_v < self.lo or (self.lo_incl and lo_v == self.lo):
            cond = _OUT
            self.over = self.lo - lo_v
            self.val = lo_v
        elif h > self.hi - self.hyst or lo_v < self.lo + self.hyst:
            cond = _BAND
        else:
            cond = _IN
        self.cond = cond
        tr = self.tr
        if cond == _OUT:
            if tr is not None:
                tr.ret = -1
                self.clr_start = -1
                self.clr_ms = 0
                if self.over > tr.over:
                    tr.over = self.over
                    tr.peak = self.val
                    self._check_escalation(c, tr, obs.ts)
                return
            if self.run_start < 0:
                self.run_start = obs.ts
                self.run_ms = 0
                self.run_oor = 0
                self.run_dm = 0.0
                self.run_peak = self.val
                self.run_over = self.over
                self.run_door = False
            elif self.over > self.run_over:
                self.run_over = self.over
                self.run_peak = self.val
            if self.door_extra and (obs.door if obs.door is not None else c.door):
                stop = obs.stationary if obs.stationary is not None else c.stationary
                if stop:  # a door opened at a (loading) stop, not a door ajar while driving
                    self.run_door = True
            if self.run_ms >= (self.delay + self.door_extra if self.run_door else self.delay):
                self._open_run(c, obs.ts)
        elif tr is not None:
            if tr.ret < 0:  # back within the limits (in the hysteresis band or inside)
                tr.ret = obs.ts
            if cond == _IN:
                if self.clr_start < 0:
                    self.clr_start = obs.ts
                    self.clr_ms = 0
                if self.clr_ms >= self.clear:
                    self._close(c, self.clr_start)
            else:
                self.clr_start = -1
                self.clr_ms = 0
        elif self.run_start >= 0:
            if self.run_door and self.run_ms >= self.delay:
                self._record_held_back(c, obs.ts)
            self.run_start = -1

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = [
            self.cond,
            self.over,
            self.val,
            self.run_start,
            self.run_ms,
            self.run_dm,
            self.run_peak,
            self.run_over,
            self.run_door,
            self.clr_start,
            self.clr_ms,
            self.run_oor,
        ]
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        st = d["s"]
        self.run_oor = int(st[11]) if len(st) > 11 else 0  # checkpoints before issue 9
        (
            self.cond,
            self.over,
            self.val,
            self.run_start,
            self.run_ms,
            self.run_dm,
            self.run_peak,
            self.run_over,
            self.run_door,
            self.clr_start,
            self.clr_ms,
        ) = st[:11]
