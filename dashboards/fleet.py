"""The fleet overview and vehicle detail dashboards, as grafanalib objects.

Measurements: telemetry (docs/telemetry.md) and the registry mirror's ``asset_status``,
``excursion_open``, ``excursion_state``, ``compartment_limit``, ``device_limit`` and ``site``
(ingest/mirror.py, docs/dashboards.md).
"""

from __future__ import annotations

from typing import Any

from grafanalib.core import Dashboard, GridPos, Repeat

from dashboards.common import (
    DATASOURCE,
    SEVERITY_COLORS,
    dashboard,
    only_open,
    series,
    stat,
    table,
    target,
    variable,
)
from dashboards.geomap import MarkerLayer, Threshold, geomap

__all__ = ["fleet_overview", "open_excursions_query", "temperature_with_band", "vehicle_detail"]

# A multi-value variable is a regex: "All" is ``.*``.
_ASSETS = '"asset" =~ /^$asset$/'
_VEHICLE = "\"asset\" = '$asset'"
_VEHICLE_COMPS = '"asset" = \'$asset\' AND "compartment" =~ /^$compartment$/'


def open_excursions_query(where: str) -> str:
    """The latest mirror snapshot of every excursion open at some time of the range; rows with
    ``open`` false closed since (the table keeps only ``open`` rows)."""
    return (
        'SELECT last("open") AS "open", last("severity") AS "severity", '
        'last("kind") AS "kind", last("status") AS "status", last("start_ms") AS "start_ms", '
        'last("peak_c") AS "peak_c", last("ack_by") AS "ack_by", last("id") AS "id" '
        f'FROM "excursion_open" WHERE {where} AND $timeFilter '
        'GROUP BY "asset", "compartment", "rule"'
    )


