"""The rules child's hand-off without processes: what crosses the pipe and what the child makes
of it (ingest/rules_child.py, ingest/rules_child_main.py; the processes themselves are in
tests/integration/test_rules_subprocess.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from coldchain.contract import Limits, PointEncoder
from coldchain.fleet import parse_fleet
from coldchain.settings import Settings
from ingest.consumer import Delivery
from ingest.pipeline import _work, process_delivery
from ingest.rules_child import _record
from ingest.rules_child_main import _Journal, _Reader, _Sender
from ingest.rules_inbox import RulesInbox
from ingest.rules_io import Accepted, CustodyChange, FleetUpdate, RecomputeRequest
from simulators.loadgen import SeededLoad, make_fleet


class _Recorder:
    """The calls an ``EvaluateStage`` gets from the child's reader, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def submit_many(self, items: list[Any]) -> None:
        self.calls.append(("submit", list(items)))

    def add_spills(self, spilled: dict[Any, Any]) -> None:
        self.calls.append(("spills", spilled))

    def update_fleet(self, fleet: Any) -> None:
        self.calls.append(("fleet", sorted(fleet.assets)))

    def stop(self, *, catch_up: bool) -> None:
        self.calls.append(("stop", catch_up))


class _Pipe:
    def send(self, msg: object) -> None:  # the journal is never asked here
        raise AssertionError(msg)

    def close(self) -> None:
        pass


