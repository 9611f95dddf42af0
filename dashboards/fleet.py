"""The fleet overview and compartment detail dashboards, as grafanalib objects.

Every query is raw InfluxQL against the provisioned datasource (uid ``coldchain-influxdb``,
deploy/grafana/provisioning/datasources/influxdb.yaml) over the schema in docs/telemetry.md,
using Grafana's ``$timeFilter`` and ``$__interval`` macros.
"""

from __future__ import annotations

from typing import Any

from grafanalib.core import (
    Annotations,
    Dashboard,
    GridPos,
    Table,
    Template,
    Templating,
    Time,
    TimeSeries,
)
from grafanalib.influxdb import InfluxDBTarget

__all__ = ["DATASOURCE", "DATASOURCE_UID", "compartment_detail", "fleet_overview"]

DATASOURCE_UID = "coldchain-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}

# Fleet overview: every selected asset (multi-value variable, so a regex match).
_ASSETS = '"asset" =~ /^$asset$/'
# Compartment detail: exactly one asset and compartment.
_ONE = "\"asset\" = '$asset' AND \"compartment\" = '$compartment'"


def _target(query: str, ref: str, *, alias: str = "", fmt: str = "time_series") -> InfluxDBTarget:
    return InfluxDBTarget(
        query=query, refId=ref, alias=alias, format=fmt, datasource=DATASOURCE, rawQuery=True
    )


def _series(
    title: str, targets: list[InfluxDBTarget], pos: GridPos, *, unit: str = "", **kw: Any
) -> TimeSeries:
    return TimeSeries(
        title=title, dataSource=DATASOURCE, targets=targets, gridPos=pos, unit=unit, **kw
    )


def _table(title: str, query: str, pos: GridPos) -> Table:
    return Table(
        title=title,
        dataSource=DATASOURCE,
        targets=[_target(query, "A", fmt="table")],
        gridPos=pos,
    )


def _variable(name: str, query: str, *, multi: bool) -> Template:
    return Template(
        name=name,
        label=name.capitalize(),
        query=query,
        dataSource=DATASOURCE,
        multi=multi,
        includeAll=multi,
        allValue=".*" if multi else None,
        refresh=2,  # on time range change: new assets show up without a reload
    )


def _excursion_annotation(where: str) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "red",
        "name": "Excursions",
        "query": (
            'SELECT "kind", "severity", "status", "detail", "rule" FROM "excursion" '
            f"WHERE {where} AND $timeFilter"
        ),
        "tagsColumn": "rule",
        "textColumn": "detail",
        "titleColumn": "kind",
    }


def _temperature(where: str, by: str) -> str:
    return (
        f'SELECT mean("temp_c") FROM "temperature" WHERE {where} AND $timeFilter '
        f"GROUP BY time($__interval), {by} fill(null)"
    )


def _door(where: str) -> str:
    return (
        f'SELECT last("open") AS "open" FROM "door" WHERE {where} AND $timeFilter '
        'GROUP BY time($__interval), "asset", "compartment" fill(previous)'
    )


def _reefer(where: str, fields: list[str]) -> str:
    select = ", ".join(f'mean("{f}") AS "{f}"' for f in fields)
    return (
        f'SELECT {select} FROM "reefer" WHERE {where} AND $timeFilter '
        'GROUP BY time($__interval), "asset", "compartment" fill(null)'
    )


def _excursions(where: str) -> str:
    return (
        'SELECT "id", "kind", "severity", "status", "change", "peak_c", "duration_s", '
        f'"degree_minutes", "detected_late" FROM "excursion" WHERE {where} AND $timeFilter '
        'GROUP BY "asset", "compartment", "rule"'
    )


def _dashboard(
    title: str, uid: str, variables: list[Template], where: str, panels: list[Any]
) -> Dashboard:
    """The frame both dashboards share: UTC, last 6 h, 1 min refresh, excursion annotations."""
    return Dashboard(
        title=title,
        uid=uid,
        tags=["coldchain"],
        timezone="utc",
        time=Time("now-6h", "now"),
        refresh="1m",
        templating=Templating(list=variables),
        annotations=Annotations(list=[_excursion_annotation(where)]),
        panels=panels,
    ).auto_panel_ids()


