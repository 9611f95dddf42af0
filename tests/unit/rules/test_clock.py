"""Clock skew as device evidence, and forward clock jumps (docs/rules.md section 4.10)."""

from __future__ import annotations

from datetime import UTC, datetime

from coldchain.contract import Sample
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import Change, ClockWatch, RulesEngine, load_presets

from ._helpers import MIN, at

WALL = 5_000_000_000_000


def _watch_example(
    watch: ClockWatch, device: str = "dev-1", skew_from: int = 10, skew_to: int = 250
) -> list[tuple[int, list[Change], int]]:
    """The worked example: a sample every minute, received as sent; the clock 10 min slow
    from receive minute ``skew_from`` to ``skew_to``. Returns (receive minute, changes, jump)."""
    out: list[tuple[int, list[Change], int]] = []
    for r in range(0, skew_to + 3):
        device_min = r - 10 if skew_from <= r < skew_to else r
        rep = watch.observe("truck-1", device, at(device_min), at(r), WALL + r * MIN)
        out.append((r, rep.changes, rep.jump_ms))
    return out


def test_the_worked_example_opens_after_five_minutes_and_closes_with_a_jump() -> None:
    watch = ClockWatch()
    seen = _watch_example(watch)
    changes = [(r, c) for r, cs, _ in seen for c in cs]
    assert [(r, c.kind) for r, c in changes] == [(25, "opened"), (250, "closed")]
    e = changes[0][1].excursion
    assert (e.kind, e.rule, e.asset_id, e.compartment_id) == (
        "clock_skew",
        "clock_skew",
        "truck-1",
        "dev-1",
    )
    assert e.start_ms == at(0)  # device time of the run's first message (receive minute 10)
    assert e.detected_ms == WALL + 25 * MIN
    assert e.severity == "warning" and e.status == "open"
    assert "600 s behind" in e.detail
    c = changes[1][1].excursion
    assert c.id == e.id and c.end_ms == at(250) and c.status == "closed"
    assert [(r, j) for r, _, j in seen if j] == [(250, 600_000)]
    assert watch.open_excursions() == []


def test_a_burst_of_late_messages_is_not_skew_and_gives_no_jump() -> None:
    # Ingest was down 25 min: the queued messages of minutes 0..25 all arrive at minute 25.
    watch = ClockWatch()
    for m in range(0, 26):
        rep = watch.observe("truck-1", "dev-1", at(m), at(25) + m * 10, WALL)
        assert rep.changes == [] and rep.jump_ms == 0, m
    for m in range(26, 60):  # then live again
        rep = watch.observe("truck-1", "dev-1", at(m), at(m), WALL)
        assert rep.changes == [] and rep.jump_ms == 0, m


def test_a_delay_every_device_suffers_is_the_reference_not_a_slow_clock() -> None:
    # A replay publishing 30 min behind the ingest clock: every device looks 30 min behind.
    watch = ClockWatch()
    devices = [f"dev-{i}" for i in range(4)]
    changes: list[Change] = []
    for m in range(0, 120):
        for d in devices:
            device_min = m - 30 - (10 if d == "dev-3" and 40 <= m < 100 else 0)
            rep = watch.observe("truck-1", d, at(device_min), at(m), WALL + m * MIN)
            changes += rep.changes
    # Only dev-3, whose clock is 10 min slower than the others, is skewed.
    assert {(c.kind, c.excursion.compartment_id) for c in changes} == {
        ("opened", "dev-3"),
        ("closed", "dev-3"),
    }
    opened = next(c.excursion for c in changes if c.kind == "opened")
    assert opened.start_ms == at(40 - 40) and "600 s behind" in opened.detail


def test_with_fewer_than_three_devices_the_ingest_clock_is_the_reference() -> None:
    watch = ClockWatch()
    changes: list[Change] = []
    for m in range(0, 20):
        changes += watch.observe("a", "dev-1", at(m - 30), at(m), WALL).changes
        changes += watch.observe("b", "dev-2", at(m), at(m), WALL).changes
    assert [(c.kind, c.excursion.compartment_id) for c in changes] == [("opened", "dev-1")]
    assert changes[0].excursion.start_ms == at(-30)


def test_a_fast_clock_is_proved_by_one_message_and_its_jump_counts() -> None:
    watch = ClockWatch()
    for m in range(0, 5):
        assert watch.observe("a", "d", at(m), at(m), WALL).jump_ms == 0
    rep = watch.observe("a", "d", at(5) + 200_000, at(5), WALL)
    assert rep.jump_ms == 200_000  # from a clock known to be right: provably ahead
    changes: list[Change] = []
    for m in range(6, 22):
        changes += watch.observe("a", "d", at(m) + 200_000, at(m), WALL + m).changes
    [opened] = changes
    assert opened.excursion.start_ms == at(5) + 200_000 and "200 s ahead" in opened.excursion.detail
    # Small offsets are within the tolerance: nothing.
    calm = ClockWatch()
    for m in range(0, 30):
        rep = calm.observe("a", "d", at(m) + 100_000, at(m), WALL)
        assert rep.changes == [] and rep.jump_ms == 0


def test_the_watch_survives_a_checkpoint() -> None:
    watch = ClockWatch()
    for r in range(0, 30):
        watch.observe("truck-1", "dev-1", at(r - 10 if r >= 10 else r), at(r), WALL)
    [open_skew] = watch.open_excursions()
    again = ClockWatch()
    again.load(watch.dump())
    assert again.open_excursions() == [open_skew]
    rep = again.observe("truck-1", "dev-1", at(30), at(30), WALL)
    assert rep.jump_ms == 600_000 and [c.kind for c in rep.changes] == ["closed"]


ASSET = Asset(
    id="truck-gs-01",
    kind="vehicle",
    devices=("truck-gs-01-tcu",),
    compartments=(Compartment(id="rear", profile="chilled", sensors=(SensorSpec(id="rear-air"),)),),
)


def test_the_engine_applies_a_jump_to_the_compartments_and_reports_no_gap() -> None:
    eng = RulesEngine([ASSET], load_presets())
    changes: list[Change] = []
    for r in range(0, 253):
        device_min = r - 10 if 10 <= r < 250 else r
        s = Sample(
            ts=datetime.fromtimestamp(at(device_min) / 1000, tz=UTC),
            seq=r,
            temps_c={"rear-air": 2.0 + (r % 3) * 0.1},
        )
        now = WALL + r * MIN
        res = eng.feed(
            "truck-gs-01", s, now, device_id="truck-gs-01-tcu", received_ms=at(r) + 1_500
        )
        changes += res.changes
        if r == 250:
            assert res.clock_jump_ms == 600_000 - 0  # received 1.5 s after sending, both sides
        newest = max(at(device_min), at(min(r, 9)))
        changes += eng.tick_asset("truck-gs-01", newest, now)
    kinds = {(c.excursion.kind, c.kind) for c in changes}
    assert ("clock_skew", "opened") in kinds and ("clock_skew", "closed") in kinds
    assert not [c for c in changes if c.excursion.kind == "data_gap"]
    saved = eng.checkpoint()
    assert "devices" in saved and "truck-gs-01-tcu" in saved["devices"]
