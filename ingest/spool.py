"""Stage 3, spool: a durable queue on SQLite (WAL) between the broker and InfluxDB.

Guarantees:
- ``append`` returns only after its whole batch (points and dead letters) is committed in one
  transaction (group commit); with ``synchronous=FULL`` it is fsynced. Only then does ingest
  acknowledge the MQTT messages.
- Row ids never repeat (AUTOINCREMENT), so ``delete_through(last_id)`` removes exactly what a
  writer read and InfluxDB confirmed.
- A message redelivered after a crash is spooled twice; that is safe because InfluxDB writes are
  idempotent (same series and timestamp overwrite).
- Dead letters keep every rejected byte: each references its message's full payload, stored once
  (``dead_letter_payloads``, keyed by sha256) however many units of it were rejected. With a
  retention, letters older than it are pruned hourly, and payloads no letter references with them.
- Dead letters of a device registered later can be queued for replay and are marked replayed
  in the transaction that spools what they became (ingest.replay).
- With ``rules_journal=True`` each message that carries a device time (``from_ms``) also gets a
  row in ``rules_journal`` (spool row id, device, oldest and newest device time) in the same
  transaction:
  the rules engine's record of what was acknowledged after its last checkpoint, which the
  writer's deletes do not touch (pruned by the rules stage once a checkpoint covers it).

- Every SQLite error leaves as a ``SpoolError``: ``SpoolFull`` when the disk is full,
  ``SpoolCorrupt`` when the file is damaged (what to do then: ingest/spool_guard.py), a plain
  ``SpoolError`` otherwise. After a failed write the caller may ``reopen()`` the connection.
- The spool carries an identity (``spool_id``, random, made when the file is created) and a
  row-id sequence that only grows (``high_water()``): recorded in the registry, they let a
  restart notice a deleted, replaced or rolled-back spool (ingest/spool_guard.py).

The dead letters' and the replay queue's methods live in ingest/spool_letters.py (a mixin of
``Spool``). A ``Spool`` is used by one thread at a time (it may be handed from the thread that
opened it to the one that uses it); concurrent users open their own, and WAL lets a reader and
a writer proceed together.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from coldchain.exceptions import SpoolCorrupt, SpoolError
from ingest import replay
from ingest.spool_errors import spool_error
from ingest.spool_letters import DeadLetter, DeadLetterMethods

__all__ = ["DeadLetter", "Spool", "SpoolBatch", "SpooledMessage", "spool_error"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    n_points INTEGER NOT NULL,
    lines TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter_payloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    device_id TEXT,
    reason TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_size INTEGER NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_id INTEGER NOT NULL REFERENCES dead_letter_payloads (id)
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_ms);
CREATE INDEX IF NOT EXISTS dead_letters_payload ON dead_letters (payload_id);
CREATE TABLE IF NOT EXISTS rules_journal (
    row_id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER
);
"""

# Spools written before payloads were stored apart kept (at most 64 KiB of) the payload in each
# row: move those bytes to dead_letter_payloads, as they are (size says when they were cut).
_MIGRATE_INLINE_PAYLOADS = """
CREATE TABLE dead_letter_payloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
INSERT OR IGNORE INTO dead_letter_payloads (sha256, size, payload)
    SELECT payload_sha256, payload_size, payload FROM dead_letters ORDER BY id;
ALTER TABLE dead_letters RENAME TO dead_letters_inline;
DROP INDEX IF EXISTS dead_letters_reason;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    device_id TEXT,
    reason TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_size INTEGER NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_id INTEGER NOT NULL REFERENCES dead_letter_payloads (id)
);
INSERT INTO dead_letters (id, received_ms, topic, device_id, reason, field, value, detail,
                          payload_size, payload_sha256, payload_id)
    SELECT d.id, d.received_ms, d.topic, d.device_id, d.reason, d.field, d.value, d.detail,
           d.payload_size, d.payload_sha256, p.id
    FROM dead_letters_inline AS d JOIN dead_letter_payloads AS p ON p.sha256 = d.payload_sha256;
DROP TABLE dead_letters_inline;
"""
_PRUNE_EVERY_S = 3600.0
_PRUNE_MAX_LETTERS = 10_000
# Kept apart from _SCHEMA: the spool's identity, made once when the file is created.
_META_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO spool_meta (key, value) VALUES ('spool_id', '{spool_id}');
"""


def _add_journal_to_ms(db: sqlite3.Connection) -> None:
    """Spools from before the journal recorded each message's newest device time: add the
    column (their rows keep NULL: unknown)."""
    cols = {str(r[1]) for r in db.execute("PRAGMA table_info(rules_journal)")}
    if "to_ms" not in cols:
        db.execute("ALTER TABLE rules_journal ADD COLUMN to_ms INTEGER")


def _migrate_dead_letters(db: sqlite3.Connection) -> None:
    """Move an older spool's inline dead-letter payloads to ``dead_letter_payloads``."""
    cols = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
    if "payload" in cols:
        try:
            db.executescript(f"BEGIN IMMEDIATE;{_MIGRATE_INLINE_PAYLOADS}COMMIT;")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


