"""Grafana dashboards for coldchain, defined with grafanalib (``dashboards.fleet``) and rendered to
the JSON that Grafana provisions from ``deploy/grafana/dashboards`` (``dashboards.generate``).
"""

from __future__ import annotations

from dashboards.fleet import DATASOURCE, DATASOURCE_UID, compartment_detail, fleet_overview
from dashboards.generate import render, write

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "compartment_detail",
    "fleet_overview",
    "render",
    "write",
]
