"""The v1 telemetry payload: typed, strict, bounded.

A device publishes either one sample (the sample's fields at the top level) or a backlog batch
(``samples``: a list of samples, oldest first, uploaded late after lost coverage). Validation is
strict: no string-to-number coercion, no NaN or infinity, no unknown keys, every number inside a
physically possible range, every string and collection bounded. ``docs/telemetry.md`` and the
JSON Schema generated from these models are the published contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from coldchain.contract.jsontext import has_duplicate_keys, load_tree, problems
from coldchain.identifiers import Identifier

__all__ = [
    "CONTRACT_VERSION",
    "MAX_BATCH_SAMPLES",
    "BatchMessage",
    "CompartmentState",
    "Identifier",
    "Position",
    "Power",
    "Sample",
    "SingleMessage",
    "TelemetryMessage",
    "duplicate_key_error",
    "parse_message",
    "telemetry_json_schema",
]

CONTRACT_VERSION = 1
MAX_BATCH_SAMPLES = 5000

# Probes used in cold chains span ultra-low freezers (-80 degC) to hot docks; beyond is a fault.
ProbeTempC = Annotated[float, Field(ge=-100.0, le=100.0)]
AirTempC = Annotated[float, Field(ge=-100.0, le=100.0)]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class _DeviceMs:
    """``Sample.ts_ms``: device time in integer epoch milliseconds, computed on first use and
    kept in the instance (a model is frozen, so it cannot go stale; ``model_copy`` drops it
    when ``ts`` changes).

    Validate, the encoder, the spool journal and the rules each ask for it (up to 7 times a
    sample) and the datetime arithmetic costs ~0.5 us, as pydantic's tzinfo is called back for
    the offset. ``functools.cached_property`` would do, but takes a lock per first use on
    Python 3.11 (~0.8 us more).
    """

    def __get__(self, sample: Sample | None, owner: type) -> int:
        if sample is None:
            raise AttributeError("ts_ms is a per-sample value")
        t = sample.__dict__.get("ts_ms")
        if t is None:
            # Integer arithmetic: float timestamps lose the millisecond far from 1970.
            t = sample.__dict__["ts_ms"] = (sample.ts - _EPOCH) // _MS
        return t


class Position(BaseModel):
    """A GNSS position. Without a fix it is not a place: when ``fix`` is ``none``, or lat and
    lon are both exactly 0 (the no-fix output of many receivers; no reefer is at 0 N 0 E), the
    validated position has ``fix`` ``none`` and ``lat``, ``lon``, ``speed_kmh`` and
    ``heading_deg`` None (unknown), whatever the device sent for them."""

    model_config = _STRICT

    lat: float | None = Field(default=None, ge=-90.0, le=90.0)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0)
    speed_kmh: float | None = Field(default=None, ge=0.0, le=250.0)
    heading_deg: float | None = Field(default=None, ge=0.0, lt=360.0)
    fix: Literal["none", "2d", "3d"] = "3d"
    hdop: float | None = Field(default=None, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _no_fix_is_no_place(self) -> Position:
        # A receiver without a fix reports 0/0 or its last fix, and speed 0: none of it was
        # measured now. object.__setattr__ because the model is frozen; fields_set stays what
        # the device sent (the duplicate-key check counts it).
        if self.fix == "none" or (self.lat == 0.0 and self.lon == 0.0):
            for name in ("lat", "lon", "speed_kmh", "heading_deg"):
                object.__setattr__(self, name, None)
            object.__setattr__(self, "fix", "none")
        return self


class CompartmentState(BaseModel):
    """Door and reefer-unit state of one compartment (truck) or zone (store)."""

    model_config = _STRICT

    door_open: bool | None = None
    setpoint_c: float | None = Field(default=None, ge=-70.0, le=40.0)
    mode: Literal["cooling", "heating", "defrost", "null", "off"] | None = None
    supply_air_c: AirTempC | None = None
    return_air_c: AirTempC | None = None
    alarm_code: int | None = Field(default=None, ge=0, le=65535)


class Power(BaseModel):
    model_config = _STRICT

    source: Literal["mains", "vehicle", "battery"] | None = None
    battery_pct: float | None = Field(default=None, ge=0.0, le=100.0)


class Sample(BaseModel):
    """One reading instant of a device: device time, sequence number and what it measured."""

    model_config = _STRICT

    ts: AwareDatetime
    seq: int = Field(ge=0, le=2**53)
    temps_c: dict[Identifier, ProbeTempC] = Field(default_factory=dict, max_length=32)
    position: Position | None = None
    compartments: dict[Identifier, CompartmentState] = Field(default_factory=dict, max_length=8)
    power: Power | None = None
    signal_dbm: int | None = Field(default=None, ge=-150, le=0)

    # Device time in integer epoch milliseconds (the InfluxDB write precision), floored. Not a
    # field (no schema, no dump, no equality): computed once per sample, see ``_DeviceMs``.
    ts_ms: ClassVar[_DeviceMs] = _DeviceMs()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        if update and "ts" in update:
            copy.__dict__.pop("ts_ms", None)  # the cached device time of the old ``ts``
        return copy


class SingleMessage(Sample):
    v: Literal[1]
    device_id: Identifier

    def samples_list(self) -> list[Sample]:
        return [self]


class BatchMessage(BaseModel):
    """A backlog upload: samples buffered on the device while it had no coverage."""

    model_config = _STRICT

    v: Literal[1]
    device_id: Identifier
    samples: list[Sample] = Field(min_length=1, max_length=MAX_BATCH_SAMPLES)

    def samples_list(self) -> list[Sample]:
        return self.samples


def _form(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "samples" in value else "single"


TelemetryMessage = Annotated[
    Annotated[SingleMessage, Tag("single")] | Annotated[BatchMessage, Tag("batch")],
    Discriminator(_form),
]
_ADAPTER: TypeAdapter[SingleMessage | BatchMessage] = TypeAdapter(TelemetryMessage)


def parse_message(payload: bytes | str) -> SingleMessage | BatchMessage:
    """Parse and validate one payload strictly: the whole message or nothing.

    The reference reader (simulators, tests). Ingest reads with ``parse_telemetry``, which keeps
    the good units of a bad message. Raises ``pydantic.ValidationError``, also when an object
    repeats a key (error type ``duplicate_key``).
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    message = _ADAPTER.validate_json(raw)
    if has_duplicate_keys(raw, message):
        raise duplicate_key_error("telemetry", raw)
    return message


