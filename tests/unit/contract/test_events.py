"""Event payloads: a repeated key is rejected (issue 8, item 7), free-text ``actor`` included."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from coldchain.contract import parse_event

DOOR = {
    "v": 1,
    "type": "door",
    "device_id": "dev-1",
    "ts": "2026-11-23T18:00:00Z",
    "seq": 4,
    "asset_id": "truck-1",
    "compartment_id": "front",
    "open": True,
}


def test_a_good_event_parses() -> None:
    event = parse_event(json.dumps(DOOR))
    assert event.type == "door" and event.open is True


def test_a_repeated_key_is_rejected() -> None:
    raw = json.dumps(DOOR).replace('"open": true', '"open": true, "open": false')
    with pytest.raises(ValidationError) as info:
        parse_event(raw)
    [err] = info.value.errors(include_url=False)
    assert (err["type"], err["loc"], err["input"]) == ("duplicate_key", ("open",), [True, False])


def test_key_like_text_inside_a_string_is_not_a_key() -> None:
    custody = {
        "v": 1,
        "type": "custody",
        "device_id": "dev-1",
        "ts": "2026-11-23T18:00:00Z",
        "seq": 5,
        "action": "load",
        "shipment_id": "shp-1",
        "asset_id": "truck-1",
        "compartment_id": "front",
        "actor": 'dock "seq": 5, "seq": 6',
    }
    assert parse_event(json.dumps(custody)).actor == 'dock "seq": 5, "seq": 6'
