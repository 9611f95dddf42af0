"""Assemble a shipment's trace: custody legs (registry) x temperatures (InfluxDB) x excursions.

The computing is ``coldchain.trace`` (pure); this module only fetches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from coldchain.custody import DEFAULT_GRACE_MS, settled_problems
from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet, plausible_limits
from coldchain.rules.kinds import gap_cap_ms, gap_spec
from coldchain.rules.profiles import Profile, RangeRule
from coldchain.trace import (
    DEFAULT_DOCK_LIMIT_MS,
    Leg,
    LegReport,
    ShipmentTrace,
    custody_gaps,
    leg_report,
    verdict,
)
from registry import Registry, derive_legs, wall_clock_ms
from registry.custody import to_scan
from timeseries.client import InfluxClient
from timeseries.reads import read_control_series

__all__ = ["ShipmentNotFound", "TraceService", "trace_to_dict"]


class ShipmentNotFound(ColdchainError):
    def __init__(self, shipment_id: str) -> None:
        self.shipment_id = shipment_id
        super().__init__(f"shipment {shipment_id!r} is not registered")


def _limits(profile: Profile) -> tuple[float | None, float | None]:
    for spec in profile.rules:
        if isinstance(spec, RangeRule):
            return spec.min_c, spec.max_c
    return None, None


def _ended(to_ms: int | None, now_ms: int) -> bool:
    return to_ms is not None and to_ms <= now_ms


class TraceService:
    def __init__(
        self,
        registry: Registry,
        influx: InfluxClient,
        fleet: Fleet,
        profiles: ProfileSet,
        dock_limit_ms: int = DEFAULT_DOCK_LIMIT_MS,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        custody_grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        self._registry = registry
        self._influx = influx
        self._fleet = fleet
        self._profiles = profiles
        self._dock_limit_ms = dock_limit_ms
        # The wall clock judges the custody grace period (scans' received_ms); now_ms is
        # device time.
        self._clock_ms = clock_ms
        self._custody_grace_ms = custody_grace_ms

    def trace(self, shipment_id: str, now_ms: int) -> ShipmentTrace:
        shipment = self._registry.get_shipment(shipment_id)
        if shipment is None:
            raise ShipmentNotFound(shipment_id)
        profile = self._profiles[shipment.profile]
        low, high = _limits(profile)
        plausible = plausible_limits(profile)  # implausible values are no temperature
        reports: list[LegReport] = []
        excursions = {}
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
        for leg in legs:
            end = leg.to_ms if leg.to_ms is not None else now_ms
            found = []
            series: list[tuple[int, float]] = []
            cap = gap_cap_ms(gap_spec(profile), self._asset_kind(leg.asset_id))
            if leg.compartment_id is not None:
                series = read_control_series(
                    self._influx,
                    leg.asset_id,
                    leg.compartment_id,
                    leg.from_ms - cap,
                    end,
                    plausible,
                )
                found = [
                    r.excursion
                    for r in self._registry.find_excursions(
                        asset_id=leg.asset_id,
                        compartment_id=leg.compartment_id,
                        from_ms=leg.from_ms,
                        to_ms=end,
                    )
                    if not r.excursion.superseded
                ]
                excursions.update((e.id, e) for e in found)
            reports.append(
                leg_report(
                    leg, series, end_ms=end, cap_ms=cap, low_c=low, high_c=high, excursions=found
                )
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
        v, reasons = verdict(reports, ordered, [p.reason() for p in integrity])
        return ShipmentTrace(shipment_id, shipment.profile, reports, ordered, v, reasons)

    def _asset_kind(self, asset_id: str) -> str:
        asset = self._fleet.assets.get(asset_id)
        return asset.kind if asset is not None else "vehicle"


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
