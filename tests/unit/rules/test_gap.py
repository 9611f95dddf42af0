"""Data gap: allowed interval, streaming tick, recovery."""

from __future__ import annotations

from coldchain.rules import CompartmentEvaluator

from ._helpers import MIN, at, kinds, obs, only, profile, run, spec

GAP = {"name": "gap", "kind": "data_gap", "transport_min": 10, "storage_min": 30}


def test_exactly_the_allowed_interval_is_no_gap() -> None:
    sp = spec()  # vehicle: 10 min
    assert only(run(sp, profile(GAP), [obs(sp, 0, 5), obs(sp, 10, 5)])) == []


def test_one_ms_longer_is_a_gap_starting_where_the_hold_expires() -> None:
    sp = spec()
    res = run(sp, profile(GAP), [obs(sp, 0, 5), obs(sp, 10 + 1 / MIN, 5)])
    [gap] = only(res)
    assert gap.kind == "data_gap" and gap.status == "closed"
    assert (gap.start_ms, gap.end_ms) == (at(10), at(10) + 1)
    assert kinds(res) == ["closed"]


def test_storage_allows_thirty_minutes() -> None:
    sp = spec(kind="store")
    assert only(run(sp, profile(GAP), [obs(sp, 0, 5), obs(sp, 30, 5)])) == []
    assert len(only(run(sp, profile(GAP), [obs(sp, 0, 5), obs(sp, 31, 5)]))) == 1


def test_state_only_observations_do_not_close_a_gap() -> None:
    sp = spec()
    res = run(sp, profile(GAP), [obs(sp, 0, 5), obs(sp, 5, None, door=True), obs(sp, 20, 5)])
    [gap] = only(res)
    assert (gap.start_ms, gap.end_ms) == (at(10), at(20))


def test_tick_opens_while_it_lasts_and_data_closes_it() -> None:
    sp = spec()
    ev = CompartmentEvaluator(sp, profile({**GAP, "escalate_after_min": 30}))
    assert ev.feed(obs(sp, 0, 5)) == []
    assert ev.tick(at(10)) == []  # not longer than allowed yet
    [opened] = ev.tick(at(12))
    assert opened.kind == "opened" and opened.excursion.start_ms == at(10)
    assert opened.excursion.detected_ms == at(12)
    assert ev.tick(at(13)) == []  # no repeat
    [esc] = ev.tick(at(40))
    assert esc.kind == "escalated" and esc.excursion.severity == "critical"
    changes = ev.feed(obs(sp, 45, 5))
    assert isinstance(changes, list)
    [closed] = changes
    assert closed.kind == "closed" and closed.excursion.end_ms == at(45)
    assert closed.excursion.id == opened.excursion.id


def test_tick_opened_gap_that_a_backlog_fills_is_recovered() -> None:
    sp = spec()
    ev = CompartmentEvaluator(sp, profile(GAP))
    ev.feed(obs(sp, 0, 5))
    [opened] = ev.tick(at(15))
    # the device uploads its buffer: samples every 5 min were taken after all
    changes = ev.feed(obs(sp, 5, 5))
    assert isinstance(changes, list)
    [rec] = changes
    assert rec.kind == "recovered" and rec.excursion.status == "recovered"
    assert rec.excursion.id == opened.excursion.id
    assert ev.feed(obs(sp, 10, 5)) == []


def test_default_cap_without_a_gap_rule() -> None:
    sp = spec()
    rng = {"name": "range", "kind": "range", "max_c": 8.0, "delay_min": 12}
    # no data_gap rule: the hold is still capped at 10 min in transport
    assert only(run(sp, profile(rng), [obs(sp, 0, 9), obs(sp, 20, 9), obs(sp, 21, 5)])) == []


def test_excursion_proved_by_data_for_a_reported_gap_is_detected_late() -> None:
    """A backlog that arrives in order after tick reported the gap: what it proves inside the
    reported time is late (detected_late), what later data proves is not; it survives a
    checkpoint (docs/rules.md, sections 3 and 7)."""
    sp = spec()
    rng = {"name": "range", "kind": "range", "max_c": 8, "delay_min": 5}
    prof = profile(GAP, rng)
    ev = CompartmentEvaluator(sp, prof)
    ev.feed(obs(sp, 0, 5))
    [opened] = ev.tick(at(30))  # the gap is reported at minute 30
    assert opened.excursion.rule == "gap"
    restored = CompartmentEvaluator(sp, prof)
    restored.load(ev.dump())
    found = []
    for minute in range(1, 41):  # backlog 1..30 (9 degC from 10 to 16), then live 31..40
        temp = 9.0 if 10 <= minute <= 16 or minute >= 33 else 5.0
        changes = restored.feed(obs(sp, minute, temp), now_ms=at(max(minute, 31)))
        assert isinstance(changes, list)
        found += [c.excursion for c in changes if c.excursion.rule == "range"]
    late = [e for e in found if e.start_ms == at(10)]
    live = [e for e in found if e.start_ms == at(33)]
    assert late and all(e.detected_late and e.detected_ms == at(31) for e in late)
    assert live and not any(e.detected_late for e in live)
