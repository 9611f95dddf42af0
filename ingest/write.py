"""Stage 4, write: drain the spool to InfluxDB's v1 ``/write`` as gzip'd line protocol.

Guarantees:
- A spool row is deleted only after InfluxDB answered 204 for a body that contained it.
- Transient failures (connection refused, timeouts, 5xx, 429, auth while a token rotates) are
  retried with exponential backoff, forever: the spool grows on disk instead of losing data.
- A 400/413 (InfluxDB refused some points for good) is bisected down to the offending row,
  which moves to the dead-letter store; every other row is written. Rewriting a row that was
  already accepted is harmless (idempotent points).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable

import httpx

from coldchain.exceptions import StoreError, WriteRejected
from coldchain.settings import InfluxSettings
from ingest.spool import DeadLetter, Spool, SpoolBatch

__all__ = ["InfluxWriter", "SpoolDrainer"]

log = logging.getLogger("coldchain.ingest.write")


class InfluxWriter:
    """InfluxDB v1 HTTP API client (also InfluxDB 2.x/3.x v1 compatibility with a token)."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.token:
            headers["Authorization"] = f"Token {settings.token}"
        if settings.gzip:
            headers["Content-Encoding"] = "gzip"
        self._params = {"db": settings.database, "precision": "ms"}
        if settings.username:
            self._params |= {"u": settings.username, "p": settings.password or ""}
        self._http = httpx.Client(
            base_url=settings.url, headers=headers, timeout=settings.timeout_s
        )

    def write(self, body: bytes) -> None:
        """Raises WriteRejected (permanent) or StoreError (transient)."""
        data = gzip.compress(body, compresslevel=1) if self.settings.gzip else body
        try:
            resp = self._http.post("/write", params=self._params, content=data)
        except httpx.HTTPError as exc:
            raise StoreError(f"InfluxDB at {self.settings.url} unreachable: {exc}") from exc
        if resp.status_code == 204:
            return
        if resp.status_code in (400, 413, 422):
            raise WriteRejected(resp.status_code, resp.text)
        if resp.status_code == 404 and "database not found" in resp.text:
            self.create_database()
        raise StoreError(f"InfluxDB answered {resp.status_code}: {resp.text[:300]}")

    def create_database(self) -> None:
        try:
            q = f'CREATE DATABASE "{self.settings.database}"'
            params = {k: v for k, v in self._params.items() if k in ("u", "p")} | {"q": q}
            self._http.post("/query", params=params)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot create database: {exc}") from exc

    def close(self) -> None:
        self._http.close()


class SpoolDrainer:
    """The writer loop: run ``run()`` in its own thread; ``wake()`` after appending."""

    def __init__(
        self,
        spool: Spool,
        writer: InfluxWriter,
        settings: InfluxSettings,
        on_written: Callable[[int, int], None] = lambda messages, points: None,
        on_error: Callable[[Exception], None] = lambda exc: None,
    ) -> None:
        self._spool = spool
        self._writer = writer
        self._settings = settings
        self._on_written = on_written
        self._on_error = on_error
        self._wake = threading.Event()
        self._stop = threading.Event()

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
