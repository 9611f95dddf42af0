"""Custody events from business systems: the MQTT handheld scan's validation (the same field
types, the fleet's assets and compartments, the same time window), idempotent by the caller's
event id, and an impossible sequence refused at once (coldchain/custody.py).

Order of the checks, so a retry is always recognised: an ``event_id`` already recorded answers
from the record (200 with the same fields, RecordConflict naming the differing ones) before
anything that could have changed since (the clock, the fleet file); then the fleet and the
clock (RecordInvalid); then, atomically with the insert, the shipment (unknown: RecordInvalid;
cancelled: RecordConflict) and the sequence (RecordConflict saying why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coldchain.custody import fleet_problem, time_problem
from coldchain.exceptions import RecordInvalid, RecordNotFound
from coldchain.fleet import Fleet
from registry import Registry
from services.models import CustodyEventCreate, epoch_ms
from services.principal import Principal
from services.views import custody_event_view

__all__ = ["CustodyLimits", "CustodyService"]


@dataclass(frozen=True, slots=True)
class CustodyLimits:
    """The time window of a custody event against the server's clock, as for MQTT events
    (COLDCHAIN_VALIDATION__MAX_FUTURE_SKEW_S, __MAX_SAMPLE_AGE_S)."""

    max_future_skew_s: float = 300.0
    max_age_s: float = 30 * 86400.0


class CustodyService:
    def __init__(
        self,
        registry: Registry,
        fleet: Callable[[], Fleet],
        clock_ms: Callable[[], int],
        limits: CustodyLimits = CustodyLimits(),
    ) -> None:
        self._registry = registry
        self._fleet = fleet  # loaded when first needed: listings do not need the fleet file
        self._clock_ms = clock_ms
        self._limits = limits

    def record(self, body: CustodyEventCreate, who: Principal) -> tuple[dict[str, Any], bool]:
        """(the event's view, created); see the module docstring for the checks."""
        ts_ms = epoch_ms(body.ts)
        args: dict[str, Any] = {
            "ts_ms": ts_ms,
            "actor": body.actor,
            "source": "api",
            "event_id": body.event_id,
            "refuse_impossible": True,
            "recorded_by": who.actor,
        }
        if self._registry.custody_event_by_id(body.event_id) is None:
            problem = fleet_problem(body.asset_id, body.compartment_id, self._fleet())
            if problem is not None:
                raise RecordInvalid(f"{problem[0]}: {problem[1]}")
            late = time_problem(
                ts_ms,
                self._clock_ms(),
                max_future_skew_s=self._limits.max_future_skew_s,
                max_age_s=self._limits.max_age_s,
            )
            if late is not None:
                raise RecordInvalid(f"ts: {late}")
        event, created = self._registry.record_custody_event(
            body.shipment_id, body.action, body.asset_id, body.compartment_id, **args
        )
        return custody_event_view(event), created

    def list(self, shipment_id: str) -> list[dict[str, Any]]:
        """The shipment's custody events in device-time order; RecordNotFound."""
        if self._registry.get_shipment(shipment_id) is None:
            raise RecordNotFound("shipment", shipment_id)
        return [custody_event_view(e) for e in self._registry.custody_events(shipment_id)]
