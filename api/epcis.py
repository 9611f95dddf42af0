"""A shipment's GS1 EPCIS 2.0 export: ``GET /v1/shipments/{id}/epcis`` and the service behind it
(also used by ``coldchain demo --report-dir``), built from the same trace as the trace and the
report (``coldchain.epcis``, docs/epcis.md).

    exporter = EpcisExporter(tracer, registry, fleet, settings.epcis)
    document = exporter.document("SHP-1", at_ms=now, zone="Asia/Shanghai", creation_ms=now)

The route takes ``at`` (as the trace) and ``tz`` (the IANA zone the event times are written
in, with their offsets) and answers ``application/ld+json``. A regulator key sees only the
shipments in its scope (404 for the others, api/scope.py), and its exports are recorded in the
read chain before the answer leaves (api/audit.py, read kind ``epcis``).
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from api.audit import AuditRead
from api.auth import Authed, authenticate
from api.params import ShipmentIdPath, check_shipment_id, strict_query
from api.report import UnknownTimeZone, check_zone
from api.responses import V1_ERRORS, error_responses
from api.routes import AtParam, Res, _at_ms
from api.scope import visible_shipment
from api.trace import ShipmentNotFound, TraceService
from coldchain.epcis import ShipmentRecord, epcis_document
from coldchain.exceptions import ConfigError
from coldchain.fleet import Fleet
from coldchain.settings import EpcisSettings
from registry import Registry

__all__ = ["EPCIS_MEDIA_TYPE", "EpcisExporter", "JsonLdResponse", "ZoneNotWholeMinutes", "router"]

EPCIS_MEDIA_TYPE = "application/ld+json"


class JsonLdResponse(JSONResponse):
    """JSON-LD, the media type of an EPCIS 2.0 JSON document (EPCIS 2.0, 12.1)."""

    media_type = EPCIS_MEDIA_TYPE


class ZoneNotWholeMinutes(ValueError):
    """EPCIS writes ``eventTimeZoneOffset`` as ``+hh:mm``: a zone whose offset at some event is
    not whole minutes (local mean time before ~1900) cannot be used."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        super().__init__(
            f"time zone {zone!r} has an offset of seconds at some event of this shipment (local "
            "mean time); EPCIS offsets are whole minutes: ask for UTC"
        )


class EpcisExporter:
    """EPCIS documents from the trace's backends. ``settings`` gives the base URI of coldchain's
    own identifiers and the SSCC company prefix length; a bad one raises ConfigError here, at
    start-up, rather than on the first export."""

    def __init__(
        self, tracer: TraceService, registry: Registry, fleet: Fleet, settings: EpcisSettings
    ) -> None:
        self._tracer = tracer
        self._registry = registry
        self._fleet = fleet
        self._base_uri = settings.base_uri
        self._prefix_length = settings.sscc_company_prefix_length
        try:  # checks the options once (coldchain.epcis raises ConfigError naming them)
            epcis_document(
                ShipmentRecord("check", "check", 0),
                base_uri=self._base_uri,
                sscc_company_prefix_length=self._prefix_length,
            )
        except ConfigError as exc:
            option = "COLDCHAIN_EPCIS__" + exc.option.removeprefix("epcis ").upper()
            raise ConfigError(option, exc.value, exc.reason) from None

    def document(
        self, shipment_id: str, *, at_ms: int, zone: str = "UTC", creation_ms: int | None = None
    ) -> dict[str, Any]:
        """The shipment as of ``at_ms`` (device time, epoch ms UTC) as an ``EPCISDocument``
        (a JSON-able dict) with times in ``zone`` (IANA); ``creationDate`` is ``creation_ms``
        (default ``at_ms``). The legs, statistics and excursions are exactly the trace's.
        Raises UnknownTimeZone, ZoneNotWholeMinutes, ShipmentNotFound, TraceRefused,
        StoreError, ConfigError (an unknown profile)."""
        zone = check_zone(zone)
        shipment = self._registry.get_shipment(shipment_id)
        if shipment is None:
            raise ShipmentNotFound(shipment_id)
        trace = self._tracer.trace(shipment_id, at_ms)
        record = ShipmentRecord.from_trace(
            trace,
            self._registry.custody_events(shipment_id),
            as_of_ms=at_ms,
            shipper=shipment.shipper or None,
            consignee=shipment.consignee or None,
        )
        try:
            return epcis_document(
                record,
                base_uri=self._base_uri,
                fleet=self._fleet,
                tz=ZoneInfo(zone),
                sscc_company_prefix_length=self._prefix_length,
                creation_ms=creation_ms,
            )
        except ConfigError as exc:
            if exc.option == "epcis tz":
                raise ZoneNotWholeMinutes(zone) from None
            raise


def _exporter(request: Request) -> EpcisExporter:
    return request.app.state.epcis  # type: ignore[no-any-return]


Exporter = Annotated[EpcisExporter, Depends(_exporter)]

# Included before api.routes' router: its "/shipments/{shipment_id:path}" would take
# "SHP-1/epcis" for an id.
router = APIRouter(
    prefix="/v1", dependencies=[Depends(authenticate), Depends(strict_query)], responses=V1_ERRORS
)

TzParam = Annotated[
    str,
    Query(
        description="IANA time zone the event times are written in (with their offset), e.g. "
        "Asia/Shanghai",
        max_length=64,
    ),
]


@router.get(
    "/shipments/{shipment_id:path}/epcis",
    response_class=JsonLdResponse,
    responses={
        200: {
            "description": "a GS1 EPCIS 2.0 EPCISDocument (JSON-LD), valid against GS1's "
            "JSON Schema; every eventID is the event's CBV 2.0 hash (docs/epcis.md)",
            "content": {EPCIS_MEDIA_TYPE: {"schema": {"type": "object"}}},
        },
        **error_responses(401, 404, 422),
    },
)
def shipment_epcis(
    shipment_id: ShipmentIdPath,
    res: Res,
    principal: Authed,
    audit_read: AuditRead,
    exporter: Exporter,
    at: AtParam = None,
    tz: TzParam = "UTC",
) -> dict[str, Any]:
    """The shipment as a GS1 EPCIS 2.0 ``EPCISDocument``: an ObjectEvent per custody scan
    (CBV bizStep and disposition) and a sensor_reporting event per monitored leg with its
    min/max/mean and ALARM_CONDITION when an excursion touched it."""
    check_shipment_id(shipment_id)
    try:
        zone = check_zone(tz)
    except UnknownTimeZone as exc:
        raise HTTPException(422, f"query parameter 'tz': {exc}") from None
    at_ms = _at_ms(res, at)  # the trace's rules for "at"
    visible_shipment(res.registry, principal, shipment_id)  # 404 off a regulator's scope
    with audit_read.begin(principal, "epcis", shipment_id, at_ms=at_ms, tz=zone):
        try:
            return exporter.document(
                shipment_id, at_ms=at_ms, zone=zone, creation_ms=res.clock_ms()
            )
        except ZoneNotWholeMinutes as exc:
            raise HTTPException(422, f"query parameter 'tz': {exc}") from None
