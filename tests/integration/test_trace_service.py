"""TraceService against a real influxd and a real (SQLite, migrated) registry: custody legs from
the registry's scans, each leg's statistics from the InfluxDB series, excursions from the
registry, custody gaps, verdict. Times are minutes from T0; the arithmetic is in the comments.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api import ShipmentNotFound, TraceService
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.rules.mkt import mean_kinetic_temperature
from coldchain.settings import InfluxSettings
from coldchain.trace import Leg
from deploy.launcher import Services
from registry import CustodyAction, Registry, open_registry, upgrade
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
MIN = 60_000


def m(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def _comp(cid: str) -> Compartment:
    return Compartment(
        id=cid,
        profile="chilled",
        sensors=(
            SensorSpec(id=f"{cid}-air", probe="air"),
            SensorSpec(id=f"{cid}-prod", probe="product"),
        ),
    )


# The truck's data-gap cap (chilled, transport) is 10 min, the store's (storage) 30 min: the
# service must learn the asset's kind from the fleet.
FLEET = Fleet(
    [
        Asset(id="truck-1", kind="vehicle", devices=("tcu-1",), compartments=(_comp("c1"),)),
        Asset(id="store-1", kind="store", devices=("gw-1",), compartments=(_comp("z1"),)),
    ]
)


def point(asset: str, comp: str, probe: str, minute: float, temp: float) -> str:
    sensor = f"{comp}-{'prod' if probe == 'product' else 'air'}"
    return (
        f"temperature,asset={asset},compartment={comp},probe={probe},sensor={sensor} "
        f"temp_c={temp} {m(minute)}"
    )


# truck-1/c1 product probe, every 10 min; the load is at 0 and the unload at 60.
TRUCK_PRODUCT = [(-5, 2.0), (5, 3.0), (15, 3.0), (25, 5.0), (35, 3.0), (45, 3.0), (55, 3.0)]
# store-1/z1 product probe: a reading before the load (111), a 40 min hole, one after delivery.
STORE_PRODUCT = [(100, 4.0), (120, 2.0), (160, 2.0), (175, 9.0)]


@pytest.fixture
def influx(services: Services, unique_name: str) -> Iterator[InfluxClient]:
    client = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    client.create_database()
    lines = [point("truck-1", "c1", "product", t, v) for t, v in TRUCK_PRODUCT]
    lines += [point("store-1", "z1", "product", t, v) for t, v in STORE_PRODUCT]
    # Air probes read far warmer: the trace must use the product probe when there is one.
    lines += [point("truck-1", "c1", "air", t, 10.0) for t, _ in TRUCK_PRODUCT]
    lines += [point("store-1", "z1", "air", t, 10.0) for t, _ in STORE_PRODUCT]
    # Another truck and another compartment at the same times must not leak in.
    lines += [point("truck-2", "c1", "product", t, 30.0) for t, _ in TRUCK_PRODUCT]
    lines.append(point("truck-1", "c9", "product", 30, -30.0))
    client.write("\n".join(lines).encode())
    yield client
    client.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    with open_registry(url) as reg:
        # SHP-1: truck-1/c1 0..60, unloaded on the truck's dock at 60, handed over on the
        # store's dock at 61, put into store-1/z1 at 111 (51 min unmonitored), delivered at 171.
        reg.create_shipment("SHP-1", profile="chilled", actor="planner", created_ms=m(-60))
        scans: list[tuple[CustodyAction, str, str | None, int, str]] = [
            ("load", "truck-1", "c1", 0, "driver"),
            ("unload", "truck-1", "c1", 60, "driver"),
            ("handover", "store-1", None, 61, "dock-staff"),
            ("load", "store-1", "z1", 111, "dock-staff"),
            ("deliver", "store-1", None, 171, "consignee"),
        ]
        for action, asset, comp, minute, actor in scans:
            reg.record_custody_event("SHP-1", action, asset, comp, ts_ms=m(minute), actor=actor)
        # SHP-2: put into store-1/z1 at 111 and still there (open leg).
        reg.create_shipment("SHP-2", profile="chilled", actor="planner", created_ms=m(100))
        reg.record_custody_event("SHP-2", "load", "store-1", "z1", ts_ms=m(111), actor="staff")
        yield reg


def service(registry: Registry, influx: InfluxClient) -> TraceService:
    return TraceService(registry, influx, FLEET, load_presets())


def range_excursion(start: float, end: float, *, superseded: bool = False) -> Excursion:
    return Excursion(
        asset_id="truck-1",
        compartment_id="c1",
        rule="range",
        kind="range",
        severity="warning",
        status="closed",
        start_ms=m(start),
        end_ms=m(end),
        detected_ms=m(end),
        peak_c=5.0,
        profile="chilled",
        superseded=superseded,
        out_of_range_s=(end - start) * 60.0,
        returned_ms=m(end),
    )


def test_trace_of_a_delivered_shipment(registry: Registry, influx: InfluxClient) -> None:
    trace = service(registry, influx).trace("SHP-1", m(200))
    assert trace.shipment_id == "SHP-1" and trace.profile == "chilled"
    assert [r.leg for r in trace.legs] == [
        Leg("truck-1", "c1", m(0), m(60)),
        Leg("truck-1", None, m(60), m(61)),
        Leg("store-1", None, m(61), m(111)),
        Leg("store-1", "z1", m(111), m(171)),  # closed by the delivery
    ]
    truck, truck_dock, store_dock, zone = trace.legs

    # truck-1/c1 [0, 60), cap 10 min, product probe only:
    #   2.0 @-5 holds [0, 5) = 300 s into the leg (not a reading of the leg)
    #   3.0 @5, @15 -> 600 s each; 5.0 @25 -> 600 s (above 4: out of range); 3.0 @35, @45 ->
    #   600 s each; 3.0 @55 -> [55, 60) = 300 s
    # monitored 3600 s; mean (2*300 + 3*2700 + 5*600) / 3600 = 11700 / 3600 = 3.25
    assert truck.readings == 6
    assert (truck.min_c, truck.max_c) == (3.0, 5.0)
    assert truck.monitored_s == 3600.0 and truck.unmonitored_s == 0.0
    assert truck.mean_c == pytest.approx(3.25)
    assert truck.out_of_range_s == 600.0
    assert truck.mkt_c == pytest.approx(
        mean_kinetic_temperature([2.0, 3.0, 5.0], [300.0, 2700.0, 600.0])
    )
    assert truck.excursion_ids == ()

    # The docks: unmonitored, 60 s and 50 min.
    assert (truck_dock.readings, truck_dock.unmonitored_s) == (0, 60.0)
    assert (store_dock.readings, store_dock.unmonitored_s) == (0, 3000.0)
    assert store_dock.mean_c is None

    # store-1/z1 [111, 171), cap 30 min (a store):
    #   4.0 @100 holds [111, 120) = 540 s (from before the load; 4.0 is not above 4)
    #   2.0 @120 holds [120, 150) = 1800 s (cap), [150, 160) unknown = 600 s
    #   2.0 @160 holds [160, 171) = 660 s; 9.0 @175 is after the delivery
    # monitored 3000 s, unmonitored 600 s; mean (4*540 + 2*2460) / 3000 = 7080 / 3000 = 2.36
    assert zone.readings == 2
    assert (zone.min_c, zone.max_c) == (2.0, 2.0)
    assert zone.monitored_s == 3000.0 and zone.unmonitored_s == 600.0
    assert zone.mean_c == pytest.approx(2.36)
    assert zone.out_of_range_s == 0.0

    # 60 s on the truck's dock + 50 min on the store's = 51 min > 30: one custody gap, from
    # 60 + 30 = 90 (on the store's dock by then) to 111; 51 <= 2 x 30: a warning.
    (gap,) = trace.excursions
    assert (gap.kind, gap.asset_id, gap.compartment_id) == ("custody_gap", "store-1", "dock:SHP-1")
    assert (gap.start_ms, gap.end_ms, gap.status) == (m(90), m(111), "closed")
    assert gap.severity == "warning" and gap.profile == "chilled"
    assert "51 min (allowed 30)" in gap.detail
    assert trace.verdict == "incomplete"
    assert len(trace.reasons) == 1 and trace.reasons[0].startswith("custody_gap on store-1")


def test_a_registered_excursion_makes_it_an_excursion(
    registry: Registry, influx: InfluxClient
) -> None:
    during = range_excursion(25, 35)  # while on the truck: listed on the truck's leg
    later = range_excursion(200, 210)  # on the same compartment after the unload: not ours
    withdrawn = range_excursion(20, 40, superseded=True)  # superseded: hidden
    registry.upsert_excursions([during, later, withdrawn])

    trace = service(registry, influx).trace("SHP-1", m(300))
    assert trace.legs[0].excursion_ids == (during.id,)
    assert [e.id for e in trace.excursions] == [during.id, trace.excursions[1].id]
    assert trace.excursions[1].kind == "custody_gap"
    assert trace.verdict == "excursion"
    # The registry's record carries the time out of range and the return into the trace.
    assert (trace.excursions[0].out_of_range_s, trace.excursions[0].returned_ms) == (600.0, m(35))
    assert trace.reasons == [
        "range range on truck-1/c1 (warning): out of range 600 s, back within limits at "
        "2026-09-21T14:48:20Z"
    ]


def test_implausible_values_are_left_out_of_the_trace(
    registry: Registry, influx: InfluxClient
) -> None:
    # docs/rules.md 4.9 / 14: a frozen product probe reads -19, -19, 85.0 (DS18B20 power-on
    # value), -19, -19; the air -21. Frozen's implausible limits are -60..60.
    temps = [-19.0, -19.0, 85.0, -19.0, -19.0]
    lines = [point("truck-3", "c1", "product", i, v) for i, v in enumerate(temps)]
    lines += [point("truck-3", "c1", "air", i, -21.0) for i in range(5)]
    influx.write("\n".join(lines).encode())
    registry.create_shipment("SHP-F", profile="frozen", actor="planner", created_ms=m(-10))
    registry.record_custody_event("SHP-F", "load", "truck-3", "c1", ts_ms=m(0), actor="d")
    registry.record_custody_event("SHP-F", "unload", "truck-3", "c1", ts_ms=m(5), actor="d")
    trace = service(registry, influx).trace("SHP-F", m(5))
    leg = trace.legs[0]
    assert (leg.readings, leg.min_c, leg.max_c) == (4, -19.0, -19.0)
    assert leg.mkt_c == pytest.approx(-19.0) and leg.monitored_s == 300.0
    assert (trace.verdict, trace.reasons) == ("compliant", [])


def test_open_leg_ends_now(registry: Registry, influx: InfluxClient) -> None:
    # SHP-2 in store-1/z1 since 111, traced at 171: the same numbers as SHP-1's zone leg.
    trace = service(registry, influx).trace("SHP-2", m(171))
    (zone,) = trace.legs
    assert zone.leg == Leg("store-1", "z1", m(111), None)
    assert zone.readings == 2
    assert zone.monitored_s == 3000.0 and zone.unmonitored_s == 600.0
    assert zone.mean_c == pytest.approx(2.36)
    assert trace.excursions == []
    assert (trace.verdict, trace.reasons) == ("compliant", [])
    # At 180 the 9.0 at 175 is in the leg: held [175, 180) = 300 s above 4.
    later = service(registry, influx).trace("SHP-2", m(180)).legs[0]
    assert later.readings == 3 and later.max_c == 9.0
    assert later.out_of_range_s == 300.0


def test_unknown_shipment(registry: Registry, influx: InfluxClient) -> None:
    with pytest.raises(ShipmentNotFound) as info:
        service(registry, influx).trace("SHP-404", m(0))
    assert info.value.shipment_id == "SHP-404"


def test_a_trace_as_of_an_earlier_time(registry: Registry, influx: InfluxClient) -> None:
    # SHP-1 at 30: on the truck, which was loaded at 0; the later scans have not happened yet.
    early = service(registry, influx).trace("SHP-1", m(30))
    assert [r.leg for r in early.legs] == [Leg("truck-1", "c1", m(0), None)]
    # 2.0 holds [0, 5), 3.0 [5, 25), 5.0 [25, 30): 5 min of the 30 out of range.
    assert early.legs[0].readings == 3 and early.legs[0].out_of_range_s == 300.0
    assert early.excursions == [] and early.verdict == "compliant"
    # At 100: on the store's dock since 61, 40 min unmonitored so far (> 30): a gap, still open.
    mid = service(registry, influx).trace("SHP-1", m(100))
    assert [r.leg.to_ms for r in mid.legs] == [m(60), m(61), None]
    (gap,) = mid.excursions
    assert gap.kind == "custody_gap" and gap.end_ms is None
