"""The InfluxDB adapter (v1 HTTP API), shared by ingest, rule recomputes and reports."""

from timeseries.client import InfluxClient, Series

__all__ = ["InfluxClient", "Series"]
