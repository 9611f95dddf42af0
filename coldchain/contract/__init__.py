"""The telemetry contract: topics, payload models, per-sample checks, point encoding."""

from coldchain.contract.checks import Limits, check_sample, screen_sample, ts_ms
from coldchain.contract.events import (
    AlarmEvent,
    CustodyEvent,
    DoorEvent,
    event_json_schema,
    parse_event,
)
from coldchain.contract.points import PointEncoder
from coldchain.contract.reasons import REASONS
from coldchain.contract.salvage import (
    ParsedTelemetry,
    field_path,
    parse_accepted_whole,
    parse_telemetry,
)
from coldchain.contract.telemetry import (
    CONTRACT_VERSION,
    BatchMessage,
    CompartmentState,
    Position,
    Power,
    Sample,
    SingleMessage,
    parse_message,
    telemetry_json_schema,
)
from coldchain.contract.topics import (
    alert_topic,
    device_id_from_topic,
    device_topic,
    shared_subscription,
)

__all__ = [
    "CONTRACT_VERSION",
    "REASONS",
    "AlarmEvent",
    "BatchMessage",
    "CompartmentState",
    "CustodyEvent",
    "DoorEvent",
    "Limits",
    "ParsedTelemetry",
    "PointEncoder",
    "Position",
    "Power",
    "Sample",
    "SingleMessage",
    "alert_topic",
    "check_sample",
    "device_id_from_topic",
    "device_topic",
    "event_json_schema",
    "field_path",
    "parse_accepted_whole",
    "parse_event",
    "parse_message",
    "parse_telemetry",
    "screen_sample",
    "shared_subscription",
    "telemetry_json_schema",
    "ts_ms",
]
