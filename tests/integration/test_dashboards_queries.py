"""Every query of the generated dashboards runs against a real influxd holding realistic data.

Grafana's macros are substituted the way Grafana would for a 6 h range and a 1 m interval, then
each panel target, template variable and annotation query goes through ``InfluxClient.query``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from coldchain.settings import InfluxSettings
from dashboards import render
from deploy.launcher import Services
from timeseries.client import InfluxClient, Series

pytestmark = pytest.mark.integration

MINUTES = 120
# asset -> compartment -> (setpoint, [(sensor, probe)])
FLEET = {
    "truck-jy-01": {
        "c1": (-20.0, [("c1-air", "air"), ("c1-prod", "product")]),
        "c2": (3.0, [("c2-air", "air"), ("c2-prod", "product")]),
    },
    "store-sz-01": {
        "z1": (-25.0, [("z1-air-a", "air"), ("z1-air-b", "air"), ("z1-prod", "product")])
    },
}
DEVICES = {"truck-jy-01": "rf-jy-01", "store-sz-01": "cs-sz-01"}


def _lines(now_ms: int) -> list[str]:
    out: list[str] = []
    start = now_ms - MINUTES * 60_000
    for m in range(MINUTES):
        ts = start + m * 60_000
        for asset, comps in FLEET.items():
            dev = DEVICES[asset]
            out.append(
                f"device,asset={asset},device={dev} seq={m}i,samples=1i,"
                f'receive_lag_s={0.5 + m % 7},battery_pct=97.0,power_source="vehicle",'
                f"signal_dbm=-71i {ts}"
            )
            for comp, (setpoint, sensors) in comps.items():
                drift = 0.05 * (m % 20)
                out.append(f"door,asset={asset},compartment={comp} open={m % 30 < 3} {ts}")
                out.append(
                    f"reefer,asset={asset},compartment={comp} setpoint_c={setpoint},"
                    f'mode="cooling",supply_air_c={setpoint - 3},'
                    f"return_air_c={setpoint + 0.8 + drift},alarm_code=0i {ts}"
                )
                for i, (sensor, probe) in enumerate(sensors):
                    temp = setpoint + (1.0 if probe == "product" else 0.3) + drift + i * 0.1
                    out.append(
                        f"temperature,asset={asset},compartment={comp},sensor={sensor},"
                        f"probe={probe} temp_c={temp:.2f} {ts}"
                    )
    for n, (asset, comp, rule, ago) in enumerate(
        [("truck-jy-01", "c1", "frozen-range", 90), ("store-sz-01", "z1", "door-open", 30)]
    ):
        out.append(
            f"excursion,asset={asset},compartment={comp},rule={rule} "
            f'id="exc-{n}",kind="range",severity="major",status="closed",change="closed",'
            f"end_ms={now_ms - (ago - 12) * 60_000}i,duration_s=720.0,peak_c=-14.2,"
            f'degree_minutes=38.5,detected_late=false,detail="product above -18 C" '
            f"{now_ms - ago * 60_000}"
        )
    return out


@pytest.fixture
def client(services: Services, unique_name: str) -> Iterator[InfluxClient]:
    c = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    c.create_database()
    c.write("\n".join(_lines(int(time.time() * 1000))).encode())
    yield c
    c.close()


def _substitute(query: str, asset: str, compartment: str) -> str:
    return (
        query.replace("$timeFilter", "time >= now() - 6h")
        .replace("$__interval", "1m")
        .replace("$compartment", compartment)
        .replace("$asset", asset)
    )


def _has_values(series: list[Series]) -> bool:
    return any(v is not None for s in series for row in s.values for v in row[1:])


def _boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in render().items()}


def test_every_dashboard_query_runs_and_returns_data(client: InfluxClient) -> None:
    started = time.monotonic()
    checked = 0
    for name, board in _boards().items():
        for var in board["templating"]["list"]:
            series = client.query(_substitute(var["query"], "truck-jy-01", "c1"))
            values = {row[1] for s in series for row in s.values}
            expected = set(FLEET) if var["name"] == "asset" else set(FLEET["truck-jy-01"])
            assert values == expected, (name, var["name"], values)
            checked += 1
        for panel in board["panels"]:
            for target in panel["targets"]:
                q = _substitute(target["query"], "truck-jy-01", "c1")
                series = client.query(q)
                assert _has_values(series), (name, panel["title"], q)
                for s in series:
                    assert s.tags.get("asset", "truck-jy-01") == "truck-jy-01", (q, s.tags)
                    if "$compartment" in target["query"]:
                        assert s.tags.get("compartment", "c1") == "c1", (q, s.tags)
                checked += 1
        for ann in board["annotations"]["list"]:
            series = client.query(_substitute(ann["query"], "truck-jy-01", "c1"))
            rows = [r for s in series for r in s.records()]
            assert len(rows) == 1 and rows[0]["rule"] == "frozen-range", (name, rows)
            assert rows[0]["detail"] == "product above -18 C"
            checked += 1
    texts = render().values()
    expected = sum(
        t.count('"rawQuery": true') + t.count('"query": "SHOW TAG VALUES') for t in texts
    )
    assert checked == expected + len(texts) >= 16  # targets + variables + one annotation each
    assert time.monotonic() - started < 15


def test_fleet_regex_variable_selects_all_or_several_assets(client: InfluxClient) -> None:
    fleet = _boards()["coldchain-fleet.json"]
    temperature = next(p for p in fleet["panels"] if p["title"] == "Temperature")
    query = temperature["targets"][0]["query"]
    everything = client.query(_substitute(query, ".*", ""))  # Grafana's "All" (allValue)
    assert {(s.tags["asset"], s.tags["compartment"], s.tags["probe"]) for s in everything} == {
        (a, c, probe)
        for a, comps in FLEET.items()
        for c, (_, ss) in comps.items()
        for _, probe in ss
    }
    several = client.query(_substitute(query, "(store-sz-01|truck-jy-01)", ""))
    assert {s.tags["asset"] for s in several} == set(FLEET)
    excursions = next(p for p in fleet["panels"] if p["title"] == "Excursions")
    rows = client.query(_substitute(excursions["targets"][0]["query"], ".*", ""))
    assert sorted(s.tags["rule"] for s in rows) == ["door-open", "frozen-range"]
    assert all(r["peak_c"] == -14.2 for s in rows for r in s.records())