class SpooledMessage(NamedTuple):
    """One accepted message's InfluxDB lines, received at ``received_ms`` (epoch ms, ingest
    clock). (A NamedTuple: one is made per message on the hot path.)"""

    received_ms: int
    device_id: str
    lines: list[str]
    # Oldest device time of the samples (or event) the message carries: what a rules
    # recompute after a restart must start from (None: nothing for the rules).
    from_ms: int | None = None
    # Newest device time: how far that recompute must read (None: unknown, read everything).
    to_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    first_id: int
    last_id: int
    rows: list[tuple[int, int, str]]  # (id, n_points, lines)

    @property
    def n_points(self) -> int:
        return sum(r[1] for r in self.rows)

    def body(self) -> bytes:
        return "\n".join(r[2] for r in self.rows).encode()


class Spool(DeadLetterMethods):
    def __init__(
        self,
        path: Path,
        synchronous: str = "FULL",
        dead_letter_retention_days: float | None = None,
        *,
        rules_journal: bool = False,
    ):
        """``dead_letter_retention_days``: prune older dead letters (None: keep them all)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._retention_ms = (
            None if dead_letter_retention_days is None else dead_letter_retention_days * 86_400_000
        )
        self._next_prune = 0.0  # monotonic seconds: the first append prunes
        self._journal = rules_journal
        self._synchronous = synchronous
        self._db = self._connect()
        try:
            self._db.executescript(_META_SCHEMA.format(spool_id=uuid.uuid4().hex))
            row = self._db.execute("SELECT value FROM spool_meta WHERE key = 'spool_id'").fetchone()
        except sqlite3.Error as exc:
            self._db.close()
            raise spool_error("reading its identity", path, exc) from exc
        self.spool_id = str(row[0])

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            _migrate_dead_letters(db)
            db.executescript(_SCHEMA + replay.SCHEMA)
            _add_journal_to_ms(db)
            return db
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise spool_error("open", self.path, exc) from exc

    def reopen(self) -> None:
        """A fresh connection: after a failed write (disk full, I/O error) the old one may keep
        a stale view or a sticky error; raises SpoolError if the file cannot be opened now."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._db = self._connect()

    def high_water(self) -> int:
        """The largest row id this spool ever issued (AUTOINCREMENT never reuses one), 0 when
        none: it only grows, so a spool below a recorded mark is an older copy."""
        try:
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'spool'"
            ).fetchone()
        except sqlite3.Error as exc:
            raise spool_error("reading its sequence", self.path, exc) from exc
        return int(row[0]) if row else 0

    def quick_check(self) -> None:
        """Raise SpoolCorrupt unless SQLite's ``PRAGMA quick_check`` finds the file intact (reads
        every page: O(size), about a second per few hundred MB)."""
        try:
            rows = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            raise spool_error("checking", self.path, exc) from exc
        if rows != [("ok",)]:
            raise SpoolCorrupt(f"spool {self.path}: quick_check: {rows[0][0]}")

    def append(
        self,
        messages: Iterable[SpooledMessage],
        dead: Iterable[DeadLetter],
        replayed: Iterable[tuple[int, str, str]] = (),
    ) -> int:
        """Commit a group of messages and dead letters atomically (and, for a group of replayed
        dead letters, their ``(letter id, state, outcome)``: ingest.replay).

        Returns the id of the last spool row written (0 when the group had no points): once the
        writer has deleted through that id, every point of the group is in InfluxDB.
        """
        messages = list(messages)
        rows = [(m.received_ms, m.device_id, len(m.lines), "\n".join(m.lines)) for m in messages]
        dead = list(dead)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            last_id = 0
            if rows:
                self._db.executemany(
                    "INSERT INTO spool (received_ms, device_id, n_points, lines) VALUES (?,?,?,?)",
                    rows,
                )
                last_id = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
                if self._journal:
                    # One transaction holds the write lock: the rows got consecutive ids.
                    first = last_id - len(rows) + 1
                    journal = [
                        (first + i, m.device_id, m.from_ms, m.to_ms)
                        for i, m in enumerate(messages)
                        if m.from_ms is not None
                    ]
                    if journal:
                        self._db.executemany(
                            "INSERT OR REPLACE INTO rules_journal"
                            " (row_id, device_id, from_ms, to_ms) VALUES (?,?,?,?)",
                            journal,
                        )
            if dead:
                self._insert_dead(dead)
            replay.mark(self._db, replayed, int(time.time() * 1000))
            if self._retention_ms is not None and time.monotonic() >= self._next_prune:
                before_ms = int(time.time() * 1000 - self._retention_ms)
                # Bounded, so a long-due prune never holds one group commit (and its acks) for
                # long: when the bound is hit, the next append prunes again.
                if self.prune_dead_letters(before_ms, _PRUNE_MAX_LETTERS) < _PRUNE_MAX_LETTERS:
                    self._next_prune = time.monotonic() + _PRUNE_EVERY_S
            self._db.execute("COMMIT")
            return last_id
        except BaseException as exc:
            # Any failure (also a non-sqlite one) must not leave the transaction open, or every
            # later BEGIN fails with "cannot start a transaction within a transaction".
            try:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the caller reopens the connection; the failed transaction is not kept
            if isinstance(exc, sqlite3.Error):
                raise spool_error("append", self.path, exc) from exc
            raise

    def peek(self, max_points: int, after_id: int = 0) -> SpoolBatch | None:
        """The oldest rows holding about ``max_points`` points (at least one row)."""
        rows: list[tuple[int, int, str]] = []
        total = 0
        try:
            cur = self._db.execute(
                "SELECT id, n_points, lines FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                # A message row holds at least one point (its device line): max_points rows do.
                (after_id, max(1, max_points)),
            )
            for row in cur:
                if rows and total + row[1] > max_points:
                    break
                rows.append(row)
                total += row[1]
            cur.close()
        except sqlite3.Error as exc:
            raise spool_error("read", self.path, exc) from exc
        if not rows:
            return None
        return SpoolBatch(rows[0][0], rows[-1][0], rows)

    def delete_through(self, first_id: int, last_id: int) -> None:
        try:
            self._db.execute("DELETE FROM spool WHERE id BETWEEN ? AND ?", (first_id, last_id))
        except sqlite3.Error as exc:
            raise spool_error("delete", self.path, exc) from exc

    def journal_since(self, after_row: int) -> dict[str, int]:
        """Device -> oldest device time of the messages spooled after row ``after_row``
        (the rules journal; empty unless written with ``rules_journal=True``)."""
        try:
            cur = self._db.execute(
                "SELECT device_id, MIN(from_ms) FROM rules_journal WHERE row_id > ?"
                " GROUP BY device_id",
                (after_row,),
            )
            return {str(d): int(t) for d, t in cur}
        except sqlite3.Error as exc:
            raise SpoolError(f"spool journal read failed: {exc}") from exc

    def journal_newest_since(self, after_row: int) -> dict[str, int | None]:
        """Device -> newest device time of the messages spooled after row ``after_row`` (None
        when a row does not know it: journaled before ``to_ms`` was recorded)."""
        try:
            cur = self._db.execute(
                "SELECT device_id, MAX(to_ms), SUM(to_ms IS NULL) FROM rules_journal"
                " WHERE row_id > ? GROUP BY device_id",
                (after_row,),
            )
            return {str(d): None if unknown else int(t) for d, t, unknown in cur}
        except sqlite3.Error as exc:
            raise SpoolError(f"spool journal read failed: {exc}") from exc

    def prune_journal(self, through_row: int) -> None:
        """Forget the journal through row ``through_row``: a rules checkpoint covers it."""
        try:
            self._db.execute("DELETE FROM rules_journal WHERE row_id <= ?", (through_row,))
        except sqlite3.Error as exc:
            raise SpoolError(f"spool journal prune failed: {exc}") from exc

    def last_id(self) -> int:
        """The newest row's id (0 when empty): what a restart must see written first."""
        try:
            return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM spool").fetchone()[0])
        except sqlite3.Error as exc:
            raise spool_error("read", self.path, exc) from exc

    def depth(self) -> tuple[int, int]:
        """(messages, points) waiting for InfluxDB."""
        try:
            n, p = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_points), 0) FROM spool"
            ).fetchone()
        except sqlite3.Error as exc:
            raise spool_error("read", self.path, exc) from exc
        return int(n), int(p)

    def close(self) -> None:
        self._db.close()
