"""The rules child process's side (``ingest.rules_child``): ``child_main`` runs an
``EvaluateStage`` fed over a pipe by ingest's ``RulesChild``.

Threads in the child: the stage's (the main thread), a reader that turns the pipe's records
into the stage's items (decoding and validating accepted payloads again), a reporter that
sends progress every 20 ms while it changes, and a sender, so that nothing the stage does
ever waits on ingest reading the pipe.

Records, ingest -> child (one pickled list per pipe message):
``("a", row, asset, device, received_ms, payload)`` a message accepted whole, raw;
``("i", item)`` another item (custody change, recompute request, an ``Accepted`` with samples:
one with a unit rejected);
``("f", fleet_yaml)`` a reloaded fleet, in order; ``("s", {(asset, compartment): (from_ms,
row)})`` compartments spilled in ingest; ``("resume", backlog_row, spool_replaced)`` first;
``("journal", since, newest)`` the answer to a journal request; ``("stop", catch_up)`` last.
Messages, child -> ingest: ``("ready",)``, ``("progress", received, spills, idle, stats)``,
``("annotate", lines)``, ``("prune", row)``, ``("alerts",)``, ``("journal?", row)``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import queue
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from coldchain.contract import parse_accepted_whole
from coldchain.exceptions import ColdchainError, TelemetryRejected
from coldchain.fleet import Fleet, parse_fleet
from coldchain.settings import Settings
from ingest.evaluate import EvaluateStage
from ingest.heap import settle_heap
from ingest.rules_inbox import Item
from ingest.rules_io import Accepted, RecomputeRequest

__all__ = ["Record", "child_main"]

log = logging.getLogger("coldchain.ingest.rules_child")

Record = tuple[Any, ...]
_PR_SET_PDEATHSIG = 1
_REPORT_S = 0.02
_REPORT_ANYWAY_S = 0.5


def child_main(
    settings: Settings,
    fleet_yaml: str,
    conn_in: Connection,
    conn_out: Connection,
    written: Synchronized[int],
    *,
    log_level: int = logging.WARNING,
) -> None:
    """The child process (started by ``RulesChild`` with the spawn method): returns once the
    stage stopped and saved its last checkpoint, or when ingest's pipe closed."""
    parent = os.getppid()
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ingest stops us in order
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(name)s (rules child): %(message)s"
    )
    from ingest.service import build_engine  # the service module is heavy: only here
    from registry import open_registry, wall_clock_ms
    from timeseries.client import InfluxClient

    fleet = parse_fleet(fleet_yaml, "<ingest's fleet>")
    out = _Sender(conn_out)
    journal = _Journal(out)
    registry = open_registry(settings.registry_url)
    influx = InfluxClient(settings.influx)
    stage = EvaluateStage(
        build_engine(settings, fleet, registry),
        fleet,
        registry,
        influx,
        annotate=lambda lines: out.put(("annotate", lines)),
        written_through=lambda: int(written.value),
        clock_ms=wall_clock_ms,
        journal_since=journal.since,
        journal_newest_since=journal.newest_since,
        prune_journal=lambda row: out.put(("prune", row)),
        alerts_queued=lambda: out.put(("alerts",)),
    )
    reader = _Reader(conn_in, stage, fleet, settings, journal)
    reader.start()
    try:
        resume = reader.resume.get()
        if resume is None:  # ingest went away before it said how to resume
            return
        stage.resume(resume[0], spool_replaced=resume[1])
        settle_heap()
        out.put(("ready",))
        reporter = _Reporter(stage, reader, out)
        reporter.start()
        stage.run()  # until the reader's stop record (or EOF), then the last checkpoint
        reporter.stop()
    finally:
        out.close()
        influx.close()
        registry.close()


def _die_with_parent(parent: int) -> None:
    """The kernel SIGKILLs this process when ingest dies (Linux), so that a restarted ingest
    never meets an old child writing the same checkpoint."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pipe's EOF ends this process instead
        log.warning("rules child: cannot ask to die with ingest (no prctl)")
    if os.getppid() != parent:  # ingest died before the request took effect
        os._exit(1)


class _Sender:
    """Messages to ingest from any thread, written by one thread: never blocks the caller."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rules-child-tx", daemon=True)
        self._thread.start()

    def put(self, msg: tuple[Any, ...]) -> None:
        self._queue.put(msg)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10.0)
        self._conn.close()

    def _run(self) -> None:
        while (msg := self._queue.get()) is not None:
            try:
                self._conn.send(msg)
            except (OSError, ValueError):  # ingest is gone: nothing to tell
                return


class _Journal:
    """The spool's rules journal, asked of ingest (at resume only)."""

    def __init__(self, out: _Sender) -> None:
        self._out = out
        self._answers: queue.SimpleQueue[tuple[dict[str, int], dict[str, int | None]] | None]
        self._answers = queue.SimpleQueue()
        self._last: tuple[int, dict[str, int], dict[str, int | None]] | None = None

    def since(self, row: int) -> dict[str, int]:
        return self._ask(row)[1]

    def newest_since(self, row: int) -> dict[str, int | None]:
        return self._ask(row)[2]

    def answer(self, since: dict[str, int], newest: dict[str, int | None]) -> None:
        self._answers.put((since, newest))

    def gone(self) -> None:
        self._answers.put(None)

    def _ask(self, row: int) -> tuple[int, dict[str, int], dict[str, int | None]]:
        if self._last is None or self._last[0] != row:
            self._out.put(("journal?", row))
            answer = self._answers.get()
            if answer is None:
                raise ColdchainError("rules child: ingest went away before the journal came")
            self._last = (row, answer[0], answer[1])
        return self._last


