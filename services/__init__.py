"""The write side of traceability, one service layer for the HTTP API and the CLI.

Shipments (create idempotently, update, cancel, list), custody events from business systems
(validated as MQTT handheld scans are, impossible sequences refused), excursion
acknowledgements (a history, audited). ``build_services`` wires them (api/app.py's lifespan,
``open_services`` for the CLI); inputs are services.models' bodies, outputs services.views'
JSON-able dicts; errors are coldchain.exceptions' ``RecordInvalid`` (422), ``RecordConflict``
(409) and ``RecordNotFound`` (404). Who acts is a ``Principal``. See docs/api.md.
"""

from services.bootstrap import Services, build_services, open_services
from services.custody import CustodyLimits, CustodyService
from services.excursions import ExcursionService
from services.models import (
    AcknowledgementCreate,
    CustodyEventCreate,
    ShipmentCancel,
    ShipmentCreate,
    ShipmentPatch,
    parse,
)
from services.principal import Principal, cli_principal
from services.shipments import ShipmentFilters, ShipmentPage, ShipmentService

__all__ = [
    "AcknowledgementCreate",
    "CustodyEventCreate",
    "CustodyLimits",
    "CustodyService",
    "ExcursionService",
    "Principal",
    "Services",
    "ShipmentCancel",
    "ShipmentCreate",
    "ShipmentFilters",
    "ShipmentPage",
    "ShipmentPatch",
    "ShipmentService",
    "build_services",
    "cli_principal",
    "open_services",
    "parse",
]
