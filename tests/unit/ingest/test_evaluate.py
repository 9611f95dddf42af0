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
from ingest.spool import Spool, SpooledMessage
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
        out_of_range_s=420.0,
        returned_ms=T0 + 540_000,
    )
    body = json.loads(alert_payload(Change("closed", e)))
    assert body["v"] == 1 and body["change"] == "closed"
    assert (body["out_of_range_s"], body["returned_ms"]) == (420.0, T0 + 540_000)
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
    assert "out_of_range_s=420," in line and f"returned_ms={T0 + 540_000}i" in line


# -- the data-gap clock per compartment, restart journal, rewrites, clock jumps ----------------

MIN = 60_000
TRUCK, DEVICE = "load-truck-0000", "load-dev-0000"


class _Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _live_stage(
    tmp_path: Path, clock: _Clock, spool: Spool | None = None, lines: list[str] | None = None
) -> EvaluateStage:
    fleet = make_fleet(2)
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return EvaluateStage(
        RulesEngine(fleet, load_presets()),
        fleet,
        open_registry(url),
        InfluxClient(InfluxSettings(url="http://127.0.0.1:9")),  # never reached here
        annotate=(lambda new: lines.extend(new)) if lines is not None else (lambda new: None),
        written_through=lambda: 0,  # nothing in InfluxDB yet: recomputes wait
        clock_ms=clock,
        journal_since=spool.journal_since if spool is not None else (lambda row: {}),
        prune_journal=spool.prune_journal if spool is not None else (lambda row: None),
    )


def _at(minute: float, seq: int | None = None, **temps: float) -> Sample:
    ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=T0 + round(minute * MIN))
    names = {k.replace("_", "-"): v for k, v in temps.items()}
    return Sample(ts=ts, seq=round(minute * 2) if seq is None else seq, temps_c=names)


def _item(sample: Sample, row: int, received: int | None = None) -> Accepted:
    return Accepted(TRUCK, [sample], row, DEVICE, ts_ms(sample) if received is None else received)


def test_a_compartment_without_recordings_gets_its_gap_on_the_ingest_clock(
    tmp_path: Path,
) -> None:
    wall0 = 9_000_000_000_000  # the ingest clock, far from device time
    clock = _Clock(wall0)
    stage = _live_stage(tmp_path, clock)
    opened = []
    for half in range(0, 41):  # every 30 s for 20 min: c2 probes only after minute 2
        minute = half / 2
        temps = {"c1_air": -20.0, "c1_prod": -19.0} if minute <= 2 else {}
        clock.now = wall0 + half * 30_000
        sample = _at(minute, c2_air=3.0, c2_prod=3.5, **temps)
        # Received as sent (a right device clock); detection runs on the ingest clock.
        assert stage._feed(_item(sample, half + 1)) == []
        opened += stage._tick()
    [gap] = [c for c in opened if c.kind == "opened"]
    e = gap.excursion
    assert (e.compartment_id, e.rule, e.start_ms) == ("c1", "gap", T0 + 12 * MIN)
    assert e.detected_ms == wall0 + 25 * 30_000  # ingest clock at device minute 12.5
    assert not [c for c in opened if c.excursion.compartment_id == "c2"]


def test_restart_recomputes_and_holds_every_asset_acknowledged_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    clock = _Clock(T0)
    spool = Spool(tmp_path / "spool.sqlite3", synchronous="NORMAL", rules_journal=True)
    try:
        # 21 samples of another asset, fed and checkpointed.
        first = _live_stage(tmp_path, clock, spool)
        other = "load-truck-0001"
        msgs = [SpooledMessage(T0, "load-dev-0001", ["x v=1i 1"], T0 + m * MIN) for m in range(21)]
        assert spool.append(msgs, []) == 21
        first.submit_many(
            Accepted(other, [_at(m, c1_air=-20.0)], m + 1, "load-dev-0001") for m in range(21)
        )
        for item in first._take():
            assert item is not None
            first._feed(item)
        first._save_checkpoint(prune=True)
        saved = first._registry.load_checkpoint("rules-engine")
        assert saved is not None and saved["fed_through"] == 21
        assert spool.journal_since(0) == {}  # pruned through the checkpoint
        # The truck's minutes 0..39 are acknowledged (rows 22..61), never fed: SIGKILL.
        truck = [SpooledMessage(T0, DEVICE, ["x v=1i 1"], T0 + m * MIN) for m in range(40)]
        assert spool.append(truck, []) == 61
        first._registry.close()

        second = _live_stage(tmp_path, clock, spool)
        second.resume(backlog_row=61)
        pending = {k: (p.from_ms, p.need_row, p.hold) for k, p in second._pending.items()}
        assert pending == {(TRUCK, "c1"): (T0, 61, True), (TRUCK, "c2"): (T0, 61, True)}
        # New samples of the held truck join the recompute: nothing streamed, no data gap.
        clock.now = T0 + 60 * MIN
        assert second._feed(_item(_at(40, c1_air=-20.0), 62)) == []
        assert not [c for c in second._tick() if c.excursion.asset_id == TRUCK]
        assert second._pending[(TRUCK, "c1")].need_row == 62
        assert second.stats()["rules_held"] == 1 and second.stats()["rules_assets_held"] == 1
        # The other asset is not held and streams on.
        assert other not in second._held
    finally:
        spool.close()


