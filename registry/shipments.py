"""Shipments, session level: the fields a create sets and an update may change, the checks at
the registry's door, the comparison behind an idempotent create, keyset-paged listing, and the
custody-derived state. The ``Registry`` facade (registry/facade/shipments.py) owns
transactions and audit entries.

Which fields change (docs/api.md, "Shipments"):

- ``MUTABLE``: description, consignee, destination, quantity and unit, planned departure and
  arrival: business facts a shipper corrects or learns late;
- ``MUTABLE_BEFORE_CUSTODY``: profile and origin, until the first custody scan (afterwards the
  trace and the custody record depend on them);
- never: the id and the shipper (whose shipment it is decides who may see it), and
  ``created_ms``; status changes only through custody scans and ``cancel``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordConflict, RecordInvalid
from registry import custody
from registry.audit import canonical_json
from registry.models import PLACE, SHIPMENT_STATUSES, ShipmentRow
from registry.records import Shipment

__all__ = [
    "CREATE_FIELDS",
    "DESCRIPTION_MAX",
    "MUTABLE",
    "MUTABLE_BEFORE_CUSTODY",
    "check_fields",
    "check_text",
    "create_body",
    "differences",
    "find",
    "refresh_state",
    "refuse_if_cancelled",
    "stored_create_fields",
    "utc",
]

# What a create sets, besides the id: the fields an idempotent create compares.
CREATE_FIELDS = (
    "profile",
    "description",
    "shipper",
    "consignee",
    "quantity",
    "unit",
    "origin",
    "destination",
    "planned_departure_ms",
    "planned_arrival_ms",
)
MUTABLE = (
    "description",
    "consignee",
    "destination",
    "quantity",
    "unit",
    "planned_departure_ms",
    "planned_arrival_ms",
)
MUTABLE_BEFORE_CUSTODY = ("profile", "origin")

DESCRIPTION_MAX = 4000
UNIT_MAX = 32
_TEXT_LIMITS = {
    "profile": 64,
    "shipper": PLACE,
    "consignee": PLACE,
    "origin": PLACE,
    "destination": PLACE,
    "description": DESCRIPTION_MAX,
    "unit": UNIT_MAX,
}
# Fields that may be empty ("" = not given); the others must name something.
_MAY_BE_EMPTY = frozenset({"description", "consignee", "origin", "destination", "shipper"})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(ms: int | None) -> str:
    """RFC 3339 UTC of epoch ms, for messages ("unknown" for None)."""
    if ms is None:
        return "unknown"
    t = _EPOCH + timedelta(milliseconds=ms)
    return t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds").replace("+00:00", "Z")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_fields(fields: Mapping[str, Any]) -> None:
    """RecordInvalid naming the first field of ``fields`` (a subset of CREATE_FIELDS, as a
    create or an update would store them) that the registry cannot store: text too long, with
    control characters (``description`` may hold line breaks) or blank where it must name
    something; a quantity that is not a positive finite number; a quantity without its unit
    or a unit without a quantity; a planned arrival before the planned departure."""
    for name, value in fields.items():
        if name not in CREATE_FIELDS:
            raise RecordInvalid(f"{name!r} is not a shipment field")
        limit = _TEXT_LIMITS.get(name)
        if limit is not None and value is not None:
            check_text(
                name,
                value,
                limit=limit,
                may_be_empty=name in _MAY_BE_EMPTY,
                multiline=name == "description",
            )
    quantity = fields.get("quantity")
    if quantity is not None and (
        isinstance(quantity, bool)
        or not isinstance(quantity, int | float)
        or not math.isfinite(quantity)
        or quantity <= 0
    ):
        raise RecordInvalid(f"quantity {_shown(quantity)} is not a positive finite number")
    if "quantity" in fields and "unit" in fields and (quantity is None) != (fields["unit"] is None):
        raise RecordInvalid(
            "quantity and unit go together: give both (e.g. 12 and 'pallets') or neither"
        )
    dep, arr = fields.get("planned_departure_ms"), fields.get("planned_arrival_ms")
    for name in ("planned_departure_ms", "planned_arrival_ms"):
        value = fields.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RecordInvalid(f"{name} {_shown(value)} is not epoch milliseconds")
    if dep is not None and arr is not None and arr < dep:
        raise RecordInvalid(
            f"the planned arrival ({utc(arr)}) is before the planned departure ({utc(dep)})"
        )


def check_text(
    name: str, value: object, *, limit: int, may_be_empty: bool = True, multiline: bool = False
) -> None:
    """RecordInvalid unless ``value`` is text of at most ``limit`` characters without control
    characters (line breaks and tabs allowed if ``multiline``); "" only if ``may_be_empty``,
    and never blank otherwise."""
    if not isinstance(value, str):
        raise RecordInvalid(f"{name} {_shown(value)} is not text")
    if len(value) > limit:
        raise RecordInvalid(f"{name} is {len(value)} characters long; at most {limit} are allowed")
    if not value.strip() and (value or not may_be_empty):
        raise RecordInvalid(f"{name} {_shown(value)} is empty or blank")
    # Line breaks and tabs belong in free text; nowhere else (CSV cells, logs, reports).
    allowed = "\n\r\t" if multiline else ""
    for i, ch in enumerate(value, start=1):
        if ch not in allowed and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            raise RecordInvalid(
                f"{name} {_shown(value)} contains U+{ord(ch):04X} (a control character) "
                f"at position {i}"
            )


def create_body(fields: Mapping[str, Any]) -> str:
    """Canonical JSON of a create's fields (CREATE_FIELDS; missing ones as their defaults)."""
    return canonical_json({name: fields.get(name, _default(name)) for name in CREATE_FIELDS})


