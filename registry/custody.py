"""Shipments, custody events and the derivation of custody legs.

``derive_legs`` is pure (events in, legs out) so the API and the rules engine's custody-gap rule
can use it on any list of events. Semantics (docs/registry.md, "Custody legs"):

- events are taken in device-time order (``ts_ms``); at the same millisecond an ``unload`` comes
  before a ``handover`` before a ``load`` before a ``deliver`` (a transfer scanned at once),
  then by id;
- ``load`` or ``handover`` naming (asset, compartment) puts the shipment there; naming no
  compartment puts it on that asset's dock (unmonitored);
- ``unload`` from an asset puts the shipment on that asset's dock (unmonitored) until the next
  load; an unload that does not match where the shipment is still ends the current leg there
  (the scan is the evidence we have);
- ``deliver`` hands the shipment to its consignee: the open leg ends and no new one starts;
- a scan that does not change the location (a handover between people, a repeated load) does
  not split the leg; zero-length legs are dropped; the last leg is open (``to_ms`` None)
  unless the shipment was delivered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from coldchain.custody import ACTION_ORDER, CustodyScan
from registry.models import CustodyEventRow, ShipmentRow
from registry.records import (
    CustodyAction,
    CustodyEvent,
    CustodyLeg,
    CustodySource,
    Shipment,
    ShipmentStatus,
)

__all__ = [
    "derive_legs",
    "event_to_record",
    "events_for",
    "legs_for",
    "list_shipments",
    "shipment_state",
    "shipment_to_record",
    "shipments_on_asset",
    "to_scan",
]

_ACTION_ORDER = ACTION_ORDER


def shipment_to_record(row: ShipmentRow) -> Shipment:
    return Shipment(
        id=row.id,
        profile=row.profile,
        description=row.description,
        origin=row.origin,
        destination=row.destination,
        created_ms=row.created_ms,
        shipper=row.shipper,
        consignee=row.consignee,
        quantity=row.quantity,
        unit=row.unit,
        planned_departure_ms=row.planned_departure_ms,
        planned_arrival_ms=row.planned_arrival_ms,
        status=cast(ShipmentStatus, row.status),
        custody_from_ms=row.custody_from_ms,
        custody_to_ms=row.custody_to_ms,
        cancelled_ms=row.cancelled_ms,
        cancelled_by=row.cancelled_by,
        cancel_reason=row.cancel_reason,
        updated_ms=row.updated_ms,
    )


def shipment_state(legs: Sequence[CustodyLeg]) -> tuple[ShipmentStatus, int | None, int | None]:
    """(status, custody_from_ms, custody_to_ms) of a shipment with these legs, as the API has
    always shown it: ``registered`` without legs, ``in_custody`` while the last leg is open,
    else ``delivered`` (custody ended at the last leg's end). Not for cancelled shipments."""
    if not legs:
        return "registered", None, None
    if legs[-1].to_ms is None:
        return "in_custody", legs[0].from_ms, None
    return "delivered", legs[0].from_ms, legs[-1].to_ms


def to_scan(event: CustodyEvent) -> CustodyScan:
    """The event as coldchain.custody's sequence check sees it."""
    return CustodyScan(
        action=event.action,
        asset_id=event.asset_id,
        compartment_id=event.compartment_id,
        ts_ms=event.ts_ms,
        order=event.id,
        received_ms=event.received_ms,
        ref=repr(event.event_id) if event.event_id is not None else f"#{event.id}",
    )


def event_to_record(row: CustodyEventRow) -> CustodyEvent:
    return CustodyEvent(
        id=row.id,
        shipment_id=row.shipment_id,
        action=cast(CustodyAction, row.action),
        asset_id=row.asset_id,
        compartment_id=row.compartment_id,
        ts_ms=row.ts_ms,
        actor=row.actor,
        source=cast(CustodySource, row.source),
        received_ms=row.received_ms,
        event_id=row.event_id,
    )


def events_for(session: Session, shipment_id: str) -> list[CustodyEvent]:
    rows = session.execute(
        select(CustodyEventRow)
        .where(CustodyEventRow.shipment_id == shipment_id)
        .order_by(CustodyEventRow.ts_ms, CustodyEventRow.id)
    ).scalars()
    return [event_to_record(r) for r in rows]


def list_shipments(session: Session, *, after: str | None, limit: int) -> list[Shipment]:
    """Shipments in id order, from the first id after ``after`` (keyset paging: stable while
    shipments are added, unlike an offset)."""
    query = select(ShipmentRow).order_by(ShipmentRow.id).limit(limit)
    if after is not None:
        query = query.where(ShipmentRow.id > after)
    return [shipment_to_record(r) for r in session.execute(query).scalars()]


def legs_for(session: Session, shipment_ids: Sequence[str]) -> dict[str, list[CustodyLeg]]:
    """Custody legs of several shipments from one query (a listing must not cost a query per
    shipment); a shipment without scans maps to []."""
    events: dict[str, list[CustodyEvent]] = defaultdict(list)
    if shipment_ids:
        rows = session.execute(
            select(CustodyEventRow).where(CustodyEventRow.shipment_id.in_(set(shipment_ids)))
        ).scalars()
        for row in rows:
            events[row.shipment_id].append(event_to_record(row))
    return {sid: derive_legs(events.get(sid, [])) for sid in shipment_ids}


def shipments_on_asset(
    session: Session, asset_id: str, from_ms: int, to_ms: int
) -> dict[str, list[CustodyLeg]]:
    """Shipments with a leg on ``asset_id`` overlapping [from_ms, to_ms): id -> those legs.

    Candidates are shipments with any event on the asset at or before ``to_ms``; their legs are
    then derived from all their events (a leg can start long before the window).
    """
    candidates = session.execute(
        select(CustodyEventRow.shipment_id)
        .where(CustodyEventRow.asset_id == asset_id, CustodyEventRow.ts_ms < to_ms)
        .distinct()
    ).scalars()
    found: dict[str, list[CustodyLeg]] = {}
    for shipment_id in sorted(candidates):
        legs = [
            leg
            for leg in derive_legs(events_for(session, shipment_id))
            if leg.asset_id == asset_id
            and leg.from_ms < to_ms
            and (leg.to_ms is None or leg.to_ms > from_ms)
        ]
        if legs:
            found[shipment_id] = legs
    return found


def derive_legs(events: Iterable[CustodyEvent]) -> list[CustodyLeg]:
    """Custody legs from a shipment's events (any order); see the module docstring."""
    ordered = sorted(events, key=lambda e: (e.ts_ms, _ACTION_ORDER[e.action], e.id))
    legs: list[CustodyLeg] = []
    # The open leg: (asset_id, compartment_id, from_ms), or None before the first event.
    current: tuple[str, str | None, int] | None = None
    for event in ordered:
        if event.action == "deliver":
            # Custody ends with the consignee: close the open leg, start none.
            if current is not None and event.ts_ms > current[2]:
                legs.append(CustodyLeg(current[0], current[1], current[2], event.ts_ms))
            current = None
            continue
        if event.action == "unload":
            target: tuple[str, str | None] = (event.asset_id, None)
        else:
            target = (event.asset_id, event.compartment_id)
        if current is not None and (current[0], current[1]) == target:
            continue  # same place: not a new leg
        if current is not None and event.ts_ms > current[2]:
            legs.append(CustodyLeg(current[0], current[1], current[2], event.ts_ms))
        current = (target[0], target[1], event.ts_ms)
    if current is not None:
        legs.append(CustodyLeg(current[0], current[1], current[2], None))
    return _merge_adjacent(legs)


def _merge_adjacent(legs: list[CustodyLeg]) -> list[CustodyLeg]:
    """Join consecutive legs at the same place (left when a zero-length leg was dropped)."""
    merged: list[CustodyLeg] = []
    for leg in legs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and (last.asset_id, last.compartment_id) == (leg.asset_id, leg.compartment_id)
            and last.to_ms == leg.from_ms
        ):
            merged[-1] = CustodyLeg(last.asset_id, last.compartment_id, last.from_ms, leg.to_ms)
        else:
            merged.append(leg)
    return merged
