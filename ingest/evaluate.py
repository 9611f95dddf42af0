"""Stage 5, evaluate: the rules engine over accepted samples, in its own thread.

Guarantees:
- Runs on device time. Samples reach it only after their group is durable and acknowledged, so
  rules add CPU but no latency to acknowledgement.
- Every lifecycle change (opened, escalated, closed, recovered, ...) is upserted in the registry
  by its deterministic id together with the engine's checkpoint and its alert, queued in the
  outbox under its idempotency key (one transaction: a recorded change always has its alert
  queued; ``ingest.outbox`` delivers it at least once), then written as an ``excursion`` point;
  never once per reading (the writes: ``ingest.rules_record``).
- Data gaps are judged per compartment on its device's clock: only a temperature recording
  renews a compartment; ``detected_ms`` is the ingest clock (docs/rules.md 4.6, 13).
- Device clocks are watched on single-sample messages (``clock_skew`` evidence; a forward jump
  is no data gap), and a conflicting rewrite of a device's recent sample is recorded as
  integrity evidence with both values before the checkpoint moves past it; exact redeliveries
  are dropped before the engine.
- Late data: a sample older than what its compartment already evaluated makes the engine ask
  for a recompute. The stage waits until the writer has put everything fed so far into InfluxDB,
  reads the window back (batch mode, same evaluator) up to what it has been fed for the asset
  (never samples stored but still queued for it: they come as streaming) and merges: a data
  gap the backlog filled becomes ``recovered``, an excursion found inside it is
  ``detected_late``.
- A reloaded fleet (``update_fleet``) applies in order: samples submitted before it are
  evaluated against the old fleet, those after against the new one; a removed compartment's
  open excursions close, its gap clock and pending recomputes go (``RulesEngine.apply_fleet``).
- A restart resumes from the last checkpoint; every asset with messages acknowledged after it
  (the spool's rules journal, past the checkpoint's ``fed_through``) is recomputed from
  InfluxDB, and held - its new samples join the recompute - until then, so nothing acknowledged
  is missed and no data gap is reported for data that sat in the spool.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from coldchain.contract import ts_ms
from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet
from coldchain.rules import Change, RecomputeNeeded, Rewrite, RewriteWatch, RulesEngine
from ingest.recompute import (
    PendingRecomputes,
    close_removed,
    journal_everything,
    recompute_compartment,
    restart_recomputes,
)
from ingest.rules_inbox import Item, RulesInbox
from ingest.rules_io import (
    Accepted,
    CustodyChange,
    FleetUpdate,
    RecomputeRequest,
    alert_payload,
    clock_line,
    excursion_line,
)
from ingest.rules_record import RulesRecorder
from registry import Registry
from timeseries.client import InfluxClient

__all__ = ["Accepted", "CustodyChange", "EvaluateStage", "alert_payload", "excursion_line"]

log = logging.getLogger("coldchain.ingest.evaluate")

CHECKPOINT_KEY = "rules-engine"
# How far back a restart without a journal reads when the checkpoint knows nothing: the
# contract's default accepted sample age (30 days).
_MAX_REPLAY_MS = 30 * 86_400_000


class EvaluateStage:
    """Run ``run()`` in its own thread; ``submit()`` from the pipeline after acks.

    ``journal_since(row)`` (device -> oldest device time of the messages spooled after spool
    row ``row``), ``journal_newest_since(row)`` (device -> their newest device time, None:
    unknown; not given: unknown for all) and ``prune_journal(row)`` connect the stage to the
    spool's rules journal.
    ``alerts_queued()`` is called after a transaction queued alerts (wakes their delivery).
    """

    def __init__(
        self,
        engine: RulesEngine,
        fleet: Fleet,
        registry: Registry,
        influx: InfluxClient,
        *,
        annotate: Callable[[list[str]], None],
        written_through: Callable[[], int],
        clock_ms: Callable[[], int],
        journal_since: Callable[[int], dict[str, int]] = lambda row: {},
        journal_newest_since: Callable[[int], dict[str, int | None]] | None = None,
        prune_journal: Callable[[int], None] = lambda row: None,
        alerts_queued: Callable[[], None] = lambda: None,
        max_queue: int = 10_000,
        tick_s: float = 1.0,
        checkpoint_s: float = 10.0,
        recompute_interval_s: float = 2.0,
        rewrite_memory: int = 128,
        checkpoint_key: str = CHECKPOINT_KEY,
    ) -> None:
        """``checkpoint_key``: the registry key this stage alone writes (a rules worker: one per
        partition, ``ingest.rules_worker``)."""
        self.engine = engine
        self._key = checkpoint_key
        self._fleet = fleet  # the rules thread's
        self._registry = registry
        self._influx = influx
        self._alerts_queued = alerts_queued
        self._annotate = annotate
        self._written_through = written_through
        self._clock_ms = clock_ms
        self._journal_since = journal_since
        self._journal_newest_since = journal_newest_since
        self._prune_journal = prune_journal
        self._inbox = RulesInbox(fleet, max_queue)
        self._wake = self._inbox.wake
        self._tick_s = tick_s
        self._checkpoint_s = checkpoint_s
        self._recompute_interval_s = recompute_interval_s
        self._recomputes = PendingRecomputes()
        # Aliases, never rebound: the compartments to recompute, the assets held until then.
        self._pending, self._held = self._recomputes.items, self._recomputes.held
        # asset -> (newest device time heard, ingest clock when heard): its device clock.
        self._heard: dict[str, tuple[int, int]] = {}
        self._rewrites = RewriteWatch(rewrite_memory)
        self._jumps: dict[str, deque[tuple[int, int]]] = {}  # asset -> recent clock jumps
        self._done = 0  # written by this stage's thread only
        self._asset_row: dict[str, int] = {}
        self._recomputed_at: dict[tuple[str, str], float] = {}
        self._quick_stop = False
        self._record = RulesRecorder(
            registry,
            checkpoint_key,
            prune_journal=prune_journal,
            alerts_queued=alerts_queued,
            annotate=annotate,
            checkpoint_s=checkpoint_s,
        )
        self.recomputes_total = 0
        self.errors_total = 0
        self.rewrites_total = 0
        self.redeliveries_total = 0
        self.clock_jumps_total = 0
        self.held_total = 0

    # -- start-up ------------------------------------------------------------------------------
    def resume(self, backlog_row: int, *, spool_replaced: bool = False) -> None:
        """Restore the checkpoint; recompute (and hold until then) every asset with messages
        acknowledged after it, once the spool backlog (rows up to ``backlog_row``) is in
        InfluxDB. The spool's rules journal names them, checkpointed or not.

        ``spool_replaced``: the spool is not the one the checkpoint's ``fed_through`` row id
        refers to (deleted, replaced, damaged and salvaged): its journal cannot say what came
        after the checkpoint, so every checkpointed compartment is recomputed from its
        checkpoint time, as for a checkpoint from before the journal existed."""
        saved = self._registry.load_checkpoint(self._key) or {}
        now = self._clock_ms()
        if saved:
            self.engine.restore(saved)
            # Removed while stopped: closed as a reload would; recorded by the first round.
            self._record.unapplied.extend(close_removed(saved, self._fleet, self._registry))
        newest: dict[str, int | None] | None = None  # unknown: read everything stored
        if spool_replaced:
            floor_ms = self._clock_ms() - _MAX_REPLAY_MS
            journal = journal_everything(self.engine, self._fleet, saved, floor_ms)
        else:
            fed = int(saved.get("fed_through") or 0)
            journal = self._journal_since(fed)
            if self._journal_newest_since is not None:
                newest = self._journal_newest_since(fed)
        todo, heard = restart_recomputes(self.engine, self._fleet, saved, journal, newest)
        for key, (from_ms, to_ms) in todo.items():
            self._recomputes.add(key, from_ms, backlog_row, hold=True, to_ms=to_ms)
        # Silence counts from this start.
        self._heard.update((a, (ts, now)) for a, ts in heard.items())
        if self._held:
            log.info("rules: %d assets held for their restart recompute", len(self._held))

    # -- intake (pipeline thread): ingest.rules_inbox --------------------------------------------
    def submit(self, item: Item) -> None:
        self._inbox.submit_many((item,))

    def submit_many(self, items: Iterable[Item]) -> None:
        """Never blocks (``RulesInbox.submit_many``): an item that does not fit in the queue is
        evaluated later from InfluxDB, by a recompute of its compartments."""
        self._inbox.submit_many(items)

    def add_spills(self, spilled: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Compartments (asset, compartment) -> (oldest device ms, newest spool row) spilled
        before reaching this stage (``ingest.rules_child``): recomputed from InfluxDB."""
        self._inbox.add_spills(spilled)
        self._wake.set()

    def update_fleet(self, fleet: Fleet) -> None:
        """From the pipeline thread, between two groups: evaluate what is submitted from now on
        against ``fleet`` (the rules thread applies it in order, ``RulesEngine.apply_fleet``)."""
        self._inbox.update_fleet(fleet)

    def stop(self, *, catch_up: bool = True) -> None:
        """Stop the thread, which saves a checkpoint last. With ``catch_up`` it first evaluates
        everything queued; without, it stops after its current round and what is still queued
        becomes recomputes saved in the checkpoint (a restart runs them from InfluxDB), so a
        shutdown does not wait for the rules to catch up."""
        self._quick_stop = not catch_up
        self._inbox.close()

    def idle(self) -> bool:
        """Nothing queued, being evaluated or waiting for a recompute."""
        inbox = self._inbox
        return (
            self._done + inbox.spilled_total == inbox.submitted
            and not self._pending
            and not inbox.has_spilled()
        )

    def stats(self) -> dict[str, object]:
        return {
            "rules_queue_depth": len(self._inbox),
            "rules_evaluated": self._done,
            "rules_changes": self._record.changes_total,
            "rules_recomputes": self.recomputes_total,
            "rules_recomputes_pending": len(self._pending),
            "rules_errors": self.errors_total,
            "rules_spilled": self._inbox.spilled_total,
            "rules_changes_rejected": self._record.rejected_total,
            "rules_rewrites": self.rewrites_total,
            "rules_redeliveries": self.redeliveries_total,
            "rules_clock_jumps": self.clock_jumps_total,
            "rules_held": self.held_total,
            "rules_assets_held": len(self._held),
        }

    # -- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        next_tick = next_checkpoint = time.monotonic()
        retry_at = 0.0
        while not self._quick_stop:
            items = self._take()
            self._take_spilled()
            stop = bool(items) and items[-1] is None
            work = [i for i in items if i is not None]
            changes: list[Change] = []
            try:
                for item in work:
                    if isinstance(item, FleetUpdate):
                        changes.extend(self._apply_fleet(item.fleet))
                    else:
                        changes.extend(self._feed_safely(item))
                now = time.monotonic()
                if now >= next_tick:
                    changes.extend(self._tick())
                    next_tick = now + self._tick_s
                self._apply(changes)
                if now >= retry_at:
                    self._run_pending()
                if now >= next_checkpoint and self._record.dirty:
                    self._save_checkpoint()
                    next_checkpoint = now + self._checkpoint_s
                elif self._record.prune_owed():
                    # A checkpoint came too soon after the last prune (a worker's ack) to
                    # prune: do it once the interval passed, not only when new work comes (a
                    # worker's last items of a burst would stay unacknowledged until then).
                    self._after_checkpoint({"fed_through": self._record.saved_fed})
            except ColdchainError as exc:
                # A store failed (registry or InfluxDB). Streaming state is intact; changes and
                # evidence stay queued and the checkpoint does not move until they are stored.
                self.errors_total += 1
                retry_at = time.monotonic() + 5.0
                log.error("rules evaluation failed (retrying in 5 s): %s", exc)
            finally:
                self._done += len(work)
            if stop or self._quick_stop:
                break
        if self._quick_stop:
            # A quick stop: what is still queued becomes recomputes saved in the checkpoint.
            self._inbox.spill_queued()
            self._take_spilled()
        try:
            self._apply([])
            self._save_checkpoint(prune=True)
        except ColdchainError as exc:
            log.error("rules: final checkpoint failed (the restart recomputes): %s", exc)

    def _take_spilled(self) -> None:
        for key, (from_ms, row) in self._inbox.take_spilled().items():
            # How far the spilled samples reach is not recorded: read everything stored.
            self._recomputes.add(key, from_ms, row, hold=True, to_ms=None)

    def _take(self, max_items: int = 500) -> list[Item | FleetUpdate | None]:
        """What is queued now (up to ``max_items``), waiting briefly for the first: one
        registry transaction per round, not per message."""
        return self._inbox.take(max_items)

    def _state(self) -> dict[str, object]:
        """The checkpoint: engine state, pending recomputes (spills included) and
        ``fed_through``: every spool row up to it was fed or is pending."""
        fed, spilled = self._inbox.fed_through()
        pending = {k: p.from_ms for k, p in self._pending.items()}
        for k, (from_ms, _) in spilled.items():
            pending[k] = min(from_ms, pending.get(k, from_ms))
        rows = [[a, c, f] for (a, c), f in sorted(pending.items())]
        return self.engine.checkpoint() | {"pending_recomputes": rows, "fed_through": fed}

    # -- writes: ingest.rules_record -------------------------------------------------------------
    def _save_checkpoint(self, prune: bool = False) -> None:
        self._record.save_checkpoint(self._state, prune)

    def _after_checkpoint(self, state: dict[str, object], force: bool = False) -> None:
        self._record.after_checkpoint(state, force)

    def _apply(self, changes: list[Change]) -> None:
        self._record.apply(changes, self._state)

    def _feed_safely(self, item: Item) -> list[Change]:
        try:
            return self._feed(item)
        except ColdchainError as exc:  # e.g. an asset the engine does not know (any more)
            self.errors_total += 1
            log.error("rules could not evaluate a message of %s: %s", item.asset_id, exc)
            if item.asset_id in self._fleet.assets:
                self._inbox.spill(item)
            return []

    def _feed(self, item: Item) -> list[Change]:
        now = self._clock_ms()
        asset_id = item.asset_id
        changes: list[Change] = []
        self._asset_row[asset_id] = max(self._asset_row.get(asset_id, 0), item.row_id)
        self._record.dirty = True
        if isinstance(item, RecomputeRequest):
            self._request_recompute(item)
            return []
        if isinstance(item, CustodyChange):
            key = (asset_id, item.compartment_id)
            if asset_id in self._held:
                self._recomputes.add(key, item.ts_ms, item.row_id, hold=True, to_ms=item.ts_ms)
                return []
            res = self.engine.custody_change(asset_id, item.compartment_id, item.ts_ms, now)
        else:
            samples = list(item.samples)
            if item.device_id:
                samples, found = self._rewrites.check(item.device_id, asset_id, samples, now)
                self.redeliveries_total += len(item.samples) - len(samples)
                if found:
                    self._note_rewrites(found)
            if not samples:  # exact redeliveries only: already evaluated
                self._hear(asset_id, max(ts_ms(s) for s in item.samples), now)
                return []
            times = [ts_ms(s) for s in samples]
            self._hear(asset_id, max(times), now)
            live = item.received_ms is not None and bool(item.device_id)
            live = live and len(item.samples) == 1
            if asset_id in self._held:
                if live:
                    assert item.received_ms is not None
                    rep = self.engine.observe_clock(
                        asset_id, item.device_id, times[0], item.received_ms, now
                    )
                    changes.extend(rep.changes)
                    self._note_jump(item, times[0], rep.jump_ms, rep.offset_ms)
                for comp in self._fleet.assets[asset_id].compartments:
                    key = (asset_id, comp.id)
                    self._recomputes.add(key, min(times), item.row_id, hold=True, to_ms=max(times))
                self.held_total += 1
                return changes
            res = self.engine.feed(
                asset_id,
                samples,
                now,
                device_id=item.device_id if live else None,
                received_ms=item.received_ms if live else None,
            )
            if res.clock_jump_ms and res.clock_offset_ms is not None:
                self._note_jump(item, times[0], res.clock_jump_ms, res.clock_offset_ms)
        for rc in res.recompute:
            self._ask_recompute(rc)
        return res.changes

    def _apply_fleet(self, fleet: Fleet) -> list[Change]:
        """The rules thread's side of ``update_fleet``: the engine's compartments and profiles,
        then what this stage keeps per asset or compartment (gap clock, recomputes, holds)."""
        changes = self.engine.apply_fleet(fleet, self._clock_ms())
        self._fleet = self._inbox.fleet = fleet
        self._recomputes.drop(lambda key: fleet.has_compartment(*key))
        self._inbox.drop_spilled(lambda key: fleet.has_compartment(*key))
        for asset_id in [a for a in self._heard if a not in fleet.assets]:
            del self._heard[asset_id]
        self._record.dirty = True
        log.warning(
            "rules: fleet applied (%d assets); %d excursions closed by it",
            len(fleet.assets),
            len(changes),
        )
        return changes

    def _hear(self, asset_id: str, newest_ms: int, now: int) -> None:
        old = self._heard.get(asset_id)
        self._heard[asset_id] = (newest_ms if old is None else max(old[0], newest_ms), now)

    def _note_rewrites(self, found: list[Rewrite]) -> None:
        self.rewrites_total += len(found)
        self._record.evidence.extend(found)
        for rw in found:
            log.warning(
                "conflicting rewrite by %s at device time %d: seq %d -> %d, %s",
                rw.device_id,
                rw.ts_ms,
                rw.old_seq,
                rw.new_seq,
                rw.changes,
            )

    def _note_jump(self, item: Accepted, at_ms: int, jump_ms: int, offset_ms: int) -> None:
        if not jump_ms:
            return
        self.clock_jumps_total += 1
        self._jumps.setdefault(item.asset_id, deque(maxlen=64)).append((at_ms, jump_ms))
        self._annotate([clock_line(item.asset_id, item.device_id, at_ms, jump_ms, offset_ms)])

    def _tick(self) -> list[Change]:
        """Open data gaps of compartments without recordings, on each asset's device clock.

        Silence is measured on the wire, not by comparing device time with the ingest clock: a
        device that reports an hour-old backlog is not silent, one that stopped reporting is.
        The asset's device clock is its newest device time heard plus the ingest time since;
        the gap rule judges each compartment's last recording against it.
        """
        wall = self._silence_clock_ms()
        out: list[Change] = []
        for asset_id, (newest, heard) in self._heard.items():
            if newest < 0 or asset_id in self._held:
                continue
            out.extend(self.engine.tick_asset(asset_id, newest + max(0, wall - heard), wall))
        return out

    def _silence_clock_ms(self) -> int:
        """The ingest time data gaps are judged at (a rules worker judges on its watermark)."""
        return self._clock_ms()

    def _request_recompute(self, rq: RecomputeRequest) -> None:
        """Hold the asset and recompute it from ``rq.from_ms`` (< 0: its checkpointed time)."""
        from_ms = rq.from_ms
        comps = self._fleet.assets[rq.asset_id].compartments
        if from_ms < 0:
            times = [self.engine.evaluator(rq.asset_id, c.id).ts for c in comps]
            from_ms = min((t for t in times if t >= 0), default=self._clock_ms() - _MAX_REPLAY_MS)
        for comp in comps:  # rq.to_ms: how far the sender had acknowledged (None: unknown)
            key = (rq.asset_id, comp.id)
            self._recomputes.add(key, from_ms, rq.row_id, hold=True, to_ms=rq.to_ms)

    def _ask_recompute(self, rc: RecomputeNeeded) -> None:
        key = (rc.asset_id, rc.compartment_id)
        row = self._asset_row.get(rc.asset_id, 0)
        self._recomputes.add(key, rc.from_ms, row, hold=False, to_ms=rc.from_ms)

    def _run_pending(self) -> None:
        if not self._pending:
            return
        written = self._written_through()
        mono = time.monotonic()
        for key, p in list(self._pending.items()):
            if not self._fleet.has_compartment(*key):
                continue  # an asset of a reloaded fleet the rules thread has not applied yet
            # Wait until InfluxDB holds everything fed for this asset so far: the recompute
            # replaces the compartment's streaming state with what it reads back.
            if written < max(p.need_row, self._asset_row.get(key[0], 0)):
                continue
            # A device that keeps sending late or conflicting data must not monopolise the
            # thread: at most one recompute per compartment per interval; later data waits.
            if mono - self._recomputed_at.get(key, -1e9) < self._recompute_interval_s:
                continue
            self._recompute(key[0], key[1], p.from_ms, self._read_until(key[0], p.to_ms))
            self._recomputed_at[key] = mono
            self._recomputes.done(key)  # only once it succeeded

    def _read_until(self, asset_id: str, to_ms: int | None) -> int | None:
        """How far a recompute of the asset reads: what the stage has been fed for it (newest
        device time taken, streamed or held) or ``to_ms`` if newer (None: everything stored).
        Samples stored past it were not fed yet: they arrive as streaming, not as late data."""
        if to_ms is None:
            return None
        return max(to_ms, self._heard.get(asset_id, (-1, 0))[0])

    def _recompute(
        self, asset_id: str, comp_id: str, from_ms: int, until_ms: int | None = None
    ) -> None:
        now = self._clock_ms()
        changes = recompute_compartment(
            self.engine,
            self._fleet.assets[asset_id],
            comp_id,
            from_ms,
            now,
            registry=self._registry,
            influx=self._influx,
            recent_jumps=self._jumps.get(asset_id, ()),
            until_ms=until_ms,
        )
        self.recomputes_total += 1
        self._record.dirty = True
        ts = self.engine.evaluator(asset_id, comp_id).ts
        newest, heard = self._heard.get(asset_id, (-1, now))
        if ts > newest:
            self._heard[asset_id] = (ts, heard)
        self._apply(changes)