def test_conflicting_rewrites_are_recorded_and_exact_redeliveries_dropped(
    tmp_path: Path,
) -> None:
    clock = _Clock(T0)
    stage = _live_stage(tmp_path, clock)
    stage._feed(_item(_at(0, seq=7, c1_air=-19.0), 1))
    stage._feed(_item(_at(1, seq=8, c1_air=-19.1), 2))
    assert stage._feed(_item(_at(0, seq=7, c1_air=-19.0), 3)) == []  # exact: dropped
    assert stage._pending == {}  # ... without a recompute
    stage._feed(_item(_at(0, seq=3, c1_air=25.0), 4))  # history rewritten
    stage._apply([])
    [rw] = stage._registry.find_rewrites(asset_id=TRUCK)
    assert (rw.device_id, rw.ts_ms, rw.old_seq, rw.new_seq) == (DEVICE, T0, 7, 3)
    assert rw.changes == {"temp/c1-air": (-19.0, 25.0)}
    stats = stage.stats()
    assert (stats["rules_rewrites"], stats["rules_redeliveries"]) == (1, 1)
    assert (TRUCK, "c1") in stage._pending  # the rewrite is evaluated as late data


def test_a_clock_correction_is_a_jump_written_as_a_clock_point(tmp_path: Path) -> None:
    clock = _Clock(T0)
    lines: list[str] = []
    stage = _live_stage(tmp_path, clock, lines=lines)
    changes = []
    for r in range(0, 30):  # received every minute; the clock 10 min slow from 5 to 24
        device_min = r - 10 if 5 <= r < 25 else r
        clock.now = T0 + r * MIN
        sample = _at(device_min, seq=r, c1_air=-20.0, c1_prod=-19.0, c2_air=3.0, c2_prod=3.5)
        changes += stage._feed(_item(sample, r + 1, received=clock.now))
        changes += stage._tick()
    kinds = [(c.excursion.kind, c.kind) for c in changes]
    assert kinds == [("clock_skew", "opened"), ("clock_skew", "closed")]
    assert stage.stats()["rules_clock_jumps"] == 1
    [line] = [ln for ln in lines if ln.startswith("clock,")]
    assert (
        line == f"clock,asset={TRUCK},device={DEVICE} jump_ms=600000i,offset_ms=0i {T0 + 25 * MIN}"
    )


def test_a_checkpoint_from_before_the_journal_recomputes_every_compartment_it_holds(
    tmp_path: Path,
) -> None:
    clock = _Clock(T0)
    first = _live_stage(tmp_path, clock)
    first._feed(_item(_at(3, c1_air=-20.0, c1_prod=-19.0), 1))
    state = first._state()
    del state["fed_through"]  # as written before the journal existed
    first._registry.save_checkpoint("rules-engine", state)
    first._registry.close()
    second = _live_stage(tmp_path, clock)
    second.resume(backlog_row=1)
    assert {k: p.from_ms for k, p in second._pending.items()} == {(TRUCK, "c1"): T0 + 3 * MIN}
    assert second._held == {TRUCK}


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


def test_a_reloaded_fleet_applies_in_order_with_the_samples(tmp_path: Path) -> None:
    import threading

    from coldchain.fleet import Fleet

    stage = _stage(tmp_path, max_queue=100)
    thread = threading.Thread(target=stage.run)
    thread.start()
    try:
        # Acknowledged under the old fleet: evaluated under it, though the update follows.
        stage.submit(Accepted("load-truck-0001", [_sample(0)], row_id=1))
        stage.update_fleet(Fleet([make_fleet(2).assets["load-truck-0000"]]))
        stage.submit(Accepted("load-truck-0000", [_sample(1)], row_id=2))
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while not stage.idle() and datetime.now(UTC) < deadline:
            threading.Event().wait(0.05)
        assert stage.idle()
    finally:
        stage.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert stage.stats()["rules_errors"] == 0
    assert stage.stats()["rules_evaluated"] == 3  # two samples and the fleet update
    # The removed asset's gap clock and state are gone: no data gap will ever open for it.
    assert set(stage._heard) == {"load-truck-0000"}
    saved = stage.engine.checkpoint()["compartments"]
    assert {c["asset"] for c in saved} == {"load-truck-0000"}
    assert stage._tick() == []


def test_a_compartment_removed_while_stopped_has_its_open_excursions_closed_at_start(
    tmp_path: Path,
) -> None:
    from coldchain.fleet import Fleet

    clock = _Clock(9_000_000_000_000)
    stage = _live_stage(tmp_path, clock)
    # load-truck-0000 c1 (frozen) at -5 degC: above the -12 degC hard limit at once.
    changes = stage._feed(_item(_at(0, c1_air=-5.0, c1_prod=-5.0), 1))
    changes += stage._feed(_item(_at(1, c1_air=-5.0, c1_prod=-5.0), 2))
    stage._apply(changes)
    stage._save_checkpoint()
    registry = stage._registry
    opened = registry.find_excursions(asset_id=TRUCK, compartment_id="c1", status="open")
    assert opened

    # Restarted with a fleet file that no longer has the truck's c1 (c2 stays).
    asset = make_fleet(2).assets[TRUCK]
    fleet = Fleet([asset.model_copy(update={"compartments": asset.compartments[1:]})])
    again = EvaluateStage(
        RulesEngine(fleet, load_presets()),
        fleet,
        registry,
        InfluxClient(InfluxSettings(url="http://127.0.0.1:9")),
        annotate=lambda lines: None,
        written_through=lambda: 0,
        clock_ms=clock,
    )
    again.resume(0)
    again._apply([])

    assert registry.find_excursions(asset_id=TRUCK, compartment_id="c1", status="open") == []
    closed = registry.find_excursions(asset_id=TRUCK, compartment_id="c1", status="closed")
    assert {r.excursion.id for r in closed} == {r.excursion.id for r in opened}
    for r in closed:
        assert r.excursion.detail.endswith("compartment removed from the fleet")
        assert r.excursion.end_ms == T0 + 1 * MIN  # the last evaluated device time
