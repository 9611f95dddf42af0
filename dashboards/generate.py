"""Render the dashboards to the JSON files Grafana provisions (``coldchain dashboards``)."""

from __future__ import annotations

import json
from pathlib import Path

from grafanalib._gen import DashboardEncoder

from dashboards.fleet import compartment_detail, fleet_overview

__all__ = ["DEFAULT_OUT", "render", "write"]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"


def render() -> dict[str, str]:
    """File name -> dashboard JSON (sorted keys, indent 2, trailing newline)."""
    boards = {
        "coldchain-fleet.json": fleet_overview(),
        "coldchain-compartment.json": compartment_detail(),
    }
    return {
        name: json.dumps(board.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2)
        + "\n"
        for name, board in boards.items()
    }


def write(out_dir: Path | str = DEFAULT_OUT) -> list[Path]:
    """Write every rendered dashboard into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
