"""Drive the rules engine with a simulator scenario the way ingest does (no services).

``run_scenario`` feeds a deterministic simulator stream to a ``RulesEngine`` in publish order:

* telemetry payloads -> ``parse_message(...).samples_list()`` -> ``engine.feed(asset, samples,
  now_ms=<publish time>)``;
* custody events with a compartment -> ``engine.custody_change(asset, comp, ts, now)``;
* ``engine.tick(now)`` once per simulated minute of publish time (ingest ticks periodically);
* ``RecomputeNeeded`` -> rebuild the compartment's observations from every sample seen so far
  (an in-memory stand-in for InfluxDB) and call ``engine.recompute`` with the excursions
  reported so far for that compartment (the registry's answer).

Every change is folded into ``Run.excursions`` (id -> latest Excursion), which is what the
registry would hold at the end.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coldchain.contract import parse_message, ts_ms
from coldchain.contract.events import CustodyEvent, parse_event
from coldchain.contract.telemetry import Sample
from coldchain.fleet import Fleet
from coldchain.rules import Change, Excursion, RulesEngine, load_presets, observations_from_sample
from simulators import GroundTruth, SimMessage, Simulation, library_scenario

START = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # a fixed, aware UTC start (08:00 in China)
SEED = 7
MIN = 60_000

__all__ = [
    "BAND_C",
    "MIN",
    "SEED",
    "START",
    "Generated",
    "Run",
    "at_ms",
    "back_window",
    "beyond_window",
    "duplicate_every",
    "first",
    "generate",
    "iso_ms",
    "peak",
    "probe_readings",
    "run_scenario",
    "shuffle_batches",
    "truth_product",
]


def iso_ms(text: str) -> int:
    """An RFC 3339 'Z' timestamp of the ground truth -> epoch ms."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp() * 1000)


def at_ms(offset_min: float) -> int:
    """Simulation start + ``offset_min`` minutes, epoch ms."""
    return int(START.timestamp() * 1000) + round(offset_min * MIN)


@dataclass(frozen=True)
class Generated:
    """One scenario's stream and truth, generated once."""

    name: str
    fleet: Fleet
    messages: tuple[SimMessage, ...]
    truth: GroundTruth

    def faults(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.truth.faults if f["kind"] == kind]


def generate(name: str, seed: int = SEED) -> Generated:
    scenario = library_scenario(name)
    msgs, truth = Simulation(scenario, start=START, seed=seed).run()
    return Generated(name, scenario.fleet(), tuple(msgs), truth)


@dataclass
class Run:
    """The outcome of one drive: final excursion set plus what was observed on the way."""

    engine: RulesEngine
    excursions: dict[str, Excursion] = field(default_factory=dict)
    changes: list[tuple[int, Change]] = field(default_factory=list)  # (now_ms, change)
    recomputes: list[tuple[str, str, int]] = field(default_factory=list)  # asset, comp, from
    custody_changes: list[tuple[str, str]] = field(default_factory=list)  # asset, comp
    # id -> severity/status/... at the moment it was first reported (before later updates)
    first_seen: dict[str, Excursion] = field(default_factory=dict)

    def apply(self, now_ms: int, changes: Iterable[Change]) -> None:
        for ch in changes:
            self.changes.append((now_ms, ch))
            self.first_seen.setdefault(ch.excursion.id, ch.excursion)
            self.excursions[ch.excursion.id] = ch.excursion

    def visible(self) -> list[Excursion]:
        """What a consumer shows: not superseded, sorted by (asset, comp, rule, start)."""
        return sorted(
            (e for e in self.excursions.values() if not e.superseded),
            key=lambda e: (e.asset_id, e.compartment_id, e.rule, e.start_ms),
        )

    def find(self, asset: str, comp: str | None = None, rule: str | None = None) -> list[Excursion]:
        return [
            e
            for e in self.visible()
            if e.asset_id == asset
            and (comp is None or e.compartment_id == comp)
            and (rule is None or e.rule == rule)
        ]

    def signature(self) -> list[tuple[Any, ...]]:
        """The comparable content of the final set (ids, rule, times, severity, status)."""
        return sorted(
            (e.id, e.rule, e.kind, e.start_ms, e.end_ms, e.severity, e.status, e.superseded)
            for e in self.excursions.values()
        )


Transform = Callable[[Sequence[SimMessage]], list[SimMessage]]


