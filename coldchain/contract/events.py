"""The v1 event payload on ``coldchain/v1/devices/{device_id}/events``: strict and bounded.

Three event types, told apart by ``type``:

- ``custody``: a handheld or dock scan moving a shipment. ``load`` puts the shipment into
  ``asset_id``/``compartment_id``; ``unload`` takes it out of that compartment onto a dock;
  ``handover`` passes custody to ``actor`` where the shipment stands (``compartment_id`` None:
  on the asset's dock, unmonitored); ``deliver`` hands it to the consignee: coldchain's custody,
  and its monitoring duty, end there.
- ``door``: a compartment or zone door opened or closed (exact time, between telemetry samples).
- ``alarm``: the reefer unit raised or cleared an alarm code.

Identifiers: ``device_id``, ``asset_id`` and ``compartment_id`` are coldchain Identifiers;
``shipment_id`` is a ShipmentId (GS1 keys and customer references, ``/`` and ``:`` allowed) and
``actor`` a name without control characters, both as the registry and the HTTP API take them
(coldchain/identifiers.py).

Events carry their own per-device sequence (``seq``), separate from telemetry's, so a gap in
telemetry sequence numbers always means lost telemetry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from coldchain.contract.jsontext import load_tree, problems
from coldchain.contract.telemetry import duplicate_key_error
from coldchain.identifiers import Actor, Identifier, ShipmentId

__all__ = [
    "AlarmEvent",
    "CustodyAction",
    "CustodyEvent",
    "DeviceEvent",
    "DoorEvent",
    "event_json_schema",
    "parse_event",
]

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)

CustodyAction = Literal["load", "unload", "handover", "deliver"]


class _EventBase(BaseModel):
    model_config = _STRICT

    v: Literal[1]
    device_id: Identifier
    ts: AwareDatetime
    seq: int = Field(ge=0, le=2**53)


class CustodyEvent(_EventBase):
    type: Literal["custody"]
    action: CustodyAction
    shipment_id: ShipmentId
    asset_id: Identifier
    compartment_id: Identifier | None = None
    actor: Actor


class DoorEvent(_EventBase):
    type: Literal["door"]
    asset_id: Identifier
    compartment_id: Identifier
    open: bool


class AlarmEvent(_EventBase):
    type: Literal["alarm"]
    asset_id: Identifier
    compartment_id: Identifier | None = None
    alarm_code: int = Field(ge=0, le=65535)
    active: bool


DeviceEvent = Annotated[CustodyEvent | DoorEvent | AlarmEvent, Field(discriminator="type")]
_ADAPTER: TypeAdapter[CustodyEvent | DoorEvent | AlarmEvent] = TypeAdapter(DeviceEvent)


def parse_event(payload: bytes | str) -> CustodyEvent | DoorEvent | AlarmEvent:
    """Parse and validate one event payload. Raises ``pydantic.ValidationError``, also when an
    object repeats a key (error type ``duplicate_key``: which value was meant is unknowable).
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    event = _ADAPTER.validate_json(raw)
    # Events are few and ``actor`` is free text, so repeated keys are found by a second parse
    # rather than telemetry's byte count.
    tree, suspect = load_tree(raw.decode("utf-8"))
    if suspect and any(reason == "duplicate_key" for _, reason, _, _ in problems(tree)):
        raise duplicate_key_error("event", raw)
    return event


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a v1 event payload."""
    schema = _ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://coldchain.dev/schemas/events-v1.json"
    schema["title"] = "coldchain events v1"
    return schema
