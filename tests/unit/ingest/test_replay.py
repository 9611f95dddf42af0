"""Queuing dead letters for replay (ingest.replay through the Spool): only the device's
unknown_device letters in the window, each at most once, refused ones again, pruned ones
forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.spool import DeadLetter, Spool, SpooledMessage

TOPIC = "coldchain/v1/devices/{}/telemetry"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool.sqlite3", synchronous="NORMAL")
    yield s
    s.close()


def unknown(device: str, received_ms: int, payload: bytes = b"{}") -> DeadLetter:
    return DeadLetter(
        received_ms,
        TOPIC.format(device),
        device,
        "unknown_device",
        "device_id",
        repr(device),
        "device is not registered",
        payload,
    )


def test_only_the_devices_unknown_device_letters_since_the_time_are_queued(spool: Spool) -> None:
    other = DeadLetter(3_000, TOPIC.format("d1"), "d1", "out_of_range", "f", "1", "x", b"{}")
    spool.append(
        [],
        [unknown("d1", 1_000, b"a"), unknown("d1", 2_000, b"b"), other, unknown("d2", 2_500)],
    )
    req = spool.request_replay("d1", since_ms=1_500)
    assert (req.letters, req.queued, req.replayed, req.waiting) == (1, 1, 0, 0)
    [item] = spool.queued_replays(10)
    assert (item.device_id, item.received_ms, item.topic, item.payload) == (
        "d1",
        2_000,
        TOPIC.format("d1"),
        b"b",
    )


def test_a_replayed_letter_is_never_queued_again(spool: Spool) -> None:
    spool.append([], [unknown("d1", 1_000, b"a"), unknown("d1", 2_000, b"b")])
    first = spool.request_replay("d1")
    assert first.queued == 2
    again = spool.request_replay("d1")  # asked twice before ingest took them
    assert (again.queued, again.waiting) == (0, 2)

    items = spool.queued_replays(10)
    # What the pipeline does: spool what they became and mark them, in one transaction.
    spool.append(
        [SpooledMessage(1_000, "d1", ["m v=1 1"])],
        [],
        [(i.letter_id, "replayed", "stored") for i in items],
    )
    assert spool.queued_replays(10) == []
    third = spool.request_replay("d1")
    assert (third.letters, third.queued, third.replayed, third.waiting) == (2, 0, 2, 0)
    rows = spool.find_dead_letters(device_id="d1")
    assert [(r["replay"], r["replay_outcome"]) for r in rows] == [("replayed", "stored")] * 2


def test_a_refused_letter_is_queued_again_by_the_next_request(spool: Spool) -> None:
    spool.append([], [unknown("d1", 1_000)])
    spool.request_replay("d1")
    [item] = spool.queued_replays(10)
    spool.refuse_replays([(item.letter_id, "device not in the running ingest's fleet")])
    assert spool.queued_replays(10) == []
    assert spool.replay_status([item.letter_id]) == {
        item.letter_id: ("refused", "device not in the running ingest's fleet")
    }
    assert spool.request_replay("d1").queued == 1
    assert [i.letter_id for i in spool.queued_replays(10)] == [item.letter_id]


def test_pruning_a_letter_forgets_its_replay(spool: Spool) -> None:
    spool.append([], [unknown("d1", 1_000), unknown("d1", 9_000, b"new")])
    ids = spool.request_replay("d1").ids
    assert spool.prune_dead_letters(before_ms=5_000) == 1
    assert [i.received_ms for i in spool.queued_replays(10)] == [9_000]
    assert set(spool.replay_status(ids)) == {ids[1]}


def test_listing_filters_newest_first(spool: Spool) -> None:
    spool.append([], [unknown("d1", 1_000), unknown("d2", 2_000), unknown("d1", 3_000)])
    rows = spool.find_dead_letters(device_id="d1", reason="unknown_device")
    assert [r["received_ms"] for r in rows] == [3_000, 1_000]
    assert [r["received_ms"] for r in spool.find_dead_letters(since_ms=1_500)] == [3_000, 2_000]
    assert spool.find_dead_letters(reason="out_of_range") == []


def test_the_outcome_says_what_was_stored_and_what_was_dead_lettered_again() -> None:
    from ingest.replay import outcome

    assert outcome(True, []) == "stored"
    assert outcome(True, ["unknown_sensor", "unknown_sensor", "stale_timestamp"]) == (
        "stored; dead-lettered again: stale_timestamp, unknown_sensor"
    )
    assert (
        outcome(False, ["stale_timestamp"])
        == "nothing stored; dead-lettered again: stale_timestamp"
    )
