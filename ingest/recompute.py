"""The evaluate stage's late-data recompute of one compartment: read the window back from
InfluxDB (samples, clock jumps) and the registry (custody changes, what was reported), and let
the engine merge (docs/rules.md sections 7 and 13)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from coldchain.fleet import Asset, Fleet
from coldchain.rules import Change, RulesEngine, make_observation, observations_from_sample
from ingest.rules_io import Pending
from registry import Registry
from timeseries.client import InfluxClient
from timeseries.reads import read_clock_jumps, read_samples

__all__ = [
    "DEVICE_KINDS",
    "PendingRecomputes",
    "close_removed",
    "journal_everything",
    "recompute_compartment",
    "restart_recomputes",
]

# Records about a device, not a compartment: never part of a compartment's recompute.
DEVICE_KINDS = frozenset({"clock_skew"})
_AHEAD_MS = 300_000  # device clocks may run this far ahead of the ingest clock


class PendingRecomputes:
    """The compartments waiting for a recompute from InfluxDB (``items``), and the assets held
    until theirs ran (``held``: their new samples join the recompute instead of the streaming
    state, see ``Pending.hold``). One thread (the rules') uses it."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Pending] = {}
        self.held: set[str] = set()

    def add(
        self, key: tuple[str, str], from_ms: int, row: int, hold: bool, to_ms: int | None
    ) -> None:
        """Recompute ``key`` from device time ``from_ms`` up to at least ``to_ms`` (None:
        everything stored) once spool row ``row`` is written (widening a recompute already
        asked for)."""
        old = self.items.get(key)
        if old is None:
            self.items[key] = Pending(from_ms, row, hold, to_ms=to_ms)
        else:
            old.widen(from_ms, row, hold, to_ms)
        if hold:
            self.held.add(key[0])

    def done(self, key: tuple[str, str]) -> None:
        """``key`` was recomputed: its asset is released once no holding recompute is left."""
        del self.items[key]
        if not any(k[0] == key[0] and p.hold for k, p in self.items.items()):
            self.held.discard(key[0])

    def drop(self, keep: Callable[[tuple[str, str]], bool]) -> None:
        """Forget the compartments ``keep`` refuses (removed by a fleet reload)."""
        for key in [k for k in self.items if not keep(k)]:
            del self.items[key]
        holding = {k[0] for k, p in self.items.items() if p.hold}
        self.held.intersection_update(holding)


def recompute_compartment(
    engine: RulesEngine,
    asset: Asset,
    comp_id: str,
    from_ms: int,
    now_ms: int,
    *,
    registry: Registry,
    influx: InfluxClient,
    recent_jumps: Iterable[tuple[int, int]] = (),
    until_ms: int | None = None,
) -> list[Change]:
    """Recompute ``asset``/``comp_id`` from ``from_ms`` (minus the engine's lookback) up to
    device time ``until_ms`` (None: the newest stored sample); returns the upserts.
    ``recent_jumps``: clock jumps seen live that may not be in InfluxDB yet. Raises the
    adapters' ``ColdchainError``s (the stage retries).

    ``until_ms`` is what the stage has been fed for the asset: samples stored later are not
    read, so they reach the engine as streaming when fed (a recompute that read them would
    put this compartment's state ahead of the stream and of its sibling compartments, recomputed
    at another moment: later samples would count as late data, and the siblings' silence
    clock would open data gaps; docs/rules.md 13)."""
    start = from_ms - engine.lookback_ms(asset.id, comp_id)
    end = now_ms + _AHEAD_MS if until_ms is None else until_ms
    observations = [
        obs
        for sample in read_samples(influx, asset.id, start, end)
        if (obs := observations_from_sample(asset, sample).get(comp_id)) is not None
    ]
    # Custody changes restart cumulative budgets: replay them from the registry too.
    spec = engine.spec(asset.id, comp_id)
    for legs in registry.shipments_on_asset(asset.id, start, now_ms).values():
        for leg in legs:
            if leg.asset_id == asset.id and leg.compartment_id == comp_id:
                for t in (leg.from_ms, leg.to_ms):
                    if t is not None and t <= end:
                        observations.append(make_observation(spec, t, {}, custody=True))
    # Clock jumps as streaming saw them: stored ones, and those not written yet.
    jumps = dict(read_clock_jumps(influx, asset.id, start, end))
    jumps.update((t, j) for t, j in recent_jumps if start <= t <= end)
    previous = [
        r.excursion
        for r in registry.find_excursions(asset_id=asset.id, compartment_id=comp_id, from_ms=start)
        if r.excursion.kind not in DEVICE_KINDS
    ]
    return engine.recompute(
        asset.id,
        comp_id,
        observations,
        previous,
        from_ms=from_ms,
        now_ms=now_ms,
        jumps=sorted(jumps.items()),
    )


def restart_recomputes(
    engine: RulesEngine,
    fleet: Fleet,
    saved: Mapping[str, Any],
    journal: Mapping[str, int],
    journal_newest: Mapping[str, int | None] | None = None,
) -> tuple[dict[tuple[str, str], tuple[int, int | None]], dict[str, int]]:
    """What a restart must recompute, from the restored checkpoint ``saved`` (already loaded
    into ``engine``) and the spool's rules journal after its ``fed_through`` (device -> oldest
    device time): ``{(asset, compartment): (from_ms, to_ms)}``, and ``{asset: newest device
    time known}`` for every asset the rules know (-1: none yet) so their silence clocks start.
    ``to_ms`` is the newest journaled device time of the asset (``journal_newest``: device ->
    newest, None: unknown), what the recompute must read up to; None where it is unknown
    (pending recomputes of the checkpoint, no journal): then it reads everything stored.

    The checkpoint's pending recomputes; every compartment of a journaled asset, from the
    oldest journaled time or its checkpoint time if earlier; and, for a checkpoint written
    before the journal existed (no ``fed_through``), every checkpointed compartment from its
    checkpoint time (docs/rules.md section 13).
    """
    todo: dict[tuple[str, str], tuple[int, int | None]] = {}
    heard: dict[str, int] = {}
    newest = journal_newest if journal_newest is not None else {}

    def add(key: tuple[str, str], from_ms: int, to_ms: int | None) -> None:
        old = todo.get(key)
        if old is None:
            todo[key] = (from_ms, to_ms)
        else:
            top = None if old[1] is None or to_ms is None else max(old[1], to_ms)
            todo[key] = (min(old[0], from_ms), top)

    # A compartment removed from the fleet file while ingest was stopped is skipped (its open
    # excursions: close_removed).
    for a, c, from_ms in saved.get("pending_recomputes", []):
        if fleet.has_compartment(a, c):
            add((a, c), int(from_ms), None)
    for e in saved.get("compartments", []):
        key = (e["asset"], e["compartment"])
        if not fleet.has_compartment(*key):
            continue
        ts = engine.evaluator(*key).ts
        heard[key[0]] = max(ts, heard.get(key[0], -1))
        if "fed_through" not in saved and ts >= 0:
            add(key, ts, None)
    for device, from_ms in journal.items():
        asset = fleet.asset_of(device)
        if asset is None:
            continue
        heard.setdefault(asset.id, -1)
        to_ms = newest.get(device) if journal_newest is not None else None
        for comp in asset.compartments:
            ts = engine.evaluator(asset.id, comp.id).ts
            add((asset.id, comp.id), min(from_ms, ts) if ts >= 0 else from_ms, to_ms)
    return todo, heard


def journal_everything(
    engine: RulesEngine, fleet: Fleet, saved: Mapping[str, Any], floor_ms: int
) -> dict[str, int]:
    """Stand-in for a lost rules journal (device -> oldest device time to recompute from):
    every device of ``fleet``, from its asset's oldest checkpointed device time (``saved``,
    already loaded into ``engine``), else the oldest of the whole checkpoint (an asset the
    checkpoint does not know may have reported after it), else ``floor_ms``."""
    oldest: dict[str, int] = {}
    for entry in saved.get("compartments", []):
        asset = str(entry["asset"])
        ts = engine.evaluator(asset, str(entry["compartment"])).ts
        if ts >= 0 and asset in fleet.assets:
            oldest[asset] = min(ts, oldest.get(asset, ts))
    floor = min(oldest.values(), default=floor_ms)
    return {
        device: oldest.get(asset.id, floor)
        for asset in fleet.assets.values()
        for device in asset.devices
    }


def close_removed(saved: Mapping[str, Any], fleet: Fleet, registry: Registry) -> list[Change]:
    """At a restart: the compartments the checkpoint ``saved`` holds that ``fleet`` no longer
    has (removed while ingest was stopped) get the same treatment as a reload gives them
    (``RulesEngine.apply_fleet``): each open excursion closes at the compartment's last
    evaluated device time, "compartment removed from the fleet" added to its detail. Returns
    the changes to record. Raises StoreError (registry)."""
    reason = "compartment removed from the fleet"
    changes: list[Change] = []
    for entry in saved.get("compartments", []):
        asset_id, comp_id = str(entry["asset"]), str(entry["compartment"])
        if fleet.has_compartment(asset_id, comp_id):
            continue
        last_ms = int((entry.get("state") or {}).get("ts", -1))
        found = registry.find_excursions(asset_id=asset_id, compartment_id=comp_id, status="open")
        for e in (r.excursion for r in found if r.excursion.kind not in DEVICE_KINDS):
            detail = f"{e.detail}; {reason}" if e.detail else reason
            closed = replace(e, status="closed", end_ms=max(last_ms, e.start_ms), detail=detail)
            changes.append(Change("closed", closed))
    return changes
