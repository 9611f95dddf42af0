"""Response models of the write endpoints (and the listings they share), for the OpenAPI schema
and to check that answers are what the schema says. Fields and meanings: services/views.py,
registry/records.py. Times are epoch milliseconds UTC (``*_ms``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AcknowledgementOut",
    "CustodyEventOut",
    "CustodyPlace",
    "ExcursionOut",
    "LegOut",
    "ShipmentDetailOut",
    "ShipmentOut",
    "ShipmentStatus",
]

ShipmentStatus = Literal["registered", "in_custody", "delivered", "cancelled"]
Disposition = Literal["pending", "quarantined", "released", "returned", "destroyed", "not_affected"]


class CustodyPlace(BaseModel):
    asset_id: str
    compartment_id: str | None = Field(description="None: on the asset's dock, unmonitored")
    from_ms: int


class LegOut(BaseModel):
    asset_id: str
    compartment_id: str | None = Field(description="None: on the asset's dock, unmonitored")
    from_ms: int
    to_ms: int | None = Field(description="None: still there")


class ShipmentOut(BaseModel):
    id: str
    profile: str
    description: str
    origin: str
    destination: str
    created_ms: int
    shipper: str
    consignee: str
    quantity: float | None
    unit: str | None
    planned_departure_ms: int | None
    planned_arrival_ms: int | None
    status: ShipmentStatus
    custody_from_ms: int | None = Field(description="device time of the first custody scan")
    custody_to_ms: int | None = Field(description="end of custody (delivery); None while open")
    cancelled_ms: int | None
    cancelled_by: str | None
    cancel_reason: str | None
    updated_ms: int
    custody: CustodyPlace | None = Field(description="where it is now; None unless in custody")


class ShipmentDetailOut(ShipmentOut):
    legs: list[LegOut] = Field(description="every custody leg, in time order")


class CustodyEventOut(BaseModel):
    id: int = Field(description="the registry's row id")
    event_id: str | None = Field(description="the caller's id; None for MQTT scans")
    shipment_id: str
    action: Literal["load", "unload", "handover", "deliver"]
    asset_id: str
    compartment_id: str | None
    ts_ms: int = Field(description="device time of the event")
    actor: str = Field(description="who did it at the dock")
    source: Literal["api", "mqtt"]
    received_ms: int = Field(description="when the registry recorded it (wall clock)")


class AcknowledgementOut(BaseModel):
    excursion_id: str
    seq: int = Field(description="1 for the first acknowledgement of the excursion, 2, ...")
    ack_ms: int = Field(description="when it was recorded (the server's clock)")
    by: str = Field(description="who: key:<key id> (never the key), or the CLI's user")
    role: str | None
    key_id: str | None
    comment: str
    root_cause: str
    disposition: Disposition | None = Field(
        description="None only for acknowledgements recorded before this API existed"
    )


class ExcursionOut(BaseModel):
    # The rules engine may add fields to an excursion: they pass through.
    model_config = ConfigDict(extra="allow")

    id: str
    asset_id: str
    compartment_id: str
    rule: str
    kind: str
    severity: str
    status: str
    start_ms: int
    end_ms: int | None
    detected_ms: int
    detected_late: bool
    peak_c: float | None
    degree_minutes: float
    profile: str
    detail: str
    superseded: bool
    out_of_range_s: float | None
    returned_ms: int | None
    updated_ms: int
    acknowledged: bool
    ack_by: str | None = Field(description="the latest acknowledgement's by")
    ack_ms: int | None
    ack_comment: str | None
    ack_disposition: str | None
    ack_count: int = Field(description="how many acknowledgements there are")
    acknowledgement: AcknowledgementOut | None = Field(description="the latest, whole")
    acknowledgements_url: str = Field(description="the history: every acknowledgement")