def temperature_with_band(
    where: str, title: str, pos: GridPos, *, by: str, repeat: str | None = None
) -> Any:
    """Temperatures (``by`` tags) with the profile band from ``compartment_limit`` shaded
    between ``band_max_c`` and ``band_min_c``, and the reefer setpoint.

    ``repeat`` names the compartment variable to repeat the panel over: one panel per
    compartment, so that each shades its own band (Grafana fills to a series by name).
    """
    dashed = {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
    green = {"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}}
    overrides = [
        {
            "matcher": {"id": "byName", "options": "band_max_c"},
            "properties": [{"id": "custom.fillBelowTo", "value": "band_min_c"}, dashed, green],
        },
        {"matcher": {"id": "byName", "options": "band_min_c"}, "properties": [dashed, green]},
    ]
    temp_alias = "$tag_probe $tag_sensor" if repeat else "$tag_asset $tag_compartment $tag_probe"
    targets = [
        target(
            f'SELECT mean("temp_c") FROM "temperature" WHERE {where} AND $timeFilter '
            f"GROUP BY time($__interval), {by} fill(null)",
            "A",
            alias=temp_alias,
        )
    ]
    if repeat:
        targets += [
            target(
                'SELECT last("band_min_c") AS "band_min_c", last("band_max_c") AS "band_max_c" '
                f'FROM "compartment_limit" WHERE {where} AND $timeFilter '
                'GROUP BY time($__interval), "compartment" fill(previous)',
                "B",
                alias="$col",
            ),
            target(
                'SELECT mean("setpoint_c") AS "setpoint_c" FROM "reefer" '
                f"WHERE {where} AND $timeFilter "
                'GROUP BY time($__interval), "compartment" fill(previous)',
                "C",
                alias="setpoint",
            ),
        ]
    return series(
        title,
        targets,
        pos,
        unit="celsius",
        overrides=overrides if repeat else [],
        fillOpacity=0,
        repeat=Repeat("h", repeat, 2) if repeat else Repeat(),
    )


def _severity_counts(where: str, pos: GridPos) -> Any:
    # asset_status has one point per asset per minute: a 1 min sum is the fleet's count then.
    return stat(
        "Open excursions by severity",
        [
            target(
                'SELECT sum("open_critical") AS "critical", sum("open_warning") AS "warning", '
                f'sum("open_info") AS "info" FROM "asset_status" WHERE {where} AND $timeFilter '
                "GROUP BY time(1m) fill(none)",
                "A",
            )
        ],
        pos,
        field_colors={"critical": "red", "warning": "orange", "info": "blue"},
    )


def fleet_overview() -> Dashboard:
    """Vehicles on a map coloured by their worst open excursion, stores as fixed markers,
    open excursion counts, devices silent beyond their gap limit, temperatures, last seen."""
    fleet_map = geomap(
        "Fleet map",
        GridPos(h=14, w=16, x=0, y=0),
        datasource=DATASOURCE,
        center=(27, 117),
        zoom=5,
        colors=[Threshold(c, v) for c, v in SEVERITY_COLORS],
        targets=[
            target(
                'SELECT last("lat") AS "lat", last("lon") AS "lon", '
                'last("speed_kmh") AS "speed_kmh" FROM "position" '
                f'WHERE {_ASSETS} AND $timeFilter GROUP BY "asset"',
                "A",
                fmt="table",
            ),
            target(
                'SELECT last("worst_rank") AS "worst_rank", '
                'last("worst_severity") AS "worst_severity", '
                'last("open_excursions") AS "open_excursions" FROM "asset_status" '
                f'WHERE {_ASSETS} AND $timeFilter GROUP BY "asset"',
                "B",
                fmt="table",
            ),
            target(
                'SELECT last("temp_c") AS "product_temp_c" FROM "temperature" '
                f"WHERE {_ASSETS} AND \"probe\" = 'product' AND $timeFilter "
                'GROUP BY "asset", "compartment"',
                "C",
                fmt="table",
            ),
            target(
                'SELECT last("lat") AS "site_lat", last("lon") AS "site_lon", '
                'last("name") AS "name" FROM "site" '
                'WHERE "kind" = \'store\' AND $timeFilter GROUP BY "asset"',
                "D",
                fmt="table",
            ),
        ],
        # One row per (vehicle, compartment): the tooltip under a vehicle lists each
        # compartment's product temperature beside the vehicle's worst open excursion. The
        # join applies to A, B and C only; its frame comes first, the stores' (D) after it.
        transformations=[
            {
                "id": "joinByField",
                "filter": {"id": "byRefId", "options": "/^[ABC]$/"},
                "options": {"byField": "asset", "mode": "outerTabular"},
            }
        ],
        layers=[
            MarkerLayer("Vehicles", None, color_field="worst_rank", text_field="asset", size=10),
            MarkerLayer(
                "Stores",
                "D",
                lat_field="site_lat",
                lon_field="site_lon",
                fixed_color="purple",
                text_field="name",
                symbol="square",
                size=12,
            ),
        ],
    )
    panels = [
        fleet_map,
        _severity_counts(_ASSETS, GridPos(h=5, w=8, x=16, y=0)),
        table(
            "Silent beyond their gap limit",
            [
                open_excursions_query(f"{_ASSETS} AND \"kind\" = 'data_gap'"),
                'SELECT last("gap_limit_s") AS "gap_limit_s" FROM "compartment_limit" '
                f'WHERE {_ASSETS} AND $timeFilter GROUP BY "asset", "compartment"',
            ],
            GridPos(h=9, w=8, x=16, y=5),
            transformations=[only_open()],
        ),
        temperature_with_band(
            _ASSETS,
            "Temperature",
            GridPos(h=9, w=24, x=0, y=14),
            by='"asset", "compartment", "probe"',
        ),
        table(
            "Open excursions",
            [open_excursions_query(_ASSETS)],
            GridPos(h=8, w=24, x=0, y=23),
            transformations=[only_open()],
        ),
        table(
            "Last seen",
            [
                'SELECT last("seq") AS "seq", last("receive_lag_s") AS "receive_lag_s", '
                'last("battery_pct") AS "battery_pct", last("signal_dbm") AS "signal_dbm" '
                f'FROM "device" WHERE {_ASSETS} AND $timeFilter GROUP BY "asset", "device"',
                'SELECT last("gap_limit_s") AS "gap_limit_s" FROM "device_limit" '
                f'WHERE {_ASSETS} AND $timeFilter GROUP BY "asset", "device"',
            ],
            GridPos(h=7, w=24, x=0, y=31),
        ),
    ]
    variables = [
        variable("asset", 'SHOW TAG VALUES FROM "temperature" WITH KEY = "asset"', multi=True)
    ]
    return dashboard(
        "Coldchain fleet overview",
        "coldchain-fleet",
        variables,
        _ASSETS,
        panels,
        description="Where every vehicle is, what is open, who is silent.",
    )


def vehicle_detail() -> Dashboard:
    """One vehicle: each compartment's product and air against its band, setpoint, doors,
    speed, and its route over the selected range."""
    route = geomap(
        "Route",
        GridPos(h=12, w=12, x=12, y=10),
        datasource=DATASOURCE,
        center=(27, 117),
        zoom=6,
        targets=[
            target(
                'SELECT "lat", "lon", "speed_kmh" FROM "position" '
                f"WHERE {_VEHICLE} AND \"fix\" != 'none' AND $timeFilter",
                "A",
                fmt="table",
            )
        ],
        layers=[MarkerLayer("Route", "A", fixed_color="blue", size=4)],
    )
    panels = [
        temperature_with_band(
            _VEHICLE_COMPS,
            "$compartment: product and air against the profile band",
            GridPos(h=10, w=24, x=0, y=0),
            by='"compartment", "probe", "sensor"',
            repeat="compartment",
        ),
        series(
            "Doors",
            [
                target(
                    'SELECT last("open") AS "open" FROM "door" '
                    f"WHERE {_VEHICLE_COMPS} AND $timeFilter "
                    'GROUP BY time($__interval), "compartment" fill(previous)',
                    "A",
                    alias="$tag_compartment door",
                )
            ],
            GridPos(h=6, w=12, x=0, y=10),
            drawStyle="bars",
        ),
        series(
            "Speed",
            [
                target(
                    'SELECT mean("speed_kmh") AS "speed_kmh" FROM "position" '
                    f"WHERE {_VEHICLE} AND $timeFilter GROUP BY time($__interval) fill(null)",
                    "A",
                    alias="speed",
                )
            ],
            GridPos(h=6, w=12, x=0, y=16),
            unit="velocitykmh",
        ),
        route,
        table(
            "Excursions of this vehicle",
            [open_excursions_query(_VEHICLE_COMPS)],
            GridPos(h=7, w=24, x=0, y=22),
        ),
    ]
    variables = [
        variable(
            "asset",
            'SHOW TAG VALUES FROM "compartment_limit" WITH KEY = "asset" '
            "WHERE \"kind\" = 'vehicle'",
            multi=False,
            label="Vehicle",
        ),
        variable(
            "compartment",
            'SHOW TAG VALUES FROM "temperature" WITH KEY = "compartment" '
            "WHERE \"asset\" = '$asset'",
            multi=True,
        ),
    ]
    return dashboard(
        "Coldchain vehicle detail",
        "coldchain-vehicle",
        variables,
        _VEHICLE_COMPS,
        panels,
        description="One vehicle: compartments against their bands, doors, speed, route.",
    )
