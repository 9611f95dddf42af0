"""Identifiers at the registry's door: what ``Registry`` refuses to store.

The definitions are coldchain.identifiers' (the telemetry contract and the HTTP API use the same
ones): shipment ids are GS1 keys or customer references (``/`` and ``:`` allowed), asset and
compartment ids coldchain Identifiers, actors names without control characters. A value that
does not fit is ``RecordRejected`` naming the field, the value and what is wrong; rows stored
before these checks were brought in line by migration 0003 (docs/registry.md).
"""

from __future__ import annotations

from coldchain.exceptions import RecordRejected
from coldchain.identifiers import actor_problem, identifier_problem, shipment_id_problem

__all__ = ["require_actor", "require_identifier", "require_shipment_id"]


def _reject(name: str, value: object, problem: str) -> RecordRejected:
    shown = repr(value)
    if len(shown) > 140:
        shown = shown[:137] + "..."
    return RecordRejected(f"{name} {shown} {problem}")


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
