"""Shipment traceability, the pure part (coldchain.trace): per-leg statistics, custody gaps,
the verdict. Every expectation is computed by hand in the comments (times in minutes from T0
unless said otherwise)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coldchain.rules import evaluate, load_presets, make_observation
from coldchain.rules.excursion import (
    Excursion,
    ExcursionStatus,
    RuleKind,
    Severity,
    excursion_id,
)
from coldchain.rules.mkt import mean_kinetic_temperature
from coldchain.rules.profiles import Profile
from coldchain.rules.readings import CompartmentSpec
from coldchain.trace import (
    DEFAULT_DOCK_LIMIT_MS,
    Leg,
    LegReport,
    control_series,
    custody_gaps,
    leg_report,
    verdict,
)

T0 = 1_790_000_000_000
MIN = 60_000
LIMIT = DEFAULT_DOCK_LIMIT_MS  # 30 min


def m(minutes: float) -> int:
    """Epoch ms ``minutes`` after T0."""
    return T0 + round(minutes * MIN)


def exc(
    kind: RuleKind = "range",
    *,
    rule: str | None = None,
    start: float = 0.0,
    end: float | None = 10.0,
    severity: Severity = "warning",
    status: ExcursionStatus = "closed",
    superseded: bool = False,
    asset: str = "truck-1",
    comp: str = "c1",
) -> Excursion:
    return Excursion(
        asset_id=asset,
        compartment_id=comp,
        rule=rule or kind,
        kind=kind,
        severity=severity,
        status=status,
        start_ms=m(start),
        end_ms=None if end is None else m(end),
        detected_ms=m(start),
        superseded=superseded,
        detail=f"{kind} detail",
    )


# -- leg_report ------------------------------------------------------------------------------


def test_sample_and_hold_time_weighted_statistics() -> None:
    # Leg [0, 30), cap 15 min. Readings 2.0 at 0, 3.0 at 5, 5.0 at 20:
    #   2.0 holds [0, 5)   = 300 s
    #   3.0 holds [5, 20)  = 900 s  (min(next 20, 5 + cap 15 = 20, stop 30): exactly the cap)
    #   5.0 holds [20, 30) = 600 s  (ends at the leg's end)
    # monitored 1800 s, unmonitored 0; mean (2*300 + 3*900 + 5*600) / 1800 = 6300 / 1800 = 3.5
    # (the arithmetic mean of the readings would be 3.33); out of [0, 4]: only 5.0 -> 600 s.
    leg = Leg("truck-1", "c1", m(0), m(30))
    r = leg_report(
        leg, [(m(0), 2.0), (m(5), 3.0), (m(20), 5.0)], end_ms=m(99), cap_ms=15 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.leg == leg
    assert r.readings == 3
    assert (r.min_c, r.max_c) == (2.0, 5.0)
    assert r.monitored_s == 1800.0
    assert r.unmonitored_s == 0.0
    assert r.mean_c == pytest.approx(3.5)
    assert r.out_of_range_s == 600.0
    # MKT with the same hold times as weights (by the formula: 3.578 degC), above the mean.
    assert r.mkt_c == pytest.approx(mean_kinetic_temperature([2.0, 3.0, 5.0], [300, 900, 600]))
    assert r.mkt_c == pytest.approx(3.5781, abs=1e-4)
    assert r.mkt_c is not None and r.mean_c is not None and r.mkt_c > r.mean_c


def test_hold_is_capped_and_the_rest_is_unmonitored() -> None:
    # Leg [0, 30), cap 10 min. 3.0 at 0 holds [0, 10) only (cap), [10, 25) is unknown,
    # 6.0 at 25 holds [25, 30). monitored 600 + 300 = 900 s, unmonitored 1800 - 900 = 900 s.
    # mean (3*600 + 6*300) / 900 = 3600 / 900 = 4.0 (the unknown 15 min count for nothing).
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(30)), [(m(0), 3.0), (m(25), 6.0)],
        end_ms=m(30), cap_ms=10 * MIN, low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.readings == 2
    assert r.monitored_s == 900.0
    assert r.unmonitored_s == 900.0
    assert r.mean_c == pytest.approx(4.0)
    assert r.out_of_range_s == 300.0  # 6.0 for 5 min; 3.0 is inside


def test_readings_before_the_leg_count_only_for_the_time_they_hold_into_it() -> None:
    # Leg [0, 20), cap 10 min.
    #   9.0 at -15: holds to min(next -4, -15 + 10 = -5) = -5: never reaches the leg
    #   1.0 at -4:  holds [-4, 6) by the cap, of which [0, 6) = 360 s is in the leg
    #   3.0 at 6:   holds [6, 16) by the cap = 600 s; [16, 20) = 240 s unknown
    #   50.0 at 20: at the leg's end, outside it (and holds nothing into it)
    # readings inside the leg: only 3.0 (min = max = 3.0; 9.0, 1.0 and 50.0 are not "in" it);
    # mean (1*360 + 3*600) / 960 = 2160 / 960 = 2.25.
    series = [(m(-15), 9.0), (m(-4), 1.0), (m(6), 3.0), (m(20), 50.0)]
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(20)), series, end_ms=m(20), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.readings == 1
    assert (r.min_c, r.max_c) == (3.0, 3.0)
    assert r.monitored_s == 960.0
    assert r.unmonitored_s == 240.0
    assert r.mean_c == pytest.approx(2.25)
    assert r.out_of_range_s == 0.0


def test_a_reading_held_into_the_leg_alone_gives_statistics_but_no_readings() -> None:
    # 2.0 at -5 holds [-5, 5) (cap 10): 300 s of the leg [0, 20); the rest, 900 s, is unknown.
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(20)), [(m(-5), 2.0)], end_ms=m(20), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.readings == 0
    assert r.min_c is None and r.max_c is None
    assert r.monitored_s == 300.0 and r.unmonitored_s == 900.0
    assert r.mean_c == pytest.approx(2.0) and r.mkt_c == pytest.approx(2.0)


def test_out_of_range_is_strict_and_each_side_can_be_absent() -> None:
    # Leg [0, 40), cap 10, one reading every 10 min, each held 600 s:
    #   -1.0 (below 0: out), 0.0 (the limit itself: in), 4.0 (in), 4.5 (above 4: out)
    series = [(m(0), -1.0), (m(10), 0.0), (m(20), 4.0), (m(30), 4.5)]
    leg = Leg("truck-1", "c1", m(0), m(40))
    both = leg_report(leg, series, end_ms=m(40), cap_ms=10 * MIN, low_c=0.0, high_c=4.0)
    assert both.out_of_range_s == 1200.0  # -1.0 and 4.5
    high_only = leg_report(leg, series, end_ms=m(40), cap_ms=10 * MIN, low_c=None, high_c=4.0)
    assert high_only.out_of_range_s == 600.0  # 4.5 only
    low_only = leg_report(leg, series, end_ms=m(40), cap_ms=10 * MIN, low_c=0.0, high_c=None)
    assert low_only.out_of_range_s == 600.0  # -1.0 only
    neither = leg_report(leg, series, end_ms=m(40), cap_ms=10 * MIN, low_c=None, high_c=None)
    assert neither.out_of_range_s == 0.0
    # mean (-1 + 0 + 4 + 4.5) * 600 / 2400 = 7.5 / 4 = 1.875
    assert both.mean_c == pytest.approx(1.875)
    assert (both.min_c, both.max_c) == (-1.0, 4.5)


def test_mkt_of_a_constant_series_is_the_constant() -> None:
    # 5.0 every minute for an hour: MKT = -(dH/R) / ln(e^(-(dH/R)/T)) = T exactly.
    series = [(m(i), 5.0) for i in range(60)]
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(60)), series, end_ms=m(60), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.mkt_c == pytest.approx(5.0, abs=1e-9)
    assert r.mean_c == pytest.approx(5.0, abs=1e-12)
    assert r.out_of_range_s == 3600.0


def test_mkt_weights_a_spike_above_the_mean() -> None:
    # 2.0 for 50 min, 12.0 for 10 min (one reading a minute, cap 10).
    #   mean = (2*50 + 12*10) / 60 = 220 / 60 = 3.667
    #   MKT: a1 = 10000/275.15 = 36.34381, a2 = 10000/285.15 = 35.06926
    #        (50 e^-a1 + 10 e^-a2) / 60 = (50*1.64469e-16 + 10*5.88319e-16) / 60 = 2.35110e-16
    #        MKT = 10000 / -ln(2.35110e-16) - 273.15 = 4.732 degC: the spike counts more.
    series = [(m(i), 2.0 if i < 50 else 12.0) for i in range(60)]
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(60)), series, end_ms=m(60), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.mean_c == pytest.approx(220 / 60)
    assert r.mkt_c == pytest.approx(mean_kinetic_temperature([2.0, 12.0], [3000.0, 600.0]))
    assert r.mkt_c == pytest.approx(4.7322, abs=1e-4)
    assert r.mkt_c is not None and r.mean_c is not None and r.mkt_c > r.mean_c + 1.0
    assert r.out_of_range_s == 600.0  # the 10 min at 12.0


def test_an_open_leg_ends_at_end_ms() -> None:
    # Leg [0, open), end_ms = 20, cap 30 min: 3.0 at 0 holds [0, 20) = 1200 s, all monitored.
    # The reading at 25 is after the end: not counted, and 99.0 never enters the statistics.
    leg = Leg("truck-1", "c1", m(0), None)
    r = leg_report(
        leg, [(m(0), 3.0), (m(25), 99.0)], end_ms=m(20), cap_ms=30 * MIN, low_c=0.0, high_c=4.0
    )
    assert r.readings == 1
    assert r.monitored_s == 1200.0 and r.unmonitored_s == 0.0
    assert r.max_c == 3.0 and r.mean_c == pytest.approx(3.0)
    # The same leg judged later (end 40): 3.0 holds [0, 25) = 1500 s, 99.0 [25, 40) = 900 s.
    later = leg_report(
        leg, [(m(0), 3.0), (m(25), 99.0)], end_ms=m(40), cap_ms=30 * MIN, low_c=0.0, high_c=4.0
    )
    assert later.readings == 2
    assert later.monitored_s == 2400.0
    assert later.out_of_range_s == 900.0


def test_a_monitored_leg_without_data_is_all_unmonitored() -> None:
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(30)), [], end_ms=m(30), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.readings == 0
    assert r.monitored_s == 0.0 and r.unmonitored_s == 1800.0
    assert r.mean_c is None and r.mkt_c is None and r.min_c is None


def test_a_dock_leg_is_all_unmonitored_with_no_readings() -> None:
    # Dock leg [0, 45): 2700 s unmonitored, whatever series is passed in.
    r = leg_report(
        Leg("store-1", None, m(0), m(45)), [(m(1), 3.0), (m(2), 4.0)], end_ms=m(45),
        cap_ms=10 * MIN, low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.readings == 0
    assert r.monitored_s == 0.0
    assert r.unmonitored_s == 2700.0
    assert (r.min_c, r.max_c, r.mean_c, r.mkt_c) == (None, None, None, None)
    assert r.out_of_range_s == 0.0


def test_excursion_ids_overlapping_the_leg_are_listed() -> None:
    # Leg [10, 40).
    before = exc(start=0, end=5)  # ended before the leg: not listed
    into = exc(start=0, end=15, rule="a")  # runs into the leg: listed
    inside = exc(start=30, end=35, rule="b")  # inside: listed
    still_open = exc(start=20, end=None, status="open", rule="c")  # open: listed
    at_end = exc(start=40, end=50, rule="d")  # starts when the leg ends: not listed
    after = exc(start=45, end=None, status="open", rule="e")  # after: not listed
    r = leg_report(
        Leg("truck-1", "c1", m(10), m(40)), [(m(10), 3.0)], end_ms=m(40), cap_ms=30 * MIN,
        low_c=0.0, high_c=4.0, excursions=[before, into, inside, still_open, at_end, after],
    )  # fmt: skip
    assert r.excursion_ids == (into.id, inside.id, still_open.id)


def test_excursions_of_an_open_leg_use_end_ms() -> None:
    # Open leg from 10, judged at 40: an excursion starting at 35 is inside it, one at 40 not.
    e35, e40 = exc(start=35, end=None, status="open"), exc(start=40, end=None, status="open")
    r = leg_report(
        Leg("truck-1", "c1", m(10), None), [], end_ms=m(40), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0, excursions=[e35, e40],
    )  # fmt: skip
    assert r.excursion_ids == (e35.id,)


# -- custody_gaps ----------------------------------------------------------------------------


def dock(start: float, end: float | None, asset: str = "store-1") -> Leg:
    return Leg(asset, None, m(start), None if end is None else m(end))


@pytest.mark.parametrize(
    ("duration_ms", "expected"),
    [
        (LIMIT - 1, None),  # just under 30 min: allowed
        (LIMIT, None),  # exactly 30 min: allowed ("longer than" the limit)
        (LIMIT + 1, "warning"),  # 1 ms over
        (2 * LIMIT, "warning"),  # exactly twice: still a warning
        (2 * LIMIT + 1, "critical"),  # more than twice the limit
    ],
)
def test_dock_leg_against_the_limit(duration_ms: int, expected: str | None) -> None:
    leg = Leg("store-1", None, T0, T0 + duration_ms)
    gaps = custody_gaps("SHP-1", [leg], now_ms=m(500), profile="chilled")
    if expected is None:
        assert gaps == []
        return
    (gap,) = gaps
    assert gap.severity == expected
    assert gap.kind == "custody_gap" and gap.rule == "custody_gap"
    assert gap.asset_id == "store-1" and gap.compartment_id == "dock:SHP-1"
    assert gap.status == "closed"
    # It starts when the allowed 30 min run out and ends when the leg ends.
    assert gap.start_ms == T0 + LIMIT
    assert gap.end_ms == T0 + duration_ms
    assert gap.detected_ms == m(500)
    assert gap.profile == "chilled"


def test_open_dock_leg_is_judged_against_now() -> None:
    leg = dock(0, None)
    assert custody_gaps("SHP-1", [leg], now_ms=m(20)) == []  # 20 min so far
    assert custody_gaps("SHP-1", [leg], now_ms=m(30)) == []  # exactly 30
    (gap,) = custody_gaps("SHP-1", [leg], now_ms=m(45))  # 45 > 30
    assert (gap.status, gap.end_ms, gap.severity) == ("open", None, "warning")
    assert gap.start_ms == m(30)
    assert "45 min (allowed 30)" in gap.detail
    (later,) = custody_gaps("SHP-1", [leg], now_ms=m(61))  # 61 > 2 x 30
    assert later.severity == "critical"
    # Still the same excursion: its id does not depend on now.
    assert later.id == gap.id


def test_custody_gap_ids_are_deterministic() -> None:
    legs = [dock(0, 50), Leg("truck-1", "c1", m(50), m(200)), dock(200, 300, "truck-1")]
    a = custody_gaps("SHP-1", legs, now_ms=m(400))
    b = custody_gaps("SHP-1", legs, now_ms=m(999))
    assert [g.id for g in a] == [g.id for g in b]
    assert len({g.id for g in a}) == 2
    assert a[0].id == excursion_id("store-1", "dock:SHP-1", "custody_gap", m(30))
    assert a[1].id == excursion_id("truck-1", "dock:SHP-1", "custody_gap", m(230))
    # Another shipment on the same dock at the same time is another excursion.
    other = custody_gaps("SHP-2", legs, now_ms=m(400))
    assert {g.id for g in other}.isdisjoint({g.id for g in a})


def test_monitored_legs_never_produce_gaps() -> None:
    legs = [
        Leg("truck-1", "c1", m(0), m(600)),  # 10 h in a compartment
        Leg("store-1", "z1", m(600), None),  # open, in a zone
    ]
    assert custody_gaps("SHP-1", legs, now_ms=m(5000)) == []


def test_unmonitored_time_adds_up_across_a_handover() -> None:
    # Truck unload at 0 (truck's dock), handover on the store's dock at 20, load into the zone
    # at 40: 40 min without monitoring, although neither dock leg alone exceeds 30 min.
    legs = [
        Leg("truck-1", "c1", m(-120), m(0)),
        dock(0, 20, "truck-1"),
        dock(20, 40, "store-1"),
        Leg("store-1", "z1", m(40), None),
    ]
    (gap,) = custody_gaps("SHP-1", legs, now_ms=m(100))
    assert gap.start_ms == m(30)  # 0 + 30 min allowed
    assert gap.end_ms == m(40)
    assert gap.asset_id == "store-1"  # it was on the store's dock when the 30 min ran out
    assert gap.severity == "warning"  # 40 <= 60
    assert "truck-1 then store-1 for 40 min" in gap.detail
    # Dock stretches separated by a monitored leg do not add up: 20 + 20 min, no gap.
    split = [dock(0, 20, "truck-1"), Leg("truck-1", "c1", m(20), m(25)), dock(25, 45)]
    assert custody_gaps("SHP-1", split, now_ms=m(100)) == []


# -- verdict ---------------------------------------------------------------------------------


def report(comp: str | None = "c1", readings: int = 10) -> LegReport:
    return LegReport(Leg("truck-1", comp, m(0), m(60)), readings=readings)


@pytest.mark.parametrize("kind", ["range", "hard_limit", "cumulative", "mkt"])
@pytest.mark.parametrize("severity", ["warning", "critical"])
def test_a_temperature_excursion_gives_excursion(kind: RuleKind, severity: Severity) -> None:
    e = exc(kind, rule=f"my_{kind}", severity=severity)
    v, reasons = verdict([report()], [e])
    assert v == "excursion"
    assert reasons == [f"{kind} my_{kind} on truck-1/c1 ({severity}); {kind} detail"]


def test_excursion_outranks_gaps() -> None:
    e = replace(exc("hard_limit", rule="hard_high", severity="critical"), detail="")
    gap = exc("data_gap", rule="gap", status="open", end=None)
    v, reasons = verdict([report(readings=0)], [gap, e])
    assert v == "excursion"
    assert reasons == ["hard_limit hard_high on truck-1/c1 (critical)"]


def test_reasons_name_the_time_out_of_range_the_return_and_overlapping_doors() -> None:
    # Range 10..40 out of range 1500 s, back at 35; doors of the same compartment at 5..30
    # (overlaps) and 50..55 (does not), one on another compartment (does not).
    e = replace(exc("range", start=10, end=40), out_of_range_s=1500.0, returned_ms=m(35))
    door = exc("door_open", rule="door", start=5, end=30)
    later = exc("door_open", rule="door", start=50, end=55)
    elsewhere = exc("door_open", rule="door", start=5, end=30, comp="c2")
    still = exc("door_open", rule="door_rear", start=38, end=None, status="open")
    v, reasons = verdict([report()], [door, e, later, elsewhere, still])
    assert v == "excursion"
    assert reasons == [
        "range range on truck-1/c1 (warning): out of range 1500 s, back within limits at "
        "2026-09-21T14:48:20Z; range detail; door_open door 2026-09-21T14:18:20Z to "
        "2026-09-21T14:43:20Z; door_open door_rear 2026-09-21T14:51:20Z to still open"
    ]
    # still outside: no return yet
    out = replace(e, status="open", end_ms=None, returned_ms=None, detail="")
    assert verdict([report()], [out])[1] == [
        "range range on truck-1/c1 (warning): out of range 1500 s"
    ]


def test_info_superseded_and_non_temperature_excursions_do_not_count() -> None:
    quiet = [
        exc("range", severity="info"),
        exc("range", severity="critical", superseded=True),
        exc("door_open", rule="door", severity="warning"),
        exc("setpoint", severity="warning"),
        exc("sensor_fault", rule="stuck", severity="warning"),
    ]
    assert verdict([report()], quiet) == ("compliant", [])


@pytest.mark.parametrize("kind", ["data_gap", "custody_gap"])
def test_evidence_gaps_give_incomplete(kind: RuleKind) -> None:
    e = exc(kind, status="open", end=None)
    v, reasons = verdict([report()], [e])
    assert v == "incomplete"
    assert reasons == [f"{kind} on truck-1/c1: {kind} detail"]


def test_recovered_and_superseded_gaps_do_not_count() -> None:
    recovered = exc("data_gap", rule="gap", status="recovered")
    superseded = exc("data_gap", rule="gap", start=5, superseded=True)
    assert verdict([report()], [recovered, superseded]) == ("compliant", [])


def test_a_monitored_leg_without_readings_is_incomplete() -> None:
    v, reasons = verdict([report(), report("c2", readings=0)], [])
    assert v == "incomplete"
    assert reasons == ["no readings on truck-1/c2"]


def test_dock_legs_need_no_readings() -> None:
    assert verdict([report(), report(None, readings=0)], []) == ("compliant", [])


def test_custody_gap_from_custody_gaps_makes_the_trace_incomplete() -> None:
    legs = [Leg("truck-1", "c1", m(0), m(60)), dock(60, 120), Leg("store-1", "z1", m(120), None)]
    gaps = custody_gaps("SHP-1", legs, now_ms=m(200))
    reports = [LegReport(leg, readings=0 if leg.compartment_id is None else 5) for leg in legs]
    v, reasons = verdict(reports, gaps)
    assert v == "incomplete"
    assert reasons == [
        "custody_gap on store-1/dock:SHP-1: shipment SHP-1 unmonitored at store-1 for 60 min "
        "(allowed 30)"
    ]


def test_nothing_is_compliant() -> None:
    assert verdict([report(), report("c2")], []) == ("compliant", [])
    assert verdict([], []) == ("compliant", [])


# -- issue 9 ---------------------------------------------------------------------------------

T_DOOR = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def test_door_allowance_does_not_hide_the_excursion_from_the_verdict() -> None:
    # docs/rules.md 14 (and 4.1): chilled truck-st-01/main standing at a loading stop, door
    # open 0..25, 5.0 degC at 1..25: the door raised a warning, the range rule held back its
    # live alarm - and the shipment on board is not compliant.
    chilled = load_presets()["chilled"]
    prof = Profile(
        name="chilled", rules=tuple(r for r in chilled.rules if r.name in {"range", "door"})
    )
    sp = CompartmentSpec("truck-st-01", "main", "vehicle", [("main-prod", "product")])
    temps = [3.0] + [5.0] * 25 + [3.5] * 15  # minutes 0..40
    observations = [
        make_observation(
            sp,
            T_DOOR + i * MIN,
            {"main-prod": t},
            door_open=i < 25,
            speed_kmh=0.0,
        )
        for i, t in enumerate(temps)
    ]
    excursions = sorted(
        evaluate(sp, prof, observations).excursions.values(), key=lambda e: e.start_ms
    )
    leg = Leg("truck-st-01", "main", T_DOOR, T_DOOR + 40 * MIN)
    series = [(o.ts, o.hi) for o in observations if o.hi is not None]
    r = leg_report(
        leg, series, end_ms=leg.to_ms or 0, cap_ms=10 * MIN, low_c=0.0, high_c=4.0,
        excursions=excursions,
    )  # fmt: skip
    assert (r.readings, r.max_c, r.out_of_range_s) == (40, 5.0, 1500.0)
    v, reasons = verdict([r], excursions)
    assert v == "excursion"
    assert reasons == [
        "range range on truck-st-01/main (warning): out of range 1500 s, back within limits at "
        "2026-01-05T00:26:00Z; door open at a stop: the door allowance (10 min) held back the "
        "live alarm; door_open door 2026-01-05T00:00:00Z to 2026-01-05T00:25:00Z"
    ]


def test_control_series_drops_implausible_values_before_the_mean() -> None:
    by_role = {
        "product": {m(0): [-19.0], m(1): [-19.0, -18.0], m(2): [85.0], m(3): [85.0, -19.0]},
        "air": {m(0): [-21.0], m(2): [-21.0]},
    }
    assert control_series(by_role, (-60.0, 60.0)) == [
        (m(0), -19.0),
        (m(1), -18.5),
        (m(3), -19.0),
    ]
    assert control_series(by_role) == [
        (m(0), -19.0),
        (m(1), -18.5),
        (m(2), 85.0),
        (m(3), 33.0),
    ]
    # a window whose product values are all implausible falls back to the air probes
    only_bad = {"product": {m(0): [85.0]}, "air": {m(0): [-21.0]}}
    assert control_series(only_bad, (-60.0, 60.0)) == [(m(0), -21.0)]
    assert control_series({}, (-60.0, 60.0)) == []


def test_power_on_value_is_not_in_the_trace() -> None:
    # docs/rules.md 4.9 / 14: frozen product -19, -19, 85.0, -19, -19 (one a minute).
    by_role = {"product": {m(i): [v] for i, v in enumerate([-19.0, -19.0, 85.0, -19.0, -19.0])}}
    leg = Leg("truck-1", "c1", m(0), m(5))
    series = control_series(by_role, (-60.0, 60.0))
    r = leg_report(leg, series, end_ms=m(5), cap_ms=10 * MIN, low_c=None, high_c=-18.0)
    assert (r.readings, r.max_c, r.min_c, r.out_of_range_s) == (4, -19.0, -19.0, 0.0)
    assert r.mkt_c == pytest.approx(-19.0) and r.mean_c == pytest.approx(-19.0)
    assert r.monitored_s == 300.0
    assert verdict([r], []) == ("compliant", [])
    # before issue 9 the raw series said max 85.0 and MKT ~51 degC
    raw = leg_report(
        leg, control_series(by_role), end_ms=m(5), cap_ms=10 * MIN, low_c=None, high_c=-18.0
    )
    assert raw.max_c == 85.0 and raw.mkt_c is not None and raw.mkt_c > 50
