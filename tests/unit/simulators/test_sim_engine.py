"""The pure generator: determinism, contract conformance, ground truth against the stream."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coldchain.contract import Limits, check_sample, device_topic, parse_message, ts_ms
from coldchain.contract.events import CustodyEvent, DoorEvent, parse_event
from coldchain.fleet import load_fleet
from simulators import (
    GroundTruth,
    SimMessage,
    Simulation,
    library_scenario,
    library_scenarios,
    simulate,
)

START = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)  # as in conftest.py: 00:00 in Guangzhou

Runner = Callable[[str], tuple[list[SimMessage], GroundTruth]]
REQUIRED = {
    "normal_day",
    "door_left_open",
    "compressor_failure",
    "store_power_cut",
    "coverage_loss_backlog",
    "stuck_sensor",
    "wrong_setpoint",
    "dock_handover",
    "defrost",
    "demo",
}


def test_the_library_has_every_scenario_the_issue_asks_for() -> None:
    assert set(library_scenarios()) >= REQUIRED


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    sc = library_scenario("door_left_open")
    a = [(m.time, m.topic, m.payload, m.qos, m.retain) for m in simulate(sc, start=START)]
    b = [(m.time, m.topic, m.payload, m.qos, m.retain) for m in simulate(sc, start=START)]
    c = [m.payload for m in simulate(sc, start=START, seed=sc.seed + 1)]
    assert a == b
    assert len(a) > 300
    assert [p for *_, p, _q, _r in a] != c


def test_start_must_be_aware_utc() -> None:
    sc = library_scenario("defrost")
    with pytest.raises(ValueError, match="aware UTC"):
        Simulation(sc, start=datetime(2026, 7, 1, 16, 0))


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_message_conforms_to_the_contract(name: str, library_run: Runner) -> None:
    msgs, _ = library_run(name)
    sc = library_scenario(name)
    fleet = sc.fleet()
    end_ms = int((START + timedelta(seconds=sc.duration_s)).timestamp() * 1000)
    previous = START
    kinds: Counter[str] = Counter()
    for m in msgs:
        assert m.time >= previous, "messages must come in publish order"
        previous = m.time
        assert m.time <= START + timedelta(seconds=sc.duration_s)
        kinds[m.kind] += 1
        assert m.topic == device_topic(m.device_id, m.kind)
        asset = fleet.asset_of(m.device_id)
        assert asset is not None
        if m.kind == "telemetry":
            assert m.qos == 1 and not m.retain
            parsed = parse_message(m.payload)
            assert parsed.device_id == m.device_id
            for i, sample in enumerate(parsed.samples_list()):
                index = i if hasattr(parsed, "samples") else -1
                # Ingest's clock at the end of the simulated window (live mode's wall clock).
                problem = check_sample(sample, index, m.device_id, asset, fleet, end_ms, Limits())
                assert problem is None, problem
                assert ts_ms(sample) <= ts_ms_of(m.time) + 700_000  # skew stays bounded
        elif m.kind == "events":
            event = parse_event(m.payload)
            assert event.device_id == m.device_id
            assert fleet.assets.get(event.asset_id) is not None
            if event.compartment_id is not None:
                assert fleet.has_compartment(event.asset_id, event.compartment_id)
        else:
            assert m.retain and json.loads(m.payload)["state"] == "online"
    assert kinds["telemetry"] > 0 and kinds["status"] == len(fleet.device_ids)


def ts_ms_of(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _unique_samples(msgs: list[SimMessage]) -> dict[str, dict[int, dict[str, Any]]]:
    by_device: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for m in msgs:
        if m.kind != "telemetry":
            continue
        data = json.loads(m.payload)
        for s in data.get("samples", [data]):
            by_device[m.device_id][s["seq"]] = s
    return by_device


@pytest.mark.parametrize("name", ["demo", "dock_handover", "coverage_loss_backlog"])
def test_ground_truth_matches_the_message_stream(name: str, library_run: Runner) -> None:
    msgs, truth = library_run(name)
    data = json.loads(truth.to_json())
    samples = _unique_samples(msgs)
    telemetry = Counter(m.device_id for m in msgs if m.kind == "telemetry")
    for device_id, counts in data["devices"].items():
        assert len(samples[device_id]) == counts["samples"]
        # Sequence numbers are dense: nothing generated was left unpublished.
        assert sorted(samples[device_id]) == list(range(counts["samples"]))
        assert telemetry[device_id] == counts["telemetry_messages"] + counts["duplicate_messages"]
        comps = data["temperatures"][counts["asset_id"]]
        assert all(len(s["t"]) == counts["samples"] for s in comps.values())

    # The true sampling instants are the device times, wherever no clock skew was active.
    skewed = {f["device_id"] for f in data["faults"] if f["kind"] == "clock_skew"}
    for device_id, counts in data["devices"].items():
        if device_id in skewed:
            continue
        comp = next(iter(data["temperatures"][counts["asset_id"]].values()))
        sent = [samples[device_id][i]["ts"] for i in range(counts["samples"])]
        assert sent == comp["t"]

    # Custody: exactly the scans published, on the right device, at the true times.
    custody = [
        parse_event(m.payload) for m in msgs if m.kind == "events" and b'"custody"' in m.payload
    ]
    published = {
        (e.device_id, e.shipment_id, e.action, e.asset_id, e.compartment_id)
        for e in custody
        if isinstance(e, CustodyEvent)
    }
    truth_set = {
        (c["device_id"], c["shipment_id"], c["action"], c["asset_id"], c["compartment_id"])
        for c in data["custody"]
    }
    assert published == truth_set and len(truth_set) > 0

    # Door windows in the truth are the door events in the stream.
    doors = [parse_event(m.payload) for m in msgs if m.kind == "events" and b'"door"' in m.payload]
    opens = Counter(
        (e.asset_id, e.compartment_id) for e in doors if isinstance(e, DoorEvent) and e.open
    )
    truth_doors = Counter((d["asset_id"], d["compartment_id"]) for d in data["doors"])
    assert opens == truth_doors


def test_truth_file_round_trips_and_lists_fault_windows(tmp_path: Any, library_run: Runner) -> None:
    _, truth = library_run("demo")
    path = tmp_path / "truth.json"
    truth.write(path)
    again = GroundTruth.read(path)
    kinds = {f["kind"] for f in again.faults}
    assert {"door_open", "compressor_failure", "power_cut", "coverage_loss"} <= kinds
    for f in again.faults:
        assert f["start"] < f["end"] and f["device_id"].startswith(f["asset_id"])
    series = again.series("store-gz", "frozen")
    assert len(series["air_c"]) == len(series["t"]) == 1440


def test_fault_windows_show_in_true_temperatures(library_run: Runner) -> None:
    _, truth = library_run("door_left_open")
    fault = truth.faults[0]
    s = truth.series(fault["asset_id"], fault["compartment_id"])
    inside = [
        a for t, a in zip(s["t"], s["air_c"], strict=True) if fault["start"] <= t < fault["end"]
    ]
    before = [a for t, a in zip(s["t"], s["air_c"], strict=True) if t < fault["start"]][-30:]
    assert max(inside) > 12.0 > max(before)


def test_clock_skew_shifts_device_time_by_the_offset(library_run: Runner) -> None:
    msgs, truth = library_run("demo")
    fault = next(f for f in truth.faults if f["kind"] == "clock_skew")
    start = datetime.fromisoformat(fault["start"])
    end = datetime.fromisoformat(fault["end"])
    lags = set()
    for m in msgs:
        if m.device_id == fault["device_id"] and m.kind == "telemetry" and start <= m.time < end:
            ts = datetime.fromisoformat(json.loads(m.payload)["ts"])
            lags.add(round((ts - m.time).total_seconds()))
    assert lags == {round(fault["params"]["offset_s"])}


def test_duplicates_are_byte_identical_and_counted(library_run: Runner) -> None:
    msgs, truth = library_run("demo")
    fault = next(f for f in truth.faults if f["kind"] == "duplicate_publish")
    mine = [m.payload for m in msgs if m.device_id == fault["device_id"] and m.kind != "status"]
    repeats = sum(n - 1 for n in Counter(mine).values())
    assert repeats == truth.data["devices"][fault["device_id"]]["duplicate_messages"]
    assert 0.1 * len(mine) < repeats < 0.3 * len(mine)


def test_stuck_sensor_repeats_and_dead_sensor_is_silent(library_run: Runner) -> None:
    msgs, truth = library_run("stuck_sensor")
    stuck, dead = truth.faults
    values: dict[str, list[float | None]] = {"stuck": [], "dead": []}
    for m in msgs:
        if m.kind != "telemetry":
            continue
        data = json.loads(m.payload)
        for name, f in (("stuck", stuck), ("dead", dead)):
            if f["start"] <= data["ts"] < f["end"]:
                values[name].append(data["temps_c"].get(f["sensor_id"]))
    assert len(values["stuck"]) > 100 and len(set(values["stuck"])) == 1
    assert len(values["dead"]) > 30 and set(values["dead"]) == {None}
    # Meanwhile the compartment's true air temperature kept cycling.
    s = truth.series(stuck["asset_id"], stuck["compartment_id"] or "rear")
    inside = [
        a for t, a in zip(s["t"], s["air_c"], strict=True) if stuck["start"] <= t < stuck["end"]
    ]
    assert max(inside) - min(inside) > 1.0


def test_defrost_scenario_reports_defrost_mode_and_stays_frozen(library_run: Runner) -> None:
    msgs, truth = library_run("defrost")
    windows = [(d["start"], d["end"]) for d in truth.data["defrosts"]]
    assert len(windows) == 3
    modes: Counter[bool] = Counter()
    for m in msgs:
        if m.kind != "telemetry":
            continue
        data = json.loads(m.payload)
        inside = any(a <= data["ts"] < b for a, b in windows)
        modes[inside] += data["compartments"]["frozen"]["mode"] == "defrost"
        assert data["temps_c"]["frozen-air"] <= -18.5  # never reaches the frozen limit
    assert modes[True] >= 50 and modes[False] == 0
    s = truth.series("store-sh", "frozen")
    assert max(s["air_c"]) - min(s["air_c"]) > 3.0  # the characteristic rise is there


def test_fleet_yaml_round_trips_through_the_registry_loader(tmp_path: Any) -> None:
    sc = library_scenario("demo")
    path = tmp_path / "fleet.yaml"
    path.write_text(sc.fleet().to_yaml())
    fleet = load_fleet(path)
    assert fleet.device_ids == sc.fleet().device_ids
    assert 6 <= len(fleet.device_ids) <= 12
    truck = fleet.assets["truck-gs-01"]
    assert [c.profile for c in truck.compartments] == ["frozen", "pharma_2_8", "chilled"]
    assert fleet.sensor("truck-gs-01", "middle-prod") == ("middle", "product")


def test_messages_start_at_the_given_start() -> None:
    sc = library_scenario("defrost")
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = next(m for m in simulate(sc, start=start) if m.kind == "telemetry")
    assert start <= first.time < start + timedelta(seconds=sc.sample_interval_s)
