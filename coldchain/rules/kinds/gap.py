"""Data gap: no temperature recording for longer than the allowed interval.

The allowed interval ``cap`` is the profile's ``transport_min`` on a vehicle and ``storage_min``
in a store; it is also the sample-and-hold cap. With the last recording at ``t_last``, the gap
starts at ``t_last + cap`` (where the held value expires) and ends at the next recording.
In streaming, ``tick(now)`` opens the gap while it lasts; when data resumes it is closed, or
"recovered" if a backlog shows the recording was in fact continuous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.profiles import DataGapRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["GapKind", "gap_cap_ms"]

_MIN = 60_000.0


def gap_cap_ms(spec: DataGapRule | None, asset_kind: str) -> int:
    """The allowed interval (and hold cap) in ms: 10 min in transport, 30 in storage by default."""
    if spec is None:
        return 600_000 if asset_kind == "vehicle" else 1_800_000
    minutes = spec.transport_min if asset_kind == "vehicle" else spec.storage_min
    return round(minutes * _MIN)


class GapKind(Rule):
    __slots__ = ("esc",)

    def __init__(self, spec: DataGapRule) -> None:
        super().__init__(spec.name, "data_gap", spec.severity)
        self.esc = -1 if spec.escalate_after_min is None else round(spec.escalate_after_min * _MIN)

    def _detail(self, c: CompartmentEvaluator) -> str:
        return f"no recording after {c.last_temp_ts} for more than {c.cap / _MIN:g} min"

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        if obs.hi is None:
            return
        last = c.last_temp_ts
        if last < 0:
            return
        tr = self.tr
        if obs.ts - last > c.cap:
            start = last + c.cap
            if tr is None:
                tr = Track(start, self.severity, c.now, detail=self._detail(c))
                self._open(c, tr)
            if self.esc >= 0 and obs.ts - start >= self.esc:
                self._escalate(c, tr)
            self._close(c, obs.ts)
        elif tr is not None:
            # tick() opened it on the wall clock, but the recording turns out continuous (a
            # backlog arrived): the gap is withdrawn, zero-length at its would-be start.
            self.tr = None
            c.emit("recovered", self, tr, "recovered", max(obs.ts, tr.start))

    def tick(self, c: CompartmentEvaluator, now_ms: int) -> None:
        last = c.last_temp_ts
        if last < 0 or now_ms - last <= c.cap:
            return
        tr = self.tr
        if tr is None:
            tr = Track(last + c.cap, self.severity, now_ms, detail=self._detail(c))
            self._open(c, tr)
        if self.esc >= 0 and now_ms - tr.start >= self.esc:
            self._escalate(c, tr)
        # Reported missing up to now: data for this time that still arrives is late.
        if now_ms > c.late_until:
            c.late_until = now_ms
