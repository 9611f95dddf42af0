"""The fault suite's load (tests/e2e/faults_support/plan.py), without services: contract-valid,
deterministic, and its script placed around the fault as the e2e cases rely on."""

from __future__ import annotations

import pytest

from coldchain.contract import parse_message
from coldchain.contract.events import CustodyEvent, parse_event
from tests.e2e.faults_support.plan import STEP_MS, build_plan

START_MS = 1_700_006_400_000  # a UTC midnight


@pytest.mark.parametrize(("steps", "devices"), [(400, 6), (440, 6), (700, 12)])
def test_every_message_is_contract_valid_and_says_what_it_carries(steps: int, devices: int) -> None:
    plan = build_plan(steps, devices, start_ms=START_MS)
    readings = custody = 0
    for m in plan.messages:
        if m.topic.endswith("/telemetry"):
            msg = parse_message(m.payload)
            sample = msg.samples_list()[0]
            ts_ms = int(sample.ts.timestamp() * 1000)
            carried = {(s, ts_ms, t) for s, t in (sample.temps_c or {}).items()}
            assert carried == {(s, ts, t) for _, s, ts, t in m.readings}
            readings += len(m.readings)
        else:
            event = parse_event(m.payload)
            assert isinstance(event, CustodyEvent)
            assert m.custody == (
                event.shipment_id,
                event.action,
                event.asset_id,
                event.compartment_id,
                int(event.ts.timestamp() * 1000),
            )
            custody += 1
    assert custody == 9 and set(plan.shipments) == {f"flt-shp-{n}" for n in range(1, 6)}
    assert readings == 4 * sum(m.topic.endswith("/telemetry") for m in plan.messages)


def test_the_same_arguments_give_the_same_messages() -> None:
    a, b = build_plan(440, start_ms=START_MS), build_plan(440, start_ms=START_MS)
    assert [m.payload for m in a.messages] == [m.payload for m in b.messages]


@pytest.mark.parametrize(("steps", "devices"), [(400, 6), (440, 6), (1000, 12)])
def test_the_script_hangs_on_the_fault_step(steps: int, devices: int) -> None:
    plan = build_plan(steps, devices, start_ms=START_MS)
    fault = plan.fault_step()
    first_step = {}
    for m in plan.messages:
        first_step.setdefault(m.topic, m.step)
    late = plan.fleet.assets["flt-truck-0005"].devices[0]
    # The late truck joins shortly before the fault: no checkpoint can hold it yet.
    assert first_step[f"coldchain/v1/devices/{late}/telemetry"] == fault - 8
    spanning = next(w for w in plan.windows if w.asset == 1)
    assert spanning.start + 30 <= fault - 30  # opened and escalated well before the fault
    assert spanning.start + spanning.minutes > fault  # still open at the fault
    scans_after = [m.step for m in plan.messages if m.custody and fault < m.step <= fault + 90]
    assert len(scans_after) == 6  # they arrive while the registry is locked
    starts = {e[3] for e in plan.expected_excursions()}
    assert len(starts) == len(plan.windows) == 6
    assert all((s - START_MS) % STEP_MS == 0 for s in starts)
