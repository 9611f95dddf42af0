"""Excursions for people: list and show them with their latest acknowledgement, acknowledge
one (appended to its history, never overwriting), read the history. Every acknowledgement is
in the hash-chained audit log (Registry.record_acknowledgement)."""

from __future__ import annotations

from typing import Any

from coldchain.exceptions import RecordNotFound
from coldchain.rules.excursion import ExcursionStatus
from registry import Registry
from services.models import AcknowledgementCreate
from services.principal import Principal
from services.views import acknowledgement_view, excursion_view

__all__ = ["ExcursionService"]


class ExcursionService:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def acknowledge(
        self, excursion_id: str, body: AcknowledgementCreate, who: Principal
    ) -> dict[str, Any]:
        """The new acknowledgement's view (``seq`` says which one it is); RecordNotFound."""
        ack, _ = self._registry.record_acknowledgement(
            excursion_id,
            by=who.actor,
            role=who.role,
            key_id=who.key_id,
            comment=body.comment,
            root_cause=body.root_cause,
            disposition=body.disposition,
        )
        return acknowledgement_view(ack)

    def history(self, excursion_id: str) -> list[dict[str, Any]]:
        """Every acknowledgement, oldest first; RecordNotFound."""
        return [
            acknowledgement_view(a) for a in self._registry.excursion_acknowledgements(excursion_id)
        ]

    def get(self, excursion_id: str) -> dict[str, Any]:
        """The excursion with its latest acknowledgement; RecordNotFound."""
        record = self._registry.get_excursion(excursion_id)
        if record is None:
            raise RecordNotFound("excursion", excursion_id)
        latest = self._registry.latest_acknowledgements([excursion_id]).get(excursion_id)
        return excursion_view(record, latest)

    def list(
        self,
        *,
        asset_id: str | None = None,
        compartment_id: str | None = None,
        status: ExcursionStatus | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        acknowledged: bool | None = None,
        include_superseded: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Excursions touching [from_ms, to_ms), oldest first, with their latest
        acknowledgement; superseded ones only if asked."""
        found = self._registry.find_excursions(
            asset_id=asset_id,
            compartment_id=compartment_id,
            status=status,
            from_ms=from_ms,
            to_ms=to_ms,
            acknowledged=acknowledged,
            superseded=None if include_superseded else False,
            limit=limit,
        )
        latest = self._registry.latest_acknowledgements([r.excursion.id for r in found])
        return [excursion_view(r, latest.get(r.excursion.id)) for r in found]
