"""Shipments: create (idempotent on the id), update, cancel, show, list with filters and an
opaque cursor. The rules on fields and states are the registry's (registry/shipments.py); this
layer adds what needs configuration (the product profile must be configured) and the views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from coldchain.exceptions import RecordInvalid, RecordNotFound
from coldchain.rules import ProfileSet
from registry import Registry
from services.cursor import decode_cursor, encode_cursor
from services.models import ShipmentCancel, ShipmentCreate, ShipmentPatch
from services.principal import Principal
from services.views import shipment_view

__all__ = ["ShipmentFilters", "ShipmentPage", "ShipmentService"]

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ShipmentFilters:
    """Listing filters; every one given must hold. Times are epoch ms UTC, ranges [from, to):
    ``created_*`` on when the shipment was registered, ``active_*`` on its custody span."""

    shipper: str | None = None
    status: str | None = None
    profile: str | None = None
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    active_from_ms: int | None = None
    active_to_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ShipmentPage:
    """One page of a listing; ``next_cursor`` None: the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class ShipmentService:
    def __init__(self, registry: Registry, profiles: ProfileSet) -> None:
        self._registry = registry
        self._profiles = profiles

    def _check_profile(self, name: str) -> None:
        if name not in self._profiles:
            raise RecordInvalid(
                f"profile {name!r} is not configured on this server; configured: "
                f"{', '.join(self._profiles.names)}"
            )

    def _view(self, shipment_id: str, *, with_legs: bool = True) -> dict[str, Any]:
        shipment = self._registry.get_shipment(shipment_id)
        if shipment is None:
            raise RecordNotFound("shipment", shipment_id)
        return shipment_view(
            shipment, self._registry.custody_legs(shipment_id), with_legs=with_legs
        )

    def create(self, body: ShipmentCreate, who: Principal) -> tuple[dict[str, Any], bool]:
        """(the shipment's view, created). The same body again: (view as it is now, False);
        the same id with other fields: RecordConflict naming them; an unconfigured profile:
        RecordInvalid."""
        self._check_profile(body.profile)
        _, created = self._registry.create_shipment(
            body.id, actor=who.actor, **body.registry_fields()
        )
        return self._view(body.id), created

    def update(
        self, shipment_id: str, patch: ShipmentPatch, who: Principal
    ) -> tuple[dict[str, Any], bool]:
        """(view, changed); rules: Registry.update_shipment."""
        changes = patch.registry_changes()
        if "profile" in changes:
            self._check_profile(changes["profile"])
        _, changed = self._registry.update_shipment(shipment_id, changes, actor=who.actor)
        return self._view(shipment_id), changed

    def cancel(
        self, shipment_id: str, body: ShipmentCancel, who: Principal
    ) -> tuple[dict[str, Any], bool]:
        """(view, changed); rules: Registry.cancel_shipment."""
        _, changed = self._registry.cancel_shipment(
            shipment_id, actor=who.actor, reason=body.reason
        )
        return self._view(shipment_id), changed

    def get(self, shipment_id: str) -> dict[str, Any]:
        """The shipment with all its custody legs; RecordNotFound."""
        return self._view(shipment_id)

    def list(
        self,
        filters: ShipmentFilters,
        *,
        cursor: str | None = None,
        after: str | None = None,
        limit: int = 100,
        scope: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> ShipmentPage:
        """Shipments matching ``filters`` in id order, ``limit`` (1..1000) per page, from
        ``cursor`` (a previous page's ``next_cursor``, made for the same filters) or ``after``
        (an id: the listing's older paging). ``scope`` (shippers, shipment ids): only those
        shipments (a regulator key's scope); None: all."""
        if not 1 <= limit <= MAX_PAGE:
            raise RecordInvalid(f"limit {limit} is not between 1 and {MAX_PAGE}")
        for name in ("created", "active"):
            lo, hi = getattr(filters, f"{name}_from_ms"), getattr(filters, f"{name}_to_ms")
            if lo is not None and hi is not None and lo >= hi:
                raise RecordInvalid(f"{name}_from must be before {name}_to")
        if cursor is not None and after is not None:
            raise RecordInvalid("give cursor or after, not both")
        key = filters.as_dict()
        start = decode_cursor(cursor, key) if cursor is not None else after
        found = self._registry.find_shipments(**key, after=start, limit=limit + 1, scope=scope)
        page, more = found[:limit], len(found) > limit
        legs = self._registry.custody_legs_of([s.id for s in page])
        items = [shipment_view(s, legs[s.id]) for s in page]
        return ShipmentPage(items, encode_cursor(page[-1].id, key) if more else None)
