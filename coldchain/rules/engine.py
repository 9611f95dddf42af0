"""The fleet-level engine ingest talks to: one evaluator per (asset, compartment).

Typical use in ingest::

    engine = RulesEngine(fleet, load_presets().merged(load_profiles(path)), assignments)
    engine.restore(saved)                         # after a restart
    res = engine.feed(asset_id, samples, now_ms,  # validated Samples of one message
                      device_id=dev, received_ms=rx)  # (receive time: device clock watch)
    for ch in res.changes: upsert(ch.excursion); publish(ch)
    for rc in res.recompute:                      # late data for an evaluated window
        obs = <read asset/compartment from rc.from_ms - engine.lookback_ms(...) on>
        for ch in engine.recompute(rc.asset_id, rc.compartment_id, obs, previous,
                                   from_ms=rc.from_ms, now_ms=now): ...
    engine.tick_asset(asset_id, device_now_ms, now_ms)  # periodically: open data gaps
    saved = engine.checkpoint()                   # periodically and at shutdown
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coldchain.contract.checks import ts_ms
from coldchain.contract.telemetry import Sample
from coldchain.exceptions import ProfileError
from coldchain.fleet import Asset, Compartment, Fleet
from coldchain.rules.clock import ClockReport, ClockWatch
from coldchain.rules.evaluator import (
    Change,
    CompartmentEvaluator,
    RecomputeNeeded,
    evaluate,
)
from coldchain.rules.excursion import Excursion, excursion_id
from coldchain.rules.kinds.cumulative import CumulativeKind
from coldchain.rules.kinds.door import DelayedCondition, DoorKind
from coldchain.rules.kinds.mkt import MktKind
from coldchain.rules.kinds.range import RangeKind
from coldchain.rules.kinds.sensor import StuckKind
from coldchain.rules.late import continuations, merge
from coldchain.rules.profiles import Profile, ProfileAssignment, ProfileSet, profile_at
from coldchain.rules.readings import (
    CompartmentSpec,
    Observation,
    make_observation,
    observations_from_sample,
    prepare,
    specs_for,
)
from coldchain.rules.state import dump_checkpoint, load_checkpoint

__all__ = ["FeedResult", "RulesEngine"]

_MAX_LOOKBACK_MS = 31 * 86_400_000
# What a compartment's new evaluator keeps from the old one when its profile changes (the held
# readings and the gap clock), and when its sensors change (the gap clock only).
_CARRY_CLOCK = ("ts", "last_temp_ts", "late_until", "jump")
_CARRY_STATE = (
    *_CARRY_CLOCK,
    "hi",
    "lo",
    "door",
    "setpoint",
    "defrost_since",
    "stationary",
    "speed_ts",
    "last_obs",
    "last_key",
)


@dataclass
class FeedResult:
    """Lifecycle changes to upsert/publish, windows that need a recompute, and the forward
    jump of the device clock this message showed (ms, 0 when none; docs/rules.md 4.10)."""

    changes: list[Change] = field(default_factory=list)
    recompute: list[RecomputeNeeded] = field(default_factory=list)
    clock_jump_ms: int = 0
    clock_offset_ms: int | None = None


def _compartment(asset: Asset | None, compartment_id: str) -> Compartment | None:
    if asset is None:
        return None
    return next((c for c in asset.compartments if c.id == compartment_id), None)


class RulesEngine:
    """Streaming rules for a fleet. Not thread-safe: one engine per ingest worker."""

    def __init__(
        self,
        assets: Fleet | Iterable[Asset],
        profiles: ProfileSet,
        assignments: Iterable[ProfileAssignment] = (),
        clock_watch: ClockWatch | None = None,
    ) -> None:
        items = assets.assets.values() if isinstance(assets, Fleet) else assets
        # Device clocks (clock skew evidence, forward jumps): see coldchain.rules.clock.
        self.clocks = clock_watch if clock_watch is not None else ClockWatch()
        self._assets: dict[str, Asset] = {a.id: a for a in items}
        self.profiles = profiles
        self._assignments: list[ProfileAssignment] = list(assignments)
        self._evs: dict[tuple[str, str], CompartmentEvaluator] = {}
        for asset in self._assets.values():
            for comp in asset.compartments:
                self.profile_for(asset.id, comp.id, 0)  # fail early on unknown profiles

    # -- lookups -------------------------------------------------------------------------------
    def spec(self, asset_id: str, compartment_id: str) -> CompartmentSpec:
        asset = self._assets.get(asset_id)
        if asset is None:
            raise ProfileError("asset", asset_id, "not registered with the rules engine")
        spec = specs_for(asset).get(compartment_id)
        if spec is None:
            raise ProfileError("compartment", f"{asset_id}/{compartment_id}", "not registered")
        return spec

    def profile_for(self, asset_id: str, compartment_id: str, ts_ms: int) -> Profile:
        """The profile assigned at device time ``ts_ms`` (assignment history, else the fleet's)."""
        asset = self._assets[asset_id]
        default = next(c.profile for c in asset.compartments if c.id == compartment_id)
        name = profile_at(self._assignments, asset_id, compartment_id, ts_ms, default)
        assert name is not None
        return self.profiles[name]

    def evaluator(self, asset_id: str, compartment_id: str, ts_ms: int = 0) -> CompartmentEvaluator:
        key = (asset_id, compartment_id)
        ev = self._evs.get(key)
        if ev is None:
            spec = self.spec(asset_id, compartment_id)
            ev = CompartmentEvaluator(spec, self.profile_for(asset_id, compartment_id, ts_ms))
            self._evs[key] = ev
        return ev

    # -- streaming -----------------------------------------------------------------------------
    def feed(
        self,
        asset_id: str,
        samples: Sample | Iterable[Sample],
        now_ms: int | None = None,
        *,
        device_id: str | None = None,
        received_ms: int | None = None,
    ) -> FeedResult:
        """Evaluate the validated samples of one message (one sample or a backlog batch).

        Within the call, samples are sorted by device time and same-instant duplicates merged,
        so order and redelivery inside a batch do not matter. ``now_ms`` (ingest wall clock)
        becomes ``detected_ms`` of new excursions; default: the device time of the sample.
        With ``device_id`` and ``received_ms`` (the message's receive time on the ingest
        clock), a single-sample message also feeds the device clock watch (``observe_clock``)
        first: its ``clock_skew`` changes join the result and a forward jump reaches the
        compartments before the sample does.
        """
        asset = self._assets.get(asset_id)
        if asset is None:
            raise ProfileError("asset", asset_id, "not registered with the rules engine")
        report: ClockReport | None = None
        if device_id is not None and received_ms is not None:
            if not isinstance(samples, Sample):
                samples = list(samples)
                if len(samples) == 1:
                    samples = samples[0]
            if isinstance(samples, Sample):
                now = received_ms if now_ms is None else now_ms
                report = self.observe_clock(asset_id, device_id, ts_ms(samples), received_ms, now)
        if isinstance(samples, Sample):
            result = FeedResult()
            if report is not None:
                result.changes.extend(report.changes)
                result.clock_jump_ms = report.jump_ms
                result.clock_offset_ms = report.offset_ms
            for comp_id, obs in observations_from_sample(asset, samples).items():
                self._feed_one(asset_id, comp_id, obs, now_ms, result)
            return result
        per_comp: dict[str, list[Observation]] = {}
        for s in samples:
            for comp_id, obs in observations_from_sample(asset, s).items():
                per_comp.setdefault(comp_id, []).append(obs)
        return self._feed_groups(asset_id, per_comp, now_ms)

    def observe_clock(
        self, asset_id: str, device_id: str, device_ms: int, received_ms: int, now_ms: int
    ) -> ClockReport:
        """One live message of ``device_id`` (device time ``device_ms``, received at
        ``received_ms`` on the ingest clock): clock skew evidence, and a forward jump handed to
        every compartment of the asset (docs/rules.md 4.10)."""
        report = self.clocks.observe(asset_id, device_id, device_ms, received_ms, now_ms)
        if report.jump_ms:
            asset = self._assets.get(asset_id)
            for comp in asset.compartments if asset is not None else ():
                ev = self._evs.get((asset_id, comp.id))
                if ev is not None:
                    ev.add_jump(report.jump_ms)
        return report

    def feed_observations(
        self,
        asset_id: str,
        compartment_id: str,
        observations: Iterable[Observation],
        now_ms: int | None = None,
    ) -> FeedResult:
        return self._feed_groups(asset_id, {compartment_id: list(observations)}, now_ms)

    def custody_change(
        self, asset_id: str, compartment_id: str, ts_ms: int, now_ms: int | None = None
    ) -> FeedResult:
        """A load/unload/handover at device time ``ts_ms``: cumulative budgets restart."""
        spec = self.spec(asset_id, compartment_id)
        obs = make_observation(spec, ts_ms, {}, custody=True)
        return self.feed_observations(asset_id, compartment_id, [obs], now_ms)

    def _feed_groups(
        self, asset_id: str, per_comp: Mapping[str, list[Observation]], now_ms: int | None
    ) -> FeedResult:
        result = FeedResult()
        for comp_id, group in per_comp.items():
            spec = self.spec(asset_id, comp_id)
            for obs in prepare(spec, group) if len(group) > 1 else group:
                self._feed_one(asset_id, comp_id, obs, now_ms, result)
        return result

    def _feed_one(
        self,
        asset_id: str,
        comp_id: str,
        obs: Observation,
        now_ms: int | None,
        result: FeedResult,
    ) -> None:
        ev = self._evs.get((asset_id, comp_id))
        if ev is None:
            ev = self.evaluator(asset_id, comp_id, obs.ts)
        r = ev.feed(obs, now_ms)
        if isinstance(r, RecomputeNeeded):
            for i, old in enumerate(result.recompute):
                if (old.asset_id, old.compartment_id) == (asset_id, comp_id):
                    if r.from_ms < old.from_ms:
                        result.recompute[i] = r
                    return
            result.recompute.append(r)
        elif r:
            result.changes.extend(r)

    def tick(self, now_ms: int) -> list[Change]:
        """Call periodically with one clock for device time and detection (device time =
        ingest time): opens data gaps that are still going on."""
        out: list[Change] = []
        for ev in self._evs.values():
            out.extend(ev.tick(now_ms))
        return out

    def tick_asset(self, asset_id: str, device_now_ms: int, now_ms: int) -> list[Change]:
        """The asset's device clock has got to ``device_now_ms`` (device time) at ingest time
        ``now_ms``: each of its compartments without a recording for longer than its gap
        limit of that clock opens a data gap, ``detected_ms`` = ``now_ms`` (docs/rules.md 4.6).
        """
        asset = self._assets.get(asset_id)
        if asset is None:
            return []
        out: list[Change] = []
        for comp in asset.compartments:
            ev = self._evs.get((asset_id, comp.id))
            if ev is not None and ev.ts >= 0:
                out.extend(ev.tick(device_now_ms, now_ms))
        return out

    def open_excursions(self) -> list[Excursion]:
        """Open excursions of every compartment, and open ``clock_skew`` records."""
        out = [e for ev in self._evs.values() for e in ev.open_excursions()]
        return out + self.clocks.open_excursions()

    # -- profile assignment --------------------------------------------------------------------
    def assign(self, assignment: ProfileAssignment, now_ms: int | None = None) -> list[Change]:
        """Record a new profile assignment. Open excursions of the old profile close at
        ``from_ms`` (or at the last evaluated time, if later); rules start afresh, the held
        readings and the gap clock carry over."""
        if assignment.profile not in self.profiles:
            raise ProfileError("assignment.profile", assignment.profile, "unknown profile")
        spec = self.spec(assignment.asset, assignment.compartment)
        self._assignments.append(assignment)
        key = (assignment.asset, assignment.compartment)
        old = self._evs.get(key)
        if old is None or old.profile.name == assignment.profile:
            return []
        at = max(assignment.from_ms, old.ts)
        changes = old.close_all(at, f"profile changed to {assignment.profile}", now_ms)
        new = CompartmentEvaluator(spec, self.profiles[assignment.profile])
        for name in _CARRY_STATE:
            setattr(new, name, getattr(old, name))
        self._evs[key] = new
        return changes

    # -- fleet changes -------------------------------------------------------------------------
    def apply_fleet(
        self, assets: Fleet | Iterable[Asset], now_ms: int | None = None
    ) -> list[Change]:
        """Replace the registered assets with a reloaded fleet (docs/operations.md,
        "Onboarding without restarts"); returns the lifecycle changes it causes.

        - A compartment no longer registered (its asset or itself removed): its open
          excursions close at its last evaluated device time, detail "compartment removed from
          the fleet", and its evaluator goes, so its gap clock stops (no data gap for a
          compartment that no longer exists).
        - A compartment whose sensors (or asset kind) changed, or whose profile in effect
          changed: open excursions close the same way ("... changed in the fleet"); rules start
          afresh, the gap clock (last recording, late-data mark, clock jump) carries over, and
          for a profile-only change the held readings too (as ``assign``).
        - New assets and compartments start fresh, as at start-up.
        Raises ProfileError, changing nothing, when a compartment names an unknown profile.
        """
        items = assets.assets.values() if isinstance(assets, Fleet) else assets
        new_assets = {a.id: a for a in items}
        for a in new_assets.values():
            for c in a.compartments:
                if c.profile not in self.profiles:
                    raise ProfileError(f"fleet.{a.id}.{c.id}.profile", c.profile, "unknown profile")
        old_assets, self._assets = self._assets, new_assets
        changes: list[Change] = []
        for key, ev in sorted(self._evs.items()):
            asset = new_assets.get(key[0])
            comp = _compartment(asset, key[1])
            if asset is None or comp is None:
                changes.extend(ev.close_all(ev.ts, "compartment removed from the fleet", now_ms))
                del self._evs[key]
                continue
            before = old_assets.get(key[0])
            old_comp = _compartment(before, key[1])
            same_spec = (
                before is not None
                and old_comp is not None
                and before.kind == asset.kind
                and old_comp.sensors == comp.sensors
            )
            profile = self.profile_for(key[0], key[1], max(ev.ts, 0))
            if same_spec and profile.name == ev.profile.name:
                continue
            what = "profile" if same_spec else "sensors"
            changes.extend(ev.close_all(ev.ts, f"{what} changed in the fleet", now_ms))
            new = CompartmentEvaluator(specs_for(asset)[key[1]], profile)
            for name in _CARRY_STATE if same_spec else _CARRY_CLOCK:
                setattr(new, name, getattr(ev, name))
            self._evs[key] = new
        return changes

    # -- checkpoint ----------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """The streaming state of every compartment and device clock, JSON-able (see
        coldchain.rules.state; ``devices``: coldchain.rules.clock)."""
        return dump_checkpoint(self._evs) | {"devices": self.clocks.dump()}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Resume from ``checkpoint()`` output (replaces the current state)."""

        def spec_of(a: str, c: str) -> CompartmentSpec | None:
            asset = self._assets.get(a)
            return None if asset is None else specs_for(asset).get(c)

        self._evs = load_checkpoint(data, spec_of, self.profiles.get)
        self.clocks.load(dict(data.get("devices") or {}))

    # -- late data -----------------------------------------------------------------------------
    def lookback_ms(self, asset_id: str, compartment_id: str) -> int:
        """How much history before ``from_ms`` a recompute needs to rebuild the rules' state."""
        ev = self.evaluator(asset_id, compartment_id)
        need = ev.cap
        for r in ev.rules:
            if isinstance(r, RangeKind):
                need = max(need, r.delay + r.door_extra + r.clear + ev.cap)
            elif isinstance(r, CumulativeKind):
                need = max(need, r.window if r.window else _MAX_LOOKBACK_MS)
            elif isinstance(r, MktKind):
                need = max(need, r.window + r.bms)
            elif isinstance(r, StuckKind):
                need = max(need, r.dur + ev.cap)
            elif isinstance(r, DoorKind):
                need = max(need, max(r.limit, r.loading) + ev.cap)
            elif isinstance(r, DelayedCondition):
                need = max(need, r.delay + ev.cap)
        return min(need, _MAX_LOOKBACK_MS)

    def recompute(
        self,
        asset_id: str,
        compartment_id: str,
        observations: Iterable[Observation],
        previous: Iterable[Excursion],
        *,
        from_ms: int,
        now_ms: int,
        until_ms: int | None = None,
        jumps: Iterable[tuple[int, int]] = (),
    ) -> list[Change]:
        """Re-evaluate a compartment after late data and return the upserts.

        ``observations``: the stored series from ``from_ms - lookback_ms()`` up to the newest
        sample (any order, duplicates allowed). ``previous``: the excursions reported so far for
        this compartment (at least those starting at or after ``from_ms``). The recomputed end
        state replaces the streaming state, so later samples continue from the corrected truth.
        ``jumps``: the device clock's forward jumps in the window, ``(device time, ms)``, as
        streaming saw them (so a clock correction is no data gap in the recompute either).
        """
        spec = self.spec(asset_id, compartment_id)
        profile = self.profile_for(asset_id, compartment_id, from_ms)
        # What was reported: the registry's list, plus what the streaming state still holds
        # open (it may have started before the registry query's window).
        old = self._evs.get((asset_id, compartment_id))
        prev_by_id = {e.id: e for e in (old.open_excursions() if old is not None else [])}
        prev_by_id.update((e.id, e) for e in previous)
        prev = list(prev_by_id.values())
        res = evaluate(spec, profile, observations, until_ms=until_ms, jumps=jumps)
        recomputed = list(res.excursions.values())
        rose = {c.excursion.id for c in res.changes if c.kind == "escalated"}
        changes = merge(prev, recomputed, from_ms=from_ms, now_ms=now_ms, escalated=rose)
        cont = continuations(prev, recomputed, from_ms)
        ev = res.evaluator
        if ev is not None and ev.ts >= 0:
            known = dict(prev_by_id)
            known.update((c.excursion.id, c.excursion) for c in changes)
            for rule in ev.rules:
                tr = rule.tr
                if tr is None:
                    continue
                eid = excursion_id(asset_id, compartment_id, rule.name, tr.start)
                if eid in cont:  # history was truncated: keep the reported start and id
                    tr.start = cont[eid].start_ms
                    eid = cont[eid].id
                m = known.get(eid)
                if m is not None:
                    tr.detected = m.detected_ms
                    tr.late = m.detected_late
                    tr.severity = m.severity
                    tr.dm = max(tr.dm, m.degree_minutes)
            if old is not None:  # what was reported missing stays late data
                ev.late_until = max(ev.late_until, old.late_until)
            self._evs[(asset_id, compartment_id)] = ev
        return changes