def duplicate_key_error(title: str, payload: bytes) -> ValidationError:
    """A ``ValidationError`` naming every repeated key of ``payload`` (RFC 8259 §4: names
    SHOULD be unique; with two values for one name, which was meant is unknown)."""
    tree, _ = load_tree(payload.decode("utf-8"))
    details: list[InitErrorDetails] = [
        {
            "type": PydanticCustomError("duplicate_key", "{detail}", {"detail": detail}),
            "loc": loc,
            "input": value,
        }
        for loc, reason, value, detail in problems(tree)
        if reason == "duplicate_key"
    ]
    return ValidationError.from_exception_data(title, details, input_type="json")


def telemetry_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a v1 telemetry payload, as published in docs/."""
    schema = _ADAPTER.json_schema(mode="validation")
    _close_pattern_maps(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://coldchain.dev/schemas/telemetry-v1.json"
    schema["title"] = "coldchain telemetry v1"
    return schema


def _close_pattern_maps(node: Any) -> None:
    """Id-keyed maps (``temps_c``, ``compartments``) must reject keys that are not identifiers,
    as the models do; pydantic emits ``patternProperties`` without closing the object."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for child in node.values():
            _close_pattern_maps(child)
    elif isinstance(node, list):
        for child in node:
            _close_pattern_maps(child)
