"""What a principal may see: a regulator key's scope applied to shipments and excursions.

Only regulator keys have a scope (registry/keys.py); a key without one, and every other role,
sees everything. A scoped regulator sees a shipment if its shipper is one of the scope's
shippers or its id one of the scope's shipments. Any other shipment does not exist for it:
404 with the same message as an unknown id (never 403, which would confirm the id exists).

The excursions a regulator lists are those overlapping the monitored custody legs of the
shipments it may see (an excursion on that compartment during that leg), never a listing by
asset: a compartment shared with another shipper's goods must not show that shipper's
excursions outside this shipment's time there.

A shipment registered without a ``shipper`` (before the write API) matches only the explicit
shipment list.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from api.auth import Principal
from api.trace import ShipmentNotFound
from coldchain.exceptions import RecordNotFound
from coldchain.rules.excursion import ExcursionStatus
from registry import ExcursionRecord, Registry, Shipment

__all__ = [
    "in_scope",
    "listing_scope",
    "regulator_excursions",
    "visible_excursion",
    "visible_shipment",
    "visible_shipments",
]

_PAGE = 500  # shipments read per query while filtering a listing by scope


def in_scope(principal: Principal, shipment: object) -> bool:
    """Whether ``principal`` may see ``shipment`` (any record with ``id`` and, if it has one,
    ``shipper``). Pure."""
    scope = principal.scope
    if principal.role != "regulator" or scope is None:
        return True
    if getattr(shipment, "id", None) in scope.shipments:
        return True
    shipper = getattr(shipment, "shipper", None)
    return shipper is not None and shipper in scope.shippers


def _unrestricted(principal: Principal) -> bool:
    return principal.role != "regulator" or principal.scope is None


def visible_shipment(registry: Registry, principal: Principal, shipment_id: str) -> Shipment:
    """The shipment, or ShipmentNotFound (404) if unknown *or* out of the principal's scope."""
    shipment = registry.get_shipment(shipment_id)
    if shipment is None or not in_scope(principal, shipment):
        raise ShipmentNotFound(shipment_id)
    return shipment


def listing_scope(principal: Principal) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The (shippers, shipment ids) a listing is limited to for ``principal``; None: all (any
    role but a scoped regulator). For ``registry.find_shipments(scope=...)``."""
    if _unrestricted(principal):
        return None
    assert principal.scope is not None
    return principal.scope.shippers, principal.scope.shipments


def visible_shipments(
    registry: Registry, principal: Principal, *, after: str | None, limit: int
) -> list[Shipment]:
    """A page of the shipments ``principal`` may see, in id order after ``after``: full pages
    while there are more (a page shorter than ``limit`` is the last, as for everyone)."""
    if _unrestricted(principal):
        return registry.list_shipments(after=after, limit=limit)
    assert principal.scope is not None
    if not principal.scope.shippers:
        # Only an explicit list: fetch those ids, no scan.
        ids = sorted(i for i in principal.scope.shipments if after is None or i > after)
        found = []
        for shipment_id in ids:
            shipment = registry.get_shipment(shipment_id)
            if shipment is not None:
                found.append(shipment)
                if len(found) == limit:
                    break
        return found
    # Shippers: scan in pages and keep what is in scope (bounded memory; a shipper filter in
    # the registry query would spare the scan once shipments have the column).
    found, cursor = [], after
    while len(found) < limit:
        page = registry.list_shipments(after=cursor, limit=_PAGE)
        found += [s for s in page if in_scope(principal, s)]
        if len(page) < _PAGE:
            break
        cursor = page[-1].id
    return found[:limit]


def _all_visible(registry: Registry, principal: Principal) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = visible_shipments(registry, principal, after=cursor, limit=_PAGE)
        ids += [s.id for s in page]
        if len(page) < _PAGE:
            return ids
        cursor = page[-1].id


def _merged(windows: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """Union of [from, to) windows (to None: unbounded) as disjoint, sorted windows."""
    merged: list[tuple[int, int | None]] = []
    for start, end in sorted(windows, key=lambda w: w[0]):
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None or start <= last_end:
                new_end = None if last_end is None or end is None else max(last_end, end)
                merged[-1] = (last_start, new_end)
                continue
        merged.append((start, end))
    return merged


def regulator_excursions(
    registry: Registry,
    principal: Principal,
    *,
    asset_id: str | None = None,
    compartment_id: str | None = None,
    status: ExcursionStatus | Sequence[ExcursionStatus] | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    acknowledged: bool | None = None,
    superseded: bool | None = None,
    limit: int = 1000,
) -> list[ExcursionRecord]:
    """Excursions overlapping the monitored custody legs of the shipments ``principal`` may
    see, within [from_ms, to_ms) and the filters, oldest first (as ``find_excursions``).

    One registry query per disjoint window of legs on a compartment; each returns its oldest
    ``limit``, so the oldest ``limit`` of their union is the right answer.
    """
    windows: dict[tuple[str, str], list[tuple[int, int | None]]] = defaultdict(list)
    ids = _all_visible(registry, principal)
    for start in range(0, len(ids), _PAGE):
        for legs in registry.custody_legs_of(ids[start : start + _PAGE]).values():
            for leg in legs:
                if leg.compartment_id is None:
                    continue  # a dock: unmonitored, no compartment's excursions apply
                if asset_id is not None and leg.asset_id != asset_id:
                    continue
                if compartment_id is not None and leg.compartment_id != compartment_id:
                    continue
                lo = leg.from_ms if from_ms is None else max(leg.from_ms, from_ms)
                hi = (
                    leg.to_ms
                    if to_ms is None
                    else to_ms
                    if leg.to_ms is None
                    else min(leg.to_ms, to_ms)
                )
                if hi is None or lo < hi:
                    windows[(leg.asset_id, leg.compartment_id)].append((lo, hi))
    found: dict[str, ExcursionRecord] = {}
    for (asset, compartment), spans in windows.items():
        for lo, hi in _merged(spans):
            for record in registry.find_excursions(
                asset_id=asset,
                compartment_id=compartment,
                from_ms=lo,
                to_ms=hi,
                status=status,
                acknowledged=acknowledged,
                superseded=superseded,
                limit=limit,
            ):
                found[record.excursion.id] = record
    ordered = sorted(found.values(), key=lambda r: (r.excursion.start_ms, r.excursion.id))
    return ordered[:limit]


def visible_excursion(registry: Registry, principal: Principal, excursion_id: str) -> None:
    """RecordNotFound (404, as for an unknown id) unless ``principal`` may see the excursion:
    every role but a regulator sees all; a regulator only one overlapping the custody legs of
    shipments it may see (as ``regulator_excursions`` lists them)."""
    if principal.role != "regulator":
        return
    record = registry.get_excursion(excursion_id)
    if record is not None:
        exc = record.excursion
        end = None if exc.end_ms is None else exc.end_ms + 1
        seen = regulator_excursions(
            registry,
            principal,
            asset_id=exc.asset_id,
            compartment_id=exc.compartment_id,
            from_ms=exc.start_ms,
            to_ms=end,
            limit=10_000,
        )
        if any(r.excursion.id == excursion_id for r in seen):
            return
    raise RecordNotFound("excursion", excursion_id)
