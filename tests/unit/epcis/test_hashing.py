"""The GS1 canonical event hash (CBV 2.0 section 8.9) against GS1's published test vectors, and
the properties the algorithm exists for: one event, one hash, whatever its serialisation."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldchain.epcis import document_event_hashes, document_prehashes, event_hash, prehash

VECTORS = Path(__file__).resolve().parents[2] / "data" / "epcis" / "hash-vectors"
VECTOR_NAMES = sorted(p.stem for p in VECTORS.glob("*.jsonld"))


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_the_vectors_are_vendored() -> None:
    # A fresh clone must carry them: an empty glob would make the parametrised tests vanish.
    assert VECTOR_NAMES == [
        "CertificationInfoAndSensorReportWithCRS",
        "ReferenceEventHashAlgorithm",
        "ReferenceEventHashAlgorithm2",
        "ReferenceEventHashAlgorithm3",
        "TimeStampRoundOff",
    ]
    assert (VECTORS / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_every_prehash_and_hash_of_every_vector(name: str) -> None:
    document = json.loads((VECTORS / f"{name}.jsonld").read_text(encoding="utf-8"))
    events = document["epcisBody"]["eventList"]
    expected_prehashes = _lines(VECTORS / f"{name}.prehashes")
    expected_hashes = _lines(VECTORS / f"{name}.hashes")
    assert len(expected_prehashes) == len(expected_hashes) == len(events)
    assert document_prehashes(document) == expected_prehashes
    assert document_event_hashes(document) == expected_hashes


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": "2024-05-01T08:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:epc:id:sscc:4012345.0000000333", "urn:epc:id:sscc:4012345.0000000111"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:4012345.00011.987"},
        "sensorElementList": [
            {
                "sensorMetadata": {
                    "startTime": "2024-05-01T06:00:00Z",
                    "endTime": "2024-05-01T08:00:00Z",
                },
                "sensorReport": [
                    {"type": "Temperature", "minValue": 2.5, "maxValue": 7.25, "uom": "CEL"},
                    {"type": "RelativeHumidity", "value": 60, "uom": "P1"},
                ],
            }
        ],
        "ex:note": "a",
    }
    event.update(changes)
    return event


CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"ex": "https://ns.example.com/"},
]


def h(event: dict[str, Any]) -> str:
    return event_hash(event, context=CONTEXT)


def test_the_same_event_written_differently_has_one_hash() -> None:
    base = h(_event())
    # CBV terms bare, as URNs or as web URIs; times in any offset, ms or not; numbers with
    # trailing zeros; EPC URIs or Digital Link URIs on another domain.
    assert h(_event(bizStep="urn:epcglobal:cbv:bizstep:shipping")) == base
    assert h(_event(bizStep="https://ref.gs1.org/cbv/BizStep-shipping")) == base
    assert h(_event(disposition="urn:epcglobal:cbv:disp:in_transit")) == base
    assert h(_event(eventTime="2024-05-01T00:00:00Z")) == base
    assert h(_event(eventTime="2024-04-30T19:00:00.000-05:00")) == base
    assert h(_event(readPoint={"id": "https://id.gs1.org/414/4012345000115/254/987"})) == base
    assert h(_event(readPoint={"id": "https://example.com/414/4012345000115/254/987?x=1"})) == base
    dl_epcs = [
        "https://id.gs1.org/00/040123450000001112",
        "https://x.example/sscc/040123450000003338",
    ]
    assert h(_event(epcList=dl_epcs)) == base
    report = _event()
    report["sensorElementList"][0]["sensorReport"][0]["minValue"] = 2.50
    report["sensorElementList"][0]["sensorReport"][1]["value"] = 60.0
    report["sensorElementList"][0]["sensorReport"][0]["type"] = "gs1:Temperature"
    assert h(report) == base
    # Derived or bookkeeping fields are not hashed.
    assert (
        h(_event(eventID="ni:///sha-256;00?ver=CBV2.0", recordTime="2030-01-01T00:00:00Z")) == base
    )


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_member_and_list_order_do_not_matter(rnd: random.Random) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            items = [shuffled(v) for v in value]
            rnd.shuffle(items)
            return items
        return value

    event = _event(
        bizTransactionList=[
            {"type": "po", "bizTransaction": "urn:epc:id:gdti:4012345.11111.123"},
            {"type": "inv", "bizTransaction": "https://example.com/inv/7"},
        ],
        sourceList=[{"type": "owning_party", "source": "urn:epc:id:pgln:4012345.00000"}],
    )
    event["ex:nested"] = {"ex:a": ["3", "1"], "ex:b": {"ex:c": 1}}
    assert h(shuffled(copy.deepcopy(event))) == h(event)


@pytest.mark.parametrize(
    "change",
    [
        {"bizStep": "receiving"},
        {"disposition": "non_conformant"},
        {"eventTime": "2024-05-01T08:00:00.001+08:00"},
        {"epcList": ["urn:epc:id:sscc:4012345.0000000333"]},
        {"readPoint": {"id": "urn:epc:id:sgln:4012345.00011.988"}},
        {"ex:note": "b"},
        {"ex:other": "a"},
        {"bizLocation": {"id": "urn:epc:id:sgln:4012345.00011.987"}},
    ],
)
def test_any_change_changes_the_hash(change: dict[str, Any]) -> None:
    assert h(_event(**change)) != h(_event())


def test_a_sensor_value_change_changes_the_hash() -> None:
    changed = _event()
    changed["sensorElementList"][0]["sensorReport"][0]["maxValue"] = 7.26
    assert h(changed) != h(_event())


def test_timestamps_round_half_to_even_and_carry_into_the_next_second() -> None:
    def time_part(event_time: str) -> str:
        text = prehash({"type": "ObjectEvent", "eventTime": event_time, "action": "OBSERVE"})
        return text.split("eventTime=")[1].split("action=")[0]

    assert time_part("2023-02-02T11:04:03.1415Z") == "2023-02-02T11:04:03.142Z"
    assert time_part("2023-02-02T11:04:03.1425Z") == "2023-02-02T11:04:03.142Z"
    assert time_part("2023-02-02T11:04:03.1426Z") == "2023-02-02T11:04:03.143Z"
    assert time_part("2023-12-31T23:59:59.9996Z") == "2024-01-01T00:00:00.000Z"
    assert time_part("2023-02-02T12:04:03+01:00") == "2023-02-02T11:04:03.000Z"
    # No offset: not converted (the moment is unknown), left as written.
    assert time_part("2023-02-02T11:04:03") == "2023-02-02T11:04:03"


def test_values_the_reference_mishandles_are_hashed_sensibly() -> None:
    text = prehash(
        {
            "type": "ObjectEvent",
            "action": "OBSERVE",
            "sensorElementList": [
                {"sensorReport": [{"type": "Dimensionless", "booleanValue": True}]}
            ],
            "bizTransactionList": [{"bizTransaction": "https://example.com/po/1"}],
            "ex:big": 12345678901234567891,
        },
        context=[{"ex": "https://ns.example.com/"}],
    )
    assert "booleanValue=true" in text
    assert "bizTransactionListbizTransaction=https://example.com/po/1" in text
    assert "{https://ns.example.com/}big=12345678901234567891" in text


def test_an_event_without_a_type_is_refused() -> None:
    with pytest.raises(ValueError, match="type"):
        prehash({"action": "OBSERVE"})
    with pytest.raises(ValueError, match="epcisBody"):
        document_event_hashes({"type": "EPCISDocument"})


def test_other_digest_algorithms() -> None:
    event = _event()
    assert h(event).startswith("ni:///sha-256;") and len(h(event).split(";")[1]) == 64 + 11
    for algorithm, hex_len in (("sha3-256", 64), ("sha-384", 96), ("sha-512", 128)):
        value = event_hash(event, context=CONTEXT, algorithm=algorithm)
        assert value.startswith(f"ni:///{algorithm};") and value.endswith("?ver=CBV2.0")
        assert len(value.split(";")[1]) == hex_len + len("?ver=CBV2.0")
