"""Assemble a shipment's trace: custody legs (registry) x temperatures (InfluxDB) x excursions,
with each leg's downsampled temperature series and, for vehicles, its GPS track.

The computing is ``coldchain.trace`` and ``coldchain.series`` (pure); this module only fetches,
and every fetch is bounded: buckets and tracks are aggregated by InfluxDB (at most
``MAX_BUCKETS_PER_LEG`` rows per leg), the exact statistics stream raw readings a page at a
time into ``LegAccumulator`` (constant memory), and a trace whose legs hold more than
``max_readings`` readings is refused (``TraceRefused``, HTTP 422) before any is streamed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet, plausible_limits
from coldchain.rules.excursion import Excursion
from coldchain.rules.kinds import gap_cap_ms, gap_spec
from coldchain.rules.profiles import Profile, RangeRule
from coldchain.series import Buckets, LegSeries, TraceRefused, Track, choose_resolution
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
from registry import ExcursionRecord, Registry, Shipment
from timeseries.client import InfluxClient
from timeseries.reads import (
    PAGE_ROWS,
    read_buckets,
    read_positions_at,
    read_track,
    stream_control_values,
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
    end_ms: int
    cap_ms: int
    buckets: dict[str, Buckets]
    probe: str | None
    readings: int


class TraceService:
    """Traces from a registry and InfluxDB. ``max_readings`` bounds the raw readings one trace
    streams (``TraceRefused`` beyond); ``page_rows`` the rows per InfluxDB request."""

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
    ) -> None:
        self._registry = registry
        self._influx = influx
        self._fleet = fleet
        self._profiles = profiles
        self._dock_limit_ms = dock_limit_ms
        self._max_readings = max_readings
        self._page_rows = page_rows

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
        # As of ``now_ms`` (device time): legs that began later do not exist yet, and one that
        # ended later is still open then.
        legs = [
            Leg(
                x.asset_id,
                x.compartment_id,
                x.from_ms,
                x.to_ms if _ended(x.to_ms, now_ms) else None,
            )
            for x in self._registry.custody_legs(shipment_id)
            if x.from_ms <= now_ms
        ]
        kinds = [self._asset_kind(leg.asset_id) for leg in legs]
        ends = [leg.to_ms if leg.to_ms is not None else now_ms for leg in legs]
        resolution = choose_resolution(
            [end - leg.from_ms for leg, end in zip(legs, ends, strict=True)], resolution_s
        )
        plans = [
            self._plan(leg, end, gap_cap_ms(gap_spec(profile), kind), resolution, plausible)
            for leg, end, kind in zip(legs, ends, kinds, strict=True)
        ]
        total = sum(p.readings for p in plans)
        if total > self._max_readings:
            raise TraceRefused(
                f"the trace of shipment {shipment_id!r} covers {total:,} readings, more than "
                f"the {self._max_readings:,} one request may read; ask for it as of an earlier "
                "time (at=...)"
            )
        reports: list[LegReport] = []
        series: list[LegSeries] = []
        excursions: dict[str, Excursion] = {}
        records: dict[str, ExcursionRecord] = {}
        for plan, kind in zip(plans, kinds, strict=True):
            found = self._leg_excursions(plan)
            records.update((r.excursion.id, r) for r in found)
            excursions.update((r.excursion.id, r.excursion) for r in found)
            found_exc = [r.excursion for r in found]
            reports.append(self._statistics(plan, low, high, plausible).report(found_exc))
            series.append(self._series(plan, kind, resolution, found_exc, track))
        for gap in custody_gaps(
            shipment_id, legs, now_ms=now_ms, limit_ms=self._dock_limit_ms, profile=profile.name
        ):
            excursions[gap.id] = gap
        ordered = sorted(excursions.values(), key=lambda e: (e.start_ms, e.id))
        v, reasons = verdict(reports, ordered)
        trace = ShipmentTrace(shipment_id, shipment.profile, reports, ordered, v, reasons)
        return TraceDetail(shipment, trace, now_ms, resolution, series, kinds, records)

    def _plan(
        self,
        leg: Leg,
        end: int,
        cap: int,
        resolution: int,
        plausible: tuple[float, float] | None,
    ) -> _Plan:
        if leg.compartment_id is None:
            return _Plan(leg, end, cap, {}, None, 0)
        # From ``cap`` before the leg: the last reading before the load holds into it. The
        # counts choose the probe role (product if any, as the rules do) and bound the stream.
        buckets = read_buckets(
            self._influx,
            leg.asset_id,
            leg.compartment_id,
            leg.from_ms - cap,
            end,
            resolution,
            plausible,
        )
        counts = {role: sum(b.n) for role, b in buckets.items()}
        probe = next((r for r in ("product", "air") if counts.get(r)), None)
        first = (leg.from_ms // (resolution * 1000)) * resolution * 1000
        shown = {role: _from(b, first) for role, b in buckets.items()}
        return _Plan(leg, end, cap, shown, probe, counts.get(probe or "", 0))

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
                leg.from_ms - plan.cap_ms,
                plan.end_ms,
                plausible,
                self._page_rows,
            )
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

    def _series(
        self, plan: _Plan, kind: str, resolution: int, found: list[Excursion], track: bool
    ) -> LegSeries:
        leg = plan.leg
        product = plan.buckets.get("product", Buckets())
        air = plan.buckets.get("air", Buckets())
        if not track or kind != "vehicle":
            return LegSeries(resolution, plan.probe, product, air)
        path = read_track(self._influx, leg.asset_id, leg.from_ms, plan.end_ms, resolution)
        starts = [(e.id, max(e.start_ms, leg.from_ms)) for e in found]
        marks = read_positions_at(self._influx, leg.asset_id, starts[:MAX_EXCURSION_STARTS_PER_LEG])
        return LegSeries(resolution, plan.probe, product, air, path, tuple(marks))

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
