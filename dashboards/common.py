"""What every coldchain dashboard shares: the datasource, panel and variable helpers, the
excursion annotations and the dashboard frame.

Every query is raw InfluxQL (portable to InfluxDB 1.x, 2.x through DBRP and 3.x) against the
provisioned datasource (uid ``coldchain-influxdb``, deploy/grafana/provisioning/datasources)
over the schema of docs/telemetry.md and the registry mirror's measurements (docs/dashboards.md),
using Grafana's ``$timeFilter`` and ``$__interval`` macros.
"""

from __future__ import annotations

from typing import Any

from grafanalib.core import (
    Annotations,
    Dashboard,
    GridPos,
    Stat,
    Table,
    Template,
    Templating,
    Time,
    TimeSeries,
)
from grafanalib.influxdb import InfluxDBTarget

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "SEVERITY_COLORS",
    "dashboard",
    "excursion_annotation",
    "only_open",
    "series",
    "stat",
    "table",
    "target",
    "variable",
]

DATASOURCE_UID = "coldchain-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}

# Severity rank (ingest/mirror.py): 0 none open, 1 info, 2 warning, 3 critical.
SEVERITY_COLORS: list[tuple[str, float | None]] = [
    ("green", None),
    ("blue", 1),
    ("orange", 2),
    ("red", 3),
]


def target(query: str, ref: str, *, alias: str = "", fmt: str = "time_series") -> InfluxDBTarget:
    """One raw InfluxQL query (``fmt`` ``table`` for tables, maps and joins)."""
    return InfluxDBTarget(
        query=query, refId=ref, alias=alias, format=fmt, datasource=DATASOURCE, rawQuery=True
    )


def _legend(panel: dict[str, Any]) -> dict[str, Any]:
    # grafanalib leaves out showLegend, which Grafana 10.4's schema requires.
    panel["options"]["legend"]["showLegend"] = True
    return panel


class _Series(TimeSeries):  # type: ignore[misc]  # grafanalib is untyped
    def to_json_data(self) -> dict[str, Any]:
        return _legend(super().to_json_data())


def series(
    title: str, targets: list[InfluxDBTarget], pos: GridPos, *, unit: str = "", **kw: Any
) -> TimeSeries:
    """A time series panel; ``kw`` go to grafanalib's ``TimeSeries`` (overrides, drawStyle)."""
    return _Series(
        title=title, dataSource=DATASOURCE, targets=targets, gridPos=pos, unit=unit, **kw
    )


def only_open() -> dict[str, Any]:
    """Keep the rows whose ``open`` field is true (excursion_open keeps a closing row)."""
    return {
        "id": "filterByValue",
        "options": {
            "filters": [
                {"fieldName": "open", "config": {"id": "equal", "options": {"value": True}}}
            ],
            "match": "all",
            "type": "include",
        },
    }


def table(
    title: str,
    queries: list[str],
    pos: GridPos,
    *,
    transformations: list[dict[str, Any]] | None = None,
) -> Table:
    """A table of one or more table-format queries (refIds A, B, ...)."""
    return Table(
        title=title,
        dataSource=DATASOURCE,
        targets=[target(q, chr(65 + i), fmt="table") for i, q in enumerate(queries)],
        gridPos=pos,
        transformations=transformations or [],
    )


def stat(
    title: str,
    targets: list[InfluxDBTarget],
    pos: GridPos,
    *,
    colors: list[tuple[str, float | None]] | None = None,
    field_colors: dict[str, str] | None = None,
) -> Stat:
    """A stat panel showing each field's last non-null value; ``colors`` are threshold steps,
    ``field_colors`` (field name -> colour) the colour of a field when it is not 0."""
    steps = [{"color": c, "value": v} for c, v in (colors or [("green", None)])]
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [
                {
                    "id": "thresholds",
                    "value": {
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": color, "value": 1}],
                    },
                }
            ],
        }
        for name, color in (field_colors or {}).items()
    ]
    return Stat(
        title=title,
        dataSource=DATASOURCE,
        targets=targets,
        gridPos=pos,
        reduceCalc="lastNotNull",
        graphMode="none",
        thresholds=steps,
        overrides=overrides,
    )


def variable(
    name: str, query: str, *, multi: bool, label: str | None = None, refresh: int = 2
) -> Template:
    """A query variable (``multi``: several values and All, matched as a regex ``=~ /^$x$/``)."""
    return Template(
        name=name,
        label=label or name.capitalize(),
        query=query,
        dataSource=DATASOURCE,
        multi=multi,
        includeAll=multi,
        allValue=".*" if multi else None,
        refresh=refresh,  # 2: on time range change, so new assets show up without a reload
    )


def excursion_annotation(where: str) -> dict[str, Any]:
    """Excursions as region annotations on every time series panel of the dashboard: one per
    excursion from the registry mirror's ``excursion_state`` (start to end, title its kind,
    text its detail, tagged with its rule and severity)."""
    query = (
        'SELECT "kind", "severity", "status", "detail", "rule", "end_ms" '
        f'FROM "excursion_state" WHERE {where} AND $timeFilter'
    )
    return {
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "name": "Excursions",
        "builtIn": 0,
        # Grafana >= 10 keeps an InfluxQL annotation's query in ``target`` (legacy dashboards
        # with a top-level ``query`` are migrated into it by the InfluxDB datasource).
        "target": {
            "refId": "Anno",
            "fromAnnotations": True,
            "rawQuery": True,
            "query": query,
            "titleColumn": "kind",
            "textColumn": "detail",
            "tagsColumn": "rule",
            "timeEndColumn": "end_ms",
        },
    }


def dashboard(
    title: str,
    uid: str,
    variables: list[Template],
    annotation_where: str,
    panels: list[Any],
    *,
    description: str,
) -> Dashboard:
    """The frame every dashboard shares: UTC, last 6 h, 1 min refresh, excursion annotations."""
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["coldchain"],
        timezone="utc",
        time=Time("now-6h", "now"),
        refresh="1m",
        templating=Templating(list=variables),
        annotations=Annotations(list=[excursion_annotation(annotation_where)]),
        panels=panels,
    ).auto_panel_ids()
