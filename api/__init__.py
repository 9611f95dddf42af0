"""Traceability for regulators and operators: shipment traces assembled from the registry and
InfluxDB (the HTTP layer is to come; ``coldchain demo`` prints these traces)."""

from api.trace import ShipmentNotFound, TraceService, trace_to_dict

__all__ = ["ShipmentNotFound", "TraceService", "trace_to_dict"]
