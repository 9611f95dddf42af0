"""coldchain.custody, the pure part: which custody scans cannot have happened, when the trace
may flag them (grace period), and the fleet and clock checks a scan from a business system
must pass (the same as an MQTT scan's)."""

from __future__ import annotations

import itertools
from typing import Literal

import pytest

from coldchain.custody import (
    CustodyScan,
    fleet_problem,
    sequence_problems,
    settled_problems,
    time_problem,
)
from coldchain.trace import Leg, LegReport, verdict
from tests.unit.support import fleet

T0 = 1_790_000_000_000
MIN = 60_000
Action = Literal["load", "unload", "handover", "deliver"]
_order = itertools.count(1)


def scan(
    action: Action,
    asset: str,
    comp: str | None,
    minute: float,
    *,
    received: float | None = None,
) -> CustodyScan:
    n = next(_order)
    t = T0 + round(minute * MIN)
    return CustodyScan(
        action=action,
        asset_id=asset,
        compartment_id=comp,
        ts_ms=t,
        order=n,
        received_ms=t if received is None else T0 + round(received * MIN),
        ref=f"#{n}",
    )


def codes(scans: list[CustodyScan]) -> list[tuple[str, str]]:
    return [(p.code, p.scan.ref) for p in sequence_problems(scans)]


def test_the_usual_journeys_are_possible() -> None:
    # The trace service's fixture journey and the simulator's store pick-up: no problem.
    journey = [
        scan("load", "truck-1", "c1", 0),
        scan("unload", "truck-1", "c1", 60),
        scan("handover", "store-1", None, 61),
        scan("load", "store-1", "z1", 111),
        scan("deliver", "store-1", None, 171),
    ]
    pickup = [
        scan("load", "store-1", "z1", 0),
        scan("unload", "store-1", "z1", 100),
        scan("handover", "store-1", None, 101),
        scan("load", "truck-1", "c1", 102),
        scan("unload", "truck-1", None, 200),  # no compartment named: from the truck
        scan("deliver", "truck-1", None, 201),
    ]
    # A transfer scanned only at the destination, and a same-millisecond transfer.
    transfer = [
        scan("load", "truck-1", "c1", 0),
        scan("load", "truck-2", "c1", 30),
        scan("load", "store-1", "z1", 60),
        scan("unload", "truck-2", "c1", 60),  # same millisecond: judged out before in
    ]
    for scans in (journey, pickup, transfer):
        assert codes(scans) == []
        # Arrival order does not matter: device time does.
        assert codes(list(reversed(scans))) == []


def test_an_unload_of_what_is_not_loaded_says_where_the_shipment_was() -> None:
    never = scan("unload", "truck-1", "c1", 5)
    assert [p.message for p in sequence_problems([never])] == [
        f"unload {never.ref} from truck-1/c1 at 2026-09-21T14:18:20Z: the shipment was not "
        "loaded anywhere"
    ]
    load = scan("load", "truck-1", "c1", 0)
    other_truck = scan("unload", "truck-2", None, 10)
    (p,) = sequence_problems([load, other_truck])
    assert p.code == "unload_not_loaded" and p.scan is other_truck
    assert "not on truck-2 (it was in truck-1/c1 since 2026-09-21T14:13:20Z)" in p.message
    twice = scan("unload", "truck-1", "c1", 20)
    first = scan("unload", "truck-1", "c1", 10)
    (p,) = sequence_problems([load, twice, first])  # judged in device time, not arrival
    assert p.scan is twice and "on its dock since 2026-09-21T14:23:20Z: unloaded already" in (
        p.message
    )
    wrong_comp = scan("unload", "truck-1", "c2", 10)
    (p,) = sequence_problems([load, wrong_comp])
    assert "was in truck-1/c1 since" in p.message and "not in c2" in p.message


