"""``Registry`` methods for custody events and the legs derived from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coldchain.custody import CustodyScan, sequence_problems
from coldchain.exceptions import RecordConflict, RecordInvalid
from registry import audit, custody, shipments
from registry.facade.base import RegistryBase, as_payload
from registry.ids import require_actor, require_event_id, require_identifier, require_shipment_id
from registry.models import CustodyEventRow, ShipmentRow
from registry.records import CustodyAction, CustodyEvent, CustodyLeg, CustodySource
from registry.shipments import utc

__all__ = ["CustodyMethods"]

_ACTIONS = ("load", "unload", "handover", "deliver")
_SOURCES = ("api", "mqtt")


class CustodyMethods(RegistryBase):
    def record_custody_event(
        self,
        shipment_id: str,
        action: CustodyAction,
        asset_id: str,
        compartment_id: str | None,
        *,
        ts_ms: int,
        actor: str,
        source: CustodySource = "api",
        received_ms: int | None = None,
        event_id: str | None = None,
        refuse_impossible: bool = False,
        recorded_by: str | None = None,
    ) -> tuple[CustodyEvent, bool]:
        """Record a load/unload/handover/deliver scan; (event, created).

        Idempotent: with an ``event_id`` (the caller's id, write API) the same id with the
        same fields returns the stored event with created False and writes nothing, the same id
        with other fields is RecordConflict naming them. Without one (MQTT scans) on
        (shipment_id, action, ts_ms, asset_id): a redelivered scan is the stored event, one
        naming another compartment or actor contradicts it (RecordConflict). A scan with a new
        event id that repeats the natural key of a stored one is RecordConflict too.

        ``refuse_impossible`` (the write API): RecordConflict, saying why, if the scan makes the
        shipment's sequence impossible (coldchain.custody.sequence_problems: unload of what is
        not loaded, anything after the delivery, ...); MQTT scans are stored regardless (they
        may arrive late and out of order; the trace flags what stays impossible).

        Also RecordConflict: the shipment is cancelled. RecordInvalid: an unknown shipment,
        ids or an actor that break coldchain.identifiers' rules. The scan
        updates the shipment's status and custody span in the same transaction; its audit
        entry's actor is ``recorded_by`` (an API key's identity) if given, else ``actor``.
        """
        if action not in _ACTIONS:
            raise RecordInvalid(f"custody action {action!r} is not one of {_ACTIONS}")
        if source not in _SOURCES:
            raise RecordInvalid(f"custody source {source!r} is not one of {_SOURCES}")
        require_shipment_id(shipment_id)
        require_identifier(asset_id, "asset_id")
        if compartment_id is not None:
            require_identifier(compartment_id, "compartment_id")
        require_actor(actor)
        if recorded_by is not None:
            require_actor(recorded_by, "recorded_by")
        if event_id is not None:
            require_event_id(event_id)
        fields = {
            "shipment_id": shipment_id,
            "action": action,
            "asset_id": asset_id,
            "compartment_id": compartment_id,
            "ts_ms": ts_ms,
            "actor": actor,
        }
        with self._write("recording a custody event") as (session, head, now):
            if event_id is not None:
                same_id = session.execute(
                    select(CustodyEventRow).where(CustodyEventRow.event_id == event_id)
                ).scalar_one_or_none()
                if same_id is not None:
                    _same_event_or_conflict(same_id, fields)
                    return custody.event_to_record(same_id), False
            shipment = session.get(ShipmentRow, shipment_id)
            if shipment is None:
                raise RecordInvalid(
                    f"custody event for unknown shipment {shipment_id!r}: register the "
                    "shipment first"
                )
            existing = session.execute(
                select(CustodyEventRow).where(
                    CustodyEventRow.shipment_id == shipment_id,
                    CustodyEventRow.action == action,
                    CustodyEventRow.ts_ms == ts_ms,
                    CustodyEventRow.asset_id == asset_id,
                )
            ).scalar_one_or_none()
            if existing is not None:
                if event_id is not None or existing.event_id is not None:
                    raise RecordConflict(
                        f"custody {action} of {shipment_id!r} on {asset_id!r} at {utc(ts_ms)} is "
                        f"already recorded as event {_ref(existing)} (source {existing.source})"
                    )
                if (existing.compartment_id, existing.actor) != (compartment_id, actor):
                    raise RecordConflict(
                        f"custody {action} of {shipment_id!r} on {asset_id!r} at {utc(ts_ms)} is "
                        f"already recorded with compartment {existing.compartment_id!r} and "
                        f"actor {existing.actor!r}"
                    )
                return custody.event_to_record(existing), False
            shipments.refuse_if_cancelled(shipment, "custody events")
            if refuse_impossible:
                _refuse_impossible(session, shipment_id, fields, now, event_id)
            row = CustodyEventRow(
                shipment_id=shipment_id,
                action=action,
                asset_id=asset_id,
                compartment_id=compartment_id,
                ts_ms=ts_ms,
                actor=actor,
                source=source,
                received_ms=now if received_ms is None else received_ms,
                event_id=event_id,
            )
            session.add(row)
            session.flush()
            shipments.refresh_state(session, shipment)
            record = custody.event_to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor if recorded_by is None else recorded_by,
                action=f"custody.{action}",
                entity="shipment",
                entity_id=shipment_id,
                payload=as_payload(record),
            )
            return record, True

    def custody_event_by_id(self, event_id: str) -> CustodyEvent | None:
        """The event a caller recorded with ``event_id`` (write API), if any."""
        with self._read("reading a custody event") as session:
            row = session.execute(
                select(CustodyEventRow).where(CustodyEventRow.event_id == event_id)
            ).scalar_one_or_none()
            return None if row is None else custody.event_to_record(row)

    def custody_events(self, shipment_id: str) -> list[CustodyEvent]:
        with self._read("reading custody events") as session:
            return custody.events_for(session, shipment_id)

    def custody_legs(self, shipment_id: str) -> list[CustodyLeg]:
        """Where the shipment was, leg by leg (see registry.custody.derive_legs)."""
        return custody.derive_legs(self.custody_events(shipment_id))

    def custody_legs_of(self, shipment_ids: Sequence[str]) -> dict[str, list[CustodyLeg]]:
        """``custody_legs`` of several shipments in one query: id -> legs ([] without scans)."""
        with self._read("reading custody events") as session:
            return custody.legs_for(session, shipment_ids)

    def shipments_on_asset(
        self, asset_id: str, from_ms: int, to_ms: int
    ) -> dict[str, list[CustodyLeg]]:
        """Shipments that had a leg on ``asset_id`` overlapping [from_ms, to_ms)."""
        with self._read("finding shipments on an asset") as session:
            return custody.shipments_on_asset(session, asset_id, from_ms, to_ms)


def _ref(row: CustodyEventRow) -> str:
    return repr(row.event_id) if row.event_id is not None else f"#{row.id}"


def _same_event_or_conflict(row: CustodyEventRow, fields: dict[str, Any]) -> None:
    """Nothing if the stored event has ``fields``, else RecordConflict naming what differs
    (as the request names it: ``ts`` in RFC 3339)."""
    diff = []
    for name, value in fields.items():
        stored = getattr(row, name)
        if stored == value:
            continue
        if name == "ts_ms":
            diff.append(f"ts is {utc(stored)} in the stored event, {utc(value)} here")
        else:
            diff.append(f"{name} is {stored!r} in the stored event, {value!r} here")
    if diff:
        raise RecordConflict(
            f"custody event {row.event_id!r} is already recorded with other details: "
            + "; ".join(diff)
        )


def _refuse_impossible(
    session: Session, shipment_id: str, fields: dict[str, Any], now: int, event_id: str | None
) -> None:
    """RecordConflict if adding the scan introduces a problem the shipment's sequence did not
    have (problems late MQTT scans already caused are not the new scan's fault)."""
    stored = [custody.to_scan(e) for e in custody.events_for(session, shipment_id)]
    order = max((s.order for s in stored), default=0) + 1  # the row id it will get, or later
    new = CustodyScan(
        action=fields["action"],
        asset_id=fields["asset_id"],
        compartment_id=fields["compartment_id"],
        ts_ms=fields["ts_ms"],
        order=order,
        received_ms=now,
        ref="this event" if event_id is None else repr(event_id),
    )
    before = {p.key for p in sequence_problems(stored)}
    introduced = [p for p in sequence_problems([*stored, new]) if p.key not in before]
    if introduced:
        raise RecordConflict(
            f"custody event for shipment {shipment_id!r} cannot have happened: "
            + "; ".join(p.message for p in introduced)
        )
