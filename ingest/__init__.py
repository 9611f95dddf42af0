"""Ingest: MQTT -> decode -> validate -> durable spool -> ack -> InfluxDB, and the rules.

Stages, one module each: ``decode``, ``validate``, ``spool``, ``write``, ``evaluate`` (rules)
and ``events`` (custody scans); ``pipeline`` runs the first four per group of deliveries
(commit, then acknowledge); ``consumer`` is the MQTT adapter, ``service`` wires them,
``metrics`` exposes counters and ``health`` the raised problems behind ``/healthz``;
``spool_guard`` (identity, damaged files, the disk reserve) and ``watchdog`` (threads that die)
keep failures visible and recoverable.
"""

from ingest.consumer import Delivery, MqttSource
from ingest.decode import Decoded, decode
from ingest.evaluate import Accepted, CustodyChange, EvaluateStage
from ingest.events import EventOutcome, process_event
from ingest.health import Health
from ingest.metrics import IngestMetrics, MetricsServer
from ingest.pipeline import Pipeline, Processed, process_delivery
from ingest.service import IngestService
from ingest.spool import DeadLetter, Spool, SpooledMessage
from ingest.validate import Validated, validate
from ingest.write import SpoolDrainer

__all__ = [
    "Accepted",
    "CustodyChange",
    "DeadLetter",
    "Decoded",
    "Delivery",
    "EvaluateStage",
    "EventOutcome",
    "Health",
    "IngestMetrics",
    "IngestService",
    "MetricsServer",
    "MqttSource",
    "Pipeline",
    "Processed",
    "Spool",
    "SpoolDrainer",
    "SpooledMessage",
    "Validated",
    "decode",
    "process_delivery",
    "process_event",
    "validate",
]
