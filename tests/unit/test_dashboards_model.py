"""The generated dashboards against Grafana's own typed models (grafana-foundation-sdk, the
build for the Grafana version deploy/compose.yaml runs).

The SDK's ``from_json`` silently drops keys it does not know, so loading alone proves nothing:
each dashboard is loaded, dumped again and compared with the generated JSON, and a misspelt
field must make that comparison fail.
"""

from __future__ import annotations

import copy
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import render

ROOT = Path(__file__).resolve().parents[2]
RENDERED = {name: json.loads(text) for name, text in render().items()}
# The InfluxDB annotation query: Grafana 10.4's schema types an annotation's ``target`` only for
# the built-in "grafana" datasource (limit, matchAny, tags, type), so it is checked on its own.
INFLUX_ANNOTATION_KEYS = {
    "refId",
    "fromAnnotations",
    "rawQuery",
    "query",
    "titleColumn",
    "textColumn",
    "tagsColumn",
    "timeEndColumn",
}

register_default_plugins()


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where ``b`` (the round trip) differs from ``a``: dropped, added or changed keys."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            here = f"{path}.{key}"
            if key not in b:
                out.append(f"dropped {here}")
            elif key not in a:
                out.append(f"added {here}={b[key]!r}")
            else:
                out.extend(_differences(a[key], b[key], here))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"length of {path}: {len(a)} -> {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    if a != b or type(a) is not type(b):
        return [f"changed {path}: {a!r} -> {b!r}"]
    return []


def round_trip_differences(board: dict[str, Any]) -> list[str]:
    """Load ``board`` into the typed model, dump it, and list every difference (empty: the
    model knows every key and keeps every value). Annotation targets are set aside."""
    board = copy.deepcopy(board)
    for annotation in board.get("annotations", {}).get("list", []):
        annotation.pop("target", None)
    typed = Dashboard.from_json(board)
    back = json.loads(json.dumps(typed, cls=JSONEncoder))
    return _differences(board, back)


def test_the_sdk_is_the_build_for_the_grafana_that_compose_runs() -> None:
    compose = (ROOT / "deploy/compose.yaml").read_text(encoding="utf-8")
    match = re.search(r"image: grafana/grafana:(\d+)\.(\d+)\.\d+", compose)
    assert match, "deploy/compose.yaml pins no grafana/grafana:X.Y.Z image"
    epoch, _, public = version("grafana-foundation-sdk").partition("!")
    assert epoch.isdigit(), "the build must be pinned with its epoch (a plain pin means 10.1)"
    assert public.split(".")[:2] == [match[1], match[2]], (public, match[0])


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_round_trip_through_grafanas_typed_model_is_exact(name: str) -> None:
    assert round_trip_differences(RENDERED[name]) == []


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_annotation_targets_are_influxql_queries(name: str) -> None:
    for annotation in RENDERED[name]["annotations"]["list"]:
        t = annotation["target"]
        assert set(t) == INFLUX_ANNOTATION_KEYS, sorted(set(t) ^ INFLUX_ANNOTATION_KEYS)
        assert t["rawQuery"] is True and t["fromAnnotations"] is True
        assert "$timeFilter" in t["query"]


def _geomap(board: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["type"] == "geomap")


@pytest.mark.parametrize(
    ("misspell", "expected"),
    [
        (lambda b: b.__setitem__("refersh", b.pop("refresh")), "dropped .refersh"),
        (
            lambda b: b["panels"][0].__setitem__("gridPosition", b["panels"][0].pop("gridPos")),
            "dropped .panels[0].gridPosition",
        ),
        (
            lambda b: _geomap(b)["options"].__setitem__(
                "layer", _geomap(b)["options"].pop("layers")
            ),
            ".options.layer",
        ),
        (
            lambda b: b["templating"]["list"][0].__setitem__("multiple", True),
            "dropped .templating.list[0].multiple",
        ),
        (
            lambda b: _geomap(b)["options"]["view"].__setitem__("zoom_level", 4),
            ".options.view.zoom_level",
        ),
    ],
)
def test_a_misspelt_field_fails_the_check(misspell: Any, expected: str) -> None:
    board = copy.deepcopy(RENDERED["coldchain-fleet.json"])
    misspell(board)
    found = round_trip_differences(board)
    assert any(expected in d for d in found), found
