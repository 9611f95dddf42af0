"""Scenario files: durations, defaults, and errors that name the field and the bad value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators import (
    SCENARIO_DIR,
    ScenarioError,
    library_scenario,
    load_scenario,
    parse_duration,
    parse_scenario,
)

BASE: dict[str, Any] = yaml.safe_load((SCENARIO_DIR / "door_left_open.yaml").read_text())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("25m", 1500.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        (45, 45.0),
        ("1.5h", 5400.0),
    ],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["25x", "h", "", "1h 30", True, None])
def test_bad_durations_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def broken(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["faults", 0, "duration"], "25x", r"faults\.0\.duration.*'25x'"),
        (["faults", 0, "asset"], "truck-nope", r"faults\.0\.asset: unknown asset 'truck-nope'"),
        (["faults", 0, "compartment"], "attic", r"faults\.0\.compartment.*'attic'"),
        (["faults", 0, "kind"], "meteor", r"faults\.0\.kind.*'meteor'"),
        (["faults", 0, "start"], "9h", r"faults\.0\.start.*after the scenario ends"),
        (["faults", 0, "colour"], "red", r"faults\.0\.colour: Extra inputs"),
        (["trucks", 0, "route", "stops", 1, "city"], "atlantis", r"stops\.1\.city.*'atlantis'"),
        (["trucks", 0, "compartments", 0, "setpoint_c"], -90, r"setpoint_c.*-90"),
        (["trucks", 0, "id"], "bad id!", r"trucks\.0\.id.*'bad id!'"),
        (["duration"], -5, r"duration.*-5"),
    ],
)
def test_errors_name_the_field_and_the_value(path: list[Any], value: Any, expected: str) -> None:
    with pytest.raises(ScenarioError, match=expected):
        parse_scenario(broken(path, value), "door_left_open.yaml")


def test_fault_kind_needs_its_parameters() -> None:
    raw = copy.deepcopy(BASE)
    raw["faults"] = [{"kind": "wrong_setpoint", "asset": "truck-gs-01", "compartment": "rear",
                      "start": "1h", "duration": "1h"}]  # fmt: skip
    with pytest.raises(ScenarioError, match=r"faults\.0.*needs 'setpoint_c'"):
        parse_scenario(raw)
    raw["faults"] = [{"kind": "sensor_stuck", "asset": "truck-gs-01", "sensor": "rear-nose",
                      "start": "1h", "duration": "1h"}]  # fmt: skip
    with pytest.raises(ScenarioError, match=r"unknown sensor 'rear-nose'.*rear-air"):
        parse_scenario(raw)


def test_unknown_shipment_is_named() -> None:
    raw = broken(["shipments"], [])
    with pytest.raises(ScenarioError, match=r"stops\.0\.load: unknown shipment 'SHP-D-001'"):
        parse_scenario(raw)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match=r"missing\.yaml"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match="no library scenario 'nope'"):
        library_scenario("nope")


def test_setpoints_default_by_profile() -> None:
    raw = copy.deepcopy(BASE)
    raw["trucks"][0]["compartments"] = [
        {"id": "a", "profile": "frozen"},
        {"id": "b", "profile": "chilled"},
        {"id": "c", "profile": "pharma_2_8", "setpoint_c": 6},
    ]
    raw["trucks"][0]["route"]["stops"] = [{"city": "guangzhou"}, {"city": "shenzhen"}]
    raw["faults"] = []
    sc = parse_scenario(raw)
    got = [c.effective_setpoint_c for c in sc.trucks[0].compartments]
    assert got == [-20.0, 2.0, 6.0]
    fleet = sc.fleet()
    assert fleet.sensor("truck-gs-01", "b-prod") == ("b", "product")
    assert fleet.asset_of("truck-gs-01-tcu") is not None
