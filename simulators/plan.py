"""Everything scheduled before the physics runs: what happens at each truck stop (doors, custody
scans on both the truck's and the store's device), store door traffic, fault doors and alarms.

Trucks' trips are planned first (motion depends on nothing else), so a store knows when the
truck that unloads into it will arrive. Every scheduled thing is also written to the truth.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from typing import Any

from simulators.asset import Action
from simulators.compartment import defrost_windows
from simulators.scenario import Fault, Scenario, Transfer
from simulators.store import door_traffic
from simulators.truck import TripPlan
from simulators.truth import TruthRecorder

__all__ = ["Planner"]

_BACK_IN_S = 180.0  # reversing onto the dock and opening up
_PER_PALLET_S = 150.0
_ZONE_DOOR_S = 40.0  # a forklift through a zone door with a pallet

_FAULT_PARAMS: dict[str, tuple[str, ...]] = {
    "compressor_failure": ("capacity_fraction", "alarm_code"),
    "wrong_setpoint": ("setpoint_c",),
    "sensor_stuck": ("value_c",),
    "clock_skew": ("offset_s",),
    "coverage_loss": ("batch_max", "upload_delay_s"),
    "duplicate_publish": ("probability",),
}


class Planner:
    def __init__(self, scenario: Scenario, truth: TruthRecorder) -> None:
        self.scenario = scenario
        self.truth = truth
        self.actions: dict[str, list[Action]] = defaultdict(list)
        self._order = itertools.count()
        self._devices = {t.id: t.device_id for t in scenario.trucks}
        self._devices.update({s.id: s.device_id for s in scenario.stores})

    def _add(self, asset_id: str, t_s: float, **kw: Any) -> None:
        if 0.0 <= t_s < self.scenario.duration_s:
            self.actions[asset_id].append(Action(t_s, next(self._order), **kw))

    def door(self, asset_id: str, comp_id: str, t0: float, t1: float, cause: str) -> None:
        t0 = max(0.0, t0)
        t1 = min(t1, self.scenario.duration_s)
        if t1 <= t0:
            return
        docked = cause == "stop"
        for t, opens in ((t0, True), (t1, False)):
            event = {"type": "door", "asset_id": asset_id, "compartment_id": comp_id, "open": opens}
            self._add(asset_id, t, door=(comp_id, opens, docked), event=event)
        self.truth.doors.append(
            {
                "asset_id": asset_id,
                "compartment_id": comp_id,
                "start": self.truth.iso(t0),
                "end": self.truth.iso(t1),
                "cause": cause,
            }
        )

    def custody(
        self,
        t_s: float,
        scanned_on: str,
        action: str,
        shipment: str,
        asset_id: str,
        comp_id: str | None,
        actor: str,
    ) -> None:
        t_s = max(0.0, t_s)
        if t_s >= self.scenario.duration_s:
            return
        body = {
            "type": "custody",
            "action": action,
            "shipment_id": shipment,
            "asset_id": asset_id,
            "compartment_id": comp_id,
            "actor": actor,
        }
        self._add(scanned_on, t_s, event=body)
        self.truth.custody.append(
            {"ts": self.truth.iso(t_s), **body, "device_id": self._devices[scanned_on]}
        )

    def plan_stops(self, trips: dict[str, TripPlan]) -> None:
        stores = {s.id: s for s in self.scenario.stores}
        for truck in self.scenario.trucks:
            trip = trips[truck.id]
            for i, stop in enumerate(truck.route.stops):
                if i >= len(trip.arrive_s):
                    break
                arrive = trip.arrive_s[i] if i > 0 else truck.route.depart_s - stop.dwell_s
                moves: list[tuple[str, Transfer]] = [
                    *(("unload", tr) for tr in stop.unload),
                    *(("load", tr) for tr in stop.load),
                ]
                if not moves:
                    continue
                usable = max(60.0, stop.dwell_s - 2 * _BACK_IN_S)
                spacing = min(_PER_PALLET_S, usable / len(moves))
                first_at: dict[str, float] = {}
                last_at: dict[str, float] = {}
                for k, (what, tr) in enumerate(moves):
                    t = arrive + _BACK_IN_S + (k + 0.5) * spacing
                    first_at.setdefault(tr.compartment, t)
                    last_at[tr.compartment] = t
                    store = stores.get(tr.store) if tr.store else None
                    if what == "unload":
                        self.custody(t, truck.id, "unload", tr.shipment, truck.id,
                                     tr.compartment, truck.driver)  # fmt: skip
                        if store is not None and tr.zone is not None:
                            self.custody(t + 30.0, store.id, "handover", tr.shipment, store.id,
                                         None, store.staff)  # fmt: skip
                            t_in = t + max(60.0, tr.dock_dwell_s)
                            self.custody(t_in, store.id, "load", tr.shipment, store.id, tr.zone,
                                         store.staff)  # fmt: skip
                            self.door(store.id, tr.zone, t_in - _ZONE_DOOR_S / 2,
                                      t_in + _ZONE_DOOR_S / 2, "custody")  # fmt: skip
                        else:
                            # No store named: the consignee signs for it at this stop.
                            self.custody(t + 30.0, truck.id, "deliver", tr.shipment, truck.id,
                                         None, f"consignee-{stop.city}")  # fmt: skip
                    else:
                        if store is not None and tr.zone is not None:
                            t_out = t - max(60.0, tr.dock_dwell_s)
                            self.door(store.id, tr.zone, t_out - _ZONE_DOOR_S / 2,
                                      t_out + _ZONE_DOOR_S / 2, "custody")  # fmt: skip
                            self.custody(t_out, store.id, "unload", tr.shipment, store.id,
                                         tr.zone, store.staff)  # fmt: skip
                            self.custody(t - 30.0, store.id, "handover", tr.shipment, store.id,
                                         None, truck.driver)  # fmt: skip
                        self.custody(t, truck.id, "load", tr.shipment, truck.id, tr.compartment,
                                     truck.driver)  # fmt: skip
                for comp_id, t0 in first_at.items():
                    self.door(truck.id, comp_id, t0 - 60.0, last_at[comp_id] + 60.0, "stop")

    def plan_store_traffic(self, rngs: dict[str, random.Random]) -> None:
        start = self.truth.start
        hour_utc = start.hour + start.minute / 60.0 + start.second / 3600.0
        start_local = (hour_utc + self.scenario.utc_offset_h) % 24.0
        for store in self.scenario.stores:
            for zone_id, t0, t1 in door_traffic(
                store, self.scenario.duration_s, start_local, rngs[store.id]
            ):
                self.door(store.id, zone_id, t0, t1, "traffic")

    def plan_faults(self) -> None:
        dur = self.scenario.duration_s
        for f in self.scenario.faults:
            end = min(f.end_s, dur)
            self._truth_fault(f, end)
            if f.kind == "door_open" and f.compartment is not None:
                self.door(f.asset, f.compartment, f.start_s, f.end_s, "fault")
            if f.kind == "compressor_failure" and f.alarm_code is not None:
                for t, active in ((f.start_s, True), (f.end_s, False)):
                    body = {
                        "type": "alarm",
                        "asset_id": f.asset,
                        "compartment_id": f.compartment,
                        "alarm_code": f.alarm_code,
                        "active": active,
                    }
                    self._add(f.asset, t, event=body)

    def _truth_fault(self, f: Fault, end_s: float) -> None:
        params = {name: getattr(f, name) for name in _FAULT_PARAMS.get(f.kind, ())}
        self.truth.faults.append(
            {
                "kind": f.kind,
                "asset_id": f.asset,
                "compartment_id": f.compartment,
                "sensor_id": f.sensor,
                "device_id": self._devices[f.asset],
                "start": self.truth.iso(f.start_s),
                "end": self.truth.iso(end_s),
                "params": params,
            }
        )

    def plan_defrosts(self) -> None:
        for store in self.scenario.stores:
            for z in store.zones:
                self._defrost_truth(store.id, z.id, defrost_windows(z, self.scenario.duration_s))
        for truck in self.scenario.trucks:
            for c in truck.compartments:
                self._defrost_truth(truck.id, c.id, defrost_windows(c, self.scenario.duration_s))

    def _defrost_truth(self, asset_id: str, comp_id: str, wins: list[tuple[float, float]]) -> None:
        for a, b in wins:
            self.truth.defrosts.append(
                {
                    "asset_id": asset_id,
                    "compartment_id": comp_id,
                    "start": self.truth.iso(a),
                    "end": self.truth.iso(min(b, self.scenario.duration_s)),
                }
            )
