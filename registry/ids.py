"""Identifiers at the registry's door: what ``Registry`` refuses to store.

The definitions are coldchain.identifiers' (the telemetry contract and the HTTP API use the same
ones): shipment ids are GS1 keys or customer references (``/`` and ``:`` allowed), asset and
compartment ids coldchain Identifiers, actors names without control characters, custody event
ids (write API) GS1 character set 82. A value that does not fit is ``RecordInvalid`` (a
``RecordRejected``) naming the field, the value and what is wrong; rows stored before these
checks were brought in line by migration 0003 (docs/registry.md).
"""

from __future__ import annotations

from coldchain.exceptions import RecordInvalid
from coldchain.identifiers import (
    SHIPMENT_ID_CHARS,
    SHIPMENT_ID_MAX,
    actor_problem,
    identifier_problem,
    shipment_id_problem,
)

__all__ = [
    "EVENT_ID_MAX",
    "require_actor",
    "require_event_id",
    "require_identifier",
    "require_shipment_id",
]

EVENT_ID_MAX = SHIPMENT_ID_MAX
_EVENT_ID_CHARS = frozenset(SHIPMENT_ID_CHARS)


def _reject(name: str, value: object, problem: str) -> RecordInvalid:
    shown = repr(value)
    if len(shown) > 140:
        shown = shown[:137] + "..."
    return RecordInvalid(f"{name} {shown} {problem}")


def require_shipment_id(value: object) -> None:
    """RecordRejected unless ``value`` is a shipment id (coldchain.identifiers.ShipmentId)."""
    if not isinstance(value, str):
        raise _reject("shipment id", value, "is not a string")
    problem = shipment_id_problem(value)
    if problem is not None:
        raise _reject("shipment id", value, problem)


def require_identifier(value: object, name: str) -> None:
    """RecordRejected unless ``value`` is a coldchain Identifier (asset, compartment ids)."""
    if not isinstance(value, str):
        raise _reject(name, value, "is not a string")
    problem = identifier_problem(value)
    if problem is not None:
        raise _reject(name, value, problem)


def require_actor(value: object, name: str = "actor") -> None:
    """RecordRejected unless ``value`` can name who did something (no control characters)."""
    if not isinstance(value, str):
        raise _reject(name, value, "is not a string")
    problem = actor_problem(value)
    if problem is not None:
        raise _reject(name, value, problem)


def require_event_id(value: object, name: str = "event_id") -> None:
    """RecordInvalid unless ``value`` can be a caller's custody event id: 1-128 characters of
    GS1 character set 82, as a shipment id but with no rule on ``/`` (it is never a URL path):
    a UUID, ``urn:uuid:...``, an EPCIS eventID or a business system's own reference."""
    if not isinstance(value, str):
        raise _reject(name, value, "is not a string")
    if not value:
        raise _reject(name, value, "is empty")
    if len(value) > EVENT_ID_MAX:
        raise _reject(
            name, value, f"is {len(value)} characters long; at most {EVENT_ID_MAX} are allowed"
        )
    for i, ch in enumerate(value, start=1):
        if ch not in _EVENT_ID_CHARS:
            raise _reject(
                name,
                value,
                f"contains U+{ord(ch):04X} at position {i}; allowed are letters, digits and "
                "! \" % & ' ( ) * + , - . / : ; < = > ? _ (GS1 character set 82)",
            )
