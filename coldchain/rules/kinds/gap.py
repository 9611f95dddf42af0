"""Data gap: a compartment without a temperature recording for longer than the allowed interval;
and its per-probe counterpart, a probe silent while another probe of the compartment reports.

The allowed interval ``cap`` is the profile's ``transport_min`` on a vehicle and ``storage_min``
in a store; it is also the sample-and-hold cap. With the last recording at ``t_last``, the gap
starts at ``t_last + cap`` (where the held value expires) and ends at the next recording. A
forward jump of the device clock seen live (``c.jump``) is device time that is not missing data:
it widens the interval until the next recording. In streaming, ``tick`` opens the gap while it
lasts (``detected_ms`` = the ingest clock the tick carries); when data resumes it is closed, or
"recovered" if a backlog shows the recording was in fact continuous (docs/rules.md 4.6).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.profiles import DataGapRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["GapKind", "ProbeSilenceKind", "gap_cap_ms", "probe_rule_name"]

_MIN = 60_000.0
_MAX_NAME = 64  # excursion rule names are identifiers of at most 64 characters


def gap_cap_ms(spec: DataGapRule | None, asset_kind: str) -> int:
    """The allowed interval (and hold cap) in ms: 10 min in transport, 30 in storage by default."""
    if spec is None:
        return 600_000 if asset_kind == "vehicle" else 1_800_000
    minutes = spec.transport_min if asset_kind == "vehicle" else spec.storage_min
    return round(minutes * _MIN)


def probe_rule_name(sensor_id: str) -> str:
    """``silent.<sensor id>``; a sensor id too long for that is shortened with its hash."""
    name = f"silent.{sensor_id}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(sensor_id.encode()).hexdigest()[:12]
    return f"silent.{sensor_id[: _MAX_NAME - 20]}~{digest}"


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
        allowed = c.cap + c.jump
        if obs.ts - last > allowed:
            start = last + allowed
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
        allowed = c.cap + c.jump
        if last < 0 or now_ms - last <= allowed:
            return
        tr = self.tr
        if tr is None:
            # c.now: the ingest clock of this tick (detected_ms), not the device clock now_ms.
            tr = Track(last + allowed, self.severity, c.now, detail=self._detail(c))
            self._open(c, tr)
        if self.esc >= 0 and now_ms - tr.start >= self.esc:
            self._escalate(c, tr)
        # Reported missing up to now: data for this time that still arrives is late.
        if now_ms > c.late_until:
            c.late_until = now_ms


class ProbeSilenceKind(Rule):
    """One probe of a compartment with several: silent longer than the gap limit while another
    probe reports is a sensor fault (the compartment itself is monitored: no data gap).

    Start = the probe's last reading + the limit (or the compartment's first recording without
    it, if it never reported); reported by the recording that proves it; its next reading
    closes it. Judged on recordings only: when every probe is silent it is the data gap's case.
    """

    __slots__ = ("idx", "last", "sensor_id")

    def __init__(self, gap: DataGapRule, sensor_id: str, idx: int) -> None:
        super().__init__(probe_rule_name(sensor_id), "sensor_fault", "warning")
        self.sensor_id = sensor_id
        self.idx = idx
        self.last = -1

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        if obs.amax is None:
            return
        ts = obs.ts
        if obs.temps[self.idx] is not None:
            self.last = ts
            if self.tr is not None:
                self._close(c, ts)
            return
        if self.last < 0:
            self.last = ts  # never heard since evaluation began: count from here
            return
        allowed = c.cap + c.jump
        if self.tr is None and ts - self.last > allowed:
            self._open(
                c,
                Track(
                    self.last + allowed,
                    self.severity,
                    c.now,
                    detail=(
                        f"probe {self.sensor_id} silent for more than {c.cap / _MIN:g} min"
                        " while the compartment reports"
                    ),
                ),
            )

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["l"] = self.last
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        self.last = int(d.get("l", -1))
