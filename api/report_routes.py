"""The report endpoints under ``/v1``: a shipment's report as one self-contained HTML page and
as PDF, with the same content (``reports``; docs/api.md).

Both take ``at`` (as the trace) and ``tz``, the IANA time zone the page shows times in
(validated: an unknown zone is a 422). The HTML is served with a Content-Security-Policy that
lets the page load nothing at all: it has nothing to load.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from api.auth import authenticate
from api.params import ShipmentIdPath, check_shipment_id, strict_query
from api.report import UnknownTimeZone, check_zone
from api.routes import AtParam, Res, Resources, _at_ms
from reports import ShipmentReport, render_report_html, render_report_pdf

__all__ = ["REPORT_CSP", "router"]

# Included before api.routes' router: its "/shipments/{shipment_id:path}" would take
# "SHP-1/report.html" for an id.
router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate), Depends(strict_query)])

# Inline styles only; no script, font, image, frame or connection of any kind.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

TzParam = Annotated[
    str,
    Query(
        description="IANA time zone the report shows times in, e.g. Asia/Shanghai",
        max_length=64,
    ),
]


def _report(res: Resources, shipment_id: str, at: str | None, tz: str) -> ShipmentReport:
    check_shipment_id(shipment_id)
    try:
        zone = check_zone(tz)
    except UnknownTimeZone as exc:
        raise HTTPException(422, f"query parameter 'tz': {exc}") from None
    at_ms = _at_ms(res, at)  # the trace's rules for "at" (not after the server's clock)
    return res.reporter.report(shipment_id, at_ms=at_ms, zone=zone, printed_ms=res.clock_ms())


def _filename(shipment_id: str, ext: str) -> str:
    return "report-" + re.sub(r"[^A-Za-z0-9._-]", "_", shipment_id)[:100] + ext


@router.get(
    "/shipments/{shipment_id:path}/report.html",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "the report page"}},
)
def shipment_report_html(
    shipment_id: ShipmentIdPath, res: Res, at: AtParam = None, tz: TzParam = "UTC"
) -> Response:
    """The shipment's report as one self-contained HTML page: facts, verdict and reasons,
    temperature chart, route, legs, excursions with acknowledgements, audit-chain head."""
    html = render_report_html(_report(res, shipment_id, at, tz))
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
    responses={200: {"content": {"application/pdf": {}}, "description": "the report, A4"}},
)
def shipment_report_pdf(
    shipment_id: ShipmentIdPath, res: Res, at: AtParam = None, tz: TzParam = "UTC"
) -> Response:
    """The same report as PDF (A4), for filing."""
    pdf = render_report_pdf(_report(res, shipment_id, at, tz))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{_filename(shipment_id, ".pdf")}"'},
    )
