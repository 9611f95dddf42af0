"""A deterministic sample report for the report tests (and to look at): Shantou -> Guangzhou by
truck, a 40-minute dock handover, a day in a Guangzhou cold store with a data gap, then a truck
to Shenzhen. A 30-minute warm spike on the first truck (E1, acknowledged), a door event (E2),
the custody gap of the handover (E3, computed). Times from T0 = 2026-09-22T00:00:00Z."""

from __future__ import annotations

import math

from coldchain.rules.excursion import Excursion
from coldchain.series import Buckets, ExcursionStart, LegSeries, Track
from coldchain.trace import Leg, LegReport
from reports import Acknowledgement, ReportExcursion, ReportLeg, ShipmentReport
from simulators.routes import Route, road_path

T0 = 1_790_035_200_000  # 2026-09-22T00:00:00Z
MIN = 60_000
RES_S = 600


def m(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def _buckets(
    a_min: int,
    b_min: int,
    temp: float,
    spike: tuple[int, int] | None = None,
    hole: tuple[int, int] | None = None,
) -> Buckets:
    t, lo, hi, mean, n = [], [], [], [], []
    for start in range(a_min, b_min, 10):
        if hole and hole[0] <= start < hole[1]:
            continue
        base = temp + 0.3 * math.sin(start / 37.0)
        peak = base
        if spike and spike[0] <= start < spike[1]:
            peak = base + 3.6
        t.append(m(start))
        lo.append(round(base - 0.2, 2))
        hi.append(round(peak + 0.2, 2))
        mean.append(round((base + peak) / 2, 2))
        n.append(20)
    return Buckets(tuple(t), tuple(lo), tuple(hi), tuple(mean), tuple(n))


def _track(a_min: int, b_min: int, origin: str, dest: str) -> Track:
    route = Route(road_path(origin, dest))
    t, lat, lon = [], [], []
    steps = max(1, (b_min - a_min) // 10)
    for k in range(steps):
        here, _ = route.locate(route.length_km * k / (steps - 1 if steps > 1 else 1))
        t.append(m(a_min + 10 * k))
        lat.append(round(here.lat, 5))
        lon.append(round(here.lon, 5))
    return Track(tuple(t), tuple(lat), tuple(lon))


SPIKE = Excursion(
    asset_id="truck-st-01",
    compartment_id="main",
    rule="range",
    kind="range",
    severity="warning",
    status="closed",
    start_ms=m(200),
    end_ms=m(240),
    detected_ms=m(220),
    peak_c=6.8,
    profile="chilled",
    out_of_range_s=1800.0,
    returned_ms=m(230),
    detail="above 4 degC for 30 min",
)
DOOR = Excursion(
    asset_id="truck-st-01",
    compartment_id="main",
    rule="door",
    kind="door_open",
    severity="info",
    status="closed",
    start_ms=m(195),
    end_ms=m(203),
    detected_ms=m(200),
    profile="chilled",
    detail="door open 8 min at a stop",
)
GAP = Excursion(
    asset_id="store-gz-01",
    compartment_id="dock:SHP-汕头-0042",
    rule="custody_gap",
    kind="custody_gap",
    severity="warning",
    status="closed",
    start_ms=m(510),
    end_ms=m(520),
    detected_ms=m(2000),
    profile="chilled",
    detail="shipment SHP-汕头-0042 unmonitored at truck-st-01 then store-gz-01 for 40 min "
    "(allowed 30)",
)


def sample_report(zone: str = "Asia/Shanghai") -> ShipmentReport:
    legs = [
        Leg("truck-st-01", "main", m(0), m(480)),
        Leg("truck-st-01", None, m(480), m(490)),
        Leg("store-gz-01", None, m(490), m(520)),
        Leg("store-gz-01", "z1", m(520), m(1720)),
        Leg("truck-gs-01", "rear", m(1720), m(1900)),
    ]
    stats = [
        LegReport(
            legs[0],
            readings=480,
            min_c=2.6,
            max_c=6.8,
            mean_c=3.31,
            mkt_c=3.42,
            monitored_s=28800.0,
            out_of_range_s=1800.0,
            excursion_ids=(DOOR.id, SPIKE.id),
        ),
        LegReport(legs[1], unmonitored_s=600.0, gaps=((m(480), m(490)),)),
        LegReport(legs[2], unmonitored_s=1800.0, gaps=((m(490), m(520)),)),
        LegReport(
            legs[3],
            readings=1170,
            min_c=1.4,
            max_c=2.6,
            mean_c=1.98,
            mkt_c=2.01,
            monitored_s=70200.0,
            unmonitored_s=1800.0,
            gaps=((m(900), m(930)),),
        ),
        LegReport(
            legs[4], readings=180, min_c=2.9, max_c=3.6, mean_c=3.2, mkt_c=3.21, monitored_s=10800.0
        ),
    ]
    series = [
        LegSeries(
            RES_S,
            "product",
            _buckets(0, 480, 3.2, spike=(200, 230)),
            _buckets(0, 480, 2.4),
            _track(0, 480, "shantou", "guangzhou"),
            (ExcursionStart(SPIKE.id, m(200), 22.93, 115.71),),
        ),
        LegSeries(RES_S),
        LegSeries(RES_S),
        LegSeries(
            RES_S,
            "product",
            _buckets(520, 1720, 2.0, hole=(900, 930)),
            _buckets(520, 1720, 1.5, hole=(900, 930)),
        ),
        LegSeries(
            RES_S,
            "product",
            _buckets(1720, 1900, 3.2),
            _buckets(1720, 1900, 2.8),
            _track(1720, 1900, "guangzhou", "shenzhen"),
        ),
    ]
    names = [
        "Shantou-Shenzhen chilled reefer",
        "Shantou-Shenzhen chilled reefer",
        "Guangzhou Baiyun cold store 白云冷库",
        "Guangzhou Baiyun cold store 白云冷库",
        "Guangzhou-Shenzhen three-compartment reefer",
    ]
    verdicts = ["excursion", "compliant", "incomplete", "compliant", "compliant"]
    numbers = [(1, 2), (), (3,), (), ()]
    report_legs = tuple(
        ReportLeg(
            number=i + 1,
            stats=stats[i],
            series=series[i],
            asset_kind="store" if legs[i].asset_id.startswith("store") else "vehicle",
            asset_name=names[i],
            scanned_by=["driver 陈", "driver 陈", "dock staff", "dock staff", "driver Li"][i],
            verdict=verdicts[i],
            excursion_numbers=numbers[i],  # type: ignore[arg-type]
        )
        for i in range(len(legs))
    )
    excursions = (
        ReportExcursion(1, DOOR),
        ReportExcursion(
            2,
            SPIKE,
            (  # the history: quarantined first, released after the QA check
                Acknowledgement(
                    "qa.wang",
                    m(300),
                    "probe in the door draught",
                    "door left open",
                    "quarantined",
                    seq=1,
                ),
                Acknowledgement("qa.李", m(420), "product checked: released", "", "released", 2),
            ),
        ),
        ReportExcursion(3, GAP, recorded=False),
    )
    return ShipmentReport(
        shipment_id="SHP-汕头-0042",
        profile="chilled",
        verdict="excursion",
        reasons=(
            "range range on truck-st-01/main (warning): out of range 1800 s, back within limits "
            "at 2026-09-22T03:50:00Z; above 4 degC for 30 min",
        ),
        legs=report_legs,
        excursions=excursions,
        at_ms=m(2000),
        printed_ms=m(2010),
        zone=zone,
        resolution_s=RES_S,
        audit_seq=1234,
        audit_hash="9f" * 32,
        status="delivered 2026-09-23 15:40",
        facts=(
            ("Shipment id", "SHP-汕头-0042"),
            ("Description", "酸奶 yoghurt, 12 pallets"),
            ("Origin", "汕头市 Shantou"),
            ("Destination", "深圳市 Shenzhen"),
        ),
        profile_description="Chilled food, 0..4 degC.",
        low_c=0.0,
        high_c=4.0,
        generator="coldchain test",
    )
