"""The report endpoints under ``/v1``: a shipment's report as one self-contained HTML page and
as PDF, with the same content (``reports``; docs/api.md).

Both take ``at`` (as the trace) and ``tz``, the IANA time zone the page shows times in
(validated: an unknown zone is a 422). The HTML is served with a Content-Security-Policy that
lets the page load nothing at all: it has nothing to load. A regulator key sees only the
shipments in its scope (404 for the others, api/scope.py), and its reports are recorded in the
read chain before the answer leaves (api/audit.py), as its traces are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from api.audit import AuditRead
from api.auth import Authed, Principal, authenticate
from api.params import ShipmentIdPath, check_shipment_id, strict_query
from api.report import UnknownTimeZone, check_zone
from api.responses import V1_ERRORS, error_responses
from api.routes import AtParam, Res, Resources, _at_ms
from api.scope import visible_shipment
from reports import ShipmentReport, render_report_html, render_report_pdf

__all__ = ["REPORT_CSP", "router"]

_R = TypeVar("_R")

# Included before api.routes' router: its "/shipments/{shipment_id:path}" would take
# "SHP-1/report.html" for an id.
router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(authenticate), Depends(strict_query)],
    responses=V1_ERRORS,
)

# Inline styles only; no script, font, image, frame or connection of any kind.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

TzParam = Annotated[
    str,
    Query(
        description="IANA time zone the report shows times in, e.g. Asia/Shanghai",
        max_length=64,
    ),
]


def _rendered(
    res: Resources,
    principal: Principal,
    audit_read: AuditRead,
    shipment_id: str,
    at: str | None,
    tz: str,
    what: str,
    render: Callable[[ShipmentReport], _R],
) -> _R:
    """The report of a shipment ``principal`` may see, rendered by ``render``; a regulator's
    read is recorded (``what``) before the answer leaves, a failed one as an attempt."""
    check_shipment_id(shipment_id)
    try:
        zone = check_zone(tz)
    except UnknownTimeZone as exc:
        raise HTTPException(422, f"query parameter 'tz': {exc}") from None
    at_ms = _at_ms(res, at)  # the trace's rules for "at" (not after the server's clock)
    visible_shipment(res.registry, principal, shipment_id)  # 404 off a regulator's scope
    with audit_read.begin(principal, what, shipment_id, at_ms=at_ms, tz=zone):
        report = res.reporter.report(shipment_id, at_ms=at_ms, zone=zone, printed_ms=res.clock_ms())
        return render(report)


def _filename(shipment_id: str, ext: str) -> str:
    return "report-" + re.sub(r"[^A-Za-z0-9._-]", "_", shipment_id)[:100] + ext


@router.get(
    "/shipments/{shipment_id:path}/report.html",
    response_class=Response,
    responses={
        200: {"content": {"text/html": {}}, "description": "the report page"},
        **error_responses(401, 404, 422, 503),
    },
)
def shipment_report_html(
    shipment_id: ShipmentIdPath,
    res: Res,
    principal: Authed,
    audit_read: AuditRead,
    at: AtParam = None,
    tz: TzParam = "UTC",
) -> Response:
    """The shipment's report as one self-contained HTML page: facts, verdict and reasons,
    temperature chart, route, legs, excursions with acknowledgements, audit-chain head."""
    html = _rendered(
        res, principal, audit_read, shipment_id, at, tz, "report.html", render_report_html
    )
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": REPORT_CSP,
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{_filename(shipment_id, ".html")}"',
        },
    )


@router.get(
    "/shipments/{shipment_id:path}/report.pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the report, A4"},
        **error_responses(401, 404, 422, 503),
    },
)
def shipment_report_pdf(
    shipment_id: ShipmentIdPath,
    res: Res,
    principal: Authed,
    audit_read: AuditRead,
    at: AtParam = None,
    tz: TzParam = "UTC",
) -> Response:
    """The same report as PDF (A4), for filing."""
    pdf = _rendered(
        res, principal, audit_read, shipment_id, at, tz, "report.pdf", render_report_pdf
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{_filename(shipment_id, ".pdf")}"'},
    )
