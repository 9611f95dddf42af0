"""Device events (``.../devices/{id}/events``): custody scans, door and reefer alarms.

Guarantee: like telemetry, never raises on bad input. A custody scan is recorded in the registry
(idempotently: a redelivered scan is the same record) before its message is acknowledged; a
scan the registry refuses (unknown shipment, contradicting an earlier scan) is dead-lettered.
An event may name only the publishing device's own asset, or an asset that registers the device
among its ``scanners`` in the fleet file; any other is dead-lettered (``foreign_asset``). A
registry that is locked or down raises ``StoreError`` (the caller holds the acks and retries).
Door and alarm events become ``door``/``reefer`` points at their exact device time. Every event
is also stored as an ``event`` point so the time series alone tells the whole story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from pydantic import ValidationError

from coldchain.contract import device_id_from_topic
from coldchain.contract.events import AlarmEvent, CustodyEvent, DoorEvent, parse_event
from coldchain.exceptions import RecordRejected, TelemetryRejected
from coldchain.fleet import Fleet
from coldchain.lineprotocol import FieldValue, format_fields, series_key
from registry import Registry

__all__ = ["EventOutcome", "process_event"]


@dataclass(frozen=True, slots=True)
class EventOutcome:
    lines: list[str]
    # (asset, compartment, ts_ms) of a custody change the rules engine must hear about
    custody: tuple[str, str, int] | None = None


def _ts_ms(event: CustodyEvent | DoorEvent | AlarmEvent) -> int:
    return int(event.ts.timestamp() * 1000)


def _reject(reason: str, detail: str, device: str | None, field: str, value: object) -> NoReturn:
    raise TelemetryRejected(reason, detail, device_id=device, field=field, value=value)


def process_event(
    topic: str,
    payload: bytes,
    fleet: Fleet,
    registry: Registry | None,
    max_payload_bytes: int,
    received_ms: int,
) -> EventOutcome:
    """Raises ``TelemetryRejected`` for anything that must be dead-lettered, ``StoreError``
    when the registry cannot record a custody scan now."""
    device_id = device_id_from_topic(topic)
    if device_id is None:
        _reject("bad_topic", "topic is not a device topic", None, "topic", topic)
    if len(payload) > max_payload_bytes:
        _reject("payload_too_large", f"{len(payload)} bytes", device_id, "", len(payload))
    try:
        event = parse_event(payload)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"] if p not in ("custody", "door", "alarm"))
        _reject("invalid_event", err["msg"], device_id, loc, err.get("input"))
    if event.device_id != device_id:
        _reject(
            "device_mismatch",
            "payload device_id differs from the topic's",
            device_id,
            "device_id",
            event.device_id,
        )
    if not fleet.is_known_device(device_id):
        _reject("unknown_device", "device is not registered", device_id, "device_id", device_id)
    asset = fleet.assets.get(event.asset_id)
    if asset is None:
        _reject("unknown_asset", "asset is not registered", device_id, "asset_id", event.asset_id)
    if not fleet.may_name(device_id, event.asset_id):
        own = fleet.asset_of(device_id)
        _reject(
            "foreign_asset",
            f"device may name only its own asset ({own.id if own else 'none'}) unless the fleet"
            f" lists it among the scanners of {event.asset_id}",
            device_id,
            "asset_id",
            event.asset_id,
        )
    comp = event.compartment_id
    if comp is not None and not fleet.has_compartment(event.asset_id, comp):
        _reject(
            "unknown_compartment",
            f"not a compartment of {event.asset_id}",
            device_id,
            "compartment_id",
            comp,
        )
    t = _ts_ms(event)
    if received_ms - t > 30 * 86_400_000 or t - received_ms > 300_000:
        _reject(
            "bad_timestamp",
            "event time outside the accepted window",
            device_id,
            "ts",
            event.ts.isoformat(),
        )
    tags = {"asset": event.asset_id, "compartment": comp, "type": event.type}
    common: dict[str, FieldValue] = {"device": device_id, "seq": event.seq}
    if isinstance(event, CustodyEvent):
        if registry is not None:
            try:
                registry.record_custody_event(
                    event.shipment_id,
                    event.action,
                    event.asset_id,
                    comp,
                    ts_ms=t,
                    actor=event.actor,
                    source="mqtt",
                    received_ms=received_ms,
                )
            except RecordRejected as exc:
                _reject("custody_rejected", str(exc), device_id, "shipment_id", event.shipment_id)
        fields = common | {
            "action": event.action,
            "shipment_id": event.shipment_id,
            "actor": event.actor,
        }
        line = f"{series_key('event', tags)} {format_fields(fields)} {t}"
        custody = (event.asset_id, comp, t) if comp is not None else None
        return EventOutcome([line], custody)
    if isinstance(event, DoorEvent):
        door = series_key("door", {"asset": event.asset_id, "compartment": comp})
        fields = common | {"open": event.open}
        return EventOutcome(
            [
                f"{door} open={'true' if event.open else 'false'} {t}",
                f"{series_key('event', tags)} {format_fields(fields)} {t}",
            ]
        )
    fields = common | {"alarm_code": event.alarm_code, "active": event.active}
    return EventOutcome([f"{series_key('event', tags)} {format_fields(fields)} {t}"])
