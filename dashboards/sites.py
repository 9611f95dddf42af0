"""The cold store, excursions and device health dashboards, as grafanalib objects."""

from __future__ import annotations

from grafanalib.core import Dashboard, GridPos

from dashboards.common import dashboard, only_open, series, table, target, variable
from dashboards.fleet import _severity_counts, open_excursions_query, temperature_with_band

__all__ = ["device_health", "excursions_overview", "store_overview"]

_STORE = "\"asset\" = '$store'"
_ZONES = '"asset" = \'$store\' AND "compartment" =~ /^$compartment$/'
_ASSETS = '"asset" =~ /^$asset$/'
_ASSET_COMPS = '"asset" =~ /^$asset$/ AND "compartment" =~ /^$compartment$/'


def store_overview() -> Dashboard:
    """One cold store: zones against their bands, defrost cycles, door openings, power."""
    panels = [
        temperature_with_band(
            _ZONES,
            "$compartment against its band",
            GridPos(h=10, w=24, x=0, y=0),
            by='"compartment", "probe", "sensor"',
            repeat="compartment",
        ),
        series(
            "Defrost cycles",
            [
                target(
                    'SELECT count("mode") AS "defrost" FROM "reefer" '
                    f"WHERE {_ZONES} AND \"mode\" = 'defrost' AND $timeFilter "
                    'GROUP BY time($__interval), "compartment" fill(0)',
                    "A",
                    alias="$tag_compartment defrost",
                )
            ],
            GridPos(h=7, w=12, x=0, y=10),
            drawStyle="bars",
        ),
        series(
            "Door openings",
            [
                target(
                    'SELECT max("open") AS "open" FROM "door" '
                    f"WHERE {_ZONES} AND $timeFilter "
                    'GROUP BY time($__interval), "compartment" fill(previous)',
                    "A",
                    alias="$tag_compartment door",
                )
            ],
            GridPos(h=7, w=12, x=12, y=10),
            drawStyle="bars",
        ),
        series(
            "Power: battery",
            [
                target(
                    'SELECT mean("battery_pct") AS "battery_pct" FROM "device" '
                    f"WHERE {_STORE} AND $timeFilter "
                    'GROUP BY time($__interval), "device" fill(null)',
                    "A",
                    alias="$tag_device battery",
                )
            ],
            GridPos(h=7, w=12, x=0, y=17),
            unit="percent",
        ),
        table(
            "Power source (mains, battery)",
            [
                'SELECT "power_source", "battery_pct" FROM "device" '
                f'WHERE {_STORE} AND $timeFilter GROUP BY "device"'
            ],
            GridPos(h=7, w=12, x=12, y=17),
        ),
    ]
    variables = [
        variable(
            "store",
            'SHOW TAG VALUES FROM "compartment_limit" WITH KEY = "asset" WHERE "kind" = \'store\'',
            multi=False,
        ),
        variable(
            "compartment",
            'SHOW TAG VALUES FROM "temperature" WITH KEY = "compartment" '
            "WHERE \"asset\" = '$store'",
            multi=True,
            label="Zone",
        ),
    ]
    return dashboard(
        "Coldchain cold store overview",
        "coldchain-store",
        variables,
        _ZONES,
        panels,
        description="One cold store: zones, defrost, doors, power.",
    )


def excursions_overview() -> Dashboard:
    """Open and recent excursions with who acknowledged them; excursions as annotations."""
    panels = [
        _severity_counts(_ASSETS, GridPos(h=5, w=24, x=0, y=0)),
        table(
            "Open excursions",
            [open_excursions_query(_ASSET_COMPS)],
            GridPos(h=8, w=24, x=0, y=5),
            transformations=[only_open()],
        ),
        table(
            "Recent excursions (started in the range)",
            [
                'SELECT "id", "kind", "severity", "status", "peak_c", "degree_minutes", '
                '"end_ms", "ack_by", "ack_ms", "detected_late" FROM "excursion_state" '
                # A superseded excursion was replaced by a recompute's (docs/rules.md).
                f'WHERE {_ASSET_COMPS} AND "superseded" = false AND $timeFilter '
                'GROUP BY "asset", "compartment", "rule"'
            ],
            GridPos(h=9, w=24, x=0, y=13),
        ),
        series(
            "Temperature (excursions as annotations)",
            [
                target(
                    f'SELECT mean("temp_c") FROM "temperature" WHERE {_ASSET_COMPS} '
                    "AND $timeFilter GROUP BY time($__interval), "
                    '"asset", "compartment", "probe" fill(null)',
                    "A",
                    alias="$tag_asset $tag_compartment $tag_probe",
                )
            ],
            GridPos(h=9, w=24, x=0, y=22),
            unit="celsius",
        ),
    ]
    variables = [
        variable("asset", 'SHOW TAG VALUES FROM "temperature" WITH KEY = "asset"', multi=True),
        variable(
            "compartment",
            'SHOW TAG VALUES FROM "temperature" WITH KEY = "compartment" '
            'WHERE "asset" =~ /^$asset$/',
            multi=True,
        ),
    ]
    return dashboard(
        "Coldchain excursions",
        "coldchain-excursions",
        variables,
        _ASSET_COMPS,
        panels,
        description="Open and recent excursions, acknowledged by whom.",
    )


def device_health() -> Dashboard:
    """Battery, signal, receive lag, backlog uploads, dead letters by reason, last seen."""

    def per_device(field: str, agg: str = "mean") -> str:
        return (
            f'SELECT {agg}("{field}") AS "{field}" FROM "device" WHERE {_ASSETS} AND $timeFilter '
            'GROUP BY time($__interval), "asset", "device" fill(null)'
        )

    panels = [
        series(
            "Battery",
            [target(per_device("battery_pct"), "A", alias="$tag_device")],
            GridPos(h=7, w=12, x=0, y=0),
            unit="percent",
        ),
        series(
            "Signal",
            [target(per_device("signal_dbm"), "A", alias="$tag_device")],
            GridPos(h=7, w=12, x=12, y=0),
            unit="dBm",
        ),
        series(
            "Receive lag",
            [target(per_device("receive_lag_s", "max"), "A", alias="$tag_device")],
            GridPos(h=7, w=12, x=0, y=7),
            unit="s",
        ),
        series(
            "Backlog uploads (samples per message)",
            [target(per_device("samples", "max"), "A", alias="$tag_device")],
            GridPos(h=7, w=12, x=12, y=7),
            drawStyle="bars",
        ),
        series(
            "Dead letters held by reason (whole fleet)",
            [
                target(
                    'SELECT last("held") AS "held" FROM "dead_letter" WHERE $timeFilter '
                    'GROUP BY time($__interval), "reason" fill(previous)',
                    "A",
                    alias="$tag_reason",
                )
            ],
            GridPos(h=7, w=12, x=0, y=14),
            drawStyle="bars",
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
            GridPos(h=7, w=12, x=12, y=14),
        ),
    ]
    variables = [variable("asset", 'SHOW TAG VALUES FROM "device" WITH KEY = "asset"', multi=True)]
    return dashboard(
        "Coldchain device health",
        "coldchain-devices",
        variables,
        _ASSETS,
        panels,
        description="Devices: battery, signal, lag, backlogs, dead letters, last seen.",
    )
