"""What every ``Registry`` mixin builds on: the engine, sessions, the wall clock, and read and
write transactions (the write one takes the audit head's lock first; registry/audit.py)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from coldchain.exceptions import RecordRejected
from registry import audit
from registry.db import make_session_factory, translate_errors

__all__ = ["RegistryBase", "as_payload", "require_text", "wall_clock_ms"]


def wall_clock_ms() -> int:
    """The wall clock in integer epoch milliseconds UTC."""
    return time.time_ns() // 1_000_000


class RegistryBase:
    """Engine + session factory + clock. Thread safety: one instance may be shared by threads;
    each call uses its own session."""

    def __init__(self, engine: Engine, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.engine = engine
        self._sessions = make_session_factory(engine)
        self._clock = clock

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> RegistryBase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self, what: str) -> Iterator[Session]:
        with translate_errors(what, self.engine.url), self._sessions() as session:
            yield session

    @contextmanager
    def _write(self, what: str) -> Iterator[tuple[Session, audit.AuditHead, int]]:
        """A write transaction: head locked first; yields (session, head, now_ms)."""
        with (
            translate_errors(what, self.engine.url),
            self._sessions() as session,
            session.begin(),
        ):
            head = audit.lock_head(session)
            yield session, head, self._clock()


def require_text(value: str, name: str) -> None:
    """RecordRejected unless ``value`` is a non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise RecordRejected(f"{name} must be a non-empty string, got {value!r}")


def as_payload(record: Any) -> dict[str, Any]:
    """A frozen record as an audit payload (every field)."""
    return dataclasses.asdict(record)
