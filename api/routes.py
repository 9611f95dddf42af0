"""The read endpoints under ``/v1``: shipments, their traces (JSON and CSV), excursions. (The
shipment listing and the write endpoints are in api/routes_write.py.)

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
from dataclasses import dataclass
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
from api.report import ReportService
from api.responses import V1_ERRORS, error_responses
from api.schemas import ExcursionOut, ShipmentDetailOut
from api.scope import regulator_excursions, visible_shipment
from api.times import DATE_TIME, parse_time_param, rfc3339
from api.trace import TraceService, detail_to_dict
from coldchain.rules.excursion import ExcursionStatus
from coldchain.series import (
    DEFAULT_BUCKETS_PER_LEG,
    MAX_BUCKETS_PER_LEG,
    MAX_RESOLUTION_S,
    MIN_RESOLUTION_S,
)
from registry import Registry
from services.views import excursion_view, shipment_view

__all__ = ["AtParam", "Res", "Resources", "router"]


@dataclass(frozen=True, slots=True)
class Resources:
    """What the routes use; set on ``app.state.resources`` by the app's lifespan."""

    registry: Registry
    tracer: TraceService
    clock_ms: Callable[[], int]
    reporter: ReportService


def _resources(request: Request) -> Resources:
    return request.app.state.resources  # type: ignore[no-any-return]


Res = Annotated[Resources, Depends(_resources)]
router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(authenticate), Depends(strict_query)],
    responses=V1_ERRORS,
)


AtParam = Annotated[
    str | None,
    DATE_TIME,
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


ResolutionParam = Annotated[
    int | None,
    Query(
        ge=MIN_RESOLUTION_S,
        le=MAX_RESOLUTION_S,
        description="bucket width of the temperature series and GPS track, seconds; no leg may "
        f"get more than {MAX_BUCKETS_PER_LEG} buckets (default: about "
        f"{DEFAULT_BUCKETS_PER_LEG} for the longest leg)",
    ),
]


@router.get("/shipments/{shipment_id:path}/trace", responses=error_responses(401, 404, 422, 503))
def shipment_trace(
    shipment_id: ShipmentIdPath,
    res: Res,
    principal: Authed,
    audit_read: AuditRead,
    at: AtParam = None,
    resolution_s: ResolutionParam = None,
) -> dict[str, Any]:
    """Custody legs x temperatures x excursions, and a verdict; per leg the downsampled
    product and air temperature (min/max/mean per bucket) and, for vehicles, the GPS track."""
    check_shipment_id(shipment_id)
    at_ms = _at_ms(res, at)
    visible_shipment(res.registry, principal, shipment_id)
    # The read entry is appended while the trace is computed, committed before any answer.
    with audit_read.begin(principal, "trace", shipment_id, at_ms=at_ms):
        body = detail_to_dict(res.tracer.detail(shipment_id, at_ms, resolution_s=resolution_s))
    return body


@router.get(
    "/shipments/{shipment_id:path}/trace.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per custody leg"},
        **error_responses(401, 404, 422, 503),
    },
)
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


@router.get(
    "/shipments/{shipment_id:path}",
    response_model=ShipmentDetailOut,
    responses=error_responses(401, 404, 422, 503),
)
def get_shipment(shipment_id: ShipmentIdPath, res: Res, principal: Authed) -> dict[str, Any]:
    """One shipment, with all its custody legs."""
    check_shipment_id(shipment_id)
    shipment = visible_shipment(res.registry, principal, shipment_id)
    return shipment_view(shipment, res.registry.custody_legs(shipment_id), with_legs=True)


@router.get(
    "/excursions", response_model=list[ExcursionOut], responses=error_responses(401, 422, 503)
)
def list_excursions(
    res: Res,
    principal: Authed,
    asset_id: AssetIdQuery = None,
    compartment_id: CompartmentIdQuery = None,
    status: ExcursionStatus | None = None,
    from_: Annotated[
        str | None, DATE_TIME, Query(alias="from", description="RFC 3339 with an offset")
    ] = None,
    to: Annotated[str | None, DATE_TIME, Query(description="RFC 3339 with an offset")] = None,
    include_superseded: bool = False,
    acknowledged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """Excursions touching [from, to) (an open one extends forever), oldest first, each with
    its latest acknowledgement and the link to all of them (``acknowledgements_url``); for a
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
        acknowledged=acknowledged,
        superseded=superseded,
        limit=limit,
    )
    latest = res.registry.latest_acknowledgements([r.excursion.id for r in found])
    return [excursion_view(r, latest.get(r.excursion.id)) for r in found]
