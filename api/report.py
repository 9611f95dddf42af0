"""Build the report a regulator takes away (``reports.ShipmentReport``) from a shipment's
trace, its custody scans, its excursions' acknowledgements, the fleet's asset names and the
registry's audit-chain head. Rendering is ``reports`` (pure); this module only fetches.

    service = ReportService(tracer, registry, fleet, profiles)
    report = service.report("SHP-1", at_ms=now, zone="Asia/Shanghai", printed_ms=now)
    html = render_report_html(report); pdf = render_report_pdf(report)
"""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import coldchain
from api.export import leg_verdicts
from api.trace import TraceDetail, TraceService, band_limits
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet
from coldchain.rules.excursion import Excursion
from coldchain.series import MAX_RESOLUTION_S, NICE_RESOLUTIONS_S
from registry import CustodyEvent, Registry, Shipment
from reports.model import (
    Acknowledgement,
    Clock,
    ReportExcursion,
    ReportLeg,
    ShipmentReport,
)

__all__ = ["CHART_BUCKETS", "ReportService", "UnknownTimeZone", "check_zone"]

# Buckets across the whole shipment on the chart: about one per pixel of a printed page.
CHART_BUCKETS = 800

# Labels of the shipment record's fields, in the order shown; a field added to the record later
# is shown under its own name after these.
_LABELS = {
    "id": "Shipment id",
    "description": "Description",
    "origin": "Origin",
    "destination": "Destination",
    "created_ms": "Registered",
}
_HIDDEN = {"profile"}  # shown with its description and range


class UnknownTimeZone(ValueError):
    def __init__(self, zone: str) -> None:
        self.zone = zone
        super().__init__(f"unknown time zone {zone!r}: give an IANA name such as Asia/Shanghai")


def check_zone(zone: str) -> str:
    """``zone`` if it names an IANA time zone, else UnknownTimeZone."""
    if not zone or len(zone) > 64:
        raise UnknownTimeZone(zone[:64])
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a path-like key, e.g. "../x"
        raise UnknownTimeZone(zone) from None
    return zone


def _chart_resolution(span_ms: int) -> int:
    wanted = span_ms / 1000 / CHART_BUCKETS
    return next((s for s in NICE_RESOLUTIONS_S if s >= wanted), MAX_RESOLUTION_S)


def _facts(shipment: Shipment, clock: Clock, ref_ms: int) -> tuple[tuple[str, str], ...]:
    values = dataclasses.asdict(shipment)
    names = [n for n in _LABELS if n in values] + [n for n in values if n not in _LABELS]
    out = []
    for name in names:
        value = values[name]
        if name in _HIDDEN or value is None or value == "":
            continue
        label = _LABELS.get(name) or name.removesuffix("_ms").replace("_", " ").capitalize()
        if name.endswith("_ms") and isinstance(value, int):
            text = clock.time(value, ref_ms=ref_ms)
        else:
            text = str(value)
        out.append((label, text))
    return tuple(out)


def _scanned_by(events: list[CustodyEvent], asset_id: str, from_ms: int) -> str:
    """Who scanned the event that began a leg (the last at that time on that asset)."""
    found = [e.actor for e in events if e.ts_ms == from_ms and e.asset_id == asset_id]
    return found[-1] if found else ""


class ReportService:
    """Reports from the same backends as the trace. ``clock_ms`` gives the printing time."""

    def __init__(
        self,
        tracer: TraceService,
        registry: Registry,
        fleet: Fleet,
        profiles: ProfileSet,
    ) -> None:
        self._tracer = tracer
        self._registry = registry
        self._fleet = fleet
        self._profiles = profiles

    def report(self, shipment_id: str, *, at_ms: int, zone: str, printed_ms: int) -> ShipmentReport:
        """The report of ``shipment_id`` as of ``at_ms`` (device time), times shown in
        ``zone``. Raises UnknownTimeZone, ShipmentNotFound, TraceRefused, StoreError."""
        clock = Clock(check_zone(zone))
        legs = [x for x in self._registry.custody_legs(shipment_id) if x.from_ms <= at_ms]
        ends = [at_ms if x.to_ms is None else min(x.to_ms, at_ms) for x in legs]
        span = max(ends) - legs[0].from_ms if legs else 0
        detail = self._tracer.detail(
            shipment_id, at_ms, resolution_s=_chart_resolution(span), track=True
        )
        # The audit head after the reads: every record shown is at or before it.
        audit_seq, audit_hash = self._registry.audit_head()
        return self._assemble(detail, clock, printed_ms, audit_seq, audit_hash)

    def _assemble(
        self, detail: TraceDetail, clock: Clock, printed_ms: int, seq: int, head: str
    ) -> ShipmentReport:
        trace = detail.trace
        numbers = {e.id: i for i, e in enumerate(trace.excursions, start=1)}
        events = self._registry.custody_events(trace.shipment_id)
        verdicts = leg_verdicts(trace, detail.at_ms)
        legs = []
        for i, (stats, series, kind) in enumerate(
            zip(trace.legs, detail.series, detail.asset_kinds, strict=True), start=1
        ):
            asset = self._fleet.assets.get(stats.leg.asset_id)
            legs.append(
                ReportLeg(
                    number=i,
                    stats=stats,
                    series=series,
                    asset_kind=kind,
                    asset_name=asset.name if asset is not None else "",
                    scanned_by=_scanned_by(events, stats.leg.asset_id, stats.leg.from_ms),
                    verdict=verdicts[i - 1],
                    excursion_numbers=tuple(
                        numbers[x] for x in stats.excursion_ids if x in numbers
                    ),
                )
            )
        profile = self._profiles[trace.profile]
        low, high = band_limits(profile)
        status = "registered"
        if legs:
            last = legs[-1].stats.leg
            status = (
                f"in custody of {last.asset_id} since {clock.time(last.from_ms, ref_ms=printed_ms)}"
                if last.to_ms is None
                else f"delivered {clock.time(last.to_ms, ref_ms=printed_ms)}"
            )
        return ShipmentReport(
            shipment_id=trace.shipment_id,
            profile=trace.profile,
            verdict=trace.verdict,
            reasons=tuple(trace.reasons),
            legs=tuple(legs),
            excursions=tuple(self._excursion(e, numbers[e.id], detail) for e in trace.excursions),
            at_ms=detail.at_ms,
            printed_ms=printed_ms,
            zone=clock.zone,
            resolution_s=detail.resolution_s,
            audit_seq=seq,
            audit_hash=head,
            status=status,
            facts=_facts(detail.shipment, clock, printed_ms),
            profile_description=profile.description,
            low_c=low,
            high_c=high,
            generator=f"coldchain {coldchain.__version__}",
        )

    def _excursion(self, e: Excursion, number: int, detail: TraceDetail) -> ReportExcursion:
        record = detail.records.get(e.id)
        if record is None:  # a custody gap: the trace computes it, the registry has no row
            return ReportExcursion(number, e, recorded=False)
        # Every acknowledgement, oldest first: a later one appends, the report shows them all.
        history = self._registry.excursion_acknowledgements(e.id) if record.ack_count else []
        acks = tuple(
            Acknowledgement(a.by, a.ack_ms, a.comment, a.root_cause, a.disposition, a.seq)
            for a in history
        )
        return ReportExcursion(number, e, acks, recorded=True)
