"""Scoring a run against its scenario's expectations (issue 9, "What it must show"): the schema
of ``expect``, the pure matching, and a real rules-engine run that scores 0 missed / 0 false
alarms with the expectations declared and a false alarm once the fault's are taken away."""

from __future__ import annotations

import copy
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from coldchain.rules.excursion import Excursion
from simulators import SCENARIO_DIR, Simulation, library_scenario, parse_scenario
from simulators.scenario import ScenarioError
from simulators.scoring import Evidence, Expected, evidence_from, expectations, score
from tests.unit.rules.scenario_support import Generated, run_scenario
from tests.unit.simulators.conftest import START

T0 = round(START.timestamp() * 1000)
MIN = 60_000
END = T0 + 6 * 60 * MIN


def _raw(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())
    return raw


def _with_fault_expect(expect: list[dict[str, Any]], **fault: Any) -> dict[str, Any]:
    raw = _raw("door_left_open")
    raw["faults"] = [{**raw["faults"][0], **fault, "expect": expect}]
    return raw


# -- the schema -------------------------------------------------------------------------------


def test_expectations_resolve_with_defaults_from_their_fault_or_transfer() -> None:
    raw = _with_fault_expect(
        [
            {"kind": "door_open", "start": "3h30m", "end": "3h55m"},
            {"kind": "range", "start": ["3h37m", "3h43m"], "max_count": 2},
            {"kind": "data_gap", "asset": "truck-gs-01", "compartment": "front", "start": 0},
        ]
    )
    raw["trucks"][0]["route"]["stops"][1]["unload"][0]["expect"] = [
        {"kind": "custody_gap", "start": ["4h", "4h10m"]}
    ]
    raw["faults"].append(
        {"kind": "sensor_stuck", "asset": "truck-gs-01", "sensor": "front-air", "start": "1h",
         "duration": "1h", "expect": [{"kind": "sensor_fault", "start": "1h"}]}
    )  # fmt: skip
    got = expectations(parse_scenario(raw), START)
    door, rng, gap, stuck, dock = got
    assert (door.asset_id, door.compartment_id, door.tolerance_ms) == ("truck-gs-01", "rear", MIN)
    # Windows are absolute and widened by one sample interval (60 s) on both sides.
    assert door.start_ms == (T0 + 210 * MIN - MIN, T0 + 210 * MIN + MIN)
    assert door.end_ms == (T0 + 235 * MIN - MIN, T0 + 235 * MIN + MIN)
    assert (rng.start_ms, rng.end_ms, rng.max_count) == (
        (T0 + 216 * MIN, T0 + 224 * MIN),
        None,
        2,
    )
    assert (gap.compartment_id, gap.start_ms) == ("front", (T0 - MIN, T0 + MIN))
    # A transfer's custody gap is on its shipment's dock; without a store, the truck's.
    assert (dock.asset_id, dock.compartment_id) == ("truck-gs-01", "dock:SHP-D-001")
    assert dock.cause == "trucks.truck-gs-01.route.stops.1.unload.0 SHP-D-001"
    # A sensor fault's compartment is its sensor's.
    assert (stuck.compartment_id, stuck.cause) == (
        "front",
        "faults.1 sensor_stuck truck-gs-01/front",
    )


