"""``SpoolError`` from a SQLite error: which kind (full, corrupt, other), shared by the
spool's modules (ingest.spool, ingest.spool_letters)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coldchain.exceptions import SpoolCorrupt, SpoolError, SpoolFull

__all__ = ["spool_error"]

_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def spool_error(what: str, path: Path, exc: sqlite3.Error) -> SpoolError:
    """Map a sqlite3 error to SpoolFull, SpoolCorrupt or SpoolError (primary result code)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    cls = (
        SpoolFull
        if code == sqlite3.SQLITE_FULL
        else SpoolCorrupt
        if code in _CORRUPT_CODES
        else SpoolError
    )
    if what == "open":
        return cls(f"cannot open spool {path}: {exc}")
    return cls(f"spool {what} failed ({path}): {exc}")
