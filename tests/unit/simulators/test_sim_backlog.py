"""On-device buffering through a coverage gap and the late backlog upload."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from coldchain.contract import parse_message
from coldchain.contract.telemetry import MAX_BATCH_SAMPLES
from simulators import GroundTruth, SimMessage, Simulation, parse_scenario

Runner = Callable[[str], tuple[list[SimMessage], GroundTruth]]
START = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_backlog_delivers_every_buffered_sample_with_its_device_time(library_run: Runner) -> None:
    msgs, truth = library_run("coverage_loss_backlog")
    gap = next(f for f in truth.faults if f["kind"] == "coverage_loss")
    device = gap["device_id"]
    start, end = _at(gap["start"]), _at(gap["end"])
    restore = end + timedelta(seconds=gap["params"]["upload_delay_s"])
    mine = [m for m in msgs if m.device_id == device and m.kind == "telemetry"]

    # Nothing reaches the broker while the device has no coverage.
    assert not [m for m in mine if start <= m.time < restore]
    batches = [m for m in mine if b'"samples"' in m.payload]
    assert batches and all(m.time == restore for m in batches)

    delivered: list[dict[str, Any]] = []
    for m in batches:
        samples = json.loads(m.payload)["samples"]
        assert len(samples) <= gap["params"]["batch_max"]
        parse_message(m.payload)
        delivered.extend(samples)
    truth_times = truth.series("truck-nt-01", "main")["t"]
    taken_offline = [t for t in truth_times if start <= _at(t) < restore]
    assert [s["ts"] for s in delivered] == taken_offline
    assert len(batches) == math.ceil(len(taken_offline) / gap["params"]["batch_max"])
    seqs = [s["seq"] for s in delivered]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    # The excursion that happened in the gap is in the backlog, and only there.
    assert max(s["temps_c"]["main-air"] for s in delivered) > 8.0
    # Events scanned offline (the door) come up late too, with their original times.
    late_events = [
        json.loads(m.payload)
        for m in msgs
        if m.device_id == device and m.kind == "events" and m.time == restore
    ]
    assert late_events and all(start <= _at(e["ts"]) < restore for e in late_events)


def test_big_backlogs_are_split_at_the_contract_limit() -> None:
    sc = parse_scenario(
        {
            "name": "long_gap",
            "duration": "16h",
            "sample_interval": "10s",
            "stores": [
                {
                    "id": "store-x",
                    "city": "shanghai",
                    "zones": [{"id": "z", "profile": "chilled", "door_traffic_per_h": 0}],
                }
            ],
            "faults": [
                {"kind": "coverage_loss", "asset": "store-x", "start": "30m", "duration": "15h"}
            ],
        }
    )
    msgs, truth = Simulation(sc, start=START).run()
    batches = [m for m in msgs if m.kind == "telemetry" and b'"samples"' in m.payload]
    sizes = [len(parse_message(m.payload).samples_list()) for m in batches]
    counts = truth.data["devices"]["store-x-gw"]
    assert sizes[0] == MAX_BATCH_SAMPLES and len(sizes) == 2
    assert sum(sizes) == counts["backlog_samples"] == 15 * 360 + 2
    assert counts["batch_messages"] == 2


def test_a_gap_that_outlasts_the_run_uploads_at_the_end() -> None:
    sc = parse_scenario(
        {
            "name": "never_back",
            "duration": "2h",
            "stores": [
                {
                    "id": "store-y",
                    "city": "guangzhou",
                    "zones": [{"id": "z", "profile": "frozen", "door_traffic_per_h": 0}],
                }
            ],
            "faults": [
                {"kind": "coverage_loss", "asset": "store-y", "start": "1h", "duration": "5h"}
            ],
        }
    )
    msgs, truth = Simulation(sc, start=START).run()
    last = [m for m in msgs if m.kind == "telemetry"][-1]
    assert last.time == START + timedelta(hours=2)
    assert len(json.loads(last.payload)["samples"]) == 60
    assert truth.data["devices"]["store-y-gw"]["samples"] == 120
