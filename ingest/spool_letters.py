"""The spool's dead letters (what ingest rejected, with every byte) and their replay queue:
the part of ``Spool`` (ingest.spool) that writes and reads them.

Guarantees (with the spool's): every letter references its message's full payload, stored
once (``dead_letter_payloads``, keyed by sha256) however many units of it were rejected; with a
retention, letters older than it are pruned with the payloads and replay marks no letter
references any more. Every SQLite error leaves as a ``SpoolError``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coldchain.exceptions import SpoolError
from ingest import replay
from ingest.spool_errors import spool_error

__all__ = ["DeadLetter", "DeadLetterMethods"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected unit: why (``reason``, ``detail``), where (``field`` path, bounded ``value``)
    and the full ``payload`` of its message (letters of one message share the same bytes)."""

    received_ms: int
    topic: str
    device_id: str | None
    reason: str
    field: str
    value: str
    detail: str
    payload: bytes


class DeadLetterMethods:
    """Mixin of ``Spool``: its dead-letter and replay methods (``_db`` is the spool's
    connection, ``path`` its file)."""

    _db: sqlite3.Connection
    path: Path

    def _insert_dead(self, dead: list[DeadLetter]) -> None:
        """Inside ``append``'s transaction: each distinct payload once, then the letters."""
        # Letters of one message share one bytes object: hash it once (id() is stable while
        # ``dead`` holds the letters).
        stored: dict[int, tuple[int, str]] = {}
        rows = []
        for d in dead:
            ref = stored.get(id(d.payload))
            if ref is None:
                sha = hashlib.sha256(d.payload).hexdigest()
                self._db.execute(
                    "INSERT OR IGNORE INTO dead_letter_payloads (sha256, size, payload)"
                    " VALUES (?,?,?)",
                    (sha, len(d.payload), d.payload),
                )
                (new_id,) = self._db.execute(
                    "SELECT id FROM dead_letter_payloads WHERE sha256 = ?", (sha,)
                ).fetchone()
                ref = stored[id(d.payload)] = (int(new_id), sha)
            payload_id, sha = ref
            size = len(d.payload)
            row = (d.received_ms, d.topic, d.device_id, d.reason, d.field, d.value, d.detail)
            rows.append((*row, size, sha, payload_id))
        self._db.executemany(
            "INSERT INTO dead_letters (received_ms, topic, device_id, reason, field, value,"
            " detail, payload_size, payload_sha256, payload_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def prune_dead_letters(self, before_ms: int, max_letters: int = -1) -> int:
        """Delete dead letters received before ``before_ms`` (at most ``max_letters``, oldest
        first; -1: all) and the payloads no remaining letter references; returns the letters
        deleted. ``append`` calls it hourly when the spool has a retention (inside its
        transaction)."""
        try:
            deleted = self._db.execute(
                "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
                " WHERE received_ms < ? ORDER BY received_ms LIMIT ?)",
                (before_ms, max_letters),
            ).rowcount
            if deleted:
                self._db.execute(
                    "DELETE FROM dead_letter_payloads WHERE id NOT IN"
                    " (SELECT payload_id FROM dead_letters)"
                )
                self._db.execute(
                    "DELETE FROM dead_letter_replays WHERE letter_id NOT IN"
                    " (SELECT id FROM dead_letters)"
                )
        except sqlite3.Error as exc:
            raise SpoolError(f"dead-letter pruning failed: {exc}") from exc
        return int(deleted)

    def dead_letters(self, limit: int = 1000) -> list[dict[str, object]]:
        """The oldest ``limit`` letters: id, received_ms, topic, device_id, reason, field, value,
        detail, payload_size, payload_sha256 and payload_id (for ``dead_letter_payload``)."""
        cur = self._db.execute(
            "SELECT id, received_ms, topic, device_id, reason, field, value, detail, payload_size,"
            " payload_sha256, payload_id FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur]

    def dead_letter_payload(self, payload_id: int) -> bytes | None:
        """The full payload a dead letter references (None once pruned). Payloads moved from a
        spool written by an older version may be cut at 64 KiB: shorter than their
        ``payload_size``."""
        row = self._db.execute(
            "SELECT payload FROM dead_letter_payloads WHERE id = ?", (payload_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def find_dead_letters(
        self,
        *,
        device_id: str | None = None,
        reason: str | None = None,
        since_ms: int = 0,
        limit: int = 100,
    ) -> list[dict[str, object]]:
        """The newest ``limit`` letters matching, as ``dead_letters`` plus ``replay`` (state:
        queued, replayed, refused; "" when never asked) and ``replay_outcome``."""
        try:
            cur = self._db.execute(
                "SELECT d.id, d.received_ms, d.topic, d.device_id, d.reason, d.field, d.value,"
                " d.detail, d.payload_size, d.payload_sha256, d.payload_id,"
                " COALESCE(r.state, '') AS replay, COALESCE(r.outcome, '') AS replay_outcome"
                " FROM dead_letters AS d LEFT JOIN dead_letter_replays AS r ON r.letter_id = d.id"
                " WHERE (? IS NULL OR d.device_id = ?) AND (? IS NULL OR d.reason = ?)"
                " AND d.received_ms >= ? ORDER BY d.id DESC LIMIT ?",
                (device_id, device_id, reason, reason, since_ms, limit),
            )
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur]
        except sqlite3.Error as exc:
            raise spool_error("read", self.path, exc) from exc

    def request_replay(self, device_id: str, since_ms: int = 0) -> replay.ReplayRequest:
        """Queue the device's ``unknown_device`` letters since ``since_ms`` for the ingest
        process that owns this spool to replay (ingest.replay)."""
        try:
            return replay.request(self._db, device_id, since_ms, int(time.time() * 1000))
        except sqlite3.Error as exc:
            raise spool_error("replay request", self.path, exc) from exc

    def queued_replays(self, limit: int) -> list[replay.ReplayItem]:
        try:
            return replay.queued(self._db, limit)
        except sqlite3.Error as exc:
            raise spool_error("read", self.path, exc) from exc

    def refuse_replays(self, letters: Iterable[tuple[int, str]]) -> None:
        """Mark ``(letter id, why)`` refused: a later request queues them again."""
        done = [(i, "refused", why) for i, why in letters]
        try:
            replay.mark(self._db, done, int(time.time() * 1000))
        except sqlite3.Error as exc:
            raise spool_error("replay mark", self.path, exc) from exc

    def replay_status(self, letter_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        try:
            return replay.status(self._db, letter_ids)
        except sqlite3.Error as exc:
            raise spool_error("read", self.path, exc) from exc

    def dead_letter_counts(self) -> dict[str, int]:
        cur = self._db.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason")
        return {str(r): int(n) for r, n in cur}
