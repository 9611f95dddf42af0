"""The trace's downsampled series, GPS track and bounds against a real influxd and a real
(SQLite, migrated) registry. Times are minutes from T1, an hour boundary, so 10-minute buckets
start at whole minutes; the arithmetic is in the comments.

SHP-S rides truck-5/c1 (not in the fleet: a vehicle by default) from 0 to 120. Two product
probes read every minute, p1 3.0 and p2 4.0, except a spike from 42 to 46 (p1 9.0, p2 10.0); a
third product probe reads an implausible 85.0 at 50; the air probe 5.0. The truck drives west
from Shantou at 0.01 degrees of longitude a minute; at 59 it has no fix (and a bogus 0, 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import TraceService, create_app
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.rules.mkt import mean_kinetic_temperature
from coldchain.series import TraceRefused
from coldchain.settings import ApiSettings, InfluxSettings, Settings
from deploy.launcher import Services
from registry import Registry, open_registry, upgrade
from tests.integration.test_trace_service import FLEET
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

T1 = 1_789_999_200_000  # 2026-09-21T14:00:00Z
MIN = 60_000
LAT0, LON0 = 23.3541, 116.6819


def m(minutes: float) -> int:
    return T1 + round(minutes * MIN)


def lon_at(minute: int) -> float:
    return round(LON0 - 0.01 * minute, 6)


def _lines() -> list[str]:
    out = []
    for i in range(120):
        spike = 42 <= i <= 46
        for sensor, base in (("p1", 3.0), ("p2", 4.0)):
            value = base + 6.0 if spike else base
            out.append(
                f"temperature,asset=truck-5,compartment=c1,probe=product,sensor={sensor} "
                f"temp_c={value} {m(i)}"
            )
        out.append(f"temperature,asset=truck-5,compartment=c1,probe=air,sensor=a1 temp_c=5 {m(i)}")
        if i == 59:
            out.append(f'position,asset=truck-5 fix="none",lat=0,lon=0 {m(i)}')
        else:
            out.append(f'position,asset=truck-5 fix="3d",lat={LAT0},lon={lon_at(i)} {m(i)}')
    out.append(
        f"temperature,asset=truck-5,compartment=c1,probe=product,sensor=p3 temp_c=85 {m(50)}"
    )
    return out


@pytest.fixture
def influx(services: Services, unique_name: str) -> Iterator[InfluxClient]:
    client = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    client.create_database()
    client.write("\n".join(_lines()).encode())
    yield client
    client.close()


SPIKE = Excursion(
    asset_id="truck-5",
    compartment_id="c1",
    rule="hard_high",
    kind="hard_limit",
    severity="critical",
    status="closed",
    start_ms=m(42),
    end_ms=m(57),
    detected_ms=m(42),
    peak_c=9.5,
    profile="chilled",
    out_of_range_s=300.0,
    returned_ms=m(47),
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    with open_registry(url) as reg:
        reg.create_shipment("SHP-S", profile="chilled", actor="planner", created_ms=m(-60))
        reg.record_custody_event("SHP-S", "load", "truck-5", "c1", ts_ms=m(0), actor="driver")
        reg.record_custody_event("SHP-S", "deliver", "truck-5", None, ts_ms=m(120), actor="c")
        reg.upsert_excursions([SPIKE])
        # In store-1/z1 (no data) since 0 and still there.
        reg.create_shipment("SHP-L", profile="chilled", actor="planner", created_ms=m(-60))
        reg.record_custody_event("SHP-L", "load", "store-1", "z1", ts_ms=m(0), actor="staff")
        # In store-1/z1 for the 30 days and the 20 years before the clients' clock (200).
        for sid, minutes in (("SHP-M", 30 * 24 * 60), ("SHP-Y", 20 * 365 * 24 * 60)):
            start = m(200 - minutes)
            reg.create_shipment(sid, profile="chilled", actor="planner", created_ms=start)
            reg.record_custody_event(sid, "load", "store-1", "z1", ts_ms=start, actor="staff")
        yield reg


def test_series_track_and_exact_statistics(registry: Registry, influx: InfluxClient) -> None:
    tracer = TraceService(registry, influx, FLEET, load_presets())
    d = tracer.detail("SHP-S", m(200), resolution_s=600)
    assert d.resolution_s == 600
    (leg,) = d.trace.legs
    (s,) = d.series
    # Statistics from the per-instant mean of p1 and p2 (3.5, 9.5 in the spike), 85.0 left
    # out; each holds 1 min: mean (115 * 3.5 + 5 * 9.5) / 120 = 450 / 120 = 3.75.
    assert (leg.readings, leg.min_c, leg.max_c) == (120, 3.5, 9.5)
    assert leg.mean_c == pytest.approx(3.75)
    assert leg.out_of_range_s == 300.0 and leg.monitored_s == 7200.0 and leg.gaps == ()
    assert leg.mkt_c == pytest.approx(mean_kinetic_temperature([3.5, 9.5], [6900.0, 300.0]))
    assert s.control_probe == "product"

    # Buckets of 10 min from 0 (the window's earlier bucket, read only for the hold before the
    # leg, is dropped); [40, 50) holds p1 and p2 for 10 min: min 3.0, max 10.0 (the spike
    # survives), mean (5*3 + 5*9 + 5*4 + 5*10) / 20 = 6.5; [50, 60) leaves 85.0 out.
    p = s.product
    assert p.t_ms == tuple(m(10 * k) for k in range(12))
    assert p.n == (20,) * 12
    assert (p.min_c[4], p.max_c[4], p.mean_c[4]) == (3.0, 10.0, 6.5)
    assert (p.min_c[3], p.max_c[3], p.mean_c[3]) == (3.0, 4.0, 3.5)
    assert max(p.max_c) == 10.0
    assert s.air.n == (10,) * 12 and set(s.air.mean_c) == {5.0}

    # The track: the last position with a fix of each 10 minutes; at 59 there was none, so
    # [50, 60) ends at 58, and the bogus 0, 0 is nowhere.
    t = s.track
    assert t.t_ms == p.t_ms
    assert t.lon[0] == lon_at(9) and t.lon[5] == lon_at(58) and t.lon[11] == lon_at(119)
    assert 0.0 not in t.lat and set(t.lat) == {LAT0}
    # Where the excursion started: the position at 42.
    (start,) = s.excursion_starts
    assert (start.excursion_id, start.t_ms, start.lon) == (SPIKE.id, m(42), lon_at(42))


def test_paging_gives_the_same_statistics(registry: Registry, influx: InfluxClient) -> None:
    # 7 rows a page: at the default resolution (15 s, two values a bucket) every request's time
    # window holds at most 6 values; at 600 s a bucket holds 20, so each window is one bucket
    # read 7 rows at a time, splitting instants (two probes each) across pages: the held-back
    # rows must neither be lost nor counted twice.
    whole = TraceService(registry, influx, FLEET, load_presets()).trace("SHP-S", m(200))
    paged = TraceService(registry, influx, FLEET, load_presets(), page_rows=7)
    assert paged.trace("SHP-S", m(200)) == whole
    assert paged.detail("SHP-S", m(200), resolution_s=600, track=False).trace == whole
    assert whole.legs[0].readings == 120


def test_a_trace_beyond_the_readings_budget_is_refused(
    registry: Registry, influx: InfluxClient
) -> None:
    # 240 plausible product values (p1, p2) in the leg: a budget of 239 refuses it.
    tracer = TraceService(registry, influx, FLEET, load_presets(), max_readings=239)
    with pytest.raises(TraceRefused, match="covers 240 readings, more than the 239"):
        tracer.trace("SHP-S", m(200))
    assert TraceService(registry, influx, FLEET, load_presets(), max_readings=240).trace(
        "SHP-S", m(200)
    )


@pytest.fixture
def client(registry: Registry, influx: InfluxClient) -> Iterator[TestClient]:
    settings = Settings(api=ApiSettings(keys={"k": "regulator"}, trace_max_readings=1000))
    app = create_app(
        settings,
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: m(200),
    )
    with TestClient(app) as c:
        yield c


def test_trace_json_carries_series_and_track(client: TestClient) -> None:
    r = client.get(
        "/v1/shipments/SHP-S/trace", params={"resolution_s": 600}, headers={"X-API-Key": "k"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resolution_s"] == 600 and body["verdict"] == "excursion"
    (leg,) = body["legs"]
    assert leg["control_probe"] == "product"
    assert leg["series"]["product"]["max_c"][4] == 10.0
    assert len(leg["series"]["product"]["t_ms"]) == 12
    assert set(leg["series"]["air"]) == {"t_ms", "min_c", "max_c", "mean_c", "n"}
    assert leg["track"]["lon"][5] == lon_at(58)
    assert leg["excursion_starts"] == [
        {"excursion_id": SPIKE.id, "t_ms": m(42), "lat": LAT0, "lon": lon_at(42)}
    ]
    # Without resolution_s: 120 min / 500 = 14.4 s -> 15 s buckets, 480 of them.
    default = client.get("/v1/shipments/SHP-S/trace", headers={"X-API-Key": "k"}).json()
    assert default["resolution_s"] == 15
    assert len(default["legs"][0]["series"]["product"]["t_ms"]) == 120  # one reading a minute
    # A store's leg has no track.
    store = client.get("/v1/shipments/SHP-L/trace", headers={"X-API-Key": "k"}).json()
    assert store["legs"][0]["track"] is None


def test_bounds_are_client_errors(client: TestClient) -> None:
    key = {"X-API-Key": "k"}
    r = client.get("/v1/shipments/SHP-S/trace", params={"resolution_s": 5}, headers=key)
    assert r.status_code == 422 and "query parameter 'resolution_s'" in r.text
    # SHP-M's 30 days in 10-second buckets would be 259,201 of them.
    r = client.get("/v1/shipments/SHP-M/trace", params={"resolution_s": 10}, headers=key)
    assert r.status_code == 422
    assert "more than 5000: use resolution_s >= 519" in r.json()["detail"]
    # The same 30 days at the default resolution (2 h: 30 d / 500 = 5184 s) are served; a leg
    # open for 20 years is refused before InfluxDB is asked (7300 buckets even of a day).
    ok = client.get("/v1/shipments/SHP-M/trace", headers=key)
    assert (ok.status_code, ok.json()["resolution_s"]) == (200, 7200)
    r = client.get("/v1/shipments/SHP-Y/trace", headers=key)
    assert r.status_code == 422 and "as of an earlier time" in r.json()["detail"]
    # The report of it too: a 422, not a 503.
    r = client.get("/v1/shipments/SHP-Y/report.pdf", headers=key)
    assert r.status_code == 422 and "as of an earlier time" in r.json()["detail"]
