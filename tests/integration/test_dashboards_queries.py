"""Every query of the generated dashboards runs against a real influxd holding the demo
scenario (a simulated day of 5 trucks and 2 cold stores) as ingest would store it: telemetry
through the decode/validate/encode path, excursions from the rules engine into a real SQLite
registry, and the registry mirror's measurements (ingest/mirror.py).

Grafana's macros are substituted the way Grafana would for a 24 h range and a 5 m interval, the
template variables with a vehicle, a store and "All", and each panel target, variable and
annotation query goes through ``InfluxClient.query``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coldchain.contract import Limits, PointEncoder
from coldchain.rules import ProfileAssignment, RulesEngine, load_presets
from coldchain.rules.excursion import Excursion
from coldchain.settings import InfluxSettings, ValidationSettings
from dashboards import render
from deploy.launcher import Services
from ingest.consumer import Delivery
from ingest.mirror import RegistryMirror
from ingest.pipeline import process_delivery
from ingest.rules_io import excursion_line
from registry import Registry, open_registry, upgrade
from simulators import library_scenario
from simulators.engine import Simulation
from timeseries.client import InfluxClient, Series

pytestmark = pytest.mark.integration

STORE = "store-gz"
VEHICLE = ""  # the vehicle with the most excursions in the demo, set by the fixture
VARS = {"asset": VEHICLE, "compartment": ".*", "store": STORE}


class Loaded:
    def __init__(self, client: InfluxClient, registry: Registry, vehicles: set[str]) -> None:
        self.client, self.registry, self.vehicles = client, registry, vehicles


@pytest.fixture(scope="module")
def demo(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    scenario = library_scenario("demo")
    fleet = scenario.fleet()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=scenario.duration_s)
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'registry.sqlite3'}"
    upgrade(url)
    registry = open_registry(url)
    client = InfluxClient(InfluxSettings(url=services.influxd.url, database="dashboards_demo"))
    client.create_database()
    encoder, v = PointEncoder(fleet), ValidationSettings()
    limits = Limits(v.max_future_skew_s, v.max_sample_age_s)
    engine = RulesEngine(fleet, load_presets(), list[ProfileAssignment]())
    lines: list[str] = []
    excursions: dict[str, Excursion] = {}
    dead: dict[str, int] = {}
    for msg in Simulation(scenario, start=start, seed=7).messages():
        if msg.kind != "telemetry":
            continue
        received = int(msg.time.timestamp() * 1000)
        d = Delivery(msg.topic, msg.payload, 0, 1, received, 0)
        out = process_delivery(d, fleet, encoder, limits, v.max_payload_bytes)
        for letter in out.dead:  # what the spool would hold
            dead[letter.reason] = dead.get(letter.reason, 0) + 1
        if out.spooled is None or out.asset_id is None:
            continue
        lines.extend(out.spooled.lines)
        for change in engine.feed(out.asset_id, out.samples, received).changes:
            lines.append(excursion_line(change))
            excursions[change.excursion.id] = change.excursion
    counts: dict[str, int] = {}
    for e in excursions.values():
        if e.asset_id in fleet.assets and fleet.assets[e.asset_id].kind == "vehicle":
            counts[e.asset_id] = counts.get(e.asset_id, 0) + 1
    global VEHICLE
    VEHICLE = max(counts, key=lambda a: counts[a])
    VARS["asset"] = VEHICLE
    # An excursion that opened a week ago and is still open must show on today's dashboard.
    week_old = Excursion(
        VEHICLE, fleet.assets[VEHICLE].compartments[0].id, "gap", "data_gap", "critical", "open",
        int((now - timedelta(days=7)).timestamp() * 1000), None,
        int((now - timedelta(days=7)).timestamp() * 1000),
    )  # fmt: skip
    week_old = replace(week_old, id="")
    registry.upsert_excursions([*excursions.values(), week_old])
    for i in range(0, len(lines), 20_000):
        client.write("\n".join(lines[i : i + 20_000]).encode())
    mirror = RegistryMirror(
        registry, fleet, client.write, load_presets(), clock_ms=_now_ms,
        dead_letter_counts=lambda: dead or {"unknown_sensor": 1},
    )  # fmt: skip
    mirror.pass_once()
    vehicles = {a.id for a in fleet.assets.values() if a.kind == "vehicle"}
    yield Loaded(client, registry, vehicles)
    client.close()
    registry.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _substitute(query: str, values: dict[str, str]) -> str:
    q = query.replace("$timeFilter", "time >= now() - 24h").replace("$__interval", "5m")
    for name in sorted(values, key=len, reverse=True):
        q = q.replace(f"${name}", values[name])
    assert "$" not in q.replace("/^", "").replace("$/", ""), q
    return q


def _has_values(series: list[Series]) -> bool:
    return any(v is not None for s in series for row in s.values for v in row[1:])


def _check_shape(query: str, series: list[Series]) -> None:
    """Rows of the shape the query asks for: every ``AS "x"`` alias is a column, every
    ``GROUP BY`` tag is on every series, and some value is not null."""
    assert _has_values(series), query
    aliases = set(re.findall(r'AS "(\w+)"', query))
    group_by = query.split("GROUP BY", 1)[1] if "GROUP BY" in query else ""
    tags = set(re.findall(r'"(\w+)"', group_by))
    for s in series:
        assert aliases <= set(s.columns), (query, s.columns)
        assert tags <= set(s.tags), (query, s.tags)


def _boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in render().items()}


def _values_for(board: dict[str, Any]) -> dict[str, str]:
    names = {v["name"]: v for v in board["templating"]["list"]}
    return {n: (".*" if names[n].get("multi") and n != "compartment" else VARS[n]) for n in names}


def test_every_panel_query_returns_rows(demo: Loaded) -> None:
    checked = 0
    for name, board in _boards().items():
        values = _values_for(board)
        for var in board["templating"]["list"]:
            series = demo.client.query(_substitute(var["query"], values))
            found = {row[1] for s in series for row in s.values}
            assert found, (name, var["name"])
            if var["name"] == "store":
                assert found == {"store-gz", "store-sh"}
            if var["name"] == "asset" and name == "coldchain-vehicle.json":
                assert found == demo.vehicles
            checked += 1
        for panel in board["panels"]:
            for target in panel["targets"]:
                q = _substitute(target["query"], values)
                _check_shape(q, demo.client.query(q))
                checked += 1
        for ann in board["annotations"]["list"]:
            rows = demo.client.query(_substitute(ann["target"]["query"], values))
            assert rows and all("kind" in s.columns for s in rows), (name, ann["target"])
            checked += 1
    texts = render().values()
    expected = sum(t.count('"rawQuery": true') for t in texts)  # targets + annotations
    expected += sum(t.count('"query": "SHOW TAG VALUES') for t in texts)
    assert checked == expected >= 40


def test_fleet_map_gives_lat_lon_per_vehicle_and_the_stores(demo: Loaded) -> None:
    fleet = _boards()["coldchain-fleet.json"]
    fleet_map = next(p for p in fleet["panels"] if p["type"] == "geomap")
    by_ref = {t["refId"]: t["query"] for t in fleet_map["targets"]}
    vehicles = demo.client.query(_substitute(by_ref["A"], {"asset": ".*"}))
    positions = {s.tags["asset"]: s.records()[0] for s in vehicles}
    assert set(positions) == demo.vehicles
    for rec in positions.values():
        assert 18 < rec["lat"] < 40 and 108 < rec["lon"] < 125, rec
    status = demo.client.query(_substitute(by_ref["B"], {"asset": ".*"}))
    ranks = {s.tags["asset"]: s.records()[0]["worst_rank"] for s in status}
    assert ranks[VEHICLE] == 3  # the week-old critical gap is still open
    stores = demo.client.query(_substitute(by_ref["D"], {}))
    sites = {s.tags["asset"]: s.records()[0] for s in stores}
    assert set(sites) == {"store-gz", "store-sh"}
    assert all(r["site_lat"] and r["site_lon"] for r in sites.values())


def test_vehicle_route_and_open_excursions_across_ranges(demo: Loaded) -> None:
    vehicle = _boards()["coldchain-vehicle.json"]
    route = next(p for p in vehicle["panels"] if p["type"] == "geomap")
    rows = [r for s in demo.client.query(_substitute(route["targets"][0]["query"], VARS))
            for r in s.records()]  # fmt: skip
    assert len(rows) > 100 and all(r["lat"] is not None and r["lon"] is not None for r in rows)
    excursions = _boards()["coldchain-excursions.json"]
    table = next(p for p in excursions["panels"] if p["title"] == "Open excursions")
    q = _substitute(table["targets"][0]["query"], {"asset": VEHICLE, "compartment": ".*"})
    q = re.sub(r"time >= now\(\) - 24h", "time >= now() - 10m", q)  # today, the last minutes
    open_rows = [
        (s.tags["compartment"], s.tags["rule"], r["severity"])
        for s in demo.client.query(q)
        for r in s.records()
        if r["open"]
    ]
    assert ("gap", "critical") in [(rule, sev) for _, rule, sev in open_rows]


def test_acknowledgement_reaches_the_excursions_dashboard(demo: Loaded) -> None:
    [week_old] = [
        r for r in demo.registry.find_excursions(asset_id=VEHICLE, status="open")
        if r.excursion.rule == "gap" and r.excursion.severity == "critical"
    ]  # fmt: skip
    demo.registry.acknowledge_excursion(week_old.excursion.id, by="operator-wang")
    mirror = RegistryMirror(
        demo.registry, library_scenario("demo").fleet(), demo.client.write, load_presets(),
        clock_ms=_now_ms,
    )  # fmt: skip
    mirror.pass_once()
    rows = demo.client.query(
        f'SELECT "ack_by", "status" FROM "excursion_state" WHERE "id" = \'{week_old.excursion.id}\''
    )
    assert [r["ack_by"] for s in rows for r in s.records()] == ["operator-wang"]
