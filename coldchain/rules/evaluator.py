"""The per-compartment evaluator: one state machine, fed streaming or in batch.

``CompartmentEvaluator.feed(obs)`` is the streaming entry (ingest); ``evaluate(spec, profile,
observations)`` is the batch entry (recompute a window). Batch is literally "prepare the series,
then feed it in order", so for in-order data both give the same excursions.

Time model (docs/rules.md): an observation at ``t`` holds its values until the next observation,
but a temperature for at most ``cap`` ms (the data-gap limit); beyond that it is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from coldchain.rules.excursion import Excursion, ExcursionStatus
from coldchain.rules.kinds import Rule, Track, build_rules, gap_cap_ms, gap_spec
from coldchain.rules.kinds.gap import GapKind
from coldchain.rules.plausible import drop_implausible, plausible_limits
from coldchain.rules.profiles import Profile
from coldchain.rules.readings import CompartmentSpec, Observation, prepare

__all__ = [
    "BatchResult",
    "Change",
    "ChangeKind",
    "CompartmentEvaluator",
    "RecomputeNeeded",
    "evaluate",
    "fold",
]

ChangeKind = Literal["opened", "escalated", "closed", "recovered", "updated", "superseded"]


@dataclass(frozen=True, slots=True)
class Change:
    """One lifecycle change of one excursion: upsert ``excursion`` by id, alert once."""

    kind: ChangeKind
    excursion: Excursion


@dataclass(frozen=True, slots=True)
class RecomputeNeeded:
    """A sample older than what the compartment already evaluated arrived (late data).

    Its effect is not applied; recompute from ``from_ms`` (see ``RulesEngine.recompute``).
    """

    asset_id: str
    compartment_id: str
    from_ms: int


class CompartmentEvaluator:
    """Streaming state of one (asset, compartment) under one profile."""

    __slots__ = (
        "cap",
        "changes",
        "defrost_since",
        "door",
        "hi",
        "jump",
        "last_key",
        "last_obs",
        "last_temp_ts",
        "late",
        "late_until",
        "lo",
        "now",
        "plausible",
        "profile",
        "raw",
        "rules",
        "setpoint",
        "spec",
        "speed_ts",
        "stationary",
        "steps",
        "tick_rules",
        "ts",
    )

    def __init__(self, spec: CompartmentSpec, profile: Profile) -> None:
        self.spec = spec
        self.profile = profile
        self.rules: list[Rule] = build_rules(profile, spec)
        self.tick_rules: list[Rule] = [r for r in self.rules if isinstance(r, GapKind)]
        self.steps = [r.step for r in self.rules]  # bound once: the hot loop calls these
        self.cap = gap_cap_ms(gap_spec(profile), spec.asset_kind)
        # Values outside these feed only the implausible rule, which reads ``raw`` (the
        # observation as reported); every other rule gets it without them.
        self.plausible = plausible_limits(profile)
        self.raw: Observation | None = None
        self.ts = -1  # device time of the last evaluated observation
        self.last_temp_ts = -1  # device time of the last temperature recording
        self.hi: float | None = None
        self.lo: float | None = None
        self.door: bool | None = None
        self.setpoint: float | None = None
        self.defrost_since = -1
        self.stationary = self.spec.asset_kind == "store"
        self.speed_ts = -1  # device time of the last known speed (a GNSS fix)
        self.now = 0
        self.changes: list[tuple[ChangeKind, Excursion]] = []
        self.last_obs: Observation | None = None
        self.last_key: tuple[Any, ...] | None = None
        # Device time up to which the engine has already reported the recording missing (a data
        # gap opened by ``tick``): data for that time is late, and an excursion it proves is
        # reported ``detected_late`` (docs/rules.md, section 7). ``late``: the observation being
        # stepped is such data.
        self.late_until = -1
        self.late = False
        # Forward jumps of the device clock (ms) since the last recording: device time that
        # passed without being time (docs/rules.md 4.6, 4.10); widens the hold and gap limit.
        self.jump = 0

    # -- reporting (called by rules) ---------------------------------------------------------
    def excursion(
        self, rule: Rule, tr: Track, status: ExcursionStatus, end: int | None
    ) -> Excursion:
        return Excursion(
            asset_id=self.spec.asset_id,
            compartment_id=self.spec.compartment_id,
            rule=rule.name,
            kind=rule.kind,
            severity=tr.severity,
            status=status,
            start_ms=tr.start,
            end_ms=end,
            detected_ms=tr.detected,
            detected_late=tr.late,
            peak_c=tr.peak,
            degree_minutes=round(tr.dm, 4),
            profile=self.profile.name,
            detail=tr.detail,
            out_of_range_s=tr.oor / 1000.0 if rule.limits else None,
            returned_ms=tr.ret if rule.limits and tr.ret >= 0 else None,
        )

    def emit(
        self, kind: ChangeKind, rule: Rule, tr: Track, status: ExcursionStatus, end: int | None
    ) -> None:
        self.changes.append((kind, self.excursion(rule, tr, status, end)))

    def _take_changes(self) -> list[Change]:
        raw = self.changes
        self.changes = []
        if len(raw) == 1:
            return [Change(raw[0][0], raw[0][1])]
        return _coalesce(raw)

    # -- feeding -----------------------------------------------------------------------------
    def feed(self, obs: Observation, now_ms: int | None = None) -> list[Change] | RecomputeNeeded:
        """Evaluate one observation in device-time order; report lifecycle changes.

        An exact redelivery of the last observation changes nothing. An older observation (or a
        different one at the same instant) is not applied: ``RecomputeNeeded`` is returned.
        """
        ts = obs.ts
        if ts <= self.ts:
            if ts == self.ts and obs.key() == self._last_key():
                return []
            return RecomputeNeeded(self.spec.asset_id, self.spec.compartment_id, ts)
        self.step(obs, now_ms)
        if self.changes:
            return self._take_changes()
        return []

    def _last_key(self) -> tuple[Any, ...] | None:
        if self.last_obs is not None:
            return self.last_obs.key()
        return self.last_key

    def step(self, obs: Observation, now_ms: int | None = None) -> None:
        """Apply one observation that is strictly newer than ``self.ts`` (no checks)."""
        prev = self.ts
        ts = obs.ts
        if prev >= 0:
            cap = self.cap
            dt = ts - prev
            held_any = dt if dt < cap else cap
            lt = self.last_temp_ts
            if lt >= 0:
                end = lt + cap + self.jump
                held = (ts if ts < end else end) - prev
                if held < 0:
                    held = 0
            else:
                held = 0
        else:
            held = held_any = 0
        self.now = ts if now_ms is None else now_ms
        self.late = ts <= self.late_until
        raw = self.raw = obs
        pl = self.plausible
        if pl is not None and obs.amax is not None:
            amin = obs.amin
            if obs.amax > pl[1] or (amin is not None and amin < pl[0]):
                obs = drop_implausible(self.spec, obs, pl[0], pl[1])
        if obs.nofix and self.stationary and ts - self.speed_ts > self.cap:
            # No fix for longer than a held state lasts: speed unknown, the stricter moving
            # limits apply (a stop is not assumed without evidence).
            self.stationary = False
        for rule_step in self.steps:
            rule_step(self, obs, held, held_any)
        if obs.hi is not None:
            self.hi = obs.hi
            self.lo = obs.lo
            self.last_temp_ts = ts
            self.jump = 0
        if obs.door is not None:
            self.door = obs.door
        if obs.setpoint is not None:
            self.setpoint = obs.setpoint
        d = obs.defrost
        if d is not None:
            if d:
                if self.defrost_since < 0:
                    self.defrost_since = ts
            else:
                self.defrost_since = -1
        if obs.stationary is not None:
            self.stationary = obs.stationary
            self.speed_ts = ts
        self.ts = ts
        self.last_obs = raw

    def tick(self, now_ms: int, detected_ms: int | None = None) -> list[Change]:
        """Clock progress with no new data: opens (or escalates) a data gap still going on.

        ``now_ms``: how far the compartment's device clock has got (device time).
        ``detected_ms``: the ingest clock, reported as ``detected_ms`` of what opens
        (default ``now_ms``: one clock for both).
        """
        self.late = False
        self.now = now_ms if detected_ms is None else detected_ms
        for rule in self.tick_rules:
            rule.tick(self, now_ms)
        return self._take_changes() if self.changes else []

    def add_jump(self, jump_ms: int) -> None:
        """The device clock jumped forward by ``jump_ms`` (seen live): that much device time
        until the next recording is not missing data (docs/rules.md 4.6)."""
        if jump_ms > 0:
            self.jump += jump_ms

    def open_excursions(self) -> list[Excursion]:
        out = []
        for rule in self.rules:
            e = rule.open_excursion(self)
            if e is not None:
                out.append(e)
        return out

    def close_all(self, at_ms: int, reason: str, now_ms: int | None = None) -> list[Change]:
        """Close every open excursion at ``at_ms`` (e.g. the profile assignment changed)."""
        self.now = at_ms if now_ms is None else now_ms
        for rule in self.rules:
            tr = rule.tr
            if tr is not None:
                tr.detail = f"{tr.detail}; {reason}" if tr.detail else reason
                rule.tr = None
                self.emit("closed", rule, tr, "closed", max(at_ms, tr.start))
        return self._take_changes() if self.changes else []

    # -- checkpoint --------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        key = self._last_key()
        return {
            "profile": self.profile.name,
            "ts": self.ts,
            "last_temp_ts": self.last_temp_ts,
            "hi": self.hi,
            "lo": self.lo,
            "door": self.door,
            "setpoint": self.setpoint,
            "defrost_since": self.defrost_since,
            "stationary": self.stationary,
            "speed_ts": self.speed_ts,
            "last_key": None if key is None else _key_to_json(key),
            "late_until": self.late_until,
            "jump": self.jump,
            "rules": {r.name: r.dump() for r in self.rules},
        }

    def load(self, d: dict[str, Any]) -> None:
        self.ts = int(d["ts"])
        self.last_temp_ts = int(d["last_temp_ts"])
        self.hi = d["hi"]
        self.lo = d["lo"]
        self.door = d["door"]
        self.setpoint = d["setpoint"]
        self.defrost_since = int(d["defrost_since"])
        self.stationary = bool(d["stationary"])
        self.speed_ts = int(d.get("speed_ts", -1))
        lk = d["last_key"]
        self.last_key = None if lk is None else _key_from_json(lk)
        self.last_obs = None
        self.late_until = int(d.get("late_until", -1))
        self.jump = int(d.get("jump", 0))
        saved = d["rules"]
        for rule in self.rules:
            if rule.name in saved:
                rule.load(saved[rule.name])


def _key_to_json(key: tuple[Any, ...]) -> list[Any]:
    return [list(k) if isinstance(k, tuple) else k for k in key]


def _key_from_json(raw: list[Any]) -> tuple[Any, ...]:
    return tuple(tuple(k) if isinstance(k, list) else k for k in raw)


_PRIORITY = {
    "closed": 5,
    "recovered": 4,
    "superseded": 4,
    "opened": 3,
    "escalated": 2,
    "updated": 1,
}


def _coalesce(raw: list[tuple[ChangeKind, Excursion]]) -> list[Change]:
    """Several changes of one excursion within one step become one: the latest snapshot,
    reported as its most significant kind (opened + escalated = opened; * + closed = closed)."""
    order: list[str] = []
    kinds: dict[str, ChangeKind] = {}
    last: dict[str, Excursion] = {}
    for kind, exc in raw:
        if exc.id not in last:
            order.append(exc.id)
            kinds[exc.id] = kind
        elif _PRIORITY[kind] > _PRIORITY[kinds[exc.id]]:
            kinds[exc.id] = kind
        last[exc.id] = exc
    return [Change(kinds[i], last[i]) for i in order]


@dataclass
class BatchResult:
    """Changes in order, the final version of every excursion, and the end state."""

    changes: list[Change]
    excursions: dict[str, Excursion] = field(default_factory=dict)
    evaluator: CompartmentEvaluator | None = None


def fold(
    changes: Iterable[Change], into: dict[str, Excursion] | None = None
) -> dict[str, Excursion]:
    """The latest version of each excursion after applying ``changes`` (an upsert by id)."""
    out = {} if into is None else into
    for ch in changes:
        out[ch.excursion.id] = ch.excursion
    return out


def evaluate(
    spec: CompartmentSpec,
    profile: Profile,
    observations: Iterable[Observation],
    *,
    until_ms: int | None = None,
    now_ms: int | None = None,
    start: CompartmentEvaluator | None = None,
    jumps: Iterable[tuple[int, int]] = (),
) -> BatchResult:
    """Batch: sort and de-duplicate ``observations``, then feed them through a fresh evaluator
    (or ``start``). ``until_ms`` ticks the clock at the end (a gap still going on opens).
    ``jumps``: forward jumps of the device clock ``(device time after the jump, ms)``, applied
    before the first observation at or after that time, as streaming applied them."""
    ev = start if start is not None else CompartmentEvaluator(spec, profile)
    changes: list[Change] = []
    pending = sorted(jumps)
    j = 0
    for obs in prepare(spec, observations):
        while j < len(pending) and pending[j][0] <= obs.ts:
            ev.add_jump(pending[j][1])
            j += 1
        r = ev.feed(obs, now_ms)
        if isinstance(r, RecomputeNeeded):  # only possible with a ``start`` state
            continue
        changes.extend(r)
    if until_ms is not None:
        changes.extend(ev.tick(until_ms))
    return BatchResult(changes, fold(changes), ev)
