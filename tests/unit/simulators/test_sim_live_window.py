"""The window of a live replay: where it starts decides what time of day its faults meet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulators.publish import live_start

DAY_S = 86_400.0


def test_without_offset_the_window_ends_now() -> None:
    now = datetime(2026, 11, 29, 20, 41, 19, 600_000, tzinfo=UTC).timestamp()
    assert live_start(3600.0, now) == datetime(2026, 11, 29, 19, 41, 19, tzinfo=UTC)


@pytest.mark.parametrize("hour_utc", [0, 3, 15, 16, 23])
def test_with_offset_the_window_starts_at_local_midnight_and_ends_by_now(hour_utc: int) -> None:
    now = datetime(2026, 11, 29, hour_utc, 17, tzinfo=UTC).timestamp()
    start = live_start(DAY_S, now, utc_offset_h=8.0)
    local = start + timedelta(hours=8)
    assert (local.hour, local.minute, local.second) == (0, 0, 0)
    assert start.timestamp() + DAY_S <= now  # a replay, never ahead of the wall clock
    assert start.timestamp() + 2 * DAY_S > now  # and the latest such day


def test_the_same_time_of_day_whenever_it_runs() -> None:
    base = datetime(2026, 11, 29, 0, 0, tzinfo=UTC).timestamp()
    starts = {live_start(6 * 3600.0, base + h * 3600.0, utc_offset_h=-5.0) for h in range(24)}
    assert {(s + timedelta(hours=-5)).time() for s in starts} == {datetime.min.time()}


def test_a_fractional_offset_is_honoured() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()
    start = live_start(DAY_S, now, utc_offset_h=5.5)
    assert (start + timedelta(hours=5.5)).time() == datetime.min.time()


def test_the_replay_clock_stops_at_the_end_of_a_past_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from simulators import publish

    wall = [datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()]
    monkeypatch.setattr(publish.time, "time", lambda: wall[0])
    start = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    end = start + timedelta(hours=6)
    clock = publish.ReplayClock(start, 1440.0, end)
    assert clock() == start.timestamp() * 1000  # before begin(): the window's start
    clock.begin()
    wall[0] += 60.0  # one wall minute = one simulated day at 1440x
    assert clock() == end.timestamp() * 1000  # held at the window's end, not a day later
    free = publish.ReplayClock(start, 1440.0)
    free.begin()
    wall[0] += 10.0
    assert free() == (start + timedelta(hours=4)).timestamp() * 1000


def test_a_scenarios_replay_window_is_its_duration_from_local_midnight() -> None:
    from simulators import library_scenario
    from simulators.publish import replay_window

    scenario = library_scenario("demo")
    now = datetime(2026, 11, 29, 20, 41, tzinfo=UTC).timestamp()
    start, end = replay_window(scenario, now)
    assert start == live_start(scenario.duration_s, now, utc_offset_h=scenario.utc_offset_h)
    assert (end - start).total_seconds() == scenario.duration_s
    assert end.timestamp() <= now