def fleet_overview() -> Dashboard:
    """All selected assets: temperatures, doors, reefers, data freshness, excursions."""
    panels = [
        _series(
            "Temperature",
            [
                _target(
                    _temperature(_ASSETS, '"asset", "compartment", "probe"'),
                    "A",
                    alias="$tag_asset $tag_compartment $tag_probe",
                )
            ],
            GridPos(h=9, w=24, x=0, y=0),
            unit="celsius",
        ),
        _series(
            "Door open",
            [_target(_door(_ASSETS), "A", alias="$tag_asset $tag_compartment")],
            GridPos(h=7, w=12, x=0, y=9),
            drawStyle="bars",
        ),
        _series(
            "Reefer setpoint vs return air",
            [
                _target(
                    _reefer(_ASSETS, ["setpoint_c", "return_air_c"]),
                    "A",
                    alias="$tag_asset $tag_compartment $col",
                )
            ],
            GridPos(h=7, w=12, x=12, y=9),
            unit="celsius",
        ),
        _series(
            "Receive lag",
            [
                _target(
                    f'SELECT max("receive_lag_s") FROM "device" WHERE {_ASSETS} AND $timeFilter '
                    'GROUP BY time($__interval), "asset", "device" fill(null)',
                    "A",
                    alias="$tag_asset $tag_device",
                )
            ],
            GridPos(h=7, w=12, x=0, y=16),
            unit="s",
        ),
        _table(
            "Last seen",
            'SELECT last("seq") AS "seq", last("receive_lag_s") AS "receive_lag_s", '
            'last("battery_pct") AS "battery_pct", last("signal_dbm") AS "signal_dbm" '
            f'FROM "device" WHERE {_ASSETS} AND $timeFilter GROUP BY "asset", "device"',
            GridPos(h=7, w=12, x=12, y=16),
        ),
        _table("Excursions", _excursions(_ASSETS), GridPos(h=8, w=24, x=0, y=23)),
    ]
    variables = [
        _variable("asset", 'SHOW TAG VALUES FROM "temperature" WITH KEY = "asset"', multi=True)
    ]
    return _dashboard("Coldchain fleet overview", "coldchain-fleet", variables, _ASSETS, panels)


def compartment_detail() -> Dashboard:
    """One compartment: product vs air probes, reefer setpoint, door, excursions."""
    panels = [
        _series(
            "Product vs air",
            [
                _target(
                    _temperature(_ONE, '"probe", "sensor"'),
                    "A",
                    alias="$tag_probe $tag_sensor",
                ),
                _target(_reefer(_ONE, ["setpoint_c"]), "B", alias="setpoint"),
            ],
            GridPos(h=10, w=24, x=0, y=0),
            unit="celsius",
        ),
        _series(
            "Reefer",
            [
                _target(
                    _reefer(_ONE, ["setpoint_c", "supply_air_c", "return_air_c"]),
                    "A",
                    alias="$col",
                )
            ],
            GridPos(h=8, w=12, x=0, y=10),
            unit="celsius",
        ),
        _series(
            "Door open",
            [_target(_door(_ONE), "A", alias="door")],
            GridPos(h=8, w=12, x=12, y=10),
            drawStyle="bars",
        ),
        _table("Excursions", _excursions(_ONE), GridPos(h=8, w=24, x=0, y=18)),
    ]
    variables = [
        _variable("asset", 'SHOW TAG VALUES FROM "temperature" WITH KEY = "asset"', multi=False),
        _variable(
            "compartment",
            'SHOW TAG VALUES FROM "temperature" WITH KEY = "compartment" '
            "WHERE \"asset\" = '$asset'",
            multi=False,
        ),
    ]
    return _dashboard(
        "Coldchain compartment detail", "coldchain-compartment", variables, _ONE, panels
    )
