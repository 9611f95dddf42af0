"""``Registry`` methods for custody events and the legs derived from them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from coldchain.exceptions import RecordRejected
from registry import audit, custody
from registry.facade.base import RegistryBase, as_payload
from registry.ids import require_actor, require_identifier, require_shipment_id
from registry.models import CustodyEventRow, ShipmentRow
from registry.records import CustodyAction, CustodyEvent, CustodyLeg, CustodySource

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
    ) -> tuple[CustodyEvent, bool]:
        """Record a load/unload/handover scan; (event, created).

        Idempotent on (shipment_id, action, ts_ms, asset_id): a redelivered scan returns the
        stored event with created False and writes nothing. A "duplicate" that names another
        compartment or actor contradicts the stored scan: RecordRejected. So is an unknown
        shipment, and ids or an actor that break coldchain.identifiers' rules.
        """
        if action not in _ACTIONS:
            raise RecordRejected(f"custody action {action!r} is not one of {_ACTIONS}")
        if source not in _SOURCES:
            raise RecordRejected(f"custody source {source!r} is not one of {_SOURCES}")
        require_shipment_id(shipment_id)
        require_identifier(asset_id, "asset_id")
        if compartment_id is not None:
            require_identifier(compartment_id, "compartment_id")
        require_actor(actor)
        with self._write("recording a custody event") as (session, head, now):
            if session.get(ShipmentRow, shipment_id) is None:
                raise RecordRejected(f"custody event for unknown shipment {shipment_id!r}")
            existing = session.execute(
                select(CustodyEventRow).where(
                    CustodyEventRow.shipment_id == shipment_id,
                    CustodyEventRow.action == action,
                    CustodyEventRow.ts_ms == ts_ms,
                    CustodyEventRow.asset_id == asset_id,
                )
            ).scalar_one_or_none()
            if existing is not None:
                if (existing.compartment_id, existing.actor) != (compartment_id, actor):
                    raise RecordRejected(
                        f"custody {action} of {shipment_id!r} on {asset_id!r} at {ts_ms} is "
                        f"already recorded with compartment {existing.compartment_id!r} and "
                        f"actor {existing.actor!r}"
                    )
                return custody.event_to_record(existing), False
            row = CustodyEventRow(
                shipment_id=shipment_id,
                action=action,
                asset_id=asset_id,
                compartment_id=compartment_id,
                ts_ms=ts_ms,
                actor=actor,
                source=source,
                received_ms=now if received_ms is None else received_ms,
            )
            session.add(row)
            session.flush()
            record = custody.event_to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=actor,
                action=f"custody.{action}",
                entity="shipment",
                entity_id=shipment_id,
                payload=as_payload(record),
            )
            return record, True

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
