"""What keeps the spool trustworthy across failures that are not ingest's own: a damaged file,
a file deleted or replaced while ingest was stopped, and a full disk.

Guarantees:
- ``open_spool`` never crash-loops on a damaged spool: a file SQLite cannot read (or whose
  ``quick_check`` fails) is moved aside, kept under a name given in the log and in the health
  problem, the rows still readable are copied into a fresh spool, and ingest carries on.
- ``check_identity`` compares the spool with what the registry recorded for this ingest client
  (spool id, row-id high-water mark): a missing, replaced or older spool is reported as a
  problem that stays until an operator accepts it (``coldchain spool accept``), because
  acknowledged readings that were only in the old spool are gone.
- ``DiskReserve`` keeps some disk space in hand next to the spool. When the disk fills it is
  given back, so the writer can still delete what InfluxDB confirmed and SQLite can checkpoint
  its WAL; appends resume only once the reserve can be taken again, so ingest does not spend
  the freed space on new data and wedge itself (docs/operations.md, "Disk full").
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from coldchain.exceptions import SpoolCorrupt, SpoolError, SpoolFull
from ingest.metrics import IngestMetrics
from ingest.spool import Spool, SpooledMessage
from registry import Registry
from registry.records import SpoolProblem

__all__ = [
    "DiskReserve",
    "SpoolRecovery",
    "SpoolVerdict",
    "SpoolWatch",
    "check_identity",
    "open_spool",
]

log = logging.getLogger("coldchain.ingest.spool")

_SALVAGE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class SpoolRecovery:
    """A damaged spool was moved to ``moved_to``; ``salvaged_rows`` of it are in the new one."""

    moved_to: Path
    salvaged_rows: int
    reason: str


@dataclass(frozen=True, slots=True)
class SpoolVerdict:
    """What the start-up checks found: a health problem to raise (None: all is well)."""

    problem: SpoolProblem | None
    detail: str = ""


def open_spool(
    path: Path, synchronous: str = "FULL", dead_letter_retention_days: float | None = None
) -> tuple[Spool, SpoolRecovery | None]:
    """Open (or create) the spool at ``path`` and check it; a damaged one is replaced by a
    fresh spool holding its readable rows. Raises SpoolError only if a fresh spool cannot be
    made either (the directory is not writable, the disk is full)."""
    try:
        spool = Spool(path, synchronous, dead_letter_retention_days)
    except SpoolCorrupt as exc:
        reason = str(exc)
    else:
        try:
            spool.quick_check()
            return spool, None
        except SpoolCorrupt as exc:
            reason = str(exc)
            spool.close()
    moved = _move_aside(path)
    log.error(
        "spool %s is damaged (%s): moved aside to %s (kept for recovery); starting a fresh spool",
        path,
        reason,
        moved,
    )
    fresh = Spool(path, synchronous, dead_letter_retention_days)
    salvaged = _salvage(moved, fresh)
    log.error("salvaged %d spool rows from %s into the fresh spool", salvaged, moved)
    return fresh, SpoolRecovery(moved, salvaged, reason)


def _move_aside(path: Path) -> Path:
    """Rename the spool and its WAL/shm side files to ``<name>.corrupt-<UTC time>`` (+ the
    same suffixes, so SQLite still finds the WAL when the copy is opened)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            side.rename(f"{target}{suffix}")
    return target


def _salvage(source: Path, into: Spool) -> int:
    """Copy the spool rows still readable from ``source`` in id order; past a damaged page,
    seek ahead for the next readable row (row ids double the step, 40 probes at most). Cheap and
    partial on purpose: SQLite's ``.recover`` is not available from Python; the moved file is
    kept for a fuller recovery by hand (docs/operations.md)."""
    try:
        db = sqlite3.connect(source, timeout=5.0)
    except sqlite3.Error:
        return 0
    copied, after, skips = 0, 0, 0
    try:
        while skips < 40:
            copied, after, error = _copy_from(db, into, after, copied)
            if error is None:
                break  # read to the end
            log.warning("salvage of %s: unreadable after row %d (%s)", source, after, error)
            after += 1 << skips
            skips += 1
    except SpoolError as exc:
        log.warning("salvage of %s stopped after %d rows: %s", source, copied, exc)
    finally:
        db.close()
    return copied


def _copy_from(
    db: sqlite3.Connection, into: Spool, after: int, copied: int
) -> tuple[int, int, sqlite3.Error | None]:
    """Copy rows with id > ``after`` until the end or a read error; returns (copied, last id
    copied, the error)."""
    rows: list[tuple[int, int, str, str]] = []

    def flush() -> None:
        nonlocal copied, after
        if rows:
            into.append([SpooledMessage(r[1], r[2], r[3].split("\n")) for r in rows], [])
            copied += len(rows)
            after = rows[-1][0]
            rows.clear()

    error: sqlite3.Error | None = None
    try:
        cur = db.execute(
            "SELECT id, received_ms, device_id, lines FROM spool WHERE id > ? ORDER BY id",
            (after,),
        )
        for r in cur:  # row by row: a chunked fetch would drop the rows read before an error
            rows.append((int(r[0]), int(r[1]), str(r[2]), str(r[3])))
            if len(rows) >= _SALVAGE_CHUNK:
                flush()
    except sqlite3.Error as exc:
        error = exc
    flush()
    return copied, after, error


