"""Render the dashboards to the JSON files Grafana provisions (``coldchain dashboards``).

grafanalib writes keys from Grafana's pre-schema days (``span``, ``hideControls``, ``rows``...)
and nulls for every unset option; ``clean`` drops both, so that the files hold only what
Grafana 10.4's dashboard schema defines (tests/unit/test_dashboards_model.py checks that with
Grafana's own typed models).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard

from dashboards.fleet import fleet_overview, vehicle_detail
from dashboards.sites import device_health, excursions_overview, store_overview

__all__ = ["BOARDS", "DEFAULT_OUT", "clean", "render", "write"]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"

BOARDS: dict[str, Callable[[], Dashboard]] = {
    "coldchain-fleet.json": fleet_overview,
    "coldchain-vehicle.json": vehicle_detail,
    "coldchain-store.json": store_overview,
    "coldchain-excursions.json": excursions_overview,
    "coldchain-devices.json": device_health,
}

# grafanalib's legacy keys, per object kind: Grafana >= 7 ignores them and its schema has none.
_LEGACY_DASHBOARD = {"__inputs", "rows", "style", "sharedCrosshair", "hideControls"}
_LEGACY_PANEL = {
    "span",
    "minSpan",
    "height",
    "error",
    "editable",
    "columns",
    "fontSize",
    "mappings",
    "color",
}
_LEGACY_VARIABLE = {"useTags", "tagsQuery", "tagValuesQuery"}
# Options Grafana 10.4's panel schemas give a default and grafanalib leaves out: written
# explicitly so that the file says what Grafana will do (and the typed round trip is exact).
_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "table": {
        "showTypeIcons": False,
        "frameIndex": 0,
        "footer": {"show": False, "reducer": [], "countRows": False},
        "cellHeight": "sm",
    },
    "stat": {"wideLayout": True, "showPercentChange": False},
}


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        # A threshold step keeps ``value: null``: the base step, below every other.
        step = "color" in value and "value" in value
        return {
            k: _drop_nulls(v) for k, v in value.items() if v is not None or (step and k == "value")
        }
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def clean(board: dict[str, Any]) -> dict[str, Any]:
    """``board`` (grafanalib's JSON data) without nulls and legacy keys; threshold steps keep
    their ``value: null`` (the base step), as Grafana writes them."""
    out: dict[str, Any] = {k: v for k, v in board.items() if k not in _LEGACY_DASHBOARD}
    panels = []
    for panel in out.get("panels", []):
        p = {k: v for k, v in panel.items() if k not in _LEGACY_PANEL}
        p.setdefault("repeatDirection", "h")
        if p["repeatDirection"] is None:
            p["repeatDirection"] = "h"
        for key, default in _DEFAULT_OPTIONS.get(p.get("type", ""), {}).items():
            p.setdefault("options", {}).setdefault(key, default)
        if p.get("type") == "table":
            p["fieldConfig"]["defaults"].setdefault("custom", {}).setdefault("inspect", False)
        p = _drop_nulls(p)
        panels.append(p)
    out["panels"] = panels
    variables = []
    for var in out["templating"]["list"]:
        v = {k: x for k, x in var.items() if k not in _LEGACY_VARIABLE}
        v["current"] = {"selected": False, "text": "", "value": ""}
        v["skipUrlSync"] = False
        variables.append(_drop_nulls(v))
    out["templating"] = {"list": variables}
    out = {k: (_drop_nulls(v) if k != "panels" else v) for k, v in out.items() if v is not None}
    out["fiscalYearStartMonth"] = 0
    return out


def render() -> dict[str, str]:
    """File name -> dashboard JSON (sorted keys, indent 2, trailing newline)."""
    return {
        name: json.dumps(
            clean(json.loads(json.dumps(build().to_json_data(), cls=DashboardEncoder))),
            sort_keys=True,
            indent=2,
        )
        + "\n"
        for name, build in BOARDS.items()
    }


def write(out_dir: Path | str = DEFAULT_OUT) -> list[Path]:
    """Write every rendered dashboard into ``out_dir``, removing ``coldchain-*.json`` files no
    dashboard renders any more; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for stale in out.glob("coldchain-*.json"):
        if stale.name not in rendered:
            stale.unlink()
    paths = []
    for name, text in rendered.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
