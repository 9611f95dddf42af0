"""What the write operations take: request bodies, shared by the HTTP API (bodies, OpenAPI
schemas) and the CLI (built from flags), so both refuse the same values with the same messages.

Strict: unknown fields, a number given as text, ``true`` for a number are refused rather than
guessed. Times are RFC 3339 strings with an explicit offset (as the MQTT contract and the
API's query parameters take them); JSON answers carry epoch milliseconds (``*_ms``). Ids,
actions and actors are the MQTT custody scan's own types (coldchain/contract/events.py,
coldchain/identifiers.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from coldchain.contract.events import CustodyAction
from coldchain.exceptions import RecordInvalid
from coldchain.identifiers import SHIPMENT_ID_MAX, Actor, Identifier, ShipmentId
from registry.models import DISPOSITIONS
from registry.records import Disposition

__all__ = [
    "DISPOSITIONS",
    "AcknowledgementCreate",
    "CustodyEventCreate",
    "Disposition",
    "Rfc3339",
    "ShipmentCancel",
    "ShipmentCreate",
    "ShipmentPatch",
    "describe_errors",
    "epoch_ms",
    "parse",
]

_BODY = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
_EXAMPLE_TIME = "2026-03-01T12:00:00Z"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time_text(value: object) -> object:
    # Lax pydantic would read a number as a Unix time in seconds or milliseconds (it guesses
    # which): only RFC 3339 text is unambiguous.
    if not isinstance(value, str) and not isinstance(value, datetime):
        raise ValueError(
            f"must be an RFC 3339 date-time string with an offset, e.g. {_EXAMPLE_TIME}"
        )
    return value


# Whole milliseconds inside InfluxDB's signed 64-bit nanoseconds since 1970 (1677-09-21 to
# 2262-04-11), the bounds api/times.py holds query parameters to: a time outside cannot be
# stored beside the readings, and Python's datetime cannot even show some of them.
_MIN_MS = -(2**63) // 1_000_000 + 1
_MAX_MS = (2**63 - 1) // 1_000_000


def _storable(value: datetime) -> datetime:
    ms = epoch_ms(value)
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(
            "is outside the times coldchain can store, 1677-09-21T00:12:43.146Z to "
            "2262-04-11T23:47:16.854Z (InfluxDB keeps 64-bit nanoseconds since 1970)"
        )
    return value


Rfc3339 = Annotated[
    AwareDatetime,
    BeforeValidator(_time_text),
    AfterValidator(_storable),
    Field(strict=False, description=f"RFC 3339 with an offset, e.g. {_EXAMPLE_TIME}"),
]
EventId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=SHIPMENT_ID_MAX,
        pattern=r"""^[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+$""",
        description="the caller's id of this event (1-128 characters of GS1 character set 82, "
        "e.g. a UUID or urn:uuid:...): posting the same event again is recognised by it",
    ),
]


def _text(max_length: int, description: str, *, min_length: int = 0) -> Any:
    return Field(min_length=min_length, max_length=max_length, description=description)


def epoch_ms(t: datetime) -> int:
    """Integer epoch milliseconds UTC of an aware datetime."""
    return (t - _EPOCH) // timedelta(milliseconds=1)


class ShipmentCreate(BaseModel):
    """A new shipment. ``id``, ``profile`` and ``shipper`` are required."""

    model_config = _BODY

    id: ShipmentId
    profile: Annotated[str, _text(64, "product profile name (a configured one)", min_length=1)]
    shipper: Annotated[
        str, _text(200, "whose goods: a name or GS1 GLN (decides who may see it)", min_length=1)
    ]
    description: Annotated[str, _text(4000, "what is shipped (free text)")] = ""
    quantity: Annotated[float, Field(gt=0, description="how much, in unit")] | None = None
    unit: (
        Annotated[str, _text(32, "unit of quantity (UN/ECE Rec. 20 code or word)", min_length=1)]
        | None
    ) = None
    consignee: Annotated[str, _text(200, "who receives it: a name or GS1 GLN")] = ""
    origin: Annotated[str, _text(200, "where it leaves from")] = ""
    destination: Annotated[str, _text(200, "where it goes")] = ""
    planned_departure: Rfc3339 | None = None
    planned_arrival: Rfc3339 | None = None

    def registry_fields(self) -> dict[str, Any]:
        """The fields as Registry.create_shipment takes them (times in epoch ms)."""
        return {
            "profile": self.profile,
            "shipper": self.shipper,
            "description": self.description,
            "quantity": self.quantity,
            "unit": self.unit,
            "consignee": self.consignee,
            "origin": self.origin,
            "destination": self.destination,
            "planned_departure_ms": _ms(self.planned_departure),
            "planned_arrival_ms": _ms(self.planned_arrival),
        }


def _ms(t: datetime | None) -> int | None:
    return None if t is None else epoch_ms(t)


# Fields a null clears (JSON merge patch, RFC 7396); the others must be given a value.
_NULLABLE = frozenset({"quantity", "unit", "planned_departure", "planned_arrival"})


class ShipmentPatch(BaseModel):
    """A JSON merge patch (RFC 7396) of a shipment: the fields given change, the others stay;
    ``null`` clears ``quantity`` + ``unit`` or a planned time. Which fields may change, and
    when: docs/api.md ("Updating a shipment")."""

    model_config = _BODY

    description: Annotated[str, _text(4000, "what is shipped")] | None = None
    consignee: Annotated[str, _text(200, "who receives it")] | None = None
    destination: Annotated[str, _text(200, "where it goes")] | None = None
    quantity: Annotated[float, Field(gt=0)] | None = None
    unit: Annotated[str, _text(32, "unit of quantity", min_length=1)] | None = None
    planned_departure: Rfc3339 | None = None
    planned_arrival: Rfc3339 | None = None
    profile: (
        Annotated[str, _text(64, "only before the first custody scan", min_length=1)] | None
    ) = None
    origin: Annotated[str, _text(200, "only before the first custody scan")] | None = None
    shipper: Annotated[str, _text(200, "never changes (given equal, it is accepted)")] | None = None

    @model_validator(mode="after")
    def _nulls(self) -> ShipmentPatch:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in _NULLABLE:
                raise ValueError(f'{name} cannot be null; send the new value ("" for none)')
        return self

    def registry_changes(self) -> dict[str, Any]:
        """The fields given, as Registry.update_shipment takes them (times in epoch ms)."""
        changes: dict[str, Any] = {}
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if name in ("planned_departure", "planned_arrival"):
                changes[f"{name}_ms"] = _ms(value)
            else:
                changes[name] = value
        return changes


class ShipmentCancel(BaseModel):
    """Why the shipment is cancelled (free text, kept in the record and the audit log)."""

    model_config = _BODY

    reason: Annotated[str, _text(4000, "why it is cancelled")] = ""


class CustodyEventCreate(BaseModel):
    """A custody event from a business system: an MQTT custody scan's fields (the same types
    and rules) plus the caller's ``event_id``."""

    model_config = _BODY

    event_id: EventId
    shipment_id: ShipmentId
    action: CustodyAction
    asset_id: Identifier
    compartment_id: Identifier | None = None
    ts: Rfc3339
    actor: Actor


class AcknowledgementCreate(BaseModel):
    """An operator's acknowledgement of an excursion. Who and when come from the caller's
    identity and the server's clock, not from the body."""

    model_config = _BODY

    disposition: Disposition = Field(
        description="what becomes of the product: pending (no decision yet), quarantined, "
        "released, returned, destroyed, not_affected (no product was exposed)"
    )
    comment: Annotated[str, _text(4000, "what was seen and done (free text)")] = ""
    root_cause: Annotated[str, _text(4000, "why it happened, as far as known")] = ""


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: dict[str, Any]) -> M:
    """``model`` from ``data`` (the CLI's flags), RecordInvalid with every problem named."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecordInvalid(describe_errors(exc.errors(include_url=False))) from None


def describe_errors(errors: Any) -> str:
    """One sentence per pydantic error: ``field 'quantity': Input should be greater than 0
    (got -1)``."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        got = "" if err.get("type") == "missing" else f" (got {_bounded(err.get('input'))})"
        where = f"field {loc!r}" if loc else "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "invalid request"


def _bounded(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