def check_identity(
    registry: Registry, client_id: str, spool: Spool, recovery: SpoolRecovery | None
) -> SpoolVerdict:
    """Compare ``spool`` with the registry's record for ``client_id`` and record what is now
    true. Raises StoreError when the registry cannot be read or written."""
    record = registry.spool_identity(client_id)
    high_water = spool.high_water()
    path = str(spool.path)
    if recovery is not None:
        detail = (
            f"spool {path} was damaged ({recovery.reason}); moved aside to {recovery.moved_to}, "
            f"{recovery.salvaged_rows} rows salvaged into a fresh spool; readings only in the "
            "damaged file may be missing from InfluxDB"
        )
        registry.register_spool(
            client_id, spool.spool_id, path, high_water, problem="spool_corrupt", detail=detail
        )
        return SpoolVerdict("spool_corrupt", detail)
    if record is None:
        registry.register_spool(client_id, spool.spool_id, path, high_water)
        log.info(
            "spool %s (id %s) registered for ingest client %s", path, spool.spool_id, client_id
        )
        return SpoolVerdict(None)
    if record.spool_id == spool.spool_id and high_water >= record.high_water:
        if record.problem is not None:  # found at an earlier start, not accepted yet
            return SpoolVerdict(record.problem, record.problem_detail)
        return SpoolVerdict(None)
    if record.spool_id == spool.spool_id:
        found = f"an older copy of it (row ids up to {high_water})"
    else:
        found = f"another spool (id {spool.spool_id}, row ids up to {high_water})"
    detail = (
        f"spool {path} is not the one ingest client {client_id} wrote: expected id "
        f"{record.spool_id} with row ids up to at least {record.high_water} (at "
        f"{record.spool_path}), found {found}; acknowledged readings that were in the old spool "
        "and not yet in InfluxDB are lost"
    )
    log.error("SPOOL REPLACED: %s", detail)
    registry.register_spool(
        client_id, spool.spool_id, path, high_water, problem="spool_replaced", detail=detail
    )
    return SpoolVerdict("spool_replaced", detail)


class DiskReserve:
    """``size_bytes`` of disk held in a file next to the spool (``<spool>.reserve``), released
    when the disk fills and taken back when space returns. Thread-safe. ``size_bytes`` 0
    disables it (``held`` is then always True)."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self._lock = threading.Lock()
        self._held = size_bytes == 0

    @property
    def held(self) -> bool:
        return self._held

    def take(self, *, headroom: bool = False) -> bool:
        """Allocate the reserve (really: ``posix_fallocate``, not a sparse file); True if it is
        held now. With ``headroom`` only when at least as much again stays free afterwards:
        right after a release the freed space is exactly the reserve, and taking it back then
        would leave the disk as full as before. On a full disk the partial file is removed and
        False returned."""
        with self._lock:
            if self._held:
                return True
            if headroom:
                free = shutil.disk_usage(self.path.parent).free
                if free < 2 * self.size_bytes:
                    return False
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.size_bytes)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                self._unlink()
                return False
            self._held = True
            return True

    def release(self) -> bool:
        """Give the reserve back to the filesystem; True if it was held (and is now free)."""
        with self._lock:
            if not self._held or self.size_bytes == 0:
                return False
            self._unlink()
            self._held = False
            return True

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class SpoolWatch:
    """Whether the spool can be written, as the pipeline (``append``), the writer (``writer``)
    and the rules' annotations find it; raises and clears the ``spool_unwritable`` health
    problem. Thread-safe.

    On a full disk the reserve is released at once (the writer needs a little space to delete
    what InfluxDB confirmed, SQLite to checkpoint its WAL); ``ready()`` stays False until the
    reserve can be taken again with room to spare. Each user clears only its own failure, by a
    successful write made while the reserve is held; the problem clears when none is left.
    """

    PROBLEM = "spool_unwritable"

    def __init__(self, metrics: IngestMetrics, reserve: DiskReserve) -> None:
        self._health = metrics.health
        self._metrics = metrics
        self._reserve = reserve
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}  # who -> reason

    def ready(self) -> bool:
        """May the pipeline append now? (Takes the reserve back once there is room for it and
        as much again.)"""
        return self._reserve.held or self._reserve.take(headroom=True)

    def failed(self, exc: SpoolError, who: str) -> None:
        """A spool operation of ``who`` failed."""
        if isinstance(exc, SpoolFull):
            released = self._reserve.release()
            reason = f"disk full under the spool ({who}): {exc}" + (
                f"; released the {self._reserve.size_bytes >> 20} MB reserve so the spool can"
                " drain; acks are held until the reserve can be taken again"
                if released
                else "; acks are held until space returns"
            )
        elif isinstance(exc, SpoolCorrupt):
            reason = f"spool damaged while running ({who}): {exc}; restart ingest (the start-up"
            reason += " check moves the file aside and salvages what it can)"
            self._health.raise_problem("spool_corrupt", reason)
        else:
            reason = f"spool {who} failed: {exc}; acks are held, retrying"
        with self._lock:
            self._metrics.spool_errors += 1
            self._failing[who] = reason
        self._health.raise_problem(self.PROBLEM, reason)

    def waiting(self) -> None:
        """The pipeline holds a group because the reserve cannot be taken back yet."""
        mb = self._reserve.size_bytes >> 20
        reason = (
            f"disk full under the spool: waiting for {2 * mb} MB free next to "
            f"{self._reserve.path.parent} before appending again; acks are held"
        )
        with self._lock:
            self._failing["append"] = reason
        self._health.raise_problem(self.PROBLEM, reason)

    def ok(self, who: str) -> None:
        """A spool write of ``who`` succeeded (cheap when nothing was failing)."""
        if not self._failing or who not in self._failing or not self._reserve.held:
            return
        with self._lock:
            self._failing.pop(who, None)
            left = next(iter(self._failing.values()), None)
        if left is None:
            self._health.clear(self.PROBLEM)
        else:
            self._health.raise_problem(self.PROBLEM, left)

    def poll(self) -> None:
        """Periodic: take the reserve back when space returned while nothing was written."""
        if self._failing and not self._reserve.held:
            self._reserve.take(headroom=True)
