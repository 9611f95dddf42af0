"""The published JSON Schema (docs/telemetry.schema.json) matches the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coldchain.contract import telemetry_json_schema

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_FILE = ROOT / "docs" / "telemetry.schema.json"
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def test_published_schema_has_not_drifted() -> None:
    expected = json.dumps(telemetry_json_schema(), indent=2, sort_keys=True) + "\n"
    actual = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert actual == expected, (
        "docs/telemetry.schema.json is out of date with coldchain/contract/telemetry.py; "
        "regenerate it with: uv run python scripts/gen_schema.py"
    )


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for child in node.values():
            found.extend(_walk(child))
    elif isinstance(node, list):
        for child in node:
            found.extend(_walk(child))
    return found


def test_schema_structure() -> None:
    """jsonschema is not a dependency, so the structure is checked directly."""
    schema = telemetry_json_schema()
    defs = schema["$defs"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("telemetry-v1.json")
    assert schema["oneOf"] == [{"$ref": "#/$defs/SingleMessage"}, {"$ref": "#/$defs/BatchMessage"}]
    for name in (
        "SingleMessage",
        "BatchMessage",
        "Sample",
        "Position",
        "CompartmentState",
        "Power",
    ):
        assert defs[name]["additionalProperties"] is False, name
    assert set(defs["SingleMessage"]["required"]) == {"v", "device_id", "ts", "seq"}
    assert set(defs["BatchMessage"]["required"]) == {"v", "device_id", "samples"}
    assert defs["SingleMessage"]["properties"]["v"]["const"] == 1
    samples = defs["BatchMessage"]["properties"]["samples"]
    assert (samples["minItems"], samples["maxItems"]) == (1, 5000)
    assert defs["Sample"]["properties"]["ts"]["format"] == "date-time"
    lat = defs["Position"]["properties"]["lat"]["anyOf"][0]
    assert (lat["minimum"], lat["maximum"]) == (-90.0, 90.0)
    temps = defs["Sample"]["properties"]["temps_c"]
    assert temps["maxProperties"] == 32
    assert temps["patternProperties"][ID_PATTERN] == {
        "maximum": 100.0,
        "minimum": -100.0,
        "type": "number",
    }


def test_id_keyed_maps_are_closed() -> None:
    """A key that is not an identifier must fail the schema as it fails the model."""
    maps = [n for n in _walk(telemetry_json_schema()) if "patternProperties" in n]
    assert len(maps) >= 2
    assert all(n["additionalProperties"] is False for n in maps)


def test_schema_is_json_serializable_and_stable() -> None:
    assert telemetry_json_schema() == telemetry_json_schema()
    json.dumps(telemetry_json_schema(), allow_nan=False)
