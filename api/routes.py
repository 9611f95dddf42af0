"""The read endpoints under ``/v1``: shipments, their traces (JSON and CSV), excursions.

Every route needs an authenticated caller (any role: they are all reads); a regulator key's
scope hides the shipments outside it (404) and limits its excursions to its shipments' legs
(api/scope.py), and its traces are recorded in the read chain (api/audit.py). Times in JSON stay
epoch ms UTC as everywhere in coldchain (``*_ms``); query parameters take RFC 3339 with an
offset; the CSV writes RFC 3339 UTC. Routes are plain ``def``: the registry and InfluxDB
clients block, so FastAPI runs them in its thread pool.

Shipment ids may contain ``/`` (api/params.py), so the shipment routes take the id as a path and
the sub-resources (``/trace``, ``/trace.csv``) are declared before the shipment itself: the
first route that matches wins, and an id never ends in ``/trace`` or ``/trace.csv``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from api.audit import AuditRead
from api.auth import Authed, authenticate
from api.export import trace_to_csv
from api.params import (
    AssetIdQuery,
    CompartmentIdQuery,
    ShipmentIdPath,
    check_identifier,
    check_shipment_id,
    strict_query,
)
from api.scope import regulator_excursions, visible_shipment, visible_shipments
from api.times import parse_time_param, rfc3339
from api.trace import TraceService, trace_to_dict
from coldchain.rules.excursion import ExcursionStatus
from registry import CustodyLeg, ExcursionRecord, Registry, Shipment

__all__ = ["Resources", "router"]


@dataclass(frozen=True, slots=True)
class Resources:
    """What the routes use; set on ``app.state.resources`` by the app's lifespan."""

    registry: Registry
    tracer: TraceService
    clock_ms: Callable[[], int]


def _resources(request: Request) -> Resources:
    return request.app.state.resources  # type: ignore[no-any-return]


Res = Annotated[Resources, Depends(_resources)]
router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate), Depends(strict_query)])


def _shipment(s: Shipment, legs: list[CustodyLeg]) -> dict[str, Any]:
    # Legs end only at a delivery; a shipment with an open last leg is still in custody there.
    here = legs[-1] if legs and legs[-1].to_ms is None else None
    status = "registered" if not legs else "in_custody" if here is not None else "delivered"
    custody: dict[str, Any] | None = None
    if here is not None:
        custody = {
            "asset_id": here.asset_id,
            "compartment_id": here.compartment_id,
            "from_ms": here.from_ms,
        }
    return asdict(s) | {"status": status, "custody": custody}


