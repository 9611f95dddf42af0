"""Cumulative time beyond a threshold against a budget."""

from __future__ import annotations

import pytest

from ._helpers import MIN, at, kinds, obs, only, profile, run, series, spec

CUM = {"name": "heat", "kind": "cumulative", "above_c": 30.0, "budget_min": 10}


def test_budget_exactly_used_opens_at_the_exact_instant() -> None:
    sp = spec()
    # 4 + 3 + 3 min at >= 30 in three separate runs (cool in between) = 10 min = budget
    vals = [31] * 4 + [20] * 2 + [30] * 3 + [20] * 2 + [32] * 3 + [20]
    res = run(sp, profile(CUM), series(sp, vals))
    [exc] = only(res)
    # third run starts at minute 11; budget (10) reached at minute 14 exactly, when it cools
    assert exc.start_ms == at(14)
    assert exc.kind == "cumulative" and exc.status == "closed" and exc.end_ms == at(14)


def test_one_minute_short_of_the_budget_does_not_open() -> None:
    sp = spec()
    vals = [31] * 4 + [20] * 2 + [30] * 3 + [20] * 2 + [32] * 2 + [20]
    assert only(run(sp, profile(CUM), series(sp, vals))) == []


def test_budget_runs_out_mid_interval() -> None:
    sp = spec()
    # 6 min then one 10-min interval (held, vehicle cap 10): budget runs out 4 min into it
    res = run(sp, profile(CUM), [*series(sp, [31] * 7), obs(sp, 16, 31), obs(sp, 20, 20)])
    [exc] = only(res)
    assert exc.start_ms == at(10)
    assert exc.end_ms == at(20)
    # beyond-threshold degree-minutes counted from the opening: 10 min x 1 degC
    assert exc.degree_minutes == pytest.approx(10.0)


def test_below_threshold_and_inclusive_default() -> None:
    sp = spec()
    freeze = {"name": "freeze", "kind": "cumulative", "below_c": -0.5, "budget_min": 5}
    res = run(sp, profile(freeze), series(sp, [-0.5] * 6 + [3]))
    assert only(res)[0].start_ms == at(5)
    strict = {**freeze, "inclusive": False}
    assert only(run(sp, profile(strict), series(sp, [-0.5] * 6 + [3]))) == []


def test_later_run_after_budget_spent_opens_at_once() -> None:
    sp = spec()
    vals = [31] * 11 + [20] * 3 + [31] * 2 + [20]
    res = run(sp, profile(CUM), series(sp, vals))
    first, second = only(res)
    assert first.start_ms == at(10) and first.end_ms == at(11)
    assert second.start_ms == at(14) and second.end_ms == at(16)
    assert kinds(res) == ["opened", "closed", "opened", "closed"]


def test_window_resets_the_budget_at_an_epoch_aligned_boundary() -> None:
    sp = spec()
    rule = {**CUM, "window_h": 1}
    # 6 min warm before the hour boundary at minute 60 and 6 min after: never 10 in one window
    vals = [obs(sp, 54 + i, 31) for i in range(12)] + [obs(sp, 66, 20)]
    assert only(run(sp, profile(rule), vals)) == []
    assert len(only(run(sp, profile(CUM), vals))) == 1  # without a window: 12 min > 10


def test_custody_change_resets_the_budget_and_closes() -> None:
    sp = spec()
    base = series(sp, [31] * 8)
    handover = obs(sp, 8, None, custody=True)
    after = series(sp, [31] * 8, start_min=9)
    assert only(run(sp, profile(CUM), [*base, handover, *after])) == []
    assert len(only(run(sp, profile(CUM), [*base, *after]))) == 1
    assert MIN == 60_000
