"""The generated Grafana dashboards: checked-in JSON in step with the code, sound panel wiring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dashboards import DATASOURCE_UID, render, write

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "deploy" / "grafana" / "dashboards"
RENDERED = render()


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in board["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_checked_in_json_matches_the_code() -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CHECKED_IN.glob("*.json")}
    assert sorted(on_disk) == sorted(RENDERED), "run `uv run coldchain dashboards`"
    for name, text in RENDERED.items():
        assert on_disk[name] == text, f"{name} is stale: run `uv run coldchain dashboards`"


def test_render_is_deterministic_sorted_json(tmp_path: Path) -> None:
    assert render() == RENDERED
    for text in RENDERED.values():
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    written = write(tmp_path)
    assert {p.name: p.read_text(encoding="utf-8") for p in written} == RENDERED


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_every_query_uses_the_provisioned_datasource(name: str) -> None:
    board = json.loads(RENDERED[name])
    panels = _panels(board)
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert t["rawQuery"] is True
            assert "$timeFilter" in t["query"], (panel["title"], t["query"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    for var in board["templating"]["list"]:
        assert var["datasource"]["uid"] == DATASOURCE_UID, var["name"]
    annotations = board["annotations"]["list"]
    assert annotations
    for a in annotations:
        assert a["datasource"]["uid"] == DATASOURCE_UID
        assert 'FROM "excursion_state"' in a["target"]["query"]


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_panel_ids_are_unique(name: str) -> None:
    ids = [p["id"] for p in _panels(json.loads(RENDERED[name]))]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))


def test_dashboard_uids_are_distinct_and_variables_present() -> None:
    boards = [json.loads(t) for t in RENDERED.values()]
    assert len({b["uid"] for b in boards}) == len(boards)
    variables = {b["uid"]: [v["name"] for v in b["templating"]["list"]] for b in boards}
    assert variables == {
        "coldchain-fleet": ["asset"],
        "coldchain-vehicle": ["asset", "compartment"],
        "coldchain-store": ["store", "compartment"],
        "coldchain-excursions": ["asset", "compartment"],
        "coldchain-devices": ["asset"],
    }


def test_five_dashboards_and_the_maps_they_need() -> None:
    boards = {json.loads(t)["uid"]: json.loads(t) for t in RENDERED.values()}
    assert len(boards) == 5
    fleet_map = next(p for p in boards["coldchain-fleet"]["panels"] if p["type"] == "geomap")
    layers = {layer["name"]: layer for layer in fleet_map["options"]["layers"]}
    assert set(layers) == {"Vehicles", "Stores"}
    assert layers["Vehicles"]["config"]["style"]["color"]["field"] == "worst_rank"
    assert layers["Stores"]["filterData"] == {"id": "byRefId", "options": "D"}
    assert 'FROM "site"' in fleet_map["targets"][3]["query"]
    route = [p for p in boards["coldchain-vehicle"]["panels"] if p["type"] == "geomap"]
    assert len(route) == 1 and 'FROM "position"' in route[0]["targets"][0]["query"]


def test_write_removes_dashboards_no_longer_rendered(tmp_path: Path) -> None:
    (tmp_path / "coldchain-compartment.json").write_text("{}")
    (tmp_path / "someone-elses.json").write_text("{}")
    write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*RENDERED, "someone-elses.json"])


def test_provisioning_points_where_compose_mounts_the_json() -> None:
    provider = (ROOT / "deploy/grafana/provisioning/dashboards/coldchain.yaml").read_text()
    compose = (ROOT / "deploy/compose.yaml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in compose
