"""The pure core: scenario + seed + start -> the messages every device publishes, in publish order.

No network, no wall clock, no global random state: each asset draws from its own
``random.Random`` seeded from (seed, asset id, purpose), so adding a truck to a scenario does not
change what the others do, and the same (scenario, seed, start) gives byte-identical messages.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from simulators.asset import AssetSim
from simulators.device import SimMessage
from simulators.plan import Planner
from simulators.scenario import Scenario
from simulators.store import StoreSim
from simulators.truck import TripPlan, TruckSim, plan_trip
from simulators.truth import GroundTruth, TruthRecorder

__all__ = ["Simulation", "simulate"]


def _rng(seed: int, asset_id: str, purpose: str) -> random.Random:
    # str seeds go through SHA-512 in CPython: stable across runs and PYTHONHASHSEED.
    return random.Random(f"{seed}/{asset_id}/{purpose}")


class Simulation:
    """One run of a scenario. Iterate ``messages()`` to the end, then read ``truth()``."""

    def __init__(self, scenario: Scenario, *, start: datetime, seed: int | None = None) -> None:
        if start.tzinfo is None or start.utcoffset() != timedelta(0):
            raise ValueError(f"start must be an aware UTC datetime, got {start!r}")
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.start = start.astimezone(UTC)
        self.end = self.start + timedelta(seconds=scenario.duration_s)
        self._truth: TruthRecorder | None = None
        self._done = False

    def _build(self) -> tuple[list[AssetSim], TruthRecorder]:
        sc = self.scenario
        truth = TruthRecorder(sc.name, self.seed, self.start, sc.duration_s)
        truth.sample_interval_s = sc.sample_interval_s
        trips: dict[str, TripPlan] = {
            t.id: plan_trip(t, sc.duration_s, _rng(self.seed, t.id, "motion")) for t in sc.trucks
        }
        planner = Planner(sc, truth)
        planner.plan_faults()
        planner.plan_stops(trips)
        planner.plan_store_traffic({s.id: _rng(self.seed, s.id, "doors") for s in sc.stores})
        planner.plan_defrosts()
        sims: list[AssetSim] = []
        for t in sc.trucks:
            rng = _rng(self.seed, t.id, "device")
            acts = planner.actions.get(t.id, [])
            sims.append(TruckSim(t, sc, self.start, trips[t.id], acts, truth, rng))
        for s in sc.stores:
            rng = _rng(self.seed, s.id, "device")
            acts = planner.actions.get(s.id, [])
            sims.append(StoreSim(s, sc, self.start, acts, truth, rng))
        truth.shipments = [sh.model_dump(mode="json") for sh in sc.shipments]
        return sims, truth

    def messages(self) -> Iterator[SimMessage]:
        """All messages in publish order (ties: scenario order of the assets). Lazy."""
        sims, truth = self._build()
        self._truth = truth
        self._done = False
        # heapq.merge breaks ties by iterable order: deterministic.
        yield from heapq.merge(*(s.messages() for s in sims), key=lambda m: m.t_s)
        self._done = True

    def run(self) -> tuple[list[SimMessage], GroundTruth]:
        """The whole stream in memory plus its truth: for tests and dry runs."""
        msgs = list(self.messages())
        return msgs, self.truth()

    def truth(self) -> GroundTruth:
        if self._truth is None or not self._done:
            raise RuntimeError("the ground truth is complete only after messages() is exhausted")
        return self._truth.result()


def simulate(
    scenario: Scenario, *, start: datetime, seed: int | None = None
) -> Iterator[SimMessage]:
    """The scenario's messages in publish order; see Simulation for the truth as well."""
    return Simulation(scenario, start=start, seed=seed).messages()
