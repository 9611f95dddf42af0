"""Replaying dead letters of a device registered after it sent (``coldchain deadletters
replay``; docs/operations.md, "Onboarding without restarts").

A request queues, in the spool's ``dead_letter_replays`` table, every letter of the device with
reason ``unknown_device`` (coldchain/contract/reasons.py) received since a time and still kept
(``COLDCHAIN_VALIDATION__DEAD_LETTER_RETENTION_DAYS``). The ingest process that owns the spool
takes them between groups and runs each stored full payload through its pipeline as if it had
just arrived on its topic, with its original receive time (the clock its device time was judged
by): accepted readings go to the spool and InfluxDB and on to the rules, as late data; whatever
is still wrong is dead-lettered again under its reason.

Guarantees:
- Exactly once per letter: a letter is marked ``replayed`` in the same transaction that spools
  what it became; a second request finds it replayed and queues nothing (and InfluxDB writes
  are idempotent per series and time anyway).
- A letter whose device the running ingest does not know (its fleet not reloaded yet) is marked
  ``refused`` and nothing else happens; a later request queues it again.
- Pruning a letter (retention) forgets its replay state with it.

The functions take the spool's connection (``Spool`` calls them inside its transactions);
SQLite errors are left to the caller, which maps them to ``SpoolError``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "REPLAYABLE_REASON",
    "SCHEMA",
    "ReplayItem",
    "ReplayRequest",
    "mark",
    "outcome",
    "queued",
    "request",
    "status",
]

REPLAYABLE_REASON = "unknown_device"

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letter_replays (
    letter_id INTEGER PRIMARY KEY,
    requested_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    done_ms INTEGER,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dead_letter_replays_state ON dead_letter_replays (state);
"""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What a request found: ``letters`` of the device with the replayable reason since the
    time; ``queued`` now; ``replayed`` and ``waiting`` before (replayed, or queued and not yet
    taken by ingest); ``ids``: every letter found, for ``status``."""

    letters: int
    queued: int
    replayed: int
    waiting: int
    ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """A queued letter and the full payload of its message, as received."""

    letter_id: int
    received_ms: int
    topic: str
    device_id: str
    payload: bytes


def request(db: sqlite3.Connection, device_id: str, since_ms: int, now_ms: int) -> ReplayRequest:
    """Queue the device's ``unknown_device`` letters received at or after ``since_ms`` that
    were not replayed or queued already (one transaction)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute(
            "SELECT d.id, r.state FROM dead_letters AS d"
            " LEFT JOIN dead_letter_replays AS r ON r.letter_id = d.id"
            " WHERE d.reason = ? AND d.device_id = ? AND d.received_ms >= ? ORDER BY d.id",
            (REPLAYABLE_REASON, device_id, since_ms),
        ).fetchall()
        todo = [(int(i), now_ms) for i, state in rows if state in (None, "refused")]
        db.executemany(
            "INSERT OR REPLACE INTO dead_letter_replays (letter_id, requested_ms, state)"
            " VALUES (?, ?, 'queued')",
            todo,
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    states = [state for _, state in rows]
    return ReplayRequest(
        letters=len(rows),
        queued=len(todo),
        replayed=states.count("replayed"),
        waiting=states.count("queued"),
        ids=tuple(int(i) for i, _ in rows),
    )


def queued(db: sqlite3.Connection, limit: int) -> list[ReplayItem]:
    """The oldest ``limit`` queued letters with their payloads."""
    cur = db.execute(
        "SELECT d.id, d.received_ms, d.topic, d.device_id, p.payload"
        " FROM dead_letter_replays AS r JOIN dead_letters AS d ON d.id = r.letter_id"
        " JOIN dead_letter_payloads AS p ON p.id = d.payload_id"
        " WHERE r.state = 'queued' ORDER BY d.id LIMIT ?",
        (limit,),
    )
    return [
        ReplayItem(int(i), int(t), str(topic), str(dev), bytes(p)) for i, t, topic, dev, p in cur
    ]


def outcome(stored: bool, reasons: Iterable[str]) -> str:
    """What a replayed letter became, as ``coldchain deadletters list`` shows it: ``stored``
    (or ``nothing stored``), then ``; dead-lettered again: <reasons>`` when some of it was."""
    head = "stored" if stored else "nothing stored"
    again = sorted(set(reasons))
    return f"{head}; dead-lettered again: {', '.join(again)}" if again else head


def mark(db: sqlite3.Connection, done: Iterable[tuple[int, str, str]], now_ms: int) -> None:
    """Inside the caller's transaction: ``(letter id, state, outcome)`` for each letter taken,
    state ``replayed`` or ``refused``."""
    db.executemany(
        "UPDATE dead_letter_replays SET state = ?, outcome = ?, done_ms = ? WHERE letter_id = ?",
        [(state, outcome, now_ms, letter) for letter, state, outcome in done],
    )


def status(db: sqlite3.Connection, letter_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """letter id -> (state, outcome) of the letters that have a replay record."""
    ids = list(letter_ids)
    out: dict[int, tuple[str, str]] = {}
    for start in range(0, len(ids), 500):  # SQLite's bound on host parameters
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        cur = db.execute(
            f"SELECT letter_id, state, outcome FROM dead_letter_replays"
            f" WHERE letter_id IN ({marks})",
            chunk,
        )
        out.update((int(i), (str(s), str(o))) for i, s, o in cur)
    return out
