"""Late data: RecomputeNeeded, window recompute, merge (recovered, detected late, superseded)."""

from __future__ import annotations

from dataclasses import replace

from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import (
    Change,
    CompartmentEvaluator,
    Excursion,
    ProfileSet,
    RecomputeNeeded,
    RulesEngine,
    fold,
    merge,
)

from ._helpers import at, obs, profile, spec

RANGE = {
    "name": "range",
    "kind": "range",
    "min_c": 2.0,
    "max_c": 8.0,
    "delay_min": 5,
    "clear_delay_min": 2,
}
GAP = {"name": "gap", "kind": "data_gap", "transport_min": 10, "storage_min": 30}
PROF = profile(RANGE, GAP, name="late")
SP = spec()
NOW = at(10_000)

ASSET = Asset(
    id="truck-1",
    kind="vehicle",
    devices=("dev-1",),
    compartments=(
        Compartment(id="front", profile="late", sensors=(SensorSpec(id="p1", probe="product"),)),
    ),
)


def engine() -> RulesEngine:
    return RulesEngine([ASSET], ProfileSet([PROF]))


def stream(eng: RulesEngine, observations: list) -> tuple[list[Change], list[RecomputeNeeded]]:  # type: ignore[type-arg]
    res = eng.feed_observations("truck-1", "front", observations)
    return res.changes, res.recompute


def test_an_older_sample_asks_for_a_recompute_and_changes_nothing() -> None:
    ev = CompartmentEvaluator(SP, PROF)
    for m in range(0, 4):
        ev.feed(obs(SP, m, 9))
    before = ev.dump()
    r = ev.feed(obs(SP, 1.5, 30))
    assert r == RecomputeNeeded("truck-1", "front", at(1.5))
    assert ev.dump() == before
    # same instant, same content: a redelivery, ignored; same instant, other content: recompute
    assert ev.feed(obs(SP, 3, 9)) == []
    assert ev.feed(obs(SP, 3, 9.5)) == RecomputeNeeded("truck-1", "front", at(3))


def test_backlog_fills_a_gap_recovered_and_hides_a_late_excursion() -> None:
    eng = engine()
    live = [obs(SP, m, 5) for m in range(0, 11)] + [obs(SP, m, 5) for m in range(40, 50)]
    changes, rc = stream(eng, live)
    [gap] = [c.excursion for c in changes]
    assert gap.kind == "data_gap" and (gap.start_ms, gap.end_ms) == (at(20), at(40))
    assert rc == []

    # the device uploads minutes 11..39: it was 9 degC from 20 to 30 (an excursion nobody saw)
    backlog = [obs(SP, m, 9 if 20 <= m < 30 else 5) for m in range(11, 40)]
    changes, rc = stream(eng, backlog)
    assert changes == []
    assert rc == [RecomputeNeeded("truck-1", "front", at(11))]

    stored = live + backlog  # what ingest reads back from InfluxDB (any order)
    upserts = eng.recompute("truck-1", "front", stored, [gap], from_ms=rc[0].from_ms, now_ms=NOW)
    by_kind = {c.kind: c.excursion for c in upserts}
    # The hidden excursion is announced as a live evaluation would have: opened, then closed.
    assert [(c.kind, c.excursion.rule) for c in upserts if c.excursion.rule == "range"] == [
        ("opened", "range"),
        ("closed", "range"),
    ]
    assert set(by_kind) == {"recovered", "opened", "closed"}
    rec = by_kind["recovered"]
    assert rec.id == gap.id and rec.status == "recovered"
    late = by_kind["closed"]
    assert late.rule == "range" and late.detected_late and late.detected_ms == NOW
    assert (late.start_ms, late.end_ms) == (at(20), at(30))

    # recomputing again with the same data changes nothing
    again = eng.recompute(
        "truck-1",
        "front",
        stored,
        fold(upserts, {gap.id: gap}).values(),
        from_ms=at(11),
        now_ms=NOW + 1,
    )
    assert again == []


def test_late_open_excursion_keeps_its_late_flag_when_streaming_closes_it() -> None:
    eng = engine()
    stream(eng, [obs(SP, m, 5) for m in range(0, 5)] + [obs(SP, 30, 9)])
    # backlog: warm from minute 12 on
    backlog = [obs(SP, m, 5 if m < 12 else 9) for m in range(5, 30)]
    _, rc = stream(eng, backlog)
    stored = [obs(SP, m, 5) for m in range(0, 5)] + backlog + [obs(SP, 30, 9)]
    upserts = eng.recompute("truck-1", "front", stored, [], from_ms=rc[0].from_ms, now_ms=NOW)
    [opened] = [c for c in upserts if c.excursion.rule == "range"]
    assert opened.kind == "opened" and opened.excursion.detected_late
    # live data continues: the excursion closes, still flagged late with the same detection time
    changes, _ = stream(eng, [obs(SP, 31, 5), obs(SP, 32, 5), obs(SP, 33, 5)])
    [closed] = changes
    assert closed.kind == "closed" and closed.excursion.id == opened.excursion.id
    assert closed.excursion.detected_late and closed.excursion.detected_ms == NOW


