"""Request parameters at the HTTP boundary: identifiers, and no unknown or repeated query
parameters. Every mistake is a 422 naming the parameter, the value and what is wrong.

Identifiers follow ``coldchain.identifiers`` (the same rules as the telemetry contract and the
registry): a shipment id is a GS1 key or customer reference, ``/`` included, taken by the
routes as a path (``{shipment_id:path}``), so ``/v1/shipments/PO-2026/0042`` and
``/v1/shipments/PO-2026%2F0042`` name the same shipment. Asset and compartment ids are
coldchain Identifiers.

A query parameter the endpoint does not have (``?form=`` for ``?from=``) or a single-valued one
given twice is refused rather than ignored: an ignored filter silently widens an answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import WithJsonSchema

from coldchain.identifiers import (
    IDENTIFIER_MAX,
    IDENTIFIER_PATTERN,
    SHIPMENT_ID_MAX,
    SHIPMENT_ID_PATTERN,
    identifier_problem,
    shipment_id_problem,
)

__all__ = [
    "IDENTIFIER_SCHEMA",
    "SHIPMENT_ID_SCHEMA",
    "AssetIdQuery",
    "CompartmentIdQuery",
    "ExcursionIdPath",
    "ShipmentIdPath",
    "ShipmentIdQuery",
    "check_identifier",
    "check_shipment_id",
    "path_control_character",
    "strict_query",
]


def path_control_character(path: str) -> str | None:
    """What is wrong with a (percent-decoded) request path holding a control character, or
    None. Routing never sees such a path: a route pattern would not match it (a 404 that hides
    the mistake), or, worse, its ``$`` would match before a trailing newline."""
    for i, ch in enumerate(path, start=1):
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return (
                f"request path {path[:140]!r} contains U+{ord(ch):04X} (a control character) "
                f"at position {i}; no id of this API has one"
            )
    return None


def _refuse(where: str, name: str, value: str, problem: str) -> HTTPException:
    shown = value if len(value) <= 140 else value[:137] + "..."
    return HTTPException(422, f"{where} parameter {name!r}: {shown!r} {problem}")


def check_shipment_id(value: str, *, where: str = "path", name: str = "shipment_id") -> str:
    """``value`` if it is a shipment id, else a 422 saying what is wrong with it."""
    problem = shipment_id_problem(value)
    if problem is not None:
        raise _refuse(where, name, value, f"is not a shipment id: it {problem}")
    return value


def check_identifier(value: str, *, where: str = "query", name: str) -> str:
    """``value`` if it is a coldchain Identifier, else a 422 saying what is wrong with it."""
    problem = identifier_problem(value)
    if problem is not None:
        raise _refuse(where, name, value, f"is not an identifier: it {problem}")
    return value


_SHIPMENT_DOC = (
    "GS1 key or customer reference: 1-128 characters of GS1 character set 82, '/' allowed "
    "(percent-encode '%', '?' and '#'); no empty, '.' or '..' segment; the last segment is "
    "not a sub-resource's name (coldchain.identifiers)"
)
# The parameters' OpenAPI schemas state the id rules (the checks above enforce them, with a
# message naming what is wrong): a client or a schema-driven test knows what is valid.
SHIPMENT_ID_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": SHIPMENT_ID_MAX,
        "pattern": SHIPMENT_ID_PATTERN,
    }
)
IDENTIFIER_SCHEMA = WithJsonSchema(
    {"type": "string", "minLength": 1, "maxLength": IDENTIFIER_MAX, "pattern": IDENTIFIER_PATTERN}
)
ShipmentIdPath = Annotated[str, SHIPMENT_ID_SCHEMA, Path(description=_SHIPMENT_DOC)]
ShipmentIdQuery = Annotated[str, SHIPMENT_ID_SCHEMA, Query(description="a shipment id")]
ExcursionIdPath = Annotated[str, IDENTIFIER_SCHEMA, Path(description="an excursion's id")]
AssetIdQuery = Annotated[
    str | None, IDENTIFIER_SCHEMA, Query(description="asset id (an identifier)")
]
CompartmentIdQuery = Annotated[
    str | None, IDENTIFIER_SCHEMA, Query(description="compartment id (an identifier)")
]


def _query_aliases(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_aliases(sub)
    return names


def _known_query_params(route: APIRoute) -> frozenset[str]:
    # Computed per request (a handful of fields): a cache keyed by route would outlive an app.
    return frozenset(_query_aliases(route.dependant))


def strict_query(request: Request) -> None:
    """Router dependency: 422 for a query parameter the endpoint does not take, or one given
    more than once (every parameter of this API is single-valued)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _known_query_params(route)
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in known:
            hint = (
                f"this endpoint takes {', '.join(sorted(known))}"
                if known
                else "this endpoint takes no query parameters"
            )
            raise HTTPException(422, f"unknown query parameter {name[:60]!r}; {hint}")
        if name in seen:
            raise HTTPException(422, f"query parameter {name!r} is given more than once")
        seen.add(name)
