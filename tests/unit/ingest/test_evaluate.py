"""``ingest.evaluate.EvaluateStage`` without services: intake, spilling, alert payloads.

(Its end-to-end behaviour with a real broker and InfluxDB is in tests/e2e/test_rules_live.py.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from coldchain.contract import Sample, ts_ms
from coldchain.rules import Change, Excursion, RulesEngine, load_presets
from coldchain.settings import InfluxSettings
from ingest.evaluate import Accepted, CustodyChange, EvaluateStage, alert_payload, excursion_line
from registry import open_registry, upgrade
from simulators.loadgen import make_fleet
from timeseries.client import InfluxClient

T0 = 1_790_000_000_000


def _stage(tmp_path: Path, max_queue: int) -> EvaluateStage:
    fleet = make_fleet(2)
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return EvaluateStage(
        RulesEngine(fleet, load_presets()),
        fleet,
        open_registry(url),
        InfluxClient(InfluxSettings(url="http://127.0.0.1:9")),  # never reached here
        publish=lambda topic, payload: None,
        annotate=lambda lines: None,
        written_through=lambda: 0,
        clock_ms=lambda: T0,
        max_queue=max_queue,
    )


def _sample(offset_min: int) -> Sample:
    ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=T0 + offset_min * 60_000)
    return Sample(ts=ts, seq=offset_min, temps_c={"c1-air": -20.0})


def test_a_full_queue_never_blocks_and_spills_to_a_recompute(tmp_path: Path) -> None:
    stage = _stage(tmp_path, max_queue=1)
    stage.submit(Accepted("load-truck-0000", [_sample(5)], row_id=3))
    # The queue is full: these return at once and are remembered for a recompute.
    stage.submit(Accepted("load-truck-0001", [_sample(9), _sample(7)], row_id=4))
    stage.submit(Accepted("load-truck-0001", [_sample(8)], row_id=6))
    stage.submit(CustodyChange("load-truck-0000", "c2", T0 + 60_000, row_id=7))
    assert stage.stats()["rules_spilled"] == 3
    assert not stage.idle()
    stage._take_spilled()
    pending = {k: (p.from_ms, p.need_row) for k, p in stage._pending.items()}
    assert pending == {
        # every compartment of the spilled asset, from its oldest sample, after its last row
        ("load-truck-0001", "c1"): (T0 + 7 * 60_000, 6),
        ("load-truck-0001", "c2"): (T0 + 7 * 60_000, 6),
        ("load-truck-0000", "c2"): (T0 + 60_000, 7),
    }
    assert ts_ms(_sample(7)) == T0 + 7 * 60_000


def test_alert_and_annotation_carry_the_excursion(tmp_path: Path) -> None:
    e = Excursion(
        "truck-1",
        "c1",
        "range",
        "range",
        "critical",
        "closed",
        T0,
        T0 + 600_000,
        T0 + 1,
        detected_late=True,
        peak_c=9.5,
        degree_minutes=12.5,
        detail='door "left" open',
    )
    body = json.loads(alert_payload(Change("closed", e)))
    assert body["v"] == 1 and body["change"] == "closed"
    assert (body["id"], body["asset_id"], body["detected_late"], body["end_ms"]) == (
        e.id,
        "truck-1",
        True,
        T0 + 600_000,
    )
    line = excursion_line(Change("closed", e))
    assert line.startswith("excursion,asset=truck-1,compartment=c1,rule=range ")
    assert line.endswith(f" {T0}")
    assert 'detail="door \\"left\\" open"' in line and "duration_s=600" in line


def test_a_quick_stop_turns_the_queue_into_saved_recomputes(tmp_path: Path) -> None:
    stage = _stage(tmp_path, max_queue=100)
    stage.submit(Accepted("load-truck-0001", [_sample(9), _sample(7)], row_id=4))
    stage.submit(CustodyChange("load-truck-0000", "c2", T0 + 60_000, row_id=5))
    # The rules lag: nothing was evaluated yet when the service stops.
    stage.stop(catch_up=False)
    stage.run()  # returns after one round, without evaluating what was queued
    saved = stage._registry.load_checkpoint("rules-engine")
    assert saved is not None
    assert sorted(map(tuple, saved["pending_recomputes"])) == [
        ("load-truck-0000", "c2", T0 + 60_000),
        ("load-truck-0001", "c1", T0 + 7 * 60_000),
        ("load-truck-0001", "c2", T0 + 7 * 60_000),
    ]
    assert stage.stats()["rules_changes"] == 0
