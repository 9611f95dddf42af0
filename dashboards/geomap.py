"""A typed Grafana geomap panel for grafanalib, which has none.

Grafana's geomap panel (``type: geomap``, options per Grafana 10.4's panel schema: ``view``,
``controls``, ``basemap``, ``layers``, ``tooltip``) draws one layer per query. Only the subset
coldchain uses is modelled: marker layers placed by latitude/longitude fields, coloured by a
field through thresholds or a fixed colour, each reading one query (by refId).
"""

from __future__ import annotations

from typing import Any

import attr
from attr.validators import in_, instance_of
from grafanalib.core import GridPos, Panel

__all__ = ["Geomap", "MarkerLayer", "Threshold", "geomap"]


@attr.s(frozen=True)
class Threshold:
    """A colour from a value up (``value`` None: the base colour, below every other step)."""

    color: str = attr.ib(validator=instance_of(str))
    value: float | None = attr.ib(default=None)

    def to_json_data(self) -> dict[str, Any]:
        return {"color": self.color, "value": self.value}


@attr.s(frozen=True)
class MarkerLayer:
    """Markers at (``lat_field``, ``lon_field``) of the rows of query ``ref_id`` (None: of the
    panel's first data frame, e.g. the one a join transformation made: Grafana's marker layer
    reads one frame, and a joined frame keeps no refId to select it by).

    ``color_field`` with ``thresholds`` colours each marker by that field's value (e.g. a
    severity rank); without it every marker has ``fixed_color``. ``text_field`` labels it.
    ``symbol`` is a Grafana built-in marker shape (``img/icons/marker/<symbol>.svg``).
    """

    name: str = attr.ib(validator=instance_of(str))
    ref_id: str | None = attr.ib()
    lat_field: str = attr.ib(default="lat")
    lon_field: str = attr.ib(default="lon")
    color_field: str | None = attr.ib(default=None)
    fixed_color: str = attr.ib(default="blue")
    text_field: str | None = attr.ib(default=None)
    symbol: str = attr.ib(default="circle", validator=in_({"circle", "square", "triangle"}))
    size: int = attr.ib(default=8)

    def to_json_data(self) -> dict[str, Any]:
        color: dict[str, Any] = {"fixed": self.fixed_color}
        if self.color_field is not None:
            color["field"] = self.color_field
        style: dict[str, Any] = {
            "color": color,
            "opacity": 0.9,
            "size": {"fixed": self.size},
            "symbol": {"fixed": f"img/icons/marker/{self.symbol}.svg", "mode": "fixed"},
        }
        if self.text_field is not None:
            style["text"] = {"field": self.text_field, "mode": "field"}
        layer: dict[str, Any] = {
            "type": "markers",
            "name": self.name,
            "config": {"showLegend": True, "style": style},
            "location": {
                "mode": "coords",
                "latitude": self.lat_field,
                "longitude": self.lon_field,
            },
            "tooltip": True,
        }
        if self.ref_id is not None:
            layer["filterData"] = {"id": "byRefId", "options": self.ref_id}
        return layer


@attr.s
class Geomap(Panel):  # type: ignore[misc]  # grafanalib is untyped
    """A geomap panel: ``layers`` over an OpenStreetMap basemap, centred on (``lat``, ``lon``).

    ``thresholds`` (list of ``Threshold``) colour the layers that have a ``color_field``.
    """

    layers: list[MarkerLayer] = attr.ib(factory=list, validator=instance_of(list))
    lat: int = attr.ib(default=0)
    lon: int = attr.ib(default=0)
    zoom: int = attr.ib(default=5)
    colors: list[Threshold] = attr.ib(factory=list, validator=instance_of(list))

    def to_json_data(self) -> dict[str, Any]:
        steps = [t.to_json_data() for t in self.colors] or [{"color": "green", "value": None}]
        panel: dict[str, Any] = self.panel_json(
            {
                "type": "geomap",
                "fieldConfig": {
                    "defaults": {
                        "color": {"mode": "thresholds"},
                        "thresholds": {"mode": "absolute", "steps": steps},
                    },
                    "overrides": [],
                },
                "options": {
                    "view": {
                        "id": "coords",
                        "lat": self.lat,
                        "lon": self.lon,
                        "zoom": self.zoom,
                        "allLayers": True,
                    },
                    "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
                    "basemap": {"type": "osm-standard", "name": "Basemap"},
                    "layers": [layer.to_json_data() for layer in self.layers],
                    "tooltip": {"mode": "details"},
                },
            }
        )
        return panel


def geomap(
    title: str,
    pos: GridPos,
    targets: list[Any],
    layers: list[MarkerLayer],
    *,
    datasource: dict[str, str],
    center: tuple[int, int] = (0, 0),
    zoom: int = 5,
    colors: list[Threshold] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> Geomap:
    """A ``Geomap`` centred on ``center`` (lat, lon in whole degrees, as Grafana's view has
    them), typed for callers (grafanalib's own fields are untyped)."""
    return Geomap(  # type: ignore[call-arg]  # Panel's fields come from untyped grafanalib
        title=title,
        dataSource=datasource,
        gridPos=pos,
        targets=targets,
        transformations=transformations or [],
        layers=layers,
        lat=center[0],
        lon=center[1],
        zoom=zoom,
        colors=colors or [],
    )
