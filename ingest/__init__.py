"""Ingest: MQTT -> decode -> validate -> durable spool -> ack -> InfluxDB.

Stages, one module each: ``decode``, ``validate``, ``spool``, ``write``; ``consumer`` is the MQTT
adapter, ``service`` wires them, ``metrics`` exposes counters.
"""

from ingest.consumer import Delivery, MqttSource
from ingest.decode import Decoded, decode
from ingest.metrics import IngestMetrics, MetricsServer
from ingest.service import IngestService, process_delivery
from ingest.spool import DeadLetter, Spool, SpooledMessage
from ingest.validate import Validated, validate
from ingest.write import SpoolDrainer

__all__ = [
    "DeadLetter",
    "Decoded",
    "Delivery",
    "IngestMetrics",
    "IngestService",
    "MetricsServer",
    "MqttSource",
    "Spool",
    "SpoolDrainer",
    "SpooledMessage",
    "Validated",
    "decode",
    "process_delivery",
    "validate",
]