_NULLABLE = frozenset({"quantity", "unit", "planned_departure_ms", "planned_arrival_ms"})


def _default(name: str) -> Any:
    return None if name in _NULLABLE else ""


def stored_create_fields(row: ShipmentRow) -> dict[str, Any]:
    """The fields the shipment was created with (its stored create request; for a shipment
    registered before revision 0007 without one, its columns)."""
    if row.create_body is not None:
        stored: dict[str, Any] = json.loads(row.create_body)
        return {name: stored.get(name, _default(name)) for name in CREATE_FIELDS}
    return {name: getattr(row, name) for name in CREATE_FIELDS}


def differences(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> list[str]:
    """One phrase per field that differs, in CREATE_FIELDS order, named as the request names
    it and valued as JSON (times in RFC 3339): ``profile is "chilled" in the stored shipment,
    "frozen" here``."""
    out = []
    for name in CREATE_FIELDS:
        old, new = stored.get(name, _default(name)), sent.get(name, _default(name))
        if old != new:
            label = name.removesuffix("_ms")
            out.append(
                f"{label} is {_json(name, old)} in the stored shipment, {_json(name, new)} here"
            )
    return out


def _json(name: str, value: Any) -> str:
    if name.endswith("_ms") and isinstance(value, int):
        value = utc(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def refresh_state(session: Session, row: ShipmentRow) -> None:
    """Rewrite ``status`` and the custody span from the shipment's scans (in the caller's
    transaction, after a scan was added). A cancelled shipment keeps its status."""
    if row.status == "cancelled":
        return
    legs = custody.derive_legs(custody.events_for(session, row.id))
    row.status, row.custody_from_ms, row.custody_to_ms = custody.shipment_state(legs)


def refuse_if_cancelled(row: ShipmentRow, doing: str) -> None:
    """RecordConflict if the shipment is cancelled: nothing more happens to it."""
    if row.status == "cancelled":
        raise RecordConflict(
            f"shipment {row.id!r} was cancelled (at {utc(row.cancelled_ms)} by "
            f"{row.cancelled_by!r}): it accepts no {doing}"
        )


def find(
    session: Session,
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
    """Shipments matching every filter given, in id order, from the first id after ``after``
    (keyset paging: stable while shipments are added or change status).

    ``scope`` (shippers, shipment ids): only shipments of those shippers or with those ids (a
    regulator key's scope, api/scope.py); None: all.

    ``created_*``: ``created_ms`` in [from, to). ``active_*``: custody overlapping [from, to):
    it began before ``to`` and had not ended by ``from`` (a shipment never in custody is never
    active). RecordInvalid for a status that does not exist.
    """
    if status is not None and status not in SHIPMENT_STATUSES:
        raise RecordInvalid(f"status {status!r} is not one of {', '.join(SHIPMENT_STATUSES)}")
    query = select(ShipmentRow)
    conditions = []
    if shipper is not None:
        conditions.append(ShipmentRow.shipper == shipper)
    if status is not None:
        conditions.append(ShipmentRow.status == status)
    if profile is not None:
        conditions.append(ShipmentRow.profile == profile)
    if created_from_ms is not None:
        conditions.append(ShipmentRow.created_ms >= created_from_ms)
    if created_to_ms is not None:
        conditions.append(ShipmentRow.created_ms < created_to_ms)
    if active_from_ms is not None or active_to_ms is not None:
        conditions.append(ShipmentRow.custody_from_ms.is_not(None))
    if active_to_ms is not None:
        conditions.append(ShipmentRow.custody_from_ms < active_to_ms)
    if active_from_ms is not None:
        conditions.append(
            or_(ShipmentRow.custody_to_ms.is_(None), ShipmentRow.custody_to_ms > active_from_ms)
        )
    if scope is not None:
        shippers, ids = scope
        conditions.append(or_(ShipmentRow.shipper.in_(shippers), ShipmentRow.id.in_(ids)))
    if after is not None:
        conditions.append(ShipmentRow.id > after)
    if conditions:
        query = query.where(and_(*conditions))
    rows = session.execute(query.order_by(ShipmentRow.id).limit(limit)).scalars()
    return [custody.shipment_to_record(r) for r in rows]
