"""``ingest.forward``: the forwarded items' wire format and the forwarder's ordering,
InfluxDB gate, PUBACK gate and journal, without services (fake publish handles)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from coldchain.contract import Sample
from coldchain.fleet import Fleet
from coldchain.rules import partition_of, rules_topic
from ingest.forward import RulesForwarder, decode_forwarded, encode_forwarded
from ingest.rules_io import Accepted, CustodyChange, RecomputeRequest
from tests.unit.support import TRUCK, fleet

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _sample(minute: int) -> Sample:
    return Sample(ts=T0 + timedelta(minutes=minute), seq=minute, temps_c={"t-front-air": 3.5})


class _Handle:
    def __init__(self, acked: bool) -> None:
        self.acked = acked

    def is_published(self) -> bool:
        return self.acked

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None


def test_items_round_trip_through_the_wire_format() -> None:
    items = [
        Accepted("truck-1", [_sample(1), _sample(2)], 7, "dev-1", 1_790_000_000_123),
        CustodyChange("truck-1", "rear", 1_790_000_060_000, 8),
        RecomputeRequest("store-1", -1, 9),
        RecomputeRequest("store-1", 5, 10, 9_000),
    ]
    for item in items:
        back = decode_forwarded(encode_forwarded(item), item.row_id)
        assert back == item
    # The row id is the receiver's numbering, not the sender's spool row.
    assert decode_forwarded(encode_forwarded(items[0]), 42).row_id == 42
    with pytest.raises(ValueError, match="malformed forwarded rules item"):
        decode_forwarded(b'{"v": 1, "kind": "samples"}', 1)
    with pytest.raises(ValueError, match="malformed"):
        decode_forwarded(b'{"v": 1, "kind": "samples", "asset": "a", "extra": 1}', 1)


def _forwarder(
    written: list[int], acked: list[bool], sent: list[tuple[str, bytes]], pruned: list[int]
) -> RulesForwarder:
    def publish(topic: str, payload: bytes) -> _Handle:
        sent.append((topic, payload))
        return _Handle(acked[0])

    return RulesForwarder(
        fleet(),
        publish,
        partitions=4,
        written_through=lambda: written[0],
        journal_since=lambda row: {"dev-1": 1_000, "gw-2": 3_000, "gw-1": 2_000, "ghost": 5},
        # gw-1's rows do not say how far they reached (a spool from before to_ms)
        journal_newest_since=lambda row: {"dev-1": 1_500, "gw-2": 3_500, "gw-1": None, "ghost": 9},
        prune_journal=pruned.append,
        ack_timeout_s=0.05,
        prune_s=0.0,
    )


def test_forwarded_only_once_in_influxdb_and_acknowledged_then_journal_pruned() -> None:
    written, acked, sent, pruned = [0], [True], [], []
    fw = _forwarder(written, acked, sent, pruned)
    fw.submit_many([Accepted("truck-1", [_sample(1)], 5), Accepted("store-1", [_sample(1)], 6)])
    t = threading.Thread(target=fw.run)
    t.start()
    try:
        threading.Event().wait(0.2)
        assert sent == []  # not in InfluxDB yet
        written[0] = 5
        fw.wake()
        _wait(lambda: len(sent) == 1)
        assert sent[0][0] == rules_topic(partition_of("truck-1", 4))
        acked[0] = False  # the broker does not acknowledge: sent again, journal kept
        written[0] = 6
        fw.wake()
        _wait(lambda: len(sent) >= 3)
        assert 6 not in pruned and not fw.idle()
        acked[0] = True
        _wait(fw.idle)
        assert decode_forwarded(sent[-1][1], 0).asset_id == "store-1"
        assert sent[-1][0] == rules_topic(partition_of("store-1", 4))
        _wait(lambda: pruned[-1:] == [6])
    finally:
        fw.stop()
        t.join(5)
    assert fw.stats()["rules_forwarded"] == 2


def test_restart_asks_recomputes_per_asset_from_the_journal() -> None:
    written, acked, sent, pruned = [0], [True], [], []
    fw = _forwarder(written, acked, sent, pruned)
    fw.resume(backlog_row=9)
    t = threading.Thread(target=fw.run)
    t.start()
    try:
        threading.Event().wait(0.2)
        assert sent == []  # the spool backlog is not in InfluxDB yet
        written[0] = 9
        fw.wake()
        _wait(lambda: len(sent) == 2)
    finally:
        fw.stop()
        t.join(5)
    got = sorted((decode_forwarded(p, 0) for _, p in sent), key=lambda i: i.asset_id)
    # One request per asset, from its devices' oldest journaled time up to their newest (None:
    # one is unknown, so the worker reads everything stored); unknown devices ignored.
    assert got == [
        RecomputeRequest("store-1", 2_000, 0, None),
        RecomputeRequest("truck-1", 1_000, 0, 1_500),
    ]
    assert pruned[-1] == 9


def test_a_replaced_spool_asks_every_asset_from_its_checkpoint() -> None:
    fw = _forwarder([0], [True], [], [])
    fw.resume(backlog_row=0, spool_replaced=True)
    assert fw.stats()["rules_forward_recompute_requests"] == 2


def _wait(cond: object, timeout_s: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_a_recompute_request_holds_the_asset_under_the_partition_key(tmp_path: object) -> None:
    from pathlib import Path

    from coldchain.rules import RulesEngine, load_presets
    from coldchain.settings import InfluxSettings
    from ingest.evaluate import EvaluateStage
    from registry import open_registry, upgrade
    from timeseries.client import InfluxClient

    assert isinstance(tmp_path, Path)
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    f = Fleet([TRUCK])
    registry = open_registry(url)
    stage = EvaluateStage(
        RulesEngine(f, load_presets()),
        f,
        registry,
        InfluxClient(InfluxSettings(url="http://127.0.0.1:9")),  # never reached here
        annotate=lambda lines: None,
        written_through=lambda: 0,
        clock_ms=lambda: 1_790_000_000_000,
        checkpoint_key="rules-partition-3",
    )
    stage.submit(RecomputeRequest("truck-1", 1_000, 4))
    stage.stop()
    stage.run()  # feeds the request, saves the checkpoint last, returns
    pending = {k: (p.from_ms, p.hold) for k, p in stage._pending.items()}
    assert pending == {("truck-1", "front"): (1_000, True), ("truck-1", "rear"): (1_000, True)}
    saved = registry.load_checkpoint("rules-partition-3")
    assert saved is not None and saved["fed_through"] == 4
    assert sorted(map(tuple, saved["pending_recomputes"])) == [
        ("truck-1", "front", 1_000),
        ("truck-1", "rear", 1_000),
    ]
    assert registry.load_checkpoint("rules-engine") is None  # never the shared key


def test_a_worker_evaluates_in_receive_order_up_to_the_lowest_watermark(tmp_path: object) -> None:
    from pathlib import Path

    from coldchain.rules import RulesEngine, load_presets
    from coldchain.settings import InfluxSettings
    from ingest.rules_io import Heartbeat
    from ingest.rules_order import OrderedStage
    from registry import open_registry, upgrade
    from timeseries.client import InfluxClient

    assert isinstance(tmp_path, Path)
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    f = Fleet([TRUCK])
    stage = OrderedStage(
        RulesEngine(f, load_presets()),
        f,
        open_registry(url),
        InfluxClient(InfluxSettings(url="http://127.0.0.1:9")),  # never reached here
        annotate=lambda lines: None,
        written_through=lambda: 0,
        clock_ms=lambda: 10_000,
        reorder_s=3600.0,  # the fallback would hold everything: only watermarks release
        lag_ms=0,
    )

    def item(row: int, received_ms: int) -> Accepted:
        return Accepted("truck-1", [_sample(row)], row, "dev-1", received_ms)

    # Two ingest processes; B's items arrive before A's older ones.
    stage.submit(item(1, 300))  # via B
    stage.submit(item(2, 100))  # via A
    stage.heartbeat(Heartbeat("A", 250))
    stage.heartbeat(Heartbeat("B", 400))
    got = stage._take()
    assert [i.row_id for i in got if i is not None] == [2]  # up to A's mark only
    assert stage._silence_clock_ms() == 250  # silence judged at the watermark, not the clock
    assert stage._state()["fed_through"] == 0  # row 1 waits in the buffer: not acknowledged
    stage.submit(item(3, 200))  # A, received before its mark moved on
    stage.heartbeat(Heartbeat("A", 500))
    got = stage._take()
    assert [i.row_id for i in got if i is not None] == [3, 1]  # receive-time order
    assert stage._silence_clock_ms() == 400
    assert stage._state()["fed_through"] == 3


def test_a_prune_skipped_for_its_interval_happens_without_new_work(tmp_path: object) -> None:
    """A worker acknowledges forwarded items by pruning: a checkpoint saved too soon after the
    last prune must still be acknowledged once the interval passed, with no new item coming
    (else a burst's last items stay unacknowledged and the broker holds them)."""
    import threading
    import time
    from pathlib import Path

    from coldchain.rules import RulesEngine, load_presets
    from coldchain.settings import InfluxSettings
    from ingest.evaluate import EvaluateStage
    from registry import open_registry, upgrade
    from timeseries.client import InfluxClient

    assert isinstance(tmp_path, Path)
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    f = Fleet([TRUCK])
    pruned: list[int] = []
    stage = EvaluateStage(
        RulesEngine(f, load_presets()),
        f,
        open_registry(url),
        InfluxClient(InfluxSettings(url="http://127.0.0.1:9")),  # never reached here
        annotate=lambda lines: None,
        written_through=lambda: 0,
        clock_ms=lambda: 1_790_000_000_000,
        prune_journal=pruned.append,
        checkpoint_s=0.5,
        checkpoint_key="rules-partition-1",
    )
    stage._after_checkpoint({"fed_through": 5})
    stage._after_checkpoint({"fed_through": 9})  # within the interval: not yet
    assert pruned == [5]
    runner = threading.Thread(target=stage.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 30
    while 9 not in pruned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pruned[:2] == [5, 9]  # by the loop, before any stop forces it
    stage.stop()
    runner.join(30)