@router.get("/shipments")
def list_shipments(
    res: Res,
    principal: Authed,
    after: Annotated[str | None, Query(description="last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Shipments in id order, with where each one is now."""
    if after is not None:
        check_shipment_id(after, where="query", name="after")
    shipments = visible_shipments(res.registry, principal, after=after, limit=limit)
    legs = res.registry.custody_legs_of([s.id for s in shipments])
    return [_shipment(s, legs[s.id]) for s in shipments]


AtParam = Annotated[
    str | None,
    Query(
        description="RFC 3339 with an offset: the time that closes a leg still open and "
        "judges custody gaps (default: now)"
    ),
]


# A trace is of what has happened: "at" may run ahead of the server's clock by as much as
# ingest lets a device clock run ahead (COLDCHAIN_VALIDATION__MAX_FUTURE_SKEW_S's default).
AT_FUTURE_TOLERANCE_MS = 300_000


def _at_ms(res: Resources, at: str | None) -> int:
    now_ms = res.clock_ms()
    if at is None:
        return now_ms
    at_ms = parse_time_param("at", at)
    if at_ms > now_ms + AT_FUTURE_TOLERANCE_MS:
        raise HTTPException(
            422,
            f"query parameter 'at': {at!r} is {(at_ms - now_ms) // 1000} s after the server's "
            f"clock ({rfc3339(now_ms)}); a trace is as of a time that has come (at most "
            f"{AT_FUTURE_TOLERANCE_MS // 1000} s ahead, for clock differences)",
        )
    return at_ms


@router.get("/shipments/{shipment_id:path}/trace")
def shipment_trace(
    shipment_id: ShipmentIdPath,
    res: Res,
    principal: Authed,
    audit_read: AuditRead,
    at: AtParam = None,
) -> dict[str, Any]:
    """Custody legs x temperatures x excursions, and a verdict."""
    check_shipment_id(shipment_id)
    at_ms = _at_ms(res, at)
    visible_shipment(res.registry, principal, shipment_id)
    # The read entry is appended while the trace is computed, committed before any answer.
    with audit_read.begin(principal, "trace", shipment_id, at_ms=at_ms):
        body = trace_to_dict(res.tracer.trace(shipment_id, at_ms)) | {"at_ms": at_ms}
    return body


@router.get("/shipments/{shipment_id:path}/trace.csv", response_class=Response)
def shipment_trace_csv(
    shipment_id: ShipmentIdPath,
    res: Res,
    principal: Authed,
    audit_read: AuditRead,
    at: AtParam = None,
) -> Response:
    """The trace's legs as CSV, one row per leg (a sortable spreadsheet, as FSMA 204 asks)."""
    check_shipment_id(shipment_id)
    at_ms = _at_ms(res, at)
    visible_shipment(res.registry, principal, shipment_id)
    with audit_read.begin(principal, "trace.csv", shipment_id, at_ms=at_ms):
        body = trace_to_csv(res.tracer.trace(shipment_id, at_ms), at_ms)
    filename = "trace-" + re.sub(r"[^A-Za-z0-9._-]", "_", shipment_id)[:100] + ".csv"
    return Response(
        body,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/shipments/{shipment_id:path}")
def get_shipment(shipment_id: ShipmentIdPath, res: Res, principal: Authed) -> dict[str, Any]:
    """One shipment, with all its custody legs."""
    check_shipment_id(shipment_id)
    shipment = visible_shipment(res.registry, principal, shipment_id)
    legs = res.registry.custody_legs(shipment_id)
    return _shipment(shipment, legs) | {"legs": [asdict(leg) for leg in legs]}


def _excursion(r: ExcursionRecord) -> dict[str, Any]:
    return asdict(r.excursion) | {
        "updated_ms": r.updated_ms,
        "acknowledged": r.acknowledged,
        "ack_by": r.ack_by,
        "ack_ms": r.ack_ms,
        "ack_comment": r.ack_comment,
    }


@router.get("/excursions")
def list_excursions(
    res: Res,
    principal: Authed,
    asset_id: AssetIdQuery = None,
    compartment_id: CompartmentIdQuery = None,
    status: ExcursionStatus | None = None,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339 with an offset")] = None,
    to: Annotated[str | None, Query(description="RFC 3339 with an offset")] = None,
    include_superseded: bool = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """Excursions touching [from, to) (an open one extends forever), oldest first; for a
    regulator, only those overlapping the custody legs of shipments it may see."""
    if asset_id is not None:
        check_identifier(asset_id, name="asset_id")
    if compartment_id is not None:
        check_identifier(compartment_id, name="compartment_id")
    from_ms = None if from_ is None else parse_time_param("from", from_)
    to_ms = None if to is None else parse_time_param("to", to)
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise HTTPException(422, f"query parameter 'from' ({from_}) must be before 'to' ({to})")
    # Superseded excursions never happened as reported (late data moved them); hidden unless
    # an auditor asks.
    superseded = None if include_superseded else False
    find = res.registry.find_excursions
    if principal.role == "regulator":
        find = partial(regulator_excursions, res.registry, principal)
    found = find(
        asset_id=asset_id,
        compartment_id=compartment_id,
        status=status,
        from_ms=from_ms,
        to_ms=to_ms,
        superseded=superseded,
        limit=limit,
    )
    return [_excursion(r) for r in found]
