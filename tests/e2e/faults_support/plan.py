"""The fault suite's load: a deterministic set of QoS 1 messages with known excursions.

Device time runs from a fixed anchor (UTC midnight seven days before the plan is built, so the
same anchor serves a whole test session and every run compares exactly; inside the contract's
30-day window for telemetry and custody events) in steps of one minute. At each step every
active device publishes one sample with all four probes (frozen ``c1``, chilled ``c2``, air and
product), so no asset is ever silent in device time and no data gap can come from the data:
the rules' wall-clock silence clock (docs/rules.md section 13) needs ten minutes of quiet to
open a gap, far beyond any fault here, so baseline and fault runs see the same excursions.

What the data holds (``S`` steps; ``F`` the step at which 40 % of the messages are out, where
the fault is injected; one compartment per line):

| asset | data (degC, minutes) | rules hit |
|---|---|---|
| truck 0, c2 | 5.2 for 40 from 0.10 S; 9.5 for 4 from 0.25 S | range; hard_high |
| truck 1, c2 | 6.0 from F-60 to F+30: opened F-40, escalated F-30, open across the fault | range |
| truck 5, c2 | joins at F-8 (no checkpoint holds it at the fault), 5.5 for 30: opens F+12 | range |
| truck 2, c1 | -16 for 45 from 0.60 S | frozen range |
| truck 3, c2 | -3 for 3 from 0.80 S | hard_low |
| truck 4, c2 | load/unload scans: at 0.05 S, six from F+5 to F+90, at 0.90 and 0.92 S | custody |

Lifecycle changes stay tens of messages away from the fault instant, so an alert in flight at
that very moment (whose MQTT-level redelivery is the broker's business) cannot blur what the
cases count. Everything else is noise of +-0.4 degC around -20 / 2 degC: no sensor-fault rule
can fire (two probes of different kinds per compartment, never a frozen value).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

from coldchain.contract import device_topic
from coldchain.fleet import Fleet
from simulators.loadgen import make_fleet

__all__ = ["STEP_MS", "Plan", "Planned", "anchor_ms", "build_plan", "shipment_id"]

STEP_MS = 60_000
FAULT_FRACTION = 0.4
MIN_STEPS = 400
_BASE_C = {"c1": -20.0, "c2": 2.0}
_LATE, _SPANNING, _CUSTODY = 5, 1, 4  # asset indexes with a role


@dataclass(frozen=True, slots=True)
class Window:
    """``temp_c`` on one compartment for steps [start, start + minutes): breaks ``rule``."""

    asset: int
    compartment: str
    start: int
    minutes: int
    temp_c: float
    rule: str


@dataclass(frozen=True, slots=True)
class Planned:
    """One message: what the publisher sends and what it must become."""

    topic: str
    payload: bytes
    step: int
    # (asset, sensor, ts_ms, temp_c) of every reading: what InfluxDB must hold once acknowledged
    readings: tuple[tuple[str, str, int, float], ...] = ()
    # (shipment, action, asset, compartment, ts_ms): what the registry must hold
    custody: tuple[str, str, str, str, int] | None = None


@dataclass(frozen=True)
class Plan:
    fleet: Fleet
    start_ms: int
    steps: int
    messages: list[Planned]
    shipments: tuple[str, ...]
    windows: tuple[Window, ...]

    def fault_index(self, fraction: float = FAULT_FRACTION) -> int:
        """The message index at which a fault is injected."""
        return int(len(self.messages) * fraction)

    def fault_step(self, fraction: float = FAULT_FRACTION) -> int:
        return self.messages[self.fault_index(fraction)].step

    @property
    def tail_index(self) -> int:
        """The last 5 % of the messages are published only once the run settled after the
        fault: they show that ingest receives again."""
        return int(len(self.messages) * 0.95)

    def expected_excursions(self) -> set[tuple[str, str, str, int]]:
        """(asset, compartment, rule, start_ms) of the scripted excursions, and only those."""
        assets = self.asset_ids
        return {
            (assets[w.asset], w.compartment, w.rule, self.start_ms + w.start * STEP_MS)
            for w in self.windows
        }

    @property
    def escalated(self) -> tuple[str, str, str]:
        """(asset, compartment, rule) of the one excursion that escalates (2 degC over the
        chilled range for 30 min: 60 degree-minutes)."""
        return self.asset_ids[_SPANNING], "c2", "range"

    @property
    def asset_ids(self) -> list[str]:
        return list(self.fleet.assets)


def anchor_ms(now_s: float | None = None) -> int:
    """UTC midnight seven days ago, in epoch ms: a fixed past epoch for one session."""
    now = time.time() if now_s is None else now_s
    return (int(now) // 86_400 - 7) * 86_400_000


def _iso(ts_ms: int) -> str:
    secs, ms = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def shipment_id(n: int) -> str:
    return f"flt-shp-{n}"


def build_plan(steps: int, devices: int = 6, start_ms: int | None = None, seed: int = 8) -> Plan:
    """``steps`` minutes of ``devices`` trucks (at least 6: the roles above), plus the scans.

    Raises ValueError when the run is too short for the scripted excursions to fit.
    """
    if steps < MIN_STEPS or devices < 6:
        raise ValueError(f"need at least {MIN_STEPS} steps and 6 devices")
    start = anchor_ms() if start_ms is None else start_ms
    # The script hangs on the fault step, which depends on when the late truck joins: settle
    # it by iterating (two or three rounds).
    fault = int(FAULT_FRACTION * steps)
    for _ in range(10):
        plan = _build(steps, devices, start, seed, fault)
        if plan.fault_step() == fault:
            return plan
        fault = plan.fault_step()
    raise AssertionError("fault step did not settle")  # pragma: no cover


def _build(steps: int, devices: int, start: int, seed: int, fault: int) -> Plan:
    def f(frac: float) -> int:
        return int(frac * steps)

    windows = (
        Window(0, "c2", f(0.10), 40, 5.2, "range"),
        Window(0, "c2", f(0.25), 4, 9.5, "hard_high"),
        Window(_SPANNING, "c2", fault - 60, 90, 6.0, "range"),
        Window(_LATE, "c2", fault - 8, 30, 5.5, "range"),
        Window(2, "c1", f(0.60), 45, -16.0, "range"),
        Window(3, "c2", f(0.80), 3, -3.0, "hard_low"),
    )
    # (shipment number, action, step)
    scans = (
        (1, "load", f(0.05)),
        (2, "load", fault + 5),
        (3, "load", fault + 15),
        (1, "unload", fault + 25),
        (4, "load", fault + 40),
        (2, "unload", fault + 60),
        (5, "load", fault + 90),
        (3, "unload", f(0.90)),
        (4, "unload", f(0.92)),
    )
    fleet = make_fleet(devices, prefix="flt")
    assets = list(fleet.assets.values())
    rng = random.Random(seed)
    by_comp: dict[tuple[int, str], list[Window]] = {}
    for w in windows:
        by_comp.setdefault((w.asset, w.compartment), []).append(w)
    scans_at: dict[int, list[tuple[int, str]]] = {}
    for n, action, k in scans:
        scans_at.setdefault(k, []).append((n, action))
    late_from = fault - 8
    seqs = [0] * devices
    event_seq = 0
    messages: list[Planned] = []
    for k in range(steps):
        ts = start + k * STEP_MS
        for a, asset in enumerate(assets):
            if a == _LATE and k < late_from:
                continue
            temps: dict[str, float] = {}
            for compartment in asset.compartments:
                level, spread = _BASE_C[compartment.id], 0.4
                for w in by_comp.get((a, compartment.id), ()):
                    if w.start <= k < w.start + w.minutes:
                        level, spread = w.temp_c, 0.2
                for sensor in compartment.sensors:
                    temps[sensor.id] = round(level + rng.uniform(-spread, spread), 2)
            seqs[a] += 1
            device = asset.devices[0]
            body = {"v": 1, "device_id": device, "ts": _iso(ts), "seq": seqs[a], "temps_c": temps}
            messages.append(
                Planned(
                    device_topic(device),
                    json.dumps(body, separators=(",", ":")).encode(),
                    k,
                    tuple((asset.id, s, ts, t) for s, t in temps.items()),
                )
            )
        for n, action in scans_at.get(k, ()):
            asset = assets[_CUSTODY]
            device = asset.devices[0]
            event_seq += 1
            scan_ts = ts + STEP_MS // 2
            event = {
                "v": 1,
                "device_id": device,
                "ts": _iso(scan_ts),
                "seq": event_seq,
                "type": "custody",
                "action": action,
                "shipment_id": shipment_id(n),
                "asset_id": asset.id,
                "compartment_id": "c2",
                "actor": "dock-7",
            }
            messages.append(
                Planned(
                    device_topic(device, "events"),
                    json.dumps(event, separators=(",", ":")).encode(),
                    k,
                    custody=(shipment_id(n), action, asset.id, "c2", scan_ts),
                )
            )
    shipments = tuple(sorted({shipment_id(n) for n, _, _ in scans}))
    return Plan(fleet, start, steps, messages, shipments, windows)
