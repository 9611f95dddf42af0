"""One definition of identifiers (issue 9, item 10): shipment ids fit GS1 keys and customer
references, ``/`` included, and every refusal says what is wrong; the pydantic types, the JSON
Schema pattern and the plain functions agree."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from coldchain.contract.events import CustodyEvent, parse_event
from coldchain.identifiers import (
    SHIPMENT_ID_CHARS,
    SHIPMENT_ID_PATTERN,
    Actor,
    Identifier,
    ShipmentId,
    actor_problem,
    identifier_problem,
    is_identifier,
    is_shipment_id,
    shipment_id_problem,
)

SHIPMENT = TypeAdapter(ShipmentId)
IDENT = TypeAdapter(Identifier)

GOOD_SHIPMENT_IDS = [
    "340123450000000017",  # SSCC: 18 digits (GS1 AI 00)
    "(00)340123450000000017",  # the same as a GS1 element string
    "00614141000043A/7-12",  # GRAI-like: GTIN-ish key plus a serial with symbols
    "PO-2026/0042",  # customer references
    "ACME:778-A",
    "a/b/c",
    "lot...7",
    "a/.../b",  # three dots are a name, not a dot segment
    "trace",  # only a *last segment* "trace" after a "/" is reserved
    "x/trace-2",
    "!\"%&'()*+,-.:;<=>?_",
    "S" * 128,
]

BAD_SHIPMENT_IDS = [
    ("", "is empty"),
    ("S" * 129, "is 129 characters long; at most 128 are allowed"),
    ("SHP 1", "contains U+0020 SPACE (whitespace) at position 4"),
    ("SHP-1\n", "contains U+000A (a control character) at position 6"),
    ("\tSHP", "contains U+0009 (a control character) at position 1"),
    ("SHP\u00e9", "contains U+00E9 LATIN SMALL LETTER E WITH ACUTE (not ASCII) at position 4"),
    ("SHP#1", "contains U+0023 NUMBER SIGN (not allowed) at position 4"),
    ("SHP\\1", "contains U+005C REVERSE SOLIDUS (not allowed) at position 4"),
    ("/SHP", "has an empty path segment"),
    ("SHP/", "has an empty path segment"),
    ("a//b", "has an empty path segment"),
    ("./a", "has a '.' path segment, which URLs resolve away"),
    ("a/../b", "has a '..' path segment"),
    ("..", "has a '..' path segment"),
    ("PO-1/trace", "ends in '/trace', reserved for the API's sub-resources"),
    ("PO-1/trace.csv", "ends in '/trace.csv', reserved"),
    ("PO-1/report.html", "ends in '/report.html', reserved"),
    ("PO-1/report.pdf", "ends in '/report.pdf', reserved"),
    ("PO-1/epcis", "ends in '/epcis', reserved"),
    ("PO-1/cancel", "ends in '/cancel', reserved"),
]


@pytest.mark.parametrize("value", GOOD_SHIPMENT_IDS)
def test_gs1_keys_and_customer_references_are_shipment_ids(value: str) -> None:
    assert shipment_id_problem(value) is None
    assert SHIPMENT.validate_python(value) == value
    assert re.fullmatch(SHIPMENT_ID_PATTERN[1:-1], value)


@pytest.mark.parametrize(("value", "problem"), BAD_SHIPMENT_IDS)
def test_bad_shipment_ids_say_what_is_wrong(value: str, problem: str) -> None:
    found = shipment_id_problem(value)
    assert found is not None and found.startswith(problem), found
    with pytest.raises(ValidationError, match=re.escape("shipment id " + problem)):
        SHIPMENT.validate_python(value)


_ASCII = st.characters(min_codepoint=0, max_codepoint=127)
_NEAR = st.sampled_from([*SHIPMENT_ID_CHARS, "/", ".", " ", "\n", "#", "\u00e9"])


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.one_of(_ASCII, _NEAR), max_size=12))
def test_the_published_pattern_agrees_with_the_check(value: str) -> None:
    # The JSON Schema pattern states characters and segments; length and the reserved last
    # segment are stated beside it. Python's re stands in for a JSON Schema validator.
    in_pattern = re.fullmatch(SHIPMENT_ID_PATTERN[1:-1], value) is not None
    last = value.rsplit("/", 1)[1] if "/" in value else None
    reserved = last in ("trace", "trace.csv", "report.html", "report.pdf", "epcis", "cancel")
    assert is_shipment_id(value) == (in_pattern and not reserved), value
    assert SHIPMENT.json_schema()["pattern"] == SHIPMENT_ID_PATTERN
    try:
        SHIPMENT.validate_python(value)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == is_shipment_id(value)


def test_identifiers_match_whole_strings_only() -> None:
    # Python's "$" matches before a trailing newline; the check must not.
    assert is_identifier("truck-1") and not is_identifier("truck-1\n")
    assert identifier_problem("truck-1\n") == (
        "contains U+000A at position 8; only letters, digits, '.', '_' and '-' are allowed there"
    )
    assert identifier_problem("-truck") == (
        "contains '-' at position 1; only letters and digits are allowed there"
    )
    assert identifier_problem("t" * 65) == "is 65 characters long; at most 64 are allowed"
    assert identifier_problem("") == "is empty"
    assert identifier_problem("PO-1/2") is not None  # identifiers never take "/"
    with pytest.raises(ValidationError):
        IDENT.validate_python("truck-1\n")


def test_actor_is_a_name_without_control_characters() -> None:
    assert actor_problem("driver-chen") is None and actor_problem("陈师傅") is None
    assert actor_problem("  ") == "is empty or blank"
    assert actor_problem("bob\n") == "contains U+000A (a control character) at position 4"
    assert actor_problem("a\u202eb") == (
        "contains U+202E RIGHT-TO-LEFT OVERRIDE (a control character) at position 2"
    )
    assert actor_problem("x" * 129) == "is 129 characters long; at most 128 are allowed"
    with pytest.raises(ValidationError, match="actor contains U"):
        TypeAdapter(Actor).validate_python("bob\r")


def _custody(**fields: object) -> bytes:
    event = {
        "v": 1,
        "device_id": "scanner-1",
        "ts": "2026-11-30T08:00:00Z",
        "seq": 1,
        "type": "custody",
        "action": "load",
        "shipment_id": "SHP-1",
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "actor": "driver-chen",
    }
    return json.dumps(event | fields).encode()


def test_custody_scans_take_the_registry_s_shipment_ids() -> None:
    """MQTT scans used to refuse ':' and '/' and more than 64 characters, which the registry
    and the API take: now all three share the definition."""
    for sid in GOOD_SHIPMENT_IDS:
        event = parse_event(_custody(shipment_id=sid))
        assert isinstance(event, CustodyEvent) and event.shipment_id == sid
    for sid, problem in BAD_SHIPMENT_IDS:
        with pytest.raises(ValidationError, match=re.escape(problem)):
            parse_event(_custody(shipment_id=sid))
    with pytest.raises(ValidationError, match="actor contains U"):
        parse_event(_custody(actor="driver\nchen"))
    with pytest.raises(ValidationError, match="asset_id"):
        parse_event(_custody(asset_id="truck-1\n"))
