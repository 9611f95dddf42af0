"""Conflicting rewrites: same device, series and time, other value or seq (docs/rules.md 13)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from coldchain.contract import CompartmentState, Position, Sample
from coldchain.rules import Rewrite, RewriteWatch

from ._helpers import at

NOW = 5_000_000_000_000


def _s(minute: int, seq: int, **temps: float) -> Sample:
    return Sample(
        ts=datetime.fromtimestamp(at(minute) / 1000, tz=UTC),
        seq=seq,
        temps_c={k.replace("_", "-"): v for k, v in temps.items()},
    )


def test_the_worked_example_records_both_values_and_keeps_the_sample() -> None:
    watch = RewriteWatch()
    first = _s(0, 700, rear_air=-19.0, rear_prod=-18.5)
    kept, found = watch.check("truck-gs-01-tcu", "truck-gs-01", [first], NOW)
    assert kept == [first] and found == []
    again = _s(0, 710, rear_air=25.0, rear_prod=-18.5)
    kept, [rw] = watch.check("truck-gs-01-tcu", "truck-gs-01", [again], NOW + 1)
    assert kept == [again]  # evaluated as late data: InfluxDB now holds the new value
    assert isinstance(rw, Rewrite)
    assert (rw.device_id, rw.asset_id, rw.ts_ms, rw.old_seq, rw.new_seq) == (
        "truck-gs-01-tcu",
        "truck-gs-01",
        at(0),
        700,
        710,
    )
    assert rw.changes == {"temp/rear-air": (-19.0, 25.0)}
    assert rw.detected_ms == NOW + 1 and rw.kept == "new"
    # Idempotent by content: the same conflict again has the same id.
    twin = RewriteWatch()
    twin.check("truck-gs-01-tcu", "truck-gs-01", [first], NOW)
    assert twin.check("truck-gs-01-tcu", "truck-gs-01", [again], NOW + 5)[1][0].id == rw.id


def test_exact_redeliveries_are_dropped_and_split_instants_are_not_conflicts() -> None:
    watch = RewriteWatch()
    a = _s(0, 1, c1_air=-18.5)
    b = _s(1, 2, c1_air=-18.4)
    watch.check("d", "a", [a, b], NOW)
    kept, found = watch.check("d", "a", [a, _s(2, 3, c1_air=-18.3), b], NOW)
    assert [s.seq for s in kept] == [3] and found == []
    # The same instant split over two messages (another probe): not a conflict, kept.
    part = _s(0, 1, c2_air=3.0)
    assert watch.check("d", "a", [part], NOW) == ([part], [])
    # ... and afterwards either half again is an exact redelivery.
    assert watch.check("d", "a", [part, a], NOW) == ([], [])


def test_a_different_seq_alone_is_a_conflict_and_so_is_a_changed_door_or_position() -> None:
    watch = RewriteWatch()
    watch.check("d", "a", [_s(0, 7, c1_air=-19.0)], NOW)
    _, [rw] = watch.check("d", "a", [_s(0, 3, c1_air=-19.0)], NOW)
    assert (rw.old_seq, rw.new_seq, rw.changes) == (7, 3, {})
    ts = datetime.fromtimestamp(at(5) / 1000, tz=UTC)
    one = Sample(
        ts=ts,
        seq=9,
        compartments={"c1": CompartmentState(door_open=False, setpoint_c=-20.0)},
        position=Position(lat=31.0, lon=121.0),
    )
    two = Sample(
        ts=ts,
        seq=9,
        compartments={"c1": CompartmentState(door_open=True, setpoint_c=-20.0)},
        position=Position(lat=31.5, lon=121.0),
    )
    watch.check("d", "a", [one], NOW)
    _, [rw] = watch.check("d", "a", [two], NOW)
    assert rw.changes == {"door/c1": (False, True), "position/lat": (31.0, 31.5)}


def test_a_conflict_inside_one_batch_is_seen_and_memory_is_bounded() -> None:
    watch = RewriteWatch(max_samples=4)
    kept, [rw] = watch.check("d", "a", [_s(0, 1, x=1.0), _s(0, 2, x=2.0)], NOW)
    assert len(kept) == 2 and rw.changes == {"temp/x": (1.0, 2.0)}
    watch.check("d", "a", [_s(m, m + 10, x=1.0) for m in range(1, 9)], NOW)
    # Minute 0 is older than the last 4 samples: no longer compared.
    assert watch.check("d", "a", [_s(0, 99, x=5.0)], NOW)[1] == []
    assert watch.check("d", "a", [_s(8, 99, x=5.0)], NOW)[1] != []


def test_the_window_adds_no_objects_for_the_collector_to_walk() -> None:
    # 128 samples a device stay in memory; a tracked object per sample made every full
    # collection walk 64k of them for 500 devices, a stop-the-world pause in ingest.
    watch = RewriteWatch(max_samples=500)
    samples = [_s(m, m, rear_air=-18.0 - m / 100, rear_prod=-18.5) for m in range(500)]
    rewrite = _s(3, 99, rear_air=30.0, rear_prod=-18.5)
    gc.collect()
    before = len(gc.get_objects())
    watch.check("d", "a", samples, NOW)
    kept, found = watch.check("d", "a", [rewrite], NOW)  # a merged record, too
    assert kept == [rewrite] and len(found) == 1
    del kept, found, rewrite
    gc.collect()
    assert len(gc.get_objects()) - before < 50  # the device's window itself, not 500 records
    # And the record still tells a redelivery of the newest seq from a conflict.
    assert watch.check("d", "a", [_s(3, 99, rear_air=30.0, rear_prod=-18.5)], NOW)[0] == []
