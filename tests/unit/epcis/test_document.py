"""The EPCIS 2.0 export of a shipment: built from the project's own records, schema-valid with
formats checked, every eventID the GS1 hash of its event (times in minutes from T0)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldchain.epcis import (
    CustodyRecord,
    ShipmentRecord,
    biz_step,
    document_event_hashes,
    epcis_document,
    event_hash,
    validate_epcis,
)
from coldchain.epcis.gs1 import canonical_gs1_uri, check_digit
from coldchain.exceptions import ConfigError
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules.excursion import Excursion, RuleKind
from coldchain.trace import Leg, LegReport, ShipmentTrace, custody_gaps, leg_report, verdict
from registry.custody import derive_legs
from registry.records import CustodyAction, CustodyEvent

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z
MIN = 60_000
BASE = "https://coldchain.example/id"
GLN = "4012345000115"


def m(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def _asset(aid: str, kind: str, comps: tuple[str, ...], gln: str | None = None) -> Asset:
    return Asset(
        id=aid,
        kind=kind,  # type: ignore[arg-type]
        devices=(f"{aid}-dev",),
        compartments=tuple(
            Compartment(id=c, profile="chilled", sensors=(SensorSpec(id=f"{c}-s"),)) for c in comps
        ),
        gln=gln,
    )


FLEET = Fleet(
    [
        _asset("truck-1", "vehicle", ("front", "rear")),
        _asset("store-1", "store", ("zone-a", "a-compartment-id-longer-than-20"), gln=GLN),
        _asset("truck-2", "vehicle", ("main",)),
    ]
)


def scan(
    action: CustodyAction, minutes: float, asset: str, comp: str | None, actor: str, i: int = 0
) -> CustodyEvent:
    return CustodyEvent(i, "S", action, asset, comp, m(minutes), actor, "mqtt", m(minutes))


# The journey: truck -> dock (40 min handover) -> cold store -> truck -> consignee.
JOURNEY = [
    scan("load", 0, "truck-1", "rear", "driver Wang", 1),
    scan("unload", 120, "truck-1", "rear", "driver Wang", 2),
    scan("handover", 130, "store-1", None, "clerk 李", 3),
    scan("load", 160, "store-1", "zone-a", "clerk 李", 4),
    scan("unload", 400, "store-1", "zone-a", "clerk 李", 5),
    scan("handover", 405, "truck-2", None, "driver Zhao", 6),
    scan("load", 410, "truck-2", "main", "driver Zhao", 7),
    scan("deliver", 600, "truck-2", "main", "receiver Chen", 8),
]


def _excursion(kind: RuleKind, start: float, end: float, asset: str, comp: str) -> Excursion:
    return Excursion(asset, comp, kind, kind, "critical", "closed", m(start), m(end), m(end))


def journey_record(
    shipment_id: str = "SHP-1",
    *,
    excursions: tuple[Excursion, ...] = (),
    as_of: float = 700,
    **extra: Any,
) -> ShipmentRecord:
    """The journey through the same pure code the API uses: registry legs, trace statistics,
    custody gaps, verdict; a spike on the store leg when a range excursion is given."""
    spike = [e for e in excursions if e.kind == "range"]
    # As of a time, as the API's trace: later legs do not exist yet, a later end is open.
    legs = [
        Leg(
            x.asset_id, x.compartment_id, x.from_ms, x.to_ms if (x.to_ms or 0) <= m(as_of) else None
        )
        for x in derive_legs(JOURNEY)
        if x.from_ms <= m(as_of)
    ]
    reports = []
    for leg in legs:
        end = leg.to_ms if leg.to_ms is not None else m(as_of)
        series = [
            (t, 9.0 if any(e.start_ms <= t < (e.end_ms or end) for e in spike) else 4.0)
            for t in range(leg.from_ms, end, 5 * MIN)
        ]
        found = [e for e in excursions if e.asset_id == leg.asset_id]
        reports.append(
            leg_report(
                leg, series, end_ms=end, cap_ms=15 * MIN, low_c=2.0, high_c=8.0, excursions=found
            )
        )
    gaps = custody_gaps(shipment_id, legs, now_ms=m(as_of))
    all_excursions = [*excursions, *gaps]
    v, reasons = verdict(reports, all_excursions)
    trace = ShipmentTrace(shipment_id, "chilled", reports, all_excursions, v, reasons)
    return ShipmentRecord.from_trace(trace, JOURNEY, as_of_ms=m(as_of), **extra)


def events_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = document["epcisBody"]["eventList"]
    return events


def assert_sound(document: dict[str, Any]) -> None:
    """Schema-valid with formats checked, and every eventID the hash of its event."""
    assert validate_epcis(document, check_event_ids=True) == []
    for event in events_of(document):
        content = {k: v for k, v in event.items() if k != "eventID"}
        assert event["eventID"] == event_hash(content, context=document["@context"])
    ids = [e["eventID"] for e in events_of(document)]
    assert len(set(ids)) == len(ids)
    # What a receiver parses from the JSON text hashes to the same ids.
    again = json.loads(json.dumps(document, ensure_ascii=False))
    assert document_event_hashes(again) == ids


def test_the_journey_with_an_excursion_on_the_second_monitored_leg() -> None:
    spike = _excursion("range", 200, 220, "store-1", "zone-a")
    record = journey_record(excursions=(spike,), shipper=GLN[:-1] + "x", consignee="4012345000009")
    document = epcis_document(record, base_uri=BASE, fleet=FLEET)
    assert_sound(document)
    events = events_of(document)
    assert [e["bizStep"] for e in events] == [
        "loading",
        "sensor_reporting",  # truck-1 leg ends at the unload
        "unloading",
        "receiving",  # handover to the store, on its dock
        "storing",
        "sensor_reporting",  # the store leg, with the spike
        "staging_outbound",
        "shipping",  # handover to truck-2
        "loading",
        "sensor_reporting",
        "receiving",  # delivered
    ]
    assert [e["disposition"] for e in events] == [
        "in_transit",
        "in_transit",
        "in_transit",
        "conformant",
        "conformant",
        *["non_conformant"] * 6,  # from the excursion's start (200) on
    ]
    actions = [e.get("coldchain:custodyAction") for e in events]
    assert [a for a in actions if a] == [
        *("load", "unload", "handover", "load", "unload", "handover", "load", "deliver")
    ]
    reports = [e["sensorElementList"][0] for e in events if e["bizStep"] == "sensor_reporting"]
    assert [r["sensorReport"][0].get("exception") for r in reports] == [
        None,
        "ALARM_CONDITION",
        None,
    ]
    store = reports[1]
    assert store["sensorMetadata"] == {
        "startTime": "2026-09-21T16:53:20.000+00:00",
        "endTime": "2026-09-21T20:53:20.000+00:00",
        "bizRules": f"{BASE}/profile/chilled",
    }
    aggregate = store["sensorReport"][0]
    assert (aggregate["type"], aggregate["uom"]) == ("Temperature", "CEL")
    assert (aggregate["minValue"], aggregate["maxValue"]) == (4.0, 9.0)
    # 20 of 240 minutes at 9 degC, the rest at 4: time-weighted mean 4 + 5 * 20/240.
    assert aggregate["meanValue"] == round(4 + 5 * 20 / 240, 2)
    assert aggregate["coldchain:outOfRangeSeconds"] == 20 * 60
    assert aggregate["coldchain:readingCount"] == 48
    # The store has a GLN: its zone is a GLN extension, the asset itself the bizLocation.
    storing = events[4]
    assert storing["readPoint"] == {"id": f"https://id.gs1.org/414/{GLN}/254/zone-a"}
    assert storing["bizLocation"] == {"id": f"https://id.gs1.org/414/{GLN}"}
    assert events[0]["readPoint"] == {"id": f"{BASE}/asset/truck-1/compartment/rear"}
    assert events[0]["bizLocation"] == {"id": f"{BASE}/asset/truck-1"}
    assert "bizLocation" not in events[-1]  # with the consignee: coldchain does not know where
    # Owning parties where the transfer starts and ends, nowhere else.
    with_parties = [i for i, e in enumerate(events) if "destinationList" in e]
    assert with_parties == [0, len(events) - 1]
    assert events[0]["sourceList"] == [
        {"type": "owning_party", "source": f"{BASE}/org/{GLN[:-1]}x"}
    ]
    assert events[-1]["destinationList"] == [
        {"type": "owning_party", "destination": "https://id.gs1.org/417/4012345000009"}
    ]


def test_without_excursions_nothing_is_flagged() -> None:
    document = epcis_document(journey_record(), base_uri=BASE, fleet=FLEET)
    assert_sound(document)
    events = events_of(document)
    assert "non_conformant" not in {e["disposition"] for e in events}
    assert all(
        "exception" not in e["sensorElementList"][0]["sensorReport"][0]
        for e in events
        if "sensorElementList" in e
    )


def test_a_custody_gap_or_data_gap_is_not_a_temperature_excursion() -> None:
    # The 40-minute dock handover is a custody gap (evidence, not temperature): no
    # non_conformant. A data gap on the truck leg is a sensor error on that leg.
    gap = _excursion("data_gap", 30, 60, "truck-1", "rear")
    record = journey_record(excursions=(gap,))
    assert any(e.kind == "custody_gap" for e in record.excursions)
    document = epcis_document(record, base_uri=BASE, fleet=FLEET)
    assert_sound(document)
    events = events_of(document)
    assert "non_conformant" not in {e["disposition"] for e in events}
    truck = next(e for e in events if e["bizStep"] == "sensor_reporting")
    assert truck["sensorElementList"][0]["sensorReport"][0]["exception"] == "ERROR_CONDITION"


def test_an_sscc_shipment_is_its_gs1_key_in_either_form() -> None:
    sscc = "040123450000003338"
    dl = epcis_document(journey_record(sscc), base_uri=BASE, fleet=FLEET)
    urn = epcis_document(
        journey_record(sscc), base_uri=BASE, fleet=FLEET, sscc_company_prefix_length=7
    )
    assert_sound(dl)
    assert_sound(urn)
    assert {e["epcList"][0] for e in events_of(dl)} == {f"https://id.gs1.org/00/{sscc}"}
    assert {e["epcList"][0] for e in events_of(urn)} == {"urn:epc:id:sscc:4012345.0000000333"}
    # One identifier, two spellings: the canonical hash makes them the same events.
    assert [e["eventID"] for e in events_of(dl)] == [e["eventID"] for e in events_of(urn)]
    # 18 digits with a wrong check digit is just an id.
    other = epcis_document(journey_record("040123450000003339"), base_uri=BASE, fleet=FLEET)
    assert events_of(other)[0]["epcList"] == [f"{BASE}/shipment/040123450000003339"]


@pytest.mark.parametrize("shipment_id", ["SHP 广州/001", "a b/c?d#e%f", "冷链-深圳-2026", "x" * 64])
def test_a_free_form_id_becomes_a_uri_under_the_base(shipment_id: str) -> None:
    document = epcis_document(journey_record(shipment_id), base_uri=BASE + "/", fleet=FLEET)
    assert_sound(document)
    [epc] = {e["epcList"][0] for e in events_of(document)}
    assert epc.startswith(f"{BASE}/shipment/") and epc.isascii()
    assert unquote(epc.removeprefix(f"{BASE}/shipment/")) == shipment_id


def test_a_compartment_id_a_gln_extension_cannot_carry_falls_back_to_the_base() -> None:
    comp = "a-compartment-id-longer-than-20"
    record = ShipmentRecord(
        "SHP-2",
        "chilled",
        m(10),
        custody=(CustodyRecord("load", m(0), "store-1", comp, "clerk"),),
    )
    [event] = events_of(epcis_document(record, base_uri=BASE, fleet=FLEET))
    assert event["readPoint"] == {"id": f"{BASE}/asset/store-1/compartment/{comp}"}
    assert event["bizLocation"] == {"id": f"https://id.gs1.org/414/{GLN}"}


def test_as_of_an_earlier_time_the_open_leg_reports_up_to_then() -> None:
    document = epcis_document(journey_record(as_of=300), base_uri=BASE, fleet=FLEET)
    assert_sound(document)
    events = events_of(document)
    assert document["creationDate"] == "2026-09-21T19:13:20.000+00:00"  # as_of
    assert [e["bizStep"] for e in events][-2:] == ["storing", "sensor_reporting"]
    last = events[-1]
    assert last["eventTime"] == document["creationDate"]
    assert last["sensorElementList"][0]["sensorMetadata"]["endTime"] == document["creationDate"]
    assert max(e["eventTime"] for e in events) <= document["creationDate"]


def test_times_in_the_callers_zone() -> None:
    shanghai = events_of(
        epcis_document(journey_record(), base_uri=BASE, fleet=FLEET, tz=ZoneInfo("Asia/Shanghai"))
    )
    assert {e["eventTimeZoneOffset"] for e in shanghai} == {"+08:00"}
    assert shanghai[0]["eventTime"] == "2026-09-21T22:13:20.000+08:00"
    odd = CustodyRecord("load", T0 + 7, "truck-1", None, "a")  # milliseconds are kept
    [event] = events_of(
        epcis_document(
            ShipmentRecord("S", "chilled", T0 + 7, custody=(odd,)),
            base_uri=BASE,
            tz=ZoneInfo("Asia/Shanghai"),
        )
    )
    assert event["eventTime"] == "2026-09-21T22:13:20.007+08:00"
    january = CustodyRecord("load", T0 - 240 * 86_400_000, "truck-1", None, "a")
    winter = ShipmentRecord("S", "chilled", m(0), custody=(january,))
    new_york = ZoneInfo("America/New_York")
    [jan] = events_of(epcis_document(winter, base_uri=BASE, tz=new_york))
    assert (jan["eventTime"], jan["eventTimeZoneOffset"]) == (
        "2026-01-24T09:13:20.000-05:00",
        "-05:00",
    )
    summer = events_of(epcis_document(journey_record(), base_uri=BASE, tz=new_york))
    assert summer[0]["eventTimeZoneOffset"] == "-04:00"


def test_same_record_same_document_and_duplicate_scans_once() -> None:
    record = journey_record()
    assert epcis_document(record, base_uri=BASE, fleet=FLEET) == epcis_document(
        record, base_uri=BASE, fleet=FLEET
    )
    doubled = ShipmentRecord(
        record.shipment_id, record.profile, record.as_of_ms, record.custody * 2, record.legs
    )
    assert events_of(epcis_document(doubled, base_uri=BASE, fleet=FLEET)) == events_of(
        epcis_document(record, base_uri=BASE, fleet=FLEET)
    )


@pytest.mark.parametrize(
    ("action", "kind", "compartment", "moves", "step"),
    [
        ("load", "vehicle", True, True, "loading"),
        ("load", "vehicle", False, True, "loading"),
        ("load", "store", True, True, "storing"),
        ("load", "store", False, True, "receiving"),
        ("unload", "vehicle", True, True, "unloading"),
        ("unload", "store", True, True, "staging_outbound"),
        ("handover", "vehicle", False, True, "shipping"),
        ("handover", "store", False, True, "receiving"),
        ("handover", "vehicle", True, False, "accepting"),
        ("handover", "store", True, False, "accepting"),
        ("deliver", "vehicle", True, True, "receiving"),
        ("deliver", "store", False, True, "receiving"),
    ],
)
def test_biz_step_table(action: str, kind: Any, compartment: bool, moves: bool, step: str) -> None:
    # The table in docs/epcis.md.
    assert biz_step(action, kind, compartment=compartment, moves=moves) == step


def test_a_handover_where_the_shipment_stands_only_changes_hands() -> None:
    record = ShipmentRecord(
        "S",
        "chilled",
        m(100),
        custody=(
            CustodyRecord("load", m(0), "truck-1", "front", "driver A"),
            CustodyRecord("handover", m(50), "truck-1", "front", "driver B"),
            CustodyRecord("load", m(60), "truck-x", "c1", "driver C"),  # not in the fleet
        ),
    )
    events = events_of(epcis_document(record, base_uri=BASE, fleet=FLEET))
    assert [e["bizStep"] for e in events] == ["loading", "accepting", "loading"]
    assert events[2]["disposition"] == "in_transit"  # an unknown asset counts as a vehicle


def test_bad_configuration_is_refused_with_its_reason() -> None:
    record = journey_record()
    bad = (
        "coldchain.example/id",
        "ftp://x.example",
        "https://x.example/id?x=1",
        "https://x/%zz",
        "",
    )
    for base in bad:
        with pytest.raises(ConfigError, match="base_uri"):
            epcis_document(record, base_uri=base)
    with pytest.raises(ConfigError, match="prefix_length"):
        epcis_document(record, base_uri=BASE, sscc_company_prefix_length=5)
    # Amsterdam was 19 min 32 s ahead of UTC in 1900: EPCIS offsets are whole minutes.
    old = ShipmentRecord(
        "S", "p", 0, custody=(CustodyRecord("load", -2_200_000_000_000, "truck-1", None, "a"),)
    )
    with pytest.raises(ConfigError, match="whole minutes"):
        epcis_document(old, base_uri=BASE, tz=ZoneInfo("Europe/Amsterdam"))


def test_bad_records_are_refused() -> None:
    with pytest.raises(ValueError, match="custody action"):
        CustodyRecord("teleport", 0, "truck-1", None, "a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="asset"):
        CustodyRecord("load", 0, "", None, "a")
    with pytest.raises(ValueError, match="shipment id"):
        ShipmentRecord("", "chilled", 0)
    with pytest.raises(ValueError, match="ends"):
        ShipmentRecord("S", "chilled", 10, legs=(LegReport(Leg("t", "c", 10, 5)),))
    with pytest.raises(ValueError, match="past as_of_ms"):
        ShipmentRecord("S", "chilled", 10, legs=(LegReport(Leg("t", "c", 5, 20)),))
    # Before 1970 (negative epoch ms) an open leg is as good as after it.
    old = ShipmentRecord("S", "chilled", -10, legs=(LegReport(Leg("t", "c", -20, None)),))
    assert old.legs[0].leg.to_ms is None
    with pytest.raises(ValueError, match="past as_of_ms"):
        ShipmentRecord("S", "chilled", -10, legs=(LegReport(Leg("t", "c", -20, -5)),))


# --- any record -------------------------------------------------------------------------------

_PLACES = [("truck-1", "front"), ("truck-1", None), ("store-1", "zone-a"), ("store-1", None),
           ("truck-2", "main"), ("truck-x", "c9")]  # fmt: skip


def _sscc(body: str) -> str:
    return body + str(check_digit(body))


@st.composite
def records(draw: st.DrawFn) -> ShipmentRecord:
    shipment_id = draw(
        st.one_of(
            st.text(min_size=1, max_size=40),
            st.text("0123456789", min_size=17, max_size=17).map(_sscc),
        )
    )
    steps = draw(st.lists(st.tuples(st.integers(0, 90), st.sampled_from(_PLACES)), max_size=8))
    actions = draw(
        st.lists(
            st.sampled_from(["load", "unload", "handover", "deliver"]),
            min_size=len(steps),
            max_size=len(steps),
        )
    )
    actor = st.text(min_size=1, max_size=20)
    t = 0
    events = []
    for i, ((gap, (asset, comp)), action) in enumerate(zip(steps, actions, strict=True)):
        t += gap
        events.append(
            CustodyEvent(i, shipment_id, action, asset, comp, m(t), draw(actor), "api", m(t))  # type: ignore[arg-type]
        )
    as_of = t + draw(st.integers(0, 60))
    temps = st.floats(-30, 30, allow_nan=False)
    reports = []
    excursions = []
    for x in derive_legs(events):
        lo, hi = sorted((draw(temps), draw(temps)))
        leg = Leg(x.asset_id, x.compartment_id, x.from_ms, x.to_ms)
        ids: tuple[str, ...] = ()
        if x.compartment_id is not None and draw(st.booleans()):
            e = _excursion(
                draw(st.sampled_from(["range", "data_gap", "mkt"])),
                0,
                1,
                x.asset_id,
                x.compartment_id,
            )
            excursions.append(e)
            ids = (e.id,)
        reports.append(
            LegReport(leg, readings=draw(st.integers(0, 500)), min_c=lo, max_c=hi,
                      mean_c=(lo + hi) / 2, mkt_c=hi, out_of_range_s=draw(st.floats(0, 1e6)),
                      excursion_ids=ids)
        )  # fmt: skip
    return ShipmentRecord(
        shipment_id,
        draw(st.sampled_from(["chilled", "冷冻 frozen"])),
        m(as_of),
        tuple(CustodyRecord.of(e) for e in events),
        tuple(reports),
        tuple(excursions),
        shipper=draw(st.one_of(st.none(), st.text(min_size=1, max_size=20))),
        consignee=draw(st.one_of(st.none(), st.just("4012345000009"))),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records(), st.sampled_from(["UTC", "Asia/Shanghai", "America/Sao_Paulo"]))
def test_any_record_exports_a_sound_document(record: ShipmentRecord, zone: str) -> None:
    document = epcis_document(record, base_uri=BASE, fleet=FLEET, tz=ZoneInfo(zone))
    assert_sound(document)
    # coldchain's own URIs are never mistaken for GS1 keys by the hash.
    for event in events_of(document):
        for uri in (event["epcList"][0], event["readPoint"]["id"]):
            if not uri.startswith("https://id.gs1.org/"):
                assert uri.startswith(BASE) and canonical_gs1_uri(uri) is None
