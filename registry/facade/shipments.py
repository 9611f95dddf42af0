"""``Registry`` methods for shipments."""

from __future__ import annotations

from coldchain.exceptions import RecordRejected
from registry import audit, custody
from registry.facade.base import RegistryBase, as_payload, require_text
from registry.ids import require_shipment_id
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
    ) -> tuple[Shipment, bool]:
        """Create a shipment; (shipment, created). Repeating an identical create is a no-op;
        a different one with the same id is RecordRejected, as is an id that is not a
        shipment id (coldchain.identifiers)."""
        require_shipment_id(shipment_id)
        require_text(profile, "profile")
        with self._write("creating a shipment") as (session, head, now):
            existing = session.get(ShipmentRow, shipment_id)
            if existing is not None:
                old = custody.shipment_to_record(existing)
                same = (old.profile, old.description, old.origin, old.destination) == (
                    profile,
                    description,
                    origin,
                    destination,
                )
                if not same:
                    raise RecordRejected(f"shipment {shipment_id!r} exists with other details")
                return old, False
            row = ShipmentRow(
                id=shipment_id,
                profile=profile,
                description=description,
                origin=origin,
                destination=destination,
                created_ms=now if created_ms is None else created_ms,
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

    def get_shipment(self, shipment_id: str) -> Shipment | None:
        with self._read("reading a shipment") as session:
            row = session.get(ShipmentRow, shipment_id)
            return None if row is None else custody.shipment_to_record(row)

    def list_shipments(self, *, after: str | None = None, limit: int = 100) -> list[Shipment]:
        """Shipments in id order; pass the last id seen as ``after`` for the next page."""
        with self._read("listing shipments") as session:
            return custody.list_shipments(session, after=after, limit=limit)
