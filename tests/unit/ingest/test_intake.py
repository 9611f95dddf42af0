"""``ingest.intake.Intake``: the pipeline's bounded delivery queue for one producer and one
consumer (FIFO, bounded, no lost wake-up)."""

from __future__ import annotations

import queue
import threading

import pytest

from ingest.intake import Intake


def test_fifo_and_empty() -> None:
    q: Intake[int] = Intake(10)
    for i in range(5):
        q.put(i)
    assert q.qsize() == 5 and q.queue[0] == 0  # the forwarder's peek at the oldest
    assert [q.get_nowait() for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(ValueError, match="maxsize"):
        Intake(0)


def test_a_full_queue_holds_the_producer_until_the_consumer_takes() -> None:
    q: Intake[int] = Intake(2)
    q.put(1)
    q.put(2)
    done = threading.Event()

    def produce() -> None:
        q.put(3)  # full: waits
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.3)  # still held: nothing was taken
    assert q.qsize() == 2
    assert q.get_nowait() == 1
    assert done.wait(10)
    t.join(10)
    assert [q.get_nowait(), q.get_nowait()] == [2, 3]


def test_every_item_arrives_in_order_across_threads() -> None:
    """A producer racing a consumer that sleeps whenever the queue runs dry, through a queue
    that is full most of the time: nothing lost, doubled or reordered, and neither side left
    waiting for good (the join would time out)."""
    n = 20_000
    q: Intake[int | None] = Intake(64)
    got: list[int] = []

    def consume() -> None:
        while True:
            item = q.get(timeout=30)
            if item is None:
                return
            got.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        q.put(i)
    q.put(None)
    t.join(60)
    assert not t.is_alive()
    assert got == list(range(n))


def test_take_returns_a_group_in_order_and_wakes_a_waiting_producer_once() -> None:
    q: Intake[int] = Intake(4)
    assert q.take(10) == []
    for i in range(4):
        q.put(i)
    done = threading.Event()

    def produce() -> None:
        q.put(4)  # waits: the queue is full
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    for _ in range(30_000):  # up to 30 s for the producer to park on the condition
        if q._producer_waiting:
            break
        threading.Event().wait(0.001)
    assert q._producer_waiting and not done.is_set()
    assert q.take(3) == [0, 1, 2]
    assert done.wait(30)
    t.join(30)
    assert q.take(10) == [3, 4]
    assert q.qsize() == 0


def test_take_across_threads_loses_and_reorders_nothing() -> None:
    n = 20_000
    q: Intake[int] = Intake(64)
    got: list[int] = []

    def consume() -> None:
        while len(got) < n:
            try:
                got.append(q.get(timeout=30))
            except queue.Empty:
                return
            got.extend(q.take(50))

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        q.put(i)
    t.join(60)
    assert not t.is_alive()
    assert got == list(range(n))