def _accepted(n: int) -> tuple[list[Accepted], Any]:
    """``n`` messages through the pipeline's own processing, as it submits them."""
    fleet = make_fleet(3)
    now = int(time.time() * 1000)
    encoder, limits = PointEncoder(fleet), Limits(300, 30 * 86400)
    out = []
    for i, m in enumerate(SeededLoad(fleet, seed=5).messages(n // 3 + 1, now - 3_600_000)):
        d = Delivery(m.topic, m.payload, 1, i, now, 0)
        item = _work(process_delivery(d, fleet, encoder, limits, 1 << 20), 100 + i, d)
        assert isinstance(item, Accepted)
        out.append(item)
    return out[:n], fleet


def _reader(fleet: Any, stage: _Recorder) -> _Reader:
    return _Reader(_Pipe(), stage, fleet, Settings(), _Journal(_Sender(_Pipe())))  # type: ignore[arg-type]


def test_a_message_with_a_unit_rejected_crosses_as_its_kept_samples() -> None:
    fleet = make_fleet(3)
    now = int(time.time() * 1000)
    encoder, limits = PointEncoder(fleet), Limits(300, 30 * 86400)
    m = next(iter(SeededLoad(fleet, seed=5).messages(1, now - 60_000)))
    body = json.loads(m.payload)
    body["temps_c"]["zz-air"] = 4.0  # a probe the asset does not have: that value is dropped
    d = Delivery(m.topic, json.dumps(body).encode(), 1, 1, now, 0)
    processed = process_delivery(d, fleet, encoder, limits, 1 << 20)
    assert [x.reason for x in processed.dead] == ["unknown_sensor"]
    item = _work(processed, 100, d)
    assert isinstance(item, Accepted) and item.payload == b""
    kind, sent = _record(item)
    assert kind == "i" and list(sent.samples) == list(processed.samples)
    assert "zz-air" not in sent.samples[0].temps_c
    clean = Delivery(m.topic, m.payload, 1, 2, now, 0)
    whole = _work(process_delivery(clean, fleet, encoder, limits, 1 << 20), 101, clean)
    assert isinstance(whole, Accepted) and whole.payload == m.payload  # accepted whole: raw


def test_an_accepted_message_crosses_raw_and_is_validated_again_to_the_same_samples() -> None:
    items, fleet = _accepted(6)
    records = [_record(i) for i in items]
    assert [r[0] for r in records] == ["a"] * 6
    assert all(r[5] == i.payload and r[1] == i.row_id for r, i in zip(records, items, strict=True))
    stage = _Recorder()
    reader = _reader(fleet, stage)
    assert reader._handle(records) is False
    [(call, got)] = stage.calls
    assert call == "submit" and reader.received == 6 and reader.mismatched == 0
    for mine, theirs in zip(got, items, strict=True):
        assert (mine.asset_id, mine.row_id, mine.device_id) == (
            theirs.asset_id,
            theirs.row_id,
            theirs.device_id,
        )
        assert mine.received_ms == theirs.received_ms
        assert list(mine.samples) == list(theirs.samples)


def test_other_items_cross_whole_and_a_fleet_as_yaml() -> None:
    items, fleet = _accepted(1)
    custody = CustodyChange(items[0].asset_id, "c1", 5, row_id=7)
    assert _record(custody) == ("i", custody)
    bare = items[0]._replace(payload=b"")  # not from the pipeline: the samples themselves
    kind, item = _record(bare)
    assert kind == "i" and list(item.samples) == list(bare.samples)
    kind, text = _record(FleetUpdate(fleet, 9))
    assert kind == "f" and sorted(parse_fleet(text).assets) == sorted(fleet.assets)


def test_records_reach_the_stage_in_order_with_spills_ahead_of_later_items() -> None:
    items, fleet = _accepted(3)
    spill = {(items[1].asset_id, "c1"): (1, 101)}
    smaller = make_fleet(2)
    records = [
        _record(items[0]),
        ("s", spill),
        _record(items[2]),
        ("f", smaller.to_yaml()),
        ("stop", False),
    ]
    stage = _Recorder()
    reader = _reader(fleet, stage)
    assert reader._handle(records) is True
    assert [c[0] for c in stage.calls] == ["submit", "spills", "submit", "fleet", "stop"]
    assert stage.calls[1][1] == spill
    assert stage.calls[3][1] == sorted(smaller.assets)
    assert stage.calls[4] == ("stop", False)
    assert reader.received == 3  # two messages and the fleet, as ingest counts what it sent


def test_a_message_that_no_longer_validates_becomes_a_recompute_of_its_asset() -> None:
    items, _ = _accepted(3)
    other = make_fleet(3)
    # The same asset ids, but the message's device is someone else's in this fleet: recompute.
    stray = items[0]._replace(device_id="not-a-device")
    stage = _Recorder()
    reader = _reader(other, stage)
    reader._handle([_record(stray)])
    [(_, [item])] = stage.calls
    assert isinstance(item, RecomputeRequest)
    assert (item.asset_id, item.from_ms, item.row_id) == (stray.asset_id, -1, stray.row_id)
    # An asset the child's fleet does not have: nothing to evaluate, still counted.
    gone = items[1]._replace(asset_id="no-such-asset")
    stage.calls.clear()
    reader._handle([_record(gone)])
    assert stage.calls == [] and reader.received == 2 and reader.mismatched == 2
    # A payload that is not one accepted whole (it never is: ingest sends those as samples).
    bad = items[2]._replace(payload=b'{"v": 1, "device_id": 7}')
    stage.calls.clear()
    reader._handle([_record(bad)])
    [(_, [item])] = stage.calls
    assert isinstance(item, RecomputeRequest) and reader.mismatched == 3


def test_take_with_spills_hands_over_every_spill_made_before_the_items_it_takes() -> None:
    items, fleet = _accepted(3)
    inbox = RulesInbox(fleet, max_queue=1)
    inbox.submit_many(items)  # the first fits; the other two are spilled
    taken, spilled = inbox.take_with_spills(10)
    assert taken == [items[0]]
    assert {(key[0], row) for key, (_, row) in spilled.items()} == {
        (items[1].asset_id, items[1].row_id),
        (items[2].asset_id, items[2].row_id),
    }
    assert inbox.take_spilled() == {}  # handed over once
    inbox.add_spills({("load-truck-0000", "c1"): (5, 200)})
    inbox.add_spills({("load-truck-0000", "c1"): (3, 150)})
    assert inbox.take_spilled() == {("load-truck-0000", "c1"): (3, 200)}