def run_scenario(
    gen: Generated,
    *,
    transform: Transform | None = None,
    batch_order: Callable[[list[Sample]], list[Sample]] | None = None,
    checkpoint_at: int | None = None,
) -> Run:
    """Feed ``gen``'s stream to a fresh engine like ingest does; see the module docstring.

    ``transform`` rewrites the message list (e.g. duplicates); ``batch_order`` reorders the
    samples of each backlog batch; ``checkpoint_at`` = index of the message before which the
    engine is checkpointed and replaced by a restored one.
    """
    fleet = gen.fleet
    profiles = load_presets()
    engine = RulesEngine(fleet, profiles)
    run = Run(engine)
    msgs = list(gen.messages) if transform is None else transform(gen.messages)
    store: dict[str, dict[int, Sample]] = {}  # asset -> ts -> sample (InfluxDB: idempotent)
    next_tick: int | None = None

    for i, msg in enumerate(msgs):
        now = int(msg.time.timestamp() * 1000)
        if checkpoint_at is not None and i == checkpoint_at:
            saved = run.engine.checkpoint()
            run.engine = RulesEngine(fleet, profiles)
            run.engine.restore(saved)
        engine = run.engine
        # Ticks for every whole minute of publish time that has passed.
        if next_tick is None:
            next_tick = now - now % MIN + MIN
        while next_tick <= now:
            run.apply(next_tick, engine.tick(next_tick))
            next_tick += MIN
        if msg.kind == "telemetry":
            asset = fleet.asset_of(msg.device_id)
            assert asset is not None, msg.device_id
            samples = parse_message(msg.payload).samples_list()
            if batch_order is not None and len(samples) > 1:
                samples = batch_order(list(samples))
            rows = store.setdefault(asset.id, {})
            for s in samples:
                rows[ts_ms(s)] = s
            res = engine.feed(asset.id, samples, now_ms=now)
        elif msg.kind == "events":
            ev = parse_event(msg.payload)
            if not isinstance(ev, CustodyEvent) or ev.compartment_id is None:
                continue
            if not fleet.has_compartment(ev.asset_id, ev.compartment_id):
                continue
            event_ms = int(ev.ts.timestamp() * 1000)
            run.custody_changes.append((ev.asset_id, ev.compartment_id))
            res = engine.custody_change(ev.asset_id, ev.compartment_id, event_ms, now)
        else:
            continue
        run.apply(now, res.changes)
        for rc in res.recompute:
            run.recomputes.append((rc.asset_id, rc.compartment_id, rc.from_ms))
            asset = fleet.assets[rc.asset_id]
            since = rc.from_ms - engine.lookback_ms(rc.asset_id, rc.compartment_id)
            observations = [
                obs
                for t, s in sorted(store.get(rc.asset_id, {}).items())
                if t >= since
                and (obs := observations_from_sample(asset, s).get(rc.compartment_id)) is not None
            ]
            previous = [
                e
                for e in run.excursions.values()
                if e.asset_id == rc.asset_id
                and e.compartment_id == rc.compartment_id
                and (e.end_ms is None or e.end_ms >= since or e.start_ms >= since)
            ]
            changes = engine.recompute(
                rc.asset_id,
                rc.compartment_id,
                observations,
                previous,
                from_ms=rc.from_ms,
                now_ms=now,
            )
            run.apply(now, changes)
    return run


def duplicate_every(n: int) -> Transform:
    """Redeliver every ``n``-th telemetry message right after itself (a lost PUBACK)."""

    def transform(msgs: Sequence[SimMessage]) -> list[SimMessage]:
        out: list[SimMessage] = []
        k = 0
        for m in msgs:
            out.append(m)
            if m.kind == "telemetry":
                k += 1
                if k % n == 0:
                    out.append(m)
        return out

    return transform


def shuffle_batches(seed: int) -> Callable[[list[Sample]], list[Sample]]:
    rng = random.Random(seed)

    def reorder(samples: list[Sample]) -> list[Sample]:
        out = list(samples)
        rng.shuffle(out)
        return out

    return reorder


# -- ground truth as seen by a probe ------------------------------------------------------------

BAND_C = 0.3  # probe noise (sigma 0.06 K, so 4 sigma = 0.24) + 0.1 K resolution (0.05)
Point = tuple[int, float]


def probe_readings(gen: Generated, asset_id: str, sensor_id: str) -> dict[int, float]:
    """What the device reported for one probe: device time (ms) -> value."""
    out: dict[int, float] = {}
    for m in gen.messages:
        if m.kind != "telemetry":
            continue
        msg = parse_message(m.payload)
        for s in msg.samples_list():
            v = s.temps_c.get(sensor_id) if s.temps_c else None
            if v is not None:
                out.setdefault(ts_ms(s), v)
    return out


def truth_product(gen: Generated, asset_id: str, comp_id: str) -> list[Point]:
    """The true product-probe temperature at every sample instant, plus the probe's fixed
    calibration bias (estimated as the median reading-minus-truth over the run), so what is
    left between this and a reading is only noise and resolution (``BAND_C``)."""
    series = gen.truth.series(asset_id, comp_id)
    points = [(iso_ms(t), float(v)) for t, v in zip(series["t"], series["product_c"], strict=True)]
    readings = probe_readings(gen, asset_id, f"{comp_id}-prod")
    diffs = sorted(readings[t] - v for t, v in points if t in readings)
    assert len(diffs) > len(points) // 2, "the truth's instants are the probe's sample times"
    bias = diffs[len(diffs) // 2]
    return [(t, v + bias) for t, v in points]


def first(points: Sequence[Point], pred: Callable[[float], bool], after: int) -> int | None:
    return next((t for t, v in points if t >= after and pred(v)), None)


def beyond_window(
    points: Sequence[Point], limit: float, above: bool, after: int, band: float = BAND_C
) -> tuple[int, int]:
    """When a probe reading first goes beyond ``limit`` after ``after``: no earlier than the
    true value comes within ``band`` of it, no later than it is ``band`` beyond."""
    sign = 1.0 if above else -1.0
    early = first(points, lambda v: sign * (v - limit) > -band, after)
    late = first(points, lambda v: sign * (v - limit) > band, after)
    assert early is not None and late is not None, f"truth never goes beyond {limit}"
    return early, late


def back_window(
    points: Sequence[Point], inside: float, above: bool, after: int, band: float = BAND_C
) -> tuple[int, int]:
    """When a probe reading is first back at or inside ``inside`` (limit -/+ hysteresis)
    after ``after`` (the peak). If the truth comes within ``band`` of it but never clearly
    inside, the latest possible instant is the end of the series."""
    sign = 1.0 if above else -1.0
    early = first(points, lambda v: sign * (v - inside) <= band, after)
    late = first(points, lambda v: sign * (v - inside) <= -band, after)
    assert early is not None, f"truth never comes back to {inside}"
    return early, points[-1][0] if late is None else late


def peak(points: Sequence[Point], above: bool, lo: int, hi: int) -> Point:
    inside = [(t, v) for t, v in points if lo <= t <= hi]
    return max(inside, key=lambda p: p[1]) if above else min(inside, key=lambda p: p[1])
