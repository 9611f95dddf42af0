"""Traceability for regulators and operators: shipment traces assembled from the registry and
InfluxDB, served over HTTP (``create_app``, ``coldchain api``; docs/api.md)."""

from api.app import create_app
from api.trace import ShipmentNotFound, TraceService, trace_to_dict

__all__ = ["ShipmentNotFound", "TraceService", "create_app", "trace_to_dict"]