class _Reader(threading.Thread):
    """Turns ingest's records into the stage's items, in order (module docstring)."""

    def __init__(
        self,
        conn: Connection,
        stage: EvaluateStage,
        fleet: Fleet,
        settings: Settings,
        journal: _Journal,
    ) -> None:
        super().__init__(name="rules-child-rx", daemon=True)
        self._conn = conn
        self._stage = stage
        self._fleet = fleet
        self._journal = journal
        self.resume: queue.SimpleQueue[tuple[int, bool] | None] = queue.SimpleQueue()
        self.received = 0  # items and fleet updates handed to the stage
        self.spills = 0  # spill records handed to the stage
        self.mismatched = 0

    def run(self) -> None:
        try:
            while True:
                try:
                    records: list[Record] = pickle.loads(self._conn.recv_bytes())
                except (EOFError, OSError):
                    # Ingest died without asking us to stop: end as a crash would, writing
                    # nothing more (its restart recovers from the checkpoint and the journal,
                    # and must not meet this process still writing).
                    log.error("rules child: ingest's pipe closed without a stop; exiting")
                    os._exit(1)
                if self._handle(records):
                    return
        finally:
            self.resume.put(None)
            self._journal.gone()

    def _handle(self, records: list[Record]) -> bool:
        """Hand one message's records to the stage; True after the stop record."""
        batch: list[Item] = []
        for r in records:
            kind = r[0]
            if kind == "a":
                item = self._accepted(r[1], r[2], r[3], r[4], r[5])
                if item is not None:
                    batch.append(item)
                else:  # counted as received all the same: ingest counted it as sent
                    self.received += 1
            elif kind == "i":
                batch.append(r[1])
            else:
                self._flush(batch)
                batch = []
                if kind == "f":
                    self._fleet = parse_fleet(r[1], "<ingest's fleet>")
                    self._stage.update_fleet(self._fleet)
                    self.received += 1
                elif kind == "s":
                    self._stage.add_spills(r[1])
                    self.spills += 1
                elif kind == "resume":
                    self.resume.put((r[1], r[2]))
                elif kind == "journal":
                    self._journal.answer(r[1], r[2])
                elif kind == "stop":
                    self._stage.stop(catch_up=r[1])
                    return True
        self._flush(batch)
        return False

    def _flush(self, batch: list[Item]) -> None:
        if batch:
            self._stage.submit_many(batch)
            self.received += len(batch)

    def _accepted(
        self, row: int, asset_id: str, device_id: str, received_ms: int, payload: bytes
    ) -> Item | None:
        """The samples of a message ingest accepted whole (``ingest.pipeline.process_delivery``
        rejected no unit of it): its payload read again by one strict validation, which gives
        exactly those samples (``parse_accepted_whole``). Should that ever fail, the asset is
        recomputed from what ingest stored instead (None: an asset this fleet does not have,
        nothing to evaluate)."""
        try:
            samples = parse_accepted_whole(payload)
            why = "" if samples else "no sample accepted"
        except TelemetryRejected as exc:
            samples, why = [], f"{exc.reason}: {exc}"
        asset = self._fleet.asset_of(device_id)
        if not why and asset is not None and asset.id == asset_id:
            return Accepted(asset_id, samples, row, device_id, received_ms)
        self.mismatched += 1
        why = why or f"device {device_id} is not on asset {asset_id} in this fleet"
        log.error("rules child: message of %s at spool row %d: %s", device_id, row, why)
        if asset_id not in self._fleet.assets:
            return None
        return RecomputeRequest(asset_id, -1, row)


class _Reporter(threading.Thread):
    """Progress for ingest's ``idle()`` and ``stats()``: sent when it changes (every 20 ms at
    most) and every 0.5 s anyway."""

    def __init__(self, stage: EvaluateStage, reader: _Reader, out: _Sender) -> None:
        super().__init__(name="rules-child-report", daemon=True)
        self._stage = stage
        self._reader = reader
        self._out = out
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(5.0)
        self._report()

    def run(self) -> None:
        last: tuple[int, int, bool] | None = None
        quiet = 0.0
        while not self._halt.wait(_REPORT_S):
            now = self._now()
            quiet += _REPORT_S
            if now != last or quiet >= _REPORT_ANYWAY_S:
                self._report(now)
                last, quiet = now, 0.0

    def _now(self) -> tuple[int, int, bool]:
        # The counts before idle(): what they count has reached the stage, so idle() covers it.
        received, spills = self._reader.received, self._reader.spills
        return received, spills, self._stage.idle()

    def _report(self, now: tuple[int, int, bool] | None = None) -> None:
        now = now or self._now()
        stats = self._stage.stats()
        stats["rules_child_revalidation_mismatches"] = self._reader.mismatched
        self._out.put(("progress", *now, stats))
