"""``Registry`` methods for shipments: create (idempotent on the id), update, cancel, listing.

Field rules and which fields may change: registry/shipments.py. Every change writes one audit
entry (``shipment.create``, ``shipment.update`` with the changed fields before and after,
``shipment.cancel``); a call that changes nothing writes none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from coldchain.exceptions import RecordConflict, RecordInvalid, RecordNotFound
from registry import audit, custody, shipments
from registry.facade.base import RegistryBase, as_payload, require_text
from registry.ids import require_actor, require_shipment_id
from registry.models import ShipmentRow
from registry.records import Shipment

__all__ = ["ShipmentMethods"]


class ShipmentMethods(RegistryBase):
    def create_shipment(
        self,
        shipment_id: str,
        *,
        profile: str,
        actor: str,
        description: str = "",
        origin: str = "",
        destination: str = "",
        created_ms: int | None = None,
        shipper: str = "",
        consignee: str = "",
        quantity: float | None = None,
        unit: str | None = None,
        planned_departure_ms: int | None = None,
        planned_arrival_ms: int | None = None,
    ) -> tuple[Shipment, bool]:
        """Create a shipment; (shipment, created).

        Idempotent on the id: repeating the create with the same fields returns the stored
        shipment (as it is now, updates included) with created False and writes nothing; the
        same id with other fields is RecordConflict naming each differing field (compared with
        the original create, not with later updates). RecordInvalid for an id that is not a
        shipment id (coldchain.identifiers) or a field the registry cannot store
        (registry.shipments.check_fields). ``profile`` is not checked against the configured
        profiles here (the service layer does: the registry does not load them).
        """
        require_shipment_id(shipment_id)
        require_text(profile, "profile")
        require_actor(actor)
        fields: dict[str, Any] = {
            "profile": profile,
            "description": description,
            "shipper": shipper,
            "consignee": consignee,
            "quantity": None if quantity is None else float(quantity),
            "unit": unit,
            "origin": origin,
            "destination": destination,
            "planned_departure_ms": planned_departure_ms,
            "planned_arrival_ms": planned_arrival_ms,
        }
        shipments.check_fields(fields)
        with self._write("creating a shipment") as (session, head, now):
            existing = session.get(ShipmentRow, shipment_id)
            if existing is not None:
                diff = shipments.differences(shipments.stored_create_fields(existing), fields)
                if diff:
                    raise RecordConflict(
                        f"shipment {shipment_id!r} already exists with other details: "
                        + "; ".join(diff)
                    )
                return custody.shipment_to_record(existing), False
            created = now if created_ms is None else created_ms
            row = ShipmentRow(
                id=shipment_id,
                created_ms=created,
                status="registered",
                updated_ms=created,
                create_body=shipments.create_body(fields),
                **fields,
            )
            session.add(row)
            session.flush()
            record = custody.shipment_to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action="shipment.create",
                entity="shipment",
                entity_id=shipment_id,
                payload=as_payload(record),
            )
            return record, True

    def update_shipment(
        self, shipment_id: str, changes: Mapping[str, Any], *, actor: str
    ) -> tuple[Shipment, bool]:
        """Set the given fields (a JSON merge patch: None clears a nullable field);
        (shipment, changed). Values equal to the stored ones change nothing and write no audit
        entry.

        RecordNotFound: no such shipment. RecordInvalid: a field that is not a shipment field
        or a value that cannot be stored (also when combined with the stored values, e.g. a
        quantity without a unit). RecordConflict: a field that may not change (the shipper,
        the profile and origin once custody began), or a cancelled shipment.
        """
        require_shipment_id(shipment_id)
        require_actor(actor)
        unknown = [k for k in changes if k not in shipments.CREATE_FIELDS]
        if unknown:
            can = ", ".join(shipments.MUTABLE + shipments.MUTABLE_BEFORE_CUSTODY)
            raise RecordInvalid(
                f"{', '.join(repr(k) for k in unknown)}: not shipment fields that can be "
                f"updated; these can: {can}"
            )
        with self._write("updating a shipment") as (session, head, now):
            row = session.get(ShipmentRow, shipment_id)
            if row is None:
                raise RecordNotFound("shipment", shipment_id)
            shipments.refuse_if_cancelled(row, "updates")
            changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
            for name in changed:
                if name in shipments.MUTABLE:
                    continue
                if name in shipments.MUTABLE_BEFORE_CUSTODY:
                    if row.status != "registered":
                        raise RecordConflict(
                            f"{name} of shipment {shipment_id!r} cannot change once custody "
                            f"began (status {row.status!r}, "
                            f"since {shipments.utc(row.custody_from_ms)})"
                        )
                    continue
                raise RecordConflict(
                    f"{name} of shipment {shipment_id!r} cannot change (it decides whose "
                    "shipment it is); register a new shipment instead"
                )
            if not changed:
                return custody.shipment_to_record(row), False
            after = {k: getattr(row, k) for k in shipments.CREATE_FIELDS} | changed
            if changed.get("quantity") is not None:
                after["quantity"] = changed["quantity"] = float(changed["quantity"])
            shipments.check_fields(after)
            before = {k: getattr(row, k) for k in changed}
            for name, value in changed.items():
                setattr(row, name, value)
            row.updated_ms = now
            session.flush()
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action="shipment.update",
                entity="shipment",
                entity_id=shipment_id,
                payload={"before": before, "after": changed},
            )
            return custody.shipment_to_record(row), True

    def cancel_shipment(
        self, shipment_id: str, *, actor: str, reason: str = ""
    ) -> tuple[Shipment, bool]:
        """Cancel a shipment that is not in custody yet; (shipment, changed). Cancelling a
        cancelled shipment again changes nothing. A cancelled shipment refuses custody scans
        and updates.

        RecordNotFound: no such shipment. RecordConflict: custody began (unload and deliver
        it, or record what happened, instead). RecordInvalid: a reason with control
        characters or over 4000 characters.
        """
        require_shipment_id(shipment_id)
        require_actor(actor)
        shipments.check_text("reason", reason, limit=shipments.DESCRIPTION_MAX, multiline=True)
        with self._write("cancelling a shipment") as (session, head, now):
            row = session.get(ShipmentRow, shipment_id)
            if row is None:
                raise RecordNotFound("shipment", shipment_id)
            if row.status == "cancelled":
                return custody.shipment_to_record(row), False
            if row.status != "registered":
                raise RecordConflict(
                    f"shipment {shipment_id!r} cannot be cancelled: it is {row.status} "
                    f"(custody since {shipments.utc(row.custody_from_ms)}); only a shipment "
                    "no one has taken custody of can be"
                )
            row.status = "cancelled"
            row.cancelled_ms, row.cancelled_by, row.cancel_reason = now, actor, reason
            row.updated_ms = now
            session.flush()
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action="shipment.cancel",
                entity="shipment",
                entity_id=shipment_id,
                payload={"reason": reason, "cancelled_ms": now},
            )
            return custody.shipment_to_record(row), True

    def get_shipment(self, shipment_id: str) -> Shipment | None:
        with self._read("reading a shipment") as session:
            row = session.get(ShipmentRow, shipment_id)
            return None if row is None else custody.shipment_to_record(row)

    def list_shipments(self, *, after: str | None = None, limit: int = 100) -> list[Shipment]:
        """Shipments in id order; pass the last id seen as ``after`` for the next page."""
        with self._read("listing shipments") as session:
            return custody.list_shipments(session, after=after, limit=limit)

    def find_shipments(
        self,
        *,
        shipper: str | None = None,
        status: str | None = None,
        profile: str | None = None,
        created_from_ms: int | None = None,
        created_to_ms: int | None = None,
        active_from_ms: int | None = None,
        active_to_ms: int | None = None,
        after: str | None = None,
        limit: int = 100,
        scope: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> list[Shipment]:
        """Shipments matching every filter given, in id order after ``after``, within
        ``scope`` (shippers, ids) if given; see registry.shipments.find."""
        with self._read("listing shipments") as session:
            return shipments.find(
                session,
                shipper=shipper,
                status=status,
                profile=profile,
                created_from_ms=created_from_ms,
                created_to_ms=created_to_ms,
                active_from_ms=active_from_ms,
                active_to_ms=active_to_ms,
                after=after,
                limit=limit,
                scope=scope,
            )
