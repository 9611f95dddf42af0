"""Grafana dashboards for coldchain, defined with grafanalib (``dashboards.fleet``,
``dashboards.sites``, the geomap panel in ``dashboards.geomap``) and rendered to the JSON that
Grafana provisions from ``deploy/grafana/dashboards`` (``dashboards.generate``).
"""

from __future__ import annotations

from dashboards.common import DATASOURCE, DATASOURCE_UID
from dashboards.fleet import fleet_overview, vehicle_detail
from dashboards.generate import BOARDS, render, write
from dashboards.geomap import Geomap, MarkerLayer, Threshold
from dashboards.sites import device_health, excursions_overview, store_overview

__all__ = [
    "BOARDS",
    "DATASOURCE",
    "DATASOURCE_UID",
    "Geomap",
    "MarkerLayer",
    "Threshold",
    "device_health",
    "excursions_overview",
    "fleet_overview",
    "render",
    "store_overview",
    "vehicle_detail",
    "write",
]
