"""The service layer on SQLite: what it adds to the registry (configured profiles, the fleet and
clock checks of custody events, cursors, views, who acted) and that the API's and the CLI's
inputs are the MQTT contract's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from coldchain.contract.events import CustodyEvent as MqttCustodyEvent
from coldchain.exceptions import RecordConflict, RecordInvalid, RecordNotFound, RegistryError
from coldchain.rules import load_presets
from coldchain.settings import Settings, ValidationSettings
from registry import Registry
from services import (
    AcknowledgementCreate,
    CustodyEventCreate,
    Principal,
    Services,
    ShipmentCreate,
    ShipmentFilters,
    ShipmentPatch,
    build_services,
    cli_principal,
    open_services,
    parse,
)
from services.cursor import decode_cursor, encode_cursor
from tests.unit.services.conftest import NOW_MS
from tests.unit.support import fleet

WHO = Principal(actor="key:0a1b2c3d", role="integrator", key_id="0a1b2c3d")
MIN = 60_000


def _create(services: Services, sid: str, **kw: Any) -> tuple[dict[str, Any], bool]:
    body = ShipmentCreate.model_validate({"id": sid, "profile": "chilled", "shipper": "ACME"} | kw)
    return services.shipments.create(body, WHO)


def test_create_checks_the_profile_and_records_who(services: Services, registry: Registry) -> None:
    view, created = _create(services, "S1", quantity=2, unit="pallets")
    assert created and view["id"] == "S1" and view["legs"] == [] and view["custody"] is None
    with pytest.raises(RecordInvalid, match="profile 'caviar' is not configured on this server"):
        _create(services, "S2", profile="caviar")
    assert registry.get_shipment("S2") is None
    (entry,) = registry.audit_entries(entity="shipment")
    assert entry.actor == "key:0a1b2c3d"
    patch = ShipmentPatch.model_validate({"profile": "caviar"})
    with pytest.raises(RecordInvalid, match="profile 'caviar' is not configured"):
        services.shipments.update("S1", patch, WHO)


def test_listing_pages_with_cursors_and_no_empty_last_page(services: Services) -> None:
    for i in range(7):
        _create(services, f"S{i}", shipper="ACME" if i != 3 else "Beta")
    filters = ShipmentFilters(shipper="ACME")
    seen, cursor, pages = [], None, 0
    while True:
        page = services.shipments.list(filters, cursor=cursor, limit=3)
        pages += 1
        seen += [s["id"] for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["S0", "S1", "S2", "S4", "S5", "S6"] and pages == 2
    with pytest.raises(RecordInvalid, match="cursor was made for other filters"):
        services.shipments.list(ShipmentFilters(), cursor=encode_cursor("S2", filters.as_dict()))
    with pytest.raises(RecordInvalid, match="give cursor or after, not both"):
        services.shipments.list(filters, cursor=cursor, after="S1")
    with pytest.raises(RecordInvalid, match="limit 0 is not between 1 and 1000"):
        services.shipments.list(filters, limit=0)
    with pytest.raises(RecordInvalid, match="created_from must be before created_to"):
        services.shipments.list(ShipmentFilters(created_from_ms=5, created_to_ms=5))


def test_cursors_are_opaque_and_bound_to_their_filters() -> None:
    filters = {"shipper": "ACME", "status": None}
    cursor = encode_cursor("PO-1/2", filters)
    assert "PO-1" not in cursor and "=" not in cursor
    assert decode_cursor(cursor, filters) == "PO-1/2"
    # A filter left out or given as None is the same query.
    assert decode_cursor(cursor, {"shipper": "ACME"}) == "PO-1/2"
    for bad in ("", "!!!", "e30", cursor[:-4]):
        with pytest.raises(RecordInvalid, match="not a cursor this API gave out"):
            decode_cursor(bad, filters)


def _event(**kw: Any) -> CustodyEventCreate:
    base = {
        "event_id": "e1",
        "shipment_id": "S1",
        "action": "load",
        "asset_id": "truck-1",
        "compartment_id": "front",
        "ts": "2026-09-21T14:00:00Z",
        "actor": "driver",
    }
    return CustodyEventCreate.model_validate(base | kw)


def test_custody_fleet_and_clock_checks_and_a_lazily_loaded_fleet(registry: Registry) -> None:
    loads: list[int] = []

    def load() -> Any:
        loads.append(1)
        return fleet()

    services = build_services(
        registry,
        fleet=load,
        profiles=load_presets(),
        validation=ValidationSettings(max_future_skew_s=60, max_sample_age_s=3600),
        clock_ms=lambda: NOW_MS,
    )
    _create(services, "S1")
    services.shipments.list(ShipmentFilters())
    assert loads == []  # listings do not read the fleet file
    with pytest.raises(RecordInvalid, match="ts: 2026-09-21T14:15:00Z is 100 s after"):
        services.custody.record(_event(ts="2026-09-21T14:15:00Z"), WHO)
    with pytest.raises(RecordInvalid, match=r"more than 3600 s \(0.0416667 days\)"):
        services.custody.record(_event(ts="2026-09-21T13:00:00Z"), WHO)
    with pytest.raises(RecordInvalid, match="asset_id: asset 'truck-9' is not registered"):
        services.custody.record(_event(asset_id="truck-9"), WHO)
    view, created = services.custody.record(_event(), WHO)
    assert created and view["event_id"] == "e1"
    assert loads == [1]  # loaded once
    with pytest.raises(RecordConflict, match="cannot have happened"):
        services.custody.record(_event(event_id="e2", action="deliver", ts="2026-09-21T13:59:00Z",
                                       compartment_id=None), WHO)  # fmt: skip
    with pytest.raises(RecordNotFound):
        services.custody.list("S404")
    assert [e["event_id"] for e in services.custody.list("S1")] == ["e1"]


def test_acknowledgements_through_the_service(services: Services, registry: Registry) -> None:
    from coldchain.rules.excursion import Excursion

    exc = Excursion(
        asset_id="truck-1",
        compartment_id="front",
        rule="range",
        kind="range",
        severity="warning",
        status="open",
        start_ms=NOW_MS,
        end_ms=None,
        detected_ms=NOW_MS,
    )
    registry.upsert_excursion(exc)
    op = Principal(actor="key:ffff0000", role="operator", key_id="ffff0000")
    body = AcknowledgementCreate.model_validate({"disposition": "pending", "comment": "seen"})
    ack = services.excursions.acknowledge(exc.id, body, op)
    assert (ack["seq"], ack["by"], ack["role"], ack["key_id"]) == (
        1,
        "key:ffff0000",
        "operator",
        "ffff0000",
    )
    listed = services.excursions.list(acknowledged=True)
    assert [e["acknowledgement"] for e in listed] == [ack]
    assert services.excursions.get(exc.id)["ack_count"] == 1
    assert services.excursions.history(exc.id) == [ack]
    with pytest.raises(RecordNotFound, match="excursion 'x' not found"):
        services.excursions.get("x")


VALUES: dict[str, list[Any]] = {
    "shipment_id": ["PO-2026/0042", "(00)340123450000000017", "PO 1", "a//b", "x/trace", "", 7],
    "asset_id": ["truck-1", "truck 1", "-x", "x" * 65, "truck-1\n", None],
    "compartment_id": ["c1", None, "c/1", ""],
    "action": ["load", "unload", "handover", "deliver", "fly", "LOAD"],
    "actor": ["driver 7", "司机", "a\nb", " ", "x" * 129],
    "ts": ["2026-09-21T14:00:00Z", "2026-09-21T16:00:00+02:00", "2026-09-21T14:00:00", "x"],
}


@pytest.mark.parametrize("field", sorted(VALUES))
def test_custody_bodies_take_exactly_what_mqtt_scans_take(field: str) -> None:
    # The same field types and rules as the MQTT contract (coldchain/contract/events.py).
    good = _event().model_dump(mode="json") | {"ts": "2026-09-21T14:00:00Z"}
    mqtt_base = {k: v for k, v in good.items() if k != "event_id"}
    mqtt_base |= {"v": 1, "device_id": "dev-1", "seq": 1, "type": "custody"}
    for value in VALUES[field]:
        verdicts = []
        for model, base in ((CustodyEventCreate, good), (MqttCustodyEvent, mqtt_base)):
            try:
                model.model_validate_json(json.dumps(base | {field: value}))
                verdicts.append(True)
            except ValidationError:
                verdicts.append(False)
        assert verdicts[0] == verdicts[1], (field, value, verdicts)


def test_parse_names_every_problem_for_the_cli() -> None:
    with pytest.raises(RecordInvalid) as info:
        parse(ShipmentCreate, {"id": "A B", "profile": "", "shipper": "x", "quantity": -1})
    message = str(info.value)
    assert message.startswith("field 'id': Value error, shipment id contains U+0020 SPACE")
    assert "field 'profile': String should have at least 1 character (got '')" in message
    assert "field 'quantity': Input should be greater than 0 (got -1)" in message


def test_cli_principal_and_open_services(tmp_path: Path, registry: Registry) -> None:
    assert cli_principal("Ana Lima") == Principal("Ana Lima", "admin", None)
    assert cli_principal().actor.startswith("cli:")
    # The fleet file is read only when a custody event needs it: a missing one does not stop
    # shipment commands.
    settings = Settings(fleet_path=tmp_path / "missing.yaml")
    with open_services(settings, registry=registry) as services:
        body = ShipmentCreate.model_validate({"id": "S1", "profile": "chilled", "shipper": "A"})
        services.shipments.create(body, cli_principal("ana"))
        with pytest.raises(RegistryError, match=r"missing\.yaml"):
            services.custody.record(_event(), cli_principal("ana"))
    assert registry.get_shipment("S1") is not None  # a registry passed in stays open
