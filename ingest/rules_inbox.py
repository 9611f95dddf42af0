"""The hand-off from the pipeline thread to the rules thread (``EvaluateStage``).

Guarantees:
- ``submit_many`` never blocks: when the rules fall behind, ingest must not. An item that does
  not fit in the queue (``max_queue``) is spilled: its compartments are recorded with the
  oldest device time and newest spool row spilled, for a recompute from InfluxDB
  (``take_spilled``), so nothing acknowledged goes unevaluated.
- A group is submitted under one lock, so ``fed_through`` never sees half a group: every spool
  row up to it was taken by the rules thread or spilled.
- A reloaded fleet is queued in order with the samples (``update_fleet``): items submitted
  before it were validated against the old fleet, those after against the new one.
- One wake-up per group, not per item: a ``deque`` and an ``Event`` instead of a
  ``queue.Queue``, whose lock and condition per item cost the pipeline thread ~7% of its time
  (py-spy, bench/ingest.py).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from coldchain.contract import ts_ms
from coldchain.fleet import Fleet
from ingest.rules_io import Accepted, CustodyChange, FleetUpdate, RecomputeRequest

__all__ = ["Item", "RulesInbox"]

Item = Accepted | CustodyChange | RecomputeRequest
Key = tuple[str, str]  # (asset id, compartment id)


class RulesInbox:
    """See the module docstring. ``fleet`` is the rules thread's fleet (the stage sets it when
    it applies a reload); ``items`` is read by the rules thread only, through ``take``."""

    def __init__(self, fleet: Fleet, max_queue: int = 10_000) -> None:
        self.fleet = fleet  # the rules thread's
        self._intake_fleet = fleet  # the pipeline's (newer until the rules thread catches up)
        self.items: deque[Item | FleetUpdate | None] = deque()
        self.wake = threading.Event()
        self.lock = threading.Lock()  # written by the pipeline thread under it
        self._max_queue = max_queue
        self.submitted = 0
        self.submitted_row = 0
        self.spilled_total = 0
        self._spilled: dict[Key, tuple[int, int]] = {}  # key -> (oldest device ms, newest row)

    # -- the pipeline thread -------------------------------------------------------------------
    def submit_many(self, items: Iterable[Item]) -> None:
        inbox, limit = self.items, self._max_queue
        with self.lock:
            for item in items:
                self.submitted += 1
                if item.row_id > self.submitted_row:
                    self.submitted_row = item.row_id
                if len(inbox) < limit:
                    inbox.append(item)
                else:
                    self._spill(item)
                    self.spilled_total += 1
        self.wake.set()

    def update_fleet(self, fleet: Fleet) -> None:
        with self.lock:
            self._intake_fleet = fleet
            self.submitted += 1
            self.items.append(FleetUpdate(fleet, self.submitted_row + 1))
        self.wake.set()

    # -- the rules thread ----------------------------------------------------------------------
    def take(self, max_items: int) -> list[Item | FleetUpdate | None]:
        """What is queued now (up to ``max_items``; None: stop), waiting briefly for the first."""
        if not self.items:
            self.wake.wait(0.2)
            # Cleared before draining: whatever is appended from here on sets it again.
            self.wake.clear()
        items: list[Item | FleetUpdate | None] = []
        pop = self.items.popleft
        while len(items) < max_items:
            try:
                item = pop()
            except IndexError:
                break
            items.append(item)
            if item is None:
                break
        return items

    def wait(self, timeout_s: float) -> None:
        """Until something is queued or spilled (or ``timeout_s``)."""
        if not self.items and not self._spilled:
            self.wake.wait(timeout_s)
            self.wake.clear()

    def take_with_spills(
        self, max_items: int
    ) -> tuple[list[Item | FleetUpdate | None], dict[Key, tuple[int, int]]]:
        """``take`` and ``take_spilled`` in one step under the lock, without waiting
        (``ingest.rules_child`` sends the spills ahead of the items): no item taken was
        submitted after a spill that is not among those returned."""
        items: list[Item | FleetUpdate | None] = []
        with self.lock:
            pop = self.items.popleft
            while len(items) < max_items and self.items:
                item = pop()
                items.append(item)
                if item is None:
                    break
            spilled, self._spilled = self._spilled, {}
        return items, spilled

    def add_spills(self, spilled: dict[Key, tuple[int, int]]) -> None:
        """Compartments spilled elsewhere (in ingest, for a rules child): recomputed like this
        inbox's own spills, and in the checkpoint until then."""
        with self.lock:
            for key, (from_ms, row) in spilled.items():
                self._merge_spill(key, from_ms, row)

    def close(self) -> None:
        """Queue the stop marker (``take`` returns it last)."""
        self.items.append(None)
        self.wake.set()

    def spill(self, item: Item) -> None:
        """Record ``item`` for a recompute instead of evaluating it (e.g. it failed)."""
        with self.lock:
            self._spill(item)

    def spill_queued(self) -> None:
        """A quick stop: everything still queued becomes recomputes."""
        with self.lock:
            while self.items:
                left = self.items.popleft()
                if left is not None and not isinstance(left, FleetUpdate):
                    self._spill(left)

    def take_spilled(self) -> dict[Key, tuple[int, int]]:
        """The spilled compartments, (oldest device ms, newest row) each, now removed."""
        if not self._spilled:
            return {}
        with self.lock:
            spilled, self._spilled = self._spilled, {}
        return spilled

    def fed_through(self) -> tuple[int, dict[Key, tuple[int, int]]]:
        """(spool row through which everything was taken or spilled, the spills not yet taken)
        as one consistent view, for a checkpoint."""
        with self.lock:  # no group is half submitted
            head = self.items[0] if self.items else None
            fed = self.submitted_row if head is None else head.row_id - 1
            return fed, dict(self._spilled)

    def drop_spilled(self, keep: Callable[[Key], bool]) -> None:
        with self.lock:
            for key in [k for k in self._spilled if not keep(k)]:
                del self._spilled[key]

    def has_spilled(self) -> bool:
        return bool(self._spilled)

    def __len__(self) -> int:
        return len(self.items)

    def _spill(self, item: Item) -> None:  # under the lock
        if isinstance(item, CustodyChange):
            keys, from_ms = [(item.asset_id, item.compartment_id)], item.ts_ms
        elif isinstance(item, RecomputeRequest):
            comps = self.fleet.assets[item.asset_id].compartments
            keys, from_ms = [(item.asset_id, c.id) for c in comps], item.from_ms
        else:
            asset = self._intake_fleet.assets.get(item.asset_id) or self.fleet.assets.get(
                item.asset_id
            )
            if asset is None:  # removed from the fleet meanwhile: nothing left to evaluate
                return
            keys = [(item.asset_id, c.id) for c in asset.compartments]
            from_ms = min(ts_ms(s) for s in item.samples)
        for key in keys:
            self._merge_spill(key, from_ms, item.row_id)

    def _merge_spill(self, key: Key, from_ms: int, row: int) -> None:  # under the lock
        old = self._spilled.get(key)
        self._spilled[key] = (
            (from_ms, row) if old is None else (min(old[0], from_ms), max(old[1], row))
        )
