"""Stage 5 in a child process (``rules.mode = "subprocess"``): the rules off ingest's GIL.

With its rules in a thread, one ingest process spends about 40 % of its interpreter time on
them (bench/ingest.py), and Python runs one thread at a time: the rules and the pipeline share
one core. In this mode ``coldchain ingest`` starts one child process that runs the very same
``EvaluateStage`` (the same checkpoint key, registry writes and alerts queued in the outbox) on
a core of its own, fed over a pipe. Ingest's side is ``RulesChild``; the child runs
``child_main`` (``ingest.rules_child_main``).

Guarantees (on top of ``EvaluateStage``'s, which hold unchanged in the child):
- ``submit_many`` never blocks: items wait in a ``RulesInbox`` in ingest (bounded; what does not
  fit is spilled for a recompute) and one thread sends them on, in order.
- An accepted message crosses as its raw payload with its spool row, device and receive time;
  the child decodes and validates it again against the same fleet (reloads travel in order with
  the items) and limits, pure functions of these, so it evaluates the very samples ingest
  stored. That costs ingest ~0.2 us a message where pickling the samples costs ~14 us.
- Spills travel ahead of the items taken from the inbox with them, so the child's
  ``fed_through`` never passes a spilled row it has not recorded for a recompute.
- The spool's rules journal stays in ingest: the child asks for it as it resumes, and sends the
  prunes its checkpoints allow. Its annotations go to ingest's spool; "alerts queued" wakes
  ingest's alert delivery. InfluxDB's confirmed spool row reaches it through shared memory.
- The child ends with ingest: asked (``stop``; it checkpoints last), or at once and writing
  nothing more when ingest dies (killed by the kernel, ``PR_SET_PDEATHSIG``; else when its pipe
  closes), so a restarted ingest never meets an old child writing the same checkpoint. It
  ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: ingest stops it in
  order). Under systemd use ``KillMode=mixed`` so that a stop's SIGTERM reaches ingest only.
- A child that dies (the OOM killer, a defect) is replaced at once; the new one resumes as
  after a crash of ingest: from the last checkpoint, recomputing every asset the rules journal
  names after it (``rules_child_restarts``). More than 3 deaths in 10 minutes raise
  ``rules_dead`` (/healthz 503; readings are still stored, nothing is evaluated): restart
  ingest. A child that ends while ingest stops (a SIGTERM to the whole group) is only logged.
- It runs on the wall clock: an injected clock (the demo's replay) cannot cross processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from coldchain.exceptions import ColdchainError, SpoolError
from coldchain.fleet import Fleet
from coldchain.settings import Settings
from ingest.rules_child_main import Record, child_main
from ingest.rules_inbox import Item, RulesInbox
from ingest.rules_io import Accepted, FleetUpdate

__all__ = ["RulesChild"]

log = logging.getLogger("coldchain.ingest.rules_child")

_BATCH = 2000  # items per pipe message: one pickle and one write per batch
_RETRY_S = 0.5
_GONE_S = 1.0  # a dead child: wait this long for ingest's own stop before replacing it
_RESTARTS_MAX = 3  # a child that dies more often than this in the window: rules_dead
_RESTART_WINDOW_S = 600.0


class RulesChild:
    """Ingest's side of the rules child (module docstring): what ``IngestService`` calls on an
    ``EvaluateStage`` (``resume``, ``submit_many``, ``update_fleet``, ``run`` in its thread,
    ``stop``, ``idle``, ``stats``), plus ``wait_ready`` and ``written``.

    The callables are ingest's: ``annotate(lines)`` appends to its annotation spool (may raise
    ``SpoolError``: retried), ``journal_since``/``journal_newest_since``/``prune_journal`` are
    the spool's rules journal, ``alerts_queued()`` wakes the alert delivery. The child starts
    at once (spawn: a fresh interpreter, ~1 s of imports)."""

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        *,
        annotate: Callable[[list[str]], None],
        journal_since: Callable[[int], dict[str, int]],
        journal_newest_since: Callable[[int], dict[str, int | None]],
        prune_journal: Callable[[int], None],
        alerts_queued: Callable[[], None],
        max_queue: int = 10_000,
    ) -> None:
        self._annotate = annotate
        self._journal_since = journal_since
        self._journal_newest_since = journal_newest_since
        self._prune_journal = prune_journal
        self._alerts_queued = alerts_queued
        self._inbox = RulesInbox(fleet, max_queue)
        self._settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._written = self._ctx.Value("q", 0, lock=False)
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._catch_up = True
        self._turn = threading.Lock()  # one send round at a time, seen whole by idle()
        self._fleet_sent = fleet  # what a replacement child starts with
        self._deaths: list[float] = []  # monotonic times the child died
        self.restarts_total = 0
        self._spawn()

    def _spawn(self) -> None:
        """Start a child with the fleet last sent, and the thread that reads what it sends."""
        child_in, self._out = self._ctx.Pipe(duplex=False)
        self._in, child_out = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=child_main,
            args=(self._settings, self._fleet_sent.to_yaml(), child_in, child_out, self._written),
            kwargs={"log_level": logging.getLogger().getEffectiveLevel()},
            name="coldchain-rules-child",
            daemon=True,
        )
        self._proc.start()
        child_in.close()
        child_out.close()
        self._ready.clear()
        self._sent = 0  # items and fleet updates sent (the child counts the same)
        self._spills_sent = 0  # spill records sent (the child counts the same)
        self._child: dict[str, Any] = {"received": 0, "spills": 0, "idle": True, "stats": {}}
        self._receiver = threading.Thread(
            target=self._receive, args=(self._in,), name="ingest-rules-rx", daemon=True
        )
        self._receiver.start()

    # -- what IngestService calls --------------------------------------------------------------
    def resume(self, backlog_row: int, *, spool_replaced: bool = False) -> None:
        """``EvaluateStage.resume``, in the child (the first thing it is sent)."""
        self._send([("resume", backlog_row, spool_replaced)])

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the child resumed and evaluates; False after ``timeout_s`` or if it died.
        (Until then items wait in the inbox and spill past ``max_queue``: start the MQTT source
        after this.)"""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                return False
        return True

    def submit_many(self, items: Iterable[Item]) -> None:
        """Never blocks (``RulesInbox.submit_many``)."""
        self._inbox.submit_many(items)

    def update_fleet(self, fleet: Fleet) -> None:
        self._inbox.update_fleet(fleet)

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started)."""
        return self._proc.pid

    def written(self, row: int) -> None:
        """The writer confirmed spool rows up to ``row`` in InfluxDB (its thread)."""
        self._written.value = row

    def stop(self, *, catch_up: bool = True) -> None:
        """As ``EvaluateStage.stop``: ``run`` sends what is queued (or, without ``catch_up``,
        spills it for recomputes), asks the child to stop, and returns once it has exited."""
        self._catch_up = catch_up
        self._stopping.set()
        self._inbox.close()

    def idle(self) -> bool:
        """Nothing queued here, in flight or in the child, and the child's stage is idle."""
        if not self._turn.acquire(blocking=False):
            return False  # a round is being sent
        try:
            child = self._child
            return (
                len(self._inbox) == 0
                and not self._inbox.has_spilled()
                and child["received"] == self._sent
                and child["spills"] == self._spills_sent
                and bool(child["idle"])
            )
        finally:
            self._turn.release()

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = dict(self._child["stats"])
        depth = out.get("rules_queue_depth", 0)
        spilled = out.get("rules_spilled", 0)
        out["rules_queue_depth"] = len(self._inbox) + (depth if isinstance(depth, int) else 0)
        out["rules_spilled"] = self._inbox.spilled_total + (
            spilled if isinstance(spilled, int) else 0
        )
        out["rules_child_alive"] = int(self._proc.is_alive())
        out["rules_child_restarts"] = self.restarts_total
        return out

    # -- the sending thread (IngestService's "rules" thread) -----------------------------------
    def run(self) -> None:
        """Send the inbox on until stopped, then wait for the child's last checkpoint. A child
        that dies is replaced (``_RESTARTS_MAX`` times in ``_RESTART_WINDOW_S`` at most), else
        this raises ``ColdchainError`` (the watchdog reports ``rules_dead``)."""
        while True:
            try:
                while True:
                    self._check_alive()
                    self._inbox.wait(0.2)
                    with self._turn:  # idle() never sees items taken and not yet sent
                        if self._send_round():
                            break
                break
            except (OSError, ValueError, ColdchainError) as exc:  # the child is gone
                self._proc.join(_GONE_S)  # its exit code, and a stop of ingest racing it
                if self._stopping.is_set():  # e.g. SIGTERM to the group, not KillMode=mixed
                    log.warning(
                        "rules child ended before ingest stopped it (%s): the restart "
                        "recomputes what it had not checkpointed",
                        self._exit(),
                    )
                    return
                if not self._may_restart():
                    raise ColdchainError(
                        f"rules child process died ({self._exit()}), {len(self._deaths)} times "
                        f"in {_RESTART_WINDOW_S / 60:.0f} min"
                    ) from exc
                self._restart()
        self._proc.join(60.0)
        if self._proc.is_alive():
            log.error("rules child did not stop within 60 s; killing it (the restart recomputes)")
            self._proc.kill()
            self._proc.join(5.0)
        self._receiver.join(5.0)

    def _send_round(self) -> bool:
        """Send what the inbox holds now, spills first; True once the stop was sent."""
        items, spilled = self._inbox.take_with_spills(_BATCH)
        stop = bool(items) and items[-1] is None
        if stop and not self._catch_up:
            self._inbox.spill_queued()
            spilled = _merge(spilled, self._inbox.take_spilled())
        records: list[Record] = [("s", spilled)] if spilled else []
        append, sent = records.append, 0
        for item in items:
            # The common case inline (~1 us a message less than through _record).
            if type(item) is Accepted and item.payload and item.received_ms is not None:
                a = item
                append(("a", a.row_id, a.asset_id, a.device_id, a.received_ms, a.payload))
                sent += 1
            elif item is not None:
                if isinstance(item, FleetUpdate):
                    self._fleet_sent = item.fleet
                append(_record(item))
                sent += 1
        if records:
            self._send(records)
            self._sent += sent
            self._spills_sent += bool(spilled)
        if stop:
            self._send([("stop", self._catch_up)])
        return stop

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < _RESTART_WINDOW_S] + [now]
        return len(self._deaths) <= _RESTARTS_MAX

    def _restart(self) -> None:
        """A new child in place of a dead one. It resumes as after a crash of ingest: from the
        last checkpoint, recomputing (and holding) every asset the rules journal names after
        it once InfluxDB holds everything submitted so far; the inbox then goes on to it."""
        log.error(
            "rules child process died (%s); starting another (it recomputes from the last "
            "checkpoint)",
            self._exit(),
        )
        with self._turn:
            self._receiver.join(5.0)
            self._spawn()
            self.restarts_total += 1
            self._send([("resume", self._inbox.submitted_row, False)])

    def _check_alive(self) -> None:
        if not self._proc.is_alive():
            raise ColdchainError(f"rules child process died ({self._exit()})")

    def _exit(self) -> str:
        code = self._proc.exitcode
        return "running" if code is None else f"exit code {code}"

    def _send(self, records: list[Record]) -> None:
        data = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._out.send_bytes(data)

    # -- the receiving thread ------------------------------------------------------------------
    def _receive(self, conn: Connection) -> None:
        """What the child sends: readiness, progress, annotations, prunes, journal requests."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._handle(msg)
            except Exception:  # a bug here must not leave the child's requests unanswered
                log.exception("rules child: could not handle %r", msg[0])

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "progress":
            self._child = {"received": msg[1], "spills": msg[2], "idle": msg[3], "stats": msg[4]}
        elif kind == "ready":
            self._ready.set()
        elif kind == "alerts":
            self._alerts_queued()
        elif kind == "prune":
            self._prune_journal(msg[1])
        elif kind == "annotate":
            self._retry(lambda: self._annotate(msg[1]))
        elif kind == "journal?":
            row = msg[1]
            self._send([("journal", self._journal_since(row), self._journal_newest_since(row))])
        else:
            log.error("rules child: unknown message %r", kind)

    def _retry(self, action: Callable[[], None]) -> None:
        """Annotations must not be lost to a spool that fails for a while (it reports its
        state itself): retry until it takes them or ingest stops."""
        while True:
            try:
                action()
                return
            except SpoolError:
                if self._stopping.wait(_RETRY_S):
                    log.error("rules child: annotations dropped at stop (spool failing)")
                    return


def _record(item: Item | FleetUpdate) -> Record:
    """One item on the pipe (``ingest.rules_child_main`` reads them)."""
    if isinstance(item, FleetUpdate):  # as YAML: the child parses it again
        return ("f", item.fleet.to_yaml())
    if isinstance(item, Accepted) and item.payload and item.received_ms is not None:
        return ("a", item.row_id, item.asset_id, item.device_id, item.received_ms, item.payload)
    if isinstance(item, Accepted):  # no raw payload (not from the pipeline): the samples
        return ("i", item._replace(samples=list(item.samples)))
    return ("i", item)


def _merge(a: dict[Any, tuple[int, int]], b: dict[Any, tuple[int, int]]) -> dict[Any, Any]:
    out = dict(a)
    for key, (from_ms, row) in b.items():
        old = out.get(key)
        out[key] = (from_ms, row) if old is None else (min(old[0], from_ms), max(old[1], row))
    return out