def _exc(rule: str, kind: str, start: int, end: int | None, **kw: object) -> Excursion:
    return Excursion(
        asset_id="truck-1",
        compartment_id="front",
        rule=rule,
        kind=kind,  # type: ignore[arg-type]
        severity="warning",
        status="open" if end is None else "closed",
        start_ms=start,
        end_ms=end,
        detected_ms=start,
        **kw,  # type: ignore[arg-type]
    )


def test_merge_unchanged_changed_new_and_gone() -> None:
    same = _exc("range", "range", at(100), at(120))
    was_open = _exc("hard_high", "hard_limit", at(105), None)
    now_closed = replace(was_open, status="closed", end_ms=at(106), detected_ms=at(999))
    moved = _exc("door", "door_open", at(110), at(115))
    earlier = _exc("door", "door_open", at(108), at(115))
    gap = _exc("gap", "data_gap", at(130), at(150))
    before_window = _exc("range", "range", at(50), at(60))
    ups = merge(
        [same, was_open, moved, gap, before_window],
        [same, now_closed, earlier, _exc("range", "range", at(10), at(20))],
        from_ms=at(90),
        now_ms=NOW,
    )
    got = {(c.kind, c.excursion.rule, c.excursion.start_ms) for c in ups}
    assert got == {
        ("closed", "hard_high", at(105)),
        ("opened", "door", at(108)),  # new, found over already: opened, then closed
        ("closed", "door", at(108)),
        ("superseded", "door", at(110)),
        ("recovered", "gap", at(130)),
    }
    closed = next(c.excursion for c in ups if c.excursion.rule == "hard_high")
    assert closed.detected_ms == was_open.detected_ms and not closed.detected_late
    new = next(c.excursion for c in ups if c.excursion.start_ms == at(108))
    assert new.detected_late and new.detected_ms == NOW
    sup = next(c.excursion for c in ups if c.kind == "superseded")
    assert sup.superseded and sup.status == "closed" and sup.id == moved.id


def test_merge_escalation_and_idempotence() -> None:
    p = _exc("range", "range", at(100), None)
    r = replace(p, severity="critical", detected_ms=at(5))
    [ch] = merge([p], [r], from_ms=at(0), now_ms=NOW)
    assert ch.kind == "escalated" and ch.excursion.detected_ms == p.detected_ms
    assert merge([ch.excursion], [r], from_ms=at(0), now_ms=NOW) == []
    recovered = _exc("gap", "data_gap", at(1), at(2))
    recovered = replace(recovered, status="recovered")
    assert merge([recovered], [], from_ms=at(0), now_ms=NOW) == []


def test_an_excursion_that_rose_and_ended_in_the_window_is_escalated_then_closed() -> None:
    # E.g. a restart recompute over an excursion open and "warning" at the checkpoint: the
    # receivers get both changes streaming would have sent, not the closure alone.
    p = _exc("range", "range", at(100), None)
    r = replace(p, severity="critical", status="closed", end_ms=at(140), detected_ms=at(5))
    changes = merge([p], [r], from_ms=at(90), now_ms=NOW)
    assert [c.kind for c in changes] == ["escalated", "closed"]
    assert all(c.excursion.detected_ms == p.detected_ms for c in changes)
    assert merge([changes[-1].excursion], [r], from_ms=at(90), now_ms=NOW) == []


def test_a_new_excursion_that_rose_in_the_window_is_opened_escalated_closed() -> None:
    # A restart recompute finds an excursion streaming never reported (the rules thread was
    # behind at the SIGKILL): every lifecycle change is announced, the escalation included.
    r = replace(_exc("range", "range", at(100), at(140)), severity="critical")
    changes = merge([], [r], from_ms=at(90), now_ms=NOW, escalated={r.id})
    assert [c.kind for c in changes] == ["opened", "escalated", "closed"]
    assert all(c.excursion.detected_late for c in changes)
    assert [c.kind for c in merge([], [r], from_ms=at(90), now_ms=NOW)] == ["opened", "closed"]