def test_the_sample_interval_of_the_asset_is_the_tolerance() -> None:
    raw = _with_fault_expect([{"kind": "door_open", "start": "3h30m"}])
    raw["trucks"][0]["sample_interval"] = "30s"
    (door,) = expectations(parse_scenario(raw), START)
    assert door.tolerance_ms == 30_000 and door.start_ms == (
        T0 + 210 * MIN - 30_000,
        T0 + 210 * MIN + 30_000,
    )


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"kind": "range", "start": ["2h", "1h"]}, "faults.0.expect.0.start: a window [from, to]"),
        ({"kind": "range", "start": ["1h", "2h", "3h"]}, "a window is one duration or a list"),
        ({"kind": "Range!", "start": "1h"}, "faults.0.expect.0.kind: String should match"),
        ({"kind": "range", "start": "1h", "compartment": "nope"}, "'nope' is not a compartment"),
        ({"kind": "range", "start": "1h", "asset": "truck-x"}, "unknown asset 'truck-x'"),
        (
            {"kind": "range", "start": "7h"},
            "faults.0.expect.0.start: 25200 s is after the scenario",
        ),
        ({"kind": "range", "start": "1h", "severity": "high"}, "Extra inputs are not permitted"),
        ({"kind": "range", "start": "1h", "max_count": 0}, "max_count"),
    ],
)
def test_bad_expectations_are_refused_naming_the_field(
    expect: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[")):
        parse_scenario(_with_fault_expect([expect]), "door.yaml")


def test_a_dock_compartment_must_be_a_known_shipment_s() -> None:
    raw = _with_fault_expect(
        [{"kind": "custody_gap", "start": "1h", "compartment": "dock:SHP-D-001"}]
    )
    assert expectations(parse_scenario(raw), START)[0].compartment_id == "dock:SHP-D-001"
    raw = _with_fault_expect([{"kind": "custody_gap", "start": "1h", "compartment": "dock:NOPE"}])
    with pytest.raises(ScenarioError, match="nor a shipment's dock"):
        parse_scenario(raw)


# -- the matching -----------------------------------------------------------------------------


def _x(
    kind: str = "range",
    comp: str | None = "rear",
    start: tuple[int, int] = (10, 20),
    end: tuple[int, int] | None = None,
    max_count: int = 1,
    asset: str = "truck-1",
) -> Expected:
    tol = MIN
    return Expected(
        cause=f"test {kind}",
        kind=kind,
        asset_id=asset,
        compartment_id=comp,
        start_ms=(T0 + start[0] * MIN - tol, T0 + start[1] * MIN + tol),
        end_ms=None if end is None else (T0 + end[0] * MIN - tol, T0 + end[1] * MIN + tol),
        max_count=max_count,
        tolerance_ms=tol,
    )


def _e(
    start_min: float,
    end_min: float | None = None,
    kind: str = "range",
    comp: str = "rear",
    asset: str = "truck-1",
    eid: str = "",
) -> Evidence:
    end = None if end_min is None else T0 + round(end_min * MIN)
    return Evidence(
        kind, asset, comp, T0 + round(start_min * MIN), end, id=eid or f"{kind}@{start_min}"
    )


def _score(expected: list[Expected], raised: list[Evidence]) -> tuple[int, int, int]:
    s = score(expected, raised, t0_ms=T0, run_end_ms=END)
    return s.found, s.missed, s.false_alarms


def test_windows_are_widened_by_exactly_one_sample() -> None:
    x = _x(start=(10, 20))
    assert _score([x], [_e(9)]) == (1, 0, 0)  # one sample early: still explained
    assert _score([x], [_e(21)]) == (1, 0, 0)
    assert _score([x], [_e(9 - 1 / 60_000)]) == (0, 1, 1)  # a millisecond more: not
    assert _score([x], [_e(21 + 1 / 60_000)]) == (0, 1, 1)


def test_kind_asset_compartment_and_end_must_all_fit() -> None:
    x = _x(end=(50, 60))
    assert _score([x], [_e(15, 55)]) == (1, 0, 0)
    assert _score([x], [_e(15, 70)]) == (0, 1, 1)  # ends too late
    assert _score([x], [_e(15, 55, kind="hard_limit")]) == (0, 1, 1)
    assert _score([x], [_e(15, 55, comp="front")]) == (0, 1, 1)
    assert _score([x], [_e(15, 55, asset="truck-2")]) == (0, 1, 1)
    # No compartment named: any compartment of the asset.
    assert _score([_x(comp=None)], [_e(15, comp="front")]) == (1, 0, 0)
    # An excursion still open ends at the run's end.
    assert _score([_x(end=(350, 360))], [_e(15, None)]) == (1, 0, 0)
    assert _score([_x(end=(50, 60))], [_e(15, None)]) == (0, 1, 1)


def test_an_alarm_storm_on_one_episode_scores_false_alarms() -> None:
    storm = [_e(12), _e(14), _e(16)]
    assert _score([_x()], storm) == (1, 0, 2)
    assert _score([_x(max_count=3)], storm) == (1, 0, 0)


def test_one_excursion_never_stands_in_for_two_expectations() -> None:
    # Both expectations accept the early excursion, only the second the late one: a greedy
    # pairing in time order would give the early one to the second and miss the first.
    wide, narrow = _x(start=(0, 30)), _x(start=(10, 12))
    s = score([narrow, wide], [_e(11, eid="early"), _e(25, eid="late")], t0_ms=T0, run_end_ms=END)
    assert (s.found, s.missed, s.false_alarms) == (2, 0, 0)
    assert [[e.id for e in m] for m in s.matches] == [["early"], ["late"]]
    s = score([narrow, wide], [_e(11)], t0_ms=T0, run_end_ms=END)
    assert (s.found, s.missed, s.false_alarms) == (1, 1, 0)


def test_the_report_names_what_was_missed_and_what_was_false() -> None:
    s = score(
        [_x(kind="clock_skew", comp=None)],
        [_e(15, 16, kind="data_gap", eid="g1")],
        t0_ms=T0,
        run_end_ms=END,
    )
    d = s.to_dict()
    assert {k: d[k] for k in ("expected", "raised", "found", "missed", "false_alarms")} == {
        "expected": 1, "raised": 1, "found": 0, "missed": 1, "false_alarms": 1,
    }  # fmt: skip
    assert d["missed_expectations"] == [
        {"cause": "test clock_skew", "kind": "clock_skew", "asset": "truck-1", "compartment": None,
         "start": ["0h10m", "0h20m"], "end": None, "tolerance_s": 60.0}
    ]  # fmt: skip
    (false,) = d["false_alarm_excursions"]
    assert (false["id"], false["kind"], false["start"], false["end"]) == (
        "g1",
        "data_gap",
        "0h15m",
        "0h16m",
    )


def test_evidence_from_excursions_counts_each_id_once_and_skips_superseded() -> None:
    e = Excursion("truck-1", "rear", "range", "range", "warning", "closed", T0, T0 + MIN, T0)
    gone = Excursion(
        "truck-1", "rear", "range", "range", "warning", "closed", T0 + 5, None, T0, superseded=True
    )
    got = evidence_from([asdict(e), asdict(e), asdict(gone)])
    assert got == [Evidence("range", "truck-1", "rear", T0, T0 + MIN, e.id, "range", "warning", "")]


# -- a real run of the rules engine ------------------------------------------------------------


def _run(raw: dict[str, Any]) -> tuple[int, int, int, list[str]]:
    scenario = parse_scenario(raw)
    msgs, truth = Simulation(scenario, start=START).run()
    run = run_scenario(Generated(scenario.name, scenario.fleet(), tuple(msgs), truth))
    raised = evidence_from(
        {"id": e.id, "kind": e.kind, "asset_id": e.asset_id, "compartment_id": e.compartment_id,
         "rule": e.rule, "start_ms": e.start_ms, "end_ms": e.end_ms, "superseded": e.superseded}
        for e in run.excursions.values()
    )  # fmt: skip
    s = score(expectations(scenario, START), raised, t0_ms=T0, run_end_ms=T0 + 6 * 60 * MIN)
    return s.found, s.missed, s.false_alarms, sorted(e.kind for e in s.false_alarm_list)


def test_a_declared_fault_scores_clean_and_an_undeclared_one_scores_false_alarms() -> None:
    """door_left_open, as the rules engine sees it (fed the way ingest feeds it): with its
    expectations every excursion is explained and none is missing; with the fault declaring
    nothing, what it raises is false alarms; declaring more than happens is a miss."""
    raw = _raw("door_left_open")
    assert _run(raw) == (3, 0, 0, [])
    undeclared = copy.deepcopy(raw)
    del undeclared["faults"][0]["expect"]
    found, missed, false_alarms, kinds = _run(undeclared)
    assert (found, missed) == (0, 0) and false_alarms >= 1 and "door_open" in kinds
    over = copy.deepcopy(raw)
    over["faults"][0]["expect"].append({"kind": "data_gap", "start": "3h30m"})
    assert _run(over)[:3] == (3, 1, 0)


def test_library_scenarios_with_expectations_resolve() -> None:
    for name in ("demo", "door_left_open"):
        assert expectations(library_scenario(name), datetime(2026, 1, 1, 16, tzinfo=UTC))
