"""Assemble a shipment's trace: custody legs (registry) x temperatures (InfluxDB) x excursions,
with each leg's downsampled temperature series and, for vehicles, its GPS track.

The computing is ``coldchain.trace`` and ``coldchain.series`` (pure); this module only fetches,
and every fetch is bounded: buckets and tracks are aggregated by InfluxDB (at most
``MAX_BUCKETS_PER_LEG`` rows per leg), the exact statistics stream raw readings a page at a
time into ``LegAccumulator`` (constant memory), and a trace whose legs hold more than
``max_readings`` readings is refused (``TraceRefused``, HTTP 422) before any is streamed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from coldchain.custody import DEFAULT_GRACE_MS, settled_problems
from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet, plausible_limits
from coldchain.rules.excursion import Excursion
from coldchain.rules.kinds import gap_cap_ms, gap_spec
from coldchain.rules.profiles import Profile, RangeRule
from coldchain.series import (
    Buckets,
    ExcursionStart,
    LegSeries,
    TraceRefused,
    Track,
    choose_resolution,
    page_windows,
)
from coldchain.trace import (
    DEFAULT_DOCK_LIMIT_MS,
    Leg,
    LegAccumulator,
    LegReport,
    ShipmentTrace,
    custody_gaps,
    instant_means,
    verdict,
)
from registry import ExcursionRecord, Registry, Shipment, derive_legs, wall_clock_ms
from registry.custody import to_scan
from timeseries.client import InfluxClient
from timeseries.reads import (
    PAGE_ROWS,
    Read,
    buckets_read,
    implausible,
    page_read,
    position_read,
    run_all,
    stream_control_values,
    track_read,
)

__all__ = [
    "DEFAULT_MAX_READINGS",
    "MAX_EXCURSION_STARTS_PER_LEG",
    "ShipmentNotFound",
    "TraceDetail",
    "TraceService",
    "band_limits",
    "detail_to_dict",
    "trace_to_dict",
]

# Readings (of the probes the statistics use) one trace may stream: about 6 s of work on a
# small machine. A year at one reading a minute from one product probe is 525,600.
DEFAULT_MAX_READINGS = 2_000_000
# Excursion start positions looked up per vehicle leg (one InfluxDB row each).
MAX_EXCURSION_STARTS_PER_LEG = 50


class ShipmentNotFound(ColdchainError):
    def __init__(self, shipment_id: str) -> None:
        self.shipment_id = shipment_id
        super().__init__(f"shipment {shipment_id!r} is not registered")


def band_limits(profile: Profile) -> tuple[float | None, float | None]:
    """The profile's range rule limits ``(min_c, max_c)`` (either None: no such limit)."""
    for spec in profile.rules:
        if isinstance(spec, RangeRule):
            return spec.min_c, spec.max_c
    return None, None


def _ended(to_ms: int | None, now_ms: int) -> bool:
    return to_ms is not None and to_ms <= now_ms


@dataclass(frozen=True, slots=True)
class TraceDetail:
    """A trace with its shipment record, as of ``at_ms``, and per leg (aligned with
    ``trace.legs``) the downsampled series at ``resolution_s`` and, for vehicles, the track."""

    shipment: Shipment
    trace: ShipmentTrace
    at_ms: int
    resolution_s: int
    series: list[LegSeries]
    asset_kinds: list[str]
    # The registry's records of the legs' excursions (acknowledgements), by excursion id.
    records: dict[str, ExcursionRecord] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    leg: Leg
    kind: str
    end_ms: int
    cap_ms: int
    buckets: dict[str, Buckets] = field(default_factory=dict)
    track: Track = field(default_factory=Track)
    probe: str | None = None
    readings: int = 0
    first_page: list[list[Any]] | None = None
    windows: list[tuple[int, int]] = field(default_factory=list)
    records: list[ExcursionRecord] = field(default_factory=list)

    @property
    def monitored(self) -> bool:
        return self.leg.compartment_id is not None

    @property
    def window(self) -> tuple[int, int]:
        """The temperatures read: from ``cap`` before the leg (the last reading before the
        load holds into it) to its end."""
        return self.leg.from_ms - self.cap_ms, self.end_ms


