"""Stage 5, evaluate: the rules engine over accepted samples, in its own thread.

Guarantees:
- Runs on device time. Samples reach it only after their group is durable and acknowledged, so
  rules add CPU but no latency to acknowledgement.
- Every lifecycle change (opened, escalated, closed, recovered, ...) is upserted in the registry
  by its deterministic id together with the engine's checkpoint (one transaction), then
  published once as an MQTT alert and written as an ``excursion`` point; never once per reading.
- Late data: a sample older than what its compartment already evaluated makes the engine ask
  for a recompute. The stage waits until the writer has put everything fed so far into InfluxDB,
  reads the window back (batch mode, same evaluator) and merges: a data gap the backlog filled
  becomes ``recovered``, an excursion found inside it is ``detected_late``.
- A restart resumes from the last checkpoint, then recomputes every checkpointed compartment
  from its checkpoint time once the spool backlog is in InfluxDB, so samples acknowledged after
  the checkpoint are not missed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from coldchain.contract import Sample, alert_topic, ts_ms
from coldchain.exceptions import ColdchainError, RecordRejected
from coldchain.fleet import Fleet
from coldchain.lineprotocol import format_fields, series_key
from coldchain.rules import (
    Change,
    RecomputeNeeded,
    RulesEngine,
    make_observation,
    observations_from_sample,
)
from registry import Registry
from timeseries.client import InfluxClient
from timeseries.reads import read_samples

__all__ = ["Accepted", "CustodyChange", "EvaluateStage", "alert_payload", "excursion_line"]

log = logging.getLogger("coldchain.ingest.evaluate")

CHECKPOINT_KEY = "rules-engine"


@dataclass(frozen=True, slots=True)
class Accepted:
    """Validated samples of one message, and the spool row that holds their points."""

    asset_id: str
    samples: Sequence[Sample]
    row_id: int


@dataclass(frozen=True, slots=True)
class CustodyChange:
    """A load/unload/handover scan: cumulative budgets of the compartment restart."""

    asset_id: str
    compartment_id: str
    ts_ms: int
    row_id: int = 0


@dataclass
class _Pending:
    from_ms: int
    need_row: int
    asked_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def alert_payload(change: Change) -> bytes:
    """The alert: which change, and the excursion as the registry now holds it."""
    body = {"v": 1, "change": change.kind, **asdict(change.excursion)}
    return json.dumps(body, separators=(",", ":")).encode()


def excursion_line(change: Change) -> str:
    """An ``excursion`` point at the excursion's start: Grafana annotations read these."""
    e = change.excursion
    key = series_key(
        "excursion", {"asset": e.asset_id, "compartment": e.compartment_id, "rule": e.rule}
    )
    fields = format_fields(
        {
            "id": e.id,
            "kind": e.kind,
            "severity": e.severity,
            "status": e.status,
            "change": change.kind,
            "end_ms": e.end_ms,
            "duration_s": e.duration_s,
            "peak_c": e.peak_c,
            "degree_minutes": e.degree_minutes,
            "detected_late": e.detected_late,
            "detail": e.detail[:500],
        }
    )
    return f"{key} {fields} {e.start_ms}"


