"""Validation against GS1's EPCIS 2.0 JSON Schema with format checking on: GS1's own examples
pass, a document with a bad action or a readPoint that is not a URI does not."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from coldchain.epcis import epcis_schema, event_hash, validate_epcis

DATA = Path(__file__).resolve().parents[2] / "data" / "epcis"
EXAMPLES = ["SensorDataExample1", "SensorDataExample4", "SensorDataExample10"]


def example(name: str = "SensorDataExample1") -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / f"{name}.jsonld").read_text(encoding="utf-8"))
    return document


@pytest.mark.parametrize("name", EXAMPLES)
def test_gs1_sensor_examples_validate(name: str) -> None:
    assert validate_epcis(example(name)) == []


def test_a_bogus_action_fails() -> None:
    document = example()
    document["epcisBody"]["eventList"][0]["action"] = "BOGUS"
    errors = validate_epcis(document)
    assert any(e.startswith("epcisBody.eventList[0].action: ") and "BOGUS" in e for e in errors), (
        errors
    )


def test_a_read_point_that_is_not_a_uri_fails_only_with_formats_checked() -> None:
    document = example()
    document["epcisBody"]["eventList"][0]["readPoint"]["id"] = "truck-jy-01"
    assert validate_epcis(document) == [
        "epcisBody.eventList[0].readPoint.id: 'truck-jy-01' is not a 'uri'"
    ]
    # The reason format checking is on: a plain validator lets it through.
    assert list(Draft7Validator(epcis_schema()).iter_errors(document)) == []


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda e: e.pop("eventTime"), "epcisBody.eventList[0]: "),
        (lambda e: e.update(eventTime="yesterday"), "epcisBody.eventList[0].eventTime: "),
        (
            lambda e: e.update(eventTimeZoneOffset="+8"),
            "epcisBody.eventList[0].eventTimeZoneOffset",
        ),
        (lambda e: e.update(bizStep="truck loading"), "epcisBody.eventList[0].bizStep: "),
        (lambda e: e.update(epcList=["SHP 1"]), "epcisBody.eventList[0].epcList[0]: "),
        (
            lambda e: e["sensorElementList"][0]["sensorReport"][0].update(type="Heat"),
            "epcisBody.eventList[0].sensorElementList[0].sensorReport[0].type: ",
        ),
    ],
)
def test_other_mutations_fail_and_say_where(mutate: Any, where: str) -> None:
    document = example()
    mutate(document["epcisBody"]["eventList"][0])
    errors = validate_epcis(document)
    assert errors and any(e.startswith(where) for e in errors), errors


def test_event_ids_are_checked_on_request() -> None:
    document = example()
    # GS1's example carries a placeholder id, not the CBV 2.0 hash of its event.
    assert validate_epcis(document) == []
    [error] = validate_epcis(document, check_event_ids=True)
    assert (
        error.startswith("epcisBody.eventList[0].eventID: ") and "is not the event's hash" in error
    )
    fixed = copy.deepcopy(document)
    event = fixed["epcisBody"]["eventList"][0]
    event["eventID"] = event_hash(event, context=fixed["@context"])
    assert validate_epcis(fixed, check_event_ids=True) == []


def test_not_a_document() -> None:
    assert validate_epcis({"type": "EPCISDocument"}) != []
    assert validate_epcis([]) != []
