"""Stage 4, write: drain the spool to InfluxDB's v1 ``/write`` as gzip'd line protocol.

Guarantees:
- A spool row is deleted only after InfluxDB answered 204 for a body that contained it.
- Transient failures (connection refused, timeouts, 5xx, 429, auth while a token rotates) are
  retried with exponential backoff, forever: the spool grows on disk instead of losing data.
- A 400/413 (InfluxDB refused some points for good) is bisected down to the offending row,
  which moves to the dead-letter store; every other row is written. Rewriting a row that was
  already accepted is harmless (idempotent points).
- A spool failure (disk full, I/O error) is reported to ``on_spool_error`` and retried with the
  same backoff on a fresh connection; the rows stay until a delete succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from coldchain.exceptions import SpoolError, StoreError, WriteRejected
from coldchain.settings import InfluxSettings
from ingest.spool import DeadLetter, Spool, SpoolBatch
from timeseries.client import InfluxClient

__all__ = ["SpoolDrainer"]

log = logging.getLogger("coldchain.ingest.write")


class SpoolDrainer:
    """The writer loop: run ``run()`` in its own thread; ``wake()`` after appending."""

    def __init__(
        self,
        spool: Spool,
        writer: InfluxClient,
        settings: InfluxSettings,
        on_written: Callable[[int, int], None] = lambda messages, points: None,
        on_error: Callable[[Exception], None] = lambda exc: None,
        *,
        on_spool_error: Callable[[SpoolError, str], None] = lambda exc, who: None,
    ) -> None:
        self._spool = spool
        self._writer = writer
        self._settings = settings
        self._on_written = on_written
        self._on_error = on_error
        self._on_spool_error = on_spool_error
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.written_through = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        backoff = self._settings.retry_initial_s
        while not self._stop.is_set():
            try:
                progressed = self.drain_once()
                backoff = self._settings.retry_initial_s
            except SpoolError as exc:
                self._on_spool_error(exc, "writer")
                log.warning("spool failed in the writer, retrying in %.1f s: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._settings.retry_max_s)
                # After a failed write SQLite's connection may keep a stale state.
                with contextlib.suppress(SpoolError):
                    self._spool.reopen()
                continue
            except StoreError as exc:
                self._on_error(exc)
                log.warning("write failed, retrying in %.1f s: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._settings.retry_max_s)
                continue
            if not progressed:
                self._wake.wait(0.5)
                self._wake.clear()

    def drain_once(self) -> bool:
        """Write one batch; False when the spool is empty."""
        batch = self._spool.peek(self._settings.batch_max_points)
        if batch is None:
            return False
        self._write_batch(batch)
        return True

    def _write_batch(self, batch: SpoolBatch) -> None:
        try:
            self._writer.write(batch.body())
        except WriteRejected as exc:
            if len(batch.rows) == 1:
                self._quarantine(batch, exc)
            else:
                mid = len(batch.rows) // 2
                for part in (batch.rows[:mid], batch.rows[mid:]):
                    self._write_batch(SpoolBatch(part[0][0], part[-1][0], part))
                return
        self._spool.delete_through(batch.first_id, batch.last_id)
        # Batches are taken oldest first, so this is a high-water mark: every row up to it is in
        # InfluxDB (or quarantined). The rules engine waits on it before reading data back.
        self.written_through = max(self.written_through, batch.last_id)
        self._on_written(len(batch.rows), batch.n_points)

    def _quarantine(self, batch: SpoolBatch, exc: WriteRejected) -> None:
        row_id, _, lines = batch.rows[0]
        log.error("InfluxDB rejected spool row %d for good: %s", row_id, exc.body[:200])
        self._spool.append(
            [],
            [
                DeadLetter(
                    int(time.time() * 1000),
                    "",
                    None,
                    "influx_rejected",
                    "",
                    "",
                    exc.body[:1000],
                    lines.encode(),
                )
            ],
        )