class EvaluateStage:
    """Run ``run()`` in its own thread; ``submit()`` from the pipeline after acks."""

    def __init__(
        self,
        engine: RulesEngine,
        fleet: Fleet,
        registry: Registry,
        influx: InfluxClient,
        *,
        publish: Callable[[str, bytes], None],
        annotate: Callable[[list[str]], None],
        written_through: Callable[[], int],
        clock_ms: Callable[[], int],
        max_queue: int = 10_000,
        tick_s: float = 1.0,
        checkpoint_s: float = 10.0,
        recompute_interval_s: float = 2.0,
    ) -> None:
        self.engine = engine
        self._fleet = fleet
        self._registry = registry
        self._influx = influx
        self._publish = publish
        self._annotate = annotate
        self._written_through = written_through
        self._clock_ms = clock_ms
        # A deque and one wake-up per group commit, not a queue.Queue: its lock and condition
        # per item cost the pipeline thread ~7% of its time (py-spy, bench/ingest.py).
        self._inbox: deque[Accepted | CustodyChange | None] = deque()
        self._wake = threading.Event()
        self._max_queue = max_queue
        self._tick_s = tick_s
        self._checkpoint_s = checkpoint_s
        self._recompute_interval_s = recompute_interval_s
        self._pending: dict[tuple[str, str], _Pending] = {}
        # asset -> ingest wall clock when it last reported: the data-gap clock.
        self._heard_ms: dict[str, int] = {}
        self._unapplied: list[Change] = []
        self._dirty = False
        self._submitted = 0  # written by the pipeline thread only
        self._spilled_total = 0  # written by the pipeline thread only
        self._done = 0  # written by this stage's thread only
        self._spill_lock = threading.Lock()
        self._spilled: dict[tuple[str, str], tuple[int, int]] = {}
        self._asset_row: dict[str, int] = {}
        self._recomputed_at: dict[tuple[str, str], float] = {}
        self._quick_stop = False
        self.changes_total = 0
        self.recomputes_total = 0
        self.errors_total = 0
        self.rejected_total = 0

    # -- start-up ------------------------------------------------------------------------------
    def resume(self, backlog_row: int) -> None:
        """Restore the checkpoint; recompute every compartment from its checkpoint time once
        the spool backlog (rows up to ``backlog_row``) is in InfluxDB."""
        saved = self._registry.load_checkpoint(CHECKPOINT_KEY)
        if not saved:
            return
        self.engine.restore(saved)
        for a, c, from_ms in saved.get("pending_recomputes", []):
            if a in self._fleet.assets:
                self._pending[(a, c)] = _Pending(int(from_ms), backlog_row)
        for entry in saved.get("compartments", []):
            key = (entry["asset"], entry["compartment"])
            if key[0] not in self._fleet.assets:
                continue
            ts = self.engine.evaluator(*key).ts
            self._heard_ms[key[0]] = self._clock_ms()  # silence counts from this start
            if ts >= 0:
                old = self._pending.get(key)
                self._pending[key] = _Pending(min(ts, old.from_ms) if old else ts, backlog_row)

    # -- intake --------------------------------------------------------------------------------
    def submit(self, item: Accepted | CustodyChange) -> None:
        self.submit_many((item,))

    def submit_many(self, items: Iterable[Accepted | CustodyChange]) -> None:
        """Never blocks: when the rules fall behind, ingest must not. An item that does not fit
        in the queue is evaluated later from InfluxDB, by a recompute of its compartments."""
        inbox, limit = self._inbox, self._max_queue
        for item in items:
            self._submitted += 1
            if len(inbox) < limit:
                inbox.append(item)
            else:
                self._spill(item)
                self._spilled_total += 1
        self._wake.set()

    def _spill(self, item: Accepted | CustodyChange) -> None:
        if isinstance(item, CustodyChange):
            keys, from_ms = [(item.asset_id, item.compartment_id)], item.ts_ms
        else:
            comps = self._fleet.assets[item.asset_id].compartments
            keys = [(item.asset_id, c.id) for c in comps]
            from_ms = min(ts_ms(s) for s in item.samples)
        with self._spill_lock:
            for key in keys:
                old = self._spilled.get(key)
                self._spilled[key] = (
                    (from_ms, item.row_id)
                    if old is None
                    else (min(old[0], from_ms), max(old[1], item.row_id))
                )

    def stop(self, *, catch_up: bool = True) -> None:
        """Stop the thread, which saves a checkpoint last. With ``catch_up`` it first evaluates
        everything queued; without, it stops after its current round and what is still queued
        becomes recomputes saved in the checkpoint (a restart runs them from InfluxDB), so a
        shutdown does not wait for the rules to catch up."""
        self._quick_stop = not catch_up
        self._inbox.append(None)
        self._wake.set()

    def idle(self) -> bool:
        """Nothing queued, being evaluated or waiting for a recompute."""
        return (
            self._done + self._spilled_total == self._submitted
            and not self._pending
            and not self._spilled
        )

    def stats(self) -> dict[str, object]:
        return {
            "rules_queue_depth": len(self._inbox),
            "rules_changes": self.changes_total,
            "rules_recomputes": self.recomputes_total,
            "rules_recomputes_pending": len(self._pending),
            "rules_errors": self.errors_total,
            "rules_spilled": self._spilled_total,
            "rules_changes_rejected": self.rejected_total,
        }

    # -- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        next_tick = next_checkpoint = time.monotonic()
        retry_at = 0.0
        while not self._quick_stop:
            items = self._take()
            self._take_spilled()
            stop = items and items[-1] is None
            work = [i for i in items if i is not None]
            changes: list[Change] = []
            try:
                for item in work:
                    changes.extend(self._feed(item))
                now = time.monotonic()
                if now >= next_tick:
                    changes.extend(self._tick())
                    next_tick = now + self._tick_s
                self._apply(changes)
                if now >= retry_at:
                    self._run_pending()
                if now >= next_checkpoint and self._dirty:
                    self._registry.save_checkpoint(CHECKPOINT_KEY, self._state())
                    self._dirty = False
                    next_checkpoint = now + self._checkpoint_s
            except ColdchainError as exc:
                # A store failed (registry or InfluxDB). Streaming state is intact; the changes
                # of this round are re-derived by the recompute that start-up or late data runs.
                self.errors_total += 1
                retry_at = time.monotonic() + 5.0
                log.error("rules evaluation failed (retrying in 5 s): %s", exc)
            finally:
                self._done += len(work)
            if stop or self._quick_stop:
                break
        if self._quick_stop:
            while self._inbox:
                left = self._inbox.popleft()
                if left is not None:
                    self._spill(left)
            self._take_spilled()
        self._registry.save_checkpoint(CHECKPOINT_KEY, self._state())

    def _take_spilled(self) -> None:
        if not self._spilled:
            return
        with self._spill_lock:
            spilled, self._spilled = self._spilled, {}
        for key, (from_ms, row) in spilled.items():
            old = self._pending.get(key)
            if old is None:
                self._pending[key] = _Pending(from_ms, row)
            else:
                old.from_ms, old.need_row = min(old.from_ms, from_ms), max(old.need_row, row)

    def _take(self, max_items: int = 500) -> list[Accepted | CustodyChange | None]:
        """What is queued now (up to ``max_items``), waiting briefly for the first: one
        registry transaction per round, not per message."""
        if not self._inbox:
            self._wake.wait(0.2)
            # Cleared before draining: whatever is appended from here on sets it again.
            self._wake.clear()
        items: list[Accepted | CustodyChange | None] = []
        pop = self._inbox.popleft
        while len(items) < max_items:
            try:
                item = pop()
            except IndexError:
                break
            items.append(item)
            if item is None:
                break
        return items

    def _state(self) -> dict[str, object]:
        pending = [[a, c, p.from_ms] for (a, c), p in sorted(self._pending.items())]
        return self.engine.checkpoint() | {"pending_recomputes": pending}

    def _feed(self, item: Accepted | CustodyChange) -> list[Change]:
        now = self._clock_ms()
        if isinstance(item, CustodyChange):
            res = self.engine.custody_change(item.asset_id, item.compartment_id, item.ts_ms, now)
        else:
            res = self.engine.feed(item.asset_id, item.samples, now)
            self._heard_ms[item.asset_id] = now
        self._asset_row[item.asset_id] = max(self._asset_row.get(item.asset_id, 0), item.row_id)
        self._dirty = True
        for rc in res.recompute:
            self._ask_recompute(rc)
        return res.changes

    def _tick(self) -> list[Change]:
        """Open data gaps of compartments whose device has gone quiet.

        Silence is measured on the wire, not by comparing device time with the wall clock: a
        device that reports an hour-old backlog is not silent, one that stopped reporting is.
        Each compartment's device time is advanced by the wall time since its asset last
        reported, and the gap rule judges that.
        """
        wall = self._clock_ms()
        out: list[Change] = []
        for asset_id, heard in self._heard_ms.items():
            quiet = wall - heard
            for comp in self._fleet.assets[asset_id].compartments:
                ev = self.engine.evaluator(asset_id, comp.id)
                if ev.ts >= 0 and quiet > 0:
                    out.extend(ev.tick(ev.ts + quiet))
        return out

    def _ask_recompute(self, rc: RecomputeNeeded) -> None:
        key = (rc.asset_id, rc.compartment_id)
        old = self._pending.get(key)
        from_ms = rc.from_ms if old is None else min(old.from_ms, rc.from_ms)
        self._pending[key] = _Pending(from_ms, self._asset_row.get(rc.asset_id, 0))

    def _run_pending(self) -> None:
        if not self._pending:
            return
        written = self._written_through()
        mono = time.monotonic()
        for key, p in list(self._pending.items()):
            # Wait until InfluxDB holds everything fed for this asset so far: the recompute
            # replaces the compartment's streaming state with what it reads back.
            if written < max(p.need_row, self._asset_row.get(key[0], 0)):
                continue
            # A device that keeps sending late or conflicting data must not monopolise the
            # thread: at most one recompute per compartment per interval; later data waits.
            if mono - self._recomputed_at.get(key, -1e9) < self._recompute_interval_s:
                continue
            self._recompute(key[0], key[1], p.from_ms)
            self._recomputed_at[key] = mono
            del self._pending[key]  # only once it succeeded

    def _recompute(self, asset_id: str, comp_id: str, from_ms: int) -> None:
        now = self._clock_ms()
        lookback = self.engine.lookback_ms(asset_id, comp_id)
        samples = read_samples(self._influx, asset_id, from_ms - lookback, now + 300_000)
        asset = self._fleet.assets[asset_id]
        observations = [
            obs
            for sample in samples
            if (obs := observations_from_sample(asset, sample).get(comp_id)) is not None
        ]
        # Custody changes restart cumulative budgets: replay them from the registry too.
        spec = self.engine.spec(asset_id, comp_id)
        for legs in self._registry.shipments_on_asset(asset_id, from_ms - lookback, now).values():
            for leg in legs:
                if leg.asset_id == asset_id and leg.compartment_id == comp_id:
                    for t in (leg.from_ms, leg.to_ms):
                        if t is not None:
                            observations.append(make_observation(spec, t, {}, custody=True))
        previous = [
            r.excursion
            for r in self._registry.find_excursions(
                asset_id=asset_id, compartment_id=comp_id, from_ms=from_ms - lookback
            )
        ]
        changes = self.engine.recompute(
            asset_id, comp_id, observations, previous, from_ms=from_ms, now_ms=now
        )
        self.recomputes_total += 1
        self._dirty = True
        self._apply(changes)

    def _apply(self, changes: list[Change]) -> None:
        # Changes the registry did not take yet stay queued: a failed round is retried whole.
        self._unapplied.extend(changes)
        if not self._unapplied:
            return
        changes, self._unapplied = self._unapplied, []
        try:
            self._registry.upsert_excursions(
                [c.excursion for c in changes], checkpoints={CHECKPOINT_KEY: self._state()}
            )
        except RecordRejected as exc:
            # Refused for good (a constraint): retrying would block every later change.
            self.rejected_total += len(changes)
            log.error("registry refused %d excursion changes: %s", len(changes), exc)
            return
        except ColdchainError:
            self._unapplied = changes + self._unapplied
            raise
        self._dirty = False
        self._annotate([excursion_line(c) for c in changes])
        for c in changes:
            self._publish(alert_topic(c.excursion.asset_id), alert_payload(c))
        self.changes_total += len(changes)
