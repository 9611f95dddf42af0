"""The write endpoints under ``/v1`` for business systems and operators, and the listings that
go with them. Every route calls the service layer (services/), which the CLI calls too.

Roles (docs/api.md, "Roles"): integrator and admin write shipments and custody events; operator
and admin acknowledge excursions; every role reads (a regulator never writes; a scoped one sees
only its shipments and their excursions, 404 for the others: api/scope.py). Who acted is the
caller's ``api.auth.Principal`` (its key id) as api/identity.py maps it. Errors are
``{"detail": ...}``: 401 no or unknown key, 403 role, 404 unknown record in the path, 409
contradicts what is stored, 422 a field or parameter is invalid. Idempotent creates answer 201
the first time and 200 with the stored record when the same body comes again.

Shipment ids may contain ``/``: ``PATCH /v1/shipments/{id}`` and ``POST .../{id}/cancel`` take
the id as a path. No POST route exists for a bare shipment path, so ``POST /v1/shipments/A/B/
cancel`` is always "cancel shipment A/B". Custody events are posted to a collection of their
own (``/v1/custody-events``), so no shipment id is ever ambiguous with a sub-resource.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from api.auth import Authed, authenticate
from api.identity import acting
from api.params import (
    SHIPMENT_ID_SCHEMA,
    ExcursionIdPath,
    ShipmentIdPath,
    ShipmentIdQuery,
    check_identifier,
    check_shipment_id,
    strict_query,
)
from api.responses import V1_ERRORS, error_responses
from api.schemas import (
    AcknowledgementOut,
    CustodyEventOut,
    ExcursionOut,
    ShipmentDetailOut,
    ShipmentOut,
    ShipmentStatus,
)
from api.scope import listing_scope, visible_excursion, visible_shipment
from api.times import DATE_TIME, parse_time_param
from registry import Registry
from services import (
    AcknowledgementCreate,
    CustodyEventCreate,
    Principal,
    Services,
    ShipmentCancel,
    ShipmentCreate,
    ShipmentFilters,
    ShipmentPatch,
)

__all__ = ["router", "shipment_location"]


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _registry(request: Request) -> Registry:
    return request.app.state.resources.registry  # type: ignore[no-any-return]


Svc = Annotated[Services, Depends(_services)]
Integrator = Annotated[Principal, Depends(acting("admin", "integrator"))]
Operator = Annotated[Principal, Depends(acting("admin", "operator"))]

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(authenticate), Depends(strict_query)],
    responses=V1_ERRORS,
)


def shipment_location(shipment_id: str) -> str:
    """The path of a shipment (``/`` kept; ``%``, ``?``, ``#`` and the like encoded)."""
    return "/v1/shipments/" + quote(shipment_id, safe="/:")


def _created(response: Response, created: bool, location: str | None = None) -> None:
    if created:
        if location is not None:
            response.headers["Location"] = location
    else:
        response.status_code = 200


# -- shipments -------------------------------------------------------------------------------


@router.post(
    "/shipments",
    status_code=201,
    response_model=ShipmentDetailOut,
    tags=["shipments"],
    responses={
        200: {"model": ShipmentDetailOut, "description": "the same body again: as stored"},
        **error_responses(400, 401, 403, 409, 422, 503),
    },
)
def create_shipment(
    body: ShipmentCreate, svc: Svc, who: Integrator, response: Response
) -> dict[str, Any]:
    """Register a shipment. Idempotent on ``id``: the same body again answers 200 with the
    shipment as stored now; the same id with other fields is a 409 naming each difference."""
    view, created = svc.shipments.create(body, who)
    _created(response, created, shipment_location(body.id))
    return view


@router.get(
    "/shipments",
    response_model=list[ShipmentOut],
    tags=["shipments"],
    responses={
        200: {
            "description": "a page of shipments in id order",
            "headers": {
                "Link": {
                    "description": 'the next page, rel="next" (absent on the last page)',
                    "schema": {"type": "string"},
                },
                "X-Next-Cursor": {
                    "description": "the next page's cursor (absent on the last page)",
                    "schema": {"type": "string"},
                },
            },
        },
        **error_responses(401, 422, 503),
    },
)
def list_shipments(
    request: Request,
    response: Response,
    svc: Svc,
    principal: Authed,
    shipper: Annotated[str | None, Query(max_length=200, description="exactly")] = None,
    status: ShipmentStatus | None = None,
    profile: Annotated[str | None, Query(max_length=64)] = None,
    created_from: Annotated[
        str | None, DATE_TIME, Query(description="registered at or after (RFC 3339)")
    ] = None,
    created_to: Annotated[
        str | None, DATE_TIME, Query(description="registered before (RFC 3339)")
    ] = None,
    active_from: Annotated[
        str | None,
        DATE_TIME,
        Query(description="in custody at some time from (RFC 3339)"),
    ] = None,
    active_to: Annotated[
        str | None,
        DATE_TIME,
        Query(description="in custody at some time before (RFC 3339)"),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="X-Next-Cursor of the previous page")
    ] = None,
    after: Annotated[
        str | None,
        SHIPMENT_ID_SCHEMA,
        Query(description="last id of the previous page (older paging)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Shipments matching every filter given, in id order, with where each one is now. A page
    with more after it carries ``Link: <...>; rel="next"`` and ``X-Next-Cursor``."""
    if after is not None:
        check_shipment_id(after, where="query", name="after")

    def t(name: str, value: str | None) -> int | None:
        return None if value is None else parse_time_param(name, value)

    filters = ShipmentFilters(
        shipper=shipper,
        status=status,
        profile=profile,
        created_from_ms=t("created_from", created_from),
        created_to_ms=t("created_to", created_to),
        active_from_ms=t("active_from", active_from),
        active_to_ms=t("active_to", active_to),
    )
    # A scoped regulator lists only the shipments of its scope (api/scope.py).
    page = svc.shipments.list(
        filters, cursor=cursor, after=after, limit=limit, scope=listing_scope(principal)
    )
    if page.next_cursor is not None:
        following = request.url.remove_query_params("after").include_query_params(
            cursor=page.next_cursor
        )
        response.headers["Link"] = f'<{following}>; rel="next"'
        response.headers["X-Next-Cursor"] = page.next_cursor
    return page.items


@router.patch(
    "/shipments/{shipment_id:path}",
    response_model=ShipmentDetailOut,
    tags=["shipments"],
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
def update_shipment(
    shipment_id: ShipmentIdPath, body: ShipmentPatch, svc: Svc, who: Integrator
) -> dict[str, Any]:
    """Change the fields given (a JSON merge patch; ``application/json`` or
    ``application/merge-patch+json``). Always: description, consignee, destination,
    quantity + unit, planned departure/arrival; until custody begins: profile, origin; never:
    shipper (409). A cancelled shipment takes no update (409)."""
    check_shipment_id(shipment_id)
    view, _ = svc.shipments.update(shipment_id, body, who)
    return view


@router.post(
    "/shipments/{shipment_id:path}/cancel",
    response_model=ShipmentDetailOut,
    tags=["shipments"],
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
def cancel_shipment(
    shipment_id: ShipmentIdPath,
    svc: Svc,
    who: Integrator,
    body: Annotated[ShipmentCancel | None, Body()] = None,
) -> dict[str, Any]:
    """Cancel a shipment no one has taken custody of (409 once custody began). Cancelling
    again answers the cancelled shipment. A cancelled shipment refuses custody events."""
    check_shipment_id(shipment_id)
    view, _ = svc.shipments.cancel(shipment_id, body or ShipmentCancel(), who)
    return view


# -- custody events --------------------------------------------------------------------------


@router.post(
    "/custody-events",
    status_code=201,
    response_model=CustodyEventOut,
    tags=["custody"],
    responses={
        200: {"model": CustodyEventOut, "description": "the same event again: as stored"},
        **error_responses(400, 401, 403, 409, 422, 503),
    },
)
def record_custody_event(
    body: CustodyEventCreate, svc: Svc, who: Integrator, response: Response
) -> dict[str, Any]:
    """Record a load, unload, handover or delivery, validated as an MQTT handheld scan is (ids,
    the fleet's assets and compartments, at most 300 s ahead of the server's clock, at most 30
    days old: 422). Idempotent on ``event_id`` (same body: 200; other fields: 409). A sequence
    that cannot have happened (unload of what is not loaded, anything after the delivery) or a
    cancelled shipment: 409 saying why."""
    view, created = svc.custody.record(body, who)
    _created(response, created)
    return view


@router.get(
    "/custody-events",
    response_model=list[CustodyEventOut],
    tags=["custody"],
    responses=error_responses(401, 404, 422, 503),
)
def list_custody_events(
    request: Request,
    svc: Svc,
    principal: Authed,
    shipment_id: ShipmentIdQuery,
) -> list[dict[str, Any]]:
    """A shipment's custody events (from MQTT and from this API) in device-time order."""
    check_shipment_id(shipment_id, where="query", name="shipment_id")
    visible_shipment(_registry(request), principal, shipment_id)  # 404 off a regulator's scope
    return svc.custody.list(shipment_id)


# -- excursions ------------------------------------------------------------------------------


@router.get(
    "/excursions/{excursion_id}",
    response_model=ExcursionOut,
    tags=["excursions"],
    responses=error_responses(401, 404, 422, 503),
)
def get_excursion(
    request: Request, excursion_id: ExcursionIdPath, svc: Svc, principal: Authed
) -> dict[str, Any]:
    """One excursion with its latest acknowledgement and the link to all of them."""
    check_identifier(excursion_id, where="path", name="excursion_id")
    visible_excursion(_registry(request), principal, excursion_id)
    return svc.excursions.get(excursion_id)


@router.post(
    "/excursions/{excursion_id}/acknowledgements",
    status_code=201,
    response_model=AcknowledgementOut,
    tags=["excursions"],
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
def acknowledge_excursion(
    excursion_id: ExcursionIdPath, body: AcknowledgementCreate, svc: Svc, who: Operator
) -> dict[str, Any]:
    """Acknowledge an excursion: comment, root cause and product disposition; who (the key's
    id, never the key) and when (the server's clock) are recorded, in the history and the
    audit log. Another acknowledgement appends (``seq`` 2, 3, ...), never overwrites."""
    check_identifier(excursion_id, where="path", name="excursion_id")
    return svc.excursions.acknowledge(excursion_id, body, who)


@router.get(
    "/excursions/{excursion_id}/acknowledgements",
    response_model=list[AcknowledgementOut],
    tags=["excursions"],
    responses=error_responses(401, 404, 422, 503),
)
def excursion_acknowledgements(
    request: Request, excursion_id: ExcursionIdPath, svc: Svc, principal: Authed
) -> list[dict[str, Any]]:
    """Every acknowledgement of the excursion, oldest first."""
    check_identifier(excursion_id, where="path", name="excursion_id")
    visible_excursion(_registry(request), principal, excursion_id)
    return svc.excursions.history(excursion_id)
