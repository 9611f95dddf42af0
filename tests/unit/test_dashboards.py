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
        assert 'FROM "excursion"' in a["query"]


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
        "coldchain-compartment": ["asset", "compartment"],
    }


def test_provisioning_points_where_compose_mounts_the_json() -> None:
    provider = (ROOT / "deploy/grafana/provisioning/dashboards/coldchain.yaml").read_text()
    compose = (ROOT / "deploy/compose.yaml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in compose