class TraceService:
    """Traces from a registry and InfluxDB. ``max_readings`` bounds the raw readings one trace
    streams (``TraceRefused`` beyond); ``page_rows`` the rows per InfluxDB request.

    InfluxDB is asked in a few requests of several statements each, whatever the number of
    legs: the buckets and tracks of every leg, then the first page of every leg's readings,
    then where its excursions started (and further pages only for legs longer than a page)."""

    def __init__(
        self,
        registry: Registry,
        influx: InfluxClient,
        fleet: Fleet,
        profiles: ProfileSet,
        dock_limit_ms: int = DEFAULT_DOCK_LIMIT_MS,
        *,
        max_readings: int = DEFAULT_MAX_READINGS,
        page_rows: int = PAGE_ROWS,
        clock_ms: Callable[[], int] = wall_clock_ms,
        custody_grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        self._registry = registry
        self._influx = influx
        self._fleet = fleet
        self._profiles = profiles
        self._dock_limit_ms = dock_limit_ms
        self._max_readings = max_readings
        self._page_rows = page_rows
        # The wall clock judges the custody grace period (scans' received_ms); now_ms is
        # device time.
        self._clock_ms = clock_ms
        self._custody_grace_ms = custody_grace_ms

    def trace(self, shipment_id: str, now_ms: int) -> ShipmentTrace:
        """The trace as of ``now_ms`` (device time). Raises ShipmentNotFound, TraceRefused,
        StoreError (a store is unavailable), ConfigError (unknown profile)."""
        return self.detail(shipment_id, now_ms, track=False).trace

    def detail(
        self,
        shipment_id: str,
        now_ms: int,
        *,
        resolution_s: int | None = None,
        track: bool = True,
    ) -> TraceDetail:
        """The trace with per-leg series (and with ``track``, vehicles' GPS tracks and where
        their excursions started). ``resolution_s`` None: ``choose_resolution``'s default.
        Raises as ``trace``; TraceRefused for a resolution or size beyond the limits."""
        shipment = self._registry.get_shipment(shipment_id)
        if shipment is None:
            raise ShipmentNotFound(shipment_id)
        profile = self._profiles[shipment.profile]
        low, high = band_limits(profile)
        plausible = plausible_limits(profile)  # implausible values are no temperature
        events = self._registry.custody_events(shipment_id)
        # As of ``now_ms`` (device time): legs that began later do not exist yet, and one that
        # ended later is still open then.
        legs = [
            Leg(
                x.asset_id,
                x.compartment_id,
                x.from_ms,
                x.to_ms if _ended(x.to_ms, now_ms) else None,
            )
            for x in derive_legs(events)
            if x.from_ms <= now_ms
        ]
        plans = []
        for leg in legs:
            kind = self._asset_kind(leg.asset_id)
            end = leg.to_ms if leg.to_ms is not None else now_ms
            plans.append(_Plan(leg, kind, end, gap_cap_ms(gap_spec(profile), kind)))
        resolution = choose_resolution([p.end_ms - p.leg.from_ms for p in plans], resolution_s)
        self._read_buckets(plans, resolution, plausible, track)
        total = sum(p.readings for p in plans)
        if total > self._max_readings:
            raise TraceRefused(
                f"the trace of shipment {shipment_id!r} covers {total:,} readings, more than "
                f"the {self._max_readings:,} one request may read; ask for it as of an earlier "
                "time (at=...)"
            )
        self._read_first_pages(plans)
        for p in plans:
            p.records = self._leg_excursions(p)
        starts = self._excursion_starts(plans) if track else {}
        reports: list[LegReport] = []
        series: list[LegSeries] = []
        excursions: dict[str, Excursion] = {}
        records: dict[str, ExcursionRecord] = {}
        for i, p in enumerate(plans):
            records.update((r.excursion.id, r) for r in p.records)
            found = [r.excursion for r in p.records]
            excursions.update((e.id, e) for e in found)
            reports.append(self._statistics(p, low, high, plausible).report(found))
            product = p.buckets.get("product", Buckets())
            air = p.buckets.get("air", Buckets())
            series.append(
                LegSeries(resolution, p.probe, product, air, p.track, tuple(starts.get(i, ())))
            )
        for gap in custody_gaps(
            shipment_id, legs, now_ms=now_ms, limit_ms=self._dock_limit_ms, profile=profile.name
        ):
            excursions[gap.id] = gap
        ordered = sorted(excursions.values(), key=lambda e: (e.start_ms, e.id))
        # Scans that cannot have happened, still so after the grace period (coldchain.custody).
        integrity = settled_problems(
            [to_scan(e) for e in events],
            at_ms=now_ms,
            now_ms=self._clock_ms(),
            grace_ms=self._custody_grace_ms,
        )
        v, reasons = verdict(reports, ordered, [problem.reason() for problem in integrity])
        trace = ShipmentTrace(shipment_id, shipment.profile, reports, ordered, v, reasons)
        kinds = [p.kind for p in plans]
        return TraceDetail(shipment, trace, now_ms, resolution, series, kinds, records)

    def _read_buckets(
        self,
        plans: list[_Plan],
        resolution: int,
        plausible: tuple[float, float] | None,
        track: bool,
    ) -> None:
        """Every monitored leg's buckets and every vehicle leg's track, in one request; the
        bucket counts choose each leg's probe role (product if any, as the rules do) and
        bound its stream."""
        monitored = [p for p in plans if p.monitored]
        tracked = [p for p in plans if track and p.kind == "vehicle"]
        reads: list[Read[Any]] = [
            buckets_read(p.leg.asset_id, p.leg.compartment_id or "", *p.window, resolution)
            for p in monitored
        ]
        reads += [track_read(p.leg.asset_id, p.leg.from_ms, p.end_ms, resolution) for p in tracked]
        found = run_all(self._influx, reads)
        for p, buckets in zip(monitored, found, strict=False):
            p.buckets = buckets
        for p, path in zip(tracked, found[len(monitored) :], strict=True):
            p.track = path
        dirty = [p for p in monitored if implausible(p.buckets, plausible)]
        again = [
            buckets_read(
                p.leg.asset_id, p.leg.compartment_id or "", *p.window, resolution, plausible
            )
            for p in dirty
        ]
        for p, buckets in zip(dirty, run_all(self._influx, again), strict=True):
            p.buckets = buckets
        for p in monitored:
            counts = {role: sum(b.n) for role, b in p.buckets.items()}
            p.probe = next((r for r in ("product", "air") if counts.get(r)), None)
            p.readings = counts.get(p.probe or "", 0)
            if p.probe is not None:
                chosen = p.buckets[p.probe]
                p.windows = page_windows(chosen.t_ms, chosen.n, *p.window, self._page_rows)
            first = (p.leg.from_ms // (resolution * 1000)) * resolution * 1000
            p.buckets = {role: _from(b, first) for role, b in p.buckets.items()}

    def _read_first_pages(self, plans: list[_Plan]) -> None:
        streamed = [p for p in plans if p.monitored and p.probe is not None]
        reads = [
            page_read(
                p.leg.asset_id,
                p.leg.compartment_id or "",
                p.probe or "",
                *p.windows[0],
                self._page_rows,
            )
            for p in streamed
        ]
        for p, rows in zip(streamed, run_all(self._influx, reads), strict=True):
            p.first_page = rows

    def _statistics(
        self,
        plan: _Plan,
        low: float | None,
        high: float | None,
        plausible: tuple[float, float] | None,
    ) -> LegAccumulator:
        acc = LegAccumulator(
            plan.leg, end_ms=plan.end_ms, cap_ms=plan.cap_ms, low_c=low, high_c=high
        )
        leg = plan.leg
        if leg.compartment_id is not None and plan.probe is not None:
            rows = stream_control_values(
                self._influx,
                leg.asset_id,
                leg.compartment_id,
                plan.probe,
                *plan.window,
                plausible,
                self._page_rows,
                first_page=plan.first_page,
                windows=plan.windows,
            )
            plan.first_page = None  # the page is the stream's now; let it go after use
            acc.extend(instant_means(rows))
        return acc

    def _leg_excursions(self, plan: _Plan) -> list[ExcursionRecord]:
        leg = plan.leg
        if leg.compartment_id is None:
            return []
        return [
            r
            for r in self._registry.find_excursions(
                asset_id=leg.asset_id,
                compartment_id=leg.compartment_id,
                from_ms=leg.from_ms,
                to_ms=plan.end_ms,
            )
            if not r.excursion.superseded
        ]

    def _excursion_starts(self, plans: list[_Plan]) -> dict[int, list[ExcursionStart]]:
        """Where each vehicle leg's excursions started (at most
        ``MAX_EXCURSION_STARTS_PER_LEG`` a leg), by leg index, in one request."""
        wanted: list[tuple[int, Read[ExcursionStart | None]]] = []
        for i, p in enumerate(plans):
            if p.kind != "vehicle":
                continue
            for r in p.records[:MAX_EXCURSION_STARTS_PER_LEG]:
                start = max(r.excursion.start_ms, p.leg.from_ms)
                wanted.append((i, position_read(p.leg.asset_id, r.excursion.id, start)))
        out: dict[int, list[ExcursionStart]] = {}
        found = run_all(self._influx, [read for _, read in wanted])
        for (i, _), mark in zip(wanted, found, strict=True):
            if mark is not None:
                out.setdefault(i, []).append(mark)
        return out

    def _asset_kind(self, asset_id: str) -> str:
        asset = self._fleet.assets.get(asset_id)
        return asset.kind if asset is not None else "vehicle"


def _from(b: Buckets, first_ms: int) -> Buckets:
    """The buckets from ``first_ms`` on (those read only for the hold before the leg go)."""
    i = next((i for i, t in enumerate(b.t_ms) if t >= first_ms), len(b.t_ms))
    if i == 0:
        return b
    return Buckets(b.t_ms[i:], b.min_c[i:], b.max_c[i:], b.mean_c[i:], b.n[i:])


def trace_to_dict(trace: ShipmentTrace) -> dict[str, Any]:
    """JSON-able form (times stay epoch ms UTC)."""
    return {
        "shipment_id": trace.shipment_id,
        "profile": trace.profile,
        "verdict": trace.verdict,
        "reasons": trace.reasons,
        "legs": [asdict(r) for r in trace.legs],
        "excursions": [asdict(e) for e in trace.excursions],
    }


def _columns(value: Buckets | Track) -> dict[str, list[Any]]:
    return {k: list(v) for k, v in asdict(value).items()}


def detail_to_dict(detail: TraceDetail) -> dict[str, Any]:
    """``trace_to_dict`` plus ``at_ms``, ``resolution_s`` and per leg ``control_probe``,
    ``series`` (``product``/``air`` buckets as columns) and, for vehicles, ``track`` (columns)
    and ``excursion_starts``; ``track`` is null for a store's leg."""
    out = trace_to_dict(detail.trace) | {
        "at_ms": detail.at_ms,
        "resolution_s": detail.resolution_s,
    }
    for leg, s, kind in zip(out["legs"], detail.series, detail.asset_kinds, strict=True):
        leg["control_probe"] = s.control_probe
        leg["series"] = {"product": _columns(s.product), "air": _columns(s.air)}
        vehicle = kind == "vehicle"
        leg["track"] = _columns(s.track) if vehicle else None
        leg["excursion_starts"] = [asdict(x) for x in s.excursion_starts]
    return out
