"""The replay clock bounded by the replay's watermark (simulators/replay_clock.py): a stall of
the publisher or of ingest stops it; an idle publisher (the whole fleet silent) does not."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from simulators.replay_clock import ReplayClock, ReplayProgress, ingest_progress

START = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
T0 = START.timestamp()
MIN_MS = 60_000
SPEEDUP = 1440.0  # one wall second = 24 simulated minutes


def ms(minutes: float) -> float:
    return T0 * 1000 + minutes * MIN_MS


class Count:
    """Ingest's processed count, as a test sets it."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def replay(ahead_s: float = 180.0) -> tuple[ReplayClock, ReplayProgress, Count, list[float]]:
    """A replay begun at T0 on a wall clock the test moves (``wall[0]``), a day in the past."""
    wall = [T0 + 3 * 86_400.0]
    progress = ReplayProgress(START, ahead_s=ahead_s)
    count = Count()
    progress.follow(count)
    clock = ReplayClock(
        START, SPEEDUP, START + timedelta(days=1), lambda: wall[0], progress=progress
    )
    clock.begin()
    return clock, progress, count, wall


def publish_minutes(
    progress: ReplayProgress, first: int, last: int, kind: str = "telemetry"
) -> None:
    for m in range(first, last + 1):
        progress.advance(ms(m))
        progress.published(ms(m), kind)


def test_a_stalled_publisher_stops_the_clock_at_what_it_published() -> None:
    clock, progress, count, wall = replay()
    publish_minutes(progress, 0, 10)
    count.n = 11  # ingest has everything
    wall[0] += 10 * 60 / SPEEDUP
    assert clock() == ms(10)  # on pace
    wall[0] += 2.0  # the publisher stalls for 2 s: 48 simulated minutes on the wall clock
    assert clock.paced_ms() == pytest.approx(ms(58))
    # At most one sample interval (slack, 60 s) past the newest message out.
    assert clock() == ms(11)
    publish_minutes(progress, 11, 20)
    count.n = 21
    assert clock() == ms(21)  # catching up as the messages go out


def test_a_stalled_ingest_stops_the_clock_and_holds_the_publisher() -> None:
    clock, progress, count, wall = replay(ahead_s=180.0)
    publish_minutes(progress, 0, 10)
    count.n = 6  # minutes 0..5 processed, 6.. not yet
    wall[0] += 30.0  # ingest stalled: the wall clock says 12 h
    # Processed through minute 6 (the first message not processed), plus ahead_s and slack.
    assert clock() == ms(6 + 3 + 1)
    assert progress.may_publish(ms(9))
    assert not progress.may_publish(ms(9) + 1)  # the publisher waits
    assert progress.in_flight_at(ms(10)) == 5
    count.n = 11
    assert clock() == ms(11)  # bounded by what was published now


def test_an_idle_publisher_lets_the_clock_run_so_real_silence_is_seen() -> None:
    """The whole fleet silent for two hours: the publisher waits for the next message, so all
    before it is out and the clock runs at the wall clock's pace through the silence."""
    clock, progress, count, wall = replay()
    publish_minutes(progress, 0, 10)
    count.n = 11
    progress.advance(ms(130))  # the next message is due at minute 130
    wall[0] += 60 * 60 / SPEEDUP  # one simulated hour later
    assert clock() == ms(60)


def test_messages_ingest_does_not_subscribe_to_do_not_count() -> None:
    clock, progress, count, wall = replay()
    publish_minutes(progress, 0, 4)
    progress.published(ms(4), "status")  # retained status: ingest never receives it
    count.n = 5
    wall[0] += 1.0
    assert clock() == ms(5)  # caught up: the status message is not waited for


def test_the_clock_never_goes_back() -> None:
    clock, progress, count, wall = replay()
    publish_minutes(progress, 0, 30)
    count.n = 20
    wall[0] += 3600.0
    first = clock()
    count.n = 15  # a group counted as received before it is queued for the rules: a dip
    assert clock() == first
    assert progress.processed_count() == 20


def test_the_window_end_and_the_wall_clock_still_cap_it() -> None:
    clock, progress, count, wall = replay()
    publish_minutes(progress, 0, 5)
    progress.close()  # the stream is over
    count.n = 6
    wall[0] += 3 * 86_400.0
    assert clock() == int((START + timedelta(days=1)).timestamp() * 1000)


def test_a_message_that_never_arrives_is_given_up_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, progress, count, _ = replay(ahead_s=60.0)
    publish_minutes(progress, 0, 10)
    count.n = 10  # one message was lost on the way
    progress.advance(ms(12))  # the publisher is about to send minute 12
    assert not progress.may_publish(ms(12))
    assert progress.give_up_waiting() == 1
    assert "1 published messages never reached ingest" in caplog.text
    assert progress.may_publish(ms(12)) and progress.lost == 1


def test_before_begin_the_clock_reads_the_windows_start() -> None:
    progress = ReplayProgress(START)
    clock = ReplayClock(START, SPEEDUP, progress=progress, wall=lambda: T0 + 86_400.0)
    assert clock() == T0 * 1000


def test_ingest_progress_counts_what_reached_the_rules() -> None:
    class Metrics:
        received_messages = 120

    class Rules:
        def stats(self) -> dict[str, object]:
            return {"rules_queue_depth": 20}

    class Service:
        metrics = Metrics()
        evaluate: Rules | None = Rules()

    service = Service()
    assert ingest_progress(service)() == 100
    service.evaluate = None
    assert ingest_progress(service)() == 120


def test_hold_waits_until_ingest_catches_up() -> None:
    _, progress, count, _ = replay(ahead_s=60.0)
    publish_minutes(progress, 0, 10)
    progress.advance(ms(13))
    waits: list[float] = []

    def wait(seconds: float) -> None:  # ingest processes one message per wait
        waits.append(seconds)
        count.n += 1

    assert progress.hold(ms(13), wait) >= 0.0
    # Minute 13 is more than 60 s past every message sent (minutes 0..10): it may go out only
    # once all of them are processed (then the watermark is what was sent: minute 13).
    assert count.n == 11 and len(waits) == 11
    assert progress.lost == 0


def test_hold_gives_up_on_a_count_that_does_not_move() -> None:
    _, progress, count, _ = replay(ahead_s=60.0)
    progress.patience_s = 0.05
    publish_minutes(progress, 0, 10)
    count.n = 9  # two messages never arrive
    progress.advance(ms(13))
    progress.hold(ms(13), time.sleep)
    assert progress.lost == 2 and progress.may_publish(ms(13))


def test_hold_returns_when_the_replay_stops() -> None:
    _, progress, _, _ = replay(ahead_s=60.0)
    publish_minutes(progress, 0, 10)
    progress.advance(ms(13))
    stop = threading.Event()
    progress.hold(ms(13), lambda s: stop.set(), stop)
    assert stop.is_set() and progress.lost == 0