def test_backlog_that_fills_part_of_a_gap_moves_its_end() -> None:
    eng = engine()
    live = [obs(SP, m, 5) for m in range(0, 11)] + [obs(SP, m, 5) for m in range(40, 45)]
    changes, _ = stream(eng, live)
    [gap] = [c.excursion for c in changes]
    assert (gap.start_ms, gap.end_ms) == (at(20), at(40))
    backlog = [obs(SP, m, 5) for m in range(25, 40)]  # the device had lost minutes 11..24
    _, rc = stream(eng, backlog)
    upserts = eng.recompute(
        "truck-1", "front", live + backlog, [gap], from_ms=rc[0].from_ms, now_ms=NOW
    )
    [ch] = upserts
    assert ch.kind == "updated" and ch.excursion.id == gap.id
    assert (ch.excursion.end_ms, ch.excursion.detected_ms) == (at(25), gap.detected_ms)
    # streaming continues from the recomputed state: an in-order sample is not "late"
    res = eng.feed_observations("truck-1", "front", [obs(SP, 45, 5)])
    assert res.recompute == [] and res.changes == []


def test_recompute_with_truncated_history_continues_a_long_open_excursion() -> None:
    eng = engine()
    stream(eng, [obs(SP, m, 9) for m in range(0, 200)])
    [long_open] = [e for e in eng.open_excursions() if e.rule == "range"]
    assert long_open.start_ms == at(0)
    # e.g. a restart: recompute from the checkpoint time, reading only `lookback` before it
    from_ms = at(199)
    lookback = eng.lookback_ms("truck-1", "front")
    assert lookback == (5 + 2 + 10) * 60_000  # delay + clear delay + hold cap
    stored = [obs(SP, m, 9) for m in range(0, 200) if at(m) >= from_ms - lookback]
    assert eng.recompute("truck-1", "front", stored, [], from_ms=from_ms, now_ms=NOW) == []
    [still] = [e for e in eng.open_excursions() if e.rule == "range"]
    assert still.id == long_open.id and still.detected_ms == long_open.detected_ms
    changes, _ = stream(eng, [obs(SP, m, 5) for m in range(200, 203)])
    [closed] = changes
    assert closed.kind == "closed" and closed.excursion.id == long_open.id
    assert closed.excursion.end_ms == at(200)


def test_previous_open_excursion_before_the_window_not_confirmed_is_closed() -> None:
    p = _exc("range", "range", at(1), None)
    [ch] = merge([p], [], from_ms=at(50), now_ms=NOW)
    assert ch.kind == "closed" and ch.excursion.end_ms == at(50) and ch.excursion.id == p.id
    # ...but a closed one before the window is never touched
    assert merge([replace(p, status="closed", end_ms=at(5))], [], from_ms=at(50), now_ms=NOW) == []


def test_merge_updates_out_of_range_time_and_return() -> None:
    # A backlog showed the product was out of range longer, and came back later: the same
    # excursion (same id, same end) is updated, the first detection kept.
    p = Excursion(
        "truck-1", "front", "range", "range", "warning", "closed", at(0), at(30), at(6),
        out_of_range_s=600.0, returned_ms=at(20),
    )  # fmt: skip
    r = replace(p, detected_ms=NOW, out_of_range_s=900.0, returned_ms=at(28))
    [ch] = merge([p], [r], from_ms=at(5), now_ms=NOW)
    assert ch.kind == "updated"
    assert (ch.excursion.out_of_range_s, ch.excursion.returned_ms) == (900.0, at(28))
    assert ch.excursion.detected_ms == at(6)
    assert merge([p], [replace(p, detected_ms=NOW)], from_ms=at(5), now_ms=NOW) == []


def test_an_excursion_the_window_opens_is_announced_though_its_condition_began_before() -> None:
    # Streaming saw the range condition begin at minute 20 but not yet its 5-minute delay; a
    # recompute from minute 22 (e.g. a restart) finds the excursion opening at minute 25,
    # inside the window. Found by the fencing work: it was dropped (its start lies before the
    # window) while the recomputed state kept it open, so it was never announced at all.
    eng = engine()
    changes, _ = stream(eng, [obs(SP, m, 9 if m >= 20 else 5) for m in range(0, 23)])
    assert changes == []
    stored = [obs(SP, m, 9 if m >= 20 else 5) for m in range(31)]
    found = eng.recompute("truck-1", "front", stored, [], from_ms=at(22), now_ms=NOW)
    [opened] = found
    assert opened.kind == "opened" and opened.excursion.rule == "range"
    assert opened.excursion.start_ms == at(20) and opened.excursion.detected_late
    later, _ = stream(eng, [obs(SP, m, 5) for m in range(31, 40)])
    [closed] = later
    assert closed.kind == "closed" and closed.excursion.id == opened.excursion.id


def test_an_unreported_excursion_that_opened_before_the_window_stays_out_of_the_merge() -> None:
    # Before the window the recompute's history is truncated: an excursion it finds opening
    # there, which streaming never reported, is not announced by the merge.
    r = replace(_exc("range", "range", at(1), at(9)), status="closed", detected_ms=at(6))
    assert merge([], [r], from_ms=at(50), now_ms=NOW) == []