def test_scans_after_the_delivery_and_a_delivery_without_custody() -> None:
    load, deliver = scan("load", "truck-1", "c1", 0), scan("deliver", "truck-1", None, 10)
    late_load = scan("load", "truck-2", "c1", 20)
    late_unload = scan("unload", "truck-2", "c1", 30)
    problems = sequence_problems([late_unload, deliver, load, late_load])
    # Flagged once: the load after the delivery resumes custody, so its unload is possible.
    assert [(p.code, p.scan) for p in problems] == [("after_delivery", late_load)]
    assert "delivered at 2026-09-21T14:23:20Z" in problems[0].message
    lone = scan("deliver", "store-1", None, 0)
    assert codes([lone]) == [("deliver_not_in_custody", lone.ref)]
    again = scan("deliver", "store-1", None, 15)
    # A second delivery: one reason for it (after the delivery), not two.
    assert codes([load, deliver, again]) == [("after_delivery", again.ref)]


def test_a_problem_is_flagged_only_once_every_scan_it_depends_on_had_its_grace() -> None:
    load = scan("load", "truck-1", "c1", 0, received=0)
    bad = scan("unload", "truck-2", None, 30, received=30)
    hour = 60 * MIN

    def flagged(now_min: float, scans: list[CustodyScan], at_min: float = 1e6) -> list[str]:
        at = T0 + round(at_min * MIN)
        now = T0 + round(now_min * MIN)
        return [p.scan.ref for p in settled_problems(scans, at_ms=at, now_ms=now, grace_ms=hour)]

    assert flagged(89, [load, bad]) == []  # received 59 min ago: a late scan may explain it
    assert flagged(90, [load, bad]) == [bad.ref]
    # A scan timed before the problem arrives late: the grace restarts from its arrival...
    late_other = scan("handover", "truck-1", None, 20, received=100)
    assert flagged(150, [load, bad, late_other]) == []
    assert flagged(160, [load, bad, late_other]) == [bad.ref]
    # ... and the missing load onto truck-2, arriving late, explains it away for good.
    fix = scan("load", "truck-2", "c1", 25, received=200)
    assert flagged(1000, [load, bad, fix]) == []
    # As of a device time before the impossible scan, there is nothing to flag.
    assert flagged(1000, [load, bad], at_min=29) == []


def test_the_verdict_names_integrity_problems() -> None:
    load = scan("load", "truck-1", "c1", 0)
    (p,) = sequence_problems([load, scan("unload", "truck-2", None, 10)])
    reason = p.reason()
    assert reason.startswith("custody integrity (unload_not_loaded): unload ")
    assert verdict([], [], [reason]) == ("incomplete", [reason])
    assert verdict([], [], []) == ("compliant", [])
    leg = LegReport(Leg("truck-1", "c1", T0, None))
    v, reasons = verdict([leg], [], [reason])
    assert v == "incomplete" and reasons == ["no readings on truck-1/c1", reason]


def test_fleet_and_time_checks_name_the_field_and_rule() -> None:
    f = fleet()
    assert fleet_problem("truck-1", "front", f) is None
    assert fleet_problem("truck-1", None, f) is None
    assert fleet_problem("truck-9", None, f) == (
        "asset_id",
        "asset 'truck-9' is not registered in the fleet",
    )
    assert fleet_problem("truck-1", "middle", f) == (
        "compartment_id",
        "compartment 'middle' is not a compartment of truck-1 (it has front, rear)",
    )
    kw = {"max_future_skew_s": 300.0, "max_age_s": 86400.0}
    assert time_problem(T0 + 300_000, T0, **kw) is None
    assert time_problem(T0 - 86_400_000, T0, **kw) is None
    ahead = time_problem(T0 + 301_000, T0, **kw)
    assert ahead is not None and ahead.startswith(
        "2026-09-21T14:18:21Z is 301 s after the server's clock (2026-09-21T14:13:20Z)"
    )
    old = time_problem(T0 - 86_400_001, T0, **kw)
    assert old is not None and "more than 86400 s (1 days) before" in old


@pytest.mark.parametrize("action", ["load", "handover"])
def test_loads_and_handovers_are_never_impossible(action: Action) -> None:
    # Whatever came before (even nothing), a load or handover moves the shipment.
    assert codes([scan(action, "truck-1", "c1", 0)]) == []
    assert codes([scan("load", "store-1", "z1", 0), scan(action, "truck-2", None, 5)]) == []
